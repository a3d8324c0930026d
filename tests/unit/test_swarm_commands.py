"""`up`, `status` and `down` with target: swarm on the FakeSwarmEngine: the checks before
anything is made, what is made (secrets, configs, a labelled data node, services), and what
`down` removes or keeps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import pytest

from mlstack import labels
from mlstack.commands.swarm_down import down_swarm
from mlstack.commands.swarm_status import status_swarm
from mlstack.commands.swarm_up import up_swarm
from mlstack.config import StackConfig
from mlstack.errors import ConfigError, ExitCode, ImageUnavailable, NotReady, NotRunning
from mlstack.project.context import Project
from mlstack.project.reporting import Event
from mlstack.project.swarm_ops import Endpoint, reachable_mlflow
from mlstack.project.swarm_plan import PRELUDE, data_label
from mlstack.state import ProjectState
from tests.fakes import FakeBackends, FakeSwarmEngine, three_nodes

DATA = data_label("p")


def swarm_config(**extra: object) -> StackConfig:
    values: dict[str, object] = {"project": "p", "target": "swarm", "auth": True}
    return StackConfig(**{**values, **extra})  # type: ignore[arg-type]


@dataclass
class Endpoints:
    """MLflow's published endpoints as scripted: those in `down` refuse connections."""

    down: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)

    def probe(self, endpoint: Endpoint) -> _EndpointProbe:
        return _EndpointProbe(f"mlflow@{endpoint.node}", endpoint.url, self)


@dataclass
class _EndpointProbe:
    service: str
    url: str
    owner: Endpoints

    def check(self) -> None:
        self.owner.seen.append(self.url)
        if self.url in self.owner.down:
            raise NotReady(f"{self.url}: connection refused", service=self.service)


def bring_up(  # type: ignore[no-untyped-def]
    config: StackConfig,
    engine: FakeSwarmEngine,
    endpoints: Endpoints | None = None,
    revision: str | None = None,  # the database's MLflow schema (None: no tables yet)
):
    engine.pullable.add(config.mlflow.image)  # the relay's, on the manager
    project = Project.open(config, create_secrets=True, save=False, engine=engine)
    assert project is not None
    endpoints = endpoints or Endpoints()
    backends = FakeBackends(engine, "p")
    backends.revision = revision
    for probe in backends.scripted.values():
        probe.container = None  # no containers on a swarm: the probes pass as scripted
    return up_swarm(
        project, engine, timeout=5, backends=backends, probe_endpoint=endpoints.probe
    ), backends


@pytest.fixture
def backups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """`up`'s backups before a migration, as (the image that wrote the data, project): the
    archive itself is written from a real database (tests/integration/test_swarm.py)."""
    from mlstack.commands import swarm_up

    taken: list[tuple[str, str]] = []

    def take(project: Project, engine: object, path: object, *, image: object, **_: object) -> Any:
        taken.append((image.image, project.name))  # type: ignore[attr-defined]
        return SimpleNamespace(path="/backups/p.tar.gz")

    monkeypatch.setattr(swarm_up, "take_backup", take)
    return taken


def test_a_new_stack_starts_one_mlflow_replica_first_then_the_others() -> None:
    """Replicas starting together on an empty database race to create MLflow's tables."""
    engine = FakeSwarmEngine()
    result, _ = bring_up(swarm_config(mlflow={"replicas": 3}), engine)
    mlflow = [s.replicas for s in engine.deployed if s.name == "p_mlflow"]
    assert mlflow == [1, 3] and result.services[-1].action == "created"
    again, _ = bring_up(swarm_config(mlflow={"replicas": 3}), engine)  # tables or not: it runs
    assert [s.replicas for s in engine.deployed if s.name == "p_mlflow"] == [1, 3]
    assert again.services[-1].action == "kept"
    engine2 = FakeSwarmEngine()
    bring_up(swarm_config(mlflow={"replicas": 3}), engine2, revision="1b5f0d9ad7c1")
    assert [s.replicas for s in engine2.deployed if s.name == "p_mlflow"] == [3]


