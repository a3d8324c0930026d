"""The swarm target on the 3-node swarm of scripts/swarm-cluster (Docker-in-Docker nodes; no
IPVS here, so endpoint mode dnsrr with MLflow's port published in host mode): `up` through the
real CLI with DOCKER_HOST at the manager (tcp with TLS), a client logging a run with an artifact
through MLflow's published port on each node running a replica, `status` healthy with each
task's node, `down`/`up` keeping the data, `down --purge` leaving nothing on any node, and the
bad inputs (an engine that is no manager, a data node that is none) refused in one line.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlstack import labels
from mlstack.engine.docker import DockerEngine as Engine
from mlstack.errors import ExitCode
from tests.integration.swarm_cluster import SwarmCluster

from .conftest import Project, client_process_env, make_project, offline_images, run_client

LOG_RUN = textwrap.dedent(
    """
    import json, os, sys, tempfile, mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("swarm")
    path = os.path.join(tempfile.mkdtemp(), "model.txt")
    with open(path, "w") as f:
        f.write(sys.argv[2])
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0)
        mlflow.log_artifact(path)
    back = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model.txt")
    print(json.dumps({"run": run.info.run_id, "artifact": open(back).read()}))
    """
)
COUNT_RUNS = textwrap.dedent(
    """
    import json, sys, mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    print(json.dumps(len(mlflow.search_runs(experiment_names=["swarm"], output_format="list"))))
    """
)


def _to_manager(monkeypatch: pytest.MonkeyPatch, cluster: SwarmCluster) -> None:
    monkeypatch.setenv("DOCKER_HOST", cluster.manager_url)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(Path(cluster.tls.ca).parent))


@pytest.fixture
def swarm_project(
    swarm_cluster: SwarmCluster,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Project]:
    _to_manager(monkeypatch, swarm_cluster)
    project = make_project(engine, tmp_path, monkeypatch, "seaweedfs")
    images = {
        section: {"image": swarm_cluster.pull_ref(image)} for section, image in _offline().items()
    }
    project.write_config(target="swarm", allow_unauthenticated=True, **images)
    yield project
    project.cli(capsys, "down", "--purge", "--yes")


def _offline() -> dict[str, str]:
    data = offline_images("seaweedfs")
    return {section: data[section]["image"] for section in ("storage", "postgres", "mlflow")}


def _status(project: Project, capsys: pytest.CaptureFixture[str]) -> Any:
    code, out, _ = project.cli(capsys, "status", "--json")
    return code, json.loads(out)


def _on_nodes(cluster: SwarmCluster, project: str) -> dict[str, dict[str, list[str]]]:
    """What each node's engine holds of the project: services and tasks' containers, secrets,
    configs, networks, volumes."""
    found: dict[str, dict[str, list[str]]] = {}
    selector = {"label": [f"{labels.PROJECT}={project}"]}
    for node in cluster.nodes:
        engine = cluster.engine(node)
        try:
            api = engine._api
            held = {
                "containers": [c["Names"][0] for c in api.containers(all=True, filters=selector)],
                "networks": [n["Name"] for n in api.networks(filters=selector)],
                "volumes": [
                    v["Name"] for v in (api.volumes(filters=selector).get("Volumes") or [])
                ],
            }
            if node.role == "manager":
                held["services"] = [s["Spec"]["Name"] for s in api.services(filters=selector)]
                held["secrets"] = [s["Spec"]["Name"] for s in api.secrets(filters=selector)]
                held["configs"] = [c["Spec"]["Name"] for c in api.configs(filters=selector)]
                label = f"org.mlstack.{project}.data"
                held["node labels"] = [
                    n["Description"]["Hostname"]
                    for n in api.nodes()
                    if label in (n["Spec"].get("Labels") or {})
                ]
            found[node.name] = {k: v for k, v in held.items() if v}
        finally:
            engine.close()
    return found


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

    code, status = _status(project, capsys)
    assert code == 0 and status["overall"] == "healthy", status
    mlflow = next(s for s in status["services"] if s["service"] == "mlflow")
    assert (mlflow["running"], mlflow["desired"]) == (2, 2)
    assert sorted({t["node"] for t in mlflow["tasks"]}) == sorted(endpoints)
    assert all(e["probe"]["ok"] for e in mlflow["endpoints"])
    data = [s for s in status["services"] if s["service"] != "mlflow"]
    assert {t["node"] for s in data for t in s["tasks"]} == {swarm_cluster.manager.name}

    code, _, err = project.cli(capsys, "down")
    assert code == 0, err
    held = _on_nodes(swarm_cluster, project.name)
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
    held = _on_nodes(swarm_cluster, project.name)
    # no service, secret, config, network, volume or node label on any node; a worker removes
    # its stopped tasks' containers by itself once it hears the service is gone
    assert {n: {k: v for k, v in h.items() if k != "containers"} for n, h in held.items()} == {
        n.name: {} for n in swarm_cluster.nodes
    }
    assert not held[swarm_cluster.manager.name], held
    deadline = time.monotonic() + 120
    while any(held.values()) and time.monotonic() < deadline:
        time.sleep(1)
        held = _on_nodes(swarm_cluster, project.name)
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
        mlflow={"replicas": 1, "image": swarm_cluster.pull_ref(_offline()["mlflow"])},
        postgres={"image": swarm_cluster.pull_ref(_offline()["postgres"])},
        storage={"image": swarm_cluster.pull_ref(_offline()["storage"])},
    )
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    url = json.loads(out)["endpoints"][0]["url"]
    held = _on_nodes(swarm_cluster, project.name)[swarm_cluster.manager.name]
    assert len(held["configs"]) == 1 and held["secrets"]
    code, out, _ = project.cli(capsys, "env", "--format", "json", "--show-secrets")
    assert code == 0
    env = client_process_env(json.loads(out))
    done = run_client(["-c", LOG_RUN, url, "with a login"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    anonymous = client_process_env({})
    refused = run_client(["-c", COUNT_RUNS, url], anonymous)
    assert refused.returncode != 0 and "401" in refused.stderr
    code, status = _status(project, capsys)
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
    code, status = _status(project, capsys)
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
    assert _on_nodes(swarm_cluster, swarm_project.name) == {n.name: {} for n in swarm_cluster.nodes}


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
    assert _on_nodes(swarm_cluster, swarm_project.name) == {n.name: {} for n in swarm_cluster.nodes}


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
