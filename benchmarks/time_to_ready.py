"""Time-to-ready of `mlstack up` against MLflow's own start and against docker compose v2.

Run: .venv/bin/python benchmarks/time_to_ready.py [--runs 5] [--storage seaweedfs|minio]
(after scripts/engine and scripts/offline-images). Every figure is measured --runs times in one
session, interleaved, and printed as min / median / max with the ratios the project tracks.

- critical path: each service started alone from mlstack's own specs until a real request works
  (PostgreSQL: authenticated SELECT 1; S3: authenticated list_buckets; MLflow with its
  dependencies up: /health and an API call). MLflow twice: started the stock way (`mlflow server
  ...`, which imports the server twice) and through mlstack's launcher alone (one import and the
  migrations: the floor of what `up` can reach); cold on a fresh database, warm on a kept one.
- mlstack: `up` cold (fresh volumes), `up` warm (volumes kept), `up` on a healthy stack, `status`,
  `down`, `--help`, `serve` (to /ping) and `demo --runs 1`, each as the user runs it (a new process).
- baselines: `docker compose -f <mlstack's rendered file> up -d --wait` plus creating the bucket as a
  compose user must, then `docker compose down`; `mlflow models serve` alone in the same image, on
  the same model, to /ping; importing mlflow and scikit-learn on the host (the demo's fixed cost).
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
from dataclasses import replace
from pathlib import Path

import yaml

from mlstack import labels
from mlstack.adapters import postgres, s3
from mlstack.adapters.registry import ResolvedModel
from mlstack.commands.down import down
from mlstack.commands.serve import serve_spec
from mlstack.compose.render import write_rendered
from mlstack.config import StackConfig
from mlstack.engine import ServiceSpec
from mlstack.engine.docker import DockerEngine as Engine
from mlstack.health import HttpProbe, PostgresProbe, S3Probe, wait_ready
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


def _start_alone(engine: Engine, stack: Stack, spec: ServiceSpec, probe: object) -> None:
    engine.remove(spec.container_name)
    engine.create(spec, stack.spec.network, [spec.name, spec.container_name])
    engine.start(spec.container_name)
    wait_ready([probe], timeout=300, interval=0.05)  # type: ignore[list-item]


def critical_path(engine: Engine, config_path: Path, label: str) -> None:
    """Each service alone, from the specs `up` uses; volumes fresh on `cold`, kept on `warm`."""
    stack = Stack.open(load(config_path), create_secrets=True)
    assert stack is not None
    c = stack.config
    engine.ensure_network(stack.spec.network, stack.spec.labels)
    for volume in stack.spec.volume_names():
        engine.ensure_volume(volume, stack.spec.labels)
    pg = PostgresProbe("postgres", stack.postgres().on("postgres"))
    storage = S3Probe("storage", stack.s3())
    timed(f"critical {label}: postgres", _start_alone, engine, stack, stack.service("postgres"), pg)
    timed(f"critical {label}: s3", _start_alone, engine, stack, stack.service("storage"), storage)
    postgres.ensure_database(stack.postgres(), c.postgres.database)
    s3.ensure_bucket(stack.s3(), c.storage.bucket)
    launcher = stack.service("mlflow")
    assert launcher.command is not None and launcher.command[:2] == ("python", "-c")
    stock = replace(launcher, command=("mlflow", *launcher.command[3:]))
    for name, spec in (("stock", stock), ("launcher alone", launcher)):
        if label == "cold" and name != "stock":
            postgres.recreate_database(stack.postgres(), c.postgres.database)  # fresh again
        probe = stack.mlflow_probe()
        timed(f"critical {label}: mlflow {name}", _start_alone, engine, stack, spec, probe)
        engine.stop(spec.container_name, 10)
    for name in ("mlflow", "storage", "postgres"):
        spec = stack.service(name)
        engine.stop(spec.container_name, 20)
        engine.remove(spec.container_name)


def serve_baseline(engine: Engine, config_path: Path) -> None:
    """`mlflow models serve` alone (the stock command) on the demo's model, to /ping."""
    stack = Stack.open(load(config_path))
    assert stack is not None
    port = free_ports(1)[0]
    model = ResolvedModel(uri="", served_uri="models:/mlstack-demo/1", artifact_location="")
    spec = serve_spec(stack, "bench-stock", port, model)
    assert spec.command is not None and spec.command[:2] == ("python", "-c")
    spec = replace(spec, command=("mlflow", *spec.command[3:]))
    probe = HttpProbe("serve", f"http://127.0.0.1:{port}/ping")
    timed("mlflow models serve alone (to /ping)", _start_alone, engine, stack, spec, probe)
    engine.remove(spec.container_name)


