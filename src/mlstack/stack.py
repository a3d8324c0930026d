"""up / status / down / logs as functions that return results; progress goes to a callback.

Nothing here prints: the CLI renders results, tests and other programs read them.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from queue import Queue
from typing import TYPE_CHECKING, Literal

from mlstack import secrets as secrets_store
from mlstack.config import StackConfig
from mlstack.engine import ContainerInfo, Engine, PullProgress
from mlstack.errors import (
    Conflict,
    ExitCode,
    ImageUnavailable,
    MlstackError,
    NotRunning,
    StateError,
    UsageError,
)
from mlstack.health import (
    CallableProbe,
    MlflowProbe,
    PostgresProbe,
    Probe,
    ProbeResult,
    S3Probe,
    answering,
    basic_auth_header,
    run_probe,
    run_probes,
    s3_client,
    wait_ready,
)
from mlstack.preflight import check_ports
from mlstack.provision import ensure_bucket, ensure_database
from mlstack.render import api_check, render_compose, write_rendered
from mlstack.secrets import AUTH_KEYS, StackSecrets
from mlstack.services import LABEL_PROJECT, START_TIERS, ServiceSpec, StackSpec, from_compose
from mlstack.state import ProjectState

if TYPE_CHECKING:
    from mlstack.serve import ServedStatus
    from mlstack.upgrade import UpgradeOutcome

PullPolicy = Literal["always", "missing", "never"]
SERVICES = ("postgres", "storage", "mlflow")


@dataclass(frozen=True)
class Event:
    """Progress of a command, for the CLI's live display."""

    kind: Literal["step", "pull", "ready", "warning"]
    service: str = ""
    message: str = ""
    seconds: float | None = None
    pull: PullProgress | None = None


Reporter = Callable[[Event], None]


def _quiet(_: Event) -> None:
    return None


@dataclass(frozen=True)
class Stack:
    """One project's config, state, credentials and specs, derived once per command."""

    config: StackConfig
    state: ProjectState
    secrets: StackSecrets
    spec: StackSpec
    compose: str
    secrets_created: bool = False
    secrets_added: tuple[str, ...] = ()  # keys an older secrets file lacked, generated now

    @classmethod
    def open(
        cls, config: StackConfig, *, create_secrets: bool = False, save: bool = True
    ) -> Stack | None:
        """The stack for `config`; None when it has never been brought up (no secrets yet).

        With `create_secrets`, missing secrets are generated, and stored unless `save` is False:
        `up` stores them only once its preflight passed, so a refused `up` leaves no state.
        """
        state = ProjectState.for_project(config.project)
        loaded = secrets_store.load(state)
        if loaded is None and not create_secrets:
            return None
        added: tuple[str, ...] = ()
        if loaded is None:
            creds = StackSecrets.generate()
        elif create_secrets:
            creds, added = secrets_store.complete(loaded)
        else:
            creds = loaded
        compose = render_compose(config)
        variables = creds.as_env()
        if not creds.has_auth:
            # A secrets file from before auth existed: the next `up` adds the login. Until then
            # the reading commands render with stand-ins (`status` then shows MLflow's config
            # as changed, which it is).
            variables.update({k: "not-made-until-up" for k in AUTH_KEYS if not variables[k]})
        spec = from_compose(compose, variables)
        stack = cls(
            config, state, creds, spec, compose, secrets_created=loaded is None, secrets_added=added
        )
        if save:
            stack.save_secrets()
        return stack

    def save_secrets(self) -> None:
        """Store new secrets, or the keys an older file lacks (mode 0600); never changes a value."""
        if self.secrets_created or self.secrets_added:
            secrets_store.save(self.state, self.secrets, self.secrets_added)

    def service(self, name: str) -> ServiceSpec:
        return self.spec.services[name]

    def probes(self, engine: Engine | None = None) -> dict[str, Probe]:
        """Host-side readiness probes, by service (plus MLflow's in-network check with an engine)."""
        c, s = self.config, self.secrets
        probes: dict[str, Probe] = {
            "postgres": PostgresProbe(
                "postgres",
                c.client_host,
                c.postgres.port,
                s.POSTGRES_USER,
                s.POSTGRES_PASSWORD,
                c.postgres.database,
            ),
            "storage": S3Probe("storage", c.s3_endpoint, s.S3_ACCESS_KEY, s.S3_SECRET_KEY),
            "mlflow": MlflowProbe("mlflow", c.tracking_uri, headers=self.mlflow_headers()),
        }
        if engine is not None:
            from_host, container = probes["mlflow"], self.service("mlflow").container_name

            def host_and_network() -> None:
                from_host.check()
                info = engine.inspect(container)
                if info is not None and info.health == "healthy":
                    return  # Docker's healthcheck made this same in-network call moments ago
                code, output = engine.exec(container, _in_network_check(self.config.auth))
                if code != 0:
                    raise RuntimeError(f"in-network API call failed: {output.strip()[-200:]}")

            probes["mlflow"] = CallableProbe("mlflow", host_and_network)
        return probes

    def mlflow_headers(self) -> dict[str, str]:
        """What an API call to MLflow sends: the admin's basic-auth header when auth is on."""
        if not self.config.auth or not self.secrets.has_auth:
            return {}
        return basic_auth_header(
            self.secrets.MLFLOW_AUTH_ADMIN_USERNAME, self.secrets.MLFLOW_AUTH_ADMIN_PASSWORD
        )

    def scrub(self, text: str) -> str:
        """`text` with every secret value masked: logs may echo credentials."""
        for value in self.secrets.values():
            text = text.replace(value, "****")
        return text

    def urls(self) -> dict[str, str]:
        c = self.config
        return {
            "postgres": f"postgresql://{c.client_host}:{c.postgres.port}/{c.postgres.database}",
            "storage": c.s3_endpoint,
            "mlflow": c.tracking_uri,
        }


