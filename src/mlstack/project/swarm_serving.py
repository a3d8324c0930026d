"""A served model as a swarm service: its spec, where it answers, how it is probed.

Shared by `serve` (which makes it) and `status` (which lists it) on target: swarm. The service
runs what the local container runs (the stack's MLflow image, `mlflow models serve` through the
launcher, the tracking server by its in-network name), with what differs on a swarm said here:
the admin login in swarm secrets exported by the prelude, never in the environment; the port
published like MLflow's (host mode on the node of its task, or the routing mesh).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlstack import labels
from mlstack.adapters.mlflow_env import PROXY_ARTIFACTS, tracking_login
from mlstack.adapters.registry import ResolvedModel
from mlstack.compose.launcher import launch_serving
from mlstack.compose.render import IN_NETWORK
from mlstack.engine import (
    FileMount,
    PublishedPort,
    SwarmServiceInfo,
    SwarmServiceSpec,
    SwarmState,
    UpdatePolicy,
)
from mlstack.engine.swarm_models import SECRETS_DIR, content_name
from mlstack.health import HttpProbe, Probe
from mlstack.project.context import Project
from mlstack.project.served import CONTAINER_PORT, SERVICE
from mlstack.project.serving import HEALTHCHECK, model_labels
from mlstack.project.swarm_ops import Endpoint, published_endpoints
from mlstack.project.swarm_plan import (
    ENV_SECRET_PREFIX,
    PRELUDE,
    STACK_NAMESPACE,
    object_labels,
    service_name,
)

MLFLOW_PORT = 5000  # MLflow's port inside the stack's network
PREFIX = f"{SERVICE}-"  # a served model's io.mlstack.service label: serve-NAME, as `logs` names it
ProbeFactory = Callable[[str, str], Probe]  # (service, URL) -> a probe of its /ping
NO_LOGIN = (
    "a served model on a swarm answers on its node's published port to anyone who reaches that "
    "node: MLflow's model server has no login, and a swarm publishes no port on loopback alone"
)
NO_LOGIN_HINT = (
    "set allow_unauthenticated: true to serve it on a network you trust (or put a proxy with a "
    "login before it), or serve it from a stack with target: local, where it listens on "
    "loopback only"
)


def service_label(name: str) -> str:
    return f"{PREFIX}{name}"


def swarm_name(project: str, name: str) -> str:
    """The swarm service serving `name`: `<project>_serve-<name>`."""
    return service_name(project, service_label(name))


def is_served(info: SwarmServiceInfo) -> bool:
    return info.service.startswith(PREFIX) and labels.SERVE_NAME in info.labels


@dataclass(frozen=True)
class ServedPlan:
    """The service and the secrets it mounts (name -> content, made before the service)."""

    spec: SwarmServiceSpec
    secrets: dict[str, bytes]


def served_spec(project: Project, name: str, port: int, model: ResolvedModel) -> ServedPlan:
    """One task of the stack's MLflow image serving `model` on the stack's overlay network;
    with auth on, MLflow's admin login comes from secrets mounted as files."""
    config = project.config
    base = swarm_name(project.name, name)
    serve = ["models", "serve", "-m", model.served_uri, "-h", "0.0.0.0", "-p", str(CONTAINER_PORT)]
    command = tuple(launch_serving([*serve, "--env-manager", "local"]))
    secrets: dict[str, bytes] = {}
    mounts: list[FileMount] = []
    login = tracking_login(project.secrets) if config.auth else {}
    for key, value in login.items():
        secret = content_name(f"{base}_{key.lower()}", value.encode())
        secrets[secret] = value.encode()
        mounts.append(FileMount(secret, f"{SECRETS_DIR}/{ENV_SECRET_PREFIX}{key}"))
    spec = SwarmServiceSpec(
        name=base,
        image=config.mlflow.image,
        command=command,
        entrypoint=PRELUDE if mounts else None,  # exports the login's files, then the server
        environment={
            # the tracking server by its in-network name; artifacts through its proxy
            "MLFLOW_TRACKING_URI": project.in_network_url,
            **PROXY_ARTIFACTS,
            **project.in_network_trust(),
        },
        network=project.spec.network,
        aliases=(service_label(name),),
        labels={
            **model_labels(project, service_label(name), name, port, model),
            STACK_NAMESPACE: project.name,
        },
        secrets=tuple(mounts),
        replicas=1,
        endpoint_mode=config.swarm.endpoint_mode,
        ports=(PublishedPort(port, CONTAINER_PORT, config.swarm.publish_mode),),
        healthcheck=HEALTHCHECK,
        # one task on a host port: the old one stops before the new one takes the port
        update=UpdatePolicy("stop-first", "pause", 5.0),
        # SIGINT reaches Python's own handler in PID 1: the server stops at once
        stop_signal="SIGINT",
        stop_grace_period=10.0,
    ).with_hash()
    return ServedPlan(spec, secrets)


def mlflow_inside(project: Project) -> tuple[str, dict[str, str]]:
    """MLflow as this machine reaches it for `serve` on a swarm: through the relay on the
    manager into the overlay network (a published port answers only on nodes that run one of
    its tasks, which the manager need not be); its URL and the headers to send."""
    if project.relay is None:
        return project.tracking_uri, project.mlflow_headers()
    host, port = project.relay.address(IN_NETWORK, MLFLOW_PORT)
    return f"http://{host}:{port}", {
        **project.mlflow_headers(),
        "Host": f"{IN_NETWORK}:{MLFLOW_PORT}",
    }


def secret_labels(project: Project, name: str) -> dict[str, str]:
    """A served model's secrets: the stack's (so `down` removes them), and its own name."""
    return {**object_labels(project), labels.SERVICE: service_label(name)}


def served_port(info: SwarmServiceInfo) -> int | None:
    if info.ports:
        return info.ports[0].published
    label = info.labels.get(labels.SERVE_PORT, "")
    return int(label) if label.isdigit() else None


def served_endpoints(project: Project, state: SwarmState, info: SwarmServiceInfo) -> list[Endpoint]:
    """Where a served model answers: the node its task runs on (host mode), or the mesh."""
    port = served_port(info)
    return [] if port is None else published_endpoints(project, state, info, port)


def ping_probe(service: str, url: str) -> Probe:
    """A model server answers /ping once its model is loaded."""
    return HttpProbe(service, f"{url}/ping")
