"""A full disk in `status`, on the FakeEngine: a data service that still answers (reads work, writes
fail) is named by the line its log wrote and by `df` in its container; `df` runs only after such
a line, and a line left from before room was made is not a cause any more."""

from __future__ import annotations

import pytest

from mlstack.cli.views import _probe
from mlstack.config import StackConfig
from mlstack.engine import ContainerInfo
from mlstack.project.diagnosis import diagnose, disk_full, probe_failing
from mlstack.project.diskspace import Space, parse_df
from tests.fakes import FakeBackends, FakeEngine
from tests.unit.test_diagnosis import broken, row, run_status, stack

__all__ = ["stack"]  # the fixture, shared with test_diagnosis

Stack = tuple[StackConfig, FakeEngine, FakeBackends]

# The lines the real services wrote when their volume was full (tests/integration/test_disk_full.py).
SEAWEEDFS = (
    "I1203 18:03:26.275788 store_replicate.go:83 failed to write to local disk: append to volume "
    "1 size 1048576 actualSize 1048624: failed to write 1048624 bytes to /data/mlflow_1.dat at "
    "offset 15512: write /data/mlflow_1.dat: no space left on device"
)
POSTGRES = (
    '2026-12-03 18:04:30.611 UTC [89] ERROR:  could not extend file "base/16384/16424_fsm": '
    "No space left on device"
)
POSTGRES_WAL = (
    '2026-12-03 18:05:13.180 UTC [73] PANIC:  could not write to file "pg_wal/xlogtemp.73": '
    "No space left on device"
)
POSTGRES_RECOVERY = (
    "2026-12-03 18:06:27.298 UTC [17] HINT:  This probably means that some data is corrupted and "
    "you will have to use the last backup for recovery.\n"
    '2026-12-03 18:06:27.512 UTC [17] FATAL:  could not write to file "pg_wal/xlogtemp.17": '
    "No space left on device\n"
    "2026-12-03 18:06:27.515 UTC [1] LOG:  shutting down due to startup process failure"
)
DF_FULL = (
    "Filesystem 1024-blocks Used Available Capacity Mounted on\ntmpfs 65536 65536 0 100% /data\n"
)
DF_ROOM = (
    "Filesystem 1024-blocks Used Available Capacity Mounted on\ntmpfs 65536 932 64604 2% /data\n"
)


def answering_but_full(engine: FakeEngine, service: str, line: str, df: str) -> None:
    """A running service whose log says a write failed; `df` in it answers `df`."""
    container = broken(engine, service, line + "\n", state="running", exit_code=0)
    container.answers["df"] = (0, df)


def df_runs(engine: FakeEngine) -> list[str]:
    return [name for verb, name in engine.calls if verb == "exec"]


@pytest.mark.parametrize(
    ("service", "line"), [("storage", SEAWEEDFS), ("postgres", POSTGRES)], ids=["seaweedfs", "pg"]
)
def test_a_service_that_answers_on_a_full_disk_is_named(
    stack: Stack, service: str, line: str
) -> None:
    _, engine, _ = stack
    answering_but_full(engine, service, line, DF_FULL)
    result = run_status(stack)
    assert result.exit_code == 10  # degraded, though every probe passed
    found = row(result, service)
    assert found["state"] == "running" and found["full"] is True
    assert found["problem"] == f"writes fail: no space left on its volume p-{service}-data"
    path = {"storage": "/data", "postgres": "/var/lib/postgresql/data"}[service]  # its mount
    assert (
        found["cause"]
        == f"its disk is full (no space left on device): 0 B free of 64.0 MiB at {path}"
    )
    assert found["log"] == [line]
    fix = str(found["fix"])
    assert "free space on the disk that holds its volume" in fix and "DockerRootDir" in fix
    assert "no restart needed" in fix and "what is stored is kept" in fix
    assert _probe(next(r for r in result.services if r.service == service)) == "disk full"
    assert row(result, "mlflow")["problem"] == ""  # MLflow itself is fine: it reads, it answers
    assert df_runs(engine) == [f"p-{service}"]


def test_a_line_from_before_room_was_made_is_not_a_cause(stack: Stack) -> None:
    _, engine, _ = stack
    answering_but_full(engine, "storage", SEAWEEDFS, DF_ROOM)
    result = run_status(stack)
    assert result.exit_code == 0
    assert all(not r.problem and not r.full for r in result.services)
    assert df_runs(engine) == ["p-storage"]


