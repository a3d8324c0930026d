"""Typed models of a Docker Swarm: its nodes, what a service is made from, what its tasks do.

Plain frozen dataclasses, no docker types, like engine/models.py: the swarm commands, the
FakeEngine of the tests and the Docker engine (engine/swarm.py) speak these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import unquote

from mlstack import labels
from mlstack.engine.models import HealthcheckSpec

SECRETS_DIR = "/run/secrets"  # where a swarm mounts a secret by its file name


@dataclass(frozen=True)
class SwarmNode:
    id: str
    hostname: str
    role: str  # manager | worker
    availability: str  # active | pause | drain
    state: str  # ready | down | unknown | disconnected
    addr: str  # the address other nodes (and clients) reach it by
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> SwarmNode:
        spec, status = data.get("Spec") or {}, data.get("Status") or {}
        addr = str(status.get("Addr") or "")
        if addr in ("", "0.0.0.0"):  # a manager may report its address only as a manager
            addr = str((data.get("ManagerStatus") or {}).get("Addr", "")).rpartition(":")[0]
        return cls(
            id=str(data["ID"]),
            hostname=str((data.get("Description") or {}).get("Hostname", "")),
            role=str(spec.get("Role", "worker")),
            availability=str(spec.get("Availability", "active")),
            state=str(status.get("State", "unknown")),
            addr=addr,
            labels=dict(spec.get("Labels") or {}),
        )


@dataclass(frozen=True)
class SwarmState:
    """The swarm as the connected engine sees it (nodes only when it is a manager)."""

    node_id: str  # "" when the engine is in no swarm
    local_state: str  # inactive | pending | active | error | locked
    manager: bool
    nodes: tuple[SwarmNode, ...] = ()

    def node(self, name_or_id: str) -> SwarmNode | None:
        """A node by hostname, full ID or a unique ID prefix."""
        for node in self.nodes:
            if name_or_id in (node.id, node.hostname):
                return node
        prefixed = [n for n in self.nodes if n.id.startswith(name_or_id)]
        return prefixed[0] if len(prefixed) == 1 else None

    @property
    def this_node(self) -> SwarmNode | None:
        return self.node(self.node_id) if self.node_id else None


@dataclass(frozen=True)
class FileMount:
    """A swarm secret or config, mounted as a file in the task's container."""

    name: str  # the secret's or config's name (content hash included)
    target: str  # a file name under /run/secrets (secrets) or an absolute path (configs)
    mode: int = 0o444  # as `docker stack` mounts them: the image may read it as another user


@dataclass(frozen=True)
class PublishedPort:
    published: int
    target: int
    mode: str  # host (each node running a task) | ingress (the routing mesh)


@dataclass(frozen=True)
class UpdatePolicy:
    """How a changed service replaces its tasks, and how a failed change is rolled back."""

    order: str = "start-first"  # a new task answers before an old one stops
    failure_action: str = "rollback"
    monitor: float = 30.0  # seconds a new task must stay healthy
    parallelism: int = 1


