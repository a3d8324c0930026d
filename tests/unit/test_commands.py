"""`up`, `status`, `down` and `logs` on the FakeEngine with scripted services: no Docker, no
network but the local ports `up` checks are free."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator

import pytest

from mlstack import labels
from mlstack.commands.down import down
from mlstack.commands.logs import logs
from mlstack.commands.status import Overall, Row, StatusResult, status
from mlstack.commands.up import Action, UpResult, up
from mlstack.config import StackConfig
from mlstack.config.endpoint import Endpoint
from mlstack.errors import (
    ExitCode,
    NotRunning,
    PortInUse,
    ServiceUnhealthy,
    StateError,
    UsageError,
    exit_code_for,
)
from mlstack.project.context import Project
from mlstack.project.logtext import lines_of
from mlstack.project.reporting import Event, Reporter, quiet
from mlstack.state import ProjectState
from tests.fakes import FakeBackends, FakeEngine, crash_loops, exits

CONTAINERS = ["p-mlflow", "p-postgres", "p-storage"]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports nothing listens on (all bound at once, so never the same twice)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def make_config(project: str, ports: list[int], workers: int = 1) -> StackConfig:
    storage, console, postgres, mlflow = ports
    return StackConfig(
        project=project,
        storage={"port": storage, "console_port": console},
        postgres={"port": postgres},
        mlflow={"port": mlflow, "workers": workers},
    )


def open_project(config: StackConfig) -> Project:
    """As the CLI's `up` opens it: secrets made if missing, stored only by `up` itself."""
    project = Project.open(config, create_secrets=True, save=False)
    assert project is not None
    return project


def images_of(config: StackConfig) -> dict[str, str]:
    specs = open_project(config).spec.services.values()
    return {spec.image: f"sha256:{i:064x}" for i, spec in enumerate(specs, start=1)}


@dataclasses.dataclass
class Stack:
    """One project on a FakeEngine, with its scripted services."""

    ports: list[int]
    engine: FakeEngine
    backends: FakeBackends
    name: str = "p"

    @property
    def config(self) -> StackConfig:
        return make_config(self.name, self.ports)

    @property
    def state(self) -> ProjectState:
        return ProjectState.for_project(self.name)

    def up(
        self,
        *,
        config: StackConfig | None = None,
        project: Project | None = None,
        timeout: float = 30.0,
        report: Reporter = quiet,
    ) -> UpResult:
        project = project or open_project(config or self.config)
        return up(project, self.engine, timeout=timeout, report=report, backends=self.backends)

    def status(self, config: StackConfig | None = None) -> StatusResult:
        return status(config or self.config, self.engine, backends=self.backends)

    def project(self) -> Project:
        project = Project.open(self.config)
        assert project is not None, "never brought up"
        return project

    def serve(self, name: str, log: bytes = b"") -> str:
        """A served model's container as `mlstack serve` labels it, running."""
        project = open_project(self.config)
        spec = dataclasses.replace(
            project.service("mlflow"),
            name="serve",
            container_name=f"{self.name}-serve-{name}",
            ports=(),
            labels={
                labels.PROJECT: self.name,
                labels.SERVICE: "serve",
                labels.SERVE_NAME: name,
            },
        )
        self.engine.create(spec, project.spec.network, [spec.container_name])
        self.engine.start(spec.container_name)
        self.engine.container(spec.container_name).log.append(log)
        return spec.container_name


def new_stack(name: str = "p", engine: FakeEngine | None = None) -> Stack:
    ports = free_ports(4)
    config = make_config(name, ports)
    if engine is None:
        engine = FakeEngine(images=images_of(config))
    return Stack(ports, engine, FakeBackends(engine, name), name)


@pytest.fixture
def stack() -> Stack:
    return new_stack()


def actions(result: UpResult) -> dict[str, Action]:
    return {s.service: s.action for s in result.services}


