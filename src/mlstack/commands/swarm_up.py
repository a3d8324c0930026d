"""`mlstack up` with target: swarm: the stack as services of a Docker Swarm.

Order: the checks (a manager, the data node; nothing is made before they passed), the data
node's label, the overlay network, secrets and configs, PostgreSQL and S3 (pinned to the data
node), their probes through the relay on the manager, database and bucket, the end of an
interrupted restore, a backup and the migration job for a new MLflow image, then MLflow
(replicated, start-first health-gated updates that roll back) and its probe on each published
endpoint. Secrets and configs no service uses any more are removed last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mlstack import labels
from mlstack.adapters.archive import default_name
from mlstack.engine import SwarmEngineAPI
from mlstack.errors import EngineConflict, ImageUnavailable, MlstackError
from mlstack.health import Probe, wait_ready
from mlstack.project import restoring
from mlstack.project.backends import Backends, HostBackends
from mlstack.project.context import Project
from mlstack.project.reporting import Event, Reporter, Result, quiet
from mlstack.project.snapshot import take_backup
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
from mlstack.project.watch import log_gist
from mlstack.state import ImageRecord, read_image_record, record_image

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
    database_created, bucket_created = _provision(project, backends, data, report)
    revision = backends.schema_revision()  # None: no MLflow tables yet
    migrated = _migrate_if_needed(engine, project, wanted, deadline, report, revision)
    actions["mlflow"] = _start_mlflow(engine, project, wanted, deadline, report, ready, revision)
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


def _provision(
    project: Project, backends: Backends, data: list[str], report: Reporter
) -> tuple[bool, bool]:
    """The database and the bucket; then a restore interrupted with MLflow scaled to 0 is
    taken to its end before MLflow runs again."""
    database_created = "postgres" in data and backends.ensure_databases()
    bucket_created = "storage" in data and backends.ensure_bucket()
    restoring.finish(project, report)
    return bool(database_created), bool(bucket_created)


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
    engine: SwarmEngineAPI,
    project: Project,
    wanted: SwarmPlan,
    deadline: float,
    report: Reporter,
    revision: str | None,
) -> str | None:
    """A new MLflow image on a running stack: a backup (as on one engine, in the backups dir),
    then its `mlflow db upgrade` as a replicated job, before a rolling update lets tasks of the
    new image share the schema with the old ones. (A new stack's first server migrates the
    fresh schema itself.)"""
    mlflow = wanted.services["mlflow"]
    current = service_info(engine, project.name, mlflow.name)
    record = read_image_record(project.state)  # after `down`, the image that ran last
    old = current.image if current else (record.image if record else "")
    if not old or old == mlflow.image or revision is None:
        return None
    report(Event("step", message=f"MLflow image changed ({old} -> {mlflow.image}): backing up"))
    backup = take_backup(
        project,
        engine,
        project.state.backups_dir() / default_name(project.name),
        image=ImageRecord(old, engine.image_id(old) or ""),
        force=False,
        report=report,
    ).path
    job = migration_job(project, mlflow)
    report(Event("step", message=f"migrating the schema to {mlflow.image} (a swarm job)"))
    engine.deploy_service(job)
    try:
        _until(deadline, [job_done(engine, project.name, job.name)], report)
    except MlstackError as e:
        log = _log_gist(engine, project, job.name)  # before the job is removed with its log
        e.message += (f" ({log})" if log else "") + f"; the database's backup is {backup}"
        raise
    finally:
        engine.remove_service(job.name)
    return old


def _start_mlflow(
    engine: SwarmEngineAPI,
    project: Project,
    wanted: SwarmPlan,
    deadline: float,
    report: Reporter,
    ready: dict[str, float],
    revision: str | None,
) -> str:
    """MLflow's replicas. On a database without MLflow's tables one replica starts first and
    creates them (and the auth tables) alone: replicas starting together race to create them,
    and the losers fail on a duplicate key and are replaced. The image is recorded once its
    tasks run, so an `up` after `down` knows which image to migrate from."""
    mlflow = wanted.services["mlflow"]
    action = ""
    new = service_info(engine, project.name, mlflow.name) is None
    if new and revision is None and mlflow.replicas > 1:
        report(Event("step", message="starting one mlflow replica: it creates MLflow's tables"))
        action = engine.deploy_service(replace(mlflow, replicas=1))
        first = tasks_running(engine, "mlflow", mlflow.name, labels.of_project(project.name), 1)
        _until(deadline, [first], report)
    full = engine.deploy_service(mlflow)  # "scaled" after the first replica: say "created"
    action = action or full
    report(Event("step", message=f"starting mlflow ({mlflow.replicas} replicas)"))
    _wait(engine, project, wanted, ["mlflow"], deadline, report, ready)
    record_image(project.state, mlflow.image, engine.image_id(mlflow.image) or "")
    return action


def _log_gist(engine: SwarmEngineAPI, project: Project, service: str) -> str:
    """A service's last log lines on one line, secrets masked; "" when it cannot be read."""
    try:
        lines = engine.service_log_lines(service, tail=20)
        text = "\n".join(line.text.decode(errors="replace") for line in lines)
    except MlstackError:
        return ""
    return " / ".join(log_gist(project.scrub(text), 3).splitlines())


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
