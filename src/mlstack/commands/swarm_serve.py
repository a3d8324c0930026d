"""`mlstack serve` with target: swarm: a registered model as a swarm service of the stack (one
task of the MLflow image running `mlflow models serve`), `serve --stop NAME` removes one.

As on one engine, everything is checked before anything is made: the stack's MLflow runs and
answers, the model URI resolves on this machine through the tracking server (an alias is pinned
to its version), the name and port are usable. Then the service is made and `serve` waits, in
one loop, for its task to run (healthy) and for /ping to answer on the node it runs on. A task
that fails, or no answer in time, removes the service again, with the swarm's reason and the
last lines of its log in the error: a failed `serve` leaves nothing behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from mlstack import labels
from mlstack.adapters.mlflow_http import TrackingApi
from mlstack.adapters.registry import (
    ModelRef,
    ResolvedModel,
    default_name,
    parse_model_uri,
    resolve_model,
)
from mlstack.config import StackConfig
from mlstack.engine import SwarmEngineAPI, SwarmServiceInfo, SwarmState
from mlstack.errors import (
    ConfigError,
    Conflict,
    MlstackError,
    NotReady,
    NotRunning,
    PortInUse,
    ServiceUnhealthy,
    UsageError,
)
from mlstack.health import CallableProbe, MlflowProbe, Probe, run_probe, wait_ready
from mlstack.project.context import REPAIR_HINT, Project, open_existing
from mlstack.project.ports import DEFAULT_PORT, PORT_SEARCH
from mlstack.project.reporting import Event, Reporter, quiet
from mlstack.project.served import check_name
from mlstack.project.serving import ServeResult, StopResult, image_check
from mlstack.project.swarm_ops import (
    require_manager,
    running_mlflow,
    service_info,
    tasks_running,
)
from mlstack.project.swarm_serving import (
    NO_LOGIN,
    NO_LOGIN_HINT,
    ProbeFactory,
    ServedPlan,
    is_served,
    mlflow_inside,
    ping_probe,
    secret_labels,
    served_endpoints,
    served_port,
    served_spec,
    service_label,
    swarm_name,
)
from mlstack.project.watch import log_gist

FAILED = ("failed", "rejected")  # a task's end that no waiting mends: the model did not load
SETTLE_TIMEOUT = 120.0  # seconds for a removed service's task to be gone from its node


@dataclass(frozen=True)
class _Target:
    """Where a deployment goes, checked before anything is made."""

    project: Project
    state: SwarmState
    service: str  # the swarm service
    current: SwarmServiceInfo | None  # the deployment of that name it replaces
    port: int


def require_mlflow(config: StackConfig, engine: SwarmEngineAPI) -> Project:
    """The project, when MLflow runs on the swarm and answers an API call; NotRunning else."""
    project = open_existing(config, "serve", engine)
    running_mlflow(engine, config, "serve")
    url, headers = mlflow_inside(project)
    probe = run_probe(MlflowProbe("mlflow", url, headers=headers, cafile=project.ca_file))
    if not probe.ok:
        raise NotRunning(
            f"the tracking server of stack {config.project!r} does not answer in the stack's "
            f"network: {probe.detail}",
            REPAIR_HINT,
        )
    return project


def _pick_port(
    config: StackConfig, everything: list[SwarmServiceInfo], service: str, requested: int | None
) -> int:
    """`requested`, else the port the deployment of that name has, else the first one from
    DEFAULT_PORT that no service of the swarm publishes and that is none of the stack's."""
    taken = {p.published: s.name for s in everything if s.name != service for p in s.ports}
    taken.update({port: f"the stack's {key}" for key, port in config.published_ports().items()})
    if requested is not None:
        if requested in taken:
            raise PortInUse(
                f"port {requested} is already published on the swarm ({taken[requested]})",
                "choose another port with --port",
            )
        return requested
    current = next((s for s in everything if s.name == service), None)
    held = served_port(current) if current is not None else None
    if held is not None:
        return held
    for port in range(DEFAULT_PORT, DEFAULT_PORT + PORT_SEARCH):
        if port not in taken:
            return port
    raise PortInUse(
        f"every port between {DEFAULT_PORT} and {DEFAULT_PORT + PORT_SEARCH - 1} is published "
        "on the swarm",
        "choose one with --port",
    )


