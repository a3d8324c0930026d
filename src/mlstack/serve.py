"""`mlstack serve`: a registered model as a container in the stack, speaking MLflow's scoring
protocol (`/ping`, `/invocations`).

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

import json
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mlstack.client_env import PROXY_ARTIFACTS, activate, tracking_login
from mlstack.config import StackConfig
from mlstack.engine import ContainerInfo, Engine
from mlstack.errors import (
    Conflict,
    ImageUnavailable,
    MlstackError,
    NotRunning,
    PortInUse,
    ServiceUnhealthy,
    UsageError,
)
from mlstack.health import HttpProbe, ProbeResult, answering, run_probes, wait_ready
from mlstack.preflight import port_free
from mlstack.render import MLFLOW_CONTAINER_PORT
from mlstack.services import LABEL_PROJECT, LABEL_SERVICE, HealthcheckSpec, PortSpec, ServiceSpec
from mlstack.stack import Event, Reporter, Stack, require_running

SERVICE = "serve"
CONTAINER_PORT = 8080
DEFAULT_PORT = 5060  # the first port tried when --port is not given
PORT_SEARCH = 40  # ... and the next ones
LABEL_NAME = "io.mlstack.serve.name"
LABEL_PORT = "io.mlstack.serve.port"
LABEL_MODEL_URI = "io.mlstack.model.uri"  # as the user gave it
LABEL_MODEL_SERVED = "io.mlstack.model.served-uri"  # what the container loads (pinned)
LABEL_MODEL_NAME = "io.mlstack.model.name"
LABEL_MODEL_VERSION = "io.mlstack.model.version"
EXAMPLE_ROWS = 3  # rows of the input example in the printed curl

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
_LOGGED_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")
_URI_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME/latest, models:/m-<id> or runs:/RUN_ID/PATH"


def _quiet(_: Event) -> None:
    return None


# --- model URIs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A parsed model URI."""

    uri: str
    kind: Literal["alias", "version", "latest", "logged", "run"]
    name: str = ""  # registered model name
    alias: str = ""
    version: str = ""
    model_id: str = ""
    run_id: str = ""
    path: str = ""


def parse_model_uri(uri: str) -> ModelRef:
    """The forms `serve` takes; anything else is bad input with the forms in the hint."""
    text = uri.strip()
    hint = f"use one of: {_URI_FORMS}"
    if text.startswith("models:/"):
        rest = text[len("models:/") :].strip("/")
        if _LOGGED_ID_RE.match(rest):
            return ModelRef(text, "logged", model_id=rest)
        if "@" in rest:
            name, _, alias = rest.partition("@")
            if name and alias and "/" not in name and "/" not in alias:
                return ModelRef(text, "alias", name=name, alias=alias)
        elif "/" in rest:
            name, _, version = rest.rpartition("/")
            if name and version.isdigit():
                return ModelRef(text, "version", name=name, version=str(int(version)))
            if name and version == "latest":
                return ModelRef(text, "latest", name=name)
            if name and version:
                raise UsageError(
                    f"{text!r}: {version!r} is neither a version number nor 'latest' "
                    "(registry stages are deprecated in MLflow 3)",
                    f"name a version or an alias: models:/{name}/1 or models:/{name}@champion",
                )
        elif rest:
            raise UsageError(
                f"{text!r} names a model but no version or alias",
                f"e.g. models:/{rest}@champion, models:/{rest}/1 or models:/{rest}/latest",
            )
    elif text.startswith("runs:/"):
        run_id, _, path = text[len("runs:/") :].strip("/").partition("/")
        if run_id and path:
            return ModelRef(text, "run", run_id=run_id, path=path.strip("/"))
        raise UsageError(
            f"{text!r} needs a run id and the model's path", "e.g. runs:/<run id>/model"
        )
    raise UsageError(f"{text!r} is not a model URI `mlstack serve` can deploy", hint)


