"""`serve` and `serve --stop` with target: swarm on the FakeSwarmEngine: the service's spec
(labels, port, the login in secrets, the in-network tracking URI, the healthcheck), the URL of
the node its task runs on, `status` and `down` with it, and the failures: an unknown model, a
task that never gets healthy, an unknown name to stop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from mlstack import labels
from mlstack.adapters import registry
from mlstack.adapters.mlflow_http import ApiError
from mlstack.commands import swarm_serve
from mlstack.commands.swarm_down import down_swarm
from mlstack.commands.swarm_status import SwarmStatusResult, status_swarm
from mlstack.errors import ConfigError, Conflict, ExitCode, NotReady, NotRunning, ServiceUnhealthy
from mlstack.health import ProbeResult
from mlstack.project.context import Project
from mlstack.project.swarm_plan import PRELUDE
from tests.fakes import FakeBackends, FakeSwarmEngine
from tests.unit.test_swarm_commands import Endpoints, bring_up, swarm_config

MODEL = registry.ResolvedModel(
    uri="models:/wine@champion",
    served_uri="models:/wine/2",
    artifact_location="mlflow-artifacts:/1/models/m-1/artifacts",
    registered_model="wine",
    version="2",
    payload={"inputs": [[1.0, 2.0]]},
)


SERVED = swarm_config(allow_unauthenticated=True)  # a served model on a swarm has no login


@dataclass
class Pings:
    """The model servers' /ping as scripted: URLs in `down` refuse connections."""

    down: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)

    def probe(self, service: str, url: str) -> _Ping:
        return _Ping(service, url, self)


@dataclass
class _Ping:
    service: str
    url: str
    owner: Pings

    def check(self) -> None:
        self.owner.seen.append(self.url)
        if self.url in self.owner.down:
            raise NotReady(f"{self.url}: connection refused", service=self.service)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSwarmEngine]:
    """A swarm with the stack up (auth on); MLflow answers and resolves MODEL."""
    engine = FakeSwarmEngine()
    bring_up(swarm_config(), engine)
    ok = ProbeResult("mlflow", True, 0.01, "ok")
    monkeypatch.setattr(swarm_serve, "run_probe", lambda probe: ok)
    monkeypatch.setattr(swarm_serve, "resolve_model", lambda api, ref: MODEL)
    yield engine


def serve(engine: FakeSwarmEngine, pings: Pings | None = None, **kwargs: Any) -> Any:
    ping = (pings or Pings()).probe
    return swarm_serve.serve_swarm(
        SERVED, engine, "models:/wine@champion", timeout=5, ping=ping, **kwargs
    )


def test_the_service_spec_keeps_the_login_in_secrets_and_reaches_mlflow_in_network(
    engine: FakeSwarmEngine,
) -> None:
    serve(engine)
    spec = engine.swarm_services["p_serve-wine"].spec
    assert spec.labels[labels.PROJECT] == "p" and spec.labels[labels.SERVICE] == "serve-wine"
    assert spec.labels["com.docker.stack.namespace"] == "p"
    assert spec.labels[labels.SERVE_NAME] == "wine"
    assert spec.labels[labels.MODEL_URI] == "models:/wine@champion"
    assert spec.labels[labels.MODEL_VERSION] == "2"
    assert spec.image == swarm_config().mlflow.image and spec.network == "p-net"
    assert spec.replicas == 1 and spec.endpoint_mode == "dnsrr"
    assert [(p.published, p.target, p.mode) for p in spec.ports] == [(5060, 8080, "host")]
    assert spec.environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert spec.command is not None and "models:/wine/2" in spec.command
    assert spec.healthcheck is not None and "8080/ping" in " ".join(spec.healthcheck.test)
    # the admin login: files of swarm secrets the prelude exports, never the environment
    project = Project.open(swarm_config())
    assert project is not None
    login = [project.secrets.MLFLOW_AUTH_ADMIN_USERNAME, project.secrets.MLFLOW_AUTH_ADMIN_PASSWORD]
    assert spec.entrypoint == PRELUDE
    assert sorted(m.target for m in spec.secrets) == [
        "/run/secrets/mlstack-env-MLFLOW_TRACKING_PASSWORD",
        "/run/secrets/mlstack-env-MLFLOW_TRACKING_USERNAME",
    ]
    flat = " ".join([*spec.environment.values(), *spec.command])
    assert not any(v in flat for v in login)
    mounted = {engine.secret_data[m.name][0].decode() for m in spec.secrets}
    assert mounted == set(login)
    assert all(engine.secret_data[m.name][1][labels.PROJECT] == "p" for m in spec.secrets)


