"""The stack's one typed, validated configuration model (loading.py fills it from its sources).

Everything else (the compose file, the Docker calls, the probes, `mlstack env`) is derived from a
`StackConfig`; nothing reads the environment or the file again after `load_config`.

Plain frozen dataclasses checked by hand, not a pydantic model: building a pydantic model's
validators took 0.1 s at every start of every command, for a handful of keys. Each check reports
a `Problem` (the dotted key and what is wrong with it, to be told with the value's source); all
of them are collected, so one error line names every mistake at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mlstack import labels as label_keys

DEFAULT_IMAGES = {
    # MinIO's Docker Hub images are gone and the community edition is archived; quay.io still
    # serves the last release. SeaweedFS is the supported alternative.
    "minio": "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
    "seaweedfs": "chrislusf/seaweedfs:4.48",
}
ENGINES = ("minio", "seaweedfs")
# Port the S3 API listens on inside the storage container, per engine.
STORAGE_CONTAINER_PORT = {"minio": 9000, "seaweedfs": 8333}
PORT_RANGE = (1, 65535)
WORKERS_RANGE = (1, 16)

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_DATABASE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the config: `key` (dotted) and a text that starts with the key, or
    `unknown` for a key the config does not have (loading suggests the closest one)."""

    key: str
    text: str
    unknown: bool = False


