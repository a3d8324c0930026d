"""Free space on a service's volume, as `df` inside its container sees it.

A full disk leaves a service looking healthy: it still answers every read, only writes fail.
So `status` reads the data services' logs while its probes run (a few ms), and runs `df` through
the engine (~0.1 s) only where a log says a write failed for lack of room: `df` then tells a disk
still full from one that had room made since (the log line stays behind). A disk that filled up
without a failed write yet is not seen: nothing has failed yet either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.errors import MlstackError
from mlstack.project.context import Project

FULL_BELOW = 256 << 20  # bytes free under which a disk counts as full ...
FULL_FRACTION = 0.05  # ... or under this share of its size, whichever is less


@dataclass(frozen=True)
class Space:
    """The file system under one directory of a container."""

    path: str
    size: int  # bytes
    free: int  # bytes an unprivileged writer may still use

    @property
    def full(self) -> bool:
        """Too little room for the next write: what failed once will fail again."""
        return self.free < min(FULL_BELOW, int(self.size * FULL_FRACTION))

    def __str__(self) -> str:
        return f"{_size(self.free)} free of {_size(self.size)} at {self.path}"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def parse_df(output: str, path: str) -> Space | None:
    """`df -Pk PATH`'s answer (POSIX: a header, then one line of 1024-byte blocks), or None."""
    lines = [line.split() for line in output.strip().splitlines()]
    if len(lines) < 2 or len(lines[-1]) < 6:
        return None
    fields = lines[-1]
    try:
        size, free = int(fields[1]), int(fields[3])
    except ValueError:
        return None
    return Space(path, size * 1024, free * 1024)


def read_space(engine: EngineAPI, container: str, path: str) -> Space | None:
    """The free space under `path` in a running container; None when it cannot be read (no df
    in the image, the container stopped meanwhile)."""
    try:
        code, output = engine.exec(container, ["df", "-Pk", path])
    except MlstackError:
        return None
    return parse_df(output, path) if code == 0 else None


def volume_space(project: Project, engine: EngineAPI, service: str, container: str) -> Space | None:
    """The free space on a running service's volume (~0.1 s); None without a volume."""
    volumes = project.service(service).volumes
    return read_space(engine, container, volumes[0][1]) if volumes else None


def data_logs(
    project: Project, engine: EngineAPI, containers: Mapping[str, ContainerInfo], lines: int
) -> dict[str, str]:
    """The log tails (masked) of the running services with a volume: a few ms."""
    return {
        name: project.scrub(engine.log_tail(info.id, lines))
        for name, info in containers.items()
        if info.running and project.service(name).volumes
    }
