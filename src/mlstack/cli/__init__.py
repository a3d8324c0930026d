"""The command line: parse, call a command, print its result. Only this package imports typer
and rich.

stdout carries what scripts consume (the tracking URI, `env`, --json); stderr carries progress,
tables and errors. `run` is the one edge where errors become exit codes (errors.py).
"""

from __future__ import annotations

import os
import re
import sys
import traceback

# pydantic looks up plugins among every installed package's entry points (20 ms at each start);
# mlstack uses none. Set before anything imports pydantic; the user's own setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer import _click as click  # typer's own click: the exceptions it raises

from mlstack import __version__
from mlstack.cli import data, export, models, setup, stack
from mlstack.cli.options import Options
from mlstack.errors import ExitCode, MlstackError, exit_code_for

app = typer.Typer(
    name="mlstack",
    help="A production-shaped MLflow stack (S3 artifacts + PostgreSQL + tracking server) on your "
    'machine: `mlstack up`, then `eval "$(mlstack env)"`.',
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlstack {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="Config file (default: ./mlstack.yaml, or $MLSTACK_CONFIG).",
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project", "-p", metavar="NAME", help="Stack name (overrides the config's project)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a config key: --set mlflow.port=5051 (repeatable).",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks, with the engine's own errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """mlstack: MLflow + PostgreSQL + S3 (MinIO or SeaweedFS) through Docker, secure by default."""
    ctx.obj = Options(config=config, project=project, sets=set_ or [], debug=debug)


for group in (stack, setup, models, data):
    for name, command in group.COMMANDS.items():
        app.command(name)(command)
app.add_typer(export.app, name="export")


def error_line(message: str, hint: str = "") -> str:
    """One line: what is wrong and how to fix it (a line is what survives `2>&1 | tail -1`)."""
    text = " ".join(message.split())
    if hint:
        text += (
            (" " if text.endswith(("?", ".", "!")) else "; ") + "hint: " + " ".join(hint.split())
        )
    return f"error: {text}"


def _given(args: list[str], flags: list[str]) -> str:
    """The value given to one of `flags` on the command line (`--pull x` or `--pull=x`)."""
    for index, arg in enumerate(args):
        for flag in flags:
            if arg == flag and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1 :]
    return ""


def _choices(param: object) -> list[str]:
    """The values a choice option takes: click's Choice type, or the Enum annotation typer
    keeps on it (typer 0.29's own coercion); none for any other option."""
    choices = getattr(getattr(param, "type", None), "choices", None)
    if choices:
        return [str(getattr(c, "value", c)) for c in choices]
    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return [str(member.value) for member in kind]
    return []


def _usage_line(error: click.ClickException, args: list[str]) -> str:
    """Click's parse errors in our one-line form; a bad choice names the flag, value and choices."""
    param = getattr(error, "param", None)
    flags = list(getattr(param, "opts", None) or [])
    choices = _choices(param)
    if isinstance(error, typer.BadParameter) and flags and choices:
        return error_line(
            f"{flags[0]} {_given(args, flags)!r} is not one of {', '.join(choices)}",
            f"e.g. {flags[0]} {choices[-1]}",
        )
    message = re.sub(r"\s+", " ", error.format_message())
    return error_line(message, "see `mlstack --help` or `mlstack COMMAND --help`")


def _interrupted() -> int:
    print("interrupted: run the same command again to finish; nothing is lost", file=sys.stderr)
    return int(ExitCode.INTERRUPTED)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; never raises (tests call this)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("MLSTACK_DEBUG") == "1"
    try:
        code = int(app(args=args, prog_name="mlstack", standalone_mode=False) or 0)
        # typer returns Ctrl-C as exit code 130; no command returns that code itself
        return _interrupted() if code == ExitCode.INTERRUPTED else code
    except typer.Exit as e:
        return int(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted()
    except click.exceptions.NoArgsIsHelpError as e:  # bare `mlstack`: the help, as docker does
        print(e.format_message())
        return int(ExitCode.OK)
    except click.ClickException as e:  # usage errors found while parsing
        print(_usage_line(e, args), file=sys.stderr)
        return int(ExitCode.USAGE)
    except MlstackError as e:
        if e.details:  # context first (a log tail), so the error stays the last line
            print(e.details, file=sys.stderr)
        if debug:
            traceback.print_exc()
        print(error_line(e.message, e.hint), file=sys.stderr)
        return exit_code_for(e)
    except Exception as e:  # a bug: say so plainly, traceback only when asked
        if debug:
            traceback.print_exc()
        print(
            error_line(
                f"unexpected {type(e).__name__}: {e}",
                "rerun with --debug for the traceback and report it",
            ),
            file=sys.stderr,
        )
        return int(ExitCode.INTERNAL)


def main() -> None:
    try:
        code = run()
        sys.stdout.flush()
    except BrokenPipeError:  # `mlstack ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
