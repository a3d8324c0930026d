"""Typed models of what goes into an engine (a container's spec) and what comes out (its state).

Plain frozen dataclasses, no docker types: commands, the FakeEngine of the tests and any later
engine (a remote host, a swarm) speak these.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from mlstack import labels


@dataclass(frozen=True)
class PortSpec:
    host_ip: str
    host_port: int
    container_port: int

    @classmethod
    def parse(cls, text: str) -> PortSpec:
        """'127.0.0.1:5050:5000' or '[::1]:5050:5000'."""
        match = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]+):(\d+):(\d+)", text)
        if not match:
            raise ValueError(f"port {text!r} must be HOST_IP:HOST_PORT:CONTAINER_PORT")
        host_ip = match.group(1).strip("[]")
        return cls(host_ip, int(match.group(2)), int(match.group(3)))


@dataclass(frozen=True)
class HealthcheckSpec:
    test: tuple[str, ...]
    interval: float
    timeout: float
    retries: int

    def in_nanoseconds(self) -> dict[str, object]:
        """As Docker's API takes it: durations in nanoseconds."""
        to_ns = 1_000_000_000
        return {
            "test": list(self.test),
            "interval": int(self.interval * to_ns),
            "timeout": int(self.timeout * to_ns),
            "retries": self.retries,
        }


@dataclass(frozen=True)
class ServiceSpec:
    """One container, fully resolved (secrets included): never print it."""

    name: str
    container_name: str
    image: str
    command: tuple[str, ...] | None
    environment: Mapping[str, str]
    ports: tuple[PortSpec, ...]
    volumes: tuple[tuple[str, str], ...]  # (volume name, mount path)
    labels: Mapping[str, str]
    restart: str
    stop_signal: str | None
    stop_grace_period: float
    healthcheck: HealthcheckSpec | None
    depends_on: tuple[str, ...]
    entrypoint: tuple[str, ...] | None = None  # None: the image's own
    spec_hash: str = field(default="", compare=False)

    def with_hash(self) -> ServiceSpec:
        """The spec labelled with a digest of itself: `up` recreates a container whose differs."""
        payload = asdict(self)
        payload.pop("spec_hash")
        if payload["entrypoint"] is None:
            # as before entrypoints were set: the containers of earlier releases stay as they are
            del payload["entrypoint"]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
        return replace(self, labels={**self.labels, labels.SPEC_HASH: digest}, spec_hash=digest)

    def port_for(self, container_port: int) -> PortSpec | None:
        return next((p for p in self.ports if p.container_port == container_port), None)


@dataclass(frozen=True)
class ContainerInfo:
    """What `status` and `up` need to know about one container."""

    id: str
    name: str
    image: str
    state: str  # created | running | restarting | exited | paused | dead
    health: str | None  # starting | healthy | unhealthy | None (no healthcheck)
    exit_code: int
    restart_count: int
    ports: Mapping[str, list[tuple[str, int]]]  # "5000/tcp" -> [(host_ip, host_port)]
    labels: Mapping[str, str]
    image_id: str = ""  # sha256:..., what the container really runs (the tag may have moved)
    created: float = 0.0  # Unix times (0 when unknown), for "restarted 5 times in 40 s"
    started_at: float = 0.0
    finished_at: float = 0.0
    oom_killed: bool = False  # the kernel killed it for memory, as Docker reports it
    error: str = ""  # Docker's own reason a start failed (e.g. a port already allocated)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def service(self) -> str:
        return self.labels.get(labels.SERVICE, "")

    @property
    def project(self) -> str:
        return self.labels.get(labels.PROJECT, "")

    @property
    def spec_hash(self) -> str:
        return self.labels.get(labels.SPEC_HASH, "")

    def host_ports(self) -> list[int]:
        """Every host port the container publishes."""
        return [port for binds in self.ports.values() for _, port in binds]

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> ContainerInfo:
        """From the engine's inspect JSON (`docker inspect`)."""
        state = data.get("State", {})
        bindings = (data.get("NetworkSettings") or {}).get("Ports") or {}
        ports = {
            key: [
                (b.get("HostIp", ""), int(b["HostPort"]))
                for b in (value or [])
                if b.get("HostPort")
            ]
            for key, value in bindings.items()
        }
        return cls(
            id=data["Id"],
            name=data["Name"].lstrip("/"),
            image=data.get("Config", {}).get("Image", ""),
            state=state.get("Status", "unknown"),
            health=(state.get("Health") or {}).get("Status"),
            exit_code=int(state.get("ExitCode") or 0),
            restart_count=int(data.get("RestartCount") or 0),
            ports=ports,
            labels=data.get("Config", {}).get("Labels") or {},
            image_id=str(data.get("Image", "")),
            created=_timestamp(data.get("Created")),
            started_at=_timestamp(state.get("StartedAt")),
            finished_at=_timestamp(state.get("FinishedAt")),
            oom_killed=bool(state.get("OOMKilled")),
            error=str(state.get("Error") or ""),
        )


def _timestamp(text: object) -> float:
    """Docker's RFC 3339 times (nanoseconds, `Z`) as Unix time; 0 for its zero time or none."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return 0.0
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not match:
        return 0.0
    zone = match.group(3) or "Z"
    when = datetime.fromisoformat(match.group(1) + ("+00:00" if zone == "Z" else zone))
    return when.timestamp() + float(match.group(2) or 0)


@dataclass(frozen=True)
class PullProgress:
    """Progress of one image pull, summed over its layers."""

    image: str
    completed: int
    total: int
    status: str
    done: bool = False


@dataclass(frozen=True)
class OneShot:
    """A container run to its end (`mlflow db upgrade`): how it ended and what it said last."""

    exit_code: int  # -1 when it did not end in time and was killed
    log_tail: str


def label_filter(labels: Mapping[str, str]) -> dict[str, list[str]]:
    return {"label": [f"{key}={value}" for key, value in labels.items()]}


def count_layers(layers: dict[str, tuple[int, int]], event: Mapping[str, Any]) -> None:
    """Fold one pull event into the per-layer (bytes done, bytes total)."""
    detail = event.get("progressDetail") or {}
    layer = event.get("id")
    if layer and detail.get("total"):
        layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
    elif layer and event.get("status") in ("Pull complete", "Already exists"):
        _, total = layers.get(layer, (0, 0))
        layers[layer] = (total, total)


def pull_hint(ref: str) -> str:
    return (
        f"check the image name and your network or registry login (docker login); to use a "
        f"local or mirrored image instead, set its image key in mlstack.yaml (was {ref})"
    )
