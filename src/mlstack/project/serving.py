"""What `serve` hands back and how a model server looks, on either target: its results, the
curl a user pastes, its healthcheck, its labels and the check of its image against the model.

`commands/serve.py` (a container) and `commands/swarm_serve.py` (a swarm service) both use
these; a command never imports another command.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlstack import labels
from mlstack.adapters import requirements
from mlstack.adapters.registry import ResolvedModel
from mlstack.engine import EngineAPI, HealthcheckSpec
from mlstack.project.context import Project
from mlstack.project.reporting import Result
from mlstack.project.served import CONTAINER_PORT


@dataclass(frozen=True)
class ServeResult(Result):
    project: str
    name: str
    container: str  # the container, or on a swarm the service
    model_uri: str
    served_uri: str
    registered_model: str | None
    version: str | None
    run_id: str | None
    image: str
    url: str
    invocations_url: str
    port: int
    ready_seconds: float
    seconds: float
    curl: str
    payload: dict[str, Any] | None
    replaced: bool
    warnings: list[str] = field(default_factory=list)
    start: str | None = None  # "one process" (the launcher), "stock: <why>", as up's mlflow_start
    node: str | None = None  # on a swarm: the node its task runs on

    @property
    def output(self) -> str:
        return self.url

    @classmethod
    def of(
        cls,
        project: Project,
        model_uri: str,
        model: ResolvedModel,
        served: tuple[str, str, int],  # (name, container or service, port)
        url: str,
        timings: tuple[float, float],  # (ready, in all)
        *,
        replaced: bool,
        warnings: list[str],
        start: str | None = None,
        node: str | None = None,
    ) -> ServeResult:
        """The result of either target's `serve`: what it derives from the model and the URL
        (invocations URL, curl) is derived here once."""
        name, container, port = served
        return cls(
            project=project.name,
            name=name,
            container=container,
            model_uri=model_uri,
            served_uri=model.served_uri,
            registered_model=model.registered_model,
            version=model.version,
            run_id=model.run_id,
            image=project.config.mlflow.image,
            url=url,
            invocations_url=f"{url}/invocations",
            port=port,
            ready_seconds=timings[0],
            seconds=timings[1],
            curl=curl_command(url, model.payload),
            payload=model.payload,
            replaced=replaced,
            warnings=warnings,
            start=start,
            node=node,
        )


@dataclass(frozen=True)
class StopResult(Result):
    project: str
    name: str
    container: str
    model_uri: str


def curl_command(url: str, payload: Mapping[str, Any] | None) -> str:
    """A ready-to-paste request to /invocations (a placeholder body without an input example)."""
    body = json.dumps(payload, separators=(",", ":")) if payload is not None else "<JSON input>"
    return (
        f"curl -s -X POST {url}/invocations -H 'Content-Type: application/json' "
        f"-d {shlex.quote(body)}"
    )


_PING = f"http://127.0.0.1:{CONTAINER_PORT}/ping"
HEALTHCHECK = HealthcheckSpec(
    test=("CMD", "python", "-c", f"import urllib.request as u; u.urlopen({_PING!r}, timeout=4)"),
    interval=5.0,
    timeout=5.0,
    retries=12,  # loading a model takes a while; `serve` itself waits on /ping
)


def model_labels(
    project: Project, service: str, name: str, port: int, model: ResolvedModel
) -> dict[str, str]:
    """The project's labels and what `status`, `--stop` and a redeploy read back: the name,
    the port, the model as asked for and as pinned."""
    found = {
        **project.spec.labels,
        labels.SERVICE: service,
        labels.SERVE_NAME: name,
        labels.SERVE_PORT: str(port),
        labels.MODEL_URI: model.uri,
        labels.MODEL_SERVED: model.served_uri,
    }
    if model.registered_model:
        found[labels.MODEL_NAME] = model.registered_model
    if model.version:
        found[labels.MODEL_VERSION] = model.version
    return found


def image_check(
    project: Project, engine: EngineAPI, model: ResolvedModel, container: str
) -> list[str]:
    """Warnings where the model's recorded environment differs from the serving image's, asked
    in `container`, a running container of that image (MLflow's, or the relay on a swarm)."""
    if not model.requirements and not model.mlflow_version:
        return []
    image = project.config.mlflow.image
    info = engine.inspect(container)
    if info is None or not info.running or info.image != image:
        return ["could not compare the model's requirements with the image (run `mlstack up`)"]
    names = sorted({*requirements.requirement_names(model.requirements), "mlflow"})
    script = requirements.versions_script(names)
    code, output = engine.exec(container, ["python", "-c", script])
    try:
        found = json.loads(output.strip().splitlines()[-1]) if code == 0 else None
    except (ValueError, IndexError):
        found = None
    if not isinstance(found, dict):
        return [f"could not list the packages of {image}"]
    return requirements.environment_warnings(
        model.requirements,
        model.mlflow_version,
        model.python_version,
        found.get("packages") or {},
        found.get("python"),
        image,
    )
