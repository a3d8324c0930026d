"""`mlstack status` with target: swarm: per service its tasks running of those wanted, per
task its node and state, and a real probe of each: PostgreSQL and S3 through the relay on the
manager, MLflow on each published endpoint (each node running a task, in host mode)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine import SwarmEngineAPI, SwarmServiceInfo
from mlstack.errors import ExitCode
from mlstack.health import Probe, ProbeResult, run_probes
from mlstack.project.backends import Backends, HostBackends
from mlstack.project.context import SERVICES, Project
from mlstack.project.reporting import Result
from mlstack.project.swarm_ops import Endpoint, endpoint_probe, endpoints, require_manager
from mlstack.project.swarm_serving import ProbeFactory, is_served, ping_probe, served_endpoints

EXIT_CODES = {"healthy": ExitCode.OK, "degraded": ExitCode.DEGRADED}


@dataclass(frozen=True)
class TaskRow:
    node: str
    state: str
    desired_state: str
    error: str = ""


@dataclass(frozen=True)
class EndpointRow:
    node: str
    url: str
    probe: ProbeResult


@dataclass(frozen=True)
class SwarmRow:
    service: str  # postgres | storage | mlflow | serve-NAME (a served model)
    name: str  # the swarm service
    running: int  # tasks of its present spec running
    desired: int
    tasks: list[TaskRow]
    probe: ProbeResult | None = None  # PostgreSQL and S3, through the relay
    endpoints: list[EndpointRow] = field(default_factory=list)  # MLflow's, one per node

    @property
    def healthy(self) -> bool:
        if self.running < self.desired:
            return False
        if self.endpoints:
            return all(e.probe.ok for e in self.endpoints)
        return self.probe is not None and self.probe.ok


@dataclass(frozen=True)
class SwarmStatusResult(Result):
    project: str
    overall: str  # healthy | degraded | not running
    services: list[SwarmRow]
    tracking_uri: str

    @property
    def exit_code(self) -> ExitCode:
        return EXIT_CODES.get(self.overall, ExitCode.NOT_RUNNING)

    @property
    def output(self) -> str:
        return self.tracking_uri if self.overall == "healthy" else ""


def status_swarm(
    config: StackConfig,
    engine: SwarmEngineAPI,
    *,
    backends: Backends | None = None,
    probe_endpoint: Callable[[Endpoint], Probe] | None = None,
    probe_model: ProbeFactory = ping_probe,
) -> SwarmStatusResult:
    """The stack's services on the swarm, their tasks and a probe of each endpoint; served
    models after them, each with its /ping where it is published."""
    state = require_manager(config, engine, engine)
    found = {s.service: s for s in engine.services(labels.of_project(config.project))}
    project = Project.open(config, engine=engine, save=False)
    if project is None or not found:
        return SwarmStatusResult(config.project, "not running", [], config.tracking_uri)
    backends = backends or HostBackends(project)
    make = probe_endpoint or endpoint_probe(project)
    from_host = backends.probes()
    probes: list[Probe] = []
    places: list[Endpoint] = []
    for name in SERVICES:
        info = found.get(name)
        if info is None or not info.current:
            continue
        if name == "mlflow":
            places = endpoints(project, state, info)
            probes += [make(e) for e in places]
        else:
            probes.append(from_host[name])
    served = [s for s in found.values() if is_served(s)]
    model_places = {s.service: served_endpoints(project, state, s) for s in served}
    probes += [
        probe_model(f"{service}@{e.node}", e.url)
        for service, places_of in model_places.items()
        for e in places_of
    ]
    results = {r.service: r for r in run_probes(probes)}
    rows = [_row(n, found[n], results, places) for n in SERVICES if n in found]
    rows += [_row(s.service, s, results, model_places[s.service]) for s in served]
    overall = "healthy" if rows and all(r.healthy for r in rows) else "degraded"
    if "mlflow" not in found:
        overall = "not running"
    return SwarmStatusResult(config.project, overall, rows, config.tracking_uri)


def _row(
    name: str, info: SwarmServiceInfo, results: dict[str, ProbeResult], places: list[Endpoint]
) -> SwarmRow:
    tasks = [
        TaskRow(t.node, t.state, t.desired_state, t.error)
        for t in info.tasks
        if t.desired_state == "running" or t.error
    ]
    endpoint_rows = [
        EndpointRow(e.node, e.url, results[f"{name}@{e.node}"])
        for e in places
        if f"{name}@{e.node}" in results
    ]
    return SwarmRow(
        name,
        info.name,
        len(info.current),
        info.replicas,
        tasks[-10:],
        results.get(name),
        endpoint_rows,
    )
