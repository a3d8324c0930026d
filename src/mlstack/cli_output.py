"""How results look in a terminal (rich) or to a script (JSON). Only the CLI imports this."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from mlstack.config import LoadedConfig, config_as_dict
from mlstack.demo import DemoEvent, DemoResult
from mlstack.serve import ServeResult, StopResult
from mlstack.stack import DownResult, Event, StatusResult, UpResult

if TYPE_CHECKING:
    from mlstack.backup import BackupResult, RestoreResult

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(_jsonable(value), indent=2) + "\n")


_Live = TypeVar("_Live", bound="_LiveLines")


class _LiveLines:
    """A rich Progress on stderr plus timestamped lines above it; a context manager."""

    def __init__(self, enabled: bool, *columns: Any) -> None:
        self.enabled = enabled
        self.progress = Progress(*columns, console=err, transient=True)
        self.started = time.monotonic()

    def __enter__(self: _Live) -> _Live:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def _line(self, text: str) -> None:
        self.progress.console.print(f"[dim]{time.monotonic() - self.started:5.1f}s[/] {text}")


class UpProgress(_LiveLines):
    """Live progress of `up` on stderr: a line per step and per ready service, a bar per pull."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(
            enabled,
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
        )
        self.pulls: dict[str, TaskID] = {}

    def report(self, event: Event) -> None:
        if not self.enabled:
            return
        if event.kind == "pull" and event.pull is not None:
            pull = event.pull
            task = self.pulls.get(pull.image)
            if task is None:
                task = self.progress.add_task(f"pull {pull.image}", total=None)
                self.pulls[pull.image] = task
            self.progress.update(task, completed=pull.completed, total=pull.total or None)
            if pull.done:
                self._line(f"pulled {pull.image}")
        elif event.kind == "step":
            self._line(event.message)
        elif event.kind == "ready":
            self._line(f"[green]✓[/] {event.service} ready ({event.seconds:.1f}s)")
        elif event.kind == "warning":
            self._line(f"[yellow]warning:[/] {event.message}")


