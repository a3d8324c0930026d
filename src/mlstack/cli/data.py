"""Keeping the data safe on the command line: backup, restore, gc."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlstack.cli import options
from mlstack.cli.options import JsonFlag, timeout_option
from mlstack.cli.output import LiveProgress
from mlstack.cli.views import render


def backup(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Archive to write (default: mlstack-<project>-<UTC time>.tar.gz in the "
            "project's backups dir, see MLSTACK_BACKUP_DIR).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    json_: JsonFlag = False,
) -> None:
    """Archive the database (pg_dump) and the bucket's objects into one .tar.gz (mode 0600)."""
    # deferred (here and in every command): a command's module loads only when it runs
    from mlstack.commands.backup import backup as take_backup
    from mlstack.project.context import open_existing

    config = options.config_of(ctx)
    engine = options.engine()
    project = open_existing(config, "backup", engine)
    with project.state.lock("backup"), LiveProgress(enabled=not json_) as progress:
        result = take_backup(project, engine, output, force=force, report=progress.report)
    raise typer.Exit(render(result, as_json=json_))


def restore(
    ctx: typer.Context,
    archive: Annotated[
        Path, typer.Argument(metavar="FILE", help="An archive written by `mlstack backup`.")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the data of a stack that is not empty.")
    ] = False,
    timeout: Annotated[float, timeout_option("MLflow to answer afterwards")] = 300.0,
    json_: JsonFlag = False,
) -> None:
    """Replace the running stack's database and bucket with a backup's (refuses a stack that
    holds runs or objects unless --force)."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.restore import restore as restore_backup
    from mlstack.project.context import open_existing

    config = options.config_of(ctx)
    engine = options.engine()
    project = open_existing(config, "restore", engine)
    with project.state.lock("restore"), LiveProgress(enabled=not json_) as progress:
        result = restore_backup(
            project, engine, archive, force=force, timeout=timeout, report=progress.report
        )
    raise typer.Exit(render(result, as_json=json_))


def gc(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Only what was deleted longer ago than this (MLflow's form: 30d, 1d2h, 90m).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List what would go, with its objects; delete nothing."),
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Remove for good the runs deleted in MLflow and their artifacts (MLflow's `mlflow gc`)."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.gc import gc as collect
    from mlstack.commands.gc import older_than as parse_older_than
    from mlstack.project.context import open_existing

    older = parse_older_than(older_than) if older_than is not None else None
    config = options.config_of(ctx)
    engine = options.engine()
    project = open_existing(config, "gc", engine)
    with project.state.lock("gc"), LiveProgress(enabled=not json_) as progress:
        result = collect(project, engine, older, dry_run=dry_run, report=progress.report)
    raise typer.Exit(render(result, as_json=json_))


COMMANDS = {"backup": backup, "restore": restore, "gc": gc}
