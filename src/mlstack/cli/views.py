"""The one way results reach the screen: JSON for --json, else the text view of the result's
type on stderr and its `output` line on stdout.

Views are found by the result's class name: the result types are imported for type checking
only, so showing one command's result never imports another command's module.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlstack.cli.output import Screen, escape, jsonable, screens, table
from mlstack.cli.swarm_views import swarm_down_view, swarm_status_view, swarm_up_view

if TYPE_CHECKING:
    from mlstack.commands.demo import DemoResult
    from mlstack.commands.down import DownResult
    from mlstack.commands.env import EnvResult
    from mlstack.commands.export import ExportResult
    from mlstack.commands.gc import GcResult
    from mlstack.commands.restore import RestoreResult
    from mlstack.commands.settings import WroteResult
    from mlstack.commands.status import Row, StatusResult
    from mlstack.commands.ui import UiResult
    from mlstack.commands.up import UpResult
    from mlstack.project.reporting import Result
    from mlstack.project.serving import ServeResult, StopResult
    from mlstack.project.snapshot import BackupResult

_COLOUR = {"healthy": "green", "degraded": "yellow", "not running": "red"}


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


def _warnings(screen: Screen, warnings: list[str]) -> None:
    for warning in warnings:
        screen.err.print(f"[yellow]warning:[/] {escape(warning)}")


def up_view(result: UpResult, screen: Screen) -> None:
    _warnings(screen, result.warnings)
    rows = [
        (
            s.service,
            s.container,
            s.action.value,
            f"{s.ready_seconds:.1f}s" if s.ready_seconds is not None else "-",
            s.url,
        )
        for s in result.services
    ]
    title = f"mlstack {result.project}: up in {result.seconds:.1f}s"
    screen.err.print(
        table(screen.err, title, ("service", "container", "state", "ready", "url"), rows)
    )
    made = [
        w
        for w, done in (("database", result.database_created), ("bucket", result.bucket_created))
        if done
    ]
    if made:
        screen.err.print(f"created {' and '.join(made)}")
    if result.upgrade is not None:
        u = result.upgrade
        screen.err.print(
            f"upgraded the database from {escape(u.from_image)} to {escape(u.to_image)} "
            f"(schema {u.from_revision} -> {u.to_revision}; backup {u.backup_seconds:.1f}s, "
            f"migration {u.migrate_seconds:.1f}s); the backup is {escape(str(u.backup))}"
        )
    screen.err.print('use it: eval "$(mlstack env)"   then: python train.py')


def _probe(row: Row) -> str:
    if row.probe is None:
        return "-"
    if row.full:  # it answers, but no write goes through
        return "disk full"
    return f"ok {row.probe.latency * 1000:.0f} ms" if row.probe.ok else "failing"


def status_view(result: StatusResult, screen: Screen) -> None:
    out = screen.out
    overall = result.overall.value
    title = f"mlstack {result.project}: [{_COLOUR[overall]}]{overall}[/]"
    rows = [
        (s.service, s.container, s.state, s.health or "-", _probe(s), s.url or "-")
        for s in result.services
    ]
    out.print(
        table(out, title, ("service", "container", "state", "docker health", "probe", "url"), rows)
    )
    if result.served:
        served = [
            (
                m.name,
                escape((m.model_uri or "") + (f" (v{m.version})" if m.version else "")),
                m.state,
                _probe(m),
                m.url or "-",
            )
            for m in result.served
        ]
        out.print(table(out, "served models", ("name", "model", "state", "probe", "url"), served))
    for s in result.services:
        if s.problem:
            out.print(f"[yellow]{s.service}[/]: {escape(s.problem)}")
            if s.cause:
                out.print(f"  cause: {escape(s.cause)}")
            for line in s.log:
                out.print(f"  [dim]|[/] {escape(line)}")
            out.print(f"  fix: {escape(s.fix)}")
    for m in result.served:
        if m.problem:
            out.print(f"[yellow]served {m.name}[/]: {escape(m.problem)}\n  fix: {escape(m.fix)}")
    if result.probed and result.overall.value != "not running":
        out.print(f"[dim]probed {escape(result.probed)}[/]")
    if result.pending_restore:
        out.print(
            f"[yellow]restore[/]: the restore of {escape(result.pending_restore)} was "
            "interrupted\n  fix: run `mlstack up`: it finishes the restore, or undoes it if "
            "MLflow's data had not been switched yet (the stack's data as it was)"
        )
    if overall == "not running":
        out.print("the stack is not running: start it with `mlstack up`")
    elif overall == "healthy":
        out.print(f"tracking URI: {result.tracking_uri}")


def down_view(result: DownResult, screen: Screen) -> None:
    for note in result.external:
        screen.err.print(f"kept: {escape(note)}")
    if result.nothing_to_do:
        screen.err.print(
            f"nothing to do: project {result.project!r} has no containers, network or volumes"
        )
        return
    screen.err.print(
        f"removed {len(result.containers)} containers and {len(result.networks)} network(s) "
        f"in {result.seconds:.1f}s"
    )
    if result.volumes or result.state_removed:
        screen.err.print(
            f"purged {len(result.volumes)} volume(s) and the project's secrets and files"
        )
    else:
        screen.err.print("data kept: volumes and secrets stay for the next `mlstack up`")


def env_view(result: EnvResult, screen: Screen) -> None:
    if result.hidden:
        # With --show-secrets they are missing only before an `up` has made them.
        how = (
            "run `mlstack up` first"
            if result.show_secrets
            else "add --show-secrets to include them"
        )
        screen.err.print(f"# credentials hidden ({', '.join(result.hidden)}): {how}")


def wrote_view(result: WroteResult, screen: Screen) -> None:
    screen.err.print("wrote " + " and ".join(escape(str(p)) for p in result.paths))


def demo_view(result: DemoResult, screen: Screen) -> None:
    err = screen.err
    rows = [
        (
            run.run_name,
            f"{run.metrics['accuracy']:.3f}",
            f"{run.metrics['f1_macro']:.3f}",
            f"{run.metrics['log_loss']:.3f}",
            "[green]best[/]" if run.run_id == result.best_run_id else "",
        )
        for run in result.runs
    ]
    title = f"{len(result.runs)} runs on {result.dataset} in {result.seconds:.1f}s (test split)"
    err.print(table(err, title, ("run", "accuracy", "f1 macro", "log loss", ""), rows))
    err.print(f"experiment {result.experiment}: {result.experiment_url}", soft_wrap=True)
    for run in result.runs:
        err.print(f"  run {run.run_name}: {run.url}", soft_wrap=True)
    err.print(
        f"registered {result.registered_model} version {result.version}, alias {result.alias}: "
        f"{result.model_url}",
        soft_wrap=True,
    )
    err.print(f"next: [bold]{escape(result.serve_command)}[/]")


def serve_view(result: ServeResult, screen: Screen) -> None:
    err = screen.err
    _warnings(screen, result.warnings)
    model = result.model_uri
    if result.served_uri != result.model_uri:
        model += f" (= {result.served_uri})"
    verb = "replaced" if result.replaced else "serving"
    err.print(
        f"{verb} {escape(model)} as [bold]{result.name}[/] ({result.container}"
        + (f" on node {escape(result.node)}" if result.node else "")
        + f"): ready in {result.ready_seconds:.1f}s, {result.seconds:.1f}s in all"
    )
    if result.payload is None:
        err.print("the model has no input example: put your input in the body below")
    err.print("try it:")
    err.print(escape(result.curl), soft_wrap=True)
    err.print(f"remove it: mlstack serve --stop {result.name}")


def stop_view(result: StopResult, screen: Screen) -> None:
    screen.err.print(f"removed {result.container} (it served {escape(result.model_uri)})")


def backup_view(result: BackupResult, screen: Screen) -> None:
    screen.err.print(
        f"backed up the database and {result.objects} objects ({_size(result.object_bytes)}) "
        f"into {escape(str(result.path))} ({_size(result.size)}) in {result.seconds:.1f}s"
    )


def restore_view(result: RestoreResult, screen: Screen) -> None:
    _warnings(screen, result.warnings)
    migrated = "; migrated the database to the stack's MLflow image" if result.migrated else ""
    screen.err.print(
        f"restored the backup of {result.source_project!r} taken {result.created_at}: the "
        f"database and {result.objects} objects ({_size(result.object_bytes)}) in "
        f"{result.seconds:.1f}s{migrated}"
    )


def gc_view(result: GcResult, screen: Screen) -> None:
    err = screen.err
    verb = "would remove" if result.dry_run else "removed"
    if result.runs:
        rows = [
            (r.id, escape(r.name), r.experiment_id, str(r.objects), _size(r.bytes))
            for r in result.runs
        ]
        title = f"runs {'that would be removed' if result.dry_run else 'removed'}"
        err.print(table(err, title, ("run", "name", "experiment", "objects", "size"), rows))
    what = [f"{len(result.runs)} runs"]
    if result.experiments:
        what.append(f"{len(result.experiments)} experiments ({', '.join(result.experiments)})")
    if result.logged_models:
        what.append(f"{len(result.logged_models)} logged models")
    scope = f" deleted more than {result.older_than} ago" if result.older_than else ""
    objects = f"{result.objects} objects ({_size(result.bytes)})"
    if result.dry_run:
        err.print(f"dry run: gc {verb} {', '.join(what)}{scope} and {objects}; nothing was deleted")
    else:
        err.print(
            f"{verb} {', '.join(what)}{scope} and {objects} in {result.seconds:.1f}s "
            f"(mlflow gc {result.gc_seconds or 0:.1f}s)"
        )


def ui_view(result: UiResult, screen: Screen) -> None:
    if result.opened:
        screen.err.print(f"opened the MLflow UI in your browser: {result.url}")
    else:
        screen.err.print("no browser to open here: open this URL yourself (the line below)")


def export_view(result: ExportResult, screen: Screen) -> None:
    err = screen.err
    _warnings(screen, result.warnings)
    err.print("wrote " + ", ".join(escape(str(p)) for p in result.files) + " (secrets: mode 0600)")
    if result.placeholders:
        err.print(
            f"[yellow]fill in[/] these values in {escape(str(result.files[1]))} before applying it:"
        )
        for p in result.placeholders:
            err.print(f"  {p.secret} {p.key}: {escape(p.what)}")
    err.print(f"install with (also in {escape(str(result.files[2]))}):")


VIEWS: dict[str, Callable[[Any, Screen], None]] = {
    "UpResult": up_view,
    "StatusResult": status_view,
    "DownResult": down_view,
    "EnvResult": env_view,
    "WroteResult": wrote_view,
    "DemoResult": demo_view,
    "ServeResult": serve_view,
    "StopResult": stop_view,
    "BackupResult": backup_view,
    "RestoreResult": restore_view,
    "UiResult": ui_view,
    "GcResult": gc_view,
    "ExportResult": export_view,
    "SwarmUpResult": swarm_up_view,
    "SwarmStatusResult": swarm_status_view,
    "SwarmDownResult": swarm_down_view,
}


def render(result: Result, *, as_json: bool = False) -> int:
    """Show `result` and return the exit code it carries."""
    if as_json:
        sys.stdout.write(json.dumps(jsonable(result.json_value()), indent=2) + "\n")
    else:
        view = VIEWS.get(type(result).__name__)
        if view is not None:
            view(result, screens())
        text = result.output
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    return int(result.exit_code)
