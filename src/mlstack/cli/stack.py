"""The stack's lifecycle on the command line: up, status, down, logs, ui."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mlstack.choices import PullPolicy
from mlstack.cli import completion, options
from mlstack.cli.options import JsonFlag, timeout_option
from mlstack.cli.output import LiveProgress, print_logs
from mlstack.cli.views import render
from mlstack.errors import ExitCode, UsageError


def up(
    ctx: typer.Context,
    pull: Annotated[PullPolicy, typer.Option(help="When to pull images.")] = PullPolicy.MISSING,
    timeout: Annotated[float, timeout_option("every service to be healthy")] = 300.0,
    json_: JsonFlag = False,
) -> None:
    """Create or update the stack, provision bucket and database, and wait until it answers."""
    # deferred (here and in every command): a command's module loads only when it runs
    from mlstack.commands.up import up as bring_up
    from mlstack.project.context import Project

    config = options.config_of(ctx)
    engine = options.engine()
    # Secrets are created (or gain new keys) under the lock: two `up` never write them at once,
    # and they are stored only once the preflight passed: a refused `up` leaves no state.
    project = Project.open(config, create_secrets=True, save=False, engine=engine)
    assert project is not None  # create_secrets: never None
    with project.state.lock("up"), LiveProgress(enabled=not json_) as progress:
        if config.swarm_target:
            # deferred: as above
            from mlstack.commands.swarm_up import up_swarm

            swarm = up_swarm(project, engine, timeout=timeout, report=progress.report)
            raise typer.Exit(render(swarm, as_json=json_))
        result = bring_up(project, engine, pull=pull, timeout=timeout, report=progress.report)
    raise typer.Exit(render(result, as_json=json_))


def status(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """Show what runs, what answers, what is wrong and what to do. Exit 0 healthy, 10 degraded,
    11 not running."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.status import status as stack_status

    config = options.config_of(ctx)
    if config.swarm_target:
        # deferred: as above
        from mlstack.commands.swarm_status import status_swarm

        raise typer.Exit(render(status_swarm(config, options.engine()), as_json=json_))
    result = stack_status(config, options.engine())
    raise typer.Exit(render(result, as_json=json_))


def down(
    ctx: typer.Context,
    purge: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="Also delete volumes (all runs and artifacts), secrets and rendered files.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --purge.")] = False,
) -> None:
    """Stop and remove the containers and network; data and secrets are kept unless --purge."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.down import down as take_down
    from mlstack.state import ProjectState

    config = options.config_of(ctx)
    if purge and not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"--purge deletes every run and artifact of project {config.project!r} and "
                "needs confirmation",
                "add --yes to confirm when there is no terminal to ask on",
            )
        question = f"Delete all data of project {config.project!r} (runs, artifacts, secrets)?"
        if not typer.confirm(question, default=False, err=True):
            raise typer.Exit(int(ExitCode.USAGE))
    engine = options.engine()
    with ProjectState.for_project(config.project).lock("down"):
        if config.swarm_target:
            # deferred: as above
            from mlstack.commands.swarm_down import down_swarm

            raise typer.Exit(render(down_swarm(config, engine, purge=purge)))
        result = take_down(config, engine, purge=purge)
    raise typer.Exit(render(result))


def logs(
    ctx: typer.Context,
    service: Annotated[
        str | None,
        typer.Argument(
            help="postgres, storage (or minio/seaweedfs), mlflow or serve-NAME; all when omitted.",
            autocompletion=completion.services,
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option(
            "--tail", "-n", min=0, metavar="N", help="Only the last N lines of each service."
        ),
    ] = None,
) -> None:
    """Print a service's log (secrets masked)."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.logs import logs as read_logs
    from mlstack.project.logtext import resolve_service

    config = options.config_of(ctx)
    if service is not None:
        resolve_service(config, service)  # a typo fails before touching the engine
    if config.swarm_target:
        # deferred: as above
        from mlstack.commands.swarm_logs import logs_swarm

        found = logs_swarm(config, options.engine(), service, follow=follow, tail=tail)
        lines, prefix = found.lines, found.prefixed
        width = max(map(len, found.sources), default=8)
    else:
        lines = read_logs(config, options.engine(), service, follow=follow, tail=tail)
        prefix, width = service is None, 8
    try:
        print_logs(lines, prefix=prefix, width=width)
    except KeyboardInterrupt:
        if not follow:
            raise
        # Ctrl-C is how one stops following: not an interruption of unfinished work


def ui(ctx: typer.Context) -> None:
    """Open the MLflow UI in the browser (prints its URL; with no browser, only that)."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.ui import ui as open_ui

    raise typer.Exit(render(open_ui(options.config_of(ctx), options.engine())))


COMMANDS = {"up": up, "status": status, "down": down, "logs": logs, "ui": ui}
