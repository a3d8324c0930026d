"""`mlstack logs` with target: swarm on the FakeSwarmEngine, through the CLI: which services,
names and aliases, refusals in one line, secrets masked, each line's task and node, several
services followed at once; and the Docker engine's reading of a service log's details."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

from mlstack import labels
from mlstack.cli import options, run
from mlstack.commands.swarm_up import up_swarm
from mlstack.config import StackConfig
from mlstack.engine import SwarmServiceSpec, TaskInfo, TaskLogLine
from mlstack.errors import EngineUnavailable, ExitCode
from mlstack.project.context import Project
from tests.fakes import FakeBackends, FakeSwarmEngine
from tests.unit.test_swarm_engine import engine_on

PG = "postgres.external.uri=postgresql://bob@db.example.com:6432/team"


def config() -> StackConfig:
    return StackConfig(project="p", target="swarm", auth=True)  # type: ignore[arg-type]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeSwarmEngine:
    """The stack up on the fake swarm (MLflow's two replicas on node-1 and node-2), each task
    having printed a line; the CLI pointed at it, with the same config."""
    engine = FakeSwarmEngine()
    engine.pullable.add(config().mlflow.image)
    project = Project.open(config(), create_secrets=True, save=False, engine=engine)
    assert project is not None
    backends = FakeBackends(engine, "p")
    for probe in backends.scripted.values():
        probe.container = None  # no containers on a swarm: the probes pass as scripted
    up_swarm(project, engine, timeout=5, backends=backends, probe_endpoint=_answers)
    engine.print_line("postgres", b"database system is ready to accept connections")
    engine.print_line("storage", b"S3 API listening")
    engine.print_line("mlflow", b"Listening at: http://0.0.0.0:5000", slot=1)
    engine.print_line("mlflow", b"Listening at: http://0.0.0.0:5000", slot=2)
    monkeypatch.setattr(options, "engine", lambda: engine)
    monkeypatch.setenv("MLSTACK_TARGET", "swarm")
    monkeypatch.setenv("MLSTACK_AUTH", "true")
    return engine


def _answers(endpoint: Any) -> Any:
    from mlstack.health import CallableProbe

    return CallableProbe(f"mlflow@{endpoint.node}", lambda: None)


def logs(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = run(["--project", "p", "logs", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.strip()


def test_all_services_each_line_with_its_task_and_node(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = logs(capsys)
    assert code == 0
    width = len("postgres.1@node-1")
    assert out == [
        f"{'postgres.1@node-1':<{width}}| database system is ready to accept connections",
        f"{'storage.1@node-1':<{width}}| S3 API listening",
        f"{'mlflow.1@node-1':<{width}}| Listening at: http://0.0.0.0:5000",
        f"{'mlflow.2@node-2':<{width}}| Listening at: http://0.0.0.0:5000",
    ]
    assert ("service-logs", "p_mlflow") in engine.calls


def test_one_service_of_one_task_reads_as_on_one_engine(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = logs(capsys, "postgres")
    assert (code, out) == (0, ["database system is ready to accept connections"])
    assert [c for c in engine.calls if c[0] == "service-logs"] == [("service-logs", "p_postgres")]


def test_mlflows_replicas_say_which_task_and_node_printed_each_line(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.print_line("mlflow", b"GET /health 200", slot=2)
    code, out, _ = logs(capsys, "mlflow")
    assert code == 0
    assert [line.split("|")[0].strip() for line in out] == [
        "mlflow.1@node-1",
        "mlflow.2@node-2",
        "mlflow.2@node-2",
    ]
    assert out[-1].endswith("| GET /health 200")


def test_a_replaced_task_and_one_no_longer_listed_say_their_task_ids(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    mlflow = engine.swarm_services["p_mlflow"]
    current = next(t for t in mlflow.tasks if t.slot == 2)
    mlflow.tasks.append(TaskInfo("failedtask1234", "n3", "node-3", "failed", "shutdown", "", 2))
    engine.task_lines["p_mlflow"] += [
        TaskLogLine("failedtask1234", "n3", b"duplicate key value"),
        TaskLogLine("prunedtask5678", "n2", b"from long ago"),
    ]
    code, out, _ = logs(capsys, "mlflow")
    assert code == 0
    assert [tuple(part.strip() for part in line.split("| ")) for line in out] == [
        ("mlflow.1@node-1", "Listening at: http://0.0.0.0:5000"),
        (f"mlflow.2.{current.id[:12]}@node-2", "Listening at: http://0.0.0.0:5000"),
        ("mlflow.2.failedtask12@node-3", "duplicate key value"),
        ("mlflow.prunedtask56@node-2", "from long ago"),
    ]


def test_tail_counts_per_task(engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]) -> None:
    engine.print_line("mlflow", b"second of task 1", slot=1)
    code, out, _ = logs(capsys, "mlflow", "--tail", "1")
    assert code == 0
    assert sorted(tuple(part.strip() for part in line.split("| ")) for line in out) == [
        ("mlflow.1@node-1", "second of task 1"),
        ("mlflow.2@node-2", "Listening at: http://0.0.0.0:5000"),
    ]


@pytest.mark.parametrize("alias", ["s3", "storage", "minio"])
def test_storage_answers_to_its_aliases(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str], alias: str
) -> None:
    code, out, _ = logs(capsys, alias)
    assert (code, out) == (0, ["S3 API listening"])


def test_seaweedfs_is_storage_when_the_stack_runs_it(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSTACK_STORAGE_ENGINE", "seaweedfs")
    code, out, _ = logs(capsys, "seaweedfs")
    assert (code, out) == (0, ["S3 API listening"])


def test_a_secret_in_a_line_is_masked(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    project = Project.open(config())
    assert project is not None
    password = project.secrets.POSTGRES_PASSWORD
    engine.print_line("postgres", f"connection with password={password} refused".encode())
    code, out, _ = logs(capsys, "postgres")
    assert code == 0 and out[-1] == "connection with password=**** refused"
    assert not any(password in line for line in out)


def test_a_managed_service_is_refused_in_one_line_before_the_engine(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.calls.clear()
    code = run(["--project", "p", "--set", PG, "logs", "postgres"])
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.USAGE and len(err.splitlines()) == 1, err
    assert "managed elsewhere" in err and engine.calls == []


def test_an_unknown_service_is_refused_in_one_line(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = logs(capsys, "nginx")
    assert (code, out) == (ExitCode.USAGE, []) and len(err.splitlines()) == 1
    assert "unknown service 'nginx'" in err


def test_a_stack_not_on_the_swarm_says_so_in_one_line(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(engine.swarm_services):
        engine.remove_service(name)
    for args in ([], ["mlflow"]):
        code, out, err = logs(capsys, *args)
        assert (code, out) == (ExitCode.NOT_RUNNING, []), err
        assert len(err.splitlines()) == 1 and "mlstack up" in err and "Traceback" not in err


def test_an_engine_in_no_swarm_is_refused_in_one_line(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.local_state = "inactive"
    code, _, err = logs(capsys, "mlflow")
    assert code == ExitCode.USAGE and len(err.splitlines()) == 1 and "in no swarm" in err


def _served(engine: FakeSwarmEngine, service_labels: dict[str, str]) -> None:
    spec = SwarmServiceSpec(
        name="p_serve-wine",
        image="mlflow:serve",
        command=None,
        entrypoint=None,
        environment={},
        network="p-net",
        aliases=(),
        labels={labels.PROJECT: "p", **service_labels},
    ).with_hash()
    engine.deploy_service(spec)
    engine.task_lines["p_serve-wine"] = [TaskLogLine("", "", b"serving models:/wine/2")]


@pytest.mark.parametrize(
    "service_labels",
    [{labels.SERVICE: "serve-wine"}, {labels.SERVICE: "serve", labels.SERVE_NAME: "wine"}],
)
def test_a_model_served_on_the_swarm_is_found_by_its_labels(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str], service_labels: dict[str, str]
) -> None:
    _served(engine, service_labels)
    code, out, _ = logs(capsys, "serve-wine")
    assert (code, out) == (0, ["serving models:/wine/2"])
    code, out, err = logs(capsys, "serve-nope")
    assert code == ExitCode.USAGE and len(err.splitlines()) == 1
    assert "no model is served as 'nope'" in err and "serve-wine" in err


def test_following_reads_every_service_at_once(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's stream prints its second line only once MLflow's first line is out: read
    one service after the other, that line would come before MLflow's."""
    mlflow_printed = threading.Event()
    scripted = {
        "p_postgres": [b"pg one", mlflow_printed, b"pg two"],
        "p_storage": [b"s3 one"],
        "p_mlflow": [b"mlflow one"],
    }
    seen: list[str] = []

    def following(name: str, *, tail: int | str = "all", follow: bool = False) -> Iterator[Any]:
        assert follow
        for step in scripted[name]:
            if isinstance(step, threading.Event):
                seen.append(f"waited: {step.wait(timeout=30)}")
                continue
            yield TaskLogLine("", "", step)
            if name == "p_mlflow":
                mlflow_printed.set()  # once its line is taken: the reader has it

    monkeypatch.setattr(engine, "service_log_lines", following)
    code, out, _ = logs(capsys, "--follow")
    assert code == 0 and seen == ["waited: True"]
    texts = [line.split("| ")[1] for line in out]
    assert sorted(texts) == ["mlflow one", "pg one", "pg two", "s3 one"]
    assert texts.index("mlflow one") < texts.index("pg two")


def test_an_engine_gone_while_following_is_one_line(
    engine: FakeSwarmEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str, *, tail: int | str = "all", follow: bool = False) -> Iterator[Any]:
        yield TaskLogLine("", "", b"before")
        raise EngineUnavailable("reading the log: the engine broke off the connection")

    monkeypatch.setattr(engine, "service_log_lines", broken)
    code, _, err = logs(capsys, "--follow")
    assert code == ExitCode.ENGINE and len(err.splitlines()) == 1, err


class Api:
    """The SDK's service_logs: frames as the engine sends them, with their details."""

    def __init__(self, frames: list[bytes] | None) -> None:
        self.frames = frames
        self.asked: dict[str, Any] = {}

    def service_logs(self, service: str, **kwargs: Any) -> Iterator[bytes]:
        self.asked = {"service": service, **kwargs}
        if self.frames is None:
            raise docker.errors.NotFound("service p_mlflow not found")
        return iter(self.frames)


def test_the_engine_reads_task_and_node_from_each_lines_details() -> None:
    details = (
        b"com.docker.swarm.node.id=n2,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t7"
    )
    frames = [details + b" first line\n", details + b" sec", b"ond\r\n", b"no details here\n"]
    api = Api(frames)
    lines = list(engine_on(api).service_log_lines("p_mlflow", tail=50, follow=False))
    assert lines == [
        TaskLogLine("t7", "n2", b"first line"),
        TaskLogLine("t7", "n2", b"second\r"),
        TaskLogLine("", "", b"no details here"),
    ]
    assert api.asked["details"] and api.asked["stdout"] and api.asked["stderr"]
    assert (api.asked["tail"], api.asked["follow"]) == (50, False)


def test_the_engine_reads_nothing_of_a_service_gone() -> None:
    assert list(engine_on(Api(None)).service_log_lines("p_mlflow")) == []
