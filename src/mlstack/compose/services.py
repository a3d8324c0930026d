"""Rendered compose YAML -> typed service specs: what the Docker SDK path creates.

Only the compose subset our template uses is understood; anything else is a bug in the template
and fails loudly here, not silently at `docker run` time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mlstack.engine.models import HealthcheckSpec, PortSpec, ServiceSpec

# Order matters: dependencies first. Services in one tier start together.
START_TIERS: tuple[tuple[str, ...], ...] = (("postgres", "storage"), ("mlflow",))

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A required variable (`${VAR:?message}`) is missing."""


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR:?error}."""

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("named")
        value = variables.get(name)
        op, arg = match.group("op"), match.group("arg") or ""
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("-", ":-") and unset:
            return arg
        if op in ("?", ":?") and unset:
            raise InterpolationError(f"{name} is not set: {arg}")
        return value or ""

    return _VAR.sub(substitute, text)


def _interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, variables) for key, value in node.items()}
    return node


def parse_duration(value: str | int | float) -> float:
    """Compose durations ('1m30s', '2s', '500ms') in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"unsupported duration {value!r}")
    for number, unit in parts:
        total += float(number) * units[unit]
    return total


@dataclass(frozen=True)
class StackSpec:
    project: str
    network: str
    volumes: Mapping[str, str]  # compose key -> volume name
    services: Mapping[str, ServiceSpec]
    labels: Mapping[str, str]  # labels every object of the stack carries (the network's)

    def volume_names(self) -> list[str]:
        return list(self.volumes.values())


def _service(name: str, raw: Mapping[str, Any], volume_names: Mapping[str, str]) -> ServiceSpec:
    known = {
        "image",
        "container_name",
        "restart",
        "entrypoint",
        "command",
        "environment",
        "ports",
        "volumes",
        "stop_signal",
        "stop_grace_period",
        "healthcheck",
        "labels",
        "depends_on",
    }
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"service {name}: unsupported compose keys {sorted(unknown)}")
    volumes = []
    for item in raw.get("volumes", []):
        source, _, target = str(item).partition(":")
        if source not in volume_names:
            raise ValueError(f"service {name}: volume {source!r} is not declared")
        volumes.append((volume_names[source], target))
    health = raw.get("healthcheck")
    command = raw.get("command")
    entrypoint = raw.get("entrypoint")
    return ServiceSpec(
        name=name,
        container_name=raw["container_name"],
        image=raw["image"],
        command=tuple(str(c) for c in command) if command is not None else None,
        environment={str(k): str(v) for k, v in (raw.get("environment") or {}).items()},
        ports=tuple(PortSpec.parse(p) for p in raw.get("ports", [])),
        volumes=tuple(volumes),
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        restart=raw.get("restart", "no"),
        stop_signal=raw.get("stop_signal"),
        stop_grace_period=parse_duration(raw.get("stop_grace_period", "10s")),
        healthcheck=HealthcheckSpec(
            test=tuple(health["test"]),
            interval=parse_duration(health.get("interval", "30s")),
            timeout=parse_duration(health.get("timeout", "30s")),
            retries=int(health.get("retries", 3)),
        )
        if health
        else None,
        depends_on=tuple(raw.get("depends_on") or ()),
        entrypoint=tuple(str(c) for c in entrypoint) if entrypoint is not None else None,
    ).with_hash()


def from_compose(compose_text: str, variables: Mapping[str, str]) -> StackSpec:
    """Parse a rendered compose file (with its .env variables) into the stack's specs."""
    document = _interpolate_tree(yaml.safe_load(compose_text), variables)
    project = document["name"]
    volumes = {key: value["name"] for key, value in document.get("volumes", {}).items()}
    services = {name: _service(name, raw, volumes) for name, raw in document["services"].items()}
    network = document["networks"]["default"]
    return StackSpec(
        project=project,
        network=network["name"],
        volumes=volumes,
        services=services,
        labels={str(k): str(v) for k, v in network["labels"].items()},
    )
