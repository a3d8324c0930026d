"""Models on the command line: demo (train, track, register), serve (deploy, stop)."""

from __future__ import annotations

from typing import Annotated

import typer

from mlstack.cli import completion, options
from mlstack.cli.options import JsonFlag, timeout_option
from mlstack.cli.output import LiveProgress
from mlstack.cli.views import render
from mlstack.errors import UsageError
from mlstack.state import ProjectState

DEFAULT_RUNS = 4  # the demo's default, here so that --help needs no command module


def demo(
    ctx: typer.Context,
    runs: Annotated[
        int,
        typer.Option(
            "--runs", "-n", metavar="N", help="Training runs, 1-12: candidates of the grid."
        ),
    ] = DEFAULT_RUNS,
    experiment: Annotated[
        str,
        typer.Option(
            "--experiment", "-e", metavar="NAME", help="Experiment the runs are logged in."
        ),
    ] = "mlstack-demo",
    json_: JsonFlag = False,
) -> None:
    """Train a scikit-learn model on the running stack, log the runs, register the best as
    mlstack-demo@champion (needs the demo extra: pip install 'mlstack-cli[demo]')."""
    # deferred (here and in every command): a command's module loads only when it runs
    from mlstack.commands.demo import grid_for, require_sklearn, run_demo

    config = options.config_of(ctx)
    require_sklearn()  # before anything else: the one thing to install
    grid_for(runs)
    engine = options.engine()
    with LiveProgress(enabled=not json_) as progress:
        result = run_demo(config, engine, runs=runs, experiment=experiment, report=progress.report)
    raise typer.Exit(render(result, as_json=json_))


def serve(
    ctx: typer.Context,
    model_uri: Annotated[
        str | None,
        typer.Argument(
            metavar="MODEL_URI",
            help="models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME/latest, models:/m-<id> "
            "or runs:/RUN_ID/PATH.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            metavar="NAME",
            help="Name of the deployment (default: the registered model's name).",
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
        typer.Option(
            "--stop",
            metavar="NAME",
            help="Remove the model served as NAME.",
            autocompletion=completion.served,
        ),
    ] = None,
    timeout: Annotated[float, timeout_option("the model server to answer /ping")] = 180.0,
    json_: JsonFlag = False,
) -> None:
    """Serve a registered model in the stack (MLflow scoring protocol: /ping, /invocations), or
    remove one with --stop NAME."""
    if stop is not None and (model_uri is not None or name is not None or port is not None):
        raise UsageError(
            "--stop takes only the name of a served model", "e.g. mlstack serve --stop mlstack-demo"
        )
    if stop is not None:
        raise typer.Exit(_stop(ctx, stop, json_))
    if model_uri is None:
        raise UsageError(
            "missing MODEL_URI: which model to serve",
            "e.g. mlstack serve models:/mlstack-demo@champion; or --stop NAME to remove one",
        )
    raise typer.Exit(_deploy(ctx, model_uri, name, port, timeout, json_))


def _stop(ctx: typer.Context, name: str, json_: bool) -> int:
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.serve import stop as remove
    from mlstack.project.served import check_name

    config = options.config_of(ctx)
    check_name(name)
    engine = options.engine()
    with ProjectState.for_project(config.project).lock("serve --stop"):
        if config.swarm_target:
            # deferred: as above
            from mlstack.commands.swarm_serve import stop_swarm

            stopped = stop_swarm(config, engine, name)
        else:
            stopped = remove(config, engine, name)
    return render(stopped, as_json=json_)


def _deploy(
    ctx: typer.Context, uri: str, name: str | None, port: int | None, timeout: float, json_: bool
) -> int:
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.adapters.registry import parse_model_uri
    from mlstack.commands.serve import serve as deploy
    from mlstack.project.served import check_name

    config = options.config_of(ctx)
    parse_model_uri(uri)  # a malformed URI or name fails before touching the engine
    if name is not None:
        check_name(name)
    engine = options.engine()
    with (
        ProjectState.for_project(config.project).lock("serve"),
        LiveProgress(enabled=not json_) as progress,
    ):
        if config.swarm_target:
            # deferred: as above
            from mlstack.commands.swarm_serve import serve_swarm

            result = serve_swarm(
                config, engine, uri, name=name, port=port, timeout=timeout, report=progress.report
            )
        else:
            result = deploy(
                config, engine, uri, name=name, port=port, timeout=timeout, report=progress.report
            )
    return render(result, as_json=json_)


COMMANDS = {"demo": demo, "serve": serve}
