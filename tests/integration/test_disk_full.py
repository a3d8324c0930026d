"""A full disk on the real engine: a client gets an error, `status` names it with the fix, nothing
acknowledged is lost, and once there is room again the stack works without a restart by hand.

The service's volume is made by the test before `up`, as a user's pre-made volume with mlstack's
labels, which `up` adopts as it is: a small ext4 file system on a loop device. (Not a tmpfs: a
tmpfs volume is emptied whenever its container stops, and PostgreSQL stopped by a full WAL is
restarted by Docker's restart policy onto an empty data directory.) The volume is filled and freed
by a throwaway container that mounts it, which works whether the service runs or crash-loops.
Nothing else is touched: no `up`, no `docker restart` after the fill.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mlstack import labels
from mlstack.engine.docker import DockerEngine as Engine
from mlstack.errors import ExitCode
from mlstack.project.context import Project as Stack

from .conftest import SESSION, SESSION_LABEL, Project, run_client, skip_or_fail
from .test_faults import client_env, log_runs, read_back

# Room for what `up` and the runs before the fill put there (a fresh PostgreSQL cluster alone
# takes ~46 MiB), and little more.
SIZES = {"postgres": "160M", "storage": "96M"}
FILLER = "mlstack-test-filler"
RECOVERY_BOUND = 240.0  # seconds: a bound on waiting, not a measured expectation
CASES = {  # case: (service, what the client logs)
    "storage": ("storage", "artifact"),
    "postgres": ("postgres", "metric"),
    "postgres-wal": ("postgres", "metric"),  # its WAL needs a new segment: PANIC, restarts
}

# argv: mode (metric | artifact | check), run id, tag, count, output dir, [acknowledged JSON]
# metric: `count` batches of 1000 metric points; artifact: `count` files of 1 MiB. It stops at
# the first error and prints what was acknowledged before it, the error, and the seconds it took.
# check: what the server gives back for what `metric`/`artifact` acknowledged.
CLIENT = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mode, run_id, tag, count, out = sys.argv[1:6]
    client, started, done, error = MlflowClient(), time.monotonic(), [], ""

    def sha(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    if mode == "check":
        acked, seen = json.loads(sys.argv[6]), []
        for item in acked:
            if "points" in item:
                seen.append({"key": item["key"], "points": len(client.get_metric_history(run_id, item["key"]))})
            else:
                local = client.download_artifacts(run_id, item["path"], out)
                seen.append({"path": item["path"], "sha": sha(local)})
        print(json.dumps(seen))
        sys.exit(0)
    for i in range(int(count)):
        try:
            if mode == "metric":
                key, now = f"{tag}-{i}", int(time.time() * 1000)
                client.log_batch(run_id, metrics=[Metric(key, float(s), now, s) for s in range(1000)])
                done.append({"key": key, "points": 1000})
            else:
                path = os.path.join(out, f"{tag}-{i}.bin")
                with open(path, "wb") as f:
                    f.write(os.urandom(1 << 20))
                client.log_artifact(run_id, path, tag)
                done.append({"path": f"{tag}/{tag}-{i}.bin", "sha": sha(path)})
        except Exception as e:
            error = " ".join(str(e).split())[:600]
            break
    print(json.dumps({"acknowledged": done, "error": error, "seconds": time.monotonic() - started}))
    """
)


