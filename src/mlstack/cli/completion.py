"""Shell completion of values that depend on the stack: service names for `logs`, served model
names for `serve --stop`. Completion must never fail or hang a shell: anything that goes wrong
completes what is known without the engine."""

from __future__ import annotations

import typer

from mlstack.errors import MlstackError

STATIC_SERVICES = ("postgres", "storage", "mlflow", "minio", "seaweedfs", "s3")


def _served_names(ctx: typer.Context) -> list[str]:
    # deferred: completion loads only what it completes
    from mlstack.cli import options
    from mlstack.engine import connect
    from mlstack.project.served import served_containers, served_name

    try:
        config = options.config_of(ctx)
        engine = connect(timeout=3)
        try:
            return [served_name(c) for c in served_containers(engine, config.project)]
        finally:
            engine.close()
    except MlstackError:
        return []


def services(ctx: typer.Context, incomplete: str) -> list[str]:
    """`mlstack logs <TAB>`: the stack's services and its served models (serve-NAME)."""
    names = [*STATIC_SERVICES, *(f"serve-{n}" for n in _served_names(ctx))]
    return [n for n in names if n.startswith(incomplete)]


def served(ctx: typer.Context, incomplete: str) -> list[str]:
    """`mlstack serve --stop <TAB>`: the names models are served as."""
    return [n for n in _served_names(ctx) if n.startswith(incomplete)]
