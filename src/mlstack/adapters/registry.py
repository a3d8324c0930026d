"""Models in MLflow's registry: the URIs `serve` takes, and what a model is and needs.

A URI is resolved on the host through the tracking server's REST API (no mlflow import): `models:/NAME@ALIAS`,
`models:/NAME/VERSION`, `models:/NAME/latest`, `models:/m-<id>` or `runs:/RUN_ID/PATH`. Aliases
and `latest` are pinned to a version, so a restarted server never switches models silently;
unknown names, aliases and versions are one-line errors naming those that exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import yaml

from mlstack.adapters.mlflow_http import ApiError, TrackingApi
from mlstack.errors import MlstackError, UsageError

EXAMPLE_ROWS = 3  # rows of the input example in the printed curl
_LOGGED_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")
_URI_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME/latest, models:/m-<id> or runs:/RUN_ID/PATH"


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


def _registered_model(api: TrackingApi, name: str) -> dict[str, Any]:
    try:
        return dict(api.get("/registered-models/get", {"name": name})["registered_model"])
    except ApiError as e:
        if not e.missing:
            raise
    found = api.get("/registered-models/search", {"max_results": "50"}).get("registered_models", [])
    names = sorted(m["name"] for m in found)
    where = f"registered: {', '.join(names)}" if names else "the registry is empty"
    raise UsageError(
        f"no registered model named {name!r} ({where})",
        "serve one that exists, e.g. `mlstack serve models:/NAME@ALIAS`; `mlstack demo` "
        "registers mlstack-demo",
    )


def _versions(api: TrackingApi, name: str) -> list[str]:
    escaped = name.replace("'", "\\'")
    found = api.get(
        "/model-versions/search", {"filter": f"name = '{escaped}'", "max_results": "200"}
    )
    return sorted((str(v["version"]) for v in found.get("model_versions", [])), key=int)


def _alias_version(model: Mapping[str, Any], ref: ModelRef) -> str:
    aliases = {str(a["alias"]): str(a["version"]) for a in model.get("aliases", [])}
    if ref.alias not in aliases:
        known = ", ".join(f"{a} -> version {v}" for a, v in sorted(aliases.items()))
        raise UsageError(
            f"model {ref.name!r} has no alias {ref.alias!r} "
            f"({'aliases: ' + known if known else 'it has no aliases'})",
            f"use an alias it has, or a version: models:/{ref.name}/VERSION",
        )
    return aliases[ref.alias]


def _resolve_registered(api: TrackingApi, ref: ModelRef) -> tuple[str, str]:
    """(name, version) of a registry URI, with one-line errors that name what exists."""
    model = _registered_model(api, ref.name)
    if ref.kind == "alias":
        return ref.name, _alias_version(model, ref)
    versions = _versions(api, ref.name)
    if ref.kind == "latest":
        if not versions:
            raise UsageError(
                f"model {ref.name!r} has no versions", "register one first (`mlstack demo` does)"
            )
        return ref.name, versions[-1]
    if ref.version not in versions:
        raise UsageError(
            f"model {ref.name!r} has no version {ref.version} "
            f"({'versions: ' + ', '.join(versions) if versions else 'it has no versions'})",
            f"use one of its versions, or models:/{ref.name}/latest",
        )
    return ref.name, ref.version


def _resolve_logged(api: TrackingApi, model_id: str) -> dict[str, Any]:
    try:
        return dict(api.get(f"/logged-models/{model_id}")["model"]["info"])
    except ApiError as e:
        if not e.missing:
            raise
        raise UsageError(
            f"no logged model with id {model_id}",
            "copy the id from the run's page in the MLflow UI (Logged models), or serve a "
            "registered model: models:/NAME@ALIAS",
        ) from e


def _resolve_run(api: TrackingApi, ref: ModelRef) -> tuple[str, str]:
    """(served URI, artifact location) of runs:/RUN/PATH: MLflow 3 logs models as models:/m-<id>."""
    try:
        run = api.get("/runs/get", {"run_id": ref.run_id})["run"]["info"]
    except ApiError as e:
        if not e.missing:
            raise
        raise UsageError(
            f"no run with id {ref.run_id}", "copy the run id from the MLflow UI or `mlstack demo`"
        ) from e
    body = {
        "experiment_ids": [run["experiment_id"]],
        "filter": f"source_run_id = '{ref.run_id}'",
    }
    found = [m["info"] for m in api.post("/logged-models/search", body).get("models", [])]
    for model in found:
        if model["name"] == ref.path:
            return f"models:/{model['model_id']}", str(model["artifact_uri"])
    location = f"{str(run['artifact_uri']).rstrip('/')}/{ref.path}"
    listing = api.get("/artifacts/list", {"run_id": ref.run_id, "path": ref.path})
    files = listing.get("files", [])
    if any(f["path"].rsplit("/", 1)[-1] == "MLmodel" for f in files):
        return ref.uri, location  # a model logged as a run artifact (MLflow 2 style)
    names = sorted({m["name"] for m in found})
    raise UsageError(
        f"run {ref.run_id} has no model at {ref.path!r} "
        f"({'its models: ' + ', '.join(names) if names else 'it logged no model'})",
        f"e.g. runs:/{ref.run_id}/{names[0] if names else 'model'}",
    )


@dataclass(frozen=True)
class _Located:
    served_uri: str
    location: str
    registered: str | None = None
    version: str | None = None
    model_id: str | None = None
    run_id: str | None = None


def _locate(api: TrackingApi, ref: ModelRef) -> _Located:
    """Which model the URI names, pinned, and where its files are."""
    if ref.kind in ("alias", "version", "latest"):
        name, version = _resolve_registered(api, ref)
        location = api.get("/model-versions/get-download-uri", {"name": name, "version": version})
        details = api.get("/model-versions/get", {"name": name, "version": version})[
            "model_version"
        ]
        source = str(details.get("source", ""))  # MLflow 3: the logged model, models:/m-<id>
        logged_id = source.removeprefix("models:/")
        found = _Located(
            f"models:/{name}/{version}",
            str(location["artifact_uri"]),
            name,
            version,
            model_id=logged_id if logged_id != source and _LOGGED_ID_RE.match(logged_id) else None,
            run_id=details.get("run_id") or None,
        )
    elif ref.kind == "logged":
        logged = _resolve_logged(api, ref.model_id)
        found = _Located(
            ref.uri,
            str(logged["artifact_uri"]),
            model_id=ref.model_id,
            run_id=logged.get("source_run_id") or None,
        )
    else:
        served_uri, location = _resolve_run(api, ref)
        found = _Located(served_uri, location, run_id=ref.run_id)
    if found.served_uri.startswith("models:/m-"):
        found = replace(found, model_id=found.served_uri[len("models:/") :])
    return found


def resolve_model(api: TrackingApi, ref: ModelRef) -> ResolvedModel:
    """Look the model up through the tracking server's REST API and read its MLmodel,
    requirements and input example through its artifact proxy (no mlflow import)."""
    try:
        found = _locate(api, ref)
        files = _model_files(api, ref, found.location)
    except ApiError as e:
        raise MlstackError(
            f"MLflow at {api.base_url} could not resolve {ref.uri}: {e}",
            "see `mlstack status` and `mlstack logs mlflow --tail 50`",
        ) from e
    meta = _pyfunc_meta(ref, found.location, files.get("MLmodel"))
    flavors = meta.get("flavors") or {}
    payload = None
    if files.get("serving_input_example.json"):
        loaded = json.loads(files["serving_input_example.json"])
        payload = trim_payload(loaded) if isinstance(loaded, dict) else None
    requirements = (files.get("requirements.txt") or "").splitlines()
    return ResolvedModel(
        uri=ref.uri,
        served_uri=found.served_uri,
        artifact_location=found.location,
        registered_model=found.registered,
        version=found.version,
        model_id=found.model_id,
        run_id=found.run_id,
        mlflow_version=meta.get("mlflow_version"),
        python_version=(flavors.get("python_function") or {}).get("python_version"),
        requirements=[r for r in requirements if r.strip()],
        payload=payload,
    )


def _pyfunc_meta(ref: ModelRef, location: str, mlmodel: str | None) -> dict[str, Any]:
    """The model's MLmodel, refused unless `mlflow models serve` can serve it."""
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
    return dict(meta)


MODEL_FILES = ("MLmodel", "requirements.txt", "serving_input_example.json")


def _model_files(api: TrackingApi, ref: ModelRef, location: str) -> dict[str, str]:
    """MLmodel, requirements.txt and serving_input_example.json of a model (each when present),
    through the server's artifact proxy."""
    try:
        listed = api.artifacts(location)
    except ValueError:
        raise UsageError(
            f"{ref.uri}: its files are at {location}, which the tracking server does not proxy",
            "serve a model logged through this stack's tracking server (artifacts proxied)",
        ) from None
    present = {f["path"].rsplit("/", 1)[-1] for f in listed if not f.get("is_dir")}
    base = location.rstrip("/")
    return {
        name: api.artifact(f"{base}/{name}").decode("utf-8", errors="replace")
        for name in MODEL_FILES
        if name in present
    }