def _in_network_check(auth: bool) -> list[str]:
    return ["python", "-S", "-c", api_check(5, auth=auth)]


def not_running(config: StackConfig, command: str) -> NotRunning:
    return NotRunning(
        f"the stack {config.project!r} is not running: `mlstack {command}` needs it",
        "start it with `mlstack up`",
    )


def open_existing(config: StackConfig, command: str) -> Stack:
    """The stack, when it has been brought up before (it has secrets); NotRunning otherwise."""
    stack = Stack.open(config)
    if stack is None:
        raise not_running(config, command)
    return stack


def require_running(config: StackConfig, engine: Engine, command: str) -> Stack:
    """The stack, when its tracking server runs and answers an API call; NotRunning otherwise.

    For commands that use the stack rather than manage it (`demo`, `serve`).
    """
    stack = open_existing(config, command)
    info = engine.inspect(f"{config.project}-mlflow")
    if info is None or not info.running or info.labels.get(LABEL_PROJECT) != config.project:
        raise not_running(config, command)
    probe = run_probe(MlflowProbe("mlflow", config.tracking_uri, headers=stack.mlflow_headers()))
    if not probe.ok:
        raise NotRunning(
            f"the tracking server of stack {config.project!r} does not answer at "
            f"{config.tracking_uri}: {probe.detail}",
            "see `mlstack status`; `mlstack up` repairs the stack",
        )
    return stack


# --- up --------------------------------------------------------------------------------------


class Action(str, Enum):
    CREATED = "created"
    RECREATED = "recreated"
    STARTED = "started"
    KEPT = "kept"


@dataclass(frozen=True)
class ServiceOutcome:
    service: str
    container: str
    action: Action
    url: str
    ready_seconds: float | None = None


@dataclass(frozen=True)
class UpResult:
    project: str
    tracking_uri: str
    services: list[ServiceOutcome]
    database_created: bool
    bucket_created: bool
    secrets_created: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)
    upgrade: UpgradeOutcome | None = None  # the database was migrated to a new MLflow image

    @property
    def changed(self) -> bool:
        return any(s.action is not Action.KEPT for s in self.services)


def _check_names(engine: Engine, stack: Stack) -> dict[str, ContainerInfo]:
    """Our existing containers by service; refuse a same-named container that is not ours."""
    ours: dict[str, ContainerInfo] = {}
    for name, spec in stack.spec.services.items():
        info = engine.inspect(spec.container_name)
        if info is None:
            continue
        if info.labels.get(LABEL_PROJECT) != stack.config.project:
            raise Conflict(
                f"a container named {spec.container_name} exists and is not part of mlstack "
                f"project {stack.config.project!r}",
                "remove or rename that container, or choose another project name "
                "(set project in mlstack.yaml or --project)",
            )
        ours[name] = info
    return ours


