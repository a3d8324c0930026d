"""What `logs` shares between its targets (containers of one engine, services of a swarm):
the service names users type, the services that have no log here, whole masked lines out of
chunks, and several streams read at once."""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from queue import Queue
from typing import TypeVar

from mlstack.config import StackConfig
from mlstack.errors import UsageError
from mlstack.project.context import SERVICES
from mlstack.project.served import SERVICE as SERVE_SERVICE

SERVE_PREFIX = f"{SERVE_SERVICE}-"
T = TypeVar("T")


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


def merged(streams: Sequence[Iterable[T]]) -> Iterator[T]:
    """Several streams followed at once, a thread each, items in the order they arrive. A
    stream's error (the engine gone midway) is raised here, not lost in its thread."""
    queue: Queue[list[T] | BaseException | None] = Queue()  # [an item], an error, or done

    def pump(stream: Iterable[T]) -> None:
        try:
            for item in stream:
                queue.put([item])
            queue.put(None)
        except BaseException as e:  # handed to the reader, which raises it
            queue.put(e)

    for stream in streams:
        threading.Thread(target=pump, args=(stream,), daemon=True).start()
    finished = 0
    while finished < len(streams):
        got = queue.get()
        if isinstance(got, list):
            yield got[0]
        elif got is None:
            finished += 1
        else:
            raise got
