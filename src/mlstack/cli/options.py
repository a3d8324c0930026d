"""What every command shares on the command line: the global options, the option types used by
several commands, and the two calls every command starts with (load the config, connect)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlstack.errors import UsageError

if TYPE_CHECKING:
    from mlstack.config import LoadedConfig, StackConfig
    from mlstack.engine import SwarmEngineAPI

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _positive(value: float) -> float:
    if value <= 0:
        raise UsageError(f"--timeout must be positive, got {value:g}", "e.g. --timeout 300")
    return value


def timeout_option(what: str) -> Any:
    """`--timeout SECONDS`, refused unless positive."""
    return typer.Option(
        "--timeout", metavar="SECONDS", callback=_positive, help=f"Seconds to wait for {what}."
    )


@dataclass
class Options:
    """The global options (before the command name)."""

    config: Path | None = None
    project: str | None = None
    sets: list[str] = field(default_factory=list)
    debug: bool = False


def options(ctx: typer.Context) -> Options:
    """The global options; while completing (no callback ran) read from the parsed parameters."""
    root = ctx.find_root()
    if isinstance(root.obj, Options):
        return root.obj
    params = root.params
    return Options(params.get("config"), params.get("project"), list(params.get("set_") or []))


def loaded(ctx: typer.Context) -> LoadedConfig:
    """The effective config, with where each value came from."""
    # deferred: the config and its loading (yaml, difflib) are not needed for --help
    from mlstack.config import load_config

    opts = options(ctx)
    return load_config(opts.config, sets=opts.sets, project=opts.project)


def config_of(ctx: typer.Context) -> StackConfig:
    return loaded(ctx).config


def engine() -> SwarmEngineAPI:
    """The Docker engine the environment names; EngineUnavailable (exit 3) when none answers.
    (Tests put a FakeEngine here.)"""
    # deferred: the engine's models are not needed to parse or print help
    from mlstack.cli.output import escape, screens
    from mlstack.engine import connect

    connected = connect()
    if connected.endpoint.warning:  # DOCKER_HOST over a context: said, as the docker CLI does
        screens().err.print(f"[yellow]warning:[/] {escape(connected.endpoint.warning)}")
    return connected
