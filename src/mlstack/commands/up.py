"""`mlstack up`: bring the stack to its spec and return once every service answers real requests.

Order: preflight (container names, host ports, images; nothing is created before it passed),
network and volumes, every container created before the first starts, then the tiers started
in order (PostgreSQL and S3 together, then MLflow), each probed; the database and bucket are
provisioned before MLflow starts (it migrates its schema into the database). A server of another
MLflow image than the one that last ran on the database starts only after a backup and a
successful `mlflow db upgrade`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from mlstack.choices import PullPolicy
from mlstack.compose.launcher import how_it_started
from mlstack.compose.render import store_render, write_rendered
from mlstack.config import StackConfig
from mlstack.config.exposure import exposure_warning
from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.errors import ExitCode, MlstackError, StateError
from mlstack.health import run_probe, wait_ready
from mlstack.project import external
from mlstack.project.backends import Backends, HostBackends
from mlstack.project.context import SERVICES, Project, stop_grace
from mlstack.project.preflight import preflight, prepare_external
from mlstack.project.reporting import Event, Reporter, Result, quiet
from mlstack.project.watch import exited_check, with_log
from mlstack.state import read_image_record, record_image

if TYPE_CHECKING:
    from mlstack.project.external import Made
    from mlstack.project.migration import UpgradeOutcome


class Action(str, Enum):
    CREATED = "created"
    RECREATED = "recreated"
    STARTED = "started"
    KEPT = "kept"
    EXTERNAL = "external"  # a managed service (postgres.external, storage.external): no container


@dataclass(frozen=True)
class ServiceOutcome:
    service: str
    container: str
    action: Action
    url: str
    ready_seconds: float | None = None


@dataclass(frozen=True)
class UpResult(Result):
    project: str
    tracking_uri: str
    services: list[ServiceOutcome]
    database_created: bool
    bucket_created: bool
    secrets_created: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)
    upgrade: UpgradeOutcome | None = None  # the database was migrated to a new MLflow image
    # How the MLflow server this `up` started runs: "one process" (mlstack's launcher), or
    # "stock: <why>" (an image the launcher cannot drive); None when it was already running.
    mlflow_start: str | None = None

    @property
    def changed(self) -> bool:
        return any(s.action not in (Action.KEPT, Action.EXTERNAL) for s in self.services)

    @property
    def output(self) -> str:
        return self.tracking_uri

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK


def exposed_warning(config: StackConfig) -> str | None:
    """What `up` says when MLflow is published beyond this machine (None: nothing to say)."""
    return exposure_warning(
        exposed=config.exposed,
        bind=config.bind,
        private=config.private_bind,
        port=config.mlflow.port,
        auth=config.auth,
        tls=config.tls.enabled,
    )


# --- starting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One service's container made to match its spec, not yet started."""

    action: Action
    restarts: int  # its restart count now: more later means it crashed while starting
    start: bool