def _ensure_images(engine: Engine, stack: Stack, policy: PullPolicy, report: Reporter) -> None:
    images = list(dict.fromkeys(s.image for s in stack.spec.services.values()))
    for image in images:
        # The service names are the config's sections: postgres.image, storage.image, ...
        key = next(f"{k}.image" for k, s in stack.spec.services.items() if s.image == image)
        present = engine.image_present(image)
        if policy == "never" and not present:
            raise ImageUnavailable(
                f"image {image} is not on this machine and --pull never forbids pulling it",
                f"pull or build it first, use --pull missing, or set {key} to an image you have",
            )
        if policy == "always" or not present:
            report(Event("step", message=f"pulling {image}"))
            try:
                engine.pull(image, lambda p: report(Event("pull", pull=p)))
            except ImageUnavailable as e:
                e.hint = (
                    "check the image name, your network and registry login (docker login), "
                    f"or set {key} to an image you have (a local or mirrored one)"
                )
                raise


def _prepare(
    engine: Engine, stack: Stack, name: str, current: ContainerInfo | None
) -> tuple[Action, int, bool]:
    """Make one service's container match its spec, not yet started: (action, restarts, start?).

    Creating every container before the first one starts takes container creation off the
    critical path: MLflow's container is ready the moment its dependencies are.
    """
    spec = stack.service(name)
    if current is not None and current.spec_hash == spec.spec_hash:
        if current.running:
            return Action.KEPT, current.restart_count, False
        return Action.STARTED, current.restart_count, True
    action = Action.CREATED
    if current is not None:
        if current.running:  # stop gracefully: PostgreSQL needs its shutdown checkpoint
            engine.stop(spec.container_name, STOP_GRACE.get(name, 10.0))
        engine.remove(spec.container_name)
        action = Action.RECREATED
    engine.create(spec, stack.spec.network, [name, spec.container_name])
    return action, 0, True


def _exited_check(
    engine: Engine, stack: Stack, baseline: dict[str, int]
) -> Callable[[str], str | None]:
    def exited(service: str) -> str | None:
        info = engine.inspect(stack.service(service).container_name)
        if info is None:
            return "its container was removed"
        if info.state in ("exited", "dead"):
            return f"exited with code {info.exit_code}"
        if info.state == "restarting" or info.restart_count > baseline.get(service, 0):
            return f"crashed and is restarting (exit code {info.exit_code})"
        return None

    return exited


def log_hint(service: str, log: str) -> str | None:
    """A fix for a failure that the service's log tells apart, or None."""
    lowered = log.lower()
    # MLflow 3.17 says "requires the Flask-WTF package"; older ones fail on `import flask_wtf`.
    if service == "mlflow" and ("flask_wtf" in lowered or "flask-wtf" in lowered):
        return (
            "the MLflow image lacks Flask-WTF, which `auth: true` (MLflow's basic-auth app) "
            "needs: use an image with mlflow[auth] installed (the official -full image, or "
            "`pip install 'mlflow[auth]'` in yours) as mlflow.image, or set auth: false"
        )
    return None


def _with_log_tail(error: MlstackError, engine: Engine, stack: Stack) -> MlstackError:
    if error.service is not None and error.service in stack.spec.services:
        # A few more lines than shown: a traceback's cause is at its end, its module names above.
        log = engine.log_tail(stack.service(error.service).container_name, 40)
        if log:
            hint = log_hint(error.service, log)
            if hint:
                error.hint = hint
            tail = stack.scrub("\n".join(log.splitlines()[-15:]))
            error.details = "\n".join(
                filter(None, [error.details, f"last log lines of {error.service}:", tail])
            )
    return error


def _remove_containers(engine: Engine, stack: Stack, services: Sequence[str]) -> None:
    for name in services:
        container = stack.service(name).container_name
        engine.stop(container, STOP_GRACE.get(name, 10.0))
        engine.remove(container)


def exposed_warning(config: StackConfig) -> str:
    """What `up` says when the ports are published beyond this machine."""
    text = (
        f"ports are published on {config.bind}: anyone who can reach this machine can reach "
        "the stack (MLflow, and PostgreSQL and S3 behind their passwords)"
    )
    if config.auth:
        return (
            text + "; MLflow asks for a login (auth: true); keep bind: 127.0.0.1 unless you need it"
        )
    return (
        text + "; MLflow has no login: set auth: true (MLflow's basic auth), and keep "
        "bind: 127.0.0.1 unless you need it"
    )