def default_name(ref: ModelRef) -> str:
    """The serve name when --name is not given: the registered model's name, made Docker-safe."""
    if ref.kind == "logged":
        base = ref.model_id[:10]
    elif ref.kind == "run":
        base = f"run-{ref.run_id[:8]}"
    else:
        base = ref.name
    safe = re.sub(r"[^a-z0-9_.-]+", "-", base.lower()).strip("-_.")[:40].rstrip("-_.")
    return safe or "model"


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(
            f"{name!r} is not a valid serve name: use 1-40 lowercase letters, digits, '.', '_' "
            "and '-', starting with a letter or digit",
            "e.g. --name wine-classifier",
        )
    return name


def container_name(config: StackConfig, name: str) -> str:
    return f"{config.project}-serve-{name}"


# --- what the model needs ----------------------------------------------------------------------


def requirement_mismatches(
    requirements: Sequence[str], installed: Mapping[str, str | None]
) -> list[str]:
    """Requirements (requirements.txt lines) the installed versions do not satisfy, explained."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    found = {canonicalize_name(k): v for k, v in installed.items()}
    problems: list[str] = []
    for line in requirements:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            problems.append(f"{text} (cannot be checked)")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        have = found.get(canonicalize_name(requirement.name))
        if have is None:
            problems.append(f"{text} (not in the image)")
        elif requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
            problems.append(f"{text} (the image has {have})")
    return problems


def requirement_names(requirements: Sequence[str]) -> list[str]:
    names = []
    for line in requirements:
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
        if match and not line.lstrip().startswith("-"):
            names.append(match.group(1))
    return names


def _versions_script(names: Sequence[str]) -> str:
    return (
        "import json, sys, importlib.metadata as m\n"
        "def v(n):\n"
        "    try:\n"
        "        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        f"print(json.dumps({{'python': '%d.%d' % sys.version_info[:2], "
        f"'packages': {{n: v(n) for n in {list(names)!r}}}}}))\n"
    )


def trim_payload(payload: Mapping[str, Any], rows: int = EXAMPLE_ROWS) -> dict[str, Any]:
    """The first `rows` rows of a scoring payload, so the printed curl stays pasteable."""
    trimmed: dict[str, Any] = dict(payload)
    split = payload.get("dataframe_split")
    if isinstance(split, Mapping):
        part = dict(split)
        for key in ("data", "index"):
            if isinstance(part.get(key), list):
                part[key] = part[key][:rows]
        trimmed["dataframe_split"] = part
    for key in ("dataframe_records", "instances", "inputs"):
        if isinstance(payload.get(key), list):
            trimmed[key] = payload[key][:rows]
    return trimmed


def log_excerpt(text: str, lines: int = 12) -> str:
    """The gist of a model server's log: its own lines and the errors, without traceback frames
    (indented) and without repeats (a restarting container prints the same lines again)."""
    kept = [
        line.rstrip()
        for line in text.splitlines()
        if line.strip() and not line[0].isspace() and not line.startswith("Traceback")
    ]
    return "\n".join(list(dict.fromkeys(kept))[-lines:])


def curl_command(url: str, payload: Mapping[str, Any] | None) -> str:
    """A ready-to-paste request to /invocations (a placeholder body without an input example)."""
    body = json.dumps(payload, separators=(",", ":")) if payload is not None else "<JSON input>"
    return (
        f"curl -s -X POST {url}/invocations -H 'Content-Type: application/json' "
        f"-d {shlex.quote(body)}"
    )


# --- resolving the model on the host -----------------------------------------------------------


@dataclass(frozen=True)
class ResolvedModel:
    uri: str  # as given
    served_uri: str  # what the container loads: aliases and `latest` pinned to a version
    artifact_location: str
    registered_model: str | None = None
    version: str | None = None
    model_id: str | None = None
    run_id: str | None = None
    mlflow_version: str | None = None
    python_version: str | None = None
    requirements: list[str] = field(default_factory=list)
    payload: dict[str, Any] | None = None


def _missing(error: Exception) -> bool:
    code = getattr(error, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def _registered_names(client: Any) -> list[str]:
    return sorted(m.name for m in client.search_registered_models(max_results=50))


def _registered_model(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as e:
        if not _missing(e):
            raise
    names = _registered_names(client)
    where = f"registered: {', '.join(names)}" if names else "the registry is empty"
    raise UsageError(
        f"no registered model named {name!r} ({where})",
        "serve one that exists, e.g. `mlstack serve models:/NAME@ALIAS`; `mlstack demo` "
        "registers mlstack-demo",
    )


def _versions(client: Any, name: str) -> list[str]:
    found = client.search_model_versions(f"name = '{name}'", max_results=200)
    return sorted((str(v.version) for v in found), key=int)


def _resolve_registered(client: Any, ref: ModelRef) -> tuple[str, str]:
    """(name, version) of a registry URI, with one-line errors that name what exists."""
    from mlflow.exceptions import MlflowException

    model = _registered_model(client, ref.name)
    if ref.kind == "alias":
        aliases = dict(getattr(model, "aliases", {}) or {})
        if ref.alias not in aliases:
            known = ", ".join(f"{a} -> version {v}" for a, v in sorted(aliases.items()))
            raise UsageError(
                f"model {ref.name!r} has no alias {ref.alias!r} "
                f"({'aliases: ' + known if known else 'it has no aliases'})",
                f"use an alias it has, or a version: models:/{ref.name}/VERSION",
            )
        return ref.name, str(aliases[ref.alias])
    versions = _versions(client, ref.name)
    if ref.kind == "latest":
        if not versions:
            raise UsageError(
                f"model {ref.name!r} has no versions", "register one first (`mlstack demo` does)"
            )
        return ref.name, versions[-1]
    try:
        client.get_model_version(ref.name, ref.version)
    except MlflowException as e:
        if not _missing(e):
            raise
        raise UsageError(
            f"model {ref.name!r} has no version {ref.version} "
            f"({'versions: ' + ', '.join(versions) if versions else 'it has no versions'})",
            f"use one of its versions, or models:/{ref.name}/latest",
        ) from None
    return ref.name, ref.version


def _resolve_logged(client: Any, model_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_logged_model(model_id)
    except MlflowException as e:
        if not _missing(e):
            raise
        raise UsageError(
            f"no logged model with id {model_id}",
            "copy the id from the run's page in the MLflow UI (Logged models), or serve a "
            "registered model: models:/NAME@ALIAS",
        ) from None


def _resolve_run(client: Any, ref: ModelRef) -> tuple[str, str]:
    """(served URI, artifact location) of runs:/RUN/PATH: MLflow 3 logs models as models:/m-<id>."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(ref.run_id)
    except MlflowException as e:
        if not _missing(e):
            raise
        raise UsageError(
            f"no run with id {ref.run_id}", "copy the run id from the MLflow UI or `mlstack demo`"
        ) from None
    found = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{ref.run_id}'",
    )
    for model in found:
        if model.name == ref.path:
            return f"models:/{model.model_id}", str(model.artifact_location)
    files = [f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(ref.run_id, ref.path)]
    if "MLmodel" in files:  # a model logged as a run artifact (MLflow 2 style)
        return ref.uri, ref.uri
    names = sorted({m.name for m in found})
    raise UsageError(
        f"run {ref.run_id} has no model at {ref.path!r} "
        f"({'its models: ' + ', '.join(names) if names else 'it logged no model'})",
        f"e.g. runs:/{ref.run_id}/{names[0] if names else 'model'}",
    )