def rows(result: StatusResult) -> dict[str, Row]:
    return {row.service: row for row in result.services}


def changing(calls: list[tuple[str, str]], verbs: tuple[str, ...]) -> list[tuple[str, str]]:
    return [call for call in calls if call[0] in verbs]


# --- up: from nothing, and again -----------------------------------------------------------


def test_up_creates_every_container_before_the_first_starts(stack: Stack) -> None:
    result = stack.up()
    calls = stack.engine.calls
    creates = [i for i, (verb, _) in enumerate(calls) if verb == "create"]
    starts = [i for i, (verb, _) in enumerate(calls) if verb == "start"]
    assert sorted(name for verb, name in calls if verb == "create") == CONTAINERS
    assert sorted(name for verb, name in calls if verb == "start") == CONTAINERS
    assert max(creates) < min(starts)
    # A fresh database: MLflow starts with PostgreSQL and S3 (its launcher waits for the database)
    assert starts == list(range(min(starts), min(starts) + 3))
    assert actions(result) == dict.fromkeys(("postgres", "storage", "mlflow"), Action.CREATED)
    assert result.changed and result.secrets_created
    assert result.tracking_uri == f"http://127.0.0.1:{stack.config.mlflow.port}"


def test_up_from_nothing_makes_the_network_and_volumes(stack: Stack) -> None:
    stack.up()
    project = stack.project()
    assert stack.engine.networks(labels.of_project("p")) == [project.spec.network]
    volumes = project.spec.volume_names()
    assert len(volumes) == 2
    assert stack.engine.volumes(labels.of_project("p")) == sorted(volumes)
    created = changing(stack.engine.calls, ("create-network", "create-volume"))
    assert sorted(created) == sorted(
        [("create-network", project.spec.network)] + [("create-volume", v) for v in volumes]
    )
    # every container on the stack's network, reachable by its service name
    for service in ("postgres", "storage", "mlflow"):
        container = stack.engine.container(f"p-{service}")
        assert container.network == project.spec.network
        assert service in container.aliases
        assert container.state == "running"


def test_up_provisions_the_database_and_bucket(stack: Stack) -> None:
    result = stack.up()
    assert stack.backends.databases == ["created"]
    assert stack.backends.buckets == ["created"]
    assert result.database_created and result.bucket_created


def test_up_stores_the_secrets_0600_only_once_the_preflight_passed(stack: Stack) -> None:
    mlflow_image = stack.config.mlflow.image
    del stack.engine.images[mlflow_image]  # pulled during the preflight
    stack.engine.pullable.add(mlflow_image)
    secrets_file = stack.state.secrets_file
    seen: dict[str, bool] = {}

    def report(event: Event) -> None:
        if event.kind == "step":
            seen[event.message] = secrets_file.exists()

    stack.up(report=report)
    assert seen[f"pulling {mlflow_image}"] is False  # the preflight: nothing stored yet
    assert seen["network and volumes"] is True  # the first step after it
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    stored = secrets_file.read_text()
    assert f"POSTGRES_PASSWORD={stack.project().secrets.POSTGRES_PASSWORD}" in stored
    assert ("pull", mlflow_image) in stack.engine.calls


def test_up_writes_the_rendered_compose_file_and_env_into_the_state_dir(stack: Stack) -> None:
    stack.up()
    project = stack.project()
    compose = stack.state.compose_file
    env = stack.state.env_file
    assert compose.parent == env.parent == stack.state.root
    assert compose.read_text() == project.compose
    assert "container_name: p-mlflow" in compose.read_text()
    assert project.secrets.POSTGRES_PASSWORD in env.read_text()
    assert env.stat().st_mode & 0o777 == 0o600


def test_a_second_up_changes_nothing(stack: Stack) -> None:
    stack.up()
    before = len(stack.engine.calls)
    result = stack.up()
    assert actions(result) == dict.fromkeys(("postgres", "storage", "mlflow"), Action.KEPT)
    assert not result.changed and not result.secrets_created
    assert stack.engine.calls[before:] == []  # no create, start, stop or remove
    assert stack.engine.names() == CONTAINERS
    assert not result.database_created and not result.bucket_created


