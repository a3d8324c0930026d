"""Fixtures for tests on the real Docker engine with the offline images.

Each stack gets its own project name, state dir and free host ports, and is purged afterwards
(containers, network, volumes), pass or fail. Every stack's config also carries this session's
label (config key `labels`), so whatever a test leaves behind, even where `mlstack down` would
not reach it, is swept by that label at the end of the session (as testcontainers does). With
CI=true a missing engine fails the tests, and so does anything they would otherwise skip.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlstack import labels
from mlstack.cli import run
from mlstack.config import StackConfig, load_config
from mlstack.credentials import StackSecrets
from mlstack.credentials import load as load_secrets
from mlstack.engine.docker import DockerEngine as Engine
from mlstack.errors import EngineUnavailable
from mlstack.state import ProjectState
from tests.integration.remote_server import DIND_IMAGE, RemoteServer, remote_server
from tests.integration.swarm_cluster import (
    REGISTRY_IMAGE,
    SwarmCluster,
    SwarmSession,
    swarm_session,
)
from tests.integration.swarm_stack import to_manager
from tests.secret_scan import assert_no_secrets, secret_values

REPO = Path(__file__).resolve().parents[2]
SESSION_LABEL = "org.mlstack-tests.session"
SESSION = uuid.uuid4().hex[:12]
IMAGE_FILES = {
    "seaweedfs": REPO / "tests" / "offline-images.yaml",
    "minio": REPO / "tests" / "offline-images-minio.yaml",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
    # the test that takes the swarm cluster down runs after every test that uses it
    items.sort(key=lambda item: item.get_closest_marker("swarm_last") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries the last log lines of its stacks' containers (taken before
    the fixtures purge them): what a CI log needs to say why a service misbehaved."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Project):
            for info in value.engine.containers({labels.PROJECT: value.name}):
                tail = value.engine.log_tail(info.id, 60)
                report.sections.append((f"log of {info.name} ({info.state})", tail or "(empty)"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine; with CI=true a test that cannot run is a failure."""
    if in_ci():
        pytest.fail(f"CI=true and this test cannot run: {reason}")
    pytest.skip(reason)


def sweep(engine: Engine, selector: Mapping[str, str]) -> list[str]:
    """Remove every container, network and volume carrying `selector`; what was removed."""
    removed = []
    for info in engine.containers(selector):
        engine.remove(info.id)
        removed.append(f"container {info.name}")
    for name in engine.networks(selector):
        engine.remove_network(name)
        removed.append(f"network {name}")
    for name in engine.volumes(selector):
        engine.remove_volume(name)
        removed.append(f"volume {name}")
    return removed


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    try:
        connected = Engine.connect(timeout=120)
    except EngineUnavailable as e:
        skip_or_fail(f"no Docker engine: {e.message}; run scripts/engine")
        raise
    yield connected
    left = sweep(connected, {SESSION_LABEL: SESSION})
    if left:
        print(f"\nswept what the tests left behind: {', '.join(left)}")
    connected.close()