def test_up_deploys_the_stack_with_secrets_out_of_the_environment() -> None:
    engine = FakeSwarmEngine()
    endpoints = Endpoints()
    result, backends = bring_up(swarm_config(), engine, endpoints)
    assert [(s.service, s.action, s.replicas) for s in result.services] == [
        ("postgres", "created", 1),
        ("storage", "created", 1),
        ("mlflow", "created", 2),
    ]
    assert engine.nodes[0].labels == {DATA: "true"} and result.data_node == "node-1"
    assert ("pull", swarm_config().mlflow.image) in engine.calls  # the relay's image
    assert engine.networks(labels.of_project("p")) == ["p-net"]
    # MLflow answers on each node that runs one of its two tasks
    assert [e.node for e in result.endpoints] == ["node-1", "node-2"]
    assert sorted(set(endpoints.seen)) == ["http://10.0.0.1:5050", "http://10.0.0.2:5050"]
    assert backends.databases and backends.buckets
    secrets = ProjectState.for_project("p")
    values = Project.open(swarm_config()).secrets.values()  # type: ignore[union-attr]
    assert secrets.root.exists() and values
    for service in engine.swarm_services.values():
        spec = service.spec
        assert spec.labels["com.docker.stack.namespace"] == "p"
        environment = " ".join(f"{k}={v}" for k, v in spec.environment.items())
        assert not any(v in environment for v in values), spec.name
        assert not any(v in " ".join(spec.command or ()) for v in values)
    postgres = engine.swarm_services["p_postgres"].spec
    assert postgres.environment["POSTGRES_PASSWORD_FILE"] == "/run/secrets/POSTGRES_PASSWORD"
    assert postgres.constraints == (f"node.labels.{DATA}==true",) and not postgres.ports
    mlflow = engine.swarm_services["p_mlflow"].spec
    assert mlflow.entrypoint == PRELUDE and mlflow.update is not None
    assert (mlflow.update.order, mlflow.update.failure_action) == ("start-first", "rollback")
    assert [(p.published, p.mode) for p in mlflow.ports] == [(5050, "host")]
    assert mlflow.endpoint_mode == "dnsrr" and mlflow.configs  # the auth config
    assert mlflow.healthcheck is not None and mlflow.healthcheck.test[1:3] == PRELUDE[:2]
    assert len(engine.secret_data) >= 4 and len(engine.config_data) == 1


def test_up_again_keeps_and_a_new_image_updates_mlflow_only() -> None:
    engine = FakeSwarmEngine()
    bring_up(swarm_config(), engine)
    again, _ = bring_up(swarm_config(), engine)
    assert {s.action for s in again.services} == {"kept"}
    changed, _ = bring_up(swarm_config(mlflow={"image": "mlflow:other"}), engine)
    assert [s.action for s in changed.services] == ["kept", "kept", "updated"]


def test_a_changed_secret_is_a_new_one_and_the_old_is_removed() -> None:
    engine = FakeSwarmEngine()
    bring_up(swarm_config(), engine)
    before = set(engine.secret_data) | set(engine.config_data)
    changed, _ = bring_up(swarm_config(postgres={"database": "other"}), engine)
    after = set(engine.secret_data) | set(engine.config_data)
    assert after != before and set(changed.removed) == before - after
    assert any("backend_store_uri" in name for name in changed.removed)


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ({"local_state": "inactive"}, "is in no swarm"),
        ({"manager": False}, "is a swarm worker, not a manager"),
    ],
)
def test_an_engine_that_is_no_manager_is_refused_before_anything_is_made(
    setup: dict[str, object], words: str
) -> None:
    engine = FakeSwarmEngine()
    for key, value in setup.items():
        setattr(engine, key, value)
    with pytest.raises(ConfigError) as caught:
        bring_up(swarm_config(), engine)
    assert words in caught.value.message and "target: local" in caught.value.hint
    assert caught.value.exit_code == ExitCode.USAGE and "\n" not in caught.value.message
    assert engine.calls == [] and not ProjectState.for_project("p").secrets_file.exists()


