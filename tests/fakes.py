"""A FakeEngine and scripted service backends: commands tested without Docker.

`FakeEngine` implements `mlstack.engine.EngineAPI` in memory (mypy checks that it does):
containers with state, health, restart count, exit code and logs; networks and volumes with
labels; local images; one-shot runs (recorded, their end scripted). What a container does when
started is a `Behaviour`: run, exit, crash-loop.
`FakeBackends` implements `mlstack.project.backends.Backends`: a probe per service that passes
only while its container runs, plus what a test scripts (refuse N times, hang, reject).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mlstack import labels
from mlstack.config.endpoint import DEFAULT_HOST, Endpoint
from mlstack.engine import (
    ContainerInfo,
    EngineAPI,
    OneShot,
    PullProgress,
    ServiceSpec,
    SwarmEngineAPI,
    SwarmNode,
    SwarmServiceInfo,
    SwarmServiceSpec,
    SwarmState,
    TaskInfo,
    TaskLogLine,
)
from mlstack.errors import EngineConflict, ImageUnavailable, MlstackError, NotReady
from mlstack.health import Probe
from mlstack.project.backends import Backends
from mlstack.project.external import Made

_ids = itertools.count(1)
_SERVICE = labels.SERVICE  # run_once's parameter `labels` hides the module there


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str
    image_id: str
    labels: dict[str, str]
    network: str
    aliases: list[str]
    ports: dict[str, list[tuple[str, int]]]
    spec: ServiceSpec | None = None
    state: str = "created"
    health: str | None = None
    exit_code: int = 0
    restart_count: int = 0
    log: list[bytes] = field(default_factory=list)
    created: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    oom_killed: bool = False
    error: str = ""
    answers: dict[str, tuple[int, str]] = field(default_factory=dict)  # exec: by program name
    runs: list[tuple[float, int]] = field(default_factory=list)  # (start time, index in log)

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            name=self.name,
            image=self.image,
            state=self.state,
            health=self.health,
            exit_code=self.exit_code,
            restart_count=self.restart_count,
            ports={k: list(v) for k, v in self.ports.items()},
            labels=dict(self.labels),
            image_id=self.image_id,
            created=self.created,
            started_at=self.started_at,
            finished_at=self.finished_at,
            oom_killed=self.oom_killed,
            error=self.error,
        )


Behaviour = Callable[[FakeContainer], None]


@dataclass(frozen=True)
class OneShotRun:
    """One `run_once` call as the engine received it."""

    image: str
    command: list[str]
    name: str
    network: str
    environment: dict[str, str]
    labels: dict[str, str]
    timeout: float


OneShotBehaviour = Callable[[OneShotRun], OneShot]


def runs(container: FakeContainer) -> None:
    """A service that starts and keeps running (the default)."""
    container.state = "running"
    container.exit_code = 0


def exits(code: int, log: str) -> Behaviour:
    """A service that prints `log` and exits with `code` as soon as it starts."""

    def behaviour(container: FakeContainer) -> None:
        container.log.append(log.encode())
        container.state = "exited"
        container.exit_code = code

    return behaviour


def crash_loops(code: int, log: str, restarts: int = 3) -> Behaviour:
    """A service that dies at once, again and again, under `restart: unless-stopped`."""

    def behaviour(container: FakeContainer) -> None:
        container.log.append(log.encode())
        container.state = "restarting"
        container.exit_code = code
        container.restart_count += restarts

    return behaviour


class FakeEngine:
    """An in-memory EngineAPI. `calls` records every changing call as (verb, name)."""

    def __init__(
        self, images: Mapping[str, str] | None = None, endpoint: Endpoint | None = None
    ) -> None:
        self.endpoint = endpoint or Endpoint(DEFAULT_HOST)  # where the engine is
        self.images: dict[str, str] = dict(images or {})  # ref -> id
        self.pullable: set[str] = set()  # refs a pull would find
        self.by_name: dict[str, FakeContainer] = {}  # by container name
        self.network_labels: dict[str, dict[str, str]] = {}
        self.volume_labels: dict[str, dict[str, str]] = {}
        self.behaviours: dict[str, Behaviour] = {}  # by service label (or container name)
        self.interrupt_at: tuple[str, str] | None = None  # (verb, name): Ctrl-C right there
        self.one_shots: list[OneShotRun] = []  # every run_once, in order
        self.one_shot_behaviours: dict[str, OneShotBehaviour] = {}  # by service label: its end
        self.calls: list[tuple[str, str]] = []
        self.remote = False  # a test may pretend the engine is another machine's
        self.closed = False

    # --- helpers for tests ---------------------------------------------------------------

    def _record(self, verb: str, name: str) -> None:
        if self.interrupt_at == (verb, name):
            self.interrupt_at = None
            raise KeyboardInterrupt
        self.calls.append((verb, name))

    def _find(self, name_or_id: str) -> FakeContainer | None:
        if name_or_id in self.by_name:
            return self.by_name[name_or_id]
        return next((c for c in self.by_name.values() if c.id == name_or_id), None)

    def container(self, name: str) -> FakeContainer:
        found = self._find(name)
        assert found is not None, f"no container {name}"
        return found

    def names(self) -> list[str]:
        return sorted(self.by_name)

    # --- EngineAPI -----------------------------------------------------------------------

    def close(self) -> None:
        self.closed = True

    def image_id(self, ref: str) -> str | None:
        return self.images.get(ref)

    def pull(self, ref: str, on_progress: Callable[[PullProgress], None]) -> None:
        self._record("pull", ref)
        if ref not in self.pullable:
            raise ImageUnavailable(f"pulling {ref} failed: not found", "check the image name")
        on_progress(PullProgress(ref, 5, 10, "Downloading"))
        self.images[ref] = f"sha256:{next(_ids):064x}"
        on_progress(PullProgress(ref, 10, 10, "done", done=True))

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        if name in self.network_labels:
            return False
        self._record("create-network", name)
        self.network_labels[name] = dict(labels)
        return True

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        if name in self.volume_labels:
            return False
        self._record("create-volume", name)
        self.volume_labels[name] = dict(labels)
        return True

    @staticmethod
    def _matches(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
        return all(have.get(k) == v for k, v in want.items())

    def networks(self, labels: Mapping[str, str]) -> list[str]:
        return sorted(n for n, have in self.network_labels.items() if self._matches(have, labels))

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        return sorted(n for n, have in self.volume_labels.items() if self._matches(have, labels))

    def remove_network(self, name: str) -> None:
        if self.network_labels.pop(name, None) is not None:
            self._record("remove-network", name)

    def remove_volume(self, name: str) -> None:
        if self.volume_labels.pop(name, None) is not None:
            self._record("remove-volume", name)

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        found = [c.info() for c in self.by_name.values() if self._matches(c.labels, labels)]
        return sorted(found, key=lambda i: i.name)

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        found = self._find(name_or_id)
        return found.info() if found is not None else None

    def create(self, spec: ServiceSpec, network: str, aliases: list[str]) -> str:
        if spec.container_name in self.by_name:
            raise EngineConflict(f"creating container {spec.container_name}: name in use")
        if spec.image not in self.images:
            raise MlstackError(f"creating container {spec.container_name}: no image {spec.image}")
        self._record("create", spec.container_name)
        ports = {f"{p.container_port}/tcp": [(p.host_ip, p.host_port)] for p in spec.ports}
        container = FakeContainer(
            id=f"id{next(_ids)}",
            name=spec.container_name,
            image=spec.image,
            image_id=self.images[spec.image],
            labels=dict(spec.labels),
            network=network,
            aliases=list(aliases),
            ports=ports,
            spec=spec,
            created=time.time(),
        )
        self.by_name[spec.container_name] = container
        return container.id

    def start(self, name_or_id: str) -> None:
        container = self.container(name_or_id)
        self._record("start", container.name)
        if container.state == "restarting":
            return  # as Docker: in its restart back-off a container counts as running
        container.restart_count = 0  # as Docker: a start (not the policy's) resets the count
        self.restart_by_policy(container.name)

    def unpause(self, name_or_id: str) -> None:
        container = self.container(name_or_id)
        self._record("unpause", container.name)
        if container.state == "paused":
            container.state = "running"

    def restart_by_policy(self, name: str) -> None:
        """What Docker's restart policy does to a container that exited: run it again."""
        container = self.container(name)
        service = container.labels.get(labels.SERVICE, "")
        behaviour = self.behaviours.get(container.name) or self.behaviours.get(service, runs)
        container.started_at = time.time()
        container.runs.append((container.started_at, len(container.log)))
        behaviour(container)

    def stop(self, name_or_id: str, timeout: float) -> None:
        container = self._find(name_or_id)
        if container is None:
            return
        self._record("stop", container.name)
        container.state = "exited"
        container.exit_code = 0

    def remove(self, name_or_id: str) -> None:
        container = self._find(name_or_id)
        if container is None:
            return
        self._record("remove", container.name)
        del self.by_name[container.name]

    def logs(
        self, name_or_id: str, *, tail: int | str = "all", follow: bool = False, since: float = 0
    ) -> Iterator[bytes]:
        container = self._find(name_or_id)
        if container is None:
            return
        first = next((i for t, i in container.runs if t >= since), len(container.log))
        chunks = list(container.log[first:] if since else container.log)
        if isinstance(tail, int):
            lines = b"".join(chunks).splitlines(keepends=True)
            chunks = [b"".join(lines[-tail:])] if tail else []
        yield from chunks

    def log_tail(self, name_or_id: str, lines: int = 20, *, since: float = 0) -> str:
        chunks = self.logs(name_or_id, tail=lines, since=since)
        return b"".join(chunks).decode(errors="replace").rstrip()

    def exec(
        self,
        name_or_id: str,
        command: list[str],
        *,
        environment: Mapping[str, str] | None = None,
        user: str = "",
    ) -> tuple[int, str]:
        container = self.container(name_or_id)
        self._record("exec", container.name)
        if container.state != "running":
            return 1, "container is not running"
        return container.answers.get(command[0], (0, ""))

    def copy_out(self, name_or_id: str, path: str, dest: Path) -> None:
        self._record("copy-out", name_or_id)
        dest.write_bytes(b"")

    def copy_in(self, name_or_id: str, source: Path, directory: str, name: str) -> None:
        self._record("copy-in", name_or_id)

    def run_once(
        self,
        image: str,
        command: list[str],
        *,
        name: str,
        network: str,
        environment: Mapping[str, str],
        labels: Mapping[str, str],
        timeout: float,
        tail: int = 20,
    ) -> OneShot:
        self._record("run-once", name)
        run = OneShotRun(
            image, list(command), name, network, dict(environment), dict(labels), timeout
        )
        self.one_shots.append(run)
        behaviour = self.one_shot_behaviours.get(run.labels.get(_SERVICE, ""))
        return behaviour(run) if behaviour is not None else OneShot(0, "")

    def memory_used(self, name_or_id: str) -> int:
        return 0

    def forward(self, name_or_id: str, host: str, port: int) -> tuple[str, int]:
        """Services of the fake are reached directly: nothing to relay."""
        self.calls.append(("forward", f"{name_or_id} -> {host}:{port}"))
        return host, port