@pytest.fixture(scope="session")
def remote(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    """A second engine standing in for a team's server (tcp with TLS, ssh), for the session."""
    if engine.image_id(DIND_IMAGE) is None:
        skip_or_fail(f"{DIND_IMAGE} is missing: run scripts/offline-images")
    home = tmp_path_factory.mktemp("remote-server")
    with remote_server(engine._api, home, {SESSION_LABEL: SESSION}) as server:
        yield server


@pytest.fixture(scope="session")
def swarm(engine: Engine) -> Iterator[SwarmSession]:
    """The 3-node swarm of scripts/swarm-cluster: started for the session unless it is up."""
    for image in (DIND_IMAGE, REGISTRY_IMAGE):
        if engine.image_id(image) is None:
            skip_or_fail(f"{image} is missing: run scripts/offline-images")
    with swarm_session(engine._api) as session:
        yield session


@pytest.fixture
def swarm_cluster(swarm: SwarmSession) -> SwarmCluster:
    """The cluster as it is now: a test that lost a node and made the cluster afresh
    (SwarmSession.cluster) hands the next one its new addresses; one taken down (a selection
    that ran the down test before others) is made again."""
    if swarm.is_down:
        swarm.cluster = swarm.script.up()
        swarm.is_down = False
    return swarm.cluster


@pytest.fixture
def swarm_project(
    swarm_cluster: SwarmCluster,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Project]:
    to_manager(monkeypatch, swarm_cluster)
    project = make_project(engine, tmp_path, monkeypatch, "seaweedfs")
    images = {
        section: {"image": swarm_cluster.pull_ref(image)}
        for section, image in offline_swarm_images().items()
    }
    project.write_config(target="swarm", allow_unauthenticated=True, **images)
    yield project
    project.cli(capsys, "down", "--purge", "--yes")


def docker0(engine: Engine) -> str:
    """The host's address on Docker's default bridge: this machine as other hosts reach it. On
    an engine's first start (no docker0 before it) the bridge's IPAM config lacks its Gateway
    (moby/moby#26799); the bridge then has the first address of its subnet, as Docker gives it."""
    (pool,) = engine._api.inspect_network("bridge")["IPAM"]["Config"]
    if pool.get("Gateway"):
        return str(pool["Gateway"])
    return str(next(ipaddress.ip_network(pool["Subnet"]).hosts()))


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (kept open together so they are distinct)."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def offline_images(engine_name: str) -> dict[str, Any]:
    path = IMAGE_FILES[engine_name]
    assert path.exists(), f"{path} is missing: run scripts/offline-images"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    data["labels"] = {SESSION_LABEL: SESSION}  # every object of the stack: swept at the end
    return data


def offline_swarm_images() -> dict[str, str]:
    """The offline images of a swarm stack's services, by config section."""
    data = offline_images("seaweedfs")
    return {section: data[section]["image"] for section in ("storage", "postgres", "mlflow")}


@dataclass
class Project:
    """One stack under test, driven through the real CLI entry point."""

    name: str
    storage: str
    workdir: Path
    state_dir: Path
    engine: Engine
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.workdir / "mlstack.yaml"

    def write_config(self, **sections: Any) -> None:
        data = offline_images(self.storage)
        ports = free_ports(4)
        data["project"] = self.name
        data["storage"].update({"port": ports[0], "console_port": ports[1]})
        data["postgres"].update({"port": ports[2]})
        data["mlflow"].update({"port": ports[3]})
        for key, value in sections.items():
            if isinstance(value, dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value
        self.config_path.write_text(yaml.safe_dump(data))

    @property
    def config(self) -> StackConfig:
        return load_config(self.config_path, env={}).config

    @property
    def secrets(self) -> StackSecrets:
        found = load_secrets(ProjectState(self.state_dir / self.name))
        assert found is not None
        return found

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / self.name / "secrets.env"

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        """Run `mlstack -c <this project's file> ARGS` in-process; (exit code, stdout, stderr).

        Fails when the output holds one of the project's secrets (those it had before the
        call and after it) and ARGS lack --show-secrets.
        """
        capsys.readouterr()
        before = secret_values(self.secrets_file)
        code = run(["-c", str(self.config_path), *args])
        captured = capsys.readouterr()
        values = before | secret_values(self.secrets_file)
        assert_no_secrets(args, values, captured.out, captured.err)
        return code, captured.out, captured.err

    def printed_env(self, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
        """What `mlstack env --format json` prints for this project."""
        code, out, err = self.cli(capsys, "env", "--format", "json")
        assert code == 0, err
        printed: dict[str, str] = json.loads(out)
        return printed

    def leftovers(self) -> dict[str, list[str]]:
        """Every Docker object still labelled with this project."""
        api = self.engine._api
        label = {"label": f"{labels.PROJECT}={self.name}"}
        return {
            # sorted: the engine lists in no fixed order
            "containers": sorted(c["Names"][0] for c in api.containers(all=True, filters=label)),
            "networks": sorted(n["Name"] for n in api.networks(filters=label)),
            "volumes": sorted(v["Name"] for v in (api.volumes(filters=label).get("Volumes") or [])),
        }

    def purge(self) -> None:
        from mlstack.commands.down import down

        down(self.config, self.engine, purge=True)


def client_process_env(printed: Mapping[str, str]) -> dict[str, str]:
    """A tracking client's environment: what `mlstack env` gave, plus what any process has
    (PATH, HOME), with MLflow told to fail fast instead of retrying for minutes."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(printed)
    env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_TIMEOUT="60")
    return env


def run_client(
    argv: list[str], env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python ARGV` (a script or `-c CODE`) as its own process, like a user's train.py."""
    return subprocess.run(
        [sys.executable, *argv],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def client_json(argv: list[str], env: Mapping[str, str], timeout: float = 300) -> Any:
    """Run a client that must succeed; the JSON on its last line of stdout."""
    done = run_client(argv, env, timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_project(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str
) -> Project:
    name = f"mlt-{uuid.uuid4().hex[:8]}"
    state_dir = Path(os.environ["MLSTACK_STATE_DIR"])
    project = Project(name, storage, tmp_path, state_dir, engine)
    project.write_config()
    return project


@pytest.fixture
def seaweed_project(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    project = make_project(engine, tmp_path, monkeypatch, "seaweedfs")
    yield project
    project.purge()


@pytest.fixture(params=["seaweedfs", "minio"])
def any_project(
    request: pytest.FixtureRequest, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    project = make_project(engine, tmp_path, monkeypatch, request.param)
    yield project
    project.purge()


# What `mlstack demo` and `mlstack serve` set in the process they run in (tests run the CLI
# in-process): cleared before a test and restored after it.
MLFLOW_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD",
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in MLFLOW_ENV:
        monkeypatch.setenv(name, "")  # records the original value, so it comes back afterwards
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # fail fast, do not retry
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    yield
    import mlflow

    mlflow.set_tracking_uri(None)
