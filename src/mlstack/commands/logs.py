"""`mlstack logs`: one service's log or all of them, interleaved when following; secrets masked."""

from __future__ import annotations

from collections.abc import Iterator

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine import EngineAPI
from mlstack.errors import NotRunning
from mlstack.project.context import SERVICES, Project
from mlstack.project.logtext import (
    SERVE_PREFIX,
    lines_of,
    managed_services,
    merged,
    resolve_service,
)
from mlstack.project.served import find_served


def logs(
    config: StackConfig, engine: EngineAPI, service: str | None, *, follow: bool, tail: int | None
) -> Iterator[tuple[str, str]]:
    """(service, line) pairs from one service or all of them."""
    managed = managed_services(config)
    names = [resolve_service(config, service)] if service else []
    names = names or [n for n in SERVICES if n not in managed]
    project = Project.open(config, need_external=False)  # masks what it can read
    scrub = project.scrub if project is not None else (lambda text: text)
    if names[0].startswith(SERVE_PREFIX):
        info = find_served(engine, config.project, names[0][len(SERVE_PREFIX) :])
        found = {names[0]: info}
    else:
        found = {c.service: c for c in engine.containers(labels.of_project(config.project))}
    containers = {n: found[n] for n in names if n in found}
    if not containers:
        raise NotRunning(
            f"no container for {', '.join(names)} in project {config.project!r}",
            "start the stack with `mlstack up`",
        )
    tail_arg: int | str = tail if tail is not None else "all"
    if follow and len(containers) > 1:
        streams = [
            _named(name, lines_of(engine.logs(c.id, tail=tail_arg, follow=True), scrub))
            for name, c in containers.items()
        ]
        yield from merged(streams)
        return
    for name, info in containers.items():
        for line in lines_of(engine.logs(info.id, tail=tail_arg, follow=follow), scrub):
            yield name, line


def _named(name: str, lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    for line in lines:
        yield name, line