def test_without_df_the_log_alone_names_it(stack: Stack) -> None:
    _, engine, _ = stack
    container = broken(engine, "storage", SEAWEEDFS + "\n", state="running", exit_code=0)
    container.answers["df"] = (127, "sh: df: not found")
    found = row(run_status(stack), "storage")
    assert found["full"] is True
    assert found["cause"] == "its disk is full (no space left on device)"


def test_a_healthy_stack_runs_nothing_in_its_containers(stack: Stack) -> None:
    _, engine, _ = stack
    engine.container("p-mlflow").log.append(f"{SEAWEEDFS}\n".encode())  # MLflow has no volume
    assert run_status(stack).exit_code == 0
    assert df_runs(engine) == []


def test_a_probe_failing_on_a_disk_with_room_is_not_blamed_on_the_disk(stack: Stack) -> None:
    _, engine, backends = stack
    answering_but_full(engine, "storage", f"{SEAWEEDFS}\nE1203 something else broke", DF_ROOM)
    backends.scripted["storage"].error = OSError("S3 at ...: 503 SlowDown")
    found = row(run_status(stack), "storage")
    assert "disk" not in str(found["cause"])
    assert found["log"] == ["E1203 something else broke"]


def test_a_crash_loop_on_a_full_wal_is_a_full_disk_not_a_damaged_one(stack: Stack) -> None:
    _, engine, backends = stack
    broken(engine, "postgres", f"{POSTGRES_WAL}\n{POSTGRES_RECOVERY}\n", state="restarting")
    backends.scripted["mlflow"].error = OSError("HTTP 503: the database system is starting up")
    result = run_status(stack)
    postgres, mlflow = row(result, "postgres"), row(result, "mlflow")
    assert postgres["cause"] == "its disk is full (no space left on device)"
    assert "backup" not in str(postgres["fix"]) and "free space" in str(postgres["fix"])
    assert postgres["log"][-1].endswith('"pg_wal/xlogtemp.17": No space left on device')  # type: ignore[index]
    assert mlflow["root"] == "postgres"
    assert str(mlflow["fix"]).startswith("fix postgres first: free space")


@pytest.mark.parametrize("line", [SEAWEEDFS, POSTGRES, POSTGRES_WAL, POSTGRES_RECOVERY])
def test_each_real_wording_is_a_full_disk(line: str) -> None:
    assert disk_full(line)
    info = ContainerInfo("i", "p-postgres", "img", "exited", None, 1, 0, {}, {})
    found = diagnose("postgres", info, log=line, image_present=True, ports={}, now=0)
    assert found.cause == "its disk is full (no space left on device)"
    assert probe_failing("storage", "", line, None).cause == found.cause


def test_df_as_busybox_and_coreutils_print_it() -> None:
    busybox = "Filesystem           1024-blocks    Used Available Capacity Mounted on\n" + (
        "/dev/loop0              147909    143618      1015  99% /data\n"
    )
    assert parse_df(busybox, "/data") == Space("/data", 147909 * 1024, 1015 * 1024)
    assert parse_df(DF_ROOM, "/data") == Space("/data", 65536 * 1024, 64604 * 1024)
    assert parse_df("df: /data: No such file or directory", "/data") is None
    assert parse_df("a b c d e f\nx y z w v u", "/data") is None


@pytest.mark.parametrize(
    ("size", "free", "full"),
    [
        (64 << 20, 0, True),
        (64 << 20, 1 << 20, True),  # 1.6 %: under 5 % of a small disk
        (64 << 20, 47 << 20, False),
        (500 << 30, 200 << 20, True),  # under 256 MiB on a big disk
        (500 << 30, 2 << 30, False),  # 0.4 %, but 2 GiB: room enough
    ],
)
def test_full_is_little_room_for_the_disk_size(size: int, free: int, full: bool) -> None:
    assert Space("/data", size, free).full is full


def test_space_in_words() -> None:
    assert str(Space("/data", 64 << 20, 0)) == "0 B free of 64.0 MiB at /data"
    assert str(Space("/v", 500 << 30, 1015 << 10)) == "1015.0 KiB free of 500.0 GiB at /v"