def resolve_model(tracking_uri: str, ref: ModelRef) -> ResolvedModel:
    """Look the model up in the tracking server and read its MLmodel, requirements and example.

    The caller has pointed MLflow at the stack (client_env.activate) before this imports it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    registered = version = model_id = run_id = None
    try:
        if ref.kind in ("alias", "version", "latest"):
            registered, version = _resolve_registered(client, ref)
            served_uri = f"models:/{registered}/{version}"
            location = client.get_model_version_download_uri(registered, version)
            details = client.get_model_version(registered, version)
            run_id = details.run_id or None
        elif ref.kind == "logged":
            logged = _resolve_logged(client, ref.model_id)
            served_uri, location = ref.uri, str(logged.artifact_location)
            model_id, run_id = ref.model_id, logged.source_run_id
        else:
            served_uri, location = _resolve_run(client, ref)
            run_id = ref.run_id
        if served_uri.startswith("models:/m-"):
            model_id = served_uri[len("models:/") :]
        files = _model_files(tracking_uri, location)
    except MlflowException as e:
        raise MlstackError(
            f"MLflow at {tracking_uri} could not resolve {ref.uri}: "
            f"{' '.join(str(e).split())[:300]}",
            "see `mlstack status` and `mlstack logs mlflow --tail 50`",
        ) from None
    mlmodel = files.get("MLmodel")
    if mlmodel is None:
        raise UsageError(
            f"{ref.uri} has no MLmodel file at {location}: it is not an MLflow model",
            "serve a model logged with mlflow.<flavor>.log_model",
        )
    meta = yaml.safe_load(mlmodel) or {}
    flavors = meta.get("flavors") or {}
    if "python_function" not in flavors:
        raise UsageError(
            f"{ref.uri} has no python_function flavor (flavors: {', '.join(flavors) or 'none'}), "
            "so `mlflow models serve` cannot serve it",
            "log the model with a flavor that supports pyfunc, e.g. mlflow.sklearn.log_model",
        )
    payload = None
    if files.get("serving_input_example.json"):
        loaded = json.loads(files["serving_input_example.json"])
        payload = trim_payload(loaded) if isinstance(loaded, dict) else None
    requirements = (files.get("requirements.txt") or "").splitlines()
    return ResolvedModel(
        uri=ref.uri,
        served_uri=served_uri,
        artifact_location=location,
        registered_model=registered,
        version=version,
        model_id=model_id,
        run_id=run_id,
        mlflow_version=meta.get("mlflow_version"),
        python_version=(flavors.get("python_function") or {}).get("python_version"),
        requirements=[r for r in requirements if r.strip()],
        payload=payload,
    )


def _model_files(tracking_uri: str, location: str) -> dict[str, str]:
    """MLmodel, requirements.txt and serving_input_example.json of a model (each when present)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    # Only files that exist: asking for a missing one is retried with backoff for minutes.
    listed = mlflow.artifacts.list_artifacts(artifact_uri=location, tracking_uri=tracking_uri)
    present = {f.path.rsplit("/", 1)[-1] for f in listed if not f.is_dir}
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mlstack-serve-") as tmp:
        for name in ("MLmodel", "requirements.txt", "serving_input_example.json"):
            if name not in present:
                continue
            try:
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{location.rstrip('/')}/{name}",
                    dst_path=tmp,
                    tracking_uri=tracking_uri,
                )
            except (MlflowException, OSError):
                continue
            found[name] = Path(path).read_text(encoding="utf-8", errors="replace")
    return found


