"""A tracking client for the fault tests, run as its own process with only `mlstack env`'s variables.

    python faults_client.py write EXPERIMENT COUNT OUT_DIR   logs COUNT runs; prints what was acknowledged
    python faults_client.py read MANIFEST_JSON OUT_DIR       prints what the server gives back for them

Each run has params, a 5-step metric history and one artifact of random bytes; "acknowledged" means every
call for the run returned without error, so the server has promised to keep it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write(experiment: str, count: int, out: str) -> dict[str, dict[str, object]]:
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    acknowledged: dict[str, dict[str, object]] = {}
    for i in range(count):
        run = client.create_run(experiment_id, run_name=f"{experiment}-{i}")
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        params = {"index": str(i), "experiment": experiment}
        history = [[step, round(1.0 / (i + step + 1), 6)] for step in range(5)]
        client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in params.items()],
            metrics=[Metric("loss", value, now + step, step) for step, value in history],
        )
        path = os.path.join(out, f"blob-{i}.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(1024 + (i * 4099) % 65536))
        client.log_artifact(run_id, path)
        client.set_terminated(run_id)
        acknowledged[run_id] = {"params": params, "loss": history, "sha": _sha(path)}
    return acknowledged


def read(manifest: dict[str, dict[str, object]], out: str) -> dict[str, dict[str, object]]:
    client = MlflowClient()
    seen: dict[str, dict[str, object]] = {}
    for run_id in manifest:
        run = client.get_run(run_id)
        history = client.get_metric_history(run_id, "loss")
        name = next(a.path for a in client.list_artifacts(run_id) if a.path.startswith("blob-"))
        local = client.download_artifacts(run_id, name, os.path.join(out, run_id))
        seen[run_id] = {
            "params": dict(run.data.params),
            "loss": [[m.step, m.value] for m in sorted(history, key=lambda m: m.step)],
            "sha": _sha(local),
        }
    return seen


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "write":
        result = write(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        with open(sys.argv[2]) as f:
            result = read(json.load(f), sys.argv[3])
    print(json.dumps(result))
