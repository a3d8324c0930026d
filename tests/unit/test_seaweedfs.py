"""How the stack runs SeaweedFS: only S3 beyond the container's loopback, two processes under a
shell that stops both. The shell script runs here with a stand-in `weed` on PATH."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from mlstack.compose.render import render_compose
from mlstack.compose.services import from_compose
from mlstack.config import load_config
from mlstack.credentials import StackSecrets
from mlstack.engine import ServiceSpec
from mlstack.labels import SPEC_HASH

SECRETS = StackSecrets("mlflow", "pw" * 16, "AKEY" * 5, "s" * 40, "admin", "adminpw" * 5, "f" * 48)

# A stand-in for `weed ROLE ...`: says when it is up (with its pid) and when SIGTERM stops it.
FAKE_WEED = """\
#!/bin/sh
role=$2
trap 'echo "$role stopped" >> "$WEED_LOG"; exit 0' TERM
echo "$role up $$" >> "$WEED_LOG"
while :; do sleep 0.1; done
"""


def storage(engine: str = "seaweedfs") -> ServiceSpec:
    cfg = load_config(env={}, sets=[f"storage.engine={engine}"]).config
    return from_compose(render_compose(cfg), SECRETS.as_env()).services["storage"]


def test_only_s3_binds_beyond_loopback() -> None:
    spec = storage()
    assert spec.entrypoint == ("/bin/sh", "-c")
    assert spec.command is not None and len(spec.command) == 1
    lines = spec.command[0].splitlines()
    mini = next(line.split() for line in lines if " mini " in line)
    s3 = next(line.split() for line in lines if " s3 " in line)
    assert {"-ip=127.0.0.1", "-ip.bind=127.0.0.1"} <= set(mini)
    # nothing of mini's own that would serve others: S3, WebDAV, Iceberg, Lance, admin UI
    assert {"-s3=false", "-webdav=false", "-admin.ui=false"} <= set(mini)
    assert {"-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"} <= set(mini)
    assert {"-ip.bind=0.0.0.0", "-port=8333", "-filer=127.0.0.1:8888"} <= set(s3)
    assert {"-port.iceberg=0", "-port.lance=0"} <= set(s3)
    # compose's `$$` reaches the shell as `$`
    assert "core=$!" in lines and "$$" not in spec.command[0]
    assert spec.port_for(8333) is not None
    assert spec.healthcheck is not None and "http://127.0.0.1:8333/healthz" in spec.healthcheck.test


def test_minio_keeps_its_image_entrypoint() -> None:
    assert storage("minio").entrypoint is None


def test_an_unset_entrypoint_keeps_the_spec_hash_of_earlier_releases() -> None:
    """Specs without an entrypoint hash as before the field existed: `up` after an upgrade
    keeps their containers."""
    spec = storage("minio")
    unlabelled = replace(spec, labels={k: v for k, v in spec.labels.items() if k != SPEC_HASH})
    payload = asdict(unlabelled)
    del payload["spec_hash"], payload["entrypoint"]
    earlier = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert spec.spec_hash == earlier
    assert replace(unlabelled, entrypoint=("/bin/sh", "-c")).with_hash().spec_hash != earlier


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The storage command's shell running two fake weeds; all killed afterwards, pass or fail."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    weed = bin_dir / "weed"
    weed.write_text(FAKE_WEED)
    weed.chmod(0o755)
    log = tmp_path / "weed.log"
    log.touch()
    command = storage().command
    assert command is not None
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "WEED_LOG": str(log)}
    shell = subprocess.Popen(
        ["/bin/sh", "-c", command[0]], env=env, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 20
        while len([line for line in log.read_text().splitlines() if " up " in line]) < 2:
            assert time.monotonic() < deadline, f"the fake weeds did not start: {log.read_text()}"
            time.sleep(0.05)
        yield shell, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)  # the shell's group: it and both fake weeds
        shell.wait()
        assert shell.stderr is not None
        shell.stderr.close()


def pid_of(log: Path, role: str) -> int:
    return int(
        next(line for line in log.read_text().splitlines() if line.startswith(role)).split()[2]
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_shell_stops_both_processes(
    supervisor: tuple[subprocess.Popen[bytes], Path], signum: int
) -> None:
    shell, log = supervisor
    shell.send_signal(signum)
    assert shell.wait(timeout=20) == 0
    stopped = sorted(line for line in log.read_text().splitlines() if "stopped" in line)
    assert stopped == ["mini stopped", "s3 stopped"]


@pytest.mark.parametrize(("dies", "other"), [("s3", "mini"), ("mini", "s3")])
def test_one_process_ending_ends_the_container(
    supervisor: tuple[subprocess.Popen[bytes], Path], dies: str, other: str
) -> None:
    shell, log = supervisor
    os.kill(pid_of(log, dies), signal.SIGKILL)
    # non-zero: the restart policy starts both again
    assert shell.wait(timeout=20) == 1
    assert shell.stderr is not None
    assert "a weed process ended" in shell.stderr.read().decode()
    assert f"{other} stopped" in log.read_text().splitlines()
