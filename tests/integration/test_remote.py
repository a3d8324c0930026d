"""mlstack on a remote engine, through each way a user reaches one: ssh://root@IP (the system's
ssh client), tcp://IP:2376 with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, and a docker context
(written here into the user's ~/.docker, as `docker context create` writes it). The server is
the Docker-in-Docker container of the `remote` fixture, addressed by its bridge address.

Every CLI call is `python -m mlstack` as its own process, in a session of its own (no
controlling terminal: ssh cannot ask about an unknown host key, as in CI), with the user's
environment of the case; bad inputs end with one `error:` line, their exit code, and nothing
left behind (no state dir, no object on either engine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlstack import labels
from mlstack.config.endpoint import Endpoint, context_id
from mlstack.engine.docker import DockerEngine as Engine
from mlstack.errors import ExitCode
from tests.secret_scan import assert_no_secrets, secret_values

from .conftest import REPO, client_process_env, free_ports, offline_images, run_client
from .remote_server import RemoteServer

WAYS = ("ssh", "tls", "context")


def write_context(
    docker_dir: Path, name: str, host: str, certs: Path | None = None, current: bool = False
) -> None:
    """A docker context as the CLI stores it: meta.json under the sha256 of its name, and its
    TLS files beside, under contexts/tls/<sha256>/docker/."""
    meta = docker_dir / "contexts" / "meta" / context_id(name)
    meta.mkdir(parents=True, exist_ok=True)
    endpoint = {"Host": host, "SkipTLSVerify": False}
    body = {"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}}
    (meta / "meta.json").write_text(json.dumps(body))
    if certs is not None:
        tls = docker_dir / "contexts" / "tls" / context_id(name) / "docker"
        tls.mkdir(parents=True, exist_ok=True)
        for file in ("ca.pem", "cert.pem", "key.pem"):
            shutil.copy(certs / file, tls / file)
    if current:
        (docker_dir / "config.json").write_text(json.dumps({"currentContext": name}))


@dataclass
class User:
    """A user of the server: a home (with ~/.docker), a working dir and a project."""

    remote: RemoteServer
    home: Path
    work: Path
    state: Path
    project: str
    mlflow_port: int
    config: dict[str, Any]

    def configure(self, **keys: Any) -> None:
        self.config.update(keys)
        (self.work / "mlstack.yaml").write_text(yaml.safe_dump(self.config))

    def env(self, way: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSTACK_", "DOCKER_"))}
        src = str(REPO / "src")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        env.update(HOME=str(self.home), MLSTACK_STATE_DIR=str(self.state))
        if way == "ssh":
            env["DOCKER_HOST"] = self.remote.ssh_url
            env["PATH"] = f"{self.remote.ssh_path}{os.pathsep}{env['PATH']}"
        elif way == "tls":
            env.update(self.remote.tls_env())
        elif way == "context":
            write_context(self.docker_dir, "team", self.remote.tcp_url, self.remote.certs, True)
        env.update(extra)
        return env

    @property
    def docker_dir(self) -> Path:
        return self.home / ".docker"

    @property
    def secrets_file(self) -> Path:
        return self.state / self.project / "secrets.env"

    def cli(self, env: Mapping[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
        """`mlstack -c mlstack.yaml ARGV` as its own process; fails on any printed secret."""
        before = secret_values(self.secrets_file)
        done = self._run(env, *argv)
        values = before | secret_values(self.secrets_file)
        assert_no_secrets(argv, values, done.stdout, done.stderr)
        return done

    def _run(self, env: Mapping[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlstack", "-c", "mlstack.yaml", *argv],
            cwd=self.work,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            start_new_session=True,  # no controlling terminal, as in CI
        )


@pytest.fixture
def user(remote: RemoteServer, tmp_path: Path) -> User:
    home, work = tmp_path / "home", tmp_path / "work-remote"
    (home / ".docker").mkdir(parents=True)
    work.mkdir()
    project = f"mlr-{uuid.uuid4().hex[:8]}"
    ports = free_ports(3)
    config: dict[str, Any] = offline_images("seaweedfs")
    config.update(project=project, bind="0.0.0.0", auth=True)  # no `host`: the engine's
    config["storage"]["port"], config["postgres"]["port"], config["mlflow"]["port"] = ports
    user = User(remote, home, work, tmp_path / "state", project, ports[2], config)
    user.configure()
    return user


def objects(engine: Engine, project: str) -> list[str]:
    """Every container, network and volume of `project` on an engine."""
    api, label = engine._api, {"label": f"{labels.PROJECT}={project}"}
    return sorted(
        [c["Names"][0] for c in api.containers(all=True, filters=label)]
        + [n["Name"] for n in api.networks(filters=label)]
        + [v["Name"] for v in api.volumes(filters=label).get("Volumes") or []]
    )


# --- connecting, and `host` from the engine -----------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
def test_status_and_config_through_each_way(user: User, way: str, engine: Engine) -> None:
    env = user.env(way)
    status = user.cli(env, "status", "--json")
    assert status.returncode == ExitCode.NOT_RUNNING, status.stderr
    assert (
        json.loads(status.stdout)["tracking_uri"] == f"http://{user.remote.ip}:{user.mlflow_port}"
    )
    assert status.stderr == ""
    shown = user.cli(env, "config", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["host"] == user.remote.ip
    printed = user.cli(env, "env", "--format", "json")
    assert printed.returncode == 0, printed.stderr
    tracking_uri = f"http://{user.remote.ip}:{user.mlflow_port}"
    assert json.loads(printed.stdout)["MLFLOW_TRACKING_URI"] == tracking_uri


def test_docker_host_wins_over_the_current_context_and_says_so(user: User) -> None:
    write_context(user.docker_dir, "elsewhere", "tcp://127.0.0.1:9", current=True)
    status = user.cli(user.env("tls"), "status", "--json")
    assert status.returncode == ExitCode.NOT_RUNNING, status.stderr
    assert status.stderr.splitlines() == [
        "warning: DOCKER_HOST overrides the docker context 'elsewhere'; unset DOCKER_HOST to "
        "use the context"
    ]


def test_docker_context_names_one_of_several(user: User) -> None:
    write_context(user.docker_dir, "team-ssh", user.remote.ssh_url)
    env = user.env("context", DOCKER_CONTEXT="team-ssh")
    env["PATH"] = f"{user.remote.ssh_path}{os.pathsep}{env['PATH']}"
    status = user.cli(env, "status", "--json")
    assert status.returncode == ExitCode.NOT_RUNNING, status.stderr


# --- bad inputs: one line, its exit code, nothing left behind -----------------------------------


def _certs_without(user: User, missing: str) -> Path:
    directory = user.home / f"certs-without-{missing}"
    shutil.copytree(user.remote.certs, directory)
    (directory / missing).unlink()
    return directory


def _client_of_another_ca(user: User) -> Path:
    directory = user.home / "client-of-another-ca"
    shutil.copytree(user.remote.wrong_certs, directory)
    shutil.copy(user.remote.certs / "ca.pem", directory / "ca.pem")  # trusts the server
    return directory


def _bad_context(user: User) -> dict[str, str]:
    write_context(user.docker_dir, "bad-ca", user.remote.tcp_url, user.remote.wrong_certs)
    return {"DOCKER_CONTEXT": "bad-ca"}


BAD: dict[str, tuple[Any, ExitCode, list[str]]] = {
    "ssh-host-key-unknown": (
        lambda u: {"DOCKER_HOST": u.remote.ssh_url, "PATH": f"{u.remote.ssh_unknown_path}:{os.environ['PATH']}"},
        ExitCode.ENGINE,
        ["at ssh://root@{ip} (DOCKER_HOST) is not reachable over ssh:", "Host key verification failed", "known_hosts", "never accepts one itself"],
    ),
    "tls-ca-that-signed-nothing-of-the-server": (
        lambda u: u.remote.tls_env(u.remote.wrong_certs),
        ExitCode.ENGINE,
        ["at tcp://{ip}:2376 (DOCKER_HOST) is not reachable:", "its TLS certificate is not signed by", "wrong-certs/ca.pem"],
    ),
    "tls-client-certificate-of-another-ca": (
        lambda u: u.remote.tls_env(_client_of_another_ca(u)),
        ExitCode.ENGINE,
        ["at tcp://{ip}:2376 (DOCKER_HOST) is not reachable", "client certificate"],
    ),
    "tls-ca-file-missing": (
        lambda u: u.remote.tls_env(_certs_without(u, "ca.pem")),
        ExitCode.USAGE,
        ["TLS verification is on but", "certs-without-ca.pem/ca.pem does not exist", "DOCKER_CERT_PATH"],
    ),
    "tls-key-file-missing": (
        lambda u: u.remote.tls_env(_certs_without(u, "key.pem")),
        ExitCode.USAGE,
        ["certs-without-key.pem/key.pem does not exist beside", "DOCKER_CERT_PATH"],
    ),
    "plain-http-to-the-tls-port": (
        lambda u: {"DOCKER_HOST": u.remote.tcp_url},
        ExitCode.ENGINE,
        ["at tcp://{ip}:2376 (DOCKER_HOST) speaks TLS and the endpoint has none", "DOCKER_TLS_VERIFY=1"],
    ),
    "context-with-a-ca-that-signed-nothing": (
        _bad_context,
        ExitCode.ENGINE,
        ["at tcp://{ip}:2376 (context bad-ca) is not reachable:", "its TLS certificate is not signed by"],
    ),
    "context-that-does-not-exist": (
        lambda u: {"DOCKER_CONTEXT": "tema"},
        ExitCode.USAGE,
        ["docker context 'tema' (from DOCKER_CONTEXT) does not exist", "default, team"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(user: User, engine: Engine, remote: RemoteServer, case: str) -> None:
    make_env, code, words = BAD[case]
    base = user.env("context")  # a valid context "team" exists and is current
    env = {**base, **make_env(user)}
    done = user.cli(env, "up", "--timeout", "60")
    lines = done.stderr.splitlines()
    print(f"{case}: exit {done.returncode}: {done.stderr}")  # with -s: the catalogue
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "; hint: " in lines[0], lines
    for word in words:
        assert word.format(ip=remote.ip) in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not user.state.exists()
    inner = remote.engine()
    try:
        assert objects(inner, user.project) == []
    finally:
        inner.close()
    assert objects(engine, user.project) == []


# --- the whole lifecycle, a client on this machine logging to the server -------------------------

CLIENT = textwrap.dedent(
    """
    import json, sys
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    name = "remote-model"
    if sys.argv[1] == "write":
        mlflow.set_experiment("remote")
        with mlflow.start_run() as run:
            mlflow.log_params({"c": 1.0, "way": sys.argv[2]})
            for step in range(3):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_text("logged from this machine", "notes/hello.txt")
            model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
            mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("remote").experiment_id])
    model = mlflow.sklearn.load_model(f"models:/{name}/1")
    print(json.dumps({
        "run": run.info.run_id,
        "params": run.data.params,
        "history": [m.value for m in client.get_metric_history(run.info.run_id, "loss")],
        "notes": mlflow.artifacts.load_text(run.info.artifact_uri + "/notes/hello.txt"),
        "predicted": [int(p) for p in model.predict(np.array([[0.0], [3.0]]))],
    }))
    """
)


def client(user: User, env: Mapping[str, str], *args: str) -> dict[str, Any]:
    """A tracking client on this machine with what `mlstack env --show-secrets` printed."""
    printed = user.cli(env, "env", "--format", "json", "--show-secrets")
    assert printed.returncode == 0, printed.stderr
    variables = json.loads(printed.stdout)
    assert variables["MLFLOW_TRACKING_URI"] == f"http://{user.remote.ip}:{user.mlflow_port}"
    done = run_client(["-c", CLIENT, *args], client_process_env(variables))
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def timed(
    user: User, env: Mapping[str, str], *argv: str
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    done = user.cli(env, *argv)
    return time.monotonic() - started, done


@pytest.mark.parametrize("way", WAYS)
def test_lifecycle_through_each_way(
    user: User, way: str, engine: Engine, remote: RemoteServer
) -> None:
    images = offline_images("seaweedfs")
    remote.load_images(
        engine, [images["postgres"]["image"], images["storage"]["image"], images["mlflow"]["image"]]
    )
    user.configure(host=remote.ip)  # as the engine's address would fill it; said explicitly
    env = user.env(way)
    inner = remote.engine()
    try:
        took_up, up = timed(user, env, "up")
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"http://{remote.ip}:{user.mlflow_port}"
        took_status, status = timed(user, env, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["overall"] == "healthy"
        assert report["tracking_uri"] == f"http://{remote.ip}:{user.mlflow_port}"
        print(f"\n{way}: up {took_up:.1f} s, status {took_status:.1f} s")

        written = client(user, env, "write", way)
        assert written["params"] == {"c": "1.0", "way": way}
        assert written["history"] == pytest.approx([1.0, 0.5, 1 / 3])
        assert written["notes"] == "logged from this machine"
        assert written["predicted"] == [0, 1]

        down = user.cli(env, "down")
        assert down.returncode == 0, down.stderr
        assert objects(inner, user.project) == [
            f"{user.project}-postgres-data",
            f"{user.project}-storage-data",
        ]
        again = user.cli(env, "up")
        assert again.returncode == 0, again.stderr
        assert client(user, env, "read") == written  # the same run, artifact and model

        purge = user.cli(env, "down", "--purge", "--yes")
        assert purge.returncode == 0, purge.stderr
        assert objects(inner, user.project) == []
        assert not (user.state / user.project).exists()
    finally:
        if objects(inner, user.project):  # a failed test: its stack goes with it
            user._run(env, "down", "--purge", "--yes")
        inner.close()
    assert objects(engine, user.project) == []  # nothing ever ran on this machine's engine


@pytest.mark.parametrize("way", ["ssh", "tls"])
def test_the_relay_carries_every_connection(
    user: User, way: str, engine: Engine, remote: RemoteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections forwarded through the engine, several at once, each to its end: over TLS
    (one socket read and written by two threads) and over ssh (one login each)."""
    import psycopg2

    images = offline_images("seaweedfs")
    postgres_image, relay_image = images["postgres"]["image"], images["mlflow"]["image"]
    remote.load_images(engine, [postgres_image, relay_image])
    if way == "ssh":
        monkeypatch.setenv("PATH", f"{remote.ssh_path}{os.pathsep}{os.environ['PATH']}")
        through = Engine.connect(60, Endpoint(remote.ssh_url, "DOCKER_HOST"))
    else:
        through = remote.engine(60)
    api, net = through._api, f"{user.project}-net"
    tag = {labels.PROJECT: user.project}
    try:
        api.create_network(net, driver="bridge", labels=tag)
        endpoint = api.create_networking_config({net: api.create_endpoint_config(aliases=["db"])})
        api.create_container(
            postgres_image,
            name=f"{user.project}-db",
            labels=tag,
            environment={"POSTGRES_PASSWORD": "pw"},
            host_config=api.create_host_config(network_mode=net),
            networking_config=endpoint,
        )
        api.create_container(
            relay_image,
            name=f"{user.project}-relay",
            labels=tag,
            entrypoint=["sleep", "infinity"],
            host_config=api.create_host_config(network_mode=net),
        )
        api.start(f"{user.project}-db")
        api.start(f"{user.project}-relay")
        host, port = through.forward(f"{user.project}-relay", "db", 5432)
        deadline = time.monotonic() + 60
        while True:  # until PostgreSQL answers at all
            try:
                psycopg2.connect(
                    host=host, port=port, user="postgres", password="pw", connect_timeout=10
                ).close()
                break
            except psycopg2.OperationalError:
                assert time.monotonic() < deadline, "PostgreSQL did not answer through the relay"
                time.sleep(0.5)
        failures: list[str] = []

        def connections() -> None:
            for _ in range(5):
                try:
                    with (
                        psycopg2.connect(
                            host=host, port=port, user="postgres", password="pw", connect_timeout=20
                        ) as conn,
                        conn.cursor() as cur,
                    ):
                        cur.execute("SELECT repeat('x', 100000)")
                        assert len(cur.fetchone()[0]) == 100000
                    conn.close()
                except Exception as e:
                    failures.append(str(e).splitlines()[0])

        threads = [threading.Thread(target=connections) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert failures == []  # 40 connections, 8 at a time
    finally:
        for name in (f"{user.project}-relay", f"{user.project}-db"):
            api.remove_container(name, force=True, v=True)
        api.remove_network(net)
        through.close()


def test_execs_over_ssh_end_without_error(
    user: User, engine: Engine, remote: RemoteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exec read to its end over ssh is a success, however soon ssh exits after it: the SDK's
    own transport turned that into "not reachable over ssh: BrokenPipeError" (53 of 90 execs, 9
    callers at once; the cause of `up` failing at "database and bucket" in CI)."""
    image = offline_images("seaweedfs")["postgres"]["image"]
    remote.load_images(engine, [image])
    monkeypatch.setenv("PATH", f"{remote.ssh_path}{os.pathsep}{os.environ['PATH']}")
    through = Engine.connect(60, Endpoint(remote.ssh_url, "DOCKER_HOST"))
    api, name = through._api, f"{user.project}-exec"
    try:
        api.create_container(image, name=name, entrypoint=["sleep", "infinity"])
        api.start(name)
        results: list[tuple[int, str]] = []
        failures: list[str] = []

        def execs() -> None:
            for i in range(10):
                try:
                    results.append(through.exec(name, ["echo", str(i)]))
                except Exception as e:
                    failures.append(str(e))

        threads = [threading.Thread(target=execs) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert failures == []
        assert sorted(results) == sorted((0, f"{i}\n") for i in range(10) for _ in range(6))
    finally:
        api.remove_container(name, force=True, v=True)
        through.close()
