"""`backup` and `restore` on a swarm, with the fake swarm: which tracking server they stop and
start (MLflow's service scaled to 0 and back, its spec untouched), and the stacks they refuse."""

from __future__ import annotations

import pytest

from mlstack.errors import MlstackError, NotRunning
from mlstack.project.context import Project
from mlstack.project.servers import SwarmServer, tracking_server
from tests.fakes import FakeEngine, FakeSwarmEngine
from tests.unit.test_swarm_commands import bring_up, swarm_config


def _project(engine: FakeSwarmEngine) -> Project:
    project = Project.open(swarm_config(), engine=engine, save=False, create_secrets=True)
    assert project is not None
    return project


def test_restore_stops_every_replica_and_starts_as_many_again_without_an_update() -> None:
    engine = FakeSwarmEngine()
    bring_up(swarm_config(mlflow={"replicas": 3}), engine)
    before = engine.swarm_services["p_mlflow"].spec
    engine.calls.clear()
    server = tracking_server(_project(engine), engine, "restore")
    assert isinstance(server, SwarmServer) and server.running
    assert server.image == swarm_config().mlflow.image
    server.stop()
    assert not engine.swarm_services["p_mlflow"].tasks  # none runs while databases switch
    server.start()
    assert engine.calls == [("scale-service", "p_mlflow=0"), ("scale-service", "p_mlflow=3")]
    after = engine.swarm_services["p_mlflow"].spec
    assert after == before and len(engine.swarm_services["p_mlflow"].tasks) == 3


def test_a_server_scaled_to_0_by_an_interrupted_restore_comes_back_with_the_configured_count() -> (
    None
):
    engine = FakeSwarmEngine()
    bring_up(swarm_config(), engine)
    engine.scale_service("p_mlflow", 0)
    server = tracking_server(_project(engine), engine, "restore")
    assert isinstance(server, SwarmServer) and not server.running
    server.start()
    assert len(engine.swarm_services["p_mlflow"].tasks) == swarm_config().mlflow.replicas


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_a_stack_not_on_the_swarm_is_not_running(command: str) -> None:
    engine = FakeSwarmEngine()
    with pytest.raises(NotRunning) as caught:
        tracking_server(_project(engine), engine, command)
    assert f"`mlstack {command}` needs it" in caught.value.message
    assert engine.calls == []  # nothing was made or changed


def test_data_services_whose_tasks_fail_are_not_running() -> None:
    engine = FakeSwarmEngine()
    bring_up(swarm_config(), engine)
    engine.failing["postgres"] = "task: non-zero exit (1)"
    spec = engine.swarm_services["p_postgres"].spec
    engine.swarm_services.pop("p_postgres")
    engine.deploy_service(spec)  # its tasks now fail
    with pytest.raises(NotRunning):
        tracking_server(_project(engine), engine, "backup")


def test_an_engine_without_a_swarm_api_is_refused() -> None:
    engine = FakeSwarmEngine()
    project = _project(engine)
    with pytest.raises(MlstackError, match="an engine that drives a swarm"):
        tracking_server(project, FakeEngine(), "backup")