# --- up: services that fail while starting --------------------------------------------------


def test_a_container_that_exits_while_starting_fails_fast_with_its_masked_log(
    stack: Stack,
) -> None:
    project = open_project(stack.config)
    password = project.secrets.POSTGRES_PASSWORD
    stack.engine.behaviours["postgres"] = exits(
        1, f'FATAL: password authentication failed for user "mlflow" ({password})\n'
    )
    started = time.monotonic()
    with pytest.raises(ServiceUnhealthy) as caught:
        stack.up(project=project, timeout=10)
    assert time.monotonic() - started < 5
    error = caught.value
    assert exit_code_for(error) == ExitCode.UNHEALTHY == 6
    assert error.message == "postgres stopped while starting: exited with code 1"
    assert error.service == "postgres"
    assert "last log lines of postgres:" in error.details
    assert 'FATAL: password authentication failed for user "mlflow" (****)' in error.details
    assert password not in error.details


def test_a_crash_loop_while_starting_fails_fast(stack: Stack) -> None:
    stack.engine.behaviours["mlflow"] = crash_loops(1, "ERROR: cannot reach the database\n")
    started = time.monotonic()
    with pytest.raises(ServiceUnhealthy) as caught:
        stack.up(timeout=10)
    assert time.monotonic() - started < 5
    error = caught.value
    assert error.message.startswith("mlflow stopped while starting: crashed and is restarting")
    assert "(exit code 1)" in error.message
    assert "ERROR: cannot reach the database" in error.details
    assert exit_code_for(error) == ExitCode.UNHEALTHY


def test_a_hanging_probe_fails_at_the_deadline_quoting_its_last_error(stack: Stack) -> None:
    stack.backends.scripted["mlflow"].hang = True
    with pytest.raises(ServiceUnhealthy) as caught:
        stack.up(timeout=1)
    error = caught.value
    assert "mlflow not ready after" in error.message
    assert error.message.endswith("last error from mlflow: mlflow: timed out")
    assert "--timeout" in error.hint
    assert stack.backends.scripted["mlflow"].checks > 1  # retried until the deadline
    assert exit_code_for(error) == ExitCode.UNHEALTHY


def test_a_non_transient_probe_error_fails_at_once(stack: Stack) -> None:
    stack.backends.scripted["postgres"].error = TypeError("bug")
    started = time.monotonic()
    with pytest.raises(TypeError, match="bug"):
        stack.up(timeout=10)
    assert time.monotonic() - started < 5
    assert stack.backends.scripted["postgres"].checks == 1  # not retried


def test_a_state_error_from_a_probe_removes_what_up_created(stack: Stack) -> None:
    wrong_password = StateError(
        'password authentication failed for user "mlflow"',
        "the volume holds other credentials",
        service="postgres",
    )
    stack.backends.scripted["postgres"].error = wrong_password
    with pytest.raises(StateError) as caught:
        stack.up(timeout=10)
    assert caught.value is wrong_password
    assert stack.engine.names() == []
    assert sorted(changing(stack.engine.calls, ("remove",))) == [("remove", c) for c in CONTAINERS]
    project = open_project(stack.config)
    assert stack.engine.networks(labels.of_project("p")) == []
    assert ("remove-network", project.spec.network) in stack.engine.calls
    # the volumes hold data: never removed by a failed `up`
    assert stack.engine.volumes(labels.of_project("p")) == sorted(project.spec.volume_names())
    assert not stack.state.compose_file.exists()  # only a successful `up` records what runs