def client(env: dict[str, str], *args: str, timeout: float = 240) -> Any:
    """The client above as its own process: each request gives up after 30 s, retried once."""
    done = run_client(["-c", CLIENT, *args], {**env, "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}, timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@contextmanager
def small_disk(image: Path, size: str) -> Iterator[str]:
    """An ext4 file system of `size` in a file, on a loop device: the device's path. Detached
    at the end (the kernel lets go of it once Docker has unmounted the volume)."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "debugfs")):
        skip_or_fail("a small file system on a loop device needs root, losetup and e2fsprogs")
    _run("truncate", "-s", size, str(image))
    _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))  # no blocks reserved for root
    _run("debugfs", "-w", "-R", "rmdir lost+found", str(image))  # initdb wants an empty dir
    device = _run("losetup", "--find", "--show", str(image)).strip()
    try:
        yield device
    finally:
        _run("losetup", "-d", device)
        image.unlink()


def premade_volume(engine: Engine, project: Project, service: str, device: str) -> str:
    """The service's volume, made before `up` as a user would, on `device`: its name."""
    stack = Stack.open(project.config, create_secrets=True, save=False)
    assert stack is not None
    ((name, _),) = stack.service(service).volumes
    engine._api.create_volume(
        name=name,
        driver="local",
        driver_opts={"type": "ext4", "device": device},
        labels={labels.PROJECT: project.name, SESSION_LABEL: SESSION},
    )
    return name


def on_volume(engine: Engine, project: Project, volume: str, script: str) -> str:
    """`sh -c SCRIPT` in a throwaway container (the stack's PostgreSQL image) with the volume at
    /v: its output."""
    output = engine._client.containers.run(
        project.config.postgres.image,
        ["-c", script],
        entrypoint=["sh"],
        volumes={volume: {"bind": "/v", "mode": "rw"}},
        network_mode="none",
        labels={SESSION_LABEL: SESSION},
        remove=True,
    )
    return bytes(output).decode()


def fill(engine: Engine, project: Project, volume: str) -> str:
    """Write a filler file until the volume has no room left: df's line for it."""
    out = on_volume(
        engine, project, volume, f"dd if=/dev/zero of=/v/{FILLER} bs=1M 2>&1; df -Pk /v"
    )
    assert "No space left on device" in out, out  # dd stopped because the volume is full
    line = out.strip().splitlines()[-1]
    assert int(line.split()[3]) < 1024, out
    return line


def say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """What the test saw, on the terminal with -s (the CLI's own output is captured)."""
    with capsys.disabled():
        print(text)


def status_json(project: Project, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code, out, _ = project.cli(capsys, "status", "--json")
    return code, json.loads(out)


def wait_until_logging_works(
    env: dict[str, str], kind: str, run_id: str, out: Path
) -> tuple[float, list[dict[str, Any]], list[str]]:
    """Try to log once every few seconds until it works: (seconds it took, what it
    acknowledged, the errors before)."""
    start = time.monotonic()
    errors = []
    while True:
        tried = client(env, kind, run_id, "after", "1", str(out))
        if not tried["error"]:
            return time.monotonic() - start, tried["acknowledged"], errors
        errors.append(tried["error"])
        assert time.monotonic() - start < RECOVERY_BOUND, f"still failing: {errors[-3:]}"
        time.sleep(2)


def wait_until_healthy(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    while True:
        code, result = status_json(project, capsys)
        if code == 0:
            return
        assert time.monotonic() - start < RECOVERY_BOUND, json.dumps(result, indent=1)
        time.sleep(2)


def switch_wal(engine: Engine, project: Project) -> None:
    """Make PostgreSQL start a new WAL segment: its next write needs a new 16 MiB file."""
    user = project.secrets.POSTGRES_USER
    code, out = engine.exec(
        f"{project.name}-postgres",
        ["psql", "-U", user, "-d", "mlflow", "-c", "SELECT pg_switch_wal()"],
    )
    assert code == 0, out


@pytest.mark.parametrize("case", list(CASES))
def test_a_full_volume_is_named_and_heals_by_itself(
    case: str,
    seaweed_project: Project,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    project, (service, kind) = seaweed_project, CASES[case]
    container = f"{project.name}-{service}"
    with small_disk(tmp_path / "disk.img", SIZES[service]) as device:
        volume = premade_volume(engine, project, service, device)
        code, _, err = project.cli(capsys, "up")
        assert code == 0, err
        mounts = engine._api.inspect_container(container)["Mounts"]
        assert [m["Name"] for m in mounts] == [volume]
        assert engine._api.inspect_volume(volume)["Options"]["device"] == device  # adopted
        env = client_env(project, capsys)
        acknowledged = log_runs(env, "before-full", 3, tmp_path / "written")
        run_id = next(iter(acknowledged))
        restarts = engine._api.inspect_container(container)["RestartCount"]

        df_line = fill(engine, project, volume)
        if case == "postgres-wal":
            switch_wal(engine, project)
        (tmp_path / "full").mkdir()
        tried = client(env, kind, run_id, "full", "30", str(tmp_path / "full"))
        assert tried["error"], tried  # the client was told, within its bounded time
        say(
            capsys,
            f"\n{case}: filled ({df_line}); the client's error after {tried['seconds']:.1f} s "
            f"and {len(tried['acknowledged'])} acknowledged writes: {tried['error']}",
        )

        code, result = status_json(project, capsys)
        rows = {row["service"]: row for row in result["services"]}
        text = project.cli(capsys, "status")[1]
        say(capsys, text)
        assert code == ExitCode.DEGRADED, rows
        row = rows[service]
        assert "no space left" in f"{row['problem']} {row['cause']}", row
        assert "disk is full" in row["cause"], row
        assert "free space" in row["fix"] and "no restart" in row["fix"], row
        assert f"{service}: " in text and "fix: free space" in text

        freed = time.monotonic()
        on_volume(engine, project, volume, f"rm /v/{FILLER}")
        (tmp_path / "after").mkdir()
        took, after, errors = wait_until_logging_works(env, kind, run_id, tmp_path / "after")
        wait_until_healthy(project, capsys)
        now = engine._api.inspect_container(container)["RestartCount"]
        say(
            capsys,
            f"{case}: a client logged again {took:.1f} s after the space came back "
            f"({len(errors)} failed tries before), status healthy after "
            f"{time.monotonic() - freed:.1f} s; restarts by Docker's policy: {now - restarts}",
        )

        read_back(env, acknowledged, tmp_path / "read")
        (tmp_path / "check").mkdir()
        kept = [*tried["acknowledged"], *after]
        seen = client(env, "check", run_id, "-", "0", str(tmp_path / "check"), json.dumps(kept))
        assert seen == [
            {"key": k["key"], "points": 1000}
            if "key" in k
            else {"path": k["path"], "sha": k["sha"]}
            for k in kept
        ]