# --- deploying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeResult:
    project: str
    name: str
    container: str
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


def serve_spec(
    stack: Stack, name: str, port: int, model: ResolvedModel, image: str | None = None
) -> ServiceSpec:
    """The container that serves `model`, as a service spec like the stack's own."""
    config = stack.config
    labels = {
        LABEL_PROJECT: config.project,
        LABEL_SERVICE: SERVICE,
        LABEL_NAME: name,
        LABEL_PORT: str(port),
        LABEL_MODEL_URI: model.uri,
        LABEL_MODEL_SERVED: model.served_uri,
    }
    if model.registered_model:
        labels[LABEL_MODEL_NAME] = model.registered_model
    if model.version:
        labels[LABEL_MODEL_VERSION] = model.version
    ping = f"http://127.0.0.1:{CONTAINER_PORT}/ping"
    return ServiceSpec(
        name=SERVICE,
        container_name=container_name(config, name),
        image=image or config.mlflow.image,
        command=(
            "mlflow",
            "models",
            "serve",
            "-m",
            model.served_uri,
            "-h",
            "0.0.0.0",
            "-p",
            str(CONTAINER_PORT),
            "--env-manager",
            "local",
        ),
        environment={
            # The tracking server by its in-network name (its --allowed-hosts accepts it); the
            # model comes through its artifact proxy, so the container needs no S3 keys.
            "MLFLOW_TRACKING_URI": f"http://mlflow:{MLFLOW_CONTAINER_PORT}",
            **PROXY_ARTIFACTS,
            # With auth on, the admin login (in the environment, as in the MLflow container).
            **(tracking_login(stack.secrets) if config.auth else {}),
        },
        ports=(PortSpec(config.bind, port, CONTAINER_PORT),),
        volumes=(),
        labels=labels,
        restart="unless-stopped",
        # `mlflow models serve` runs as PID 1, which ignores SIGTERM without a handler; SIGINT
        # reaches Python's own handler, and the server stops at once instead of being killed.
        stop_signal="SIGINT",
        stop_grace_period=10.0,
        healthcheck=HealthcheckSpec(
            test=(
                "CMD",
                "python",
                "-c",
                f"import urllib.request as u; u.urlopen({ping!r}, timeout=4)",
            ),
            interval=5.0,
            timeout=5.0,
            retries=12,  # loading a model takes a while; `serve` itself waits on /ping
        ),
        depends_on=(),
    ).with_hash()