@dataclass(frozen=True)
class SwarmServiceSpec:
    """One swarm service, fully resolved (no secret values: those are in swarm secrets)."""

    name: str
    image: str
    command: tuple[str, ...] | None  # the image's CMD replaced (swarm's Args)
    entrypoint: tuple[str, ...] | None  # the image's ENTRYPOINT replaced (swarm's Command)
    environment: Mapping[str, str]
    network: str
    aliases: tuple[str, ...]
    labels: Mapping[str, str]  # on the service and on its containers
    secrets: tuple[FileMount, ...] = ()
    configs: tuple[FileMount, ...] = ()
    volumes: tuple[tuple[str, str], ...] = ()  # (volume name, mount path)
    volume_labels: Mapping[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    replicas: int = 1
    job: bool = False  # a replicated job: runs once to its end (a migration)
    endpoint_mode: str = "dnsrr"
    ports: tuple[PublishedPort, ...] = ()
    healthcheck: HealthcheckSpec | None = None
    update: UpdatePolicy | None = None
    stop_signal: str | None = None
    stop_grace_period: float = 10.0
    spec_hash: str = field(default="", compare=False)

    def with_hash(self) -> SwarmServiceSpec:
        """Labelled with a digest of what its tasks run: `up` replaces tasks only when it
        differs. How many run and how they are replaced are left out: scaling or a new update
        order changes no task (`deploy_service` compares those by themselves)."""
        payload = asdict(self)
        for key in ("spec_hash", "replicas", "update"):
            payload.pop(key)
        payload["labels"].pop(labels.SPEC_HASH, None)  # an earlier digest: hashed again, the same
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
        return replace(self, labels={**self.labels, labels.SPEC_HASH: digest}, spec_hash=digest)


@dataclass(frozen=True)
class TaskInfo:
    id: str
    node_id: str
    node: str  # the node's hostname ("" before it is scheduled)
    state: str  # new | pending | ... | running | complete | failed | shutdown | rejected
    desired_state: str  # running | shutdown | complete
    error: str  # the swarm's reason a task failed or was rejected
    slot: int = 0
    spec_hash: str = ""  # of the service spec the task was made from (its container's label)

    @property
    def running(self) -> bool:
        return self.state == "running" and self.desired_state == "running"

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any], hostnames: Mapping[str, str]) -> TaskInfo:
        status = data.get("Status") or {}
        node_id = str(data.get("NodeID") or "")
        return cls(
            id=str(data["ID"]),
            node_id=node_id,
            node=hostnames.get(node_id, node_id[:12]),
            state=str(status.get("State", "unknown")),
            desired_state=str(data.get("DesiredState", "")),
            error=str(status.get("Err") or ""),
            slot=int(data.get("Slot") or 0),
            spec_hash=str(
                ((data.get("Spec") or {}).get("ContainerSpec") or {})
                .get("Labels", {})
                .get(labels.SPEC_HASH, "")
            ),
        )


@dataclass(frozen=True)
class SwarmServiceInfo:
    """One service of the swarm with its current tasks (those meant to run, and failures)."""

    id: str
    name: str
    labels: Mapping[str, str]
    replicas: int  # desired (1 for a job)
    ports: tuple[PublishedPort, ...]
    tasks: tuple[TaskInfo, ...]
    job: bool = False
    image: str = ""  # as the spec names it (the digest the swarm pinned it to cut off)

    @property
    def service(self) -> str:
        return self.labels.get(labels.SERVICE, "")

    @property
    def spec_hash(self) -> str:
        return self.labels.get(labels.SPEC_HASH, "")

    @property
    def running(self) -> list[TaskInfo]:
        return [t for t in self.tasks if t.running]

    @property
    def current(self) -> list[TaskInfo]:
        """The running tasks of the service's present spec (not those an update replaces)."""
        return [t for t in self.running if t.spec_hash == self.spec_hash]


def content_name(base: str, data: bytes) -> str:
    """`base-<hash>`: a changed secret or config is a new object, as `docker stack` does it
    (swarm secrets and configs cannot be changed in place). At most 64 characters, the
    swarm's limit: a long base is cut (the hash keeps names apart)."""
    return f"{base[:51]}-{hashlib.sha256(data).hexdigest()[:12]}"


@dataclass(frozen=True)
class TaskLogLine:
    """One line of a service's log: the task and node that printed it, and what it printed."""

    task_id: str  # "" when the engine named none
    node_id: str
    text: bytes  # without its newline

    @classmethod
    def from_detailed(cls, raw: bytes) -> TaskLogLine:
        """A line as the engine gives it when asked for details: `k=v,k=v TEXT`, the keys
        naming the node, service and task (values URL-escaped), which is how `docker service
        logs` learns where a line came from."""
        details, _, text = raw.partition(b" ")
        fields = {}
        for item in details.decode(errors="replace").split(","):
            key, sep, value = item.partition("=")
            if sep:
                fields[unquote(key)] = unquote(value)
        if "com.docker.swarm.task.id" not in fields:
            return cls("", "", raw)
        node_id = fields.get("com.docker.swarm.node.id", "")
        return cls(fields["com.docker.swarm.task.id"], node_id, text)


def detailed_lines(chunks: Iterable[bytes]) -> Iterator[TaskLogLine]:
    """A service's log as lines with their details. The engine sends a frame per line; they
    are joined at newlines all the same."""
    pending = b""
    for chunk in chunks:
        *complete, pending = (pending + chunk).split(b"\n")
        yield from (TaskLogLine.from_detailed(raw) for raw in complete)
    if pending:
        yield TaskLogLine.from_detailed(pending)
