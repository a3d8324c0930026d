"""`mlstack serve`: a registered model as a container in the stack, speaking MLflow's scoring
protocol (`/ping`, `/invocations`); `serve --stop NAME` removes one.

The container runs the stack's own MLflow image with `mlflow models serve --env-manager local`
and fetches the model through the tracking server by its in-network name, like any client (no
S3 keys). No per-model image is built: the MLflow image already carries what scikit-learn models
need (the full mlflow package depends on scikit-learn); the model's recorded requirements are
compared with the image and differences are reported as warnings.

Everything is checked on the host before anything is created: the stack runs, the model URI
names a model that exists (aliases and versions are resolved and pinned), the name and the port
are usable. A container that does not answer /ping is removed again, with its log in the error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlstack import labels
from mlstack.adapters.mlflow_env import PROXY_ARTIFACTS, tracking_login
from mlstack.adapters.mlflow_http import TrackingApi
from mlstack.adapters.registry import (
    ModelRef,
    ResolvedModel,
    default_name,
    parse_model_uri,
    resolve_model,
)
from mlstack.compose.launcher import how_it_started, launch_serving
from mlstack.config import StackConfig
from mlstack.engine import ContainerInfo, EngineAPI, PortSpec, ServiceSpec
from mlstack.errors import (
    Conflict,
    ImageUnavailable,
    MlstackError,
    ServiceUnhealthy,
    UsageError,
)
from mlstack.health import HttpProbe, wait_ready
from mlstack.project.context import Project, require_running
from mlstack.project.ports import pick_port
from mlstack.project.reporting import Event, Reporter, quiet
from mlstack.project.served import (
    CONTAINER_PORT,
    LOOPBACK_ONLY,
    SERVICE,
    check_name,
    container_name,
    model_urls,
    served_containers,
    served_name,
)
from mlstack.project.serving import (
    HEALTHCHECK,
    ServeResult,
    StopResult,
    image_check,
    model_labels,
)
from mlstack.project.watch import exited_check, with_log


def serve_spec(
    project: Project, name: str, port: int, model: ResolvedModel, image: str | None = None
) -> ServiceSpec:
    """The container that serves `model`, as a service spec like the stack's own."""
    config = project.config
    serve = ["models", "serve", "-m", model.served_uri, "-h", "0.0.0.0", "-p", str(CONTAINER_PORT)]
    return ServiceSpec(
        name=SERVICE,
        container_name=container_name(config.project, name),
        image=image or config.mlflow.image,
        # `mlflow models serve` through the launcher: the model server imports MLflow once
        command=tuple(launch_serving([*serve, "--env-manager", "local"])),
        environment={
            # The tracking server by its in-network name (its --allowed-hosts accepts it); the
            # model comes through its artifact proxy, so the container needs no S3 keys.
            "MLFLOW_TRACKING_URI": project.in_network_url,
            **PROXY_ARTIFACTS,
            # With tls, the CA MLflow's client verifies the server by (the launcher writes it).
            **project.in_network_trust(),
            # With auth on, the admin login (in the environment, as in the MLflow container).
            **(tracking_login(project.secrets) if config.auth else {}),
        },
        # A model server has no login: published on this machine's loopback when the stack
        # is exposed (only MLflow's port goes beyond it).
        ports=(PortSpec(config.private_bind, port, CONTAINER_PORT),),
        volumes=(),
        labels=model_labels(project, SERVICE, name, port, model),
        restart="unless-stopped",
        # `mlflow models serve` runs as PID 1, which ignores SIGTERM without a handler; SIGINT
        # reaches Python's own handler, and the server stops at once instead of being killed.
        stop_signal="SIGINT",
        stop_grace_period=10.0,
        healthcheck=HEALTHCHECK,
        depends_on=(),
    ).with_hash()


def _replaceable(config: StackConfig, engine: EngineAPI, container: str) -> ContainerInfo | None:
    """The deployment of that name this one replaces; refuse a container that is not one."""
    current = engine.inspect(container)
    if current is not None and (current.project != config.project or current.service != SERVICE):
        raise Conflict(
            f"a container named {container} exists and is not a model served by project "
            f"{config.project!r}",
            "remove or rename that container, or choose another --name",
        )
    return current


def _held_port(current: ContainerInfo | None) -> int | None:
    if current is None:
        return None
    ports = current.host_ports()
    if ports:
        return ports[0]
    label = current.labels.get(labels.SERVE_PORT, "")
    return int(label) if label.isdigit() else None


def _resolve(
    project: Project, engine: EngineAPI, ref: ModelRef, report: Reporter
) -> tuple[ResolvedModel, list[str]]:
    report(Event("step", message=f"resolving {ref.uri}"))
    api = TrackingApi(project.tracking_uri, project.mlflow_headers(), project.ca_file)
    model = resolve_model(api, ref)
    pinned = model.served_uri if model.served_uri != ref.uri else ""
    report(
        Event("step", message=f"model {pinned or ref.uri}" + (f" ({ref.uri})" if pinned else ""))
    )
    warnings = image_check(project, engine, model, project.container("mlflow"))
    for warning in warnings:
        report(Event("warning", message=warning))
    return model, warnings