def _is_engine(engine: FakeEngine) -> EngineAPI:
    return engine  # mypy: FakeEngine implements every method of EngineAPI


# --- the services' side ------------------------------------------------------------------------


@dataclass
class ScriptedProbe:
    """Passes once its container runs, after `refusals` refusals; `hang` makes every check time
    out, `error` raises that instead (a wrong password, a bug)."""

    service: str
    engine: FakeEngine
    container: str | None  # None: a managed service, no container to run
    refusals: int = 0
    hang: bool = False
    error: BaseException | None = None
    checks: int = 0

    def check(self) -> None:
        self.checks += 1
        if self.error is not None:
            raise self.error
        info = self.engine.inspect(self.container) if self.container else None
        if self.container and (info is None or not info.running):
            raise NotReady(f"{self.service}: connection refused", service=self.service)
        if self.hang:
            raise TimeoutError(f"{self.service}: timed out")
        if self.refusals > 0:
            self.refusals -= 1
            raise NotReady(f"{self.service}: starting up", service=self.service)


@dataclass
class VouchProbe:
    """MLflow's probe through its database and its bucket: passes when all three would."""

    backends: FakeBackends
    service: str = "mlflow"
    checks: int = 0

    def check(self) -> None:
        self.checks += 1
        for name in ("mlflow", "postgres", "storage"):
            try:
                self.backends.scripted[name].check()
            except (NotReady, OSError) as e:
                raise NotReady(f"through mlflow: {e}", service="mlflow") from e


