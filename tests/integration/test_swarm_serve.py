"""`serve` on the 3-node swarm of scripts/swarm-cluster: a scikit-learn model registered by a
client with a login (auth: true), served as a swarm service that fetches it through MLflow's
in-network name with the login from swarm secrets, answering /invocations on the node address
`serve` printed; `status` lists it; a model that does not load fails in one line with its log
and leaves nothing; `serve --stop` removes it from every node."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.request
from typing import Any

import pytest
import yaml

from mlstack.errors import ExitCode
from tests.integration.swarm_cluster import SwarmCluster
from tests.integration.swarm_stack import on_nodes, status_json

from .conftest import Project, client_process_env, offline_swarm_images, run_client

SERVICES = ["postgres", "storage", "mlflow"]
REGISTER = textwrap.dedent(
    """
    import json, sys, mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("swarm-serve")
    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    rows = x.iloc[[0, 60, 120]]
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", input_example=rows, registered_model_name=sys.argv[2]
        )
    print(json.dumps({
        "version": str(info.registered_model_version),
        "rows": json.loads(rows.to_json(orient="split")),
        "predictions": [int(v) for v in model.predict(rows)],
    }))
    """
)
REGISTER_BROKEN = textwrap.dedent(
    """
    import json, sys, mlflow, mlflow.pyfunc
    class Broken(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            raise RuntimeError("this model refuses to load")
        def predict(self, context, model_input):
            return model_input
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("swarm-serve")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="broken", python_model=Broken(), registered_model_name=sys.argv[2],
            pip_requirements=[f"mlflow=={mlflow.__version__}"],
        )
    print(json.dumps({"version": str(info.registered_model_version)}))
    """
)


def post_json(url: str, payload: Any) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def served_leftovers(cluster: SwarmCluster, project: str) -> dict[str, dict[str, list[str]]]:
    """What any node still holds of the project's served model `iris`."""
    held = on_nodes(cluster, project)
    return {
        node: {k: [v for v in values if "serve-" in v] for k, values in found.items()}
        for node, found in held.items()
    }


def client(argv: list[str], env: dict[str, str]) -> Any:
    done = run_client(argv, env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_serve_a_registered_model_on_the_swarm_status_and_stop(
    swarm_cluster: SwarmCluster,
    swarm_project: Project,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    project = swarm_project
    images = offline_swarm_images()
    project.write_config(
        target="swarm",
        auth=True,
        allow_unauthenticated=False,
        mlflow={"replicas": 1, "image": swarm_cluster.pull_ref(images["mlflow"])},
        postgres={"image": swarm_cluster.pull_ref(images["postgres"])},
        storage={"image": swarm_cluster.pull_ref(images["storage"])},
    )
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    tracking = json.loads(out)["endpoints"][0]["url"]
    code, out, _ = project.cli(capsys, "env", "--format", "json", "--show-secrets")
    assert code == 0
    env = client_process_env(json.loads(out))
    registered = client(["-c", REGISTER, tracking, "iris"], env)

    started = time.monotonic()
    # MLflow's model server has no login: on a swarm, serving needs allow_unauthenticated
    code, _, err = project.cli(capsys, "serve", f"models:/iris/{registered['version']}")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == ExitCode.USAGE and len(errors) == 1 and "no login" in errors[0], err
    services = on_nodes(swarm_cluster, project.name)[swarm_cluster.manager.name]["services"]
    assert not [name for name in services if "serve" in name], services
    config = yaml.safe_load(project.config_path.read_text())
    project.config_path.write_text(yaml.safe_dump({**config, "allow_unauthenticated": True}))
    code, out, err = project.cli(capsys, "serve", f"models:/iris/{registered['version']}", "--json")
    assert code == 0, err
    served = json.loads(out)
    with capsys.disabled():
        print(f"\nswarm serve: {time.monotonic() - started:.1f} s to /ping")
    service = f"{project.name}_serve-iris"
    assert served["container"] == service and served["name"] == "iris"
    addresses = {n.name: n.ip for n in swarm_cluster.nodes}
    assert served["url"] == f"http://{addresses[served['node']]}:{served['port']}"
    assert served["curl"].startswith(f"curl -s -X POST {served['url']}/invocations")

    # the model answers on the node address serve printed, as the client's own model does
    answer = post_json(served["invocations_url"], {"dataframe_split": registered["rows"]})
    assert answer["predictions"] == registered["predictions"]

    # the service: the project's labels, host-mode port, the login as secrets, not in its env
    manager = swarm_cluster.engine()
    request.addfinalizer(manager.close)
    api = manager._api
    spec = api.inspect_service(service)["Spec"]
    assert spec["Labels"]["io.mlstack.project"] == project.name
    assert spec["Labels"]["io.mlstack.service"] == "serve-iris"
    (port,) = spec["EndpointSpec"]["Ports"]
    assert (port["PublishedPort"], port["PublishMode"]) == (served["port"], "host")
    container = spec["TaskTemplate"]["ContainerSpec"]
    environment = " ".join(container.get("Env") or [])
    assert project.secrets.MLFLOW_AUTH_ADMIN_PASSWORD not in environment
    assert "MLFLOW_TRACKING_URI=http://mlflow:5000" in environment
    assert len(container["Secrets"]) == 2

    code, status = status_json(project, capsys)
    assert code == 0 and status["overall"] == "healthy", status
    (row,) = [s for s in status["services"] if s["service"] == "serve-iris"]
    assert (row["running"], row["desired"]) == (1, 1)
    assert [(e["node"], e["url"], e["probe"]["ok"]) for e in row["endpoints"]] == [
        (served["node"], served["url"], True)
    ]

    # a model that does not load: one line with why, its log, and nothing left of it
    broken = client(["-c", REGISTER_BROKEN, tracking, "broken"], env)
    code, _, err = project.cli(
        capsys, "serve", f"models:/broken/{broken['version']}", "--timeout", "300"
    )
    assert code == ExitCode.UNHEALTHY, err
    assert f"did not start serving models:/broken/{broken['version']}" in one_line_error(err)
    assert "this model refuses to load" in err
    services = [s["Spec"]["Name"] for s in api.services()]
    assert f"{project.name}_serve-broken" not in services

    # --stop removes it, its task from its node and its secrets; a second --stop is refused
    code, _, err = project.cli(capsys, "serve", "--stop", "iris")
    assert code == 0, err
    deadline = time.monotonic() + 120
    left = served_leftovers(swarm_cluster, project.name)
    while any(v for found in left.values() for v in found.values()) and time.monotonic() < deadline:
        time.sleep(1)
        left = served_leftovers(swarm_cluster, project.name)
    assert left == {n.name: {k: [] for k in left[n.name]} for n in swarm_cluster.nodes}
    code, _, err = project.cli(capsys, "serve", "--stop", "iris")
    assert code == ExitCode.USAGE and "no model served as 'iris'" in one_line_error(err)
    code, status = status_json(project, capsys)
    assert code == 0 and [s["service"] for s in status["services"]] == SERVICES