def test_without_auth_there_is_no_secret_and_no_prelude(monkeypatch: pytest.MonkeyPatch) -> None:
    config = swarm_config(auth=False, allow_unauthenticated=True)
    engine = FakeSwarmEngine()
    bring_up(config, engine)
    monkeypatch.setattr(swarm_serve, "run_probe", lambda probe: ProbeResult("m", True, 0, "ok"))
    monkeypatch.setattr(swarm_serve, "resolve_model", lambda api, ref: MODEL)
    swarm_serve.serve_swarm(config, engine, "models:/wine@champion", ping=Pings().probe)
    spec = engine.swarm_services["p_serve-wine"].spec
    assert spec.secrets == () and spec.entrypoint is None


def test_serve_returns_the_url_of_the_node_its_task_runs_on_and_status_and_down_see_it(
    engine: FakeSwarmEngine,
) -> None:
    pings = Pings()
    result = serve(engine, pings)
    assert (result.node, result.url) == ("node-1", "http://10.0.0.1:5060")
    assert pings.seen[-1] == "http://10.0.0.1:5060"  # /ping answered there before it returned
    assert result.container == "p_serve-wine" and result.served_uri == "models:/wine/2"
    assert result.curl.startswith("curl -s -X POST http://10.0.0.1:5060/invocations")
    assert any("no login" in w for w in result.warnings) and not result.replaced

    backends = FakeBackends(engine, "p")
    for probe in backends.scripted.values():
        probe.container = None

    def status() -> SwarmStatusResult:
        return status_swarm(
            swarm_config(),
            engine,
            backends=backends,
            probe_endpoint=Endpoints().probe,
            probe_model=pings.probe,
        )

    healthy = status()
    assert healthy.overall == "healthy"
    (row,) = [s for s in healthy.services if s.service == "serve-wine"]
    assert (row.name, row.running, row.desired) == ("p_serve-wine", 1, 1)
    assert [(e.node, e.url, e.probe.ok) for e in row.endpoints] == [
        ("node-1", "http://10.0.0.1:5060", True)
    ]
    pings.down.add("http://10.0.0.1:5060")
    assert status().overall == "degraded"

    down = down_swarm(swarm_config(), engine)
    assert "p_serve-wine" in down.services
    assert not engine.swarm_services and not engine.secret_data


def test_serving_the_name_again_replaces_it_on_the_same_port(engine: FakeSwarmEngine) -> None:
    first = serve(engine)
    again = serve(engine, port=None)
    assert again.replaced and again.port == first.port
    moved = serve(engine, port=6001)
    assert moved.port == 6001 and moved.url.endswith(":6001")
    assert len([s for s in engine.swarm_services if s.startswith("p_serve-")]) == 1


@pytest.mark.parametrize(
    ("port", "words"), [(5050, "the stack's mlflow.port"), (5060, "p_serve-other")]
)
def test_a_port_the_swarm_publishes_is_refused_before_anything_is_made(
    engine: FakeSwarmEngine, port: int, words: str
) -> None:
    serve(engine, name="other")
    made = dict(engine.swarm_services)
    with pytest.raises(Conflict) as caught:
        serve(engine, port=port)
    assert words in caught.value.message and caught.value.exit_code == ExitCode.CONFLICT
    assert engine.swarm_services == made


