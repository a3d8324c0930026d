"""The bad-input catalogue: every way a user gets mlstack's input wrong, through the real CLI.

Each case runs `python -m mlstack ...` as a subprocess, as a user would, and must end with the
documented exit code, exactly one `error:` line (the last line of stderr) naming what is wrong
and the key, flag, port or command that fixes it, no traceback, no secret printed, and nothing
created or destroyed: the engine's objects labelled with the case's project and the listings of
the state dir and the working dir are the same before and after (after the case's setup).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlstack import labels
from mlstack.engine.docker import DockerEngine as Engine
from mlstack.errors import ExitCode
from tests.secret_scan import assert_no_secrets, secret_values

from .conftest import REPO, free_ports, offline_images, skip_or_fail

PREFIX = f"mlbad-{uuid.uuid4().hex[:6]}"
NOBODY = 65534

# Placeholders in argv, env and files, filled per case: {project}, {port} (a port nothing
# listens on), {pg_port} (the stack's PostgreSQL port), {state} (the state dir).
STACK = "stack.yaml"  # a valid config (offline images, free ports); cases name it with -c
MALFORMED = "project: a\nmlflow: x\n  port: 1\n"


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    code: ExitCode
    words: tuple[str, ...]  # each must be in the error line: what is wrong and what fixes it
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)  # relative to the working dir
    setup: str = ""  # a name in SETUPS: state or processes the case needs first


def case(
    id_: str,
    argv: str | list[str],
    code: ExitCode,
    words: list[str],
    *,
    env: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
    setup: str = "",
) -> Any:
    args = tuple(argv.split()) if isinstance(argv, str) else tuple(argv)
    return pytest.param(Case(args, code, tuple(words), env or {}, files or {}, setup), id=id_)


USAGE, ENGINE, CONFLICT, IMAGE, STATE, NOT_RUNNING = (
    ExitCode.USAGE,
    ExitCode.ENGINE,
    ExitCode.CONFLICT,
    ExitCode.IMAGE,
    ExitCode.STATE,
    ExitCode.NOT_RUNNING,
)

CASES = [
    # --- the config file ---------------------------------------------------------------------
    case("malformed-yaml", "config", USAGE, ["mlstack.yaml:3", "malformed YAML"], files={"mlstack.yaml": MALFORMED}),
    case("yaml-tab-indent", "config", USAGE, ["mlstack.yaml:2", "malformed YAML"], files={"mlstack.yaml": "mlflow:\n\tport: 1\n"}),
    case("yaml-not-a-mapping", "config", USAGE, ["must be a mapping", "mlstack init"], files={"mlstack.yaml": "- a\n- b\n"}),
    case("section-not-a-mapping", "config", USAGE, ["storage must be a mapping"], files={"mlstack.yaml": "storage: 5\n"}),
    case("unknown-key", "config", USAGE, ["unknown key 'mlflow.prot'", "did you mean 'mlflow.port'"], files={"mlstack.yaml": "mlflow:\n  prot: 1\n"}),
    case("unknown-top-key", "config", USAGE, ["unknown key 'projcet'", "'project'"], files={"mlstack.yaml": "projcet: x\n"}),
    case("wrong-type", "config", USAGE, ["mlflow.port must be a whole number", "'abc'"], files={"mlstack.yaml": "mlflow:\n  port: abc\n"}),
    case("config-missing-flag", "-c missing.yaml config", USAGE, ["missing.yaml does not exist", "--config", "mlstack init"]),
    case("config-missing-env", "config", USAGE, ["gone.yaml does not exist", "MLSTACK_CONFIG"], env={"MLSTACK_CONFIG": "gone.yaml"}),
    case("config-is-a-directory", "-c . config", USAGE, ["cannot read config file"]),
    # --- values, from any source --------------------------------------------------------------
    case("port-out-of-range", "--set postgres.port=70000 config", USAGE, ["postgres.port must be between 1 and 65535", "70000"]),
    case("port-zero", "--set mlflow.port=0 config", USAGE, ["mlflow.port must be between 1 and 65535"]),
    case("same-port-twice", "--set mlflow.port=9000 config", USAGE, ["mlflow.port and storage.port are both 9000"]),
    case("invalid-bucket", "--set storage.bucket=My_Bucket config", USAGE, ["storage.bucket", "not a valid S3 bucket name"]),
    case("bucket-like-ip", "--set storage.bucket=10.0.0.1 config", USAGE, ["storage.bucket", "IP address"]),
    case("invalid-database", ["--set", "postgres.database=drop table", "config"], USAGE, ["postgres.database", "not a valid database name"]),
    case("invalid-project", ["--project", "Bad Name", "config"], USAGE, ["'Bad Name' is not a valid project name", "lowercase", "from --project"]),
    case("unknown-storage-engine", "--set storage.engine=ceph config", USAGE, ["storage.engine must be one of", "'minio'", "'ceph'"]),
    case("empty-image", "--set postgres.image= config", USAGE, ["postgres.image", "must not be empty"]),
    case("bind-not-an-ip", "--set bind=localhost config", USAGE, ["bind", "not an IP address", "127.0.0.1"]),
    case("workers-out-of-range", "--set mlflow.workers=17 config", USAGE, ["mlflow.workers must be between 1 and 16"]),
    case("auth-not-a-boolean", "config", USAGE, ["auth must be true or false", "'maybe'"], files={"mlstack.yaml": "auth: maybe\n"}),
    case("set-without-equals", "--set mlflow.port config", USAGE, ["--set 'mlflow.port' is not KEY=VALUE", "--set mlflow.port=5051"]),
    case("set-unknown-key", "--set mlflow.prot=1 config", USAGE, ["unknown key 'mlflow.prot'", "--set mlflow.prot", "'mlflow.port'"]),
    case("env-bad-value", "config", USAGE, ["storage.port must be a whole number", "MLSTACK_STORAGE_PORT"], env={"MLSTACK_STORAGE_PORT": "x"}),
    case("env-unknown-key", "config", USAGE, ["unknown key 'mlflow.prot'", "MLSTACK_MLFLOW_PROT", "'mlflow.port'"], env={"MLSTACK_MLFLOW_PROT": "1"}),
    # --- commands and flags -------------------------------------------------------------------
    case("unknown-command", "frobnicate", USAGE, ["No such command 'frobnicate'", "mlstack --help"]),
    case("up-pull-unknown", f"-c {STACK} up --pull sometimes", USAGE, ["--pull 'sometimes'", "always, missing, never"]),
    case("up-timeout-zero", f"-c {STACK} up --timeout 0", USAGE, ["--timeout must be positive"]),
    case("logs-unknown-service", f"-c {STACK} logs nginx", USAGE, ["unknown service 'nginx'", "postgres, storage, mlflow"]),
    case("logs-tail-negative", f"-c {STACK} logs mlflow --tail -1", USAGE, ["--tail", "greater than or equal to 0"]),
    case("env-format-unknown", "env --format xml", USAGE, ["--format 'xml'", "sh, dotenv, json"]),
    case("purge-without-yes", f"-c {STACK} down --purge", USAGE, ["--purge deletes every run", "--yes"]),
    case("init-over-a-file", "init", USAGE, ["mlstack.yaml already exists", "--force"], files={"mlstack.yaml": "project: mine\n"}),
    case("demo-runs-zero", f"-c {STACK} demo --runs 0", USAGE, ["--runs must be between 1 and 12", "--runs 4"]),
    case("serve-bad-uri", f"-c {STACK} serve mymodel", USAGE, ["mymodel", "models:/"]),
    case("serve-port-out-of-range", f"-c {STACK} serve models:/m/1 --port 70000", USAGE, ["--port", "less than or equal to 65535"]),
    case("serve-bad-name", ["-c", STACK, "serve", "models:/m/1", "--name", "Bad Name"], USAGE, ["'Bad Name' is not a valid serve name", "--name"]),
    case("serve-without-uri", f"-c {STACK} serve", USAGE, ["missing MODEL_URI", "--stop NAME"]),
    case("serve-stop-and-uri", f"-c {STACK} serve models:/m/1 --stop m", USAGE, ["--stop takes only the name", "serve --stop"]),
    # --- secrets --------------------------------------------------------------------------------
    case("secrets-readable-by-others", f"-c {STACK} env --s3", STATE, ["readable by other users", "chmod 600 {state}/{project}/secrets.env"], setup="secrets_world_readable"),
    case("secrets-missing-key", f"-c {STACK} up", STATE, ["lacks S3_SECRET_KEY", "down --purge"], setup="secrets_missing_key"),
    # --- the engine -----------------------------------------------------------------------------
    case("docker-host-no-socket", f"-c {STACK} up", ENGINE, ["not reachable at unix:///nonexistent/docker.sock", "DOCKER_HOST"], env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}),
    case("docker-host-no-listener", f"-c {STACK} status", ENGINE, ["at tcp://127.0.0.1:{port} (DOCKER_HOST) is not reachable: nothing answers there", "dockerd listens on 127.0.0.1:{port}"], env={"DOCKER_HOST": "tcp://127.0.0.1:{port}"}),
    case("docker-host-unknown-scheme", f"-c {STACK} up", USAGE, ["DOCKER_HOST 'http://127.0.0.1:{port}' has the unknown scheme 'http'", "tcp://HOST:2376"], env={"DOCKER_HOST": "http://127.0.0.1:{port}"}),
    case("docker-context-missing", f"-c {STACK} up", USAGE, ["docker context 'team' (from DOCKER_CONTEXT) does not exist", "docker context create team"], env={"DOCKER_CONTEXT": "team"}),
    case("docker-current-context-missing", f"-c {STACK} up", USAGE, ["docker context 'gone' (from currentContext in", "config.json) does not exist"], files={"../.docker/config.json": '{"currentContext": "gone"}'}),  # HOME is the work dir's parent
    case("docker-tls-ca-missing", f"-c {STACK} up", USAGE, ["TLS verification is on but", "certs/ca.pem does not exist", "DOCKER_CERT_PATH"], env={"DOCKER_HOST": "tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "certs"}, files={"certs/cert.pem": "x", "certs/key.pem": "x"}),
    case("socket-permission-denied", f"-c {STACK} up", ENGINE, ["permission denied", "docker group", "rootless", "sudo"], setup="as_nobody"),
    case("port-in-use", f"-c {STACK} up", CONFLICT, ["port {pg_port} on 127.0.0.1 is already in use (postgres.port)", "--set postgres.port="], setup="hold_postgres_port"),
    case("image-absent-pull-never", f"-c {STACK} --set mlflow.image=mlstack-offline/not-built:1 up --pull never", IMAGE, ["mlstack-offline/not-built:1 is not on this machine", "mlflow.image", "--pull missing"]),
    case("pull-fails", f"-c {STACK} --set postgres.image=127.0.0.1:{{port}}/x/y:1 up --pull always", IMAGE, ["pulling 127.0.0.1:{port}/x/y:1 failed", "postgres.image"]),
    case("logs-not-running", f"-c {STACK} logs mlflow", NOT_RUNNING, ["no container for mlflow", "mlstack up"]),
    case("demo-not-running", f"-c {STACK} demo --runs 2", NOT_RUNNING, ["is not running", "mlstack up"]),
    case("container-name-taken", f"-c {STACK} up", CONFLICT, ["a container named {project}-postgres exists", "--project"], setup="foreign_container"),
    case("serve-not-running", f"-c {STACK} serve models:/m/1", NOT_RUNNING, ["is not running", "mlstack up"]),
    case("volume-with-other-password", f"-c {STACK} up", STATE, ["PostgreSQL rejected the stack's password", "restore the secrets", "down --purge"], setup="stack_with_other_secrets"),
]  # fmt: skip


# --- running a case ----------------------------------------------------------------------------


@dataclass
class Sandbox:
    """One case's project, dirs and placeholders."""

    project: str
    work: Path
    state: Path
    values: dict[str, str]
    runner: list[str] = field(default_factory=list)  # a prefix such as setpriv
    env: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        for key, value in self.values.items():
            text = text.replace("{" + key + "}", value)
        return text

    @property
    def secrets_file(self) -> Path:
        return self.state / self.project / "secrets.env"

    def cli(self, *argv: str, env: Mapping[str, str] = {}) -> subprocess.CompletedProcess[str]:
        """`python -m mlstack ARGV` as a user runs it; fails on any printed secret."""
        before = secret_values(self.secrets_file)
        result = subprocess.run(
            [*self.runner, sys.executable, "-m", "mlstack", *argv],
            cwd=self.work,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        values = before | secret_values(self.secrets_file)
        assert_no_secrets(argv, values, result.stdout, result.stderr)
        return result


def _process_env(state: Path, project: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSTACK_", "DOCKER_"))}
    src = str(REPO / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    env.update(MLSTACK_STATE_DIR=str(state), MLSTACK_PROJECT=project, HOME=str(state.parent))
    return env


def _listing(root: Path) -> dict[str, str]:
    """Every path below root with its mode and a digest of its content."""
    found = {}
    for path in sorted(root.rglob("*")):
        mode = f"{path.stat().st_mode & 0o777:o}"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "dir"
        found[str(path.relative_to(root))] = f"{mode} {digest}"
    return found


def _engine_objects(engine: Engine) -> list[str]:
    """Containers, networks and volumes of any catalogue project (labelled io.mlstack.project)."""
    api = engine._api
    label = {"label": labels.PROJECT}

    def ours(found: Mapping[str, str] | None) -> bool:
        return (found or {}).get(labels.PROJECT, "").startswith(PREFIX)

    names = [
        f"container {c['Names'][0]}"
        for c in api.containers(all=True, filters=label)
        if ours(c["Labels"])
    ]
    names += [f"network {n['Name']}" for n in api.networks(filters=label) if ours(n["Labels"])]
    names += [
        f"volume {v['Name']}"
        for v in api.volumes(filters=label).get("Volumes") or []
        if ours(v["Labels"])
    ]
    return sorted(names)


def _snapshot(engine: Engine, box: Sandbox) -> tuple[list[str], dict[str, str], dict[str, str]]:
    return _engine_objects(engine), _listing(box.state), _listing(box.work)


# --- setups: what a case needs before it runs ----------------------------------------------------


@contextmanager
def hold_postgres_port(box: Sandbox, engine: Engine) -> Iterator[None]:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(box.values["pg_port"])))
        blocker.listen()
        yield


@contextmanager
def secrets_world_readable(box: Sandbox, engine: Engine) -> Iterator[None]:
    assert box.cli("-c", STACK, "render", "-o", "rendered").returncode == 0
    box.secrets_file.chmod(0o644)
    yield


@contextmanager
def secrets_missing_key(box: Sandbox, engine: Engine) -> Iterator[None]:
    assert box.cli("-c", STACK, "render", "-o", "rendered").returncode == 0
    kept = [
        line for line in box.secrets_file.read_text().splitlines() if "S3_SECRET_KEY" not in line
    ]
    box.secrets_file.write_text("\n".join(kept) + "\n")
    yield


@contextmanager
def as_nobody(box: Sandbox, engine: Engine) -> Iterator[None]:
    """Run the CLI as an unprivileged user that is not in the docker group.

    The interpreter may live under a private home (/root): the user keeps the right to read
    and search files (CAP_DAC_READ_SEARCH), not to write them, so the engine's socket (which
    needs write access) stays closed to it, as for any user outside the docker group.
    """
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        skip_or_fail("needs root and setpriv (util-linux) to run the CLI as another user")
    sock = Path("/var/run/docker.sock")
    if not sock.exists() or sock.stat().st_mode & 0o002:
        skip_or_fail("no engine socket at /var/run/docker.sock closed to other users")
    for path in (box.work, box.state, box.state.parent):
        os.chown(path, NOBODY, NOBODY)
    box.runner = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
    yield


@contextmanager
def stack_with_other_secrets(box: Sandbox, engine: Engine) -> Iterator[None]:
    """A stack brought up and down; its secrets then replaced by others (mode 0600 kept)."""
    for argv in (("-c", STACK, "up"), ("-c", STACK, "down")):
        result = box.cli(*argv)
        assert result.returncode == 0, result.stderr
    box.secrets_file.unlink()
    assert box.cli("-c", STACK, "render", "-o", "rendered").returncode == 0
    assert box.secrets_file.stat().st_mode & 0o777 == 0o600
    yield


@contextmanager
def foreign_container(box: Sandbox, engine: Engine) -> Iterator[None]:
    """A container that is not mlstack's holds the name of the stack's PostgreSQL container."""
    name = f"{box.project}-postgres"
    engine._api.create_container("mlstack-offline/postgres:15", name=name, command=["true"])
    try:
        yield
    finally:
        engine.remove(name)


@contextmanager
def nothing(box: Sandbox, engine: Engine) -> Iterator[None]:
    yield


SETUPS: dict[str, Callable[[Sandbox, Engine], Any]] = {
    "": nothing,
    "hold_postgres_port": hold_postgres_port,
    "secrets_world_readable": secrets_world_readable,
    "secrets_missing_key": secrets_missing_key,
    "as_nobody": as_nobody,
    "stack_with_other_secrets": stack_with_other_secrets,
    "foreign_container": foreign_container,
}


@pytest.fixture
def box(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    project = f"{PREFIX}-{uuid.uuid4().hex[:6]}"
    work, state = tmp_path / "work", tmp_path / "state"
    work.mkdir(exist_ok=True)
    state.mkdir()
    storage, s3_console, pg, mlflow, unused = free_ports(5)
    data = offline_images("seaweedfs")
    data["project"] = project
    data["storage"].update(port=storage, console_port=s3_console)
    data["postgres"].update(port=pg)
    data["mlflow"].update(port=mlflow)
    (work / STACK).write_text(yaml.safe_dump(data))
    values = {"project": project, "port": str(unused), "pg_port": str(pg), "state": str(state)}
    sandbox = Sandbox(project, work, state, values, env=_process_env(state, project))
    yield sandbox
    if engine.volumes(labels.of_project(project)) or engine.containers(labels.of_project(project)):
        from mlstack.commands.down import down
        from mlstack.config import load_config

        monkeypatch.setenv("MLSTACK_STATE_DIR", str(state))
        down(load_config(work / STACK, env={}).config, engine, purge=True)


@pytest.mark.parametrize("bad", CASES)
def test_bad_input(bad: Case, box: Sandbox, engine: Engine) -> None:
    for name, text in bad.files.items():
        (box.work / name).parent.mkdir(parents=True, exist_ok=True)
        (box.work / name).write_text(box.fill(text))
    with ExitStack() as stack:
        stack.enter_context(SETUPS[bad.setup](box, engine))
        before = _snapshot(engine, box)
        result = box.cli(*map(box.fill, bad.argv), env={k: box.fill(v) for k, v in bad.env.items()})
    output = result.stdout + result.stderr
    assert result.returncode == bad.code, (result.returncode, output)
    assert "Traceback" not in output
    lines = result.stderr.rstrip("\n").splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert not any(line.startswith("hint:") for line in lines), result.stderr
    for word in bad.words:
        assert box.fill(word) in errors[0], (word, errors[0])
    assert _snapshot(engine, box) == before, "the command created or destroyed something"