class _Starter:
    """The part of `up` that creates, starts, probes and provisions, tier by tier."""

    def __init__(
        self,
        project: Project,
        engine: EngineAPI,
        backends: Backends,
        current: dict[str, ContainerInfo],
        deadline: float,
        report: Reporter,
        *,
        fresh_database: bool,
    ) -> None:
        self.project, self.engine, self.backends = project, engine, backends
        self.current, self.deadline, self.report = current, deadline, report
        self.fresh_database = fresh_database  # its volume was made by this `up`: no schema yet
        self.prepared: dict[str, Prepared] = {}
        self.ready: dict[str, float] = {}
        self.database_created = self.bucket_created = False
        self.upgraded: UpgradeOutcome | None = None
        self.mlflow_image_id = ""
        self.probes = backends.probes(engine)

    def _prepare(self, name: str) -> Prepared:
        """Creating every container before the first one starts takes container creation off
        the critical path: MLflow's container is ready the moment its dependencies are."""
        spec, current = self.project.service(name), self.current.get(name)
        if current is not None and current.spec_hash == spec.spec_hash:
            if current.state == "restarting":  # in Docker's back-off a start does nothing
                self.engine.stop(spec.container_name, stop_grace(name))
            if current.state == "paused":  # a start does nothing to it either, a stop kills it
                self.engine.unpause(spec.container_name)
                return Prepared(Action.STARTED, current.restart_count, False)
            if current.running:
                return Prepared(Action.KEPT, current.restart_count, False)
            return Prepared(Action.STARTED, 0, True)  # a start resets Docker's restart count
        action = Action.CREATED
        if current is not None:
            if current.running:  # stop gracefully: PostgreSQL needs its shutdown checkpoint
                self.engine.stop(spec.container_name, stop_grace(name))
            self.engine.remove(spec.container_name)
            action = Action.RECREATED
        self.engine.create(spec, self.project.spec.network, self.project.aliases(name))
        return Prepared(action, 0, True)

    def run(self) -> None:
        names = list(self.project.spec.services)
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            self.prepared = dict(zip(names, pool.map(self._prepare, names), strict=True))
            self.mlflow_image_id = self._mlflow_image_id()
            restoring = self.project.state.restore_journal.exists()
            idle = not any(p.start for p in self.prepared.values()) and not restoring
            if idle and self._vouched():
                return  # nothing to start, and MLflow's own use proves its database and bucket
            together = not restoring and self._may_start_together()
            data = self.project.data_services()
            self._start(pool, names if together else data)
            self._wait(tuple(data))
            self._provision()  # MLflow (importing meanwhile) waits for its database
            if restoring:
                self._finish_restore()
            if not together:
                if self.prepared["mlflow"].start:
                    self._upgrade_if_needed()
                self._start(pool, ["mlflow"])
            self._wait(("mlflow",))
            if self.prepared["mlflow"].start:
                self.backends.warm()

    def _start(self, pool: ThreadPoolExecutor, names: list[str]) -> None:
        if not names:  # no data service of its own: both are managed
            return
        self.report(Event("step", message="starting " + ", ".join(names)))
        starting = [n for n in names if self.prepared[n].start]
        list(pool.map(lambda n: self.engine.start(self.project.container(n)), starting))

    def _vouched(self) -> bool:
        """A healthy stack answers one probe through MLflow (database and bucket included)."""
        result = run_probe(self.backends.vouch())
        if result.ok:
            self.ready = dict.fromkeys(self.project.spec.services, 0.0)
        return result.ok

    def _may_start_together(self) -> bool:
        """MLflow may start with its database (its launcher waits for it) unless it could then
        migrate a schema that another MLflow image wrote: only a fresh database, or the image
        that ran on it last, can start before `up` has looked at the schema."""
        if self.fresh_database or not self.prepared["mlflow"].start:
            return True
        record = read_image_record(self.project.state)
        return record is not None and record.image_id == self.mlflow_image_id

    def _mlflow_image_id(self) -> str:
        """The image the MLflow container will run: its own when it is kept as it is."""
        old = self.current.get("mlflow")
        if old is not None and self.prepared["mlflow"].action in (Action.KEPT, Action.STARTED):
            return old.image_id
        return self.engine.image_id(self.project.config.mlflow.image) or ""

    def _finish_restore(self) -> None:
        """A restore interrupted: forward if it switched databases, else back, before MLflow."""
        # deferred: restores (psycopg2, boto3) load only when one was interrupted
        from mlstack.project import restoring

        restoring.finish(self.project, self.report)

    def _upgrade_if_needed(self) -> None:
        """A new MLflow image on an existing schema: backup, then migrate, before it starts."""
        # deferred: backups and migrations (psycopg2, boto3, tarfile) load only when one may run
        from mlstack.project import migration

        record = read_image_record(self.project.state)
        previous = migration.previous_image(record, self.current.get("mlflow"))
        if not migration.may_need_migration(previous, self.mlflow_image_id):
            return
        revision = self.backends.schema_revision()
        if revision is not None and migration.needs_migration(
            previous, self.mlflow_image_id, revision
        ):
            self.upgraded = migration.upgrade(
                self.project, self.engine, previous, revision, self.report
            )

    def _wait(self, tier: tuple[str, ...]) -> None:
        probes = self.probes
        containers = {n: self.project.container(n) for n in tier}
        self.ready.update(
            wait_ready(
                [probes[name] for name in tier],
                timeout=max(1.0, self.deadline - time.monotonic()),
                exited=exited_check(
                    self.engine, containers, {n: self.prepared[n].restarts for n in tier}
                ),
                on_ready=lambda s, seconds: self.report(Event("ready", service=s, seconds=seconds)),
            )
        )

    def _provision(self) -> None:
        """Before MLflow starts: it migrates its schema into the database. (A managed service
        was provisioned by the preflight.)"""
        data = self.project.data_services()
        if data:
            self.report(Event("step", message="database and bucket"))
        if "postgres" in data:
            self.database_created = self.backends.ensure_databases()
        if "storage" in data:
            self.bucket_created = self.backends.ensure_bucket()

    def undo(self, network_created: bool) -> None:
        """Remove the containers this `up` created or started, and the network if it created it:
        the volumes hold other credentials, nothing started on them can work."""
        for name, prepared in self.prepared.items():
            if prepared.action is not Action.KEPT:
                container = self.project.container(name)
                self.engine.stop(container, stop_grace(name))
                self.engine.remove(container)
        if network_created:
            self.engine.remove_network(self.project.spec.network)


