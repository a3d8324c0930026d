"""The tracking server `backup` and `restore` look at, stop and start: MLflow's container on
one engine, or its replicated service on a swarm.

On a swarm MLflow is stopped by scaling its service to 0 and started by scaling it back, as
`docker service scale` does: the rest of the spec is left as it is, so no rolling update comes
of it, and every replica is down while the databases are switched (a replica on another node
must not write to the old database meanwhile).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mlstack import labels
from mlstack.engine import EngineAPI, SwarmAPI, SwarmEngineAPI
from mlstack.errors import MlstackError, NotReady
from mlstack.health import CallableProbe, wait_ready
from mlstack.project.context import Project, not_running, require_data_services
from mlstack.project.swarm_ops import (
    endpoint_probe,
    endpoints,
    service_info,
    tasks_running,
)
from mlstack.project.swarm_plan import service_name

STOP_TIMEOUT = 60.0  # a replica's stop grace is 10 s; the swarm reports the stop a bit later


class TrackingServer(Protocol):
    """MLflow's server as a command stops and starts it around a change of its database."""

    @property
    def image(self) -> str:
        """The image as the stack names it."""
        ...

    @property
    def image_id(self) -> str:
        """Its content id where the engine holds it (what backups record), else ""."""
        ...

    @property
    def running(self) -> bool: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def wait_ready(self, timeout: float) -> float | None:
        """Until it answers real requests (every replica); the seconds it took."""
        ...


@dataclass
class ContainerServer:
    """The MLflow container of a stack on one engine."""

    project: Project
    engine: EngineAPI
    image: str
    image_id: str
    running: bool

    def stop(self) -> None:
        self.engine.stop(self.project.container("mlflow"), 10.0)

    def start(self) -> None:
        self.engine.start(self.project.container("mlflow"))

    def wait_ready(self, timeout: float) -> float | None:
        return wait_ready([self.project.mlflow_probe()], timeout=timeout).get("mlflow")


@dataclass
class SwarmServer:
    """MLflow's service on a swarm; `replicas` is what `start` scales it back to."""

    project: Project
    swarm: SwarmEngineAPI
    name: str
    image: str
    image_id: str
    running: bool
    replicas: int
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        self.swarm.scale_service(self.name, 0)
        self._stopped = True
        wait_ready([self._all_stopped()], timeout=STOP_TIMEOUT, interval=0.5)

    def _all_stopped(self) -> CallableProbe:
        def check() -> None:
            info = service_info(self.swarm, self.project.name, self.name)
            left = [t.node for t in (info.tasks if info else ()) if t.state == "running"]
            if left:
                raise NotReady(f"{self.name}: a task still runs on {', '.join(left)}", "mlflow")

        return CallableProbe("mlflow", check)

    def start(self) -> None:
        self.swarm.scale_service(self.name, self.replicas)

    def wait_ready(self, timeout: float) -> float | None:
        selector = labels.of_project(self.project.name)
        tasks = tasks_running(self.swarm, "mlflow", self.name, selector, self.replicas)
        ready = wait_ready([tasks], timeout=timeout, interval=0.5)
        info = service_info(self.swarm, self.project.name, self.name)
        found = endpoints(self.project, self.swarm.swarm_state(), info) if info else []
        make = endpoint_probe(self.project)
        answered = wait_ready([make(e) for e in found], timeout=timeout, interval=0.5)
        return (ready.get("mlflow") or 0.0) + max(answered.values(), default=0.0)


def tracking_server(project: Project, engine: EngineAPI, command: str) -> TrackingServer:
    """The stack's server, when the stack is there (running or stopped by an interrupted
    restore) with its data services running; NotRunning otherwise."""
    if project.config.swarm_target:
        return _swarm_server(project, _swarm(engine), command)
    info = engine.inspect(project.container("mlflow"))
    if info is None:
        raise not_running(project.config, command)
    require_data_services(project, engine, command)
    return ContainerServer(project, engine, info.image, info.image_id, info.running)


def _swarm_server(project: Project, swarm: SwarmEngineAPI, command: str) -> SwarmServer:
    name = service_name(project.name, "mlflow")
    info = service_info(swarm, project.name, name)
    if info is None:
        raise not_running(project.config, command)
    _require_swarm_data(project, swarm, command)
    replicas = info.replicas or project.config.mlflow.replicas or 1
    image_id = swarm.image_id(info.image) or ""
    return SwarmServer(project, swarm, name, info.image, image_id, bool(info.current), replicas)


def _swarm(engine: EngineAPI) -> SwarmEngineAPI:
    if not isinstance(engine, SwarmAPI):  # connect() gives one that is; a test's fake may not
        raise MlstackError("target: swarm needs an engine that drives a swarm")
    return engine


def _require_swarm_data(project: Project, swarm: SwarmAPI, command: str) -> None:
    for name in project.data_services():
        info = service_info(swarm, project.name, service_name(project.name, name))
        if info is None or not info.current:
            raise not_running(project.config, command)
