"""`mlstack gc` on the real engine: MLflow's own gc removes the runs deleted in MLflow, their rows
and their objects in the bucket, and nothing else."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from mlstack.adapters.postgres import connect
from mlstack.project.context import Project as Stack

from .conftest import Project
from .mlflow_data import cli_ok, client_env, python, snapshot, write_runs

DELETE_RUNS = textwrap.dedent(
    """
    import json, sys
    from mlflow import MlflowClient

    client = MlflowClient()
    for run_id in sys.argv[1:]:
        client.delete_run(run_id)
    print(json.dumps({"deleted": sys.argv[1:]}))
    """
)

# One experiment with one run and an artifact, then the experiment deleted: argv name, dir.
DELETED_EXPERIMENT = textwrap.dedent(
    """
    import json, os, sys
    import mlflow
    from mlflow import MlflowClient

    name, out = sys.argv[1], sys.argv[2]
    experiment = mlflow.set_experiment(name)
    with mlflow.start_run() as run:
        mlflow.log_text("gone soon", "notes.txt")
    MlflowClient().delete_experiment(experiment.experiment_id)
    print(json.dumps({"experiment": experiment.experiment_id, "run": run.info.run_id}))
    """
)


def runs_in_database(stack: Stack) -> dict[str, str]:
    with connect(stack.postgres()) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_uuid, lifecycle_stage FROM runs")
        return dict(cur.fetchall())


def experiments_in_database(stack: Stack) -> set[str]:
    with connect(stack.postgres()) as conn, conn.cursor() as cur:
        cur.execute("SELECT experiment_id FROM experiments")
        return {str(row[0]) for row in cur.fetchall()}


def bucket(stack: Stack) -> dict[str, int]:
    """Every object of the stack's bucket and its size, listed with boto3."""
    target = stack.s3()
    client = boto3.client(
        "s3",
        endpoint_url=target.endpoint,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    objects: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=stack.config.storage.bucket
    ):
        objects.update((o["Key"], o["Size"]) for o in page.get("Contents", []))
    return objects


def of_run(objects: dict[str, int], experiment: str, run_id: str) -> dict[str, int]:
    prefix = f"{experiment}/{run_id}/artifacts/"
    return {k: v for k, v in objects.items() if k.startswith(prefix)}


def test_gc_removes_the_deleted_runs_and_their_objects_only(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project = seaweed_project
    cli_ok(project, capsys, "up")
    stack = Stack.open(project.config)
    assert stack is not None
    ids = write_runs(project, "gc", runs=3, mb=1, out=str(tmp_path))
    doomed, kept = ids[:2], ids[2]
    experiment = next(e[1] for e in snapshot(project)["experiments"] if e[0] == "gc")
    python(DELETE_RUNS, doomed, client_env(project))
    before = snapshot(project)  # what a client sees: the kept run, its artifacts by sha256
    assert list(before["runs"]) == [kept] and len(before["runs"][kept]["artifacts"]) == 2
    objects = bucket(stack)
    per_run = {r: of_run(objects, experiment, r) for r in ids}
    assert all(len(found) == 2 for found in per_run.values()), objects  # data-i.bin, notes.txt
    assert runs_in_database(stack) == {doomed[0]: "deleted", doomed[1]: "deleted", kept: "active"}

    # --dry-run: lists the two runs and counts their objects; the database and bucket unchanged
    out, _ = cli_ok(project, capsys, "gc", "--dry-run", "--json")
    planned = json.loads(out)
    assert planned["dry_run"] is True
    assert sorted(r["id"] for r in planned["runs"]) == sorted(doomed)
    for run in planned["runs"]:
        assert run["objects"] == len(per_run[run["id"]])
        assert run["bytes"] == sum(per_run[run["id"]].values())
    doomed_objects = {k: v for r in doomed for k, v in per_run[r].items()}
    assert (planned["objects"], planned["bytes"]) == (
        len(doomed_objects),
        sum(doomed_objects.values()),
    )
    assert planned["experiments"] == [] and planned["logged_models"] == []
    assert len(runs_in_database(stack)) == 3
    assert bucket(stack) == objects
    _, err = cli_ok(project, capsys, "gc", "--dry-run")  # the text view says so too
    assert "nothing was deleted" in err and all(r in err for r in doomed)

    # gc: exactly those two runs go, from the database and from the bucket
    started = time.monotonic()
    out, _ = cli_ok(project, capsys, "gc", "--json")
    wall = time.monotonic() - started
    removed = json.loads(out)
    with capsys.disabled():  # the figure the README quotes; no assertion on time
        print(f"\nmlstack gc: {wall:.2f}s wall, {removed['gc_seconds']:.2f}s in mlflow gc")
    assert removed["dry_run"] is False
    assert sorted(r["id"] for r in removed["runs"]) == sorted(doomed)
    assert (removed["objects"], removed["bytes"]) == (planned["objects"], planned["bytes"])
    assert runs_in_database(stack) == {kept: "active"}
    left = bucket(stack)
    assert left == {k: v for k, v in objects.items() if k not in doomed_objects}
    assert of_run(left, experiment, kept) == per_run[kept]
    assert snapshot(project) == before  # the kept run, its metrics and artifacts by sha256
    code, _, err = project.cli(capsys, "status")
    assert code == 0, err

    # --older-than: a run deleted just now is younger than a day, so it stays
    python(DELETE_RUNS, [kept], client_env(project))
    out, _ = cli_ok(project, capsys, "gc", "--older-than", "1d", "--json")
    assert json.loads(out)["runs"] == [] and runs_in_database(stack) == {kept: "deleted"}
    assert bucket(stack) == left

    # a deleted experiment goes with its runs and their objects
    gone = python(DELETED_EXPERIMENT, ["gone", str(tmp_path)], client_env(project))
    assert gone["experiment"] in experiments_in_database(stack)
    out, _ = cli_ok(project, capsys, "gc", "--json")
    result = json.loads(out)
    assert result["experiments"] == [gone["experiment"]]
    assert sorted(r["id"] for r in result["runs"]) == sorted([kept, gone["run"]])
    assert runs_in_database(stack) == {}
    assert gone["experiment"] not in experiments_in_database(stack)
    assert not any(k.startswith(f"{gone['experiment']}/") for k in bucket(stack))
    assert of_run(bucket(stack), experiment, kept) == {}
