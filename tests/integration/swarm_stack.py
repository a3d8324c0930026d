"""What the swarm target's test files share: the client scripts they run, the manager as
DOCKER_HOST, the offline images as the nodes pull them, and what each node holds of a project."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mlstack import labels
from tests.integration.swarm_cluster import SwarmCluster

if TYPE_CHECKING:
    from .conftest import Project

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


def to_manager(monkeypatch: pytest.MonkeyPatch, cluster: SwarmCluster) -> None:
    monkeypatch.setenv("DOCKER_HOST", cluster.manager_url)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(Path(cluster.tls.ca).parent))


def status_json(project: Project, capsys: pytest.CaptureFixture[str]) -> Any:
    code, out, _ = project.cli(capsys, "status", "--json")
    return code, json.loads(out)


def on_nodes(cluster: SwarmCluster, project: str) -> dict[str, dict[str, list[str]]]:
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