class FakeBackends:
    """Backends whose services answer as scripted: set fields of `scripted[service]`. Managed
    services (`external`) have no container: their probe passes unless scripted otherwise;
    `prepare_external` returns `made`, or raises `external_error`."""

    def __init__(self, engine: FakeEngine, project: str, external: Sequence[str] = ()) -> None:
        self.engine = engine
        self.scripted = {
            name: ScriptedProbe(name, engine, None if name in external else f"{project}-{name}")
            for name in ("postgres", "storage", "mlflow")
        }
        self.made: list[Made] = []
        self.external_error: MlstackError | None = None
        self.prepared = 0
        self.databases: list[str] = []
        self.warmed = 0
        self.buckets: list[str] = []
        self.revision: str | None = None

    def probes(self, engine: EngineAPI | None = None) -> dict[str, Probe]:
        return dict(self.scripted)

    def vouch(self) -> Probe:
        return VouchProbe(self)

    def warm(self) -> None:
        self.warmed += 1

    def prepare_external(self) -> list[Made]:
        self.prepared += 1
        if self.external_error is not None:
            raise self.external_error
        return list(self.made)

    def ensure_databases(self) -> bool:
        self.databases.append("created")
        return len(self.databases) == 1

    def ensure_bucket(self) -> bool:
        self.buckets.append("created")
        return len(self.buckets) == 1

    def schema_revision(self) -> str | None:
        return self.revision


