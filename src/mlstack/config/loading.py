"""Loading the config from its sources: defaults < mlstack.yaml < MLSTACK_* env < --set flags.

Every failure is one ConfigError naming the key, the value and the source it came from.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from mlstack.config.model import StackConfig
from mlstack.errors import ConfigError

CONFIG_FILENAME = "mlstack.yaml"
ENV_PREFIX = "MLSTACK_"
# MLSTACK_* variables that are not config keys.
RESERVED_ENV = {"MLSTACK_CONFIG", "MLSTACK_STATE_DIR", "MLSTACK_DEBUG"}
# Keys whose value is a mapping of free-form keys (label keys contain dots themselves).
MAPPING_KEYS = ("labels",)


@dataclass(frozen=True)
class LoadedConfig:
    """A config and where it came from (for messages and `mlstack config`)."""

    config: StackConfig
    path: Path | None
    origins: Mapping[str, str]  # dotted key -> "mlstack.yaml" / "MLSTACK_X" / "--set"


def _section_fields() -> dict[str, set[str]]:
    sections: dict[str, set[str]] = {}
    for name, field in StackConfig.model_fields.items():
        kind = field.annotation
        # get_origin: `dict[str, str]` passes isinstance(..., type) on Python 3.10
        if isinstance(kind, type) and get_origin(kind) is None and issubclass(kind, BaseModel):
            sections[name] = set(kind.model_fields)
    return sections


def valid_keys() -> list[str]:
    """Every dotted config key, e.g. `storage.port`."""
    sections = _section_fields()
    keys = [k for k in StackConfig.model_fields if k not in sections]
    for section, fields in sections.items():
        keys += [f"{section}.{f}" for f in sorted(fields)]
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
    sections = _section_fields()
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


def _bounds(dotted: str) -> tuple[Any, Any]:
    """The (ge, le) bounds declared on a field, for range messages."""
    model: type[BaseModel] = StackConfig
    *parents, leaf = dotted.split(".")
    for part in parents:
        model = model.model_fields[part].annotation  # type: ignore[assignment]
    low = high = None
    for item in model.model_fields[leaf].metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    return low, high


def _explain(error: ValidationError, origins: Mapping[str, str]) -> ConfigError:
    messages: list[str] = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"])
        source = origins.get(key)
        # one line whatever the keys hold: a newline in a key is shown as \n
        loc = key if key.isprintable() else key.encode("unicode_escape").decode()
        where = f" (from {source})" if source else ""
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            messages.append(f"unknown key {loc!r}{where}{_closest(loc)}")
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            messages.append(f"{loc} must be a whole number, got {value!r}{where}")
        elif kind in ("greater_than_equal", "less_than_equal"):
            low, high = _bounds(loc)
            messages.append(f"{loc} must be between {low} and {high}, got {value!r}{where}")
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            messages.append(f"{loc} must be one of {expected}, got {value!r}{where}")
        elif kind in ("bool_parsing", "bool_type"):
            messages.append(f"{loc} must be true or false, got {value!r}{where}")
        elif kind in ("string_type",):
            messages.append(f"{loc} must be text, got {value!r}{where}")
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            messages.append(f"{loc} must be a mapping of keys, got {value!r}{where}")
        elif kind == "value_error":
            text = str(err["msg"]).removeprefix("Value error, ")
            messages.append(f"{loc}: {text}{where}" if loc else f"{text}{where}")
        else:
            messages.append(f"{loc}: {err['msg']}, got {value!r}{where}")
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
    try:
        config = StackConfig.model_validate(merged)
    except ValidationError as e:
        raise _explain(e, origins) from None
    except (TypeError, ValueError) as e:  # e.g. non-string keys in odd YAML
        raise ConfigError(
            f"invalid configuration: {e}", "see `mlstack init` for an example"
        ) from None
    return LoadedConfig(config=config, path=path, origins=origins)


def config_as_dict(config: StackConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")
