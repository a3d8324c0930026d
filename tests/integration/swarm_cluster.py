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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from mlstack.config.endpoint import Endpoint, TlsFiles
from mlstack.engine.docker import DockerEngine

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "swarm-cluster"
LABEL = "org.mlstack-tests.swarm-cluster"  # =PREFIX on every container, volume and network
REGISTRY_IMAGE = "mlstack-offline/registry:2.8"  # built by scripts/offline-images
TLS_PORT = 2376


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


@dataclass(frozen=True)
class ClusterScript:
    """scripts/swarm-cluster for one cluster: its prefix (MLSTACK_SWARM_PREFIX) and state dir
    (MLSTACK_SWARM_DIR), read once when the session starts (each test's environment is cleared
    of MLSTACK_* variables, tests/conftest.py) and handed to every run."""

    prefix: str
    state: Path

    @classmethod
    def from_environment(cls) -> ClusterScript:
        prefix = os.environ.get("MLSTACK_SWARM_PREFIX", "mlstack-swarm")
        return cls(prefix, Path(os.environ.get("MLSTACK_SWARM_DIR", f"/tmp/{prefix}")))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The script with this interpreter (the venv's: docker SDK, cryptography)."""
        env = {
            **os.environ,
            "MLSTACK_SWARM_PREFIX": self.prefix,
            "MLSTACK_SWARM_DIR": str(self.state),
        }
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    def is_up(self) -> bool:
        return (self.state / "cluster.json").exists() and self.run("status").returncode == 0

    def load(self) -> SwarmCluster:
        return SwarmCluster.load(self.state / "cluster.json")

    def up(self) -> SwarmCluster:
        done = self.run("up")
        assert done.returncode == 0, f"scripts/swarm-cluster up failed: {done.stderr[-3000:]}"
        return self.load()

    def down(self) -> None:
        done = self.run("down")
        assert done.returncode == 0, f"scripts/swarm-cluster down failed: {done.stderr[-3000:]}"

    def leftovers(self, api: Any) -> dict[str, list[str]]:
        """Every container, network and volume on the host's engine with the cluster's label."""
        selector = {"label": f"{LABEL}={self.prefix}"}
        volumes = api.volumes(filters=selector).get("Volumes") or []
        return {
            "containers": sorted(c["Names"][0] for c in api.containers(all=True, filters=selector)),
            "networks": sorted(n["Name"] for n in api.networks(filters=selector)),
            "volumes": sorted(v["Name"] for v in volumes),
        }


def swarm_state(api: Any) -> str:
    return str(api.info()["Swarm"]["LocalNodeState"])


@dataclass
class SwarmSession:
    """Whether this session started the cluster (then it takes it down), and the host engine's
    swarm state before, which the cluster must never change."""

    script: ClusterScript
    cluster: SwarmCluster
    started: bool
    host_swarm_before: str
    is_down: bool = False


@contextmanager
def swarm_session(api: Any) -> Iterator[SwarmSession]:
    before = swarm_state(api)
    script = ClusterScript.from_environment()
    started = not script.is_up()
    cluster = script.up() if started else script.load()
    session = SwarmSession(script, cluster, started, before)
    try:
        yield session
    finally:
        if session.started and not session.is_down:
            script.down()


def poll(check: Callable[[], Any], seconds: float) -> Any:
    """What `check` returned first that is true, polling for up to `seconds`; else None."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() >= deadline:
            return found or None
        time.sleep(0.5)


def wait_for(what: str, check: Callable[[], Any], seconds: float = 180) -> Any:
    """Poll `check` until it returns something true; fail after `seconds` (a hang, not a time)."""
    found = poll(check, seconds)
    assert found, f"{what}: not after {seconds} s"
    return found


def update_node(api: Any, node_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """The node's spec through `change`; False when the node changed meanwhile (a node's own
    status reports bump its version: "update out of sequence"): try again."""
    node = api.inspect_node(node_id)
    try:
        api.update_node(node_id, node["Version"]["Index"], change(dict(node["Spec"])))
    except docker.errors.APIError as e:
        if "out of sequence" in str(e):
            return False
        raise
    return True