def served_containers(engine: Engine, project: str) -> list[ContainerInfo]:
    return [c for c in engine.project_containers(project) if c.service == SERVICE]


def _pick_port(config: StackConfig, requested: int | None, held: int | None) -> int:
    """The host port: `requested` when usable, else the first free one from DEFAULT_PORT."""
    stack_ports = {port: key for key, port in config.published_ports().items()}
    if requested is not None:
        if requested in stack_ports:
            raise PortInUse(
                f"port {requested} on {config.bind} is the stack's {stack_ports[requested]}",
                "choose another port with --port",
            )
        if requested != held and not port_free(config.bind, requested):
            raise PortInUse(
                f"port {requested} on {config.bind} is already in use",
                "free it, or choose another port with --port",
            )
        return requested
    if held is not None:
        return held
    for port in range(DEFAULT_PORT, DEFAULT_PORT + PORT_SEARCH):
        if port not in stack_ports and port_free(config.bind, port):
            return port
    raise PortInUse(
        f"no free port on {config.bind} between {DEFAULT_PORT} and "
        f"{DEFAULT_PORT + PORT_SEARCH - 1}",
        "choose one with --port",
    )


def _exited(engine: Engine, container: str) -> Callable[[str], str | None]:
    def exited(_: str) -> str | None:
        info = engine.inspect(container)
        if info is None:
            return "its container was removed"
        if info.state in ("exited", "dead"):
            return f"exited with code {info.exit_code}"
        if info.state == "restarting" or info.restart_count > 0:
            code = f" (exit code {info.exit_code})" if info.exit_code else ""
            return f"crashed and is restarting{code}"
        return None

    return exited


def _image_check(stack: Stack, engine: Engine, model: ResolvedModel) -> list[str]:
    """Warnings where the model's recorded environment differs from the serving image's."""
    if not model.requirements and not model.mlflow_version:
        return []
    mlflow_container = stack.service("mlflow").container_name
    info = engine.inspect(mlflow_container)
    if info is None or info.image != stack.config.mlflow.image:
        return ["could not compare the model's requirements with the image (run `mlstack up`)"]
    names = sorted({*requirement_names(model.requirements), "mlflow"})
    code, output = engine.exec(mlflow_container, ["python", "-c", _versions_script(names)])
    try:
        found = json.loads(output.strip().splitlines()[-1]) if code == 0 else None
    except (ValueError, IndexError):
        found = None
    if not isinstance(found, dict):
        return [f"could not list the packages of {stack.config.mlflow.image}"]
    return environment_warnings(
        model, found.get("packages") or {}, found.get("python"), stack.config.mlflow.image
    )


