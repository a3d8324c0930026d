"""The swarm target on the 3-node swarm of scripts/swarm-cluster (Docker-in-Docker nodes; no
IPVS here, so endpoint mode dnsrr with MLflow's port published in host mode): `up` through the
real CLI with DOCKER_HOST at the manager (tcp with TLS), a client logging a run with an artifact
through MLflow's published port on each node running a replica, `status` healthy with each
task's node, `down`/`up` keeping the data, `down --purge` leaving nothing on any node, and the
bad inputs (an engine that is no manager, a data node that is none) refused in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlstack import labels
from mlstack.adapters.archive import read_manifest
from mlstack.engine.docker import DockerEngine as Engine
from mlstack.errors import ExitCode
from mlstack.state import ProjectState
from tests.integration.swarm_cluster import (
    SwarmCluster,
    SwarmNode,
    SwarmSession,
    poll,
    update_node,
    wait_for,
)
from tests.integration.swarm_stack import COUNT_RUNS, LOG_RUN, on_nodes, status_json

from .conftest import (
    REPO,
    Project,
    client_process_env,
    make_project,
    offline_swarm_images,
    run_client,
)

PREVIOUS = REPO / "tests" / "offline-images-mlflow-previous.yaml"  # an older MLflow


def test_up_logs_through_each_replica_down_up_keeps_data_purge_leaves_nothing(
    swarm_cluster: SwarmCluster,
    swarm_project: Project,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = swarm_project
    started = time.monotonic()
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    up = json.loads(out)
    with capsys.disabled():
        print(f"\nswarm up: {time.monotonic() - started:.1f} s (new stack)")
    assert [s["replicas"] for s in up["services"]] == [1, 1, 2]
    assert up["data_node"] == swarm_cluster.manager.name
    endpoints = {e["node"]: e["url"] for e in up["endpoints"]}
    assert len(endpoints) == 2  # host mode: one published port per node running a replica

    # what `mlstack env` gives (artifacts through the server, not presigned S3 URLs); each run
    # then names one node's endpoint as its tracking URI
    env = client_process_env(project.printed_env(capsys))
    for node, url in endpoints.items():
        done = run_client(["-c", LOG_RUN, url, f"from {node}"], env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1])["artifact"] == f"from {node}"

    code, status = status_json(project, capsys)
    assert code == 0 and status["overall"] == "healthy", status
    mlflow = next(s for s in status["services"] if s["service"] == "mlflow")
    assert (mlflow["running"], mlflow["desired"]) == (2, 2)
    assert sorted({t["node"] for t in mlflow["tasks"]}) == sorted(endpoints)
    # no replica failed on the way: on a new database the first one made the tables alone
    assert [t for t in mlflow["tasks"] if t["error"] or t["state"] != "running"] == [], mlflow
    assert all(e["probe"]["ok"] for e in mlflow["endpoints"])
    data = [s for s in status["services"] if s["service"] != "mlflow"]
    assert {t["node"] for s in data for t in s["tasks"]} == {swarm_cluster.manager.name}

    code, _, err = project.cli(capsys, "down")
    assert code == 0, err
    held = on_nodes(swarm_cluster, project.name)
    assert held[swarm_cluster.manager.name].get("volumes"), held
    assert not held[swarm_cluster.manager.name].get("services"), held
    started = time.monotonic()
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    with capsys.disabled():
        print(f"\nswarm up again: {time.monotonic() - started:.1f} s (after down, data kept)")
    url = json.loads(out)["endpoints"][0]["url"]
    done = run_client(["-c", COUNT_RUNS, url], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == 2  # both runs survived

    code, _, err = project.cli(capsys, "down", "--purge", "--yes")
    assert code == 0, err
    held = on_nodes(swarm_cluster, project.name)
    # no service, secret, config, network, volume or node label on any node; a worker removes
    # its stopped tasks' containers by itself once it hears the service is gone
    assert {n: {k: v for k, v in h.items() if k != "containers"} for n, h in held.items()} == {
        n.name: {} for n in swarm_cluster.nodes
    }
    assert not held[swarm_cluster.manager.name], held
    deadline = time.monotonic() + 120
    while any(held.values()) and time.monotonic() < deadline:
        time.sleep(1)
        held = on_nodes(swarm_cluster, project.name)
    assert held == {n.name: {} for n in swarm_cluster.nodes}


def test_auth_on_the_swarm_its_config_and_login_from_secrets(
    swarm_cluster: SwarmCluster,
    swarm_project: Project,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = swarm_project
    project.write_config(
        target="swarm",
        auth=True,
        allow_unauthenticated=False,
        mlflow={"replicas": 1, "image": swarm_cluster.pull_ref(offline_swarm_images()["mlflow"])},
        postgres={"image": swarm_cluster.pull_ref(offline_swarm_images()["postgres"])},
        storage={"image": swarm_cluster.pull_ref(offline_swarm_images()["storage"])},
    )
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    url = json.loads(out)["endpoints"][0]["url"]
    held = on_nodes(swarm_cluster, project.name)[swarm_cluster.manager.name]
    assert len(held["configs"]) == 1 and held["secrets"]
    code, out, _ = project.cli(capsys, "env", "--format", "json", "--show-secrets")
    assert code == 0
    env = client_process_env(json.loads(out))
    done = run_client(["-c", LOG_RUN, url, "with a login"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    anonymous = client_process_env({})
    refused = run_client(["-c", COUNT_RUNS, url], anonymous)
    assert refused.returncode != 0 and "401" in refused.stderr
    code, status = status_json(project, capsys)
    assert code == 0 and status["overall"] == "healthy", status


def test_a_changed_mlflow_spec_is_a_rolling_update_that_ends_healthy(
    swarm_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project = swarm_project
    code, _, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    code, out, err = project.cli(capsys, "--set", "mlflow.workers=2", "up", "--json")
    assert code == 0, err
    actions = {s["service"]: s["action"] for s in json.loads(out)["services"]}
    assert actions == {"postgres": "kept", "storage": "kept", "mlflow": "updated"}
    code, status = status_json(project, capsys)
    mlflow = next(s for s in status["services"] if s["service"] == "mlflow")
    assert code == 0 and (mlflow["running"], mlflow["desired"]) == (2, 2), status


def test_an_engine_that_is_no_manager_is_refused_in_one_line(
    swarm_cluster: SwarmCluster,
    swarm_project: Project,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = swarm_cluster.workers[0]
    monkeypatch.setenv("DOCKER_HOST", swarm_cluster.node_endpoint(worker).url)
    code, _, err = swarm_project.cli(capsys, "up")
    assert code == ExitCode.USAGE, err
    assert "is a swarm worker, not a manager" in err and len(err.strip().splitlines()) == 1
    assert not swarm_project.secrets_file.exists()
    assert on_nodes(swarm_cluster, swarm_project.name) == {n.name: {} for n in swarm_cluster.nodes}


def test_a_data_node_that_is_none_is_refused_in_one_line(
    swarm_cluster: SwarmCluster,
    swarm_project: Project,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = swarm_project.cli(capsys, "--set", "swarm.data_node=no-such-node", "up")
    assert code == ExitCode.USAGE, err
    assert "swarm.data_node 'no-such-node' matches no node" in err
    assert swarm_cluster.manager.name in err and len(err.strip().splitlines()) == 1
    assert not swarm_project.secrets_file.exists()
    assert on_nodes(swarm_cluster, swarm_project.name) == {n.name: {} for n in swarm_cluster.nodes}


def test_an_engine_in_no_swarm_is_refused_in_one_line(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """This machine's own engine is in no swarm (the cluster's nodes are containers on it)."""
    if engine._api.info()["Swarm"]["LocalNodeState"] != "inactive":
        pytest.skip("this machine's engine is in a swarm")
    project = make_project(engine, tmp_path, monkeypatch, "seaweedfs")
    project.write_config(target="swarm", allow_unauthenticated=True)
    for command in (["up"], ["status"], ["down"]):
        code, _, err = project.cli(capsys, *command)
        assert code == ExitCode.USAGE, err
        assert "is in no swarm" in err and "docker swarm init" in err
        assert len(err.strip().splitlines()) == 1
    assert not project.secrets_file.exists()
    assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}


def test_an_image_whose_registry_does_not_answer_is_refused_in_one_line(
    swarm_cluster: SwarmCluster,
    swarm_project: Project,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = swarm_cluster.registry_pull.rsplit(":", 1)[0]
    image = (
        f"{registry}:5001/{offline_swarm_images()['postgres']}"  # the registry's host; no port 5001
    )
    code, _, err = swarm_project.cli(capsys, "--set", f"postgres.image={image}", "up")
    assert code == ExitCode.IMAGE, err
    assert f"asking the registry of {image}" in err and "from each node" in err
    assert len(err.strip().splitlines()) == 1
    assert not swarm_project.secrets_file.exists()
    assert on_nodes(swarm_cluster, swarm_project.name) == {n.name: {} for n in swarm_cluster.nodes}


def test_a_new_mlflow_image_migrates_in_a_job_then_rolls_the_replicas(
    swarm_cluster: SwarmCluster,
    swarm_project: Project,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """MLflow 3.5.1 with a run, then the configured 3.17.2: `mlflow db upgrade` as a swarm job,
    a rolling update of both replicas, the run there through each."""
    project = swarm_project
    older = swarm_cluster.pull_ref(yaml.safe_load(PREVIOUS.read_text())["mlflow"]["image"])
    newer = swarm_cluster.pull_ref(offline_swarm_images()["mlflow"])
    code, out, err = project.cli(
        capsys, "--set", f"mlflow.image={older}", "up", "--json", "--timeout", "600"
    )
    assert code == 0, err
    env = client_process_env(project.printed_env(capsys))
    url = json.loads(out)["endpoints"][0]["url"]
    done = run_client(["-c", LOG_RUN, url, "before the upgrade"], env)
    assert done.returncode == 0, done.stderr[-3000:]

    started = time.monotonic()
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    seconds = time.monotonic() - started
    assert code == 0, err
    up = json.loads(out)
    assert up["migrated"] == older
    # the backup before the job, as on one engine: the run, written by the older image
    (backup,) = ProjectState(project.state_dir / project.name).backups_dir().glob("*.tar.gz")
    manifest = read_manifest(backup)
    assert manifest.mlflow_image == older and manifest.alembic_revision, manifest
    actions = {s["service"]: s["action"] for s in up["services"]}
    assert actions == {"postgres": "kept", "storage": "kept", "mlflow": "updated"}
    assert len(up["endpoints"]) == 2
    for endpoint in up["endpoints"]:
        done = run_client(["-c", COUNT_RUNS, endpoint["url"]], env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1]) == 1
    manager = swarm_cluster.engine()
    try:
        services = manager._api.services(filters={"label": f"{labels.PROJECT}={project.name}"})
    finally:
        manager.close()
    images = {
        s["Spec"]["Name"]: s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] for s in services
    }
    assert images[f"{project.name}_mlflow"] == newer and len(images) == 3  # the job is gone
    code, status = status_json(project, capsys)
    assert code == 0 and status["overall"] == "healthy", status
    with capsys.disabled():
        print(f"\nswarm upgrade {older} -> {newer}: {seconds:.1f} s (job, then rolling update)")


# --- losing a node -------------------------------------------------------------------------------

# A client's loop, as a training job logging run after run: each acknowledged run (metric and
# artifact through the server) or failed try goes to a JSON line with its time. MLflow's own
# retries are off (client_env below) so that every failure a user would wait through is counted.
CLIENT_LOOP = textwrap.dedent(
    """
    import json, os, sys, tempfile, time
    from mlflow.tracking import MlflowClient
    url, stop, out, experiment = sys.argv[1:5]
    client = MlflowClient(url)
    experiment_id = client.create_experiment(experiment)
    path = os.path.join(tempfile.mkdtemp(), "a.txt")
    open(path, "w").write(experiment)
    with open(out, "a") as log:
        while not os.path.exists(stop):
            t = time.time()
            try:
                run = client.create_run(experiment_id)
                client.log_metric(run.info.run_id, "m", 1.0)
                client.log_artifact(run.info.run_id, path)
                client.set_terminated(run.info.run_id)
                record = {"t": t, "run": run.info.run_id}
            except Exception as e:
                record = {"t": t, "error": type(e).__name__ + ": " + str(e)[:200]}
                time.sleep(0.2)
            log.write(json.dumps(record) + "\\n")
            log.flush()
    """
)
# Every given run, read back: the ids that are missing or lack their metric or artifact.
CHECK_RUNS = textwrap.dedent(
    """
    import json, sys
    from mlflow.tracking import MlflowClient
    client = MlflowClient(sys.argv[1])
    missing = []
    for run_id in json.load(open(sys.argv[2])):
        try:
            run = client.get_run(run_id)
            ok = run.data.metrics.get("m") == 1.0
            ok = ok and [a.path for a in client.list_artifacts(run_id)] == ["a.txt"]
        except Exception:
            ok = False
        if not ok:
            missing.append(run_id)
    print(json.dumps(missing))
    """
)


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mlflow_tasks(manager: Engine, project: str) -> list[dict[str, Any]]:
    """MLflow's tasks that run and are meant to."""
    name = f"{project}_mlflow"
    tasks = manager._api.tasks(filters={"service": name, "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def _node_state(manager: Engine, node_id: str) -> tuple[str, str]:
    node = manager._api.inspect_node(node_id)
    return str(node["Status"]["State"]), str(node["Spec"]["Availability"])


def _set_availability(manager: Engine, node_id: str, availability: str) -> bool:
    """False when the node changed meanwhile: try again."""
    return update_node(manager._api, node_id, lambda spec: {**spec, "Availability": availability})


def _bring_back(swarm: SwarmSession, host: Engine, name: str) -> None:
    """A killed node started again; when it does not come back as the Ready node it was (its
    bridge address taken, its swarm state gone), the cluster is made afresh for the tests after."""
    host._api.start(name)
    node = next(n for n in swarm.cluster.nodes if n.name == name)
    manager = swarm.cluster.engine()
    try:
        ready = poll(lambda: _node_state(manager, node.node_id)[0] == "ready", 120)
    finally:
        manager.close()
    if not ready:
        swarm.cluster = swarm.script.up()


def _client_env(project: Project, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    env = client_process_env(project.printed_env(capsys))
    env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    return env


def _up_with_a_worker_replica(
    swarm: SwarmSession, project: Project, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, str], SwarmNode]:
    """`up` of the stack: MLflow's endpoints by node, and a worker that runs a replica."""
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    endpoints = {e["node"]: e["url"] for e in json.loads(out)["endpoints"]}
    workers = sorted(swarm.cluster.workers, key=lambda w: w.name)
    return endpoints, next(w for w in workers if w.name in endpoints)


def _replicas_off(manager: Engine, project: str, node_id: str) -> bool:
    """Both MLflow replicas run, neither on that node."""
    running = _mlflow_tasks(manager, project)
    return len(running) == 2 and all(t["NodeID"] != node_id for t in running)


def test_a_killed_worker_with_a_replica_clients_go_on_through_the_other_and_lose_nothing(
    swarm: SwarmSession,
    swarm_project: Project,
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = swarm_project
    endpoints, lost = _up_with_a_worker_replica(swarm, project, capsys)
    victim, node_id = lost.name, lost.node_id
    survivor = next(name for name in sorted(endpoints) if name != victim)
    env = _client_env(project, capsys)
    stop = tmp_path / "stop"
    logs = {name: tmp_path / f"{name}.jsonl" for name in endpoints}
    loops = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT_LOOP, url, str(stop), str(logs[name]), f"loop-{name}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, url in endpoints.items()
    ]
    manager = swarm.cluster.engine()
    try:
        wait_for(
            "each client acknowledged 3 runs",
            lambda: all(sum("run" in r for r in _records(p)) >= 3 for p in logs.values()),
        )
        killed = time.time()
        engine._api.kill(victim)  # `docker kill` of the node: its engine and its tasks die
        wait_for(
            "the swarm marks the node down", lambda: _node_state(manager, node_id)[0] == "down"
        )
        marked_down = time.time() - killed
        wait_for(
            "a replica in place of the lost one",
            lambda: _replicas_off(manager, project.name, node_id),
        )
        rescheduled = time.time() - killed
        wait_for(
            "status healthy again", lambda: status_json(project, capsys)[1]["overall"] == "healthy"
        )
        healthy = time.time() - killed
        time.sleep(5)  # the survivor's client goes on past the recovery
    finally:
        stop.touch()
        for loop in loops:
            loop.wait(timeout=120)
        manager.close()
        _bring_back(swarm, engine, victim)
    for loop in loops:
        assert loop.returncode == 0, loop.stderr.read().decode()[-2000:] if loop.stderr else ""

    on_survivor = _records(logs[survivor])
    after_kill = [r for r in on_survivor if r["t"] >= killed]
    failed = [r for r in after_kill if "error" in r]
    on_victim = [r for r in _records(logs[victim]) if r["t"] >= killed]
    acknowledged = [r["run"] for path in logs.values() for r in _records(path) if "run" in r]
    with capsys.disabled():
        print(
            f"\nnode kill: node down after {marked_down:.1f} s, replica replaced after "
            f"{rescheduled:.1f} s, status healthy after {healthy:.1f} s; client through the "
            f"other replica: {len(after_kill) - len(failed)} runs acknowledged, {len(failed)} "
            f"failed since the kill; client of the killed node: "
            f"{sum('error' in r for r in on_victim)} failed tries; {len(acknowledged)} runs "
            "acknowledged in all"
        )
    assert not failed, failed[:3]
    assert len(after_kill) > len(failed)  # the survivor's client kept logging through the kill
    assert on_victim and all("error" in r for r in on_victim[1:]), on_victim[:3]
    (tmp_path / "runs.json").write_text(json.dumps(acknowledged))
    done = run_client(["-c", CHECK_RUNS, endpoints[survivor], str(tmp_path / "runs.json")], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # every acknowledged run


def test_a_drained_worker_hands_over_its_replica_and_takes_tasks_again_when_active(
    swarm: SwarmSession,
    swarm_project: Project,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = swarm_project
    _, node = _up_with_a_worker_replica(swarm, project, capsys)
    drained, node_id = node.name, node.node_id
    manager = swarm.cluster.engine()
    try:
        wait_for("drain", lambda: _set_availability(manager, node_id, "drain"), 60)
        started = time.monotonic()
        wait_for(
            "the drained node's replica on another node",
            lambda: _replicas_off(manager, project.name, node_id),
        )
        seconds = time.monotonic() - started
        code, status = status_json(project, capsys)
        assert code == 0 and status["overall"] == "healthy", status
        mlflow = next(s for s in status["services"] if s["service"] == "mlflow")
        assert drained not in {t["node"] for t in mlflow["tasks"] if t["state"] == "running"}
        url = mlflow["endpoints"][0]["url"]
        done = run_client(["-c", LOG_RUN, url, "while drained"], _client_env(project, capsys))
        assert done.returncode == 0, done.stderr[-3000:]

        wait_for("active", lambda: _set_availability(manager, node_id, "active"), 60)
        assert _node_state(manager, node_id) == ("ready", "active")
        # the swarm does not move running tasks back; the node takes the next ones
        code, out, err = project.cli(capsys, "--set", "mlflow.replicas=3", "up", "--json")
        assert code == 0, err
        scaled = json.loads(out)
        assert {s["service"]: s["action"] for s in scaled["services"]}["mlflow"] == "scaled"
        assert drained in {e["node"] for e in scaled["endpoints"]}
    finally:
        wait_for("active again", lambda: _set_availability(manager, node_id, "active"), 60)
        manager.close()
    with capsys.disabled():
        print(f"\ndrain: the replica ran on another node after {seconds:.1f} s")
