"""The stack as swarm services, derived from the same specs the local target creates.

One config, one template: each `ServiceSpec` (compose/services.py) becomes a `SwarmServiceSpec`.
What differs on a swarm is said here: credentials move out of the environment into swarm
secrets mounted as files (the image's `_FILE` form where it has one, else a shell prelude that
exports each file before the service's own command), MLflow's auth config becomes a swarm
config, PostgreSQL and S3 are pinned to the data node and published nowhere, MLflow is
replicated with start-first, health-gated, rolled-back updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from mlstack import labels
from mlstack.compose.launcher import AUTH_CONFIG
from mlstack.config import StackConfig
from mlstack.engine import (
    FileMount,
    PublishedPort,
    ServiceSpec,
    SwarmServiceSpec,
    UpdatePolicy,
)
from mlstack.engine.swarm_models import SECRETS_DIR, content_name
from mlstack.errors import MlstackError
from mlstack.project.context import Project

STACK_NAMESPACE = "com.docker.stack.namespace"  # as `docker stack deploy` labels its objects
# Variables whose image reads them from a file named by <NAME>_FILE (docker secrets).
FILE_FORMS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
ENV_SECRET_PREFIX = "mlstack-env-"  # a secret file the prelude exports as a variable
ENV_CONFIG_DIR = "/run/mlstack-env"  # config files the prelude exports as variables
# Exports every mounted variable file, then runs the service's own command.
PRELUDE = (
    "sh",
    "-c",
    f'for f in {SECRETS_DIR}/{ENV_SECRET_PREFIX}* {ENV_CONFIG_DIR}/*; do [ -f "$f" ] || '
    f'continue; n="${{f##*/}}"; export "${{n#{ENV_SECRET_PREFIX}}}=$(cat "$f")"; done; '
    'exec "$@"',
    "mlstack-env",
)
MLFLOW_MONITOR = 20.0  # seconds a new MLflow task must stay healthy before the next is replaced


def data_label(project: str) -> str:
    """The node label that marks the node keeping the project's volumes."""
    return f"org.mlstack.{project}.data"


def object_labels(project: Project) -> dict[str, str]:
    """What every swarm object of the stack carries: the stack's labels and the namespace."""
    return {**project.spec.labels, STACK_NAMESPACE: project.name}


def service_name(project: str, service: str) -> str:
    return f"{project}_{service}"  # as `docker stack` names a stack's services


@dataclass(frozen=True)
class SwarmPlan:
    """What `up` makes on the swarm: secrets and configs (name -> content), then services."""

    network: str
    secrets: Mapping[str, bytes]
    configs: Mapping[str, bytes]
    services: Mapping[str, SwarmServiceSpec]  # by the stack's service name, in start order


@dataclass
class _Files:
    secrets: dict[str, bytes]
    configs: dict[str, bytes]


def plan(project: Project, schedulable: int | None = None) -> SwarmPlan:
    """`schedulable`: the nodes (ready, active) tasks may go to, for MLflow's update order."""
    files = _Files({}, {})
    services = {
        name: _service(project, project.service(name), files, schedulable)
        for name in project.spec.services
    }
    return SwarmPlan(project.spec.network, files.secrets, files.configs, services)


def _update_policy(config: StackConfig, data: bool, schedulable: int | None) -> UpdatePolicy:
    """A data service: one task on one volume, so the old task stops before the new one
    starts on its data. MLflow: start-first, a new task answers before an old one stops. With
    its port published in host mode a node runs one of its tasks at most, so that needs a node
    without one; when every node has one, stop-first (one task at a time stops; the others go
    on serving)."""
    if data:
        return UpdatePolicy("stop-first", "rollback", 10.0)
    replicas = config.mlflow.replicas or 1
    full = config.swarm.publish_mode == "host" and schedulable is not None
    order = "stop-first" if full and replicas >= (schedulable or 0) else "start-first"
    return UpdatePolicy(order, "rollback", MLFLOW_MONITOR)


