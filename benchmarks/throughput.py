"""Throughput of the tracking server under load, by `mlflow.workers`.

Run: .venv/bin/python benchmarks/throughput.py [--workers 1 2 4] [--clients 8]
(after scripts/engine and scripts/offline-images). For each worker count: a fresh stack
(SeaweedFS, the offline images), its idle memory, then `--clients` client processes started
together (each with only what `mlstack env` prints), each logging one run: 200 `log_metric`
calls, one `log_batch` of 1,000 metrics and a 4 MB artifact. Reported: logging calls per second
over all clients (from the common start to the last client done), the median `log_metric`
latency, and the MLflow container's memory idle and right after the load.
"""

from __future__ import annotations

import argparse
import json
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

from mlstack import labels
from mlstack.engine.docker import DockerEngine

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
METRICS, BATCH, ARTIFACT_MB = 200, 1000, 4

CLIENT = f"""
import json, os, statistics, sys, tempfile, time
import mlflow
from mlflow.entities import Metric
start_at = float(sys.argv[1])
path = os.path.join(tempfile.mkdtemp(), "blob.bin")
with open(path, "wb") as f:
    f.write(os.urandom({ARTIFACT_MB} << 20))
client = mlflow.MlflowClient()
while time.time() < start_at:
    time.sleep(0.01)
began = time.time()
run = client.create_run("0")  # the Default experiment
latencies = []
for step in range({METRICS}):
    t = time.perf_counter()
    client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
    latencies.append(time.perf_counter() - t)
now = int(time.time() * 1000)
client.log_batch(run.info.run_id, metrics=[Metric("m", float(i), now, i) for i in range({BATCH})])
client.log_artifact(run.info.run_id, path)
client.set_terminated(run.info.run_id)
print(json.dumps({{"began": began, "ended": time.time(), "calls": {METRICS} + 4,
                  "metric_p50": statistics.median(latencies)}}))
"""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def mlstack(config: Path, *args: str) -> str:
    done = subprocess.run(
        [PY, "-m", "mlstack", "-c", str(config), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"mlstack {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def memory(engine: DockerEngine, project: str) -> float:
    found = engine.containers({labels.PROJECT: project, labels.SERVICE: "mlflow"})
    return engine.memory_used(found[0].id) / 2**20


def one(engine: DockerEngine, workdir: Path, workers: int, clients: int) -> dict[str, float]:
    project = f"bench-tp-{uuid.uuid4().hex[:6]}"
    data = yaml.safe_load((REPO / "tests" / "offline-images.yaml").read_text())
    storage, console, pg, tracking = free_ports(4)
    data.update(project=project)
    data["storage"].update(port=storage, console_port=console)
    data["postgres"]["port"] = pg
    data["mlflow"].update(port=tracking, workers=workers)
    config = workdir / f"{project}.yaml"
    config.write_text(yaml.safe_dump(data))
    mlstack(config, "up")
    try:
        env = {**os.environ, **json.loads(mlstack(config, "env", "--format", "json"))}
        env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        time.sleep(5)
        idle = memory(engine, project)
        start_at = time.time() + 12  # every client has imported mlflow by then
        procs = [
            subprocess.Popen(
                [PY, "-c", CLIENT, str(start_at)], env=env, stdout=subprocess.PIPE, text=True
            )
            for _ in range(clients)
        ]
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            if proc.returncode != 0:
                sys.exit(f"a client failed with code {proc.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        loaded = memory(engine, project)
    finally:
        mlstack(config, "down", "--purge", "--yes")
    wall = max(r["ended"] for r in results) - start_at
    calls = sum(r["calls"] for r in results)
    return {
        "calls/s": calls / wall,
        "wall s": wall,
        "log_metric p50 ms": 1000 * statistics.median(r["metric_p50"] for r in results),
        "idle MiB": idle,
        "after load MiB": loaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mlstack-tp-"))
    os.environ["MLSTACK_STATE_DIR"] = str(workdir / "state")
    engine = DockerEngine.connect()
    print(
        f"machine: {os.cpu_count()} cores; {args.clients} clients, each one run: "
        f"{METRICS} log_metric, a log_batch of {BATCH}, a {ARTIFACT_MB} MB artifact"
    )
    rows = {w: one(engine, workdir, w, args.clients) for w in args.workers}
    columns = list(next(iter(rows.values())))
    print(f"\n{'workers':>8} " + " ".join(f"{c:>18}" for c in columns))
    for workers, row in rows.items():
        print(f"{workers:>8} " + " ".join(f"{row[c]:>18.1f}" for c in columns))


if __name__ == "__main__":
    main()
