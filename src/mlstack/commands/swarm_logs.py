"""`mlstack logs` with target: swarm: a service's log is the log of each of its tasks, on
whichever node it ran, gathered by the manager. A service has several tasks (MLflow's
replicas, a task that replaced a failed one), so each line says which task and node printed
it, as `docker service logs` does; secrets are masked as on one engine."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine import SwarmEngineAPI, SwarmServiceInfo, TaskLogLine
from mlstack.errors import NotRunning, UsageError
from mlstack.project.context import SERVICES, Project
from mlstack.project.logtext import SERVE_PREFIX, managed_services, merged, resolve_service
from mlstack.project.served import SERVICE as SERVE_SERVICE
from mlstack.project.swarm_ops import require_manager


@dataclass(frozen=True)
class SwarmLogs:
    """Lines as (source, text), the source being `service.slot@node`; `sources` are the tasks
    known when reading began (a line of a task gone since says its task id instead)."""

    lines: Iterator[tuple[str, str]]
    sources: list[str]
    all_services: bool

    @property
    def prefixed(self) -> bool:
        """Whether lines need their source: several services or tasks, not one task alone
        (its log then reads as one container's does on one engine)."""
        return self.all_services or len(set(self.sources)) > 1


def logs_swarm(
    config: StackConfig,
    engine: SwarmEngineAPI,
    service: str | None,
    *,
    follow: bool,
    tail: int | None,
) -> SwarmLogs:
    """The log of one of the stack's swarm services, or of all of them (interleaved when
    following)."""
    state = require_manager(config, engine, engine)
    hostnames = {n.id: n.hostname for n in state.nodes}
    found = engine.services(labels.of_project(config.project))
    wanted = _wanted(config, found, service)
    project = Project.open(config, need_external=False)  # masks what it can read
    scrub = project.scrub if project is not None else (lambda text: text)
    tail_arg: int | str = tail if tail is not None else "all"
    known = {name: _task_sources(name, info, hostnames) for name, info in wanted.items()}
    streams = [
        _lines(engine, name, info.name, known[name], hostnames, scrub, tail_arg, follow)
        for name, info in wanted.items()
    ]
    several = follow and len(streams) > 1
    lines = merged(streams) if several else itertools.chain.from_iterable(streams)
    sources = [source for tasks in known.values() for source in tasks.values()]
    return SwarmLogs(lines, sources, service is None)


def _stack_name(info: SwarmServiceInfo) -> str:
    """The name users give a service: its label (`serve-NAME` for a model served as NAME,
    whether labelled so or as `serve` with its serve name)."""
    served = info.labels.get(labels.SERVE_NAME)
    if info.service == SERVE_SERVICE and served:
        return f"{SERVE_PREFIX}{served}"
    return info.service


def _wanted(
    config: StackConfig, found: list[SwarmServiceInfo], service: str | None
) -> dict[str, SwarmServiceInfo]:
    """The swarm services asked for, by the name users give them; found by label."""
    ours = [s for s in found if s.labels.get(labels.PROJECT) == config.project]
    by_name = {_stack_name(s): s for s in ours}
    if service is None:
        names = [n for n in SERVICES if n not in managed_services(config)]
    else:
        names = [resolve_service(config, service)]
    wanted = {n: by_name[n] for n in names if n in by_name}
    if wanted:
        return wanted
    if names[0].startswith(SERVE_PREFIX):
        served = sorted(n for n in by_name if n.startswith(SERVE_PREFIX))
        raise UsageError(
            f"unknown service {service!r}: no model is served as "
            f"{names[0].removeprefix(SERVE_PREFIX)!r} in project {config.project!r}",
            f"served now: {', '.join(served)}" if served else "serve one with `mlstack serve`",
        )
    raise NotRunning(
        f"no swarm service for {', '.join(names)} in project {config.project!r}",
        "start the stack with `mlstack up`",
    )


def _task_sources(
    name: str, info: SwarmServiceInfo, hostnames: Mapping[str, str]
) -> dict[str, str]:
    """Each task's source, by task id: `mlflow.2@node-3`, the service, the task's slot and its
    node. A slot whose task was replaced (it failed, an update) holds several: each then says
    its task id too, as `docker service logs` does. A task never placed printed nothing."""
    slots = Counter(t.slot for t in info.tasks if t.node_id)
    found = {}
    for task in info.tasks:
        if not task.node_id:
            continue
        slot = str(task.slot) if task.slot else task.id[:12]
        if task.slot and slots[task.slot] > 1:
            slot += f".{task.id[:12]}"
        node = hostnames.get(task.node_id) or task.node or task.node_id[:12]
        found[task.id] = f"{name}.{slot}@{node}"
    return found


def _unlisted(name: str, line: TaskLogLine, hostnames: Mapping[str, str]) -> str:
    """The source of a task the swarm no longer lists (it keeps a few per slot), or of a line
    whose task the engine did not name."""
    if not line.task_id:
        return name
    node = hostnames.get(line.node_id) or line.node_id[:12]
    return f"{name}.{line.task_id[:12]}@{node}"


def _lines(
    engine: SwarmEngineAPI,
    name: str,
    swarm_name: str,
    known: Mapping[str, str],
    hostnames: Mapping[str, str],
    scrub: Callable[[str], str],
    tail: int | str,
    follow: bool,
) -> Iterator[tuple[str, str]]:
    for line in engine.service_log_lines(swarm_name, tail=tail, follow=follow):
        text = line.text.decode(errors="replace").removesuffix("\r")
        yield known.get(line.task_id) or _unlisted(name, line, hostnames), scrub(text)
