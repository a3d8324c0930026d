"""The config and what derives from it, on the command line: env, config, init, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlstack.choices import EnvFormat
from mlstack.cli import options
from mlstack.cli.views import render


def env(
    ctx: typer.Context,
    format_: Annotated[
        EnvFormat, typer.Option("--format", help="Shell, dotenv or JSON.")
    ] = EnvFormat.SH,
    s3: Annotated[
        bool,
        typer.Option(
            "--s3",
            help="Also the S3 endpoint (and keys, with --show-secrets) for direct bucket access.",
        ),
    ] = False,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Include credentials.")
    ] = False,
) -> None:
    """Print the environment for MLflow clients: eval "$(mlstack env)"."""
    # deferred (here and in every command): a command's module loads only when it runs
    from mlstack.commands.env import env as client_env

    result = client_env(options.config_of(ctx), style=format_, s3=s3, show_secrets=show_secrets)
    raise typer.Exit(render(result))


def show_config(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
) -> None:
    """Print the effective config (defaults < file < MLSTACK_* < flags); secrets masked."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.settings import show_config as effective

    raise typer.Exit(render(effective(options.loaded(ctx)), as_json=json_))


def init(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Where to write it.")] = Path(
        "mlstack.yaml"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented mlstack.yaml with every key and its default."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.settings import init as write_init

    raise typer.Exit(render(write_init(path, force=force)))


def render_files(
    ctx: typer.Context,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="DIR", help="Directory for docker-compose.yml and .env."
        ),
    ] = Path("."),
) -> None:
    """Write docker-compose.yml and .env (mode 0600) without starting anything."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.settings import render as write_files

    raise typer.Exit(render(write_files(options.config_of(ctx), output)))


COMMANDS = {"env": env, "config": show_config, "init": init, "render": render_files}
