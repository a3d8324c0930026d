"""Time-to-ready of `mlstack up` against its critical path and against docker compose v2.

Run: .venv/bin/python benchmarks/time_to_ready.py [--runs 5] [--storage seaweedfs|minio]
(after scripts/engine and scripts/offline-images). Every figure is measured --runs times in one
session, interleaved, and printed as min / median / max with the ratios the project tracks.

- critical path: each service started alone from mlstack's own specs until a real request works
  (PostgreSQL: authenticated SELECT 1; S3: authenticated list_buckets; MLflow with its
  dependencies up: /health and an API call). floor = max(PostgreSQL, S3) + MLflow.
- mlstack: `up` cold (fresh volumes), `up` warm (volumes kept), `up` on a healthy stack, `status`,
  `down`, `--help`, each as the user runs it (a new process).
- baseline: `docker compose -f <mlstack's rendered file> up -d --wait` plus creating the bucket as a
  compose user must, then `docker compose down`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import yaml

from mlstack import labels
from mlstack.adapters import postgres, s3
from mlstack.commands.down import down
from mlstack.compose.render import write_rendered
from mlstack.config import StackConfig
from mlstack.engine.docker import DockerEngine as Engine
from mlstack.health import PostgresProbe, S3Probe, wait_ready
from mlstack.project.context import Project as Stack

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
results: dict[str, list[float]] = defaultdict(list)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def write_config(workdir: Path, storage: str, project: str) -> Path:
    images = "offline-images.yaml" if storage == "seaweedfs" else "offline-images-minio.yaml"
    data = yaml.safe_load((REPO / "tests" / images).read_text())
    p = free_ports(4)
    data["project"] = project
    data["storage"].update(port=p[0], console_port=p[1])
    data["postgres"]["port"] = p[2]
    data["mlflow"]["port"] = p[3]
    path = workdir / f"{project}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def timed(name: str, fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    seconds = time.perf_counter() - start
    results[name].append(seconds)
    return seconds


def cli(config: Path, *args: str) -> None:
    result = subprocess.run(
        [PY, "-m", "mlstack", "-c", str(config), *args], capture_output=True, text=True, check=False
    )
    if result.returncode not in (0, 11):
        raise SystemExit(f"mlstack {' '.join(args)} failed:\n{result.stderr}")


def load(path: Path) -> StackConfig:
    from mlstack.config import load_config

    return load_config(path, env={}).config


def critical_path(engine: Engine, config_path: Path, label: str) -> None:
    """Each service alone, from the specs `up` uses; volumes fresh on `cold`, kept on `warm`."""
    stack = Stack.open(load(config_path), create_secrets=True)
    assert stack is not None
    c = stack.config
    engine.ensure_network(stack.spec.network, stack.spec.labels)
    for volume in stack.spec.volume_names():
        engine.ensure_volume(volume, stack.spec.labels)

    def start_alone(name: str, probe: object) -> None:
        spec = stack.service(name)
        engine.remove(spec.container_name)
        engine.create(spec, stack.spec.network, [name, spec.container_name])
        engine.start(spec.container_name)
        wait_ready([probe], timeout=300, interval=0.05)  # type: ignore[list-item]

    pg = PostgresProbe("postgres", stack.postgres().on("postgres"))
    storage = S3Probe("storage", stack.s3())
    timed(f"critical {label}: postgres", lambda: start_alone("postgres", pg))
    timed(f"critical {label}: s3", lambda: start_alone("storage", storage))
    postgres.ensure_database(stack.postgres(), c.postgres.database)
    s3.ensure_bucket(stack.s3(), c.storage.bucket)
    timed(f"critical {label}: mlflow", lambda: start_alone("mlflow", stack.mlflow_probe()))
    for name in ("mlflow", "storage", "postgres"):
        spec = stack.service(name)
        engine.stop(spec.container_name, 20)
        engine.remove(spec.container_name)


def compose_baseline(engine: Engine, config_path: Path, workdir: Path) -> None:
    stack = Stack.open(load(config_path), create_secrets=True)
    assert stack is not None
    target = workdir / f"compose-{stack.config.project}"
    write_rendered(target, stack.config, stack.secrets)
    compose = shutil.which("docker-compose") or str(Path(PY).parent / "docker-compose")
    c = stack.config

    def up_and_bucket() -> None:
        subprocess.run(
            [compose, "up", "-d", "--wait", "--quiet-pull"],
            cwd=target,
            check=True,
            capture_output=True,
        )
        # what a compose user has to do by hand: create the bucket
        s3.client(stack.s3()).create_bucket(Bucket=c.storage.bucket)

    timed("compose up --wait + bucket (cold)", up_and_bucket)
    timed(
        "compose down",
        lambda: subprocess.run([compose, "down"], cwd=target, check=True, capture_output=True),
    )
    subprocess.run([compose, "down", "-v"], cwd=target, check=True, capture_output=True)
    down(stack.config, engine, purge=True)


def idle_memory(engine: Engine, project: str) -> dict[str, int]:
    found = engine.containers(labels.of_project(project))
    return {c.service: engine.memory_used(c.id) for c in found}


def summary() -> None:
    def med(name: str) -> float:
        return statistics.median(results[name])

    print(
        f"\n{'figure':44} {'min':>7} {'median':>7} {'max':>7}   (seconds, n={len(results['mlstack up cold'])})"
    )
    for name, values in results.items():
        print(f"{name:44} {min(values):7.2f} {statistics.median(values):7.2f} {max(values):7.2f}")
    floor_cold = max(med("critical cold: postgres"), med("critical cold: s3")) + med(
        "critical cold: mlflow"
    )
    floor_warm = max(med("critical warm: postgres"), med("critical warm: s3")) + med(
        "critical warm: mlflow"
    )
    print("\nratios (medians)")
    rows = [
        ("floor cold = max(pg, s3) + mlflow", floor_cold, None),
        ("floor warm", floor_warm, None),
        ("up cold / floor cold", med("mlstack up cold") / floor_cold, 1.10),
        ("up warm / floor warm", med("mlstack up warm") / floor_warm, 1.10),
        (
            "up cold / compose up --wait + bucket",
            med("mlstack up cold") / med("compose up --wait + bucket (cold)"),
            1.0,
        ),
        ("down / compose down", med("mlstack down") / med("compose down"), 1.0),
        ("no-op up (s)", med("mlstack up (no-op)"), 1.0),
        ("status (s)", med("mlstack status"), 0.5),
        ("--help (s)", med("mlstack --help"), 0.25),
    ]
    for name, value, target in rows:
        verdict = (
            "" if target is None else ("  ok" if value <= target else f"  over target {target}")
        )
        print(f"{name:44} {value:7.2f}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--storage", choices=["seaweedfs", "minio"], default="seaweedfs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mlstack-bench-"))
    os.environ["MLSTACK_STATE_DIR"] = str(workdir / "state")
    engine = Engine.connect()
    print(
        f"machine: {os.cpu_count()} cores; engine {engine._client.version().get('Version')}; "
        f"storage {args.storage}; runs {args.runs}"
    )
    memory: dict[str, int] = {}
    for i in range(args.runs):
        tag = uuid.uuid4().hex[:6]
        # critical path, cold then warm (same volumes)
        cp = write_config(workdir, args.storage, f"bench-cp-{tag}")
        critical_path(engine, cp, "cold")
        critical_path(engine, cp, "warm")
        down(load(cp), engine, purge=True)
        # docker compose v2 on mlstack's rendered file, same images
        compose_baseline(engine, write_config(workdir, args.storage, f"bench-co-{tag}"), workdir)
        # mlstack as users run it
        ms = write_config(workdir, args.storage, f"bench-ms-{tag}")
        timed("mlstack up cold", cli, ms, "up")
        timed("mlstack up (no-op)", cli, ms, "up")
        timed("mlstack status", cli, ms, "status")
        if i == 0:
            time.sleep(5)  # let the services settle before reading idle memory
            memory = idle_memory(engine, load(ms).project)
        timed("mlstack down", cli, ms, "down")
        timed("mlstack up warm", cli, ms, "up")
        timed(
            "mlstack --help",
            lambda: subprocess.run(
                [PY, "-m", "mlstack", "--help"], capture_output=True, check=True
            ),
        )
        cli(ms, "down", "--purge", "--yes")
        print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    summary()
    print(
        "\nidle memory (MiB): "
        + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in sorted(memory.items()))
        + f"; total {sum(memory.values()) / 2**20:.0f}"
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