def up(
    stack: Stack,
    engine: Engine,
    *,
    pull: PullPolicy = "missing",
    timeout: float = 180.0,
    report: Reporter = _quiet,
) -> UpResult:
    """Bring the stack to its spec and return once every service answers real requests.

    A server of another MLflow image than the one that last ran on the database starts only
    after a backup and a successful `mlflow db upgrade` (upgrade.py).
    """
    from mlstack import upgrade as upgrades

    started = time.monotonic()
    config = stack.config
    warnings: list[str] = []
    if config.exposed:
        warnings.append(exposed_warning(config))
    # 1. Preflight: nothing is created before these pass.
    current = _check_names(engine, stack)
    held = [port for info in current.values() for binds in info.ports.values() for _, port in binds]
    check_ports(config.bind, config.published_ports(), held)
    _ensure_images(engine, stack, pull, report)
    stack.save_secrets()

    # 2. Network and volumes.
    report(Event("step", message="network and volumes"))
    network_created = engine.ensure_network(stack.spec.network, stack.spec.labels)
    for volume in stack.spec.volume_names():
        engine.ensure_volume(volume, stack.spec.labels)

    deadline = started + timeout
    outcomes: dict[str, tuple[Action, float | None]] = {}
    baseline: dict[str, int] = {}
    database_created = bucket_created = False
    all_probes = stack.probes(engine)
    previous = upgrades.previous_image(upgrades.read_record(stack.state), current.get("mlflow"))
    mlflow_image_id = ""
    upgraded: UpgradeOutcome | None = None

    def on_ready(service: str, seconds: float) -> None:
        report(Event("ready", service=service, seconds=seconds))

    prepared: dict[str, tuple[Action, int, bool]] = {}
    try:
        with ThreadPoolExecutor(max_workers=len(stack.spec.services)) as pool:
            names = list(stack.spec.services)
            prepared = dict(
                zip(
                    names,
                    pool.map(lambda n: _prepare(engine, stack, n, current.get(n)), names),
                    strict=True,
                )
            )
            old_mlflow = current.get("mlflow")
            if prepared["mlflow"][0] in (Action.KEPT, Action.STARTED) and old_mlflow is not None:
                mlflow_image_id = old_mlflow.image_id
            else:
                mlflow_image_id = engine.image_id(config.mlflow.image) or ""
            for tier in START_TIERS:
                if (
                    "mlflow" in tier
                    and prepared["mlflow"][2]
                    and upgrades.may_need_migration(previous, mlflow_image_id)
                ):
                    # 3a. A new MLflow image on an existing schema: backup, then migrate.
                    from mlstack.backup import schema_revision

                    revision = schema_revision(stack)
                    if upgrades.needs_migration(previous, mlflow_image_id, revision):
                        assert revision is not None
                        upgraded = upgrades.upgrade(stack, engine, previous, revision, report)
                # 3. Services of one tier start together.
                report(Event("step", message="starting " + ", ".join(tier)))
                starting = [n for n in tier if prepared[n][2]]
                list(pool.map(lambda n: engine.start(stack.service(n).container_name), starting))
                for name in tier:
                    outcomes[name] = (prepared[name][0], None)
                    baseline[name] = prepared[name][1]
                probes = [all_probes[name] for name in tier]
                ready = wait_ready(
                    probes,
                    timeout=max(1.0, deadline - time.monotonic()),
                    exited=_exited_check(engine, stack, baseline),
                    on_ready=on_ready,
                )
                for name in tier:
                    outcomes[name] = (outcomes[name][0], ready.get(name))
                if "postgres" in tier:
                    # 4. Provision before MLflow starts: it migrates its schema into the database.
                    report(Event("step", message="database and bucket"))
                    s, c = stack.secrets, config
                    databases = [c.postgres.database] + ([c.auth_database] if c.auth else [])
                    made = [
                        ensure_database(
                            c.client_host, c.postgres.port, s.POSTGRES_USER, s.POSTGRES_PASSWORD, db
                        )
                        for db in databases
                    ]
                    database_created = made[0]
                    client = s3_client(c.s3_endpoint, s.S3_ACCESS_KEY, s.S3_SECRET_KEY)
                    bucket_created = ensure_bucket(client, c.storage.bucket)
    except StateError:
        # The volumes hold other credentials: nothing this `up` created can work with them.
        # Remove it, so restoring the secrets (or `down --purge`) is all that is left to do.
        created = [n for n, (action, _, _) in prepared.items() if action is not Action.KEPT]
        _remove_containers(engine, stack, created)
        if network_created:
            engine.remove_network(stack.spec.network)
        raise
    except MlstackError as e:
        raise _with_log_tail(e, engine, stack) from None
    # What runs, for reference and plain compose; only now: a failed `up` (say, on volumes from
    # other credentials) must not overwrite the last record of the credentials that work.
    write_rendered(stack.state.root, config, stack.secrets, compose=stack.compose)
    upgrades.record_image(stack.state, config.mlflow.image, mlflow_image_id)

    urls = stack.urls()
    services = [
        ServiceOutcome(name, stack.service(name).container_name, action, urls[name], seconds)
        for name, (action, seconds) in outcomes.items()
    ]
    return UpResult(
        project=config.project,
        tracking_uri=config.tracking_uri,
        services=services,
        database_created=database_created,
        bucket_created=bucket_created,
        secrets_created=stack.secrets_created,
        seconds=time.monotonic() - started,
        warnings=warnings,
        upgrade=upgraded,
    )