def test_a_data_node_that_matches_no_node_is_refused_with_the_nodes_named() -> None:
    engine = FakeSwarmEngine()
    with pytest.raises(ConfigError) as caught:
        bring_up(swarm_config(swarm={"data_node": "node-9"}), engine)
    assert "swarm.data_node 'node-9' matches no node" in caught.value.message
    assert "node-1, node-2, node-3" in caught.value.message
    assert engine.calls == []


def test_the_data_node_may_be_named_by_hostname_or_id_prefix() -> None:
    engine = FakeSwarmEngine()
    result, _ = bring_up(swarm_config(swarm={"data_node": "n3"}), engine)
    assert result.data_node == "node-3" and engine.nodes[2].labels == {DATA: "true"}
    tasks = engine.swarm_services["p_postgres"].tasks
    assert [t.node for t in tasks] == ["node-3"]


def test_up_waits_for_tasks_and_says_why_none_runs() -> None:
    engine = FakeSwarmEngine()
    engine.failing["mlflow"] = "starting container failed: port 5050 already in use"
    with pytest.raises(Exception) as caught:
        bring_up(swarm_config(), engine)
    assert "port 5050 already in use" in str(caught.value)


def test_status_is_healthy_with_tasks_per_node_and_degraded_when_an_endpoint_fails() -> None:
    engine = FakeSwarmEngine()
    bring_up(swarm_config(), engine)
    endpoints = Endpoints()
    backends = FakeBackends(engine, "p")
    for probe in backends.scripted.values():
        probe.container = None
    result = status_swarm(swarm_config(), engine, backends=backends, probe_endpoint=endpoints.probe)
    assert result.overall == "healthy" and result.exit_code == ExitCode.OK
    mlflow = result.services[-1]
    assert (mlflow.running, mlflow.desired) == (2, 2)
    assert [t.node for t in mlflow.tasks] == ["node-1", "node-2"]
    assert [e.node for e in mlflow.endpoints] == ["node-1", "node-2"]
    endpoints.down.add("http://10.0.0.2:5050")
    result = status_swarm(swarm_config(), engine, backends=backends, probe_endpoint=endpoints.probe)
    assert result.overall == "degraded" and result.exit_code == ExitCode.DEGRADED


def test_status_of_a_stack_never_deployed_is_not_running() -> None:
    result = status_swarm(swarm_config(), FakeSwarmEngine())
    assert result.overall == "not running" and result.exit_code == ExitCode.NOT_RUNNING


def test_down_keeps_data_and_purge_removes_volumes_and_the_node_label() -> None:
    engine = FakeSwarmEngine()
    bring_up(swarm_config(), engine)
    volumes = engine.volumes(labels.of_project("p"))
    assert volumes == ["p-postgres-data", "p-storage-data"]
    result = down_swarm(swarm_config(), engine)
    assert result.services == ["p_mlflow", "p_postgres", "p_storage"] and result.networks
    assert not engine.swarm_services and not engine.secret_data and not engine.config_data
    assert engine.stopping == []  # down waited for the removed services' tasks to be gone
    assert engine.volumes(labels.of_project("p")) == volumes and not result.volumes
    assert engine.nodes[0].labels == {DATA: "true"}
    bring_up(swarm_config(), engine)
    purged = down_swarm(swarm_config(), engine, purge=True)
    assert purged.volumes == volumes and purged.state_removed
    assert engine.volumes(labels.of_project("p")) == [] and engine.nodes[0].labels == {}
    assert not engine.networks(labels.of_project("p"))


def test_down_on_a_worker_is_refused() -> None:
    engine = FakeSwarmEngine()
    engine.manager = False
    with pytest.raises(ConfigError):
        down_swarm(swarm_config(), engine)