def environment_warnings(
    model: ResolvedModel,
    installed: Mapping[str, str | None],
    python: str | None,
    image: str,
) -> list[str]:
    warnings: list[str] = []
    mismatches = requirement_mismatches(model.requirements, installed)
    if mismatches:
        warnings.append(
            f"the model's requirements differ from {image}: {'; '.join(mismatches)}; it may "
            "load and predict differently: set mlflow.image to an image with those versions"
        )
    have = installed.get("mlflow")
    if model.mlflow_version and have and model.mlflow_version != have:
        warnings.append(
            f"the model was logged with MLflow {model.mlflow_version}, {image} has {have}"
        )
    if model.python_version and python:
        wanted = ".".join(model.python_version.split(".")[:2])
        if wanted != python:
            warnings.append(
                f"the model was logged with Python {model.python_version}, {image} runs {python}"
            )
    return warnings


def serve(
    config: StackConfig,
    engine: Engine,
    model_uri: str,
    *,
    name: str | None = None,
    port: int | None = None,
    timeout: float = 180.0,
    report: Reporter = _quiet,
) -> ServeResult:
    """Deploy `model_uri` and return once its /ping answers; nothing stays behind on failure."""
    started = time.monotonic()
    ref = parse_model_uri(model_uri)
    name = check_name(name if name is not None else default_name(ref))
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {port}", "e.g. --port 5060")
    stack = require_running(config, engine, "serve")
    container = container_name(config, name)
    current = engine.inspect(container)
    if current is not None and (current.project != config.project or current.service != SERVICE):
        raise Conflict(
            f"a container named {container} exists and is not a model served by project "
            f"{config.project!r}",
            "remove or rename that container, or choose another --name",
        )
    held = None
    if current is not None:
        held = next((p for binds in current.ports.values() for _, p in binds), None)
        if held is None and current.labels.get(LABEL_PORT, "").isdigit():
            held = int(current.labels[LABEL_PORT])
    host_port = _pick_port(config, port, held)
    image = config.mlflow.image
    if not engine.image_present(image):
        raise ImageUnavailable(
            f"the MLflow image {image} is not on this machine",
            "run `mlstack up` (it pulls it), or set mlflow.image to an image you have",
        )

    report(Event("step", message=f"resolving {ref.uri}"))
    activate(config, stack.secrets)
    model = resolve_model(config.tracking_uri, ref)
    pinned = model.served_uri if model.served_uri != ref.uri else ""
    report(
        Event("step", message=f"model {pinned or ref.uri}" + (f" ({ref.uri})" if pinned else ""))
    )
    warnings = _image_check(stack, engine, model)
    for warning in warnings:
        report(Event("warning", message=warning))

    # Everything is checked: from here on a failure removes what it created.
    spec = serve_spec(stack, name, host_port, model, image)
    replaced = current is not None
    if current is not None:
        report(Event("step", message=f"replacing {container}"))
        engine.remove(current.id)
    report(Event("step", message=f"starting {container} on port {host_port}"))
    url = f"http://{config.client_host}:{host_port}"
    try:
        engine.create(spec, stack.spec.network, [f"{SERVICE}-{name}", container])
        engine.start(container)
        ready = wait_ready(
            [HttpProbe(f"{SERVICE}-{name}", f"{url}/ping")],
            timeout=timeout,
            interval=0.5,
            exited=_exited(engine, container),
            on_ready=lambda service, seconds: report(
                Event("ready", service=service, seconds=seconds)
            ),
        )
    except BaseException as e:
        tail = log_excerpt(engine.log_tail(container, 200)) if isinstance(e, MlstackError) else ""
        engine.remove(container)
        if isinstance(e, MlstackError):
            details = [e.details] if e.details else []
            if tail:
                details += [f"last log lines of {container}:", stack.scrub(tail)]
            details += [f"warning: {w}" for w in warnings]
            raise ServiceUnhealthy(
                f"{container} did not start serving {model.served_uri}: {e.message}",
                f"it was removed again; the log says why: the model must load in {image} "
                "(see the README, Train, track, deploy), or allow more time with --timeout",
                details="\n".join(details),
                service=f"{SERVICE}-{name}",
            ) from None
        raise
    return ServeResult(
        project=config.project,
        name=name,
        container=container,
        model_uri=ref.uri,
        served_uri=model.served_uri,
        registered_model=model.registered_model,
        version=model.version,
        run_id=model.run_id,
        image=image,
        url=url,
        invocations_url=f"{url}/invocations",
        port=host_port,
        ready_seconds=ready[f"{SERVICE}-{name}"],
        seconds=time.monotonic() - started,
        curl=curl_command(url, model.payload),
        payload=model.payload,
        replaced=replaced,
        warnings=warnings,
    )