def _check(config: StackConfig, engine: SwarmEngineAPI, name: str, port: int | None) -> _Target:
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {port}", "e.g. --port 5060")
    if not config.allow_unauthenticated:
        raise ConfigError(NO_LOGIN, NO_LOGIN_HINT)
    state = require_manager(config, engine, engine)
    project = require_mlflow(config, engine)
    service = swarm_name(config.project, name)
    everything = engine.services({})
    current = next((s for s in everything if s.name == service), None)
    if current is not None and (
        current.labels.get(labels.PROJECT) != config.project or not is_served(current)
    ):
        raise Conflict(
            f"a swarm service named {service} exists and is not a model served by project "
            f"{config.project!r}",
            "remove or rename that service, or choose another --name",
        )
    return _Target(project, state, service, current, _pick_port(config, everything, service, port))


def _resolve(
    project: Project, engine: SwarmEngineAPI, ref: ModelRef, report: Reporter
) -> tuple[ResolvedModel, list[str]]:
    """The model through the tracking server, as this machine reaches it; its requirements
    compared in the relay, a container of the MLflow image on the manager."""
    report(Event("step", message=f"resolving {ref.uri}"))
    url, headers = mlflow_inside(project)
    api = TrackingApi(url, headers, project.ca_file)
    model = resolve_model(api, ref)
    pinned = model.served_uri if model.served_uri != ref.uri else ""
    report(
        Event("step", message=f"model {pinned or ref.uri}" + (f" ({ref.uri})" if pinned else ""))
    )
    relay = project.relay.spec.container_name if project.relay else ""
    warnings = image_check(project, engine, model, relay)
    for warning in warnings:
        report(Event("warning", message=warning))
    return model, warnings


def _answering(
    engine: SwarmEngineAPI, target: _Target, label: str, spec_hash: str, ping: ProbeFactory
) -> tuple[Probe, list[tuple[str, str]]]:
    """One probe for wait_ready's loop: the task of this spec runs (healthy), then /ping
    answers on its node. A failed task fails at once with the swarm's reason. The node and
    URL that answered are put in the list it returns."""
    answered: list[tuple[str, str]] = []
    project, service = target.project, target.service
    running = tasks_running(engine, label, service, labels.of_project(project.name), 1)

    def check() -> None:
        info = service_info(engine, project.name, service)
        tasks = info.tasks if info and not info.current else ()
        failed = [t for t in tasks if t.spec_hash == spec_hash and t.state in FAILED]
        if failed:
            task = failed[-1]
            raise ServiceUnhealthy(
                f"{label} stopped while starting: its task on {task.node or 'no node'} "
                f"{task.state}: {task.error or 'no reason given'}",
                service=label,
            )
        running.check()
        new = replace(info, tasks=tuple(info.current)) if info else None  # not a replaced one
        places = served_endpoints(project, target.state, new) if new else []
        if not places:
            raise NotReady(f"{label}: no published endpoint yet", service=label)
        ping(label, places[0].url).check()
        answered[:] = [(places[0].node, places[0].url)]

    return CallableProbe(label, check), answered


def serve_swarm(
    config: StackConfig,
    engine: SwarmEngineAPI,
    model_uri: str,
    *,
    name: str | None = None,
    port: int | None = None,
    timeout: float = 180.0,
    report: Reporter = quiet,
    ping: ProbeFactory = ping_probe,
) -> ServeResult:
    """Deploy `model_uri` as a swarm service and return once its /ping answers on the node its
    task runs on; nothing stays behind on failure."""
    started = time.monotonic()
    ref = parse_model_uri(model_uri)
    name = check_name(name if name is not None else default_name(ref))
    target = _check(config, engine, name, port)
    model, warnings = _resolve(target.project, engine, ref, report)
    warnings = [*warnings, f"{NO_LOGIN} (allow_unauthenticated: true)"]
    # Everything is checked: from here on a failure removes what it made.
    plan = served_spec(target.project, name, target.port, model)
    verb = "replacing" if target.current is not None else "starting"
    report(Event("step", message=f"{verb} {target.service} on port {target.port}"))
    ready, node, url = _deploy(engine, target, name, plan, timeout, report, ping, warnings)
    return ServeResult.of(
        target.project,
        ref.uri,
        model,
        (name, target.service, target.port),
        url,
        (ready, time.monotonic() - started),
        replaced=target.current is not None,
        warnings=warnings,
        node=node,
    )


