"""Faults on the real engine: nothing the server acknowledged may be lost.

Each test drives the real CLI; the tracking client runs as a separate process (faults_client.py)
with only what `mlstack env` prints, and what it was told was stored is read back afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlstack.engine.docker import DockerEngine as Engine
from mlstack.errors import ExitCode

from .conftest import Project, client_json, client_process_env, free_ports, make_project

CLIENT = Path(__file__).with_name("faults_client.py")
SERVICES = ("postgres", "storage", "mlflow")


def client_env(project: Project, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    return client_process_env(project.printed_env(capsys))


def client(mode: str, args: list[str], env: dict[str, str]) -> dict[str, dict[str, object]]:
    result: dict[str, dict[str, object]] = client_json([str(CLIENT), mode, *args], env, 600)
    return result


def log_runs(
    env: dict[str, str], experiment: str, count: int, out: Path
) -> dict[str, dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    return client("write", [experiment, str(count), str(out)], env)


def read_back(env: dict[str, str], acknowledged: dict[str, dict[str, object]], out: Path) -> None:
    """Every acknowledged run comes back with its params, its metric history and its bytes."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps(acknowledged))
    seen = client("read", [str(manifest), str(out)], env)
    assert seen == acknowledged


def mlstack(project: Project, *args: str, **popen: object) -> subprocess.Popen[str]:
    """The CLI as a user's shell runs it: its own process, progress on stderr."""
    return subprocess.Popen(
        [sys.executable, "-m", "mlstack", "-c", str(project.config_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


def wait_for_line(proc: subprocess.Popen[str], marker: str, seen: list[str]) -> None:
    """Read stderr until a progress line containing `marker` appears (or the process ends)."""
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            return
    pytest.fail(f"`mlstack up` ended before printing {marker!r}:\n{''.join(seen)}")


def finish(proc: subprocess.Popen[str], seen: list[str]) -> tuple[int, str]:
    _, rest = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + rest


def containers(project: Project) -> list[str]:
    return project.leftovers()["containers"]


def test_fifty_runs_survive_down_and_up(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project = seaweed_project
    assert project.cli(capsys, "up")[0] == 0
    env = client_env(project, capsys)
    acknowledged = log_runs(env, "survival", 50, tmp_path / "written")
    assert len(acknowledged) == 50

    code, _, err = project.cli(capsys, "down")
    assert code == 0, err
    assert containers(project) == []
    code, _, err = project.cli(capsys, "up")
    assert code == 0, err

    read_back(env, acknowledged, tmp_path / "read")


def test_killed_services_are_named_and_healed(
    seaweed_project: Project, engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project = seaweed_project
    assert project.cli(capsys, "up")[0] == 0
    env = client_env(project, capsys)
    acknowledged: dict[str, dict[str, object]] = {}
    for service in SERVICES:
        acknowledged |= log_runs(env, f"before-kill-{service}", 3, tmp_path / service)
        container = f"{project.name}-{service}"
        engine._api.kill(container)  # SIGKILL: no shutdown, no restart by policy

        code, out, _ = project.cli(capsys, "status", "--json")
        assert code == ExitCode.DEGRADED, out
        rows = {row["service"]: row for row in json.loads(out)["services"]}
        assert rows[service]["state"] == "exited", rows[service]
        assert "exit code 137" in rows[service]["problem"]
        assert "mlstack up" in rows[service]["fix"]
        code, out, _ = project.cli(capsys, "status")
        assert code == ExitCode.DEGRADED
        assert f"{service}: exited" in out

        code, _, err = project.cli(capsys, "up")
        assert code == 0, err
        assert project.cli(capsys, "status")[0] == 0
        read_back(env, acknowledged, tmp_path / f"after-{service}")


class HangingRegistry:
    """A registry address that accepts connections and never answers: a pull that hangs."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", free_ports(1)[0]))
        self.port = self.server.getsockname()[1]
        self.connected = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held.append(conn)
            self.connected.set()

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def hanging_registry() -> Iterator[HangingRegistry]:
    registry = HangingRegistry()
    yield registry
    registry.close()


def interrupted(proc: subprocess.Popen[str], seen: list[str]) -> str:
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc, seen)
    assert code == ExitCode.INTERRUPTED, err
    assert "interrupted: run the same command again to finish" in err
    assert "Traceback" not in err
    return err


def test_ctrl_c_during_up_then_up_completes(
    seaweed_project: Project,
    hanging_registry: HangingRegistry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = seaweed_project
    good_image = project.config.mlflow.image

    # 1. during a pull: the MLflow image is on a registry that never answers
    project.write_config(mlflow={"image": f"127.0.0.1:{hanging_registry.port}/mlstack/mlflow:1"})
    proc, seen = mlstack(project, "up"), []
    assert hanging_registry.connected.wait(60), "the engine never contacted the registry"
    interrupted(proc, seen)
    assert containers(project) == []  # nothing is created before every image is there

    # 2. while waiting for health (PostgreSQL and storage are starting)
    project.write_config(mlflow={"image": good_image})
    proc, seen = mlstack(project, "up"), []
    wait_for_line(proc, "starting postgres, storage", seen)
    interrupted(proc, seen)

    # 3. during provisioning (database and bucket), before MLflow starts
    proc, seen = mlstack(project, "up"), []
    wait_for_line(proc, "database and bucket", seen)
    interrupted(proc, seen)

    # 4. while MLflow starts: on a fresh database it started with PostgreSQL (step 2), so stop
    # it; with no image record yet, this `up` starts it after the schema check
    project.engine.stop(f"{project.name}-mlflow", 10)
    proc, seen = mlstack(project, "up"), []
    wait_for_line(proc, "starting mlflow", seen)
    interrupted(proc, seen)

    # the next `up` completes, and `down` leaves no container behind
    code, _, err = project.cli(capsys, "up")
    assert code == 0, err
    assert project.cli(capsys, "status")[0] == 0

    # Ctrl-C is how one stops `logs --follow`: a clean exit, not an interruption
    follow = mlstack(project, "logs", "mlflow", "--follow", "--tail", "1")
    assert follow.stdout is not None
    assert follow.stdout.readline()
    follow.send_signal(signal.SIGINT)
    _, err = follow.communicate(timeout=60)
    assert follow.returncode == 0, err
    assert "interrupted" not in err and "Traceback" not in err

    assert project.cli(capsys, "down")[0] == 0
    assert containers(project) == []


def test_two_ups_at_once_never_make_two_stacks(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project = seaweed_project
    first, second = mlstack(project, "up"), mlstack(project, "up")
    results = sorted([finish(first, []), finish(second, [])], key=lambda r: r[0])
    (code_a, err_a), (code_b, err_b) = results
    assert code_a == 0, err_a
    assert code_b == ExitCode.CONFLICT, err_b
    assert "is busy: `mlstack up` (pid" in err_b
    assert "Traceback" not in err_b
    names = containers(project)
    assert names == sorted(f"/{project.name}-{s}" for s in SERVICES)
    assert project.cli(capsys, "status")[0] == 0


def _dockerd_pid() -> int | None:
    try:
        return int(Path("/var/run/docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def restart_engine() -> None:
    """Stop the dockerd that scripts/engine started, and start it again the same way."""
    pid = _dockerd_pid()
    if pid is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("no /var/run/docker.pid: CI runs the engine from scripts/engine")
        pytest.skip("the engine was not started by scripts/engine; not restarting it")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, "dockerd did not stop within 120 s"
        time.sleep(0.2)
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([str(repo / "scripts" / "engine")], check=True, timeout=120)


def test_engine_restart_brings_the_stack_back(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project = seaweed_project
    assert project.cli(capsys, "up")[0] == 0
    env = client_env(project, capsys)
    acknowledged = log_runs(env, "engine-restart", 5, tmp_path / "written")

    restart_engine()

    # the restart policy, not mlstack, brings the services back
    deadline = time.monotonic() + 180
    while (code := project.cli(capsys, "status")[0]) != 0:
        assert time.monotonic() < deadline, f"status still exits {code} 180 s after the restart"
        time.sleep(1)
    read_back(env, acknowledged, tmp_path / "read")


def test_purge_of_one_project_keeps_the_others_data(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    kept = make_project(engine, tmp_path / "a", monkeypatch, "seaweedfs")
    purged = make_project(engine, tmp_path / "b", monkeypatch, "seaweedfs")
    try:
        assert kept.cli(capsys, "up")[0] == 0
        assert purged.cli(capsys, "up")[0] == 0
        env = client_env(kept, capsys)
        acknowledged = log_runs(env, "kept", 5, tmp_path / "written")
        before = kept.leftovers()

        code, _, err = purged.cli(capsys, "down", "--purge", "--yes")
        assert code == 0, err
        assert purged.leftovers() == {"containers": [], "networks": [], "volumes": []}
        assert kept.leftovers() == before
        assert kept.cli(capsys, "status")[0] == 0
        read_back(env, acknowledged, tmp_path / "read")
    finally:
        kept.purge()
        purged.purge()


def test_storage_is_ready_only_when_its_objects_can_be_read(
    seaweed_project: Project, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """SeaweedFS lists what its filer holds before its volumes can serve the data: readiness
    reads one object, so an S3 server whose data is gone is not called ready."""
    from mlstack.adapters import s3
    from mlstack.errors import NotReady
    from mlstack.health import S3Probe, wait_ready
    from mlstack.project.context import Project as Stack

    project = seaweed_project
    assert project.cli(capsys, "up")[0] == 0
    stack = Stack.open(project.config)
    assert stack is not None
    bucket = project.config.storage.bucket
    s3.client(stack.s3()).put_object(Bucket=bucket, Key="runs/a.bin", Body=b"x" * 4096)
    lists, reads = S3Probe("storage", stack.s3()), S3Probe("storage", stack.s3(), read_from=bucket)
    lists.check()
    reads.check()

    # the bucket's volume files go while the server is down: the filer still lists the object
    storage = f"{project.name}-storage"
    engine.exec(storage, ["sh", "-c", f"rm -f /data/{bucket}_*.dat /data/{bucket}_*.idx"])
    engine.stop(storage, 10)
    engine.start(storage)
    wait_ready([lists], timeout=60)  # the restarted server answers listings
    assert s3.list_keys(stack.s3(), bucket) == ["runs/a.bin"]
    with pytest.raises(NotReady, match="S3 at"):
        reads.check()
