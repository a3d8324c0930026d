"""`mlstack up` with target: swarm: the stack as services of a Docker Swarm.

Order: the checks (a manager, the data node; nothing is made before they passed), the data
node's label, the overlay network, secrets and configs, PostgreSQL and S3 (pinned to the data
node), their probes through the relay on the manager, database and bucket, then MLflow
(replicated, start-first health-gated updates that roll back) and its probe on each published
endpoint. Secrets and configs no service uses any more are removed last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mlstack import labels
from mlstack.engine import SwarmEngineAPI
from mlstack.errors import EngineConflict, ImageUnavailable
from mlstack.health import Probe, wait_ready
from mlstack.project.backends import Backends, HostBackends
from mlstack.project.context import Project
from mlstack.project.reporting import Event, Reporter, Result, quiet
from mlstack.project.swarm_ops import (
    Endpoint,
    data_node,
    endpoint_probe,
    endpoints,
    job_done,
    require_manager,
    service_info,
    tasks_running,
)
from mlstack.project.swarm_plan import (
    SwarmPlan,
    data_label,
    migration_job,
    object_labels,
    plan,
)

REGISTRY_HINT = (
    "every node pulls {image} itself: check that its registry answers from the manager and "
    "from each node (a plain-http one is listed in insecure-registries of each engine's "
    "daemon.json; a private one needs `docker login` on the manager), or set the image key "
    "in mlstack.yaml to an image your registry holds"
)


@dataclass(frozen=True)
class SwarmServiceOutcome:
    service: str
    name: str  # the swarm service
    action: str  # created | updated (tasks replaced) | scaled (replicas or update order) | kept
    replicas: int
    ready_seconds: float | None = None


@dataclass(frozen=True)
class SwarmUpResult(Result):
    project: str
    tracking_uri: str
    data_node: str
    services: list[SwarmServiceOutcome]
    endpoints: list[Endpoint]
    database_created: bool
    bucket_created: bool
    secrets_created: bool
    seconds: float
    removed: list[str] = field(default_factory=list)  # secrets and configs no longer used
    migrated: str | None = None  # the image MLflow's schema was upgraded from

    @property
    def output(self) -> str:
        return self.tracking_uri


def up_swarm(
    project: Project,
    engine: SwarmEngineAPI,
    *,
    timeout: float = 300.0,
    report: Reporter = quiet,
    backends: Backends | None = None,
    probe_endpoint: Callable[[Endpoint], Probe] | None = None,
) -> SwarmUpResult:
    """Deploy the stack on the swarm and return once every endpoint answers real requests."""
    started = time.monotonic()
    config = project.config
    state = require_manager(config, engine, engine)
    node = data_node(config, state)
    schedulable = sum(n.state == "ready" and n.availability == "active" for n in state.nodes)
    wanted = plan(project, schedulable)  # before anything changes: a failed plan leaves nothing
    _check_images(engine, wanted, report)
    project.save_secrets()
    report(Event("step", message=f"swarm: network, secrets and configs (data on {node.hostname})"))
    _prepare(engine, project, wanted, node.id)
    deadline = started + timeout
    backends = backends or HostBackends(project)
    ready: dict[str, float] = {}
    data = project.data_services()
    actions = {name: engine.deploy_service(wanted.services[name]) for name in data}
    if data:
        report(Event("step", message="starting " + ", ".join(data)))
    probes = backends.probes()
    _wait(engine, project, wanted, data, deadline, report, ready)
    ready.update(_until(deadline, [probes[n] for n in data], report))
    database_created = "postgres" in data and backends.ensure_databases()
    bucket_created = "storage" in data and backends.ensure_bucket()
    migrated = _migrate_if_needed(engine, project, wanted, deadline, report)
    actions["mlflow"] = engine.deploy_service(wanted.services["mlflow"])
    report(Event("step", message=f"starting mlflow ({config.mlflow.replicas} replicas)"))
    _wait(engine, project, wanted, ["mlflow"], deadline, report, ready)
    info = service_info(engine, project.name, wanted.services["mlflow"].name)
    found = endpoints(project, engine.swarm_state(), info) if info else []
    make = probe_endpoint or endpoint_probe(project)
    _until(deadline, [make(e) for e in found], report)
    removed = _prune(engine, project, wanted)
    outcomes = [
        SwarmServiceOutcome(
            n, wanted.services[n].name, actions[n], wanted.services[n].replicas, ready.get(n)
        )
        for n in wanted.services
    ]
    return SwarmUpResult(
        project=project.name,
        tracking_uri=config.tracking_uri,
        data_node=node.hostname,
        services=outcomes,
        endpoints=found,
        database_created=bool(database_created),
        bucket_created=bool(bucket_created),
        secrets_created=project.secrets_created,
        seconds=time.monotonic() - started,
        removed=removed,
        migrated=migrated,
    )


def _check_images(engine: SwarmEngineAPI, wanted: SwarmPlan, report: Reporter) -> None:
    """Each node pulls the services' images itself: a registry the manager cannot reach
    fails here, in one line, before anything is made, not as tasks the swarm rejects again
    and again until the timeout. An image the manager holds without its registry answering
    (loaded on every node by hand) is only warned about, as `docker stack deploy` does."""
    for image in sorted({spec.image for spec in wanted.services.values()}):
        try:
            engine.registry_digest(image)
        except ImageUnavailable as e:
            if engine.image_id(image) is None:
                raise ImageUnavailable(e.message, REGISTRY_HINT.format(image=image)) from e
            report(Event("warning", message=f"{e.message}: every node must hold {image}"))


def _prepare(engine: SwarmEngineAPI, project: Project, wanted: SwarmPlan, node: str) -> None:
    """The data node's label, the overlay network, the secrets and configs of this spec, and
    on the manager the image of the relay that reaches PostgreSQL and S3 (the nodes pull the
    services' images themselves)."""
    relay = project.relay.spec.image if project.relay else None
    if relay and engine.image_id(relay) is None:
        engine.pull(relay, lambda _: None)
    engine.set_node_label(node, data_label(project.name), "true")
    tags = object_labels(project)
    engine.ensure_overlay(wanted.network, tags)
    for name, content in wanted.secrets.items():
        engine.create_secret(name, content, tags)
    for name, content in wanted.configs.items():
        engine.create_config(name, content, tags)


def _migrate_if_needed(
    engine: SwarmEngineAPI, project: Project, wanted: SwarmPlan, deadline: float, report: Reporter
) -> str | None:
    """A new MLflow image on a running stack: its `mlflow db upgrade` as a replicated job,
    before a rolling update lets tasks of the new image share the schema with the old ones.
    (A new stack's first server migrates the fresh schema itself.)"""
    mlflow = wanted.services["mlflow"]
    current = service_info(engine, project.name, mlflow.name)
    old = current.image if current else ""
    if not old or old == mlflow.image:
        return None
    job = migration_job(project, mlflow)
    report(Event("step", message=f"migrating the schema to {mlflow.image} (a swarm job)"))
    engine.deploy_service(job)
    try:
        _until(deadline, [job_done(engine, project.name, job.name)], report)
    finally:
        engine.remove_service(job.name)
    return old


def _until(deadline: float, probes: Sequence[Probe], report: Reporter) -> dict[str, float]:
    return wait_ready(
        probes,
        timeout=max(1.0, deadline - time.monotonic()),
        interval=0.5,
        on_ready=lambda s, seconds: report(Event("ready", service=s, seconds=seconds)),
    )


def _wait(
    engine: SwarmEngineAPI,
    project: Project,
    wanted: SwarmPlan,
    names: list[str],
    deadline: float,
    report: Reporter,
    ready: dict[str, float],
) -> None:
    """Until each service's tasks of its present spec run (healthy, when it has a check)."""
    selector = labels.of_project(project.name)
    probes = [
        tasks_running(engine, n, wanted.services[n].name, selector, wanted.services[n].replicas)
        for n in names
    ]
    ready.update(_until(deadline, probes, report))


def _prune(engine: SwarmEngineAPI, project: Project, wanted: SwarmPlan) -> list[str]:
    """Secrets and configs of earlier specs; one a service still holds (its previous spec, for
    a rollback) is kept for a later `up`."""
    selector = labels.of_project(project.name)
    removed = []
    unused = [
        (n, engine.remove_secret) for n in engine.secrets(selector) if n not in wanted.secrets
    ]
    unused += [
        (n, engine.remove_config) for n in engine.configs(selector) if n not in wanted.configs
    ]
    for name, remove in unused:
        try:
            remove(name)
        except EngineConflict:
            continue
        removed.append(name)
    return removed