@pytest.mark.parametrize(
    ("command", "setup", "words"),
    [
        (["up"], {"local_state": "inactive"}, "is in no swarm"),
        (["status"], {"manager": False}, "is a swarm worker"),
        (["--set", "swarm.data_node=nope", "up"], {}, "matches no node"),
        (["--set", "mlflow.replicas=0", "up"], {}, "mlflow.replicas must be 1 or more"),
    ],
)
def test_the_cli_refuses_bad_swarm_input_in_one_line(
    command: list[str],
    setup: dict[str, object],
    words: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlstack.cli import options, run

    engine = FakeSwarmEngine()
    for key, value in setup.items():
        setattr(engine, key, value)
    monkeypatch.setattr(options, "engine", lambda: engine)
    monkeypatch.setenv("MLSTACK_TARGET", "swarm")
    monkeypatch.setenv("MLSTACK_ALLOW_UNAUTHENTICATED", "true")
    code = run(["--project", "p", *command])
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.USAGE and words in err and err.startswith("error:")
    assert len(err.splitlines()) == 1 and engine.calls == []
    assert not ProjectState.for_project("p").secrets_file.exists()


def test_secret_names_stay_within_the_swarm_limit_for_the_longest_project() -> None:
    engine = FakeSwarmEngine()
    config = swarm_config(project="p" * 40)
    engine.pullable.add(config.mlflow.image)
    project = Project.open(config, create_secrets=True, save=False, engine=engine)
    assert project is not None
    from mlstack.project.swarm_plan import plan

    made = plan(project)
    names = [*made.secrets, *made.configs]
    assert names and all(len(n) <= 64 for n in names) and len(set(names)) == len(names)


def test_a_new_mlflow_image_migrates_in_a_job_before_mlflow_is_updated(
    backups: list[tuple[str, str]],
) -> None:
    engine = FakeSwarmEngine()
    first, _ = bring_up(swarm_config(), engine)
    assert first.migrated is None  # a new stack: its first server migrates the schema
    engine.deployed.clear()
    newer = swarm_config(mlflow={"image": "mlflow:newer"})
    result, _ = bring_up(newer, engine, revision="1b5f0d9ad7c1")
    assert result.migrated == swarm_config().mlflow.image
    assert backups == [(swarm_config().mlflow.image, "p")]  # before the job
    assert [s.name for s in engine.deployed] == ["p_migrate", "p_mlflow"]
    job = engine.deployed[0]
    assert job.job and job.image == "mlflow:newer" and job.entrypoint == PRELUDE
    assert [m.target for m in job.secrets] == ["/run/secrets/mlstack-env-MLFLOW_BACKEND_STORE_URI"]
    assert "p_migrate" not in engine.swarm_services  # removed once done


def test_a_failed_migration_leaves_mlflow_on_its_image_and_says_so(
    backups: list[tuple[str, str]],
) -> None:
    engine = FakeSwarmEngine()
    bring_up(swarm_config(), engine)
    engine.failing["migrate"] = "task: non-zero exit (1)"
    engine.service_logs["p_migrate"] = "INFO upgrading\nalembic: relation already exists"
    with pytest.raises(Exception) as caught:
        bring_up(swarm_config(mlflow={"image": "mlflow:newer"}), engine, revision="1b5f0d9ad7c1")
    assert "`mlflow db upgrade` failed" in str(caught.value) and "non-zero exit" in str(
        caught.value
    )
    assert "the database's backup is /backups/p.tar.gz" in str(caught.value) and backups
    assert "(INFO upgrading / alembic: relation already exists)" in str(caught.value)
    assert engine.swarm_services["p_mlflow"].spec.image == swarm_config().mlflow.image


def test_the_demo_reaches_mlflow_by_host_else_by_the_first_node_that_answers() -> None:
    """`demo` on a swarm: `host` may name a node that runs no replica (host-mode ports)."""
    config, engine = swarm_config(), FakeSwarmEngine()
    bring_up(config, engine)
    project = Project.open(config, save=False, engine=engine)
    assert project is not None
    mlflow = next(s for s in engine.services(labels.of_project("p")) if s.service == "mlflow")
    replicas = sorted({t.node for t in mlflow.running})
    assert len(replicas) == 2  # on two of the three nodes
    port = config.mlflow.port
    urls = {n.hostname: f"http://{n.addr}:{port}" for n in three_nodes()}

    found = Endpoints()
    assert reachable_mlflow(project, engine, engine, "demo", found.probe) == config.tracking_uri
    assert found.seen == [config.tracking_uri]  # `host` answers: nothing else is tried

    found = Endpoints(down={config.tracking_uri})
    assert reachable_mlflow(project, engine, engine, "demo", found.probe) == urls[replicas[0]]

    none = Endpoints(down={config.tracking_uri, *urls.values()})
    with pytest.raises(NotRunning) as caught:
        reachable_mlflow(project, engine, engine, "demo", none.probe)
    said = str(caught.value)
    assert none.seen == [config.tracking_uri, *(urls[n] for n in replicas)]
    assert len(said.splitlines()) == 1 and all(url in said for url in none.seen)

    down_swarm(config, engine)
    with pytest.raises(NotRunning) as caught:
        reachable_mlflow(project, engine, engine, "demo", Endpoints().probe)
    assert "mlstack up" in caught.value.hint


def test_an_image_whose_registry_does_not_answer_is_refused_before_anything_is_made() -> None:
    config = swarm_config()
    engine = FakeSwarmEngine()
    engine.registry_down[config.postgres.image] = "dial tcp 10.0.0.9:5000: connection refused"
    with pytest.raises(ImageUnavailable) as caught:
        bring_up(config, engine)
    assert caught.value.exit_code == ExitCode.IMAGE and "\n" not in caught.value.message
    assert "connection refused" in caught.value.message
    assert config.postgres.image in caught.value.message
    assert "from each node" in caught.value.hint and "insecure-registries" in caught.value.hint
    assert engine.calls == [] and not ProjectState.for_project("p").secrets_file.exists()


def test_an_image_the_manager_holds_goes_on_with_a_warning_when_its_registry_is_silent() -> None:
    config = swarm_config()
    engine = FakeSwarmEngine()
    engine.registry_down[config.postgres.image] = "no such host"
    engine.images[config.postgres.image] = "sha256:" + "1" * 64  # loaded on the nodes by hand
    events: list[Event] = []
    project = Project.open(config, create_secrets=True, save=False, engine=engine)
    assert project is not None
    engine.pullable.add(config.mlflow.image)
    backends = FakeBackends(engine, "p")
    for probe in backends.scripted.values():
        probe.container = None
    result = up_swarm(
        project,
        engine,
        timeout=5,
        backends=backends,
        probe_endpoint=Endpoints().probe,
        report=events.append,
    )
    assert [s.action for s in result.services] == ["created", "created", "created"]
    warnings = [e.message for e in events if e.kind == "warning"]
    assert warnings == [
        f"asking the registry of {config.postgres.image}: no such host: every node must hold "
        f"{config.postgres.image}"
    ]


@pytest.mark.parametrize(
    ("replicas", "drained", "order"),
    [(2, False, "start-first"), (3, False, "stop-first"), (2, True, "stop-first")],
)
def test_mlflow_updates_start_first_only_where_a_node_is_free_for_the_new_task(
    replicas: int, drained: bool, order: str
) -> None:
    """Host-mode ports: one MLflow task per node, so a new task needs a node without one."""
    nodes = three_nodes()
    if drained:
        nodes[2] = replace(nodes[2], availability="drain")
    engine = FakeSwarmEngine(nodes)
    config = swarm_config(mlflow={"replicas": replicas})
    bring_up(config, engine)
    mlflow = engine.swarm_services["p_mlflow"].spec
    assert mlflow.update is not None and mlflow.update.order == order
    # scaling back changes no task: the same ones run under another order
    back = swarm_config(mlflow={"replicas": 1})
    result, _ = bring_up(back, engine)
    assert {s.service: s.action for s in result.services}["mlflow"] == "scaled"
    assert engine.swarm_services["p_mlflow"].spec.update == replace(
        mlflow.update, order="start-first"
    )