def test_a_state_error_on_a_later_up_keeps_what_was_there(stack: Stack) -> None:
    stack.up()
    stack.backends.scripted["mlflow"].error = StateError("wrong admin password", service="mlflow")
    before = len(stack.engine.calls)
    with pytest.raises(StateError):
        stack.up(config=make_config("p", stack.ports, workers=2))
    calls = stack.engine.calls[before:]
    assert changing(calls, ("create", "remove")) == [
        ("remove", "p-mlflow"),  # the old one, replaced
        ("create", "p-mlflow"),
        ("remove", "p-mlflow"),  # the new one, undone
    ]
    assert stack.engine.names() == ["p-postgres", "p-storage"]
    assert stack.engine.networks(labels.of_project("p")) != []  # it was there before


# --- up: changes, refusals and interruptions -----------------------------------------------


def test_up_recreates_only_the_service_whose_config_changed(stack: Stack) -> None:
    stack.up()
    old_id = stack.engine.container("p-mlflow").id
    before = len(stack.engine.calls)
    result = stack.up(config=make_config("p", stack.ports, workers=2))
    assert actions(result) == {
        "postgres": Action.KEPT,
        "storage": Action.KEPT,
        "mlflow": Action.RECREATED,
    }
    calls = stack.engine.calls[before:]
    assert calls == [
        ("stop", "p-mlflow"),
        ("remove", "p-mlflow"),
        ("create", "p-mlflow"),
        ("start", "p-mlflow"),
    ]
    mlflow = stack.engine.container("p-mlflow")
    assert mlflow.id != old_id
    assert mlflow.spec is not None and mlflow.spec.command is not None
    command = list(mlflow.spec.command)
    assert command[command.index("--workers") + 1] == "2"


def test_a_taken_port_refuses_up_before_anything_is_created(stack: Stack) -> None:
    port = stack.config.mlflow.port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(PortInUse) as caught:
            stack.up()
    error = caught.value
    assert exit_code_for(error) == ExitCode.CONFLICT == 4
    assert str(port) in error.message and "mlflow.port" in error.message
    assert "mlflow.port" in error.hint
    assert stack.engine.calls == []
    assert stack.engine.names() == [] and stack.engine.network_labels == {}
    assert not stack.state.root.exists()
    assert Project.open(stack.config) is None  # no secrets stored


def test_a_remote_engines_ports_are_not_looked_for_on_this_machine(stack: Stack) -> None:
    """The server's ports are its own: its engine refuses a taken one, this machine's say
    nothing about them."""
    stack.engine.endpoint = Endpoint("ssh://root@server.example", "DOCKER_HOST")
    stack.engine.remote = stack.engine.endpoint.remote
    port = stack.config.mlflow.port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        stack.up()
    assert stack.engine.container("p-mlflow").state == "running"


def test_mlflow_waits_for_the_schema_check_on_a_database_of_unknown_history(
    stack: Stack,
) -> None:
    """An existing database and no record of the image that ran on it: MLflow could migrate a
    schema another image wrote, so it starts only after `up` has looked at the schema."""
    stack.up()
    stack.state.image_record.unlink()  # as a stack from before images were recorded
    down(stack.config, stack.engine)  # containers gone, volumes kept
    looked: list[int] = []
    stack.backends.schema_revision = lambda: looked.append(len(stack.engine.calls)) or None  # type: ignore[method-assign]
    before = len(stack.engine.calls)
    result = stack.up()
    assert actions(result)["mlflow"] is Action.CREATED and looked
    starts = [(i, name) for i, (verb, name) in enumerate(stack.engine.calls) if verb == "start"]
    assert [name for i, name in starts if i >= before][-1] == "p-mlflow"
    mlflow_start = next(i for i, name in starts if name == "p-mlflow" and i >= before)
    assert looked[0] <= mlflow_start  # the schema was read before MLflow started


