"""What commands need from a container engine, as one typed interface.

`EngineAPI` is the seam: the Docker SDK sits behind it in `engine/docker.py` (the only module
that imports docker), the tests' FakeEngine implements it in memory; a remote engine (ssh, tcp
with TLS, a docker context) is the same engine at another `endpoint`. Every method raises
mlstack errors only, with the engine's own error as the cause: `EngineUnavailable` (exit 3),
`EngineConflict` (4), `ImageUnavailable` (5), `EngineError` (1); a missing object is a return
value (None, False) or nothing to do, not an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from mlstack.config.endpoint import Endpoint
from mlstack.engine.models import (
    ContainerInfo,
    HealthcheckSpec,
    OneShot,
    PortSpec,
    PullProgress,
    ServiceSpec,
)
from mlstack.engine.swarm_models import (
    FileMount,
    PublishedPort,
    SwarmNode,
    SwarmServiceInfo,
    SwarmServiceSpec,
    SwarmState,
    TaskInfo,
    TaskLogLine,
    UpdatePolicy,
)
from mlstack.errors import EngineConflict, EngineError, EngineUnavailable, ImageUnavailable

__all__ = [
    "ContainerInfo",
    "Endpoint",
    "EngineAPI",
    "EngineConflict",
    "EngineError",
    "EngineUnavailable",
    "FileMount",
    "HealthcheckSpec",
    "ImageUnavailable",
    "OneShot",
    "PortSpec",
    "PublishedPort",
    "PullProgress",
    "ServiceSpec",
    "SwarmAPI",
    "SwarmEngineAPI",
    "SwarmNode",
    "SwarmServiceInfo",
    "SwarmServiceSpec",
    "SwarmState",
    "TaskInfo",
    "TaskLogLine",
    "UpdatePolicy",
    "connect",
]


class EngineAPI(Protocol):
    """A connected container engine. Objects are found by label, not by name."""

    @property
    def endpoint(self) -> Endpoint:
        """Where the engine is and how it is reached, as resolved (DOCKER_HOST, a context)."""
        ...

    def close(self) -> None: ...

    @property
    def remote(self) -> bool:
        """True when the engine runs on another machine: its published ports are not ours."""
        ...

    # images
    def image_id(self, ref: str) -> str | None:
        """The local image's id (sha256:...), None when it is not present."""
        ...

    def pull(self, ref: str, on_progress: Callable[[PullProgress], None]) -> None:
        """Pull one image, reporting byte progress summed over its layers."""
        ...

    # networks and volumes
    def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create a bridge network unless it exists; True when created."""
        ...

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create a named volume unless it exists; True when created."""
        ...

    def networks(self, labels: Mapping[str, str]) -> list[str]:
        """Names of the networks carrying every one of `labels`, sorted."""
        ...

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        """Names of the volumes carrying every one of `labels`, sorted."""
        ...

    def remove_network(self, name: str) -> None: ...

    def remove_volume(self, name: str) -> None: ...

    # containers
    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Every container carrying every one of `labels`, running or not, sorted by name."""
        ...

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        """One container, None when there is none of that name or id."""
        ...

    def create(self, spec: ServiceSpec, network: str, aliases: list[str]) -> str:
        """Create (not start) the container for `spec` on `network`; returns its id."""
        ...

    def start(self, name_or_id: str) -> None: ...

    def unpause(self, name_or_id: str) -> None:
        """Thaw a paused container (a start does nothing to it, a stop kills it)."""
        ...

    def stop(self, name_or_id: str, timeout: float) -> None:
        """Stop gracefully (the spec's stop signal), killing after `timeout` seconds."""
        ...

    def remove(self, name_or_id: str) -> None:
        """Remove a container, running or not, with its anonymous volumes."""
        ...

    def logs(
        self, name_or_id: str, *, tail: int | str = "all", follow: bool = False, since: float = 0
    ) -> Iterator[bytes]:
        """The container's output as chunks (a stream when following); with `since` (Unix
        time; not when following), only what the runs started from then on printed."""
        ...

    def log_tail(self, name_or_id: str, lines: int = 20, *, since: float = 0) -> str:
        """The last lines a container printed (since a run's start), for error messages and
        diagnoses; never raises."""
        ...

    def exec(
        self,
        name_or_id: str,
        command: list[str],
        *,
        environment: Mapping[str, str] | None = None,
        user: str = "",
    ) -> tuple[int, str]:
        """Run a command in a running container; (exit code, output)."""
        ...

    def copy_out(self, name_or_id: str, path: str, dest: Path) -> None:
        """Copy one file out of a container to `dest`."""
        ...

    def copy_in(self, name_or_id: str, source: Path, directory: str, name: str) -> None:
        """Copy one file into a directory of a container as `name`."""
        ...

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
        """Run a container on `network` to its end; it is removed whatever happens."""
        ...

    def memory_used(self, name_or_id: str) -> int:
        """Current memory use of a running container in bytes (0 when unknown)."""
        ...

    def forward(self, name_or_id: str, host: str, port: int) -> tuple[str, int]:
        """A 127.0.0.1 address on this machine whose connections reach `host:port` as seen from
        inside container `name_or_id` (relayed through the engine's API, engine/relay.py);
        it lives until the engine is closed."""
        ...


@runtime_checkable
class SwarmAPI(Protocol):
    """The Docker Swarm the connected engine belongs to, as a manager drives it. Objects are
    found by label; each call raises mlstack errors only, like EngineAPI's."""

    def swarm_state(self) -> SwarmState:
        """The engine's node id and role; every node when it is a manager."""
        ...

    def set_node_label(self, node_id: str, key: str, value: str | None) -> None:
        """Set a label on a node (None: remove it)."""
        ...

    def registry_digest(self, ref: str) -> str:
        """The digest the image's registry holds for `ref`, as the engine reaches it;
        ImageUnavailable when it cannot."""
        ...

    def ensure_overlay(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create an attachable overlay network unless it exists; True when created."""
        ...

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> bool:
        """Create a secret unless one of that name exists; True when created."""
        ...

    def secrets(self, labels: Mapping[str, str]) -> list[str]:
        """Names of the secrets carrying every one of `labels`, sorted."""
        ...

    def remove_secret(self, name: str) -> None: ...

    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> bool:
        """Create a config unless one of that name exists; True when created."""
        ...

    def configs(self, labels: Mapping[str, str]) -> list[str]:
        """Names of the configs carrying every one of `labels`, sorted."""
        ...

    def remove_config(self, name: str) -> None: ...

    def deploy_service(self, spec: SwarmServiceSpec) -> str:
        """Create the service, or update it when its spec hash differs (a job is replaced):
        "created", "updated" or "kept"."""
        ...

    def services(self, labels: Mapping[str, str]) -> list[SwarmServiceInfo]:
        """The services carrying every one of `labels`, with their tasks, sorted by name."""
        ...

    def remove_service(self, name: str) -> None: ...

    def scale_service(self, name: str, replicas: int) -> None:
        """Run `replicas` tasks of a replicated service, its spec otherwise unchanged."""
        ...

    def tasks(self, labels: Mapping[str, str]) -> list[TaskInfo]:
        """Every task whose containers carry every one of `labels`, those of removed services
        included until their containers are gone on their nodes."""
        ...

    def service_log_lines(
        self, name: str, *, tail: int | str = "all", follow: bool = False
    ) -> Iterator[TaskLogLine]:
        """The log of every task of a service, whatever its node (a stream when following),
        each line with the task and node that printed it; `tail` counts per task. Nothing
        when the service is gone."""
        ...


class SwarmEngineAPI(EngineAPI, SwarmAPI, Protocol):
    """An engine with its swarm: what `connect` gives."""


def connect(timeout: float = 60, endpoint: Endpoint | None = None) -> SwarmEngineAPI:
    """The engine the environment names (DOCKER_HOST with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH,
    else the docker context), or `endpoint`."""
    # deferred: the docker SDK and requests cost ~0.1 s to import; --help and config need neither
    from mlstack.engine.docker import DockerEngine

    return DockerEngine.connect(timeout, endpoint)