def compose_baseline(engine: Engine, config_path: Path, workdir: Path, *, stock: bool) -> None:
    """docker compose v2 on mlstack's rendered file; with `stock`, its MLflow started the way a
    hand-written compose file starts it (`mlflow server ...`), not through mlstack's launcher."""
    stack = Stack.open(load(config_path), create_secrets=True)
    assert stack is not None
    target = workdir / f"compose-{stack.config.project}"
    write_rendered(target, stack.config, stack.secrets)
    name = "stock mlflow server" if stock else "mlstack's file"
    if stock:
        document = yaml.safe_load((target / "docker-compose.yml").read_text())
        command = document["services"]["mlflow"]["command"]
        document["services"]["mlflow"]["command"] = ["mlflow", *command[3:]]
        (target / "docker-compose.yml").write_text(yaml.safe_dump(document, sort_keys=False))
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

    timed(f"compose up --wait + bucket (cold, {name})", up_and_bucket)
    timed(
        f"compose down ({name})",
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
    mlflow_cold, mlflow_warm = (
        med("critical cold: mlflow stock"),
        med("critical warm: mlflow stock"),
    )
    print("\nratios (medians)")
    rows = [
        ("up cold / MLflow alone cold (stock)", med("mlstack up cold") / mlflow_cold, 1.0),
        (
            "up cold / compose up --wait + bucket (stock)",
            med("mlstack up cold") / med("compose up --wait + bucket (cold, stock mlflow server)"),
            0.55,
        ),
        (
            "up cold / compose up on mlstack's own file",
            med("mlstack up cold") / med("compose up --wait + bucket (cold, mlstack's file)"),
            None,
        ),
        ("up warm / MLflow alone warm (stock)", med("mlstack up warm") / mlflow_warm, 1.0),
        (
            "launcher alone / stock, cold",
            med("critical cold: mlflow launcher alone") / mlflow_cold,
            None,
        ),
        (
            "launcher alone / stock, warm",
            med("critical warm: mlflow launcher alone") / mlflow_warm,
            None,
        ),
        (
            "down / compose down",
            med("mlstack down") / med("compose down (stock mlflow server)"),
            1.0,
        ),
        ("no-op up (s)", med("mlstack up (no-op)"), 0.5),
        ("status (s)", med("mlstack status"), 0.5),
        ("--help (s)", med("mlstack --help"), 0.25),
        (
            "serve / mlflow models serve alone",
            med("mlstack serve (to /ping)") / med("mlflow models serve alone (to /ping)"),
            1.1,
        ),
        (
            "demo fixed cost: host imports / demo --runs 1",
            med("import mlflow + sklearn (host)") / med("mlstack demo --runs 1"),
            None,
        ),
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
        # docker compose v2 on mlstack's rendered file, same images: its MLflow started the
        # stock way (as a hand-written compose file does), and as mlstack renders it
        for stock in (True, False):
            co = write_config(workdir, args.storage, f"bench-co-{tag}-{int(stock)}")
            compose_baseline(engine, co, workdir, stock=stock)
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
        timed("mlstack demo --runs 1", cli, ms, "demo", "--runs", "1")
        timed(
            "import mlflow + sklearn (host)",
            lambda: subprocess.run([PY, "-c", "import mlflow, sklearn"], check=True),
        )
        timed("mlstack serve (to /ping)", cli, ms, "serve", "models:/mlstack-demo@champion")
        cli(ms, "serve", "--stop", "mlstack-demo")
        serve_baseline(engine, ms)
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