def test_mlflow_starts_with_its_database_when_the_same_image_ran_on_it(stack: Stack) -> None:
    stack.up()
    stack.engine.stop("p-mlflow", 10)
    stack.engine.stop("p-postgres", 10)
    stack.backends.schema_revision = lambda: pytest.fail("no need to look")  # type: ignore[method-assign]
    before = len(stack.engine.calls)
    stack.up()
    starts = [name for verb, name in stack.engine.calls[before:] if verb == "start"]
    assert sorted(starts) == ["p-mlflow", "p-postgres"]


def test_up_thaws_a_paused_service_instead_of_killing_it(stack: Stack) -> None:
    """A start does nothing to a paused container and a stop waits out its grace, then kills it:
    `up` unpauses it, and status names it and says so meanwhile."""
    stack.up()
    stack.engine.container("p-storage").state = "paused"
    storage = rows(stack.status())["storage"]
    assert storage.cause.startswith("it is paused") and "mlstack up" in storage.fix
    before = len(stack.engine.calls)
    result = stack.up()
    assert actions(result)["storage"] is Action.STARTED
    assert changing(stack.engine.calls[before:], ("unpause", "start", "stop", "remove")) == [
        ("unpause", "p-storage")
    ]
    assert stack.status().overall is Overall.HEALTHY


def test_ctrl_c_before_the_last_start_then_up_completes_without_duplicates(stack: Stack) -> None:
    stack.engine.interrupt_at = ("start", "p-mlflow")
    with pytest.raises(KeyboardInterrupt):
        stack.up()
    assert stack.engine.container("p-mlflow").state == "created"
    before = len(stack.engine.calls)
    result = stack.up()
    assert actions(result) == {
        "postgres": Action.KEPT,
        "storage": Action.KEPT,
        "mlflow": Action.STARTED,
    }
    assert stack.engine.calls[before:] == [("start", "p-mlflow")]
    assert stack.engine.names() == CONTAINERS
    creates = [name for verb, name in stack.engine.calls if verb == "create"]
    assert sorted(creates) == CONTAINERS  # each created once, over both runs
    assert stack.status().overall is Overall.HEALTHY


def test_ctrl_c_while_creating_a_container_then_up_completes(stack: Stack) -> None:
    stack.engine.interrupt_at = ("create", "p-storage")
    with pytest.raises(KeyboardInterrupt):
        stack.up()
    assert "p-storage" not in stack.engine.names()
    assert changing(stack.engine.calls, ("start",)) == []  # nothing starts half-created
    result = stack.up()
    assert actions(result) == {
        "postgres": Action.STARTED,
        "storage": Action.CREATED,
        "mlflow": Action.STARTED,
    }
    assert stack.engine.names() == CONTAINERS
    creates = [name for verb, name in stack.engine.calls if verb == "create"]
    assert sorted(creates) == CONTAINERS
    assert all(stack.engine.container(c).state == "running" for c in CONTAINERS)


# --- status ------------------------------------------------------------------------------------


def test_status_of_a_stack_never_brought_up_is_not_running(stack: Stack) -> None:
    result = stack.status()
    assert result.overall is Overall.NOT_RUNNING
    assert result.exit_code == ExitCode.NOT_RUNNING == 11
    assert [(r.service, r.state) for r in result.services] == [
        ("postgres", "missing"),
        ("storage", "missing"),
        ("mlflow", "missing"),
    ]
    assert not any(r.healthy for r in result.services)
    assert all(probe.checks == 0 for probe in stack.backends.scripted.values())
    stack.up()
    down(stack.config, stack.engine)  # the secrets stay, the containers go
    after_down = stack.status()
    assert after_down.overall is Overall.NOT_RUNNING
    assert [r.state for r in after_down.services] == ["missing"] * 3


def test_status_after_up_is_healthy(stack: Stack) -> None:
    stack.up()
    result = stack.status()
    assert result.overall is Overall.HEALTHY
    assert result.exit_code == ExitCode.OK
    assert [r.service for r in result.services] == ["postgres", "storage", "mlflow"]
    for row in result.services:
        assert row.state == "running" and row.healthy
        assert row.probe is not None and row.probe.ok
        assert row.problem == "" and row.fix == ""
    assert rows(result)["mlflow"].url == stack.config.tracking_uri
    assert result.extra_containers == [] and result.served == []