def _service(
    project: Project, spec: ServiceSpec, files: _Files, schedulable: int | None
) -> SwarmServiceSpec:
    config = project.config
    secret_values = [v for v in [*project.secrets.values(), *project.external.values()] if v]
    environment: dict[str, str] = {}
    secrets: list[FileMount] = []
    configs: list[FileMount] = []
    wrap = False
    base = service_name(project.name, spec.name)
    for key, value in spec.environment.items():
        if key == AUTH_CONFIG:  # MLflow's basic-auth settings: no secret, a swarm config
            name = content_name(f"{base}_{key.lower()}", value.encode())
            files.configs[name] = value.encode()
            configs.append(FileMount(name, f"{ENV_CONFIG_DIR}/{key}"))
            wrap = True
        elif not any(secret in value for secret in secret_values):
            environment[key] = value
        else:
            name = content_name(f"{base}_{key.lower()}", value.encode())
            files.secrets[name] = value.encode()
            if key in FILE_FORMS:
                secrets.append(FileMount(name, f"{SECRETS_DIR}/{key}"))
                environment[f"{key}_FILE"] = f"{SECRETS_DIR}/{key}"
            else:
                secrets.append(FileMount(name, f"{SECRETS_DIR}/{ENV_SECRET_PREFIX}{key}"))
                wrap = True
    entrypoint, command, health = spec.entrypoint, spec.command, spec.healthcheck
    if wrap:
        entrypoint, command = _wrapped(spec)
        if health is not None and health.test[:1] == ("CMD",):
            health = replace(health, test=("CMD", *PRELUDE, *health.test[1:]))
    data = spec.name != "mlflow"
    own = {k: v for k, v in spec.labels.items() if k != labels.SPEC_HASH}
    return SwarmServiceSpec(
        name=base,
        image=spec.image,
        command=command,
        entrypoint=entrypoint,
        environment=environment,
        network=project.spec.network,
        aliases=tuple(project.aliases(spec.name)),
        labels={**own, STACK_NAMESPACE: project.name},
        secrets=tuple(secrets),
        configs=tuple(configs),
        volumes=spec.volumes,
        volume_labels=object_labels(project),
        constraints=(f"node.labels.{data_label(project.name)}==true",) if data else (),
        replicas=1 if data else (config.mlflow.replicas or 1),
        endpoint_mode=config.swarm.endpoint_mode,
        ports=tuple(
            PublishedPort(p.host_port, p.container_port, config.swarm.publish_mode)
            for p in (() if data else spec.ports)
        ),
        healthcheck=health,
        update=_update_policy(config, data, schedulable),
        stop_signal=spec.stop_signal,
        stop_grace_period=spec.stop_grace_period,
    ).with_hash()


def _wrapped(spec: ServiceSpec) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """The prelude before the service's own command: it must be known in full (an entrypoint,
    or a command the image runs without one)."""
    if spec.entrypoint is not None:
        return PRELUDE, (*spec.entrypoint, *(spec.command or ()))
    if spec.command is not None:
        return PRELUDE, spec.command
    raise MlstackError(
        f"{spec.name}: its image reads credentials from the environment only and its command "
        "is the image's own: it cannot run on a swarm with its credentials in secrets",
        "use an image that reads <NAME>_FILE, or set its command",
    )


MIGRATE = "migrate"
# After the prelude exported the backend URI (a secret): MLflow's own schema migration.
_UPGRADE = ("sh", "-c", 'exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"')


def migration_job(project: Project, mlflow: SwarmServiceSpec) -> SwarmServiceSpec:
    """`mlflow db upgrade` with MLflow's new image, as a replicated job (one task run to its
    end) with only the backend URI's secret: run before MLflow's tasks of that image start."""
    uri = f"{SECRETS_DIR}/{ENV_SECRET_PREFIX}MLFLOW_BACKEND_STORE_URI"
    secrets = tuple(m for m in mlflow.secrets if m.target == uri)
    if not secrets:  # a managed PostgreSQL: the URI is no secret, PGPASSWORD is
        secrets = tuple(m for m in mlflow.secrets if m.target.endswith("-PGPASSWORD"))
    return replace(
        mlflow,
        name=service_name(project.name, MIGRATE),
        entrypoint=PRELUDE,
        command=_UPGRADE,
        aliases=(),
        labels={**mlflow.labels, labels.SERVICE: MIGRATE},
        secrets=secrets,
        configs=(),
        replicas=1,
        job=True,
        ports=(),
        healthcheck=None,
        update=None,
    ).with_hash()