def _start(
    project: Project,
    engine: EngineAPI,
    spec: ServiceSpec,
    url: str,
    timeout: float,
    report: Reporter,
) -> float:
    """Create and start the model server; seconds until /ping answered."""
    service = f"{SERVICE}-{spec.labels[labels.SERVE_NAME]}"
    engine.create(spec, project.spec.network, [service, spec.container_name])
    engine.start(spec.container_name)
    ready = wait_ready(
        [HttpProbe(service, f"{url}/ping")],
        timeout=timeout,
        interval=0.1,
        exited=exited_check(engine, {service: spec.container_name}, {}),
        on_ready=lambda s, seconds: report(Event("ready", service=s, seconds=seconds)),
    )
    return ready[service]


@dataclass(frozen=True)
class _Target:
    """Where a deployment goes, checked before anything is created."""

    project: Project
    container: str
    current: ContainerInfo | None  # the deployment of that name it replaces
    port: int


def _check(config: StackConfig, engine: EngineAPI, name: str, port: int | None) -> _Target:
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {port}", "e.g. --port 5060")
    project = require_running(config, engine, "serve")
    container = container_name(config.project, name)
    current = _replaceable(config, engine, container)
    host_port = pick_port(config, port, _held_port(current))
    if engine.image_id(config.mlflow.image) is None:
        raise ImageUnavailable(
            f"the MLflow image {config.mlflow.image} is not on this machine",
            "run `mlstack up` (it pulls it), or set mlflow.image to an image you have",
        )
    return _Target(project, container, current, host_port)


def serve(
    config: StackConfig,
    engine: EngineAPI,
    model_uri: str,
    *,
    name: str | None = None,
    port: int | None = None,
    timeout: float = 180.0,
    report: Reporter = quiet,
) -> ServeResult:
    """Deploy `model_uri` and return once its /ping answers; nothing stays behind on failure."""
    started = time.monotonic()
    ref = parse_model_uri(model_uri)
    name = check_name(name if name is not None else default_name(ref))
    target = _check(config, engine, name, port)
    project, container, image = target.project, target.container, config.mlflow.image
    model, warnings = _resolve(project, engine, ref, report)

    # Everything is checked: from here on a failure removes what it created.
    if target.current is not None:
        report(Event("step", message=f"replacing {container}"))
        engine.remove(target.current.id)
    report(Event("step", message=f"starting {container} on port {target.port}"))
    spec = serve_spec(project, name, target.port, model, image)
    url, probed = model_urls(project, container, target.port)
    if config.private_bind != config.bind:
        warnings = [*warnings, LOOPBACK_ONLY]
    try:
        ready = _start(project, engine, spec, probed, timeout, report)
    except MlstackError as e:
        with_log(e, engine, container, scrub=project.scrub, service=f"{SERVICE}-{name}")
        engine.remove(container)
        raise ServiceUnhealthy(
            f"{container} did not start serving {model.served_uri}: {e.message}",
            f"it was removed again; the log says why: the model must load in {image} "
            "(see the README, Train, track, deploy), or allow more time with --timeout",
            details="\n".join([*filter(None, [e.details]), *(f"warning: {w}" for w in warnings)]),
            service=f"{SERVICE}-{name}",
        ) from e
    except BaseException:
        engine.remove(container)
        raise
    return _result(
        project, engine, target, ref, model, name, url, ready, time.monotonic() - started, warnings
    )


def _result(
    project: Project,
    engine: EngineAPI,
    target: _Target,
    ref: ModelRef,
    model: ResolvedModel,
    name: str,
    url: str,
    ready: float,
    seconds: float,
    warnings: list[str],
) -> ServeResult:
    start = how_it_started(engine.log_tail(target.container, 100))
    if start and start.startswith("stock"):
        warnings.append(f"the model server started the stock way ({start[len('stock: ') :]})")
    return ServeResult.of(
        project,
        ref.uri,
        model,
        (name, target.container, target.port),
        url,
        (ready, seconds),
        replaced=target.current is not None,
        warnings=warnings,
        start=start,
    )


def stop(config: StackConfig, engine: EngineAPI, name: str) -> StopResult:
    """Remove the container serving `name`."""
    check_name(name)
    served = {served_name(c): c for c in served_containers(engine, config.project)}
    info = served.get(name)
    if info is None:
        known = ", ".join(sorted(served)) if served else "nothing is served"
        raise UsageError(
            f"no model served as {name!r} in project {config.project!r} ({known})",
            "see `mlstack status` for what is served",
        )
    engine.stop(info.id, 10.0)
    engine.remove(info.id)
    return StopResult(config.project, name, info.name, info.labels.get(labels.MODEL_URI, ""))