def test_status_of_a_stopped_container_is_degraded_with_the_fix(stack: Stack) -> None:
    stack.up()
    stack.engine.stop("p-storage", 10)
    result = stack.status()
    assert result.overall is Overall.DEGRADED
    assert result.exit_code == ExitCode.DEGRADED
    storage = rows(result)["storage"]
    assert storage.state == "exited" and not storage.healthy
    assert "exit code 0" in storage.problem
    assert storage.cause.startswith("it was stopped") and storage.fix == "run `mlstack up`"
    assert rows(result)["postgres"].healthy and rows(result)["mlflow"].healthy


def test_status_of_a_crash_looping_container_is_degraded(stack: Stack) -> None:
    stack.up()
    stack.engine.behaviours["postgres"] = crash_loops(3, "PANIC: could not write\n", restarts=2)
    counts = []
    for _ in range(2):
        stack.engine.restart_by_policy("p-postgres")  # the engine restarts it; it dies again
        counts.append(stack.engine.container("p-postgres").restart_count)
        result = stack.status()
        postgres = rows(result)["postgres"]
        assert postgres.state == "restarting" and not postgres.healthy
        assert "exit code 3" in postgres.problem
        assert result.overall is Overall.DEGRADED
        assert result.exit_code == ExitCode.DEGRADED == 10
    assert counts[1] > counts[0] > 0


def test_status_shows_a_hanging_probe_with_its_detail_and_fix(stack: Stack) -> None:
    stack.up()
    stack.backends.scripted["mlflow"].hang = True
    result = stack.status()
    mlflow = rows(result)["mlflow"]
    assert mlflow.state == "running" and not mlflow.healthy
    assert mlflow.probe is not None and not mlflow.probe.ok
    assert mlflow.probe.detail == "mlflow: timed out"
    assert mlflow.problem == "mlflow: timed out"
    assert "mlstack logs mlflow" in mlflow.fix and "mlstack up" in mlflow.fix
    assert rows(result)["postgres"].healthy and rows(result)["storage"].healthy
    assert result.overall is Overall.DEGRADED


def test_status_reports_a_changed_config_on_that_service_only(stack: Stack) -> None:
    stack.up()
    result = stack.status(make_config("p", stack.ports, workers=2))
    problems = {r.service: r.problem for r in result.services if r.problem}
    assert problems == {"mlflow": "its config changed since it was created"}
    assert "mlstack up" in rows(result)["mlflow"].fix
    assert result.overall is Overall.HEALTHY  # it still answers
    # with the config it runs with there is nothing to say
    assert [r.problem for r in stack.status().services] == ["", "", ""]


# --- down --------------------------------------------------------------------------------------


def test_down_removes_every_container_of_the_project_and_its_network(stack: Stack) -> None:
    stack.up()
    served = stack.serve("wine")
    network = stack.project().spec.network
    result = down(stack.config, stack.engine)
    assert sorted(result.containers) == sorted([*CONTAINERS, served])
    assert stack.engine.names() == []
    assert result.networks == [network] and stack.engine.network_labels == {}
    assert not result.nothing_to_do
    # running containers are stopped first (PostgreSQL's shutdown checkpoint)
    assert sorted(changing(stack.engine.calls, ("stop",))) == sorted(
        ("stop", c) for c in [*CONTAINERS, served]
    )


def test_down_keeps_the_volumes_and_the_state(stack: Stack) -> None:
    stack.up()
    volumes = stack.project().spec.volume_names()
    result = down(stack.config, stack.engine)
    assert result.volumes == [] and not result.state_removed
    assert stack.engine.volumes(labels.of_project("p")) == sorted(volumes)
    assert stack.state.secrets_file.exists()
    # and the next `up` comes back on them with the same credentials
    secrets = stack.project().secrets
    result_up = stack.up()
    assert not result_up.secrets_created
    assert stack.project().secrets == secrets


