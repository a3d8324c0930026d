"""`mlstack down` with target: swarm: the stack's services, relay, secrets, configs and overlay
network go; `--purge` also its volumes (on the data node, the manager by default), the data
node's label and the project's state. Found by label, like the local `down`."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine import SwarmEngineAPI
from mlstack.errors import EngineError, NotReady
from mlstack.health import CallableProbe, wait_ready
from mlstack.project import external
from mlstack.project.reporting import Result
from mlstack.project.swarm_ops import require_manager
from mlstack.project.swarm_plan import data_label
from mlstack.state import ProjectState

SETTLE_TIMEOUT = 120.0  # seconds for the tasks' containers to leave the network and volumes


@dataclass(frozen=True)
class SwarmDownResult(Result):
    project: str
    services: list[str]
    containers: list[str]  # the relay (and leftovers) on the manager
    secrets: list[str]
    configs: list[str]
    networks: list[str]
    volumes: list[str]
    state_removed: bool
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        found = (self.services, self.containers, self.secrets, self.configs, self.networks)
        return not (any(found) or self.volumes or self.state_removed)


def down_swarm(
    config: StackConfig, engine: SwarmEngineAPI, *, purge: bool = False
) -> SwarmDownResult:
    """Remove the stack's services and what they used; with purge also volumes and state."""
    started = time.monotonic()
    state = require_manager(config, engine, engine)
    selector = labels.of_project(config.project)
    services = [s.name for s in engine.services(selector)]
    for name in services:
        engine.remove_service(name)
    _stopped(engine, selector)
    containers = engine.containers(selector)
    for info in containers:
        engine.remove(info.id)
    secrets, configs = engine.secrets(selector), engine.configs(selector)
    for name in secrets:
        engine.remove_secret(name)
    for name in configs:
        engine.remove_config(name)
    networks = engine.networks(selector)
    _settle([(f"network {n}", partial(_remove_network, engine, n)) for n in networks])
    volumes: list[str] = []
    notes: list[str] = []
    state_removed = False
    if purge:
        project_state = ProjectState.for_project(config.project)
        notes = external.purge_notes(config, project_state)
        key = data_label(config.project)
        labelled = [n for n in state.nodes if key in n.labels]
        for node in labelled:
            engine.set_node_label(node.id, key, None)
        volumes = engine.volumes(selector)
        _settle([(f"volume {v}", partial(engine.remove_volume, v)) for v in volumes])
        elsewhere = [n.hostname for n in labelled if n.id != state.node_id]
        if elsewhere:
            notes.append(
                f"the volumes on {', '.join(elsewhere)} are not this engine's to remove: run "
                f"`docker volume rm {config.project}-postgres-data {config.project}-storage-data`"
                " there"
            )
        if project_state.root.exists():
            shutil.rmtree(project_state.root)
            state_removed = True
    return SwarmDownResult(
        config.project,
        services,
        [c.name for c in containers],
        secrets,
        configs,
        networks,
        volumes,
        state_removed,
        time.monotonic() - started,
        notes,
    )


def _remove_network(engine: SwarmEngineAPI, name: str) -> None:
    """Removed, and no longer listed (the manager's own copy goes a moment after the swarm's):
    an `up` right after must make it anew."""
    engine.remove_network(name)
    if name in engine.networks({}):
        raise NotReady(f"network {name} is still listed", service=name)


def _stopped(engine: SwarmEngineAPI, selector: dict[str, str]) -> None:
    """Until no task of the removed services is left on any node (each node stops and removes
    its own containers after the service is gone)."""

    def check() -> None:
        left = engine.tasks(selector)
        if left:
            nodes = ", ".join(sorted({t.node_id[:12] for t in left if t.node_id}))
            raise NotReady(f"{len(left)} tasks still stopping (nodes {nodes})", service="tasks")

    wait_ready([CallableProbe("tasks", check)], timeout=SETTLE_TIMEOUT, interval=0.5)


def _settle(removals: list[tuple[str, Callable[[], None]]]) -> None:
    """Remove each once the swarm's tasks have let go of it (they stop after their service is
    gone), through health.wait_ready's one loop."""

    def probe(what: str, remove: Callable[[], None]) -> CallableProbe:
        def check() -> None:
            try:
                remove()
            except EngineError as e:
                raise NotReady(f"{what} still in use: {e.message}", service=what) from e

        return CallableProbe(what, check)

    wait_ready([probe(w, r) for w, r in removals], timeout=SETTLE_TIMEOUT, interval=0.5)
