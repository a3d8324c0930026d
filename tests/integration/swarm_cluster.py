"""A 3-node Docker Swarm on this machine for the swarm target's tests: scripts/swarm-cluster
(Docker-in-Docker nodes on a labelled bridge, a registry the host's engine pushes the offline
images to), described by the cluster.json it writes.

The session fixture starts the cluster when it is not up and takes it down at the end; a cluster
that was up before the session (a developer's, started by hand) is left as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlstack.config.endpoint import Endpoint, TlsFiles
from mlstack.engine.docker import DockerEngine

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "swarm-cluster"
LABEL = "org.mlstack-tests.swarm-cluster"  # =PREFIX on every container, volume and network
REGISTRY_IMAGE = "mlstack-offline/registry:2.8"  # built by scripts/offline-images
TLS_PORT = 2376


def prefix() -> str:
    """What names the cluster's objects (MLSTACK_SWARM_PREFIX, as scripts/swarm-cluster reads)."""
    return os.environ.get("MLSTACK_SWARM_PREFIX", "mlstack-swarm")


def state_dir() -> Path:
    return Path(os.environ.get("MLSTACK_SWARM_DIR", f"/tmp/{prefix()}"))


@dataclass(frozen=True)
class SwarmNode:
    name: str  # container and swarm hostname
    ip: str  # on the cluster's bridge; its dockerd listens on IP:2376 with TLS
    role: str  # "manager" or "worker"
    node_id: str


@dataclass(frozen=True)
class SwarmCluster:
    manager_url: str  # tcp://IP:2376
    tls: TlsFiles  # client certificates, valid for every node
    nodes: tuple[SwarmNode, ...]
    registry_push: str  # 127.0.0.1:PORT, for the host's engine
    registry_pull: str  # IP:5000, for the nodes (an insecure registry to them)
    images: tuple[str, ...]  # the offline images the registry holds

    @classmethod
    def load(cls, path: Path) -> SwarmCluster:
        data = json.loads(path.read_text())
        return cls(
            manager_url=data["manager"],
            tls=TlsFiles(Path(data["ca"]), Path(data["cert"]), Path(data["key"])),
            nodes=tuple(SwarmNode(**node) for node in data["nodes"]),
            registry_push=data["registry"]["push"],
            registry_pull=data["registry"]["pull"],
            images=tuple(data["images"]),
        )

    @property
    def endpoint(self) -> Endpoint:
        """The manager, as mlstack would be pointed at it (DOCKER_HOST with TLS)."""
        return self.node_endpoint(self.manager)

    def node_endpoint(self, node: SwarmNode) -> Endpoint:
        return Endpoint(f"tcp://{node.ip}:{TLS_PORT}", "DOCKER_HOST", tls=self.tls, verify=True)

    @property
    def manager(self) -> SwarmNode:
        return next(node for node in self.nodes if node.role == "manager")

    @property
    def workers(self) -> list[SwarmNode]:
        return [node for node in self.nodes if node.role == "worker"]

    def engine(self, node: SwarmNode | None = None, timeout: float = 300) -> DockerEngine:
        """A node's engine (the manager's by default) through tcp with TLS."""
        return DockerEngine.connect(timeout, self.node_endpoint(node or self.manager))

    def pull_ref(self, image: str) -> str:
        """What a node pulls for one of the offline images."""
        return f"{self.registry_pull}/{image}"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """scripts/swarm-cluster ARGS with this interpreter (the venv's: docker SDK, cryptography)."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def is_up() -> bool:
    return (state_dir() / "cluster.json").exists() and run_script("status").returncode == 0


def up() -> SwarmCluster:
    done = run_script("up")
    assert done.returncode == 0, f"scripts/swarm-cluster up failed: {done.stderr[-3000:]}"
    return SwarmCluster.load(state_dir() / "cluster.json")


def down() -> None:
    done = run_script("down")
    assert done.returncode == 0, f"scripts/swarm-cluster down failed: {done.stderr[-3000:]}"


def leftovers(api: Any) -> dict[str, list[str]]:
    """Every container, network and volume on the host's engine carrying the cluster's label."""
    selector = {"label": f"{LABEL}={prefix()}"}
    return {
        "containers": sorted(c["Names"][0] for c in api.containers(all=True, filters=selector)),
        "networks": sorted(n["Name"] for n in api.networks(filters=selector)),
        "volumes": sorted(v["Name"] for v in (api.volumes(filters=selector).get("Volumes") or [])),
    }


def swarm_state(api: Any) -> str:
    return str(api.info()["Swarm"]["LocalNodeState"])


@dataclass
class SwarmSession:
    """Whether this session started the cluster (then it takes it down), and the host engine's
    swarm state before, which the cluster must never change."""

    cluster: SwarmCluster
    started: bool
    host_swarm_before: str
    is_down: bool = False


@contextmanager
def swarm_session(api: Any) -> Iterator[SwarmSession]:
    before = swarm_state(api)
    started = not is_up()
    cluster = up() if started else SwarmCluster.load(state_dir() / "cluster.json")
    session = SwarmSession(cluster, started, before)
    try:
        yield session
    finally:
        if session.started and not session.is_down:
            down()
