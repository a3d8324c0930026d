"""The command line: parse, call the core, print. Only it and cli_output use typer and rich.

stdout carries what scripts consume (the tracking URI, `env`, --json); stderr carries progress,
tables and errors. Errors map to exit codes in one place (errors.py).
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from mlstack import __version__
from mlstack.errors import ExitCode, MlstackError, UsageError, exit_code_for

app = typer.Typer(
    name="mlstack",
    help="A production-shaped MLflow stack (S3 artifacts + PostgreSQL + tracking server) on your "
    'machine: `mlstack up`, then `eval "$(mlstack env)"`.',
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class Options:
    config: Path | None = None
    project: str | None = None
    sets: list[str] = field(default_factory=list)
    debug: bool = False


def _options(ctx: typer.Context) -> Options:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Options) else Options()


def _load(ctx: typer.Context) -> Any:
    from mlstack.config import load_config

    opts = _options(ctx)
    return load_config(opts.config, sets=opts.sets, project=opts.project)


def _engine() -> Any:
    from mlstack.engine import Engine

    return Engine.connect()


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
            "--config", "-c", help="Config file (default: ./mlstack.yaml, or $MLSTACK_CONFIG)."
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Stack name (overrides the config's project)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set mlflow.port=5051 (repeatable)."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for unexpected errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """mlstack: MLflow + PostgreSQL + S3 (MinIO or SeaweedFS) through Docker, secure by default."""
    ctx.obj = Options(config=config, project=project, sets=set_ or [], debug=debug)


@app.command()
def up(
    ctx: typer.Context,
    pull: Annotated[str, typer.Option(help="Pull images: always | missing | never.")] = "missing",
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every service to be healthy.")
    ] = 300.0,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Create or update the stack, provision bucket and database, and wait until it answers."""
    from mlstack import cli_output as out
    from mlstack.stack import Stack
    from mlstack.stack import up as stack_up
    from mlstack.state import ProjectState

    if pull not in ("always", "missing", "never"):
        raise UsageError(
            f"--pull {pull!r} is not one of always, missing, never", "e.g. --pull never"
        )
    if timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {timeout}", "e.g. --timeout 300")
    config = _load(ctx).config
    engine = _engine()
    # Secrets are created (or gain new keys) under the lock: two `up` never write them at once,
    # and they are stored only once the preflight passed: a refused `up` leaves no state.
    with ProjectState.for_project(config.project).lock("up"):
        stack = Stack.open(config, create_secrets=True, save=False)
        assert stack is not None
        with out.UpProgress(enabled=not json_) as progress:
            result = stack_up(stack, engine, pull=pull, timeout=timeout, report=progress.report)  # type: ignore[arg-type]
    out.print_up(result, as_json=json_)


