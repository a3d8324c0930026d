"""`mlstack up` and `status` against a remote engine, next to the local one, in one run.

Run: .venv/bin/python benchmarks/remote_engine.py [--status-runs 3]
(after scripts/engine and scripts/offline-images; needs the dind image). It starts the test
server of tests/integration/remote_server.py (a Docker-in-Docker container on this machine,
reached at its bridge address) and loads the offline images into it. Then for each way (the
local engine; ssh://root@IP through the system's ssh client; tcp://IP:2376 with TLS) it runs,
as a user runs them (a new process each time): `up` on nothing, `status --json` N times on the
healthy stack, `down --purge --yes`. A remote stack is bound to 0.0.0.0 with auth: MLflow is
reached at the server's address, PostgreSQL and S3 through the engine's relay. Prints seconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test server's helpers

from tests.integration.remote_server import RemoteServer, remote_server  # noqa: E402

from mlstack.engine.docker import DockerEngine  # noqa: E402

LABELS = {"org.mlstack-tests.session": f"bench-{uuid.uuid4().hex[:8]}"}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def config_file(directory: Path, name: str, remote: bool) -> Path:
    data = yaml.safe_load((REPO / "tests" / "offline-images.yaml").read_text())
    data.update(project=name, labels=LABELS)
    ports = free_ports(3)
    data["storage"]["port"], data["postgres"]["port"], data["mlflow"]["port"] = ports
    if remote:
        data.update(bind="0.0.0.0", auth=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def mlstack(config: Path, env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mlstack", "-c", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"mlstack {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return took


def local_env(home: Path) -> dict[str, str]:
    """A user's environment for the local engine: no DOCKER_* or MLSTACK_* of this shell, this
    checkout's mlstack, state under `home`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "MLSTACK_"))}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), base.get("PYTHONPATH")]))
    base["MLSTACK_STATE_DIR"] = str(home / "state")
    return base


def ways(server: RemoteServer, home: Path) -> dict[str, dict[str, str]]:
    base = local_env(home)
    ssh_path = f"{server.ssh_path}{os.pathsep}{base['PATH']}"
    return {
        "local": base,
        "ssh": {**base, "DOCKER_HOST": server.ssh_url, "PATH": ssh_path},
        "tcp+TLS": {**base, **server.tls_env()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--status-runs", type=int, default=3)
    args = parser.parse_args()
    outer = DockerEngine.connect()
    images = yaml.safe_load((REPO / "tests" / "offline-images.yaml").read_text())
    refs = [images[s]["image"] for s in ("postgres", "storage", "mlflow")]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        started = time.monotonic()
        with remote_server(outer._api, home, LABELS) as server:
            server.load_images(outer, refs)
            print(f"server up, images loaded: {time.monotonic() - started:.1f} s")
            print(f"{'way':<20}{'up':>8}{'status (median)':>18}{'down --purge':>14}")
            for way, env in ways(server, home).items():
                name = f"bench-{uuid.uuid4().hex[:6]}"
                config = config_file(home, name, remote=way != "local")
                up = mlstack(config, env, "up")
                status = [mlstack(config, env, "status", "--json") for _ in range(args.status_runs)]
                purge = mlstack(config, env, "down", "--purge", "--yes")
                print(f"{way:<20}{up:>8.1f}{statistics.median(status):>18.2f}{purge:>14.1f}")
    outer.close()


if __name__ == "__main__":
    main()
