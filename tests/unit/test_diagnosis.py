"""`status` as a diagnosis, on the FakeEngine: the real state (restarts, exit code, OOM), the
gist of the log (masked), the cause across services, and a fix for each known cause."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mlstack.cli.output import jsonable
from mlstack.commands.status import StatusResult, status
from mlstack.commands.up import up
from mlstack.config import StackConfig
from mlstack.errors import ServiceUnhealthy
from mlstack.project.context import Project
from mlstack.project.diagnosis import diagnose
from tests.fakes import FakeBackends, FakeContainer, FakeEngine


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [int(sock.getsockname()[1]) for sock in socks]
    for sock in socks:
        sock.close()
    return ports


@pytest.fixture
def stack() -> tuple[StackConfig, FakeEngine, FakeBackends]:
    storage, console, pg, tracking = free_ports(4)
    config = StackConfig(
        project="p",
        storage={"port": storage, "console_port": console},
        postgres={"port": pg},
        mlflow={"port": tracking},
    )
    project = Project.open(config, create_secrets=True, save=False)
    assert project is not None
    images = {spec.image: f"sha256:{i}" for i, spec in enumerate(project.spec.services.values())}
    engine = FakeEngine(images=images)
    backends = FakeBackends(engine, "p")
    up(project, engine, timeout=10, backends=backends)
    return config, engine, backends


def broken(engine: FakeEngine, name: str, log: str, **state: object) -> FakeContainer:
    container = engine.container(f"p-{name}")
    container.log.append(log.encode())
    container.state = str(state.pop("state", "exited"))
    container.exit_code = int(state.pop("exit_code", 1))  # type: ignore[call-overload]
    for key, value in state.items():
        setattr(container, key, value)
    return container


def row(result: StatusResult, service: str) -> dict[str, object]:
    rows: dict[str, dict[str, object]] = {
        r["service"]: r
        for r in jsonable(result)["services"]  # the fields --json carries
    }
    return rows[service]


def run_status(stack: tuple[StackConfig, FakeEngine, FakeBackends]) -> StatusResult:
    config, engine, backends = stack
    return status(config, engine, backends=backends)


def test_a_crash_loop_says_how_often_and_why(
    stack: tuple[StackConfig, FakeEngine, FakeBackends],
) -> None:
    _, engine, backends = stack
    container = broken(
        engine,
        "mlflow",
        "INFO starting\nImportError: cannot import name 'x' from 'y'\n",
        state="restarting",
        restart_count=5,
        created=time.time() - 40,
    )
    backends.scripted["mlflow"].error = ConnectionRefusedError("connection refused")
    result = run_status(stack)
    mlflow = row(result, "mlflow")
    assert str(mlflow["problem"]).startswith("crash-looping: restarted 5 times in the last 4")
    assert "(last exit code 1)" in str(mlflow["problem"])
    assert mlflow["restarts"] == 5
    assert mlflow["log"] == ["INFO starting", "ImportError: cannot import name 'x' from 'y'"]
    assert "mlstack logs mlflow --tail 50" in str(mlflow["fix"])  # nothing specific known
    assert result.exit_code == 10
    # caught between two restarts, running: still a crash loop, not a connection error
    container.state, container.started_at = "running", time.time()
    mlflow = row(run_status(stack), "mlflow")
    assert str(mlflow["problem"]).startswith("crash-looping: restarted 5 times")


def test_out_of_memory_is_named(stack: tuple[StackConfig, FakeEngine, FakeBackends]) -> None:
    _, engine, _ = stack
    broken(engine, "mlflow", "Killed\n", exit_code=137, oom_killed=True)
    mlflow = row(run_status(stack), "mlflow")
    assert mlflow["problem"] == "exited (exit code 137, killed: out of memory)"
    assert mlflow["cause"] == "the kernel killed it: out of memory"
    assert "more memory" in str(mlflow["fix"]) and "mlflow.workers" in str(mlflow["fix"])


def test_mlflow_failing_because_of_postgres_names_the_root(
    stack: tuple[StackConfig, FakeEngine, FakeBackends],
) -> None:
    config, engine, backends = stack
    project = Project.open(config)
    assert project is not None
    password = project.secrets.POSTGRES_PASSWORD
    broken(
        engine,
        "postgres",
        f'FATAL:  password authentication failed for user "mlflow" ({password})\n',
    )
    backends.scripted["mlflow"].error = ConnectionResetError("Connection reset by peer")
    result = run_status(stack)
    postgres, mlflow = row(result, "postgres"), row(result, "mlflow")
    assert "password does not match" in str(postgres["cause"])
    assert "secrets.env" in str(postgres["fix"]) and "down --purge" in str(postgres["fix"])
    assert password not in json.dumps(jsonable(result))  # the log gist is masked
    assert any("****" in line for line in postgres["log"])  # type: ignore[attr-defined]
    assert mlflow["root"] == "postgres"
    assert str(mlflow["cause"]).startswith(
        "postgres is not healthy (the stack's PostgreSQL password"
    )
    assert str(mlflow["fix"]).startswith("fix postgres first: ")


def test_a_full_disk_is_named_with_its_fix(
    stack: tuple[StackConfig, FakeEngine, FakeBackends],
) -> None:
    _, engine, backends = stack
    broken(
        engine,
        "storage",
        "E1203 volume.go:88 write failed: no space left on device\n",
        state="running",
        exit_code=0,
    )
    backends.scripted["storage"].error = OSError("S3 at ...: 500 InternalError")
    storage = row(run_status(stack), "storage")
    assert storage["cause"] == "its disk is full (no space left on device)"
    assert "docker system df" in str(storage["fix"])


def test_a_damaged_data_directory_points_at_the_latest_backup(
    stack: tuple[StackConfig, FakeEngine, FakeBackends], tmp_path: Path
) -> None:
    config, engine, _ = stack
    project = Project.open(config)
    assert project is not None
    older, newest = (
        project.state.backups_dir() / "a.tar.gz",
        project.state.backups_dir() / "b.tar.gz",
    )
    older.write_bytes(b"x")
    newest.write_bytes(b"y")
    now = time.time()
    import os

    os.utime(older, (now - 100, now - 100))
    broken(engine, "postgres", "PANIC:  could not locate a valid checkpoint record\n", exit_code=1)
    postgres = row(run_status(stack), "postgres")
    assert postgres["cause"] == "its data directory is damaged"
    fix = str(postgres["fix"])
    assert f"mlstack restore {newest} --force" in fix
    # the order keeps the backup: purge (which leaves the backups dir), up, then restore
    assert fix.index("down --purge") < fix.index("mlstack up") < fix.index("mlstack restore")
    assert not str(newest).startswith(str(project.state.root))


def test_a_port_taken_after_a_restart(stack: tuple[StackConfig, FakeEngine, FakeBackends]) -> None:
    config, engine, _ = stack
    port = config.mlflow.port
    broken(
        engine,
        "mlflow",
        "",
        exit_code=128,
        error=f"driver failed programming external connectivity on endpoint p-mlflow: Bind for "
        f"127.0.0.1:{port} failed: port is already allocated",
    )
    mlflow = row(run_status(stack), "mlflow")
    assert str(mlflow["cause"]).startswith(f"port {port} is taken by another program")
    assert "set mlflow.port to another port" in str(mlflow["fix"])


def test_an_image_that_is_gone(stack: tuple[StackConfig, FakeEngine, FakeBackends]) -> None:
    config, engine, _ = stack
    broken(engine, "postgres", "", exit_code=0)
    del engine.images[config.postgres.image]
    postgres = row(run_status(stack), "postgres")
    assert postgres["cause"] == f"its image {config.postgres.image} is no longer on this machine"
    assert "postgres.image" in str(postgres["fix"]) and "mlstack up" in str(postgres["fix"])


def test_the_generic_fix_only_when_nothing_specific_is_known() -> None:
    from mlstack.engine import ContainerInfo

    info = ContainerInfo("i", "p-mlflow", "img", "exited", None, 2, 0, {}, {})
    found = diagnose("mlflow", info, log="something odd\n", image_present=True, ports={}, now=0)
    assert (
        found.cause == ""
        and found.fix == "read `mlstack logs mlflow --tail 50`, then run `mlstack up`"
    )
    assert found.state == "exited (exit code 2)"


@pytest.mark.parametrize("code", [0, 137, 143])
def test_a_container_stopped_by_hand_is_named_so(code: int) -> None:
    """restart: unless-stopped restarts whatever ends by itself: an exit left as it is was a stop."""
    from mlstack.engine import ContainerInfo

    info = ContainerInfo("i", "p-mlflow", "img", "exited", None, code, 0, {}, {})
    found = diagnose("mlflow", info, log="bye\n", image_present=True, ports={}, now=0)
    assert found.cause.startswith("it was stopped") and found.fix == "run `mlstack up`"


def test_a_paused_container_is_named_with_the_unpause_command() -> None:
    from mlstack.engine import ContainerInfo

    info = ContainerInfo("i", "p-storage", "img", "paused", None, 0, 0, {}, {})
    found = diagnose("storage", info, log="", image_present=True, ports={}, now=0)
    assert found.cause.startswith("it is paused")
    assert found.fix == "run `mlstack up` (it unpauses it), or `docker unpause p-storage`"


def test_a_healthy_stack_shows_no_log(stack: tuple[StackConfig, FakeEngine, FakeBackends]) -> None:
    _, engine, _ = stack
    for name in ("postgres", "storage", "mlflow"):
        engine.container(f"p-{name}").log.append(b"FATAL: something\n")
    result = run_status(stack)
    assert result.exit_code == 0
    assert all(not r.log and not r.cause for r in result.services)


# --- what the real engine showed (tests/integration/test_fault_catalogue.py) ----------------------

# PostgreSQL 15 starting on a data directory whose global/pg_control is gone, as `docker logs`
# shows it: the path is absolute.
PG_CONTROL_MISSING = (
    "docker-entrypoint: existing cluster in /var/lib/postgresql/data (PG_VERSION 15); skipping "
    "initdb\npostgres: could not find the database system\n"
    'Expected to find it in the directory "/var/lib/postgresql/data",\n'
    'but could not open file "/var/lib/postgresql/data/global/pg_control": No such file or '
    "directory\n"
)


def test_a_missing_control_file_is_a_damaged_data_directory(
    stack: tuple[StackConfig, FakeEngine, FakeBackends],
) -> None:
    _, engine, backends = stack
    broken(
        engine,
        "postgres",
        PG_CONTROL_MISSING,
        state="restarting",
        exit_code=2,
        restart_count=4,
        created=time.time() - 60,
    )
    backends.scripted["mlflow"].error = OSError("HTTP 503: could not translate host name")
    result = run_status(stack)
    postgres, mlflow = row(result, "postgres"), row(result, "mlflow")
    assert str(postgres["problem"]).startswith("crash-looping: restarted 4 times")
    assert postgres["cause"] == "its data directory is damaged"
    assert "mlstack restore <archive> --force" in str(postgres["fix"])
    assert mlflow["root"] == "postgres"
    assert str(mlflow["fix"]).startswith("fix postgres first: restore your latest backup")


def test_a_crash_loop_caught_running_claims_no_exit_code() -> None:
    """Docker resets a container's exit code when it starts it again: between two attempts it
    reports 0, which is not how the last attempt ended."""
    from mlstack.engine import ContainerInfo

    now = time.time()
    info = ContainerInfo(
        "i", "p-mlflow", "img", "running", None, 0, 3, {}, {},
        created=now - 30, started_at=now - 1, oom_killed=True,
    )  # fmt: skip
    found = diagnose("mlflow", info, log="", image_present=True, ports={}, now=now)
    assert (
        found.state
        == "crash-looping: restarted 3 times in the last 30 s (last killed: out of memory)"
    )
    assert found.cause == "the kernel killed it: out of memory"
    found = diagnose(
        "mlflow", replace(info, oom_killed=False), log="", image_present=True, ports={}, now=now
    )
    assert found.state == "crash-looping: restarted 3 times in the last 30 s"


def test_an_earlier_runs_log_does_not_diagnose_this_run(
    stack: tuple[StackConfig, FakeEngine, FakeBackends],
) -> None:
    """A cause long fixed (a password put back) is still in the log: the run that fails now
    is diagnosed from what it printed itself."""
    _, engine, backends = stack
    mlflow = engine.container("p-mlflow")
    mlflow.log.append(b'FATAL: password authentication failed for user "mlflow"\n')
    engine.stop("p-mlflow", 10)
    engine.start("p-mlflow")  # a later run, which has printed other things
    mlflow.log.append(b"INFO: waiting for application startup\n")
    backends.scripted["mlflow"].error = ConnectionResetError("Remote end closed connection")
    found = row(run_status(stack), "mlflow")
    assert "password" not in str(found["cause"]), found
    assert found["log"] == ["INFO: waiting for application startup"]
    assert "Remote end closed connection" in str(found["cause"])


def test_up_starts_a_crash_looping_container_now(
    stack: tuple[StackConfig, FakeEngine, FakeBackends],
) -> None:
    """In Docker's restart back-off a start does nothing; `up` after the cause was fixed (a
    file put back, a limit raised) stops the container first, so its start is a real one."""
    config, engine, backends = stack
    postgres = broken(engine, "postgres", "", state="restarting", exit_code=2, restart_count=6)
    del engine.calls[:]
    project = Project.open(config)
    assert project is not None
    result = up(project, engine, timeout=10, backends=backends)
    assert ("stop", "p-postgres") in engine.calls
    assert engine.calls.index(("stop", "p-postgres")) < engine.calls.index(("start", "p-postgres"))
    assert postgres.state == "running"
    assert {s.service: s.action.value for s in result.services}["postgres"] == "started"
    assert run_status(stack).exit_code == 0


def test_up_says_when_the_kernel_killed_a_starting_service(
    stack: tuple[StackConfig, FakeEngine, FakeBackends],
) -> None:
    config, engine, backends = stack
    mlflow = broken(engine, "mlflow", "", state="exited", exit_code=0)

    def out_of_memory(container: FakeContainer) -> None:
        container.state, container.exit_code, container.oom_killed = "restarting", 137, True

    engine.behaviours["mlflow"] = out_of_memory
    project = Project.open(config)
    assert project is not None
    with pytest.raises(ServiceUnhealthy) as raised:
        up(project, engine, timeout=10, backends=backends)
    assert raised.value.message == (
        "mlflow stopped while starting: crashed and is restarting (exit code 137, killed: out "
        "of memory)"
    )
    assert mlflow.state == "restarting"
