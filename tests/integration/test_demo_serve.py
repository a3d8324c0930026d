"""Train, track, register and serve on the real engine: `mlstack demo` and `mlstack serve`."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mlstack.errors import ExitCode

from .conftest import Project


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
    """The `error:` line of a failed command; there must be exactly one, and no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "hint: " in err
    return lines[0]


def containers(project: Project) -> list[str]:
    return sorted(project.leftovers()["containers"])


def test_demo_registry_serve_status_stop(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], mlflow_env: None
) -> None:
    project = seaweed_project
    config = project.config

    code, _, err = project.cli(capsys, "up")
    assert code == 0, err
    stack_containers = containers(project)
    assert len(stack_containers) == 3

    # demo: three runs, the best registered as mlstack-demo with the alias champion
    code, out, err = project.cli(capsys, "demo", "--runs", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    runs = result["runs"]
    assert len(runs) == 3 and len({r["run_id"] for r in runs}) == 3
    assert result["experiment"] == "mlstack-demo" and result["alias"] == "champion"
    best = max(runs, key=lambda r: r["metrics"]["accuracy"])
    assert result["best_run_id"] in {r["run_id"] for r in runs}
    assert next(r for r in runs if r["run_id"] == result["best_run_id"])["metrics"][
        "accuracy"
    ] == pytest.approx(best["metrics"]["accuracy"])
    assert result["experiment_url"].startswith(config.tracking_uri + "/#/experiments/")
    assert all(r["url"].endswith(r["run_id"]) for r in runs)
    assert result["serve_command"] == "mlstack serve models:/mlstack-demo@champion"

    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import get_model_info

    from mlstack.commands.demo import load_split

    client = MlflowClient(config.tracking_uri)
    champion = client.get_model_version_by_alias("mlstack-demo", "champion")
    assert champion.version == result["version"]
    assert champion.run_id == result["best_run_id"]
    for logged in runs:
        run = client.get_run(logged["run_id"])
        assert set(run.data.metrics) == {"accuracy", "f1_macro", "log_loss"}
        assert {"C", "class_weight", "dataset"} <= set(run.data.params)
        assert run.data.params["dataset"] == "wine"
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert "confusion_matrix.png" in artifacts
    png = Path(
        mlflow.artifacts.download_artifacts(
            run_id=result["best_run_id"],
            artifact_path="confusion_matrix.png",
            dst_path=str(project.workdir / "png"),
            tracking_uri=config.tracking_uri,
        )
    ).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    info = get_model_info(f"models:/mlstack-demo/{champion.version}")
    assert info.signature is not None and info.saved_input_example_info is not None
    assert [c.name for c in info.signature.inputs.inputs][:2] == ["alcohol", "malic_acid"]

    # Bad input for serve: one line, an exit code, and nothing created.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    busy = listener.getsockname()[1]
    bad = [
        (["models:/nope@champion"], ExitCode.USAGE, "no registered model named 'nope'"),
        (["models:/mlstack-demo@gold"], ExitCode.USAGE, "aliases: champion -> version 1"),
        (["models:/mlstack-demo/99"], ExitCode.USAGE, "has no version 99 (versions: 1)"),
        (["models:/mlstack-demo@champion", "--port", str(busy)], ExitCode.CONFLICT, "in use"),
        (
            ["models:/mlstack-demo@champion", "--port", str(config.mlflow.port)],
            ExitCode.CONFLICT,
            "the stack's mlflow.port",
        ),
        (["models:/mlstack-demo@champion", "--name", "Bad!"], ExitCode.USAGE, "serve name"),
    ]
    try:
        for args, expected, message in bad:
            code, out, err = project.cli(capsys, "serve", *args)
            assert code == expected, (args, err)
            assert message in one_line_error(err), (args, err)
            assert out == ""
            assert containers(project) == stack_containers, args
    finally:
        listener.close()

    # serve the champion
    port = free_port()
    code, out, err = project.cli(
        capsys, "serve", "models:/mlstack-demo@champion", "--name", "wine", "--port", str(port),
        "--json",
    )  # fmt: skip
    assert code == 0, err
    served = json.loads(out)
    name = f"{project.name}-serve-wine"
    assert served["container"] == name
    assert served["served_uri"] == f"models:/mlstack-demo/{champion.version}"
    assert served["url"] == f"http://127.0.0.1:{port}"
    assert served["warnings"] == []  # the model's requirements match the MLflow image
    container = project.engine.inspect(name)
    assert container is not None and container.running
    assert container.labels["io.mlstack.project"] == project.name
    assert container.labels["io.mlstack.service"] == "serve"
    assert container.labels["io.mlstack.model.name"] == "mlstack-demo"
    assert container.labels["io.mlstack.model.version"] == champion.version
    assert container.labels["io.mlstack.model.uri"] == "models:/mlstack-demo@champion"
    assert {ip for binds in container.ports.values() for ip, _ in binds} == {"127.0.0.1"}
    raw = project.engine._api.inspect_container(name)
    assert raw["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert list(raw["NetworkSettings"]["Networks"]) == [f"{project.name}-net"]

    # its predictions for the held-out rows equal those of the same model loaded here
    _, x_test, _, _ = load_split()
    remote = post_json(
        f"{served['url']}/invocations",
        {"dataframe_split": json.loads(x_test.to_json(orient="split"))},
    )["predictions"]
    local = mlflow.pyfunc.load_model("models:/mlstack-demo@champion").predict(x_test)
    assert len(remote) == len(x_test) == 45
    assert remote == [int(v) for v in local]

    # the printed curl works as pasted
    assert served["payload"] is not None
    if shutil.which("curl"):
        answer = subprocess.run(
            ["bash", "-c", served["curl"]], capture_output=True, text=True, timeout=60, check=True
        )
        assert len(json.loads(answer.stdout)["predictions"]) == 3

    # status lists it, healthy
    code, out, err = project.cli(capsys, "status", "--json")
    assert code == 0, out
    status = json.loads(out)
    assert status["overall"] == "healthy"
    (row,) = status["served"]
    assert row["name"] == "wine" and row["state"] == "running" and row["probe"]["ok"]
    assert row["version"] == champion.version and status["extra_containers"] == []

    # a served model that is down degrades the stack and says how to fix it
    project.engine.stop(name, 10)
    code, out, _ = project.cli(capsys, "status", "--json")
    assert code == ExitCode.DEGRADED
    (row,) = json.loads(out)["served"]
    assert row["state"] == "exited"
    assert f"mlstack serve models:/mlstack-demo@champion --name wine --port {port}" in row["fix"]
    code, out, _ = project.cli(capsys, "logs", "serve-wine", "--tail", "20")
    assert code == 0 and "ping" in out

    # serve --stop removes it
    code, out, err = project.cli(capsys, "serve", "--stop", "wine")
    assert code == 0, err
    assert containers(project) == stack_containers
    code, _, err = project.cli(capsys, "serve", "--stop", "wine")
    assert code == ExitCode.USAGE and "no model served as 'wine'" in one_line_error(err)
    code, _, _ = project.cli(capsys, "status")
    assert code == 0

    # a model that cannot load: serve fails fast with the reason, and removes its container
    broken = register_broken_model(config.tracking_uri)
    code, _, err = project.cli(capsys, "serve", f"models:/{broken}/1", "--port", str(free_port()))
    assert code == ExitCode.UNHEALTHY, err
    assert "stopped while starting" in one_line_error(err)
    assert "this model refuses to load" in err
    assert containers(project) == stack_containers

    # default name and port; `down` removes served models with the stack
    code, out, err = project.cli(capsys, "serve", "models:/mlstack-demo/latest")
    assert code == 0, err
    assert out.strip().startswith("http://127.0.0.1:")
    assert "curl -s -X POST" in err and "mlstack serve --stop mlstack-demo" in err
    assert f"/{project.name}-serve-mlstack-demo" in containers(project)
    code, _, err = project.cli(capsys, "down")
    assert code == 0, err
    assert containers(project) == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def register_broken_model(tracking_uri: str) -> str:
    """A pyfunc model whose loading raises (its class is pickled by value with the model)."""
    import mlflow
    import mlflow.pyfunc

    class Broken(mlflow.pyfunc.PythonModel):
        def load_context(self, context: Any) -> None:
            raise RuntimeError("this model refuses to load")

        def predict(self, context: Any, model_input: list[str]) -> list[str]:
            return model_input

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("broken")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="broken", python_model=Broken(), pip_requirements=[f"mlflow=={mlflow.__version__}"]
        )
    mlflow.register_model(info.model_uri, "broken-model")
    return "broken-model"