def _is_backends(backends: FakeBackends) -> Backends:
    return backends  # mypy: FakeBackends implements Backends


# --- a swarm ---------------------------------------------------------------------------------


def three_nodes() -> list[SwarmNode]:
    """A manager (the engine mlstack talks to) and two workers, all ready."""
    return [
        SwarmNode("n1", "node-1", "manager", "active", "ready", "10.0.0.1"),
        SwarmNode("n2", "node-2", "worker", "active", "ready", "10.0.0.2"),
        SwarmNode("n3", "node-3", "worker", "active", "ready", "10.0.0.3"),
    ]


@dataclass
class FakeService:
    spec: SwarmServiceSpec
    id: str
    tasks: list[TaskInfo]


class FakeSwarmEngine(FakeEngine):
    """A FakeEngine on a swarm (implements SwarmAPI too): nodes with labels, secrets, configs,
    services whose tasks are scheduled at once (placement constraints on node labels honoured,
    replicas spread over the nodes), running unless `failing[service]` names their error.
    `node_id` is the node the engine is; `manager` False makes it a worker, `local_state`
    "inactive" takes it out of any swarm."""

    def __init__(self, nodes: Sequence[SwarmNode] | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.nodes: list[SwarmNode] = list(three_nodes() if nodes is None else nodes)
        self.node_id = "n1"
        self.manager = True
        self.local_state = "active"
        self.secret_data: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.config_data: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.swarm_services: dict[str, FakeService] = {}
        self.failing: dict[str, str] = {}  # by service label: every task fails with this
        self.deployed: list[SwarmServiceSpec] = []  # every spec created or updated, in order
        self.stopping: list[TaskInfo] = []  # tasks of removed services, until listed once
        self.registry_down: dict[str, str] = {}  # image -> why its registry cannot answer
        self.service_logs: dict[str, str] = {}  # a service's tasks' log, by service name
        self.task_labels: dict[str, dict[str, str]] = {}  # a task's service's labels, by id
        self.task_lines: dict[str, list[TaskLogLine]] = {}  # by service name, as printed

    def swarm_state(self) -> SwarmState:
        nodes = tuple(self.nodes) if self.manager and self.local_state == "active" else ()
        node = self.node_id if self.local_state == "active" else ""
        return SwarmState(node, self.local_state, self.manager, nodes)

    def registry_digest(self, ref: str) -> str:
        if ref in self.registry_down:
            raise ImageUnavailable(f"asking the registry of {ref}: {self.registry_down[ref]}")
        return f"sha256:{abs(hash(ref)):064x}"

    def set_node_label(self, node_id: str, key: str, value: str | None) -> None:
        for i, node in enumerate(self.nodes):
            if node.id == node_id:
                changed = {k: v for k, v in node.labels.items() if k != key}
                if value is not None:
                    changed[key] = value
                self.nodes[i] = replace(node, labels=changed)
                self._record("label-node", f"{node.hostname} {key}={value}")

    def ensure_overlay(self, name: str, labels: Mapping[str, str]) -> bool:
        return self.ensure_network(name, labels)

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> bool:
        if name in self.secret_data:
            return False
        self._record("create-secret", name)
        self.secret_data[name] = (data, dict(labels))
        return True

    def secrets(self, labels: Mapping[str, str]) -> list[str]:
        found = self.secret_data.items()
        return sorted(n for n, (_, have) in found if self._matches(have, labels))

    def _in_use(self, name: str) -> bool:
        mounts = [
            m for s in self.swarm_services.values() for m in (*s.spec.secrets, *s.spec.configs)
        ]
        return any(m.name == name for m in mounts)

    def remove_secret(self, name: str) -> None:
        if self._in_use(name):
            raise EngineConflict(f"secret {name} is in use by a service")
        if self.secret_data.pop(name, None) is not None:
            self._record("remove-secret", name)

    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> bool:
        if name in self.config_data:
            return False
        self._record("create-config", name)
        self.config_data[name] = (data, dict(labels))
        return True

    def configs(self, labels: Mapping[str, str]) -> list[str]:
        found = self.config_data.items()
        return sorted(n for n, (_, have) in found if self._matches(have, labels))

    def remove_config(self, name: str) -> None:
        if self._in_use(name):
            raise EngineConflict(f"config {name} is in use by a service")
        if self.config_data.pop(name, None) is not None:
            self._record("remove-config", name)

    def deploy_service(self, spec: SwarmServiceSpec) -> str:
        for mount in spec.secrets:
            assert mount.name in self.secret_data, f"secret {mount.name} not created first"
        for mount in spec.configs:
            assert mount.name in self.config_data, f"config {mount.name} not created first"
        current = self.swarm_services.get(spec.name)
        action = "created" if current is None else "updated"
        if current is not None and current.spec.spec_hash == spec.spec_hash:
            if (current.spec.replicas, current.spec.update) == (spec.replicas, spec.update):
                return "kept"
            action = "scaled"
        self._record(f"{action[:-1]}-service", spec.name)
        service_id = current.id if current else f"svc{next(_ids)}"
        self.swarm_services[spec.name] = FakeService(spec, service_id, self._schedule(spec))
        return action

    def _schedule(self, spec: SwarmServiceSpec) -> list[TaskInfo]:
        fits = [n for n in self.nodes if all(_satisfies(n, c) for c in spec.constraints)]
        error = self.failing.get(spec.labels.get(labels.SERVICE, ""), "")
        self.deployed.append(spec)
        if not fits:
            error = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
        tasks = []
        for slot in range(1, spec.replicas + 1):
            node = fits[(slot - 1) % len(fits)] if fits else None
            if node is not None and not error:
                for volume, _ in spec.volumes:
                    if node.id == self.node_id:
                        self.volume_labels.setdefault(volume, dict(spec.volume_labels))
            task_id = f"task{next(_ids)}"
            self.task_labels[task_id] = dict(spec.labels)
            tasks.append(
                TaskInfo(
                    id=task_id,
                    node_id=node.id if node and not error else "",
                    node=node.hostname if node and not error else "",
                    state="failed" if error else ("complete" if spec.job else "running"),
                    desired_state="complete" if spec.job else "running",
                    error=error,
                    slot=slot,
                    spec_hash=spec.spec_hash,
                )
            )
        return tasks

    def services(self, labels: Mapping[str, str]) -> list[SwarmServiceInfo]:
        found = [s for s in self.swarm_services.values() if self._matches(s.spec.labels, labels)]
        return [
            SwarmServiceInfo(
                s.id,
                s.spec.name,
                dict(s.spec.labels),
                s.spec.replicas,
                s.spec.ports,
                tuple(s.tasks),
                s.spec.job,
                s.spec.image,
            )
            for s in sorted(found, key=lambda s: s.spec.name)
        ]

    def remove_service(self, name: str) -> None:
        removed = self.swarm_services.pop(name, None)
        if removed is not None:
            self._record("remove-service", name)
            self.stopping += [replace(t, desired_state="remove") for t in removed.tasks]

    def scale_service(self, name: str, replicas: int) -> None:
        current = self.swarm_services[name]
        self._record("scale-service", f"{name}={replicas}")
        spec = replace(current.spec, replicas=replicas)
        self.swarm_services[name] = FakeService(spec, current.id, self._schedule(spec))
        self.deployed.pop()  # scaled, not created or updated

    def tasks(self, labels: Mapping[str, str]) -> list[TaskInfo]:
        """Tasks of live services, and of removed ones for one more look (then they are gone),
        those whose service carries `labels`."""
        found = [t for s in self.swarm_services.values() for t in s.tasks]
        found += self.stopping
        self.stopping = []
        return [t for t in found if self._matches(self.task_labels.get(t.id, {}), labels)]

    def print_line(self, service: str, text: bytes, slot: int = 1) -> None:
        """A line the task in `slot` of the stack's `service` (its label) prints."""
        info = next(
            s for s in self.swarm_services.values() if s.spec.labels.get(_SERVICE) == service
        )
        task = next(t for t in info.tasks if t.slot == slot)
        lines = self.task_lines.setdefault(info.spec.name, [])
        lines.append(TaskLogLine(task.id, task.node_id, text))

    def service_log_lines(
        self, name: str, *, tail: int | str = "all", follow: bool = False
    ) -> Iterator[TaskLogLine]:
        """The lines printed so far (following ends there too), after what `service_logs`
        scripts for the service; `tail` counts per task."""
        self._record("service-logs", name)
        if name not in self.swarm_services:
            return
        scripted = self.service_logs.get(name, "").splitlines()
        lines = [TaskLogLine("", "", t.encode()) for t in scripted]
        lines += self.task_lines.get(name, [])
        if isinstance(tail, int):
            kept = []
            for i, line in enumerate(lines):
                later = [other for other in lines[i + 1 :] if other.task_id == line.task_id]
                if len(later) < tail:
                    kept.append(line)
            lines = kept
        yield from lines


def _satisfies(node: SwarmNode, constraint: str) -> bool:
    key, _, value = constraint.partition("==")
    assert key.startswith("node.labels."), f"the fake knows node labels only, not {key}"
    return node.labels.get(key.removeprefix("node.labels.")) == value


def _is_swarm_engine(engine: FakeSwarmEngine) -> SwarmEngineAPI:
    return engine  # mypy: FakeSwarmEngine implements EngineAPI and SwarmAPI