def test_an_unknown_model_is_one_line_and_makes_nothing(
    engine: FakeSwarmEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlstack.cli import options, run

    class Registry:
        """MLflow's REST API, holding one registered model."""

        def __init__(self, *args: object) -> None:
            self.base_url = "http://mlflow"

        def get(self, endpoint: str, params: object = None) -> dict[str, Any]:
            if endpoint == "/registered-models/get":
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", "no such model")
            return {"registered_models": [{"name": "wine"}]}

    monkeypatch.setattr(swarm_serve, "resolve_model", registry.resolve_model)
    monkeypatch.setattr(swarm_serve, "TrackingApi", Registry)
    monkeypatch.setattr(options, "engine", lambda: engine)
    monkeypatch.setenv("MLSTACK_TARGET", "swarm")
    monkeypatch.setenv("MLSTACK_AUTH", "true")
    monkeypatch.setenv("MLSTACK_ALLOW_UNAUTHENTICATED", "true")
    before = dict(engine.swarm_services)
    code = run(["--project", "p", "serve", "models:/nope/1"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "no registered model named 'nope' (registered: wine)" in errors[0]
    assert engine.swarm_services == before


def test_a_task_that_fails_removes_the_service_and_says_why(engine: FakeSwarmEngine) -> None:
    engine.failing["serve-wine"] = "task: non-zero exit (1)"
    engine.service_logs["p_serve-wine"] = "INFO loading\nRuntimeError: this model refuses to load"
    with pytest.raises(ServiceUnhealthy) as caught:
        serve(engine)
    error = caught.value
    assert error.exit_code == ExitCode.UNHEALTHY and "\n" not in error.message
    assert "p_serve-wine did not start serving models:/wine/2" in error.message
    assert "non-zero exit (1)" in error.message
    assert "RuntimeError: this model refuses to load" in error.details
    assert "p_serve-wine" not in engine.swarm_services  # removed again
    assert not [s for s in engine.secret_data if s.startswith("p_serve-")]  # and its secrets


def test_a_task_that_never_answers_is_removed_at_the_deadline(engine: FakeSwarmEngine) -> None:
    pings = Pings(down={"http://10.0.0.1:5060"})
    with pytest.raises(ServiceUnhealthy) as caught:
        swarm_serve.serve_swarm(
            SERVED, engine, "models:/wine@champion", timeout=1, ping=pings.probe
        )
    assert "not ready after 1s" in caught.value.message
    assert "connection refused" in caught.value.message
    assert "p_serve-wine" not in engine.swarm_services


def test_serving_without_allow_unauthenticated_is_refused_before_the_engine(
    engine: FakeSwarmEngine,
) -> None:
    engine.calls.clear()
    with pytest.raises(ConfigError) as caught:
        swarm_serve.serve_swarm(swarm_config(), engine, "models:/wine@champion", ping=Pings().probe)
    assert "no login" in caught.value.message and "allow_unauthenticated: true" in str(
        caught.value.hint
    )
    assert caught.value.exit_code == ExitCode.USAGE and engine.calls == []


def test_stop_removes_the_service_and_its_secrets(engine: FakeSwarmEngine) -> None:
    serve(engine)
    stopped = swarm_serve.stop_swarm(swarm_config(), engine, "wine")
    assert (stopped.name, stopped.container) == ("wine", "p_serve-wine")
    assert stopped.model_uri == "models:/wine@champion"
    assert "p_serve-wine" not in engine.swarm_services and "p_mlflow" in engine.swarm_services
    assert not [s for s in engine.secret_data if s.startswith("p_serve-")]
    assert ("remove-service", "p_serve-wine") in engine.calls


def test_stop_of_an_unknown_name_is_one_line_naming_what_is_served(
    engine: FakeSwarmEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlstack.cli import options, run

    serve(engine)
    monkeypatch.setattr(options, "engine", lambda: engine)
    monkeypatch.setenv("MLSTACK_TARGET", "swarm")
    monkeypatch.setenv("MLSTACK_AUTH", "true")
    code = run(["--project", "p", "serve", "--stop", "nope"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "no model served as 'nope' in project 'p' (wine)" in errors[0]
    assert "p_serve-wine" in engine.swarm_services


def test_serve_needs_mlflow_running_on_the_swarm(engine: FakeSwarmEngine) -> None:
    engine.remove_service("p_mlflow")
    with pytest.raises(NotRunning) as caught:
        serve(engine)
    assert caught.value.exit_code == ExitCode.NOT_RUNNING and "mlstack up" in caught.value.hint
    assert not [s for s in engine.swarm_services if s.startswith("p_serve-")]