# --- stopping and status -----------------------------------------------------------------------


@dataclass(frozen=True)
class StopResult:
    project: str
    name: str
    container: str
    model_uri: str


def stop(config: StackConfig, engine: Engine, name: str) -> StopResult:
    """Remove the container serving `name`."""
    check_name(name)
    served = {c.labels.get(LABEL_NAME, ""): c for c in served_containers(engine, config.project)}
    info = served.get(name)
    if info is None:
        known = ", ".join(sorted(served)) if served else "nothing is served"
        raise UsageError(
            f"no model served as {name!r} in project {config.project!r} ({known})",
            "see `mlstack status` for what is served",
        )
    engine.stop(info.id, 10.0)
    engine.remove(info.id)
    return StopResult(config.project, name, info.name, info.labels.get(LABEL_MODEL_URI, ""))


@dataclass(frozen=True)
class ServedStatus:
    name: str
    container: str
    state: str
    health: str | None
    model_uri: str
    served_uri: str
    version: str | None
    url: str
    probe: ProbeResult | None
    problem: str = ""
    fix: str = ""

    @property
    def healthy(self) -> bool:
        return answering(self.state, self.probe)


def served_status(config: StackConfig, containers: Sequence[ContainerInfo]) -> list[ServedStatus]:
    """Each served model: its container, and whether /ping answers from the host."""

    def ping_url(info: ContainerInfo) -> str:
        port = info.labels.get(LABEL_PORT, "")
        return f"http://{config.client_host}:{port}" if port else ""

    ordered = sorted(containers, key=lambda c: c.name)
    running = [c for c in ordered if c.running]
    pings = run_probes(
        [
            HttpProbe(f"{SERVICE}-{c.labels.get(LABEL_NAME, c.name)}", f"{ping_url(c)}/ping")
            for c in running
        ]
    )
    probes = dict(zip((c.id for c in running), pings, strict=True))
    rows: list[ServedStatus] = []
    for info in ordered:
        name = info.labels.get(LABEL_NAME, info.name)
        uri = info.labels.get(LABEL_MODEL_URI, "")
        port = info.labels.get(LABEL_PORT, "")
        url = ping_url(info)
        probe = probes.get(info.id)
        redeploy = f"`mlstack serve {uri} --name {name}" + (f" --port {port}`" if port else "`")
        problem = fix = ""
        if not info.running:
            problem = f"{info.state} (exit code {info.exit_code})"
            fix = f"read `mlstack logs {SERVICE}-{name} --tail 50`, then serve it again: {redeploy}"
        elif probe is not None and not probe.ok:
            problem = f"/ping does not answer: {probe.detail}"
            fix = (
                f"it may still be loading the model; else read `mlstack logs {SERVICE}-{name} "
                f"--tail 50` and serve it again: {redeploy}"
            )
        rows.append(
            ServedStatus(
                name=name,
                container=info.name,
                state=info.state,
                health=info.health,
                model_uri=uri,
                served_uri=info.labels.get(LABEL_MODEL_SERVED, ""),
                version=info.labels.get(LABEL_MODEL_VERSION),
                url=url,
                probe=probe,
                problem=problem,
                fix=fix,
            )
        )
    return rows


def find_served(engine: Engine, project: str, name: str) -> ContainerInfo:
    """The container serving `name` (for `mlstack logs serve-NAME`)."""
    for info in served_containers(engine, project):
        if info.labels.get(LABEL_NAME) == name:
            return info
    raise NotRunning(
        f"no model served as {name!r} in project {project!r}",
        "see `mlstack status` for what is served",
    )