def _deploy(
    engine: SwarmEngineAPI,
    target: _Target,
    name: str,
    plan: ServedPlan,
    timeout: float,
    report: Reporter,
    ping: ProbeFactory,
    warnings: list[str],
) -> tuple[float, str, str]:
    """The secrets and the service, then its task and /ping in one loop; (seconds to ready,
    node, URL). Any failure removes the service again, with its log in the error."""
    project, label = target.project, service_label(name)
    probe, answered = _answering(engine, target, label, plan.spec.spec_hash, ping)
    try:
        for secret, content in plan.secrets.items():
            engine.create_secret(secret, content, secret_labels(project, name))
        engine.deploy_service(plan.spec)
        ready = wait_ready(
            [probe],
            timeout=timeout,
            interval=0.5,
            on_ready=lambda s, seconds: report(Event("ready", service=s, seconds=seconds)),
        )[label]
    except MlstackError as e:
        log = _log(engine, project, target.service)
        _remove(engine, project, name, target.service)
        served = plan.spec.labels[labels.MODEL_SERVED]
        raise ServiceUnhealthy(
            f"{target.service} did not start serving {served}: {e.message}",
            "it was removed again; the log says why: the model must load in "
            f"{plan.spec.image} (see the README, Train, track, deploy), or allow more time "
            "with --timeout",
            details="\n".join(
                [
                    *filter(None, [e.details]),
                    *([f"last log lines of {label}:", log] if log else []),
                    *(f"warning: {w}" for w in warnings),
                ]
            ),
            service=label,
        ) from e
    except BaseException:
        _remove(engine, project, name, target.service)
        raise
    node, url = answered[0]
    return ready, node, url


def _log(engine: SwarmEngineAPI, project: Project, service: str) -> str:
    """The gist of a service's log, secrets masked; "" when it cannot be read."""
    try:
        lines = engine.service_log_lines(service, tail=200)  # per task: the failed ones too
        text = "\n".join(line.text.decode(errors="replace") for line in lines)
        return log_gist(project.scrub(text))
    except MlstackError:
        return ""


def _remove(engine: SwarmEngineAPI, project: Project, name: str, service: str) -> None:
    """The service, once its task is gone from its node, then the secrets it mounted."""
    engine.remove_service(service)
    selector = {labels.PROJECT: project.name, labels.SERVICE: service_label(name)}

    def gone() -> None:
        left = engine.tasks(selector)
        if left:
            raise NotReady(f"{service}: {len(left)} task(s) still stopping", service=service)

    wait_ready([CallableProbe(service, gone)], timeout=SETTLE_TIMEOUT, interval=0.5)
    for secret in engine.secrets(selector):
        engine.remove_secret(secret)


def stop_swarm(config: StackConfig, engine: SwarmEngineAPI, name: str) -> StopResult:
    """Remove the service serving `name`, and its secrets."""
    check_name(name)
    require_manager(config, engine, engine)
    found = [s for s in engine.services(labels.of_project(config.project)) if is_served(s)]
    served = {s.labels[labels.SERVE_NAME]: s for s in found}
    info = served.get(name)
    if info is None:
        known = ", ".join(sorted(served)) if served else "nothing is served"
        raise UsageError(
            f"no model served as {name!r} in project {config.project!r} ({known})",
            "see `mlstack status` for what is served",
        )
    project = open_existing(config, "serve --stop", engine)
    _remove(engine, project, name, info.name)
    return StopResult(config.project, name, info.name, info.labels.get(labels.MODEL_URI, ""))