@app.command()
def status(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Show what runs, what answers, what is wrong and what to do. Exit 0 healthy, 10 degraded, 11 not running."""
    from mlstack import cli_output as out
    from mlstack.stack import status as stack_status

    result = stack_status(_load(ctx).config, _engine())
    out.print_status(result, as_json=json_)
    raise typer.Exit(result.overall.exit_code)


@app.command()
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
    from mlstack import cli_output as out
    from mlstack.stack import down as stack_down
    from mlstack.state import ProjectState

    config = _load(ctx).config
    if purge and not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "--purge deletes every run and artifact of project "
                f"{config.project!r} and needs confirmation",
                "add --yes to confirm when there is no terminal to ask on",
            )
        if not typer.confirm(
            f"Delete all data of project {config.project!r} (runs, artifacts, secrets)?",
            default=False,
            err=True,
        ):
            raise typer.Exit(int(ExitCode.USAGE))
    engine = _engine()
    with ProjectState.for_project(config.project).lock("down"):
        result = stack_down(config, engine, purge=purge)
    out.print_down(result)


@app.command()
def logs(
    ctx: typer.Context,
    service: Annotated[
        str | None,
        typer.Argument(help="postgres, storage (or minio/seaweedfs) or mlflow; all when omitted."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option("--tail", "-n", min=0, help="Only the last N lines of each service."),
    ] = None,
) -> None:
    """Print a service's log (secrets masked)."""
    from mlstack import cli_output as out
    from mlstack.stack import logs as stack_logs
    from mlstack.stack import resolve_service

    config = _load(ctx).config
    if service is not None:
        resolve_service(config, service)  # a typo fails before touching the engine
    lines = stack_logs(config, _engine(), service, follow=follow, tail=tail)
    try:
        out.print_logs(lines, prefix=service is None)
    except KeyboardInterrupt:
        if not follow:
            raise
        # Ctrl-C is how one stops following: not an interruption of unfinished work


@app.command()
def env(
    ctx: typer.Context,
    format_: Annotated[str, typer.Option("--format", help="sh | dotenv | json")] = "sh",
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
    from mlstack import secrets as secrets_store
    from mlstack.client_env import client_env
    from mlstack.state import ProjectState

    if format_ not in ("sh", "dotenv", "json"):
        raise UsageError(
            f"--format {format_!r} is not one of sh, dotenv, json", "e.g. --format dotenv"
        )
    config = _load(ctx).config
    needs_secrets = s3 or config.auth
    creds = secrets_store.load(ProjectState.for_project(config.project)) if needs_secrets else None
    result = client_env(config, creds, s3=s3, show_secrets=show_secrets)
    sys.stdout.write(result.format(format_))
    if result.hidden:
        # With --show-secrets they are missing only before an `up` has made them.
        how = "run `mlstack up` first" if show_secrets else "add --show-secrets to include them"
        print(f"# credentials hidden ({', '.join(result.hidden)}): {how}", file=sys.stderr)


@app.command()
def demo(
    ctx: typer.Context,
    runs: Annotated[
        int, typer.Option("--runs", "-n", help="Training runs, 1-12: candidates of the grid.")
    ] = 4,
    experiment: Annotated[
        str, typer.Option("--experiment", "-e", help="Experiment the runs are logged in.")
    ] = "mlstack-demo",
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Train a scikit-learn model on the running stack, log the runs, register the best as
    mlstack-demo@champion (needs the demo extra: pip install 'mlstack-cli[demo]')."""
    from mlstack import cli_output as out
    from mlstack.demo import grid_for, require_sklearn, run_demo

    config = _load(ctx).config
    require_sklearn()  # before anything else: the one thing to install
    grid_for(runs)
    engine = _engine()
    with out.DemoProgress(enabled=not json_) as progress:
        result = run_demo(config, engine, runs=runs, experiment=experiment, report=progress.report)
    out.print_demo(result, as_json=json_)


@app.command()
def serve(
    ctx: typer.Context,
    model_uri: Annotated[
        str | None,
        typer.Argument(
            help="models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME/latest, models:/m-<id> "
            "or runs:/RUN_ID/PATH.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Name of the deployment (default: the registered model's name)."
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=1, max=65535, help="Host port (default: the first free one from 5060)."
        ),
    ] = None,
    stop: Annotated[
        str | None,
        typer.Option("--stop", metavar="NAME", help="Remove the model served as NAME."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the model server to answer /ping.")
    ] = 180.0,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Serve a registered model in the stack (MLflow scoring protocol: /ping, /invocations), or
    remove one with --stop NAME."""
    from mlstack import cli_output as out
    from mlstack.serve import check_name, parse_model_uri
    from mlstack.serve import serve as serve_model
    from mlstack.serve import stop as stop_model
    from mlstack.state import ProjectState

    if stop is not None and (model_uri is not None or name is not None or port is not None):
        raise UsageError(
            "--stop takes only the name of a served model",
            "e.g. mlstack serve --stop mlstack-demo",
        )
    if stop is None and model_uri is None:
        raise UsageError(
            "missing MODEL_URI: which model to serve",
            "e.g. mlstack serve models:/mlstack-demo@champion; or --stop NAME to remove one",
        )
    if timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {timeout}", "e.g. --timeout 300")
    config = _load(ctx).config
    if stop is not None:
        check_name(stop)
        engine = _engine()
        with ProjectState.for_project(config.project).lock("serve --stop"):
            stopped = stop_model(config, engine, stop)
        out.print_serve_stop(stopped, as_json=json_)
        return
    assert model_uri is not None
    parse_model_uri(model_uri)  # a malformed URI or name fails before touching the engine
    if name is not None:
        check_name(name)
    engine = _engine()
    with (
        ProjectState.for_project(config.project).lock("serve"),
        out.UpProgress(enabled=not json_) as progress,
    ):
        result = serve_model(
            config, engine, model_uri, name=name, port=port, timeout=timeout, report=progress.report
        )
    out.print_serve(result, as_json=json_)


@app.command()
def backup(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Archive to write (default: ./mlstack-<project>-<UTC time>.tar.gz).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Archive the database (pg_dump) and the bucket's objects into one .tar.gz (mode 0600)."""
    from mlstack import cli_output as out
    from mlstack.backup import create_backup
    from mlstack.stack import open_existing

    stack = open_existing(_load(ctx).config, "backup")
    engine = _engine()
    with stack.state.lock("backup"), out.UpProgress(enabled=not json_) as progress:
        result = create_backup(stack, engine, output, force=force, report=progress.report)
    out.print_backup(result, as_json=json_)


@app.command()
def restore(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="An archive written by `mlstack backup`.")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the data of a stack that is not empty."),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for MLflow to answer afterwards.")
    ] = 300.0,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Replace the running stack's database and bucket with a backup's (refuses a stack that
    holds runs or objects unless --force)."""
    from mlstack import cli_output as out
    from mlstack.backup import restore as restore_backup
    from mlstack.stack import open_existing

    if timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {timeout}", "e.g. --timeout 300")
    stack = open_existing(_load(ctx).config, "restore")
    engine = _engine()
    with stack.state.lock("restore"), out.UpProgress(enabled=not json_) as progress:
        result = restore_backup(
            stack, engine, archive, force=force, timeout=timeout, report=progress.report
        )
    out.print_restore(result, as_json=json_)


@app.command("config")
def show_config(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
) -> None:
    """Print the effective config (defaults < file < MLSTACK_* < flags); secrets masked."""
    from mlstack import cli_output as out

    out.print_config(_load(ctx), as_json=json_)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write it.")] = Path("mlstack.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented mlstack.yaml with every key and its default."""
    from mlstack.config import StackConfig
    from mlstack.render import render_init

    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "add --force to overwrite it")
    path.write_text(render_init(StackConfig()), encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


@app.command()
def render(
    ctx: typer.Context,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for docker-compose.yml and .env.")
    ] = Path("."),
) -> None:
    """Write docker-compose.yml and .env (mode 0600) without starting anything."""
    from mlstack.render import write_rendered
    from mlstack.stack import Stack

    stack = Stack.open(_load(ctx).config, create_secrets=True)
    assert stack is not None
    compose, env_file = write_rendered(output, stack.config, stack.secrets)
    print(f"wrote {compose} and {env_file}", file=sys.stderr)


def error_line(message: str, hint: str = "") -> str:
    """One line: what is wrong and how to fix it (a line is what survives `2>&1 | tail -1`)."""
    text = " ".join(message.split())
    if hint:
        text += (
            (" " if text.endswith(("?", ".", "!")) else "; ") + "hint: " + " ".join(hint.split())
        )
    return f"error: {text}"


def _print_error(error: MlstackError) -> None:
    if error.details:  # context first (a log tail), so the error stays the last line
        print(error.details, file=sys.stderr)
    print(error_line(error.message, error.hint), file=sys.stderr)


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
    except typer.TyperException as e:  # usage errors found while parsing
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        print(
            error_line(message, "see `mlstack --help` or `mlstack COMMAND --help`"), file=sys.stderr
        )
        return int(ExitCode.USAGE)
    except MlstackError as e:
        _print_error(e)
        if debug:
            traceback.print_exc()
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
    sys.exit(run())