def up(
    project: Project,
    engine: EngineAPI,
    *,
    pull: PullPolicy = PullPolicy.MISSING,
    timeout: float = 180.0,
    report: Reporter = quiet,
    backends: Backends | None = None,
) -> UpResult:
    """Bring the stack to its spec and return once every service answers real requests."""
    started = time.monotonic()
    config = project.config
    backends = backends or HostBackends(project)
    warnings = [text for text in [exposed_warning(config)] if text]
    current = preflight(project, engine, pull, report)
    made_there = prepare_external(project, backends, report)
    project.save_secrets()
    external.record(project.state, made_there)
    warnings += external.retire_local(project, engine)

    report(Event("step", message="network and volumes"))
    network_created = engine.ensure_network(project.spec.network, project.spec.labels)
    made = {v for v in project.spec.volume_names() if engine.ensure_volume(v, project.spec.labels)}
    if external.adopts_admin(project, made_there):
        external.adopt_admin(project, engine, report)
    fresh_database = _fresh_database(project, made, made_there)
    starter = _Starter(
        project, engine, backends, current, started + timeout, report, fresh_database=fresh_database
    )
    starter.database_created = config.postgres.external is not None and fresh_database
    starter.bucket_created = any(m.kind == "bucket" for m in made_there)
    try:
        starter.run()
    except StateError:
        starter.undo(network_created)
        raise
    except MlstackError as e:
        if e.service is not None and e.service in project.spec.services:
            with_log(
                e, engine, project.container(e.service), scrub=project.scrub, service=e.service
            )
        raise
    _record(project, starter)
    mlflow_start = None
    if starter.prepared["mlflow"].start:
        mlflow_start = how_it_started(engine.log_tail(project.container("mlflow"), 100))
        if mlflow_start and mlflow_start.startswith("stock"):
            warnings.append(
                f"MLflow started the stock way ({mlflow_start.removeprefix('stock: ')}): it "
                "imports the server twice, so `up` takes seconds longer than it could"
            )
    return _result(project, starter, time.monotonic() - started, warnings, mlflow_start)


def _record(project: Project, starter: _Starter) -> None:
    """What runs, for reference and plain compose; only once `up` succeeded: a failed one (say,
    on volumes from other credentials) must not overwrite the record of the credentials that
    work."""
    root, config = project.state.root, project.config
    write_rendered(
        root,
        config,
        project.secrets,
        compose=project.compose,
        extra=project.render_variables(),
        external=project.external,
    )
    store_render(config, root, project.compose, project.in_network_name)
    record_image(project.state, config.mlflow.image, starter.mlflow_image_id)


def _fresh_database(project: Project, volumes: set[str], made_there: list[Made]) -> bool:
    """The database is new (no schema yet): its volume, or the managed database, made now."""
    if project.config.postgres.external is not None:
        return any(
            m.kind == "database" and m.name == project.config.postgres.database for m in made_there
        )
    return any(v in volumes for v, _ in project.service("postgres").volumes)


def _result(
    project: Project,
    starter: _Starter,
    seconds: float,
    warnings: list[str],
    mlflow_start: str | None,
) -> UpResult:
    urls, prepared, ready = project.urls(), starter.prepared, starter.ready
    services = [
        ServiceOutcome(n, project.container(n), prepared[n].action, urls[n], ready.get(n))
        if n in prepared
        else ServiceOutcome(n, "-", Action.EXTERNAL, urls[n])
        for n in SERVICES
    ]
    return UpResult(
        project=project.name,
        tracking_uri=project.config.tracking_uri,
        services=services,
        database_created=starter.database_created,
        bucket_created=starter.bucket_created,
        secrets_created=project.secrets_created,
        seconds=seconds,
        warnings=warnings,
        upgrade=starter.upgraded,
        mlflow_start=mlflow_start,
    )
