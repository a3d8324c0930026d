"""What the swarm commands share: the checks before anything is made, the readiness of a
service's tasks (a probe for health.wait_ready's one loop), MLflow's published endpoints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine import EngineAPI, SwarmAPI, SwarmNode, SwarmServiceInfo, SwarmState
from mlstack.errors import ConfigError, NotReady, NotRunning, ProvisionError
from mlstack.health import CallableProbe, MlflowProbe, Probe, run_probe
from mlstack.project.context import REPAIR_HINT, Project, not_running

NOT_A_MANAGER_HINT = (
    "point mlstack at a manager of the swarm (DOCKER_HOST=ssh://<manager>, a docker context; "
    "`docker node ls` on a manager lists them), or set target: local"
)


def require_manager(config: StackConfig, engine: EngineAPI, swarm: SwarmAPI) -> SwarmState:
    """The swarm's state, when the engine is one of its managers; ConfigError otherwise."""
    state = swarm.swarm_state()
    where = engine.endpoint.describe()
    if not state.node_id or state.local_state != "active":
        raise ConfigError(
            f"target: swarm, but the Docker engine at {where} is in no swarm "
            f"(swarm state {state.local_state})",
            "run `docker swarm init` there, " + NOT_A_MANAGER_HINT,
        )
    if not state.manager:
        raise ConfigError(
            f"target: swarm, but the Docker engine at {where} is a swarm worker, not a manager",
            NOT_A_MANAGER_HINT,
        )
    return state


def data_node(config: StackConfig, state: SwarmState) -> SwarmNode:
    """The node that keeps the volumes: `swarm.data_node`, else the manager mlstack talks to."""
    wanted = config.swarm.data_node
    node = state.node(wanted) if wanted else state.this_node
    if node is None:
        names = ", ".join(sorted(n.hostname for n in state.nodes)) or "none"
        raise ConfigError(
            f"swarm.data_node {wanted!r} matches no node of the swarm (its nodes: {names})",
            "set swarm.data_node to one of those hostnames or a node ID, or remove it to keep "
            "the data on the manager mlstack talks to",
        )
    return node


def tasks_running(
    swarm: SwarmAPI, service: str, name: str, labels: dict[str, str], replicas: int
) -> Probe:
    """Passes once `replicas` tasks of the service's present spec run; until then NotReady
    with the swarm's own reason (no node fits, a failed task's error)."""

    def check() -> None:
        found = [s for s in swarm.services(labels) if s.name == name]
        if not found:
            raise NotReady(f"{name}: no such service", service=service)
        info = found[0]
        if len(info.current) >= replicas:
            return
        why = next((t.error for t in reversed(info.tasks) if t.error), "")
        state = ", ".join(sorted({t.state for t in info.tasks})) or "no task yet"
        text = f"{len(info.current)} of {replicas} tasks running ({state})"
        raise NotReady(f"{name}: {text}" + (f": {why}" if why else ""), service=service)

    return CallableProbe(service, check)


@dataclass(frozen=True)
class Endpoint:
    """MLflow as a client reaches one published port (one node's, in host mode)."""

    node: str
    url: str


def endpoints(project: Project, state: SwarmState, info: SwarmServiceInfo) -> list[Endpoint]:
    """MLflow's: host mode, each node running a task; ingress: the manager (the mesh
    balances)."""
    config = project.config
    scheme = "https" if config.tls.enabled else "http"
    return published_endpoints(project, state, info, config.mlflow.port, scheme)


def published_endpoints(
    project: Project, state: SwarmState, info: SwarmServiceInfo, port: int, scheme: str = "http"
) -> list[Endpoint]:
    """Where a service's published `port` answers: in host mode on each node running one of
    its tasks, in ingress mode on `host` (any node; the mesh balances)."""
    config = project.config
    if config.swarm.publish_mode != "host":
        return [Endpoint("mesh", f"{scheme}://{config.client_host}:{port}")]
    found: dict[str, Endpoint] = {}
    for task in info.running:
        node = state.node(task.node_id)
        if node is None or task.node in found:
            continue
        host = node.addr or config.client_host
        found[task.node] = Endpoint(task.node, f"{scheme}://{_bracket(host)}:{port}")
    return sorted(found.values(), key=lambda e: e.node)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def endpoint_probe(project: Project) -> Callable[[Endpoint], Probe]:
    def make(endpoint: Endpoint) -> Probe:
        return MlflowProbe(
            f"mlflow@{endpoint.node}",
            endpoint.url,
            headers=project.mlflow_headers(),
            cafile=project.ca_file,
        )

    return make


def reachable_mlflow(
    project: Project,
    engine: EngineAPI,
    swarm: SwarmAPI,
    command: str,
    probe: Callable[[Endpoint], Probe] | None = None,
) -> str:
    """MLflow's URL as a client on this machine reaches it on a swarm, the way a user's script
    would: the tracking URI when `host` answers, else the first node whose published port does
    (in host mode only nodes that run a replica answer). NotRunning when none answers."""
    config = project.config
    state = require_manager(config, engine, swarm)
    info = running_mlflow(swarm, config, command)
    make = probe or endpoint_probe(project)
    places = [Endpoint("host", config.tracking_uri), *endpoints(project, state, info)]
    tried: list[str] = []
    detail = ""
    for place in places:
        if place.url in tried:
            continue
        result = run_probe(make(place))
        if result.ok:
            return place.url
        tried.append(place.url)
        detail = result.detail
    raise NotRunning(
        f"the tracking server of stack {config.project!r} answers at none of its published "
        f"ports ({', '.join(tried)}; last: {detail})",
        REPAIR_HINT,
    )


def running_mlflow(swarm: SwarmAPI, config: StackConfig, command: str) -> SwarmServiceInfo:
    """MLflow's service, when one of its tasks runs; NotRunning (`command` needs it) else."""
    info = service_info(swarm, config.project, f"{config.project}_mlflow")
    if info is None or not info.running:
        raise not_running(config, command)
    return info


def job_done(swarm: SwarmAPI, project: str, name: str) -> Probe:
    """Passes once the job's task completed; a failed task fails at once with its error."""

    def check() -> None:
        info = service_info(swarm, project, name)
        tasks = info.tasks if info else ()
        if any(t.state == "complete" for t in tasks):
            return
        failed = [t for t in tasks if t.state in ("failed", "rejected")]
        if failed:
            raise ProvisionError(
                f"{name}: `mlflow db upgrade` failed on {failed[-1].node or 'no node'}: "
                f"{failed[-1].error or failed[-1].state}",
                "MLflow still runs its previous image: set mlflow.image back, or fix what the "
                "log says and run `mlstack up` again",
            )
        states = ", ".join(sorted({t.state for t in tasks})) or "no task yet"
        raise NotReady(f"{name}: {states}", service=name)

    return CallableProbe(name, check)


def service_info(swarm: SwarmAPI, project: str, name: str) -> SwarmServiceInfo | None:
    found = [s for s in swarm.services(labels.of_project(project)) if s.name == name]
    return found[0] if found else None
