"""The stack's one typed, validated configuration: defaults < mlstack.yaml < MLSTACK_* env < flags.

Everything else (the compose file, the Docker calls, the probes, `mlstack env`) is derived from a
`StackConfig`; nothing reads the environment or the file again after `load_config`.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlstack.errors import ConfigError

CONFIG_FILENAME = "mlstack.yaml"
ENV_PREFIX = "MLSTACK_"
# MLSTACK_* variables that are not config keys.
RESERVED_ENV = {"MLSTACK_CONFIG", "MLSTACK_STATE_DIR", "MLSTACK_DEBUG"}

DEFAULT_IMAGES = {
    # MinIO's Docker Hub images are gone and the community edition is archived; quay.io still
    # serves the last release. SeaweedFS is the supported alternative.
    "minio": "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
    "seaweedfs": "chrislusf/seaweedfs:4.48",
}
# Port the S3 API listens on inside the storage container, per engine.
STORAGE_CONTAINER_PORT = {"minio": 9000, "seaweedfs": 8333}

Port = Annotated[int, Field(ge=1, le=65535)]

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_DATABASE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


def _check_image(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty: name an image such as postgres:17")
    if not _IMAGE_RE.match(value):
        raise ValueError(f"{value!r} is not a valid image reference (like registry/name:tag)")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Section):
    engine: Literal["minio", "seaweedfs"] = "minio"
    image: str = ""
    port: Port = 9000
    console_port: Port = 9001
    bucket: str = "mlflow"

    @model_validator(mode="before")
    @classmethod
    def _default_image_per_engine(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("image") is None:
            engine = data.get("engine", "minio")
            if engine in DEFAULT_IMAGES:
                return {**data, "image": DEFAULT_IMAGES[engine]}
        return data

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _check_image(value)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        problem = bucket_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def container_port(self) -> int:
        return STORAGE_CONTAINER_PORT[self.engine]


class PostgresConfig(_Section):
    image: str = "postgres:17"
    port: Port = 5432
    database: str = "mlflow"

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _check_image(value)

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        if not _DATABASE_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid database name: use 1-63 lowercase letters, digits "
                "and underscores, starting with a letter or underscore"
            )
        return value


class MlflowConfig(_Section):
    image: str = "ghcr.io/mlflow/mlflow:v3.17.2-full"
    port: Port = 5050  # not 5000: macOS AirPlay holds 5000
    workers: Annotated[int, Field(ge=1, le=16)] = 1

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _check_image(value)


class StackConfig(_Section):
    project: str = "mlstack"
    bind: str = "127.0.0.1"
    # MLflow's basic-auth app: a login for the UI and the API (admin credentials in secrets.env).
    # Top level, beside `bind`: together they say who can reach the stack and who can use it.
    auth: bool = False
    storage: StorageConfig = StorageConfig()
    postgres: PostgresConfig = PostgresConfig()
    mlflow: MlflowConfig = MlflowConfig()

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if not _PROJECT_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid project name: use 1-40 lowercase letters, digits, "
                "'-' and '_', starting with a letter or digit"
            )
        return value

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address: use 127.0.0.1 (this machine only) "
                "or 0.0.0.0 (every interface)"
            ) from None

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackConfig:
        seen: dict[int, str] = {}
        for key, port in self.published_ports().items():
            if port in seen:
                raise ValueError(f"{key} and {seen[port]} are both {port}: give each its own port")
            seen[port] = key
        return self

    def published_ports(self) -> dict[str, int]:
        """Every host port the stack publishes, by the config key that sets it."""
        ports = {"storage.port": self.storage.port}
        if self.storage.engine == "minio":
            ports["storage.console_port"] = self.storage.console_port
        ports["postgres.port"] = self.postgres.port
        ports["mlflow.port"] = self.mlflow.port
        return ports

    @property
    def client_host(self) -> str:
        """The address a client on this machine uses to reach a published port."""
        if self.bind in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return f"[{self.bind}]" if ":" in self.bind else self.bind

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.client_host}:{self.mlflow.port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.client_host}:{self.storage.port}"

    @property
    def auth_database(self) -> str:
        """The database MLflow's basic-auth app keeps its users and permissions in."""
        return f"{self.postgres.database[:58]}_auth"

    @property
    def exposed(self) -> bool:
        """True when ports are published beyond this machine."""
        return not ipaddress.ip_address(self.bind).is_loopback


def bucket_name_problem(name: str) -> str | None:
    """Why `name` breaks S3's bucket naming rules, or None when it is valid."""
    rule = (
        "use 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter "
        "or digit"
    )
    if not _BUCKET_RE.match(name):
        return f"{name!r} is not a valid S3 bucket name: {rule}"
    if ".." in name or ".-" in name or "-." in name:
        return f"{name!r} is not a valid S3 bucket name: no '..', '.-' or '-.'"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return f"{name!r} is not a valid S3 bucket name: it must not look like an IP address"
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        return f"{name!r} is not a valid S3 bucket name: reserved prefix or suffix"
    return None


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedConfig:
    """A config and where it came from (for messages and `mlstack config`)."""

    config: StackConfig
    path: Path | None
    origins: Mapping[str, str]  # dotted key -> "mlstack.yaml" / "MLSTACK_X" / "--set"


def _section_fields() -> dict[str, set[str]]:
    return {
        name: set(field.annotation.model_fields)
        for name, field in StackConfig.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


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
        if not sep or not key:
            raise ConfigError(
                f"--set {item!r} is not KEY=VALUE",
                "write it like --set mlflow.port=5051",
            )
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
        loc = ".".join(str(p) for p in err["loc"])
        source = origins.get(loc)
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
