"""Clients that write runs to a stack and take a snapshot of everything it holds, for comparing
a stack before and after a backup/restore or an MLflow upgrade. Each runs in its own process
with only the tracking URI (as a user's script would)."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from .conftest import Project, client_json, client_process_env

# argv: experiment, runs, MB of random artifact per run, output dir
WRITER = textwrap.dedent(
    """
    import json, os, sys
    import mlflow
    from mlflow import MlflowClient

    experiment, runs, mb, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    mlflow.set_experiment(experiment)
    ids = []
    for i in range(runs):
        with mlflow.start_run(run_name=f"run-{i}") as run:
            mlflow.log_params({"i": i, "lr": 0.1 * (i + 1)})
            for step in range(5):
                mlflow.log_metric("loss", 1.0 / (step + 1 + i), step=step)
            mlflow.set_tags({"team": "mlstack", "index": str(i)})
            path = os.path.join(out, f"data-{i}.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(int(mb * 1024 * 1024)))
            mlflow.log_artifact(path, artifact_path="data")
            mlflow.log_text(f"notes of run {i}", "notes.txt")
            ids.append(run.info.run_id)
    client = MlflowClient()
    name = experiment + "-model"
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    last = client.get_run(ids[-1])
    client.create_model_version(name, source=last.info.artifact_uri + "/data", run_id=ids[-1])
    print(json.dumps({"run_ids": ids}))
    """
)

SNAPSHOT = textwrap.dedent(
    """
    import hashlib, json, os, sys, tempfile
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    snap = {"experiments": [], "runs": {}, "models": {}}
    for exp in sorted(client.search_experiments(), key=lambda e: e.name):
        snap["experiments"].append([exp.name, exp.experiment_id, exp.artifact_location])
        for run in client.search_runs([exp.experiment_id]):
            artifacts = {}
            todo = [None]
            while todo:  # one file at a time: the server has a single worker
                for item in client.list_artifacts(run.info.run_id, todo.pop()):
                    if item.is_dir:
                        todo.append(item.path)
                        continue
                    local = mlflow.artifacts.download_artifacts(
                        run_id=run.info.run_id, artifact_path=item.path, dst_path=tempfile.mkdtemp()
                    )
                    with open(local, "rb") as f:
                        artifacts[item.path] = hashlib.sha256(f.read()).hexdigest()
            history = client.get_metric_history(run.info.run_id, "loss")
            snap["runs"][run.info.run_id] = {
                "experiment": exp.name,
                "name": run.info.run_name,
                "status": run.info.status,
                "params": run.data.params,
                "metrics": run.data.metrics,
                "history": sorted((m.step, m.value) for m in history),
                "tags": {k: v for k, v in run.data.tags.items()},
                "artifacts": artifacts,
            }
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        snap["models"][model.name] = sorted([v.version, v.run_id, v.source] for v in versions)
    print(json.dumps(snap, sort_keys=True))
    """
)


def client_env(project: Project) -> dict[str, str]:
    """What `mlstack env` prints (the tracking URI, artifacts kept proxied), and PATH/HOME."""
    from mlstack.adapters.mlflow_env import client_env as stack_env

    return client_process_env(stack_env(project.config, None).variables)


def python(code: str, args: list[str], env: dict[str, str]) -> Any:
    return client_json(["-c", code, *args], env)


def write_runs(project: Project, experiment: str, runs: int, mb: float, out: str) -> list[str]:
    ids = python(WRITER, [experiment, str(runs), str(mb), out], client_env(project))["run_ids"]
    assert len(ids) == runs
    return list(ids)


def snapshot(project: Project) -> dict[str, Any]:
    snap = python(SNAPSHOT, [], client_env(project))
    assert isinstance(snap, dict)
    return snap


def cli_ok(project: Project, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    code, out, err = project.cli(capsys, *args)
    assert code == 0, err
    return out, err
