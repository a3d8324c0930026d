"""Loading the config from its sources: defaults < mlstack.yaml < MLSTACK_* env < --set flags.

Every failure is one ConfigError naming the key, the value and the source it came from.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from mlstack.config.checks import ConfigProblems
from mlstack.config.endpoint import resolve_endpoint
from mlstack.config.external import EXTERNAL_KEYS
from mlstack.config.model import SECTIONS, TOP_LEVEL, StackConfig
from mlstack.errors import ConfigError

CONFIG_FILENAME = "mlstack.yaml"
ENV_PREFIX = "MLSTACK_"
# MLSTACK_* variables that are not config keys.
RESERVED_ENV = {"MLSTACK_CONFIG", "MLSTACK_STATE_DIR", "MLSTACK_BACKUP_DIR", "MLSTACK_DEBUG"}
# Keys whose value is a mapping of free-form keys (label keys contain dots themselves).
MAPPING_KEYS = ("labels",)
# Keys that hold a mapping of their own keys, as MLSTACK_* variables spell them.
NESTED_KEYS = ("postgres.external", "storage.external", "tls")


@dataclass(frozen=True)
class LoadedConfig:
    """A config and where it came from (for messages and `mlstack config`)."""

    config: StackConfig
    path: Path | None
    origins: Mapping[str, str]  # dotted key -> "mlstack.yaml" / "MLSTACK_X" / "--set"


def valid_keys() -> list[str]:
    """Every dotted config key, e.g. `storage.port`."""
    keys = [k for k in TOP_LEVEL if k != "tls"] + ["tls", "tls.cert", "tls.key"]
    for section, cls in SECTIONS.items():
        for f in sorted(fields(cls), key=lambda f: f.name):
            name = f"{section}.{f.name}"
            keys += EXTERNAL_KEYS.get(name, [name])
    return keys


def _closest(key: str) -> str:
    match = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    if not match:
        # Compare the last part alone: "postgres.prot" -> "postgres.port".
        leaf = key.rsplit(".", 1)[-1]
        leaves = {
            k.rsplit(".", 1)[-1]: k for k in valid_keys() if k.startswith(key.rsplit(".", 1)[0])
        }
        found = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.5)
        match = [leaves[found[0]]] if found else []
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(valid_keys())}"


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _scalar(text: str) -> Any:
    """Type a value given as text (env or flag) the way YAML would: '9000' -> 9000."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (str, int, float, bool)) else text


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            keys += _flatten(value, dotted + ".")
        keys.append(dotted)
    return keys


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse mlstack.yaml into a mapping, with the line number of any syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist",
            "check the path given with --config or MLSTACK_CONFIG, or run `mlstack init` to write one",
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"cannot read config file {path}: {e}", "check the file's permissions"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{where}: malformed YAML: {problem}",
            "fix the YAML syntax on that line (indent with spaces, `key: value`)",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must be a mapping of keys (like `project: mlstack`), not a {type(data).__name__}",
            "see `mlstack init` for a commented example",
        )
    return data


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    sections = list(SECTIONS)
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        dotted = rest
        for section in sections:
            if rest.startswith(section + "_"):
                dotted = f"{section}.{rest[len(section) + 1 :]}"
                break
        for nested in NESTED_KEYS:  # MLSTACK_POSTGRES_EXTERNAL_HOST, MLSTACK_TLS_CERT
            under = nested.replace(".", "_") + "_"
            if rest.startswith(under) and rest != nested:
                dotted = f"{nested}.{rest[len(under) :]}"
                break
        _set_path(data, dotted, _scalar(raw))
        origins[dotted] = name
    return data, origins


def _flag_overrides(sets: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(c.isspace() or not c.isprintable() for c in key):
            raise ConfigError(
                f"--set {item!r} is not KEY=VALUE",
                "write it like --set mlflow.port=5051",
            )
        head, dot, rest = key.partition(".")
        if head in MAPPING_KEYS and dot and rest:
            # `--set labels.com.example.team=ml`: the rest is one key, the value stays text.
            data.setdefault(head, {})[rest] = raw
        else:
            _set_path(data, key, _scalar(raw))
        origins[key] = f"--set {key}"
    return data, origins


def _explain(error: ConfigProblems, origins: Mapping[str, str]) -> ConfigError:
    messages: list[str] = []
    for problem in error.problems:
        source = origins.get(problem.key)
        where = f" (from {source})" if source else ""
        # one line whatever the keys hold: a newline in a key is shown as \n
        key = (
            problem.key
            if problem.key.isprintable()
            else problem.key.encode("unicode_escape").decode()
        )
        text = (
            problem.text
            if problem.text.isprintable()
            else problem.text.encode("unicode_escape").decode()
        )
        if problem.unknown:
            messages.append(f"unknown key {key!r}{where}{_closest(key)}")
        else:
            messages.append(f"{text}{where}")
    first, rest = messages[0], messages[1:]
    return ConfigError(
        first + "".join(f"; also: {m}" for m in rest),
        "fix the key in mlstack.yaml, the MLSTACK_* variable or the --set flag named above; "
        "`mlstack config` shows the effective values",
    )


def default_config_path(env: Mapping[str, str], cwd: Path) -> tuple[Path | None, bool]:
    """The config file to read and whether it was named explicitly (then it must exist)."""
    named = env.get("MLSTACK_CONFIG")
    if named:
        return Path(named).expanduser(), True
    candidate = cwd / CONFIG_FILENAME
    return (candidate if candidate.is_file() else None), False


def _default_host(merged: dict[str, Any], origins: dict[str, str], env: Mapping[str, str]) -> None:
    """`host` unset and the engine remote: clients reach the stack at the engine's host."""
    if merged.get("host") is not None:
        return
    endpoint = resolve_endpoint(env)
    if endpoint.remote and endpoint.hostname:
        merged["host"] = endpoint.hostname
        origins["host"] = endpoint.source


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    sets: Sequence[str] = (),
    cwd: Path | None = None,
    project: str | None = None,
) -> LoadedConfig:
    """Build the effective config from every source; raises only ConfigError.

    `project` is the --project flag: it wins over everything, like a --set.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    if path is None:
        path, _ = default_config_path(env, cwd)
    file_data = read_config_file(path) if path is not None else {}
    origins = dict.fromkeys(_flatten(file_data), path.name) if path is not None else {}
    env_data, env_origins = _env_overrides(env)
    flag_data, flag_origins = _flag_overrides(sets)
    if project is not None:
        flag_data["project"], flag_origins["project"] = project, "--project"
    merged = _deep_merge(_deep_merge(file_data, env_data), flag_data)
    origins = {**origins, **env_origins, **flag_origins}
    _default_host(merged, origins, env)
    try:
        config = StackConfig.from_mapping(merged)
    except ConfigProblems as e:
        raise _explain(e, origins) from None
    except (TypeError, ValueError) as e:  # e.g. non-string keys in odd YAML
        raise ConfigError(
            f"invalid configuration: {e}", "see `mlstack init` for an example"
        ) from None
    return LoadedConfig(config=config, path=path, origins=origins)


def config_as_dict(config: StackConfig) -> dict[str, Any]:
    return config.as_dict()