# --- status ----------------------------------------------------------------------------------


class Overall(str, Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    NOT_RUNNING = "not running"

    @property
    def exit_code(self) -> int:
        return {
            Overall.HEALTHY: ExitCode.OK,
            Overall.DEGRADED: ExitCode.DEGRADED,
            Overall.NOT_RUNNING: ExitCode.NOT_RUNNING,
        }[self]


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    container: str
    state: str  # running, exited, missing, ...
    health: str | None  # Docker's healthcheck verdict
    url: str
    probe: ProbeResult | None
    problem: str = ""
    fix: str = ""

    @property
    def healthy(self) -> bool:
        return answering(self.state, self.probe)


@dataclass(frozen=True)
class StatusResult:
    project: str
    overall: Overall
    services: list[ServiceStatus]
    tracking_uri: str
    extra_containers: list[str] = field(default_factory=list)
    served: list[ServedStatus] = field(default_factory=list)  # models from `mlstack serve`


def overall_status(services: Sequence[ServiceStatus], served: Sequence[ServedStatus]) -> Overall:
    """Not running without a running service; healthy only when every service and every served
    model answers: a served model that is down degrades the stack (exit 10), as a service does."""
    if not any(s.state == "running" for s in services):
        return Overall.NOT_RUNNING
    if all(s.healthy for s in services) and all(m.healthy for m in served):
        return Overall.HEALTHY
    return Overall.DEGRADED


def status(config: StackConfig, engine: Engine) -> StatusResult:
    """What runs, whether it answers, and what to do about what does not."""
    from mlstack.serve import SERVICE as SERVE_SERVICE
    from mlstack.serve import served_status

    stack = Stack.open(config)
    everything = engine.project_containers(config.project)
    containers = {c.service: c for c in everything if c.service in SERVICES}
    served = served_status(config, [c for c in everything if c.service == SERVE_SERVICE])
    if stack is None or not containers:
        services = [
            ServiceStatus(name, f"{config.project}-{name}", "missing", None, "", None)
            for name in SERVICES
        ]
        return StatusResult(
            config.project, Overall.NOT_RUNNING, services, config.tracking_uri, served=served
        )
    probes = stack.probes()
    running = [name for name in SERVICES if name in containers and containers[name].running]
    results = dict(zip(running, run_probes([probes[n] for n in running]), strict=True))
    urls = stack.urls()
    rows: list[ServiceStatus] = []
    for name in SERVICES:
        spec = stack.service(name)
        info = containers.get(name)
        probe = results.get(name)
        problem = fix = ""
        if info is None:
            state, health = "missing", None
            problem, fix = "no container", "run `mlstack up`"
        else:
            state, health = info.state, info.health
            if not info.running:
                problem = f"{info.state} (exit code {info.exit_code})"
                fix = f"read `mlstack logs {name} --tail 50`, then run `mlstack up`"
            elif probe is not None and not probe.ok:
                problem = probe.detail
                fix = f"read `mlstack logs {name} --tail 50`; if it persists, run `mlstack up`"
            elif info.spec_hash != spec.spec_hash:
                problem = "its config changed since it was created"
                fix = "run `mlstack up` to apply the change (data is kept)"
        rows.append(
            ServiceStatus(name, spec.container_name, state, health, urls[name], probe, problem, fix)
        )
    overall = overall_status(rows, served)
    extra = sorted(c.name for c in everything if c.service not in (*SERVICES, SERVE_SERVICE))
    return StatusResult(config.project, overall, rows, config.tracking_uri, extra, served)


# --- down ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownResult:
    project: str
    containers: list[str]
    networks: list[str]
    volumes: list[str]
    state_removed: bool
    seconds: float

    @property
    def nothing_to_do(self) -> bool:
        return not (self.containers or self.networks or self.volumes or self.state_removed)


STOP_GRACE = {"postgres": 20.0}  # PostgreSQL gets time for a clean shutdown checkpoint


def down(config: StackConfig, engine: Engine, *, purge: bool = False) -> DownResult:
    """Stop and remove the stack's containers and network; with purge also volumes and state."""
    started = time.monotonic()
    containers = engine.project_containers(config.project)

    def stop_and_remove(info: ContainerInfo) -> None:
        if info.running or info.state == "restarting":
            engine.stop(info.id, STOP_GRACE.get(info.service, 10.0))
        engine.remove(info.id)

    with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
        list(pool.map(stop_and_remove, containers))
    networks = engine.project_networks(config.project)
    for network in networks:
        engine.remove_network(network)
    volumes: list[str] = []
    state_removed = False
    if purge:
        volumes = engine.project_volumes(config.project)
        for volume in volumes:
            engine.remove_volume(volume)
        state = ProjectState.for_project(config.project)
        if state.root.exists():
            shutil.rmtree(state.root)
            state_removed = True
    return DownResult(
        config.project,
        [c.name for c in containers],
        networks,
        volumes,
        state_removed,
        time.monotonic() - started,
    )


# --- logs ------------------------------------------------------------------------------------


def resolve_service(config: StackConfig, name: str) -> str:
    """A service name as users type it: 'minio'/'seaweedfs'/'s3' mean storage; `serve-NAME` is
    the model served as NAME."""
    aliases = {config.storage.engine: "storage", "s3": "storage", "db": "postgres"}
    resolved = aliases.get(name, name)
    if resolved.startswith("serve-") and len(resolved) > len("serve-"):
        return resolved
    if resolved not in SERVICES:
        raise UsageError(
            f"unknown service {name!r}",
            f"use one of: {', '.join(SERVICES)} (or {config.storage.engine} for storage), "
            "or serve-NAME for a served model",
        )
    return resolved


def logs(
    config: StackConfig, engine: Engine, service: str | None, *, follow: bool, tail: int | None
) -> Iterator[tuple[str, str]]:
    """(service, line) pairs from one service or all of them, interleaved when following."""
    names = [resolve_service(config, service)] if service else list(SERVICES)
    stack = Stack.open(config)
    scrub = stack.scrub if stack is not None else (lambda text: text)
    if names[0].startswith("serve-"):
        from mlstack.serve import find_served

        info = find_served(engine, config.project, names[0][len("serve-") :])
        containers = {names[0]: info}
    else:
        containers = {c.service: c for c in engine.project_containers(config.project)}
    present = [n for n in names if n in containers]
    if not present:
        from mlstack.errors import NotRunning

        raise NotRunning(
            f"no container for {', '.join(names)} in project {config.project!r}",
            "start the stack with `mlstack up`",
        )
    tail_arg: int | str = tail if tail is not None else "all"
    if not follow or len(present) == 1:
        for name in present:
            for chunk in engine.logs(containers[name].id, tail=tail_arg, follow=follow):
                for line in chunk.decode(errors="replace").splitlines():
                    yield name, scrub(line)
        return
    queue: Queue[tuple[str, str] | None] = Queue()

    def pump(name: str) -> None:
        try:
            for chunk in engine.logs(containers[name].id, tail=tail_arg, follow=True):
                for line in chunk.decode(errors="replace").splitlines():
                    queue.put((name, scrub(line)))
        finally:
            queue.put(None)

    for name in present:
        threading.Thread(target=pump, args=(name,), daemon=True).start()
    finished = 0
    while finished < len(present):
        item = queue.get()
        if item is None:
            finished += 1
        else:
            yield item