def test_down_purge_also_removes_the_volumes_and_the_state(stack: Stack) -> None:
    stack.up()
    volumes = stack.project().spec.volume_names()
    result = down(stack.config, stack.engine, purge=True)
    assert sorted(result.volumes) == sorted(volumes)
    assert stack.engine.volume_labels == {}
    assert result.state_removed and not stack.state.root.exists()
    assert stack.engine.names() == []


def test_down_on_nothing_has_nothing_to_do(stack: Stack) -> None:
    result = down(stack.config, stack.engine, purge=True)
    assert result.nothing_to_do
    assert result.containers == [] and result.networks == [] and result.volumes == []
    assert stack.engine.calls == []


def test_down_leaves_other_projects_alone(stack: Stack) -> None:
    other = new_stack("q", engine=stack.engine)
    stack.up()
    other.up()
    other_names = ["q-mlflow", "q-postgres", "q-storage"]
    other_volumes = stack.engine.volumes(labels.of_project("q"))
    assert len(other_volumes) == 2
    result = down(stack.config, stack.engine, purge=True)
    assert sorted(result.containers) == CONTAINERS
    assert stack.engine.names() == other_names
    assert all(stack.engine.container(c).state == "running" for c in other_names)
    assert stack.engine.volumes(labels.of_project("q")) == other_volumes
    assert stack.engine.networks(labels.of_project("q")) != []
    assert other.state.secrets_file.exists() and not stack.state.root.exists()
    assert other.status().overall is Overall.HEALTHY


# --- logs --------------------------------------------------------------------------------------


@pytest.fixture
def running(stack: Stack) -> Iterator[Stack]:
    """A stack brought up, each service having printed a few lines."""
    stack.up()
    secrets = stack.project().secrets
    printed = {
        "postgres": f"LOG: starting\nLOG: user mlflow password {secrets.POSTGRES_PASSWORD}\n",
        "storage": f"API: started\nkey {secrets.S3_ACCESS_KEY} secret {secrets.S3_SECRET_KEY}\n",
        "mlflow": "INFO: booting\nINFO: listening on 0.0.0.0:5000\n",
    }
    for service, text in printed.items():
        stack.engine.container(f"p-{service}").log.append(text.encode())
    yield stack


def test_logs_of_one_service_mask_secrets(running: Stack) -> None:
    secrets = running.project().secrets
    lines = list(logs(running.config, running.engine, "postgres", follow=False, tail=None))
    assert lines == [("postgres", "LOG: starting"), ("postgres", "LOG: user mlflow password ****")]
    assert all(secrets.POSTGRES_PASSWORD not in line for _, line in lines)
    storage = list(logs(running.config, running.engine, "minio", follow=False, tail=None))
    assert storage == [("storage", "API: started"), ("storage", "key **** secret ****")]


def test_logs_of_all_services(running: Stack) -> None:
    lines = list(logs(running.config, running.engine, None, follow=False, tail=None))
    assert [service for service, _ in lines] == ["postgres"] * 2 + ["storage"] * 2 + ["mlflow"] * 2
    assert ("mlflow", "INFO: listening on 0.0.0.0:5000") in lines
    assert ("storage", "key **** secret ****") in lines


def test_logs_of_a_served_model(running: Stack) -> None:
    password = running.project().secrets.POSTGRES_PASSWORD
    running.serve("wine", f"serving models:/wine/2\nuri with {password}\n".encode())
    lines = list(logs(running.config, running.engine, "serve-wine", follow=False, tail=None))
    assert lines == [("serve-wine", "serving models:/wine/2"), ("serve-wine", "uri with ****")]
    with pytest.raises(NotRunning, match="'nope'"):
        list(logs(running.config, running.engine, "serve-nope", follow=False, tail=None))


