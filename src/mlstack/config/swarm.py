"""The `swarm:` section and the checks of a Docker Swarm target (`target: swarm`).

On a swarm MLflow runs as a replicated service; PostgreSQL and S3 stay one task each, pinned to
one node (`data_node`) that holds their volumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlstack.config.checks import Checker, Problem, unknown_keys

TARGETS = ("local", "swarm")
# dnsrr: each task answers on the port its own node publishes (host mode); works without IPVS.
# vip: the routing mesh (ingress mode), a virtual IP per service; needs IPVS in the kernel.
ENDPOINT_MODES = ("dnsrr", "vip")
REPLICAS_MAX = 32


@dataclass(frozen=True)
class SwarmConfig:
    endpoint_mode: str = "dnsrr"
    # Hostname or node ID of the node that keeps PostgreSQL's and S3's volumes; None: the
    # manager mlstack talks to (its engine can then remove them on `down --purge`).
    data_node: str | None = None

    @property
    def publish_mode(self) -> str:
        """How MLflow's port is published: on each node running a task, or through the mesh."""
        return "host" if self.endpoint_mode == "dnsrr" else "ingress"

    @classmethod
    def checked(cls, data: Mapping[str, Any], check: Checker) -> SwarmConfig:
        unknown_keys(check, "swarm.", data, cls)
        mode = check.choice(
            "swarm.endpoint_mode", data.get("endpoint_mode", "dnsrr"), ENDPOINT_MODES
        )
        node = data.get("data_node")
        if node is not None:
            node = check.text("swarm.data_node", node, _node_problem)
        return cls(endpoint_mode=mode or "dnsrr", data_node=node.strip() if node else None)


def _node_problem(value: str) -> str | None:
    if value.strip() and value.strip().isprintable() and " " not in value.strip():
        return None
    return f"{value!r} is not a node: give a node's hostname or ID (`docker node ls`)"


def replicas_problems(target: str, replicas: int | None) -> list[Problem]:
    """Replicas below one run nothing; more than one need a swarm to spread them over."""
    if replicas is None:
        return []
    if replicas < 1:
        return [
            Problem(
                "mlflow.replicas",
                f"mlflow.replicas must be 1 or more, got {replicas}: set mlflow.replicas: 1 "
                "(or more on a swarm)",
            )
        ]
    if replicas > REPLICAS_MAX:
        return [
            Problem(
                "mlflow.replicas",
                f"mlflow.replicas must be at most {REPLICAS_MAX}, got {replicas}",
            )
        ]
    if replicas > 1 and target != "swarm":
        return [
            Problem(
                "mlflow.replicas",
                f"mlflow.replicas is {replicas}: replicas need target: swarm (set target: swarm, "
                "or mlflow.replicas: 1)",
            )
        ]
    return []


def tls_problems(target: str, tls: bool) -> list[Problem]:
    """A swarm's MLflow tasks are checked by localhost, which a stack's certificate does not
    name: https on a swarm is not built yet."""
    if target == "swarm" and tls:
        text = (
            "tls is not supported with target: swarm yet: set tls: false (and put a TLS "
            "proxy before MLflow's published port), or target: local"
        )
        return [Problem("tls", text)]
    return []


def default_replicas(target: str) -> int:
    return 2 if target == "swarm" else 1
