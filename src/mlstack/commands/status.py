"""`mlstack status`: what runs, whether it answers, and what to do about what does not.

One row type for the stack's services and the models served beside them, one health rule
(`health.answering`), and every probe run at once: the command waits for the slowest probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import Enum

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.errors import ExitCode
from mlstack.health import HttpProbe, Probe, ProbeResult, answering, run_probes
from mlstack.project.backends import Backends, HostBackends
from mlstack.project.context import SERVICES, Project
from mlstack.project.diskspace import data_logs
from mlstack.project.findings import Finding
from mlstack.project.findings import findings as find_problems
from mlstack.project.relay import RELAY_SERVICE
from mlstack.project.reporting import Result
from mlstack.project.served import SERVICE as SERVE_SERVICE
from mlstack.project.served import model_url, model_urls, served_name

DISK_LOG_LINES = 200  # of a healthy-looking data service's log, for a write refused for room


class Overall(str, Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    NOT_RUNNING = "not running"

    @property
    def exit_code(self) -> ExitCode:
        return {
            Overall.HEALTHY: ExitCode.OK,
            Overall.DEGRADED: ExitCode.DEGRADED,
            Overall.NOT_RUNNING: ExitCode.NOT_RUNNING,
        }[self]


@dataclass(frozen=True)
class Row:
    """One container of the project: a service of the stack, or a served model."""

    service: str  # postgres | storage | mlflow, or serve-NAME
    name: str  # the service, or the name the model is served as
    container: str
    state: str  # running, exited, missing, ...
    health: str | None  # Docker's healthcheck verdict
    url: str
    probe: ProbeResult | None
    problem: str = ""
    fix: str = ""
    model_uri: str | None = None  # served models: as given to `serve`
    served_uri: str | None = None  # ... and what the container loads (pinned)
    version: str | None = None
    cause: str = ""  # why, when it can be told (the log, Docker's state)
    root: str = ""  # the service this one fails because of
    restarts: int = 0  # Docker's restart count
    log: tuple[str, ...] = ()  # the gist of its log (secrets masked), when it is not healthy
    full: bool = False  # its volume has no room left: it answers, but writes fail
    external: bool = False  # a managed service (postgres.external, ...): its probe alone says

    @property
    def healthy(self) -> bool:
        if self.external:
            return self.probe is not None and self.probe.ok
        return answering(self.state, self.probe) and not self.full


@dataclass(frozen=True)
class StatusResult(Result):
    project: str
    overall: Overall
    services: list[Row]
    tracking_uri: str
    extra_containers: list[str] = field(default_factory=list)
    served: list[Row] = field(default_factory=list)  # models from `mlstack serve`
    pending_restore: str | None = None  # the archive of an interrupted restore
    probed: str = ""  # which way the probes went: published ports, or through the engine

    @property
    def exit_code(self) -> ExitCode:
        return self.overall.exit_code


def overall_status(services: Sequence[Row], served: Sequence[Row]) -> Overall:
    """Not running without a running service; healthy only when every service and every served
    model answers: a served model that is down degrades the stack (exit 10), as a service does."""
    if not any(s.state == "running" for s in services):
        return Overall.NOT_RUNNING
    if all(s.healthy for s in services) and all(m.healthy for m in served):
        return Overall.HEALTHY
    return Overall.DEGRADED


def _service_row(
    project: Project,
    name: str,
    info: ContainerInfo | None,
    probe: ProbeResult | None,
    found: Finding | None,
) -> Row:
    url = project.urls()[name]
    if name in project.external_services():
        row = Row(name, name, "-", "external", None, url, probe, external=True)
        if found is None:
            return row
        d = found.diagnosis
        return replace(row, problem=found.detail, cause=d.cause, fix=d.fix)
    spec = project.service(name)
    if info is None:
        return Row(
            name,
            name,
            spec.container_name,
            "missing",
            None,
            url,
            None,
            "no container",
            "run `mlstack up`",
        )
    base = Row(
        name,
        name,
        spec.container_name,
        info.state,
        info.health,
        url,
        probe,
        restarts=info.restart_count,
    )
    if found is not None:
        d = found.diagnosis
        problem = d.state if not info.running or d.state.startswith("crash") else found.detail
        return replace(
            base,
            problem=problem,
            fix=d.fix,
            cause=d.cause,
            root=d.root,
            log=found.log,
            full=found.full,
        )
    if info.spec_hash != spec.spec_hash:
        return replace(
            base,
            problem="its config changed since it was created",
            fix="run `mlstack up` to apply the change (data is kept)",
        )
    return base


def _ping_url(config: StackConfig, info: ContainerInfo) -> str:
    port = info.labels.get(labels.SERVE_PORT, "")
    return model_url(config, int(port)) if port else ""


def _served_row(config: StackConfig, info: ContainerInfo, probe: ProbeResult | None) -> Row:
    name = served_name(info)
    uri = info.labels.get(labels.MODEL_URI, "")
    port = info.labels.get(labels.SERVE_PORT, "")
    redeploy = f"`mlstack serve {uri} --name {name}" + (f" --port {port}`" if port else "`")
    problem = fix = ""
    if not info.running:
        problem = f"{info.state} (exit code {info.exit_code})"
        fix = (
            f"read `mlstack logs {SERVE_SERVICE}-{name} --tail 50`, then serve it again: {redeploy}"
        )
    elif probe is not None and not probe.ok:
        problem = f"/ping does not answer: {probe.detail}"
        fix = (
            f"it may still be loading the model; else read `mlstack logs {SERVE_SERVICE}-{name} "
            f"--tail 50` and serve it again: {redeploy}"
        )
    return Row(
        service=f"{SERVE_SERVICE}-{name}",
        name=name,
        container=info.name,
        state=info.state,
        health=info.health,
        url=_ping_url(config, info),
        probe=probe,
        problem=problem,
        fix=fix,
        model_uri=uri,
        served_uri=info.labels.get(labels.MODEL_SERVED, ""),
        version=info.labels.get(labels.MODEL_VERSION),
    )


def _probe_all(
    config: StackConfig,
    services: dict[str, Probe],
    served: Sequence[ContainerInfo],
    project: Project | None = None,
) -> tuple[dict[str, ProbeResult], dict[str, ProbeResult]]:
    """Every probe at once: (results by service, results by served container id)."""
    running = [c for c in served if c.running]

    def ping(info: ContainerInfo) -> str:
        port = info.labels.get(labels.SERVE_PORT, "")
        if project is None or not port:
            return _ping_url(config, info)
        return model_urls(project, info.name, int(port))[1]

    pings: list[Probe] = [
        HttpProbe(f"{SERVE_SERVICE}-{served_name(c)}", f"{ping(c)}/ping") for c in running
    ]
    results = run_probes([*services.values(), *pings])
    by_service = dict(zip(services, results, strict=False))
    by_served = dict(zip((c.id for c in running), results[len(services) :], strict=True))
    return by_service, by_served


def served_rows(config: StackConfig, containers: Sequence[ContainerInfo]) -> list[Row]:
    """Each served model: its container, and whether /ping answers."""
    _, by_served = _probe_all(config, {}, containers)
    return [
        _served_row(config, c, by_served.get(c.id)) for c in sorted(containers, key=served_name)
    ]


VOUCHED = "ok, through mlflow"  # the detail of a service that MLflow's own use of it proved


def _service_probes(
    project: Project, backends: Backends, running: list[str]
) -> tuple[dict[str, Probe], Probe | None]:
    """With the whole stack running, one probe of MLflow that also proves its database and its
    bucket (managed or not); else a probe per running service and per managed one."""
    if running == list(project.spec.services):
        return {}, backends.vouch()
    probes, wanted = backends.probes(), [*running, *project.external_services()]
    return {n: probes[n] for n in SERVICES if n in wanted}, None


def _results(
    project: Project,
    backends: Backends,
    running: list[str],
    served: Sequence[ContainerInfo],
) -> tuple[dict[str, ProbeResult], dict[str, ProbeResult]]:
    """The probes' verdicts: by service, and by served container id. The fast path first (one
    HTTP probe through MLflow, no database or S3 client loaded); per-service probes only for
    what it could not vouch for."""
    config = project.config
    probes, vouch = _service_probes(project, backends, running)
    by_service, by_served = _probe_all(
        config, {"vouch": vouch} if vouch else probes, served, project
    )
    if vouch is None:
        return by_service, by_served
    verdict = by_service.pop("vouch")
    if verdict.ok:
        return {n: ProbeResult(n, True, verdict.latency, VOUCHED) for n in SERVICES}, by_served
    every, wanted = backends.probes(), [*running, *project.external_services()]
    again, _ = _probe_all(config, {n: every[n] for n in SERVICES if n in wanted}, [])
    return again, by_served


def _idle_row(config: StackConfig, name: str, managed: bool) -> Row:
    """A service of a stack that is not running: no container (a managed one, not probed)."""
    if managed:
        return Row(name, name, "-", "external", None, "", None, external=True)
    return Row(name, name, f"{config.project}-{name}", "missing", None, "", None)


def status(
    config: StackConfig, engine: EngineAPI, *, backends: Backends | None = None
) -> StatusResult:
    """What runs, whether it answers, and what to do about what does not."""
    project = Project.open(config, engine=engine)
    everything = engine.containers(labels.of_project(config.project))
    own = list(project.spec.services) if project else list(SERVICES)  # what runs as a container
    containers = {c.service: c for c in everything if c.service in own}
    served = sorted((c for c in everything if c.service == SERVE_SERVICE), key=served_name)
    if project is None or not containers:
        _, by_served = _probe_all(config, {}, served)
        served_list = [_served_row(config, c, by_served.get(c.id)) for c in served]
        rows = [_idle_row(config, n, n not in own) for n in SERVICES]
        return StatusResult(
            config.project, Overall.NOT_RUNNING, rows, config.tracking_uri, served=served_list
        )
    running = [n for n in own if n in containers and containers[n].running]
    with ThreadPoolExecutor(max_workers=1) as pool:  # read while the probes run: no wait added
        tails = pool.submit(data_logs, project, engine, containers, DISK_LOG_LINES)
        by_service, by_served = _results(
            project, backends or HostBackends(project), running, served
        )
    served_list = [_served_row(config, c, by_served.get(c.id)) for c in served]
    found = find_problems(project, engine, containers, by_service, tails.result())
    rows = [
        _service_row(project, n, containers.get(n), by_service.get(n), found.get(n))
        for n in SERVICES
    ]
    extra = sorted(
        c.name for c in everything if c.service not in (*own, SERVE_SERVICE, RELAY_SERVICE)
    )
    overall = overall_status(rows, served_list)
    pending = project.state.pending_restore()
    return StatusResult(
        config.project,
        overall,
        rows,
        config.tracking_uri,
        extra,
        served_list,
        pending,
        project.route(),
    )