def test_logs_of_an_unknown_service_is_a_usage_error(running: Stack) -> None:
    with pytest.raises(UsageError, match="unknown service 'nginx'") as caught:
        list(logs(running.config, running.engine, "nginx", follow=False, tail=None))
    assert exit_code_for(caught.value) == ExitCode.USAGE
    assert "postgres, storage, mlflow" in caught.value.hint


def test_logs_without_containers_is_not_running(stack: Stack) -> None:
    with pytest.raises(NotRunning) as caught:
        list(logs(stack.config, stack.engine, None, follow=False, tail=None))
    assert exit_code_for(caught.value) == ExitCode.NOT_RUNNING
    assert "mlstack up" in caught.value.hint
    stack.up()
    down(stack.config, stack.engine)  # secrets kept, containers gone
    with pytest.raises(NotRunning):
        list(logs(stack.config, stack.engine, "mlflow", follow=True, tail=None))


def test_logs_tail_keeps_the_last_lines_of_each_service(running: Stack) -> None:
    lines = list(logs(running.config, running.engine, None, follow=False, tail=1))
    assert lines == [
        ("postgres", "LOG: user mlflow password ****"),
        ("storage", "key **** secret ****"),
        ("mlflow", "INFO: listening on 0.0.0.0:5000"),
    ]
    assert list(logs(running.config, running.engine, "mlflow", follow=False, tail=0)) == []


def test_logs_follow_with_several_services_yields_lines_of_each(running: Stack) -> None:
    lines = list(logs(running.config, running.engine, None, follow=True, tail=None))
    assert sorted(lines) == sorted(
        logs(running.config, running.engine, None, follow=False, tail=None)
    )
    for service in ("postgres", "storage", "mlflow"):
        own = [line for s, line in lines if s == service]
        assert len(own) == 2
    # each service's own lines keep their order
    assert [line for s, line in lines if s == "mlflow"] == [
        "INFO: booting",
        "INFO: listening on 0.0.0.0:5000",
    ]


def test_a_no_op_up_is_vouched_for_by_mlflow_and_provisions_nothing(stack: Stack) -> None:
    stack.up()
    assert (len(stack.backends.databases), len(stack.backends.buckets)) == (1, 1)
    result = stack.up()
    assert set(actions(result).values()) == {Action.KEPT}
    assert (len(stack.backends.databases), len(stack.backends.buckets)) == (1, 1)


def test_a_no_op_up_whose_storage_does_not_answer_takes_the_full_path(stack: Stack) -> None:
    stack.up()
    stack.backends.scripted["storage"].refusals = 2  # MLflow cannot vouch for it: probe it
    result = stack.up()
    assert set(actions(result).values()) == {Action.KEPT}
    assert len(stack.backends.buckets) == 2  # provisioned again, as on the full path


def test_a_secret_split_across_two_chunks_is_masked_at_every_cut() -> None:
    secrets = ["Xy7pQ2mN9vR4tK8wL3sD6fG1hJ5zC0bA", "mlstackABCDEFGHIJKLM", "é-secret-ü-ß"]

    def scrub(text: str) -> str:
        for value in secrets:
            text = text.replace(value, "****")
        return text

    for secret in secrets:
        line = f"password={secret} and more\n".encode()
        start = line.index(secret.encode())
        for cut in range(start, start + len(secret.encode()) + 1):  # every byte, also in a char
            chunks = [b"first line\nsecond " + line[:cut], line[cut:] + b"last"]
            out = list(lines_of(chunks, scrub))
            assert out == ["first line", "second password=**** and more", "last"], (secret, cut)
            assert not any(secret in text for text in out)


def test_log_lines_cut_between_chunks_come_out_whole() -> None:
    chunks = [b"alpha be", b"ta\r\ngam", b"ma\n", b"", b"delta"]
    assert list(lines_of(chunks, lambda t: t)) == ["alpha beta", "gamma", "delta"]