class ConfigProblems(ValueError):
    """What `check` found wrong; loading tells each with the source of its value."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.text for p in problems))
        self.problems = problems


class _Checker:
    """Collects problems while typing the values of one mapping."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, key: str, text: str, *, unknown: bool = False) -> None:
        self.problems.append(Problem(key, text, unknown))

    def integer(self, key: str, value: Any, bounds: tuple[int, int]) -> int | None:
        if isinstance(value, float) and value % 1 == 0:  # 9000.0 from YAML
            value = int(value)
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)  # "5051" written in quotes: what the user meant
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"{key} must be a whole number, got {value!r}")
            return None
        low, high = bounds
        if not low <= value <= high:
            self.fail(key, f"{key} must be between {low} and {high}, got {value!r}")
            return None
        return value

    def text(
        self, key: str, value: Any, rule: Callable[[str], str | None] | None = None
    ) -> str | None:
        if not isinstance(value, str):
            self.fail(key, f"{key} must be text, got {value!r}")
            return None
        problem = rule(value) if rule else None
        if problem:
            self.fail(key, f"{key}: {problem}")
            return None
        return value

    def boolean(self, key: str, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        words = {
            "true": True,
            "yes": True,
            "on": True,
            "1": True,
            "false": False,
            "no": False,
            "off": False,
            "0": False,
        }
        if isinstance(value, (str, int)) and str(value).strip().lower() in words:
            return words[str(value).strip().lower()]
        self.fail(key, f"{key} must be true or false, got {value!r}")
        return None

    def choice(self, key: str, value: Any, allowed: tuple[str, ...]) -> str | None:
        if value not in allowed:
            names = " or ".join(repr(a) for a in allowed)
            self.fail(key, f"{key} must be one of {names}, got {value!r}")
            return None
        return str(value)

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigProblems(self.problems)


def image_problem(value: str) -> str | None:
    if not value.strip():
        return "must not be empty: name an image such as postgres:17"
    if not _IMAGE_RE.match(value.strip()):
        return f"{value!r} is not a valid image reference (like registry/name:tag)"
    return None


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


def _database_problem(value: str) -> str | None:
    if _DATABASE_RE.match(value):
        return None
    return (
        f"{value!r} is not a valid database name: use 1-63 lowercase letters, digits "
        "and underscores, starting with a letter or underscore"
    )


def _project_problem(value: str) -> str | None:
    if _PROJECT_RE.match(value):
        return None
    return (
        f"{value!r} is not a valid project name: use 1-40 lowercase letters, digits, "
        "'-' and '_', starting with a letter or digit"
    )


def _bind_problem(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return (
            f"{value!r} is not an IP address: use 127.0.0.1 (this machine only) "
            "or 0.0.0.0 (every interface)"
        )
    return None


def _unknown(check: _Checker, prefix: str, data: Mapping[str, Any], cls: type) -> None:
    known = {f.name for f in fields(cls) if not f.name.startswith("_")}
    for key in data:
        if key not in known:
            check.fail(f"{prefix}{key}", "unknown key", unknown=True)


@dataclass(frozen=True)
class StorageConfig:
    engine: str = "minio"
    image: str = DEFAULT_IMAGES["minio"]
    port: int = 9000
    console_port: int = 9001
    bucket: str = "mlflow"

    @property
    def container_port(self) -> int:
        return STORAGE_CONTAINER_PORT[self.engine]

    @classmethod
    def checked(cls, data: Mapping[str, Any], check: _Checker) -> StorageConfig:
        _unknown(check, "storage.", data, cls)
        engine = check.choice("storage.engine", data.get("engine", "minio"), ENGINES) or "minio"
        image = data.get("image")
        image = (
            DEFAULT_IMAGES[engine]
            if image is None
            else check.text("storage.image", image, image_problem)
        )
        return cls(
            engine=engine,
            image=(image or "").strip() or DEFAULT_IMAGES[engine],
            port=check.integer("storage.port", data.get("port", 9000), PORT_RANGE) or 9000,
            console_port=check.integer(
                "storage.console_port", data.get("console_port", 9001), PORT_RANGE
            )
            or 9001,
            bucket=check.text("storage.bucket", data.get("bucket", "mlflow"), bucket_name_problem)
            or "mlflow",
        )


@dataclass(frozen=True)
class PostgresConfig:
    image: str = "postgres:17"
    port: int = 5432
    database: str = "mlflow"

    @classmethod
    def checked(cls, data: Mapping[str, Any], check: _Checker) -> PostgresConfig:
        _unknown(check, "postgres.", data, cls)
        image = check.text("postgres.image", data.get("image", cls.image), image_problem)
        return cls(
            image=(image or cls.image).strip(),
            port=check.integer("postgres.port", data.get("port", 5432), PORT_RANGE) or 5432,
            database=check.text(
                "postgres.database", data.get("database", "mlflow"), _database_problem
            )
            or "mlflow",
        )


@dataclass(frozen=True)
class MlflowConfig:
    image: str = "ghcr.io/mlflow/mlflow:v3.17.2-full"
    port: int = 5050  # not 5000: macOS AirPlay holds 5000
    workers: int = 1

    @classmethod
    def checked(cls, data: Mapping[str, Any], check: _Checker) -> MlflowConfig:
        _unknown(check, "mlflow.", data, cls)
        image = check.text("mlflow.image", data.get("image", cls.image), image_problem)
        return cls(
            image=(image or cls.image).strip(),
            port=check.integer("mlflow.port", data.get("port", 5050), PORT_RANGE) or 5050,
            workers=check.integer("mlflow.workers", data.get("workers", 1), WORKERS_RANGE) or 1,
        )


SECTIONS: dict[str, type[StorageConfig] | type[PostgresConfig] | type[MlflowConfig]] = {
    "storage": StorageConfig,
    "postgres": PostgresConfig,
    "mlflow": MlflowConfig,
}
TOP_LEVEL = ("project", "bind", "auth", "labels")


@dataclass(frozen=True)
class StackConfig:
    project: str = "mlstack"
    bind: str = "127.0.0.1"
    # MLflow's basic-auth app: a login for the UI and the API (admin credentials in secrets.env).
    # Top level, beside `bind`: together they say who can reach the stack and who can use it.
    auth: bool = False
    storage: StorageConfig = field(default_factory=StorageConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    # Extra labels on every container, network and volume of the stack (e.g. a team or cost
    # centre), as compose's `labels:`; mlstack's own (io.mlstack.*) are always set besides.
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """`StackConfig(storage={"port": 9100})` works like the file (sections may be given as
        mappings), and no config exists without its checks passing (ConfigProblems)."""
        checked = StackConfig.from_mapping({f.name: getattr(self, f.name) for f in fields(self)})
        for f in fields(self):
            object.__setattr__(self, f.name, getattr(checked, f.name))

    def _as_mapping(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in TOP_LEVEL}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> StackConfig:
        """Type and check every value of `data` (the merged sources); ConfigProblems with every
        problem found otherwise."""
        check = _Checker()
        for key in data:
            if key not in TOP_LEVEL and key not in SECTIONS:
                check.fail(str(key), "unknown key", unknown=True)
        sections: dict[str, Any] = {}
        for name, section in SECTIONS.items():
            raw = data.get(name, {})
            if isinstance(raw, section):
                sections[name] = raw
            elif isinstance(raw, Mapping):
                sections[name] = section.checked(raw, check)
            else:
                check.fail(name, f"{name} must be a mapping of keys, got {raw!r}")
                sections[name] = section()
        project = check.text("project", data.get("project", "mlstack"), _project_problem)
        bind = check.text("bind", data.get("bind", "127.0.0.1"), _bind_problem)
        config = cls.__new__(cls)
        values = {
            "project": project or "mlstack",
            "bind": str(ipaddress.ip_address(bind)) if bind else "127.0.0.1",
            "auth": bool(check.boolean("auth", data.get("auth", False))),
            "labels": _labels(check, data.get("labels", {})),
            **sections,
        }
        for name, value in values.items():
            object.__setattr__(config, name, value)
        check.raise_if_any()
        problems = _cross_checks(config)
        if problems:
            raise ConfigProblems(problems)
        return config

    def published_ports(self) -> dict[str, int]:
        """Every host port the stack publishes, by the config key that sets it."""
        ports = {"storage.port": self.storage.port}
        if self.storage.engine == "minio":
            ports["storage.console_port"] = self.storage.console_port
        ports["postgres.port"] = self.postgres.port
        ports["mlflow.port"] = self.mlflow.port
        return ports

    def as_dict(self) -> dict[str, Any]:
        """The config as plain data (JSON and YAML ready), sections nested."""
        data: dict[str, Any] = {k: v for k, v in self._as_mapping().items() if k != "labels"}
        for name in SECTIONS:
            section = getattr(self, name)
            data[name] = {f.name: getattr(section, f.name) for f in fields(section)}
        data["labels"] = dict(self.labels)
        return data

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


def _labels(check: _Checker, raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        check.fail("labels", f"labels must be a mapping of keys, got {raw!r}")
        return {}
    found: dict[str, str] = {}
    for key, value in raw.items():
        name = f"labels.{key}"
        if not isinstance(key, str) or label_keys.key_problem(key):
            check.fail(name, f"labels: {label_keys.key_problem(str(key))}")
        elif check.text(name, value) is not None:
            found[key] = value
    return found


def _cross_checks(config: StackConfig) -> list[Problem]:
    seen: dict[int, str] = {}
    problems = []
    for key, port in config.published_ports().items():
        if port in seen:
            text = f"{key} and {seen[port]} are both {port}: give each its own port"
            problems.append(Problem("", text))
        seen[port] = key
    return problems