def print_up(result: UpResult, *, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    table = Table(
        title=f"mlstack {result.project}: up in {result.seconds:.1f}s", title_justify="left"
    )
    for column in ("service", "container", "state", "ready", "url"):
        table.add_column(column)
    for s in result.services:
        ready = f"{s.ready_seconds:.1f}s" if s.ready_seconds is not None else "-"
        table.add_row(s.service, s.container, s.action.value, ready, s.url)
    err.print(table)
    if result.database_created or result.bucket_created:
        made = [
            w
            for w, done in (
                ("database", result.database_created),
                ("bucket", result.bucket_created),
            )
            if done
        ]
        err.print(f"created {' and '.join(made)}")
    if result.upgrade is not None:
        u = result.upgrade
        err.print(
            f"upgraded the database from {escape(u.from_image)} to {escape(u.to_image)} "
            f"(schema {u.from_revision} -> {u.to_revision}; backup {u.backup_seconds:.1f}s, "
            f"migration {u.migrate_seconds:.1f}s); the backup is {escape(str(u.backup))}"
        )
    err.print('use it: eval "$(mlstack env)"   then: python train.py')
    print(result.tracking_uri)


def print_status(result: StatusResult, *, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    colour = {"healthy": "green", "degraded": "yellow", "not running": "red"}[result.overall.value]
    table = Table(
        title=f"mlstack {result.project}: [{colour}]{result.overall.value}[/]", title_justify="left"
    )
    for column in ("service", "container", "state", "docker health", "probe", "url"):
        table.add_column(column)
    for s in result.services:
        probe = "-"
        if s.probe is not None:
            probe = f"ok {s.probe.latency * 1000:.0f} ms" if s.probe.ok else "failing"
        table.add_row(s.service, s.container, s.state, s.health or "-", probe, s.url or "-")
    out.print(table)
    if result.served:
        served = Table(title="served models", title_justify="left")
        for column in ("name", "model", "state", "probe", "url"):
            served.add_column(column)
        for m in result.served:
            probe = "-"
            if m.probe is not None:
                probe = f"ok {m.probe.latency * 1000:.0f} ms" if m.probe.ok else "failing"
            model = m.model_uri + (f" (v{m.version})" if m.version else "")
            served.add_row(m.name, escape(model), m.state, probe, m.url or "-")
        out.print(served)
    for s in result.services:
        if s.problem:
            out.print(f"[yellow]{s.service}[/]: {escape(s.problem)}\n  fix: {escape(s.fix)}")
    for m in result.served:
        if m.problem:
            out.print(f"[yellow]served {m.name}[/]: {escape(m.problem)}\n  fix: {escape(m.fix)}")
    if result.overall.value == "not running":
        out.print("the stack is not running: start it with `mlstack up`")
    elif result.overall.value == "healthy":
        out.print(f"tracking URI: {result.tracking_uri}")


class DemoProgress(_LiveLines):
    """Live progress of `demo` on stderr: a bar over the runs, a line per finished run."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(
            enabled,
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self.task: TaskID | None = None

    def report(self, event: DemoEvent) -> None:
        if not self.enabled:
            return
        if event.kind == "step":
            self._line(escape(event.message))
            return
        if self.task is None:
            self.task = self.progress.add_task("training", total=event.total)
        self.progress.update(self.task, completed=event.index)
        if event.run is not None:
            m = event.run.metrics
            self._line(
                f"[green]✓[/] run {event.index}/{event.total} {event.run.run_name}: "
                f"accuracy {m['accuracy']:.3f}, f1 {m['f1_macro']:.3f}, "
                f"log loss {m['log_loss']:.3f}"
            )


def print_demo(result: DemoResult, *, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    table = Table(
        title=f"{len(result.runs)} runs on {result.dataset} in {result.seconds:.1f}s (test split)",
        title_justify="left",
    )
    table.add_column("run", no_wrap=True)
    for column in ("accuracy", "f1 macro", "log loss", ""):
        table.add_column(column, justify="right")
    for run in result.runs:
        m = run.metrics
        table.add_row(
            run.run_name,
            f"{m['accuracy']:.3f}",
            f"{m['f1_macro']:.3f}",
            f"{m['log_loss']:.3f}",
            "[green]best[/]" if run.run_id == result.best_run_id else "",
        )
    err.print(table)
    err.print(f"experiment {result.experiment}: {result.experiment_url}", soft_wrap=True)
    for run in result.runs:
        err.print(f"  run {run.run_name}: {run.url}", soft_wrap=True)
    err.print(
        f"registered {result.registered_model} version {result.version}, alias {result.alias}: "
        f"{result.model_url}",
        soft_wrap=True,
    )
    err.print(f"next: [bold]{escape(result.serve_command)}[/]")
    print(f"models:/{result.registered_model}/{result.version}")


def print_serve(result: ServeResult, *, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    model = result.model_uri
    if result.served_uri != result.model_uri:
        model += f" (= {result.served_uri})"
    verb = "replaced" if result.replaced else "serving"
    err.print(
        f"{verb} {escape(model)} as [bold]{result.name}[/] ({result.container}): ready in "
        f"{result.ready_seconds:.1f}s, {result.seconds:.1f}s in all"
    )
    if result.payload is None:
        err.print("the model has no input example: put your input in the body below")
    err.print("try it:")
    err.print(escape(result.curl), soft_wrap=True)
    err.print(f"remove it: mlstack serve --stop {result.name}")
    print(result.url)


def print_serve_stop(result: StopResult, *, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    err.print(f"removed {result.container} (it served {escape(result.model_uri)})")


def print_down(result: DownResult) -> None:
    if result.nothing_to_do:
        err.print(
            f"nothing to do: project {result.project!r} has no containers, network or volumes"
        )
        return
    err.print(
        f"removed {len(result.containers)} containers and {len(result.networks)} network(s) "
        f"in {result.seconds:.1f}s"
    )
    if result.volumes or result.state_removed:
        err.print(f"purged {len(result.volumes)} volume(s) and the project's secrets and files")
    else:
        err.print("data kept: volumes and secrets stay for the next `mlstack up`")


def print_logs(lines: Iterable[tuple[str, str]], *, prefix: bool) -> None:
    width = 8
    try:
        for service, line in lines:
            sys.stdout.write(f"{service:<{width}}| {line}\n" if prefix else f"{line}\n")
            sys.stdout.flush()
    except BrokenPipeError:
        pass


def print_config(loaded: LoadedConfig, *, as_json: bool) -> None:
    from mlstack import secrets as secrets_store
    from mlstack.state import ProjectState

    data = config_as_dict(loaded.config)
    state = ProjectState.for_project(loaded.config.project)
    creds = secrets_store.load(state)
    data["credentials"] = (
        {k: ("****" if "USER" not in k else v) for k, v in creds.as_env().items()}
        if creds
        else "not generated yet (made on the first `mlstack up`)"
    )
    if as_json:
        print_json(data)
        return
    source = str(loaded.path) if loaded.path else "defaults (no mlstack.yaml)"
    sys.stdout.write(f"# effective config; file: {source}; state: {state.root}\n")
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


def print_backup(result: BackupResult, *, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    err.print(
        f"backed up the database and {result.objects} objects ({_size(result.object_bytes)}) "
        f"into {escape(str(result.path))} ({_size(result.size)}) in {result.seconds:.1f}s"
    )
    print(result.path)


def print_restore(result: RestoreResult, *, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    migrated = "; migrated the database to the stack's MLflow image" if result.migrated else ""
    err.print(
        f"restored the backup of {result.source_project!r} taken {result.created_at}: the "
        f"database and {result.objects} objects ({_size(result.object_bytes)}) in "
        f"{result.seconds:.1f}s{migrated}"
    )
