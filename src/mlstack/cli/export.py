"""`mlstack export ...`: the stack in other tools' terms (for now, MLflow's Helm chart)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlstack.cli import options
from mlstack.cli.options import JsonFlag
from mlstack.cli.views import render

app = typer.Typer(
    name="export",
    help="Export the stack for another platform: `mlstack export helm -o k8s/`.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("helm")
def helm(
    ctx: typer.Context,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Directory for values.yaml, secrets.yaml (mode 0600) and INSTALL.md.",
        ),
    ] = Path("mlstack-helm"),
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", metavar="NS", help="Kubernetes namespace.")
    ] = "mlflow",
    release: Annotated[
        str, typer.Option("--release", metavar="NAME", help="Helm release name.")
    ] = "mlflow",
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, help="MLflow server pods (replicaCount).")
    ] = 1,
    chart_version: Annotated[
        str | None,
        typer.Option(
            "--chart-version",
            metavar="VERSION",
            help="Chart version for the helm commands (default: the one the keys were checked "
            "against).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a directory that is not empty.")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Values for MLflow's official Helm chart (managed PostgreSQL and S3 from postgres.external
    and storage.external), the Secrets they name, and the install commands."""
    # deferred: a command's module (and what it imports) loads only when it runs
    from mlstack.commands.export import export_helm
    from mlstack.compose.helm import CHART_VERSION, HelmTarget

    target = HelmTarget(release, namespace, replicas, chart_version or CHART_VERSION)
    result = export_helm(options.config_of(ctx), output, target, force=force)
    raise typer.Exit(render(result, as_json=json_))
