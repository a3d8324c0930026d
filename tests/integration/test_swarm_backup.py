"""`backup` and `restore` on the 3-node swarm, with the data on a worker (not the manager
mlstack talks to): pg_dump runs in a container on the manager attached to the stack's overlay
network, S3 is reached through the relay, and a restore scales MLflow's replicas to 0 for the
switch and back. What the archive held is what every replica serves afterwards; `gc` removes
a deleted run and its artifact.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from mlstack.errors import ExitCode
from tests.integration.swarm_cluster import SwarmCluster
from tests.integration.swarm_stack import COUNT_RUNS, LOG_RUN, on_nodes, status_json

from .conftest import Project, client_process_env, offline_swarm_images, run_client

READ_ARTIFACT = textwrap.dedent(
    """
    import sys, mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    print(open(mlflow.artifacts.download_artifacts(run_id=sys.argv[2], artifact_path="model.txt")).read())
    """
)


DELETE_RUN = textwrap.dedent(
    """
    import sys
    from mlflow.tracking import MlflowClient
    MlflowClient(sys.argv[1]).delete_run(sys.argv[2])
    """
)


def _runs(url: str, env: dict[str, str]) -> int:
    done = run_client(["-c", COUNT_RUNS, url], env)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(json.loads(done.stdout.strip().splitlines()[-1]))


def _log(url: str, text: str, env: dict[str, str]) -> str:
    done = run_client(["-c", LOG_RUN, url, text], env)
    assert done.returncode == 0, done.stderr[-3000:]
    return str(json.loads(done.stdout.strip().splitlines()[-1])["run"])


def test_backup_restore_and_gc_with_the_data_on_a_worker(
    swarm_cluster: SwarmCluster,
    swarm_project: Project,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    project = swarm_project
    worker = swarm_cluster.workers[0].name
    images = {s: {"image": swarm_cluster.pull_ref(i)} for s, i in offline_swarm_images().items()}
    project.write_config(
        target="swarm", allow_unauthenticated=True, swarm={"data_node": worker}, **images
    )
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    up = json.loads(out)
    assert up["data_node"] == worker
    urls = [e["url"] for e in up["endpoints"]]
    assert len(urls) == 2
    code, status = status_json(project, capsys)
    data = [s for s in status["services"] if s["service"] in ("postgres", "storage")]
    assert {t["node"] for s in data for t in s["tasks"]} == {worker}, status

    env = client_process_env(project.printed_env(capsys))
    kept = _log(urls[0], "in the backup", env)
    archive = tmp_path / "swarm.tar.gz"
    started = time.monotonic()
    code, out, err = project.cli(capsys, "backup", "-o", str(archive), "--json")
    backup_seconds = time.monotonic() - started
    assert code == 0, err
    assert json.loads(out)["objects"] >= 1 and archive.stat().st_mode & 0o077 == 0
    _log(urls[1], "after the backup", env)

    # a stack holding runs is not replaced without --force: one line, nothing changed
    code, _, err = project.cli(capsys, "restore", str(archive))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == ExitCode.CONFLICT and len(errors) == 1, err
    assert "2 runs" in errors[0] and "--force" in errors[0] and _runs(urls[0], env) == 2

    started = time.monotonic()
    code, out, err = project.cli(capsys, "restore", str(archive), "--force", "--json")
    restore_seconds = time.monotonic() - started
    assert code == 0, err
    # scaled to 0 and back, the replicas may run on other nodes now (host mode: other addresses)
    code, status = status_json(project, capsys)
    assert code == 0 and status["overall"] == "healthy", status
    mlflow = next(s for s in status["services"] if s["service"] == "mlflow")
    assert (mlflow["running"], mlflow["desired"]) == (2, 2)
    urls = [e["url"] for e in mlflow["endpoints"]]
    assert len(urls) == 2
    for url in urls:  # every replica serves the archive's data, the later run is gone
        assert _runs(url, env) == 1
        done = run_client(["-c", READ_ARTIFACT, url, kept], env)
        assert done.returncode == 0 and done.stdout.strip() == "in the backup", done.stderr[-3000:]

    # gc: MLflow's own, in a one-shot container on the manager, through the overlay
    doomed = _log(urls[1], "deleted, then collected", env)
    done = run_client(["-c", DELETE_RUN, urls[0], doomed], env)
    assert done.returncode == 0, done.stderr[-3000:]
    code, out, err = project.cli(capsys, "gc", "--json")
    assert code == 0, err
    collected = json.loads(out)
    assert [r["id"] for r in collected["runs"]] == [doomed] and collected["objects"] == 1
    assert _runs(urls[1], env) == 1

    # the tools', gc's and migration's one-shot containers are gone; the relay stays for later commands
    # (the tasks' containers are <project>_<service>.<slot>.<task>)
    manager = on_nodes(swarm_cluster, project.name)[swarm_cluster.manager.name]
    mine = [c for c in manager["containers"] if c.startswith(f"/{project.name}-")]
    assert mine == [f"/{project.name}-relay"], manager
    with capsys.disabled():
        print(
            f"\nswarm backup: {backup_seconds:.1f} s; restore --force: {restore_seconds:.1f} s "
            f"(data on {worker})"
        )
