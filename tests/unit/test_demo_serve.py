"""`demo` and `serve` without an engine: URI forms, names, the grid, requirement checks, payloads,
status verdicts, the missing-extra path and the failure path of a deployment (fake engine)."""

from __future__ import annotations

import io
import json
import shlex
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mlstack import labels
from mlstack.adapters import registry, requirements
from mlstack.cli import options, run
from mlstack.commands import demo, serve
from mlstack.commands.status import Overall, Row, overall_status, served_rows
from mlstack.compose.launcher import SERVE_LAUNCHER
from mlstack.config import StackConfig
from mlstack.engine import ContainerInfo
from mlstack.engine.docker import DockerEngine
from mlstack.errors import ExitCode, MlstackError, ServiceUnhealthy, UsageError
from mlstack.health import ProbeResult
from mlstack.project import served
from mlstack.project.context import Project
from mlstack.project.logtext import resolve_service
from mlstack.project.serving import curl_command
from mlstack.project.watch import log_gist
from tests.fakes import FakeEngine, exits


@pytest.fixture
def unused_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- model URIs and names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/wine@champion", {"kind": "alias", "name": "wine", "alias": "champion"}),
        ("models:/wine/3", {"kind": "version", "name": "wine", "version": "3"}),
        ("models:/wine/latest", {"kind": "latest", "name": "wine"}),
        (
            "models:/m-0123456789abcdef0123456789abcdef",
            {"kind": "logged", "model_id": "m-0123456789abcdef0123456789abcdef"},
        ),
        ("runs:/abc123/model", {"kind": "run", "run_id": "abc123", "path": "model"}),
        ("runs:/abc123/sub/model/", {"kind": "run", "run_id": "abc123", "path": "sub/model"}),
    ],
)
def test_model_uri_forms(uri: str, expected: dict[str, str]) -> None:
    ref = registry.parse_model_uri(uri)
    for key, value in expected.items():
        assert getattr(ref, key) == value, key


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/wine", "no version or alias"),
        ("models:/wine/Production", "neither a version number nor 'latest'"),
        ("models:/", "not a model URI"),
        ("runs:/abc123", "needs a run id and the model's path"),
        ("s3://bucket/model", "not a model URI"),
        ("./model", "not a model URI"),
    ],
)
def test_bad_model_uris_are_usage_errors(uri: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        registry.parse_model_uri(uri)
    assert message in caught.value.message
    assert caught.value.hint


def test_default_names_are_docker_safe() -> None:
    assert registry.default_name(registry.parse_model_uri("models:/mlstack-demo@champion")) == (
        "mlstack-demo"
    )
    assert registry.default_name(registry.parse_model_uri("models:/My Model!/2")) == "my-model"
    assert registry.default_name(registry.parse_model_uri("runs:/0123456789abcdef/model")) == (
        "run-01234567"
    )
    for uri in ("models:/My Model!/2", "models:/" + "x" * 80 + "/1", "runs:/abc/model"):
        served.check_name(registry.default_name(registry.parse_model_uri(uri)))


@pytest.mark.parametrize("name", ["Bad", "-x", "a b", "a/b", "", "x" * 41])
def test_bad_serve_names(name: str) -> None:
    with pytest.raises(UsageError):
        served.check_name(name)


# --- requirements, payloads, logs ------------------------------------------------------------


def test_requirement_mismatches() -> None:
    installed = {"mlflow": "3.17.2", "scikit-learn": "1.9.1", "numpy": "2.4.6"}
    assert (
        requirements.requirement_mismatches(
            ["mlflow==3.17.2", "scikit_learn==1.9.1", "numpy>=2", "# comment", "", "-r extra.txt"],
            installed,
        )
        == []
    )
    problems = requirements.requirement_mismatches(
        ["scikit-learn==1.5.0", "xgboost==2.0", "numpy; python_version < '3'", "not a req ((("],
        installed,
    )
    assert problems == [
        "scikit-learn==1.5.0 (the image has 1.9.1)",
        "xgboost==2.0 (not in the image)",
        "not a req ((( (cannot be checked)",
    ]


def test_environment_warnings_name_the_differences() -> None:
    model = registry.ResolvedModel(
        uri="models:/m/1",
        served_uri="models:/m/1",
        artifact_location="x",
        mlflow_version="3.1.0",
        python_version="3.12.1",
        requirements=["mlflow==3.1.0"],
    )
    warnings = requirements.environment_warnings(
        model.requirements,
        model.mlflow_version,
        model.python_version,
        {"mlflow": "3.17.2"},
        "3.11",
        "img:1",
    )
    assert len(warnings) == 3
    assert "mlflow==3.1.0 (the image has 3.17.2)" in warnings[0]
    assert "MLflow 3.1.0" in warnings[1] and "Python 3.12.1" in warnings[2]
    same = registry.ResolvedModel(
        uri="u",
        served_uri="u",
        artifact_location="x",
        mlflow_version="3.17.2",
        python_version="3.11.7",
        requirements=["mlflow==3.17.2"],
    )
    assert (
        requirements.environment_warnings(
            same.requirements,
            same.mlflow_version,
            same.python_version,
            {"mlflow": "3.17.2"},
            "3.11",
            "img:1",
        )
        == []
    )


def test_payload_is_trimmed_and_curl_is_pasteable() -> None:
    payload = {
        "dataframe_split": {
            "columns": ["a", "it's"],
            "index": list(range(10)),
            "data": [[i, i * 2] for i in range(10)],
        }
    }
    trimmed = registry.trim_payload(payload)
    assert trimmed["dataframe_split"]["data"] == [[0, 0], [1, 2], [2, 4]]
    assert trimmed["dataframe_split"]["index"] == [0, 1, 2]
    assert payload["dataframe_split"]["index"] == list(range(10))  # not modified
    assert registry.trim_payload({"inputs": [[1], [2], [3], [4]]}) == {"inputs": [[1], [2], [3]]}
    command = curl_command("http://127.0.0.1:5060", trimmed)
    words = shlex.split(command)
    assert words[:5] == ["curl", "-s", "-X", "POST", "http://127.0.0.1:5060/invocations"]
    assert json.loads(words[words.index("-d") + 1]) == trimmed
    assert "<JSON input>" in curl_command("http://h:1", None)


def test_log_excerpt_keeps_the_errors_not_the_frames() -> None:
    log = "\n".join(
        [
            "INFO starting",
            "Traceback (most recent call last):",
            '  File "x.py", line 1, in <module>',
            "    boom()",
            "RuntimeError: this model refuses to load",
            "INFO starting",
            "Traceback (most recent call last):",
            "RuntimeError: this model refuses to load",
        ]
    )
    assert log_gist(log) == "INFO starting\nRuntimeError: this model refuses to load"


# --- the demo's grid, selection and plot -------------------------------------------------------


@pytest.mark.parametrize("runs", range(1, len(demo.GRID) + 1))
def test_grid_picks_distinct_candidates(runs: int) -> None:
    picked = demo.grid_for(runs)
    assert len(picked) == runs
    assert len({demo.run_name(p) for p in picked}) == runs
    assert all(p in demo.GRID for p in picked)


@pytest.mark.parametrize("runs", [0, len(demo.GRID) + 1])
def test_grid_bounds(runs: int) -> None:
    with pytest.raises(UsageError) as caught:
        demo.grid_for(runs)
    assert "--runs must be between 1 and" in caught.value.message


def _run(name: str, accuracy: float, f1: float, loss: float) -> demo.DemoRun:
    metrics = {"accuracy": accuracy, "f1_macro": f1, "log_loss": loss}
    return demo.DemoRun(name, name, {}, metrics, f"models:/m-{name}", "")


def test_best_run_prefers_accuracy_then_f1_then_low_loss() -> None:
    runs = [_run("a", 0.9, 0.9, 0.1), _run("b", 1.0, 0.9, 0.5), _run("c", 1.0, 0.95, 0.9)]
    assert demo.best_run(runs).run_id == "c"
    runs = [_run("a", 1.0, 1.0, 0.3), _run("b", 1.0, 1.0, 0.2), _run("c", 1.0, 1.0, 0.2)]
    assert demo.best_run(runs).run_id == "b"


def test_confusion_figure_is_a_png() -> None:
    figure = demo.confusion_figure([[5, 1, 0], [0, 6, 0], [0, 2, 4]], ["0", "1", "2"], "t")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_split_is_stable_and_held_out() -> None:
    x_train, x_test, y_train, y_test = demo.load_split()
    again = demo.load_split()
    assert list(x_test.index) == list(again[1].index)
    assert not set(x_train.index) & set(x_test.index)
    assert len(x_test) == len(y_test) and len(x_train) == len(y_train)


# --- the missing extra ---------------------------------------------------------------------------


def test_demo_without_scikit_learn_says_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "sklearn" or name.startswith("sklearn."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` raises ImportError

    def no_engine() -> FakeEngine:
        raise AssertionError("the engine must not be needed to say what to install")

    monkeypatch.setattr(options, "engine", no_engine)
    code, out, err = cli(capsys, "demo")
    assert code == ExitCode.USAGE, err
    assert err.splitlines() == [
        "error: `mlstack demo` needs scikit-learn, which is not installed; "
        "hint: install the demo extra: pip install 'mlstack-cli[demo]'"
    ]
    assert out == "" and "Traceback" not in err


# --- the CLI's checks before the engine -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve"], "missing MODEL_URI"),
        (["serve", "models:/a@b", "--stop", "a"], "--stop takes only the name"),
        (["serve", "models:/a@b", "--name", "Bad Name"], "not a valid serve name"),
        (["serve", "s3://bucket/model"], "not a model URI"),
        (["serve", "models:/a@b", "--port", "0"], "--port"),
        (["serve", "--stop", "Bad Name"], "not a valid serve name"),
        (["demo", "--runs", "0"], "--runs must be between 1 and 12"),
    ],
)
def test_serve_and_demo_bad_input(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setattr(options, "engine", lambda: pytest.fail("engine touched"))
    code, _, err = cli(capsys, *args)
    assert code == ExitCode.USAGE, err
    assert message in err and "Traceback" not in err


def test_help_lists_demo_and_serve(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "  demo" in out and "  serve" in out
    code, out, _ = cli(capsys, "demo", "--help")
    assert code == 0 and f"default: {demo.DEFAULT_RUNS}" in out.replace("[", "").replace("]", "")


def test_logs_accepts_served_models() -> None:
    config = StackConfig()
    assert resolve_service(config, "serve-wine") == "serve-wine"
    with pytest.raises(UsageError):
        resolve_service(config, "serve-")


# --- status ------------------------------------------------------------------------------------


def _info(name: str, state: str, container_labels: dict[str, str]) -> ContainerInfo:
    return ContainerInfo(
        id=name,
        name=name,
        image="img",
        state=state,
        health=None,
        exit_code=0 if state == "running" else 137,
        restart_count=0,
        ports={},
        labels=container_labels,
    )


def _served_labels(name: str, port: int) -> dict[str, str]:
    return {
        labels.PROJECT: "p",
        labels.SERVICE: served.SERVICE,
        labels.SERVE_NAME: name,
        labels.SERVE_PORT: str(port),
        labels.MODEL_URI: "models:/wine@champion",
        labels.MODEL_SERVED: "models:/wine/2",
        labels.MODEL_VERSION: "2",
    }


def test_a_served_model_that_is_down_shows_its_fix() -> None:
    config = StackConfig(project="p")
    rows = served_rows(config, [_info("p-serve-wine", "exited", _served_labels("wine", 5099))])
    (row,) = rows
    assert not row.healthy and row.problem == "exited (exit code 137)"
    assert "mlstack logs serve-wine" in row.fix
    assert "mlstack serve models:/wine@champion --name wine --port 5099" in row.fix
    assert row.version == "2" and row.url == "http://127.0.0.1:5099"
    assert row.name == "wine" and row.service == "serve-wine"


def test_a_served_model_that_does_not_answer_is_reported(unused_port: int) -> None:
    config = StackConfig(project="p")
    (row,) = served_rows(
        config, [_info("p-serve-wine", "running", _served_labels("wine", unused_port))]
    )
    assert row.probe is not None and not row.probe.ok
    assert row.problem.startswith("/ping does not answer") and "still be loading" in row.fix


def _row(name: str, state: str, probe: ProbeResult | None) -> Row:
    return Row(name, name, f"p-{name}", state, None, "", probe)


def test_served_models_degrade_the_overall_status_only_when_unhealthy() -> None:
    services = [_row(n, "running", _ok(n)) for n in ("postgres", "storage", "mlflow")]
    up = _row("serve-a", "running", _ok("a"))
    down = _row("serve-b", "exited", None)
    assert overall_status(services, []) is Overall.HEALTHY
    assert overall_status(services, [up]) is Overall.HEALTHY
    assert overall_status(services, [up, down]) is Overall.DEGRADED
    stopped = [_row(n, "missing", None) for n in ("postgres",)]
    assert overall_status(stopped, [up]) is Overall.NOT_RUNNING


def _ok(name: str) -> ProbeResult:
    return ProbeResult(name, True, 0.01, "ok")


# --- a deployment that fails leaves nothing behind (FakeEngine) --------------------------------

LOG = "INFO loading\nTraceback (most recent call last):\n  File x\nRuntimeError: no luck\n"


@pytest.fixture
def fake_project(monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    config = StackConfig(project="p", mlflow={"port": 5999})
    project = Project.open(config, create_secrets=True)
    assert project is not None
    model = registry.ResolvedModel(
        uri="models:/wine@champion",
        served_uri="models:/wine/2",
        artifact_location="mlflow-artifacts:/1/models/m-1/artifacts",
        registered_model="wine",
        version="2",
        payload={"inputs": [[1.0, 2.0]]},
    )
    monkeypatch.setattr(serve, "require_running", lambda config, engine, command: project)
    monkeypatch.setattr(serve, "resolve_model", lambda uri, ref: model)
    yield project


def _engine(project: Project) -> FakeEngine:
    engine = FakeEngine(images={project.config.mlflow.image: "sha256:mlflow"})
    engine.behaviours[served.SERVICE] = exits(137, LOG + project.secrets.POSTGRES_PASSWORD)
    return engine


def test_a_model_server_that_exits_is_removed_with_its_log(
    fake_project: Project, unused_port: int
) -> None:
    engine = _engine(fake_project)
    with pytest.raises(ServiceUnhealthy) as caught:
        serve.serve(
            fake_project.config, engine, "models:/wine@champion", port=unused_port, timeout=60
        )
    error = caught.value
    assert ("create", "p-serve-wine") in engine.calls and ("remove", "p-serve-wine") in engine.calls
    assert engine.names() == []  # nothing stays behind
    assert "stopped while starting: exited with code 137" in error.message
    assert "RuntimeError: no luck" in error.details and "File x" not in error.details
    assert fake_project.secrets.POSTGRES_PASSWORD not in error.details  # masked
    assert error.exit_code == ExitCode.UNHEALTHY


def test_a_model_server_spec(fake_project: Project, unused_port: int) -> None:
    model = registry.ResolvedModel(
        uri="models:/wine@champion",
        served_uri="models:/wine/2",
        artifact_location="x",
        registered_model="wine",
        version="2",
    )
    spec = serve.serve_spec(fake_project, "wine", unused_port, model)
    assert spec.command is not None
    assert spec.command[:3] == ("python", "-c", SERVE_LAUNCHER)  # one import in the server
    assert spec.command[3:7] == ("models", "serve", "-m", "models:/wine/2")
    assert spec.command[-2:] == ("--env-manager", "local")
    assert spec.environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert spec.environment["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] == "false"
    assert spec.restart == "unless-stopped"
    assert [(p.host_ip, p.host_port, p.container_port) for p in spec.ports] == [
        ("127.0.0.1", unused_port, 8080)
    ]
    assert spec.labels[labels.MODEL_VERSION] == "2"
    assert spec.labels[labels.SERVICE] == "serve"
    assert spec.labels[labels.PROJECT] == "p"


@pytest.mark.parametrize(
    ("sets", "bind"),
    [
        ({"bind": "0.0.0.0", "auth": True}, "127.0.0.1"),  # no login on a model: loopback
        ({"bind": "0.0.0.0", "allow_unauthenticated": True}, "127.0.0.1"),  # still no login
        ({"bind": "::", "auth": True}, "::1"),
        ({}, "127.0.0.1"),
    ],
)
def test_a_model_server_has_no_login_so_stays_on_loopback(
    sets: dict[str, object], bind: str
) -> None:
    config = StackConfig(project="p", **sets)  # type: ignore[arg-type]
    assert config.private_bind == bind


def test_the_stack_port_is_refused_before_anything_is_created(fake_project: Project) -> None:
    engine = _engine(fake_project)
    with pytest.raises(MlstackError) as caught:
        serve.serve(fake_project.config, engine, "models:/wine@champion", port=5999)
    assert caught.value.exit_code == ExitCode.CONFLICT
    assert "the stack's mlflow.port" in caught.value.message
    assert engine.calls == []


# --- the engine publishes the ports it is given ------------------------------------------------


class RecordingApi:
    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_networking_config(self, value: Any) -> Any:
        return value

    def create_endpoint_config(self, **kwargs: Any) -> Any:
        return kwargs

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:
        self.kwargs = kwargs
        return {"Id": "x"}


def test_engine_exposes_plain_port_numbers(fake_project: Project) -> None:
    api = RecordingApi()

    class Client:
        pass

    client = Client()
    client.api = api  # type: ignore[attr-defined]
    engine = DockerEngine(client)  # type: ignore[arg-type]
    model = registry.ResolvedModel(uri="u", served_uri="u", artifact_location="x")
    engine.create(serve.serve_spec(fake_project, "wine", 5061, model), "p-net", ["serve-wine"])
    # "8080/tcp" here would become "8080/tcp/tcp" in the SDK, and the binding would not apply.
    assert api.kwargs["ports"] == [8080]
    assert api.kwargs["host_config"]["port_bindings"] == {"8080/tcp": ("127.0.0.1", 5061)}
