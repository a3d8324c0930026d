"""`mlstack logs`: one service's log or all of them, interleaved when following; secrets masked."""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Iterable, Iterator
from queue import Queue

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.errors import NotRunning, UsageError
from mlstack.project.context import SERVICES, Project
from mlstack.project.served import SERVICE as SERVE_SERVICE
from mlstack.project.served import find_served

SERVE_PREFIX = f"{SERVE_SERVICE}-"


def managed_services(config: StackConfig) -> list[str]:
    """The services run elsewhere (postgres.external, storage.external): no container, no log."""
    found = {"postgres": config.postgres.external, "storage": config.storage.external}
    return [name for name, external in found.items() if external is not None]


def resolve_service(config: StackConfig, name: str) -> str:
    """A service name as users type it: 'minio'/'seaweedfs'/'s3' mean storage; `serve-NAME` is
    the model served as NAME."""
    aliases = {config.storage.engine: "storage", "s3": "storage", "db": "postgres"}
    resolved = aliases.get(name, name)
    if resolved.startswith(SERVE_PREFIX) and len(resolved) > len(SERVE_PREFIX):
        return resolved
    if resolved not in SERVICES:
        raise UsageError(
            f"unknown service {name!r}",
            f"use one of: {', '.join(SERVICES)} (or {config.storage.engine} for storage), "
            "or serve-NAME for a served model",
        )
    if resolved in managed_services(config):
        raise UsageError(
            f"{resolved} is managed elsewhere ({resolved}.external): the stack runs no container "
            "for it, so mlstack has no log of it",
            "read its logs where it runs (your database or cloud console)",
        )
    return resolved


def lines_of(chunks: Iterable[bytes], scrub: Callable[[str], str]) -> Iterator[str]:
    """Whole lines from a stream of chunks, each masked. A chunk may end anywhere: in a line, in
    a secret, in a UTF-8 character; the rest waits for the next chunk, so a secret is masked
    whatever the cut (no secret holds a newline)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in chunks:
        *complete, pending = (pending + decoder.decode(chunk)).split("\n")
        for line in complete:
            yield scrub(line.removesuffix("\r"))
    pending += decoder.decode(b"", final=True)
    if pending:
        yield scrub(pending.removesuffix("\r"))


def _interleaved(
    engine: EngineAPI,
    containers: dict[str, ContainerInfo],
    tail: int | str,
    scrub: Callable[[str], str],
) -> Iterator[tuple[str, str]]:
    """Follow several logs at once, a thread each, in the order their lines arrive."""
    queue: Queue[tuple[str, str] | None] = Queue()

    def pump(name: str) -> None:
        try:
            for line in lines_of(engine.logs(containers[name].id, tail=tail, follow=True), scrub):
                queue.put((name, line))
        finally:
            queue.put(None)

    for name in containers:
        threading.Thread(target=pump, args=(name,), daemon=True).start()
    finished = 0
    while finished < len(containers):
        item = queue.get()
        if item is None:
            finished += 1
        else:
            yield item


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
        yield from _interleaved(engine, containers, tail_arg, scrub)
        return
    for name, info in containers.items():
        for line in lines_of(engine.logs(info.id, tail=tail_arg, follow=follow), scrub):
            yield name, line
