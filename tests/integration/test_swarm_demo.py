"""`demo` on the 3-node swarm of scripts/swarm-cluster. With host-mode ports only the nodes that
run an MLflow replica answer on MLflow's port, so `host` (here set to a node without one, as a
user's first choice of the manager may be) does not: the demo's client takes the first node that
answers, trains and registers there, and says which address it used."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from tests.integration.swarm_cluster import SwarmCluster

from .conftest import Project, client_json, client_process_env

COUNT = textwrap.dedent(
    """
    import json, sys, mlflow
    client = mlflow.MlflowClient(sys.argv[1])
    experiment = client.get_experiment_by_name("mlstack-demo")
    runs = client.search_runs([experiment.experiment_id])
    champion = client.get_model_version_by_alias("mlstack-demo", "champion")
    print(json.dumps({"runs": len(runs), "champion": champion.version,
                      "best": champion.run_id}))
    """
)


def test_demo_trains_through_a_node_that_runs_mlflow(
    swarm_cluster: SwarmCluster, swarm_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project = swarm_project
    config = yaml.safe_load(project.config_path.read_text())
    project.config_path.write_text(
        yaml.safe_dump({**config, "auth": True, "mlflow": {**config["mlflow"], "replicas": 1}})
    )
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    (replica,) = json.loads(out)["endpoints"]
    idle = next(n for n in swarm_cluster.nodes if n.name != replica["node"])
    config = yaml.safe_load(project.config_path.read_text())
    project.config_path.write_text(yaml.safe_dump({**config, "host": idle.ip}))

    code, out, err = project.cli(capsys, "demo", "--runs", "2", "--json")
    assert code == 0, err
    demo = json.loads(out)
    assert demo["tracking_uri"] == replica["url"]  # not http://<idle node>:5000
    assert len(demo["runs"]) == 2 and demo["alias"] == "champion"

    # what a user's own client reads back through that address, with the stack's login
    code, out, _ = project.cli(capsys, "env", "--format", "json", "--show-secrets")
    assert code == 0
    env = client_process_env(json.loads(out))
    found = client_json(["-c", COUNT, replica["url"]], env)
    assert found == {"runs": 2, "champion": str(demo["version"]), "best": demo["best_run_id"]}

    # nothing answers at all: one line, and no traceback
    code, _, err = project.cli(capsys, "down")
    assert code == 0, err
    code, _, err = project.cli(capsys, "demo", "--runs", "1")
    assert code != 0 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
