"""The MLflow launcher on real MLflow images: one process (one import of the server) on each
MLflow version the tests have, and the stock start, said on `up`, for an image it cannot drive."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import pytest
import yaml

from mlstack.adapters.mlflow_http import TrackingApi
from mlstack.adapters.registry import parse_model_uri, resolve_model
from mlstack.compose.launcher import LOG_PREFIX, how_it_started
from mlstack.errors import UsageError

from .conftest import REPO, Engine, Project
from .mlflow_data import cli_ok

PREVIOUS = yaml.safe_load((REPO / "tests" / "offline-images-mlflow-previous.yaml").read_text())
CURRENT = yaml.safe_load((REPO / "tests" / "offline-images.yaml").read_text())
SITE = "/opt/mlflow/lib/python3.11/site-packages/mlflow/server/__init__.py"


def python_processes(engine: Engine, container: str) -> list[str]:
    """The command lines of the Python processes in `container`, less a run of Docker's own
    healthcheck (its `CMD`), which may be running at that moment."""
    test = engine._api.inspect_container(container)["Config"].get("Healthcheck", {}).get("Test")
    healthcheck = " ".join(test[1:]) if test and test[0] == "CMD" else None
    code, out = engine.exec(
        container,
        ["sh", "-c", 'for p in /proc/[0-9]*; do tr "\\0" " " < "$p/cmdline"; echo; done'],
    )
    assert code == 0, out
    return [
        line
        for line in out.splitlines()
        if "python" in line and "/proc/" not in line and line.strip() != healthcheck
    ]


@pytest.mark.parametrize(
    "image", [CURRENT["mlflow"]["image"], PREVIOUS["mlflow"]["image"]], ids=["current", "previous"]
)
def test_the_server_runs_in_one_process(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], image: str
) -> None:
    project = seaweed_project
    project.write_config(mlflow={"image": image})
    out, err = cli_ok(project, capsys, "up", "--json")
    assert json.loads(out)["mlflow_start"] == "one process", err
    container = f"{project.name}-mlflow"
    log = project.engine.log_tail(container, 100)
    assert how_it_started(log) == "one process"
    steps = [line.split(LOG_PREFIX, 1)[1] for line in log.splitlines() if LOG_PREFIX in line]
    assert steps[0].endswith("imported MLflow " + image.rsplit(":", 1)[1]), steps
    assert "accepts the stack's login" in steps[1]
    # one Python process serves: no second import in a spawned uvicorn
    processes = python_processes(project.engine, container)
    assert len(processes) == 1, processes
    assert "-c" in processes[0].split() and "uvicorn" not in processes[0]
    status = json.loads(cli_ok(project, capsys, "status", "--json")[0])
    assert status["overall"] == "healthy"


@pytest.fixture
def image_without_the_hook(engine: Engine) -> Iterator[str]:
    """An MLflow image whose server spawns uvicorn under another name than the launcher's hook:
    as a future MLflow might."""
    tag = f"mlstack-test/mlflow-nohook:{uuid.uuid4().hex[:8]}"
    dockerfile = (
        f"FROM {CURRENT['mlflow']['image']}\n"
        f"RUN sed -i -e 's/^from mlflow.utils.process import _exec_cmd$/"
        f"from mlflow.utils.process import _exec_cmd as _spawn/' "
        f"-e 's/server_proc = _exec_cmd(/server_proc = _spawn(/' {SITE} "
        f"&& grep -q 'server_proc = _spawn(' {SITE}\n"
    )
    engine._client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    yield tag
    engine._client.images.remove(tag, force=True)


def test_an_image_the_launcher_cannot_drive_starts_the_stock_way_and_says_so(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], image_without_the_hook: str
) -> None:
    project = seaweed_project
    project.write_config(mlflow={"image": image_without_the_hook})
    code, _out, err = project.cli(capsys, "up")
    assert code == 0, err
    assert "MLflow started the stock way (MLflow 3.17.2 has no mlflow.server._exec_cmd)" in err
    container = f"{project.name}-mlflow"
    assert how_it_started(project.engine.log_tail(container, 100)) == (
        "stock: MLflow 3.17.2 has no mlflow.server._exec_cmd"
    )
    processes = python_processes(project.engine, container)
    assert any("uvicorn" in p for p in processes), processes  # the stock server's own child
    status = json.loads(cli_ok(project, capsys, "status", "--json")[0])
    assert status["overall"] == "healthy"


def test_a_served_model_runs_in_one_process(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], mlflow_env: None
) -> None:
    project = seaweed_project
    cli_ok(project, capsys, "up")
    cli_ok(project, capsys, "demo", "--runs", "1")
    out, err = cli_ok(project, capsys, "serve", "models:/mlstack-demo@champion", "--json")
    served = json.loads(out)
    assert served["start"] == "one process", err
    container = served["container"]
    processes = python_processes(project.engine, container)
    assert len(processes) == 1, processes  # the scoring server runs in the launcher itself
    steps = [
        line.split(LOG_PREFIX, 1)[1]
        for line in project.engine.log_tail(container, 200).splitlines()
        if LOG_PREFIX in line
    ]
    assert steps[-1].endswith("model downloaded; serving in this process"), steps


def test_every_model_uri_form_resolves_through_the_rest_api(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], mlflow_env: None
) -> None:
    """`serve` reads the registry over MLflow's REST API (no mlflow import on the host): each
    URI form pins the same logged model, and unknown ones are usage errors naming what exists."""
    project = seaweed_project
    cli_ok(project, capsys, "up")
    demo = json.loads(cli_ok(project, capsys, "demo", "--runs", "1", "--json")[0])
    (run,) = demo["runs"]
    model_id = run["model_uri"].removeprefix("models:/")
    api = TrackingApi(project.config.tracking_uri)
    pinned = {
        "models:/mlstack-demo@champion": f"models:/mlstack-demo/{demo['version']}",
        f"models:/mlstack-demo/{demo['version']}": f"models:/mlstack-demo/{demo['version']}",
        "models:/mlstack-demo/latest": f"models:/mlstack-demo/{demo['version']}",
        f"models:/{model_id}": f"models:/{model_id}",
        f"runs:/{run['run_id']}/model": f"models:/{model_id}",
    }
    for uri, served in pinned.items():
        model = resolve_model(api, parse_model_uri(uri))
        assert model.served_uri == served, uri
        assert model.model_id == model_id and model.run_id == run["run_id"], uri
        assert model.payload is not None and "dataframe_split" in model.payload, uri
        assert any(r.startswith("scikit-learn==") for r in model.requirements), uri
    unknown = {
        f"runs:/{'0' * 32}/model": "no run with id",
        f"models:/m-{'0' * 32}": "no logged model with id",
        f"runs:/{run['run_id']}/elsewhere": "its models: model",
    }
    for uri, message in unknown.items():
        with pytest.raises(UsageError, match=message):
            resolve_model(api, parse_model_uri(uri))
