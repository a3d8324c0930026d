"""Consoles, tables, JSON and live progress: the pieces every view is drawn with.

Consoles are made per call, so NO_COLOR, FORCE_COLOR and COLUMNS are read when a command runs.
When a stream is not a terminal, tables are drawn without a box at the width they need: piped
output never cuts a container name or a URL at 80 columns.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from mlstack.project.reporting import Event

WIDE = 10_000  # a "width" no line of ours reaches: rich then draws tables at their natural size


@dataclasses.dataclass(frozen=True)
class Screen:
    """stderr (progress, tables, messages) and stdout (what scripts read)."""

    err: Console
    out: Console


def escape(text: str) -> str:
    """`text` shown as it is, never read as rich markup (`[bold]`)."""
    return text.replace("[", "\\[")


def console(*, stderr: bool) -> Console:
    # deferred: rich costs ~40 ms to import; --help and a failed parse never draw anything
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return Console(
        file=stream,
        stderr=stderr,
        highlight=False,
        width=None if terminal else WIDE,
        soft_wrap=not terminal,
        # rich's own NO_COLOR handling drops colours but still writes bold and italic escapes
        color_system=None if os.environ.get("NO_COLOR", "") != "" else "auto",
    )


def screens() -> Screen:
    return Screen(console(stderr=True), console(stderr=False))


def table(
    target: Console, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]
) -> Table:
    """A table for `target`: boxed on a terminal, plain aligned columns in a pipe or file."""
    # deferred: as console()
    from rich import box
    from rich.table import Table

    grid = Table(
        title=title, title_justify="left", box=box.HEAVY_HEAD if target.is_terminal else None
    )
    for column in columns:
        grid.add_column(column, no_wrap=not target.is_terminal)
    for row in rows:
        grid.add_row(*row)
    return grid


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def print_logs(lines: Iterable[tuple[str, str]], *, prefix: bool, width: int = 8) -> None:
    """Log lines as they come (`service | line` when several services are shown), the
    prefixes padded to `width` (a swarm's say the task and node too)."""
    try:
        for service, line in lines:
            sys.stdout.write(f"{service:<{width}}| {line}\n" if prefix else f"{line}\n")
            sys.stdout.flush()
    except BrokenPipeError:
        pass


class LiveProgress:
    """Live progress on stderr: a timestamped line per step, a bar per pull or batch of runs.

    The bars' display (rich.progress) starts with the first bar: a command that pulls nothing
    and trains nothing prints its lines without loading it.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.err = console(stderr=True)
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.started = time.monotonic()

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _line(self, text: str) -> None:
        target = self.progress.console if self.progress is not None else self.err
        target.print(f"[dim]{time.monotonic() - self.started:5.1f}s[/] {text}")

    def _bars(self) -> Progress:
        if self.progress is None:
            # deferred: as console()
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                console=self.err,
                transient=True,
            )
            self.progress.start()
        return self.progress

    def _bar(
        self, key: str, description: str, completed: float, total: float | None, count: str
    ) -> None:
        bars = self._bars()
        task = self.tasks.get(key)
        if task is None:
            task = self.tasks[key] = bars.add_task(description, total=total, count=count)
        bars.update(task, completed=completed, total=total, count=count)

    def report(self, event: Event) -> None:
        if not self.enabled:
            return
        if event.kind == "pull" and event.pull is not None:
            pull = event.pull
            size = f"{pull.completed / 1e6:.1f}/{pull.total / 1e6:.1f} MB" if pull.total else ""
            self._bar(pull.image, f"pull {pull.image}", pull.completed, pull.total or None, size)
            if pull.done:
                self._line(f"pulled {escape(pull.image)}")
        elif event.kind == "run":
            self._bar("runs", "training", event.done, event.total, f"{event.done}/{event.total}")
            if event.done:
                self._line(f"[green]✓[/] {escape(event.message)}")
        elif event.kind == "step":
            self._line(escape(event.message))
        elif event.kind == "ready":
            self._line(f"[green]✓[/] {event.service} ready ({event.seconds or 0:.1f}s)")
        elif event.kind == "warning":
            self._line(f"[yellow]warning:[/] {escape(event.message)}")
