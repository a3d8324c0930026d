"""`mlstack down`: stop and remove the stack's containers and network; `--purge` also its volumes
and state. Found by label, so served models and leftovers of an interrupted `up` go too."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.project import external
from mlstack.project.context import stop_grace
from mlstack.project.reporting import Result
from mlstack.state import ProjectState


@dataclass(frozen=True)
class DownResult(Result):
    project: str
    containers: list[str]
    networks: list[str]
    volumes: list[str]
    state_removed: bool
    seconds: float
    backups: str | None = None  # the project's backups dir, when it holds any: purge keeps it
    # purge: what it left on managed services (postgres.external, storage.external), and how
    # to remove that by hand
    external: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not (self.containers or self.networks or self.volumes or self.state_removed)


def down(config: StackConfig, engine: EngineAPI, *, purge: bool = False) -> DownResult:
    """Stop and remove the stack's containers and network; with purge also volumes and state."""
    started = time.monotonic()
    selector = labels.of_project(config.project)
    containers = engine.containers(selector)

    def stop_and_remove(info: ContainerInfo) -> None:
        if info.running or info.state == "restarting":
            engine.stop(info.id, stop_grace(info.service))
        engine.remove(info.id)

    with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
        list(pool.map(stop_and_remove, containers))
    networks = engine.networks(selector)
    for network in networks:
        engine.remove_network(network)
    volumes: list[str] = []
    state_removed = False
    notes: list[str] = []
    if purge:
        # Managed services are never touched: their data is not mlstack's to delete.
        notes = external.purge_notes(config, ProjectState.for_project(config.project))
        volumes = engine.volumes(selector)
        for volume in volumes:
            engine.remove_volume(volume)
        state = ProjectState.for_project(config.project)
        if state.root.exists():
            shutil.rmtree(state.root)
            state_removed = True
    kept = ProjectState.for_project(config.project)
    return DownResult(
        config.project,
        [c.name for c in containers],
        networks,
        volumes,
        state_removed,
        time.monotonic() - started,
        str(kept.backups) if kept.latest_backup() is not None else None,
        notes,
    )
