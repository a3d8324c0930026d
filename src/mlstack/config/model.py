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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mlstack import labels as label_keys
from mlstack.config.checks import (
    PORT_RANGE,
    Checker,
    ConfigProblems,
    Problem,
    bucket_name_problem,
    image_problem,
    unknown_keys,
)
from mlstack.config.exposure import TlsConfig, exposure_problems
from mlstack.config.external import ExternalPostgres, ExternalStorage, host_problem
from mlstack.config.swarm import (
    TARGETS,
    SwarmConfig,
    default_replicas,
    replicas_problems,
    tls_problems,
)

DEFAULT_IMAGES = {
    # MinIO's Docker Hub images are gone and the community edition is archived; quay.io still
    # serves the last release. SeaweedFS is the supported alternative.
    "minio": "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
    "seaweedfs": "chrislusf/seaweedfs:4.48",
}
ENGINES = ("minio", "seaweedfs")
# Port the S3 API listens on inside the storage container, per engine.
STORAGE_CONTAINER_PORT = {"minio": 9000, "seaweedfs": 8333}
WORKERS_RANGE = (1, 16)

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_DATABASE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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


@dataclass(frozen=True)
class StorageConfig:
    engine: str = "minio"
    image: str = DEFAULT_IMAGES["minio"]
    port: int = 9000
    console_port: int = 9001
    bucket: str = "mlflow"
    # A managed S3 API: then the stack runs no storage container (config/external.py).
    external: ExternalStorage | None = None

    @property
    def container_port(self) -> int:
        return STORAGE_CONTAINER_PORT[self.engine]

    @classmethod
    def checked(cls, data: Mapping[str, Any], check: Checker) -> StorageConfig:
        unknown_keys(check, "storage.", data, cls)
        engine = check.choice("storage.engine", data.get("engine", "minio"), ENGINES) or "minio"
        image = data.get("image")
        image = (
            DEFAULT_IMAGES[engine]
            if image is None
            else check.text("storage.image", image, image_problem)
        )
        external, bucket = _external(check, "storage", data, ExternalStorage)
        return cls(
            engine=engine,
            external=external,
            image=(image or "").strip() or DEFAULT_IMAGES[engine],
            port=check.integer("storage.port", data.get("port", 9000), PORT_RANGE) or 9000,
            console_port=check.integer(
                "storage.console_port", data.get("console_port", 9001), PORT_RANGE
            )
            or 9001,
            bucket=check.text(
                "storage.external.bucket" if bucket else "storage.bucket",
                bucket or data.get("bucket", "mlflow"),
                bucket_name_problem,
            )
            or "mlflow",
        )


@dataclass(frozen=True)
class PostgresConfig:
    image: str = "postgres:17"
    port: int = 5432
    database: str = "mlflow"
    # A managed PostgreSQL: then the stack runs no database container (config/external.py).
    external: ExternalPostgres | None = None

    @classmethod
    def checked(cls, data: Mapping[str, Any], check: Checker) -> PostgresConfig:
        unknown_keys(check, "postgres.", data, cls)
        image = check.text("postgres.image", data.get("image", cls.image), image_problem)
        external, database = _external(check, "postgres", data, ExternalPostgres)
        if database is not None:
            data = {**data, "database": database}
        return cls(
            external=external,
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
    # Tasks of the MLflow service on a swarm; None until the target is known (2 there, 1 else).
    replicas: int | None = None

    @classmethod
    def checked(cls, data: Mapping[str, Any], check: Checker) -> MlflowConfig:
        unknown_keys(check, "mlflow.", data, cls)
        image = check.text("mlflow.image", data.get("image", cls.image), image_problem)
        replicas = data.get("replicas")
        if replicas is not None:  # its range is checked with the target (config/swarm.py)
            replicas = check.integer("mlflow.replicas", replicas, (-(2**31), 2**31))
        return cls(
            image=(image or cls.image).strip(),
            port=check.integer("mlflow.port", data.get("port", 5050), PORT_RANGE) or 5050,
            workers=check.integer("mlflow.workers", data.get("workers", 1), WORKERS_RANGE) or 1,
            replicas=replicas,
        )


SECTIONS: dict[
    str, type[StorageConfig] | type[PostgresConfig] | type[MlflowConfig] | type[SwarmConfig]
] = {
    "storage": StorageConfig,
    "postgres": PostgresConfig,
    "mlflow": MlflowConfig,
    "swarm": SwarmConfig,
}
TOP_LEVEL: tuple[str, ...] = ("project", "target", "bind", "host", "auth")
TOP_LEVEL += ("allow_unauthenticated", "tls", "labels")


def _external(check: Checker, section: str, data: Mapping[str, Any], cls: Any) -> tuple[Any, Any]:
    """`<section>.external` typed (or kept when already typed), with the name it may carry."""
    raw = data.get("external")
    if raw is None or isinstance(raw, cls):
        return raw, None
    if not isinstance(raw, Mapping):
        check.fail(
            f"{section}.external", f"{section}.external must be a mapping of keys, got {raw!r}"
        )
        return None, None
    return cls.checked(raw, check)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class StackConfig:
    project: str = "mlstack"
    # Where the stack runs: containers on one engine, or services on a Docker Swarm.
    target: str = "local"
    bind: str = "127.0.0.1"
    # MLflow's basic-auth app: a login for the UI and the API (admin credentials in secrets.env).
    # Top level, beside `bind`: together they say who can reach the stack and who can use it.
    auth: bool = False
    # The name clients (and mlstack's probes) reach the published ports by: 127.0.0.1 for a
    # local engine, the server's name for a remote one (loading fills it from the engine).
    host: str | None = None
    # Opting out of "nothing exposed beyond the machine without a login" (bind not loopback
    # and auth off), for a network the user trusts.
    allow_unauthenticated: bool = False
    tls: TlsConfig = field(default_factory=TlsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
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
        check = Checker()
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
        host = data.get("host")
        host = None if host is None else check.text("host", host, host_problem)
        target = check.choice("target", data.get("target", "local"), TARGETS) or "local"
        mlflow: MlflowConfig = sections["mlflow"]
        if mlflow.replicas is None:
            sections["mlflow"] = replace(mlflow, replicas=default_replicas(target))
        config = cls.__new__(cls)
        values = {
            "project": project or "mlstack",
            "target": target,
            "bind": str(ipaddress.ip_address(bind)) if bind else "127.0.0.1",
            "auth": bool(check.boolean("auth", data.get("auth", False))),
            "host": host.strip("[]") if host else None,
            "allow_unauthenticated": bool(
                check.boolean("allow_unauthenticated", data.get("allow_unauthenticated", False))
            ),
            "tls": TlsConfig.checked(data.get("tls", False), check),
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
        ports: dict[str, int] = {}
        if self.storage.external is None:
            ports["storage.port"] = self.storage.port
            if self.storage.engine == "minio":
                ports["storage.console_port"] = self.storage.console_port
        if self.postgres.external is None:
            ports["postgres.port"] = self.postgres.port
        ports["mlflow.port"] = self.mlflow.port
        return ports

    def as_dict(self) -> dict[str, Any]:
        """The config as plain data (JSON and YAML ready), sections nested."""
        data: dict[str, Any] = {
            k: v for k, v in self._as_mapping().items() if k not in ("labels", "tls")
        }
        data["tls"] = self.tls.as_dict()
        for name in SECTIONS:
            section = getattr(self, name)
            data[name] = {f.name: getattr(section, f.name) for f in fields(section)}
            external = data[name].get("external")
            if external is not None:
                data[name]["external"] = {
                    f.name: getattr(external, f.name) for f in fields(external)
                }
        data["labels"] = dict(self.labels)
        return data

    @property
    def client_host(self) -> str:
        """The address a client uses to reach a published port: `host` when set."""
        if self.host:
            return f"[{self.host}]" if ":" in self.host else self.host
        if self.bind in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return f"[{self.bind}]" if ":" in self.bind else self.bind

    @property
    def tracking_uri(self) -> str:
        scheme = "https" if self.tls.enabled else "http"
        return f"{scheme}://{self.client_host}:{self.mlflow.port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.private_host}:{self.storage.port}"

    @property
    def private_bind(self) -> str:
        """Where PostgreSQL, S3 (and its console) and served models are published: `bind` when
        it is loopback, else this machine's loopback: only MLflow's port goes beyond it."""
        if not self.exposed:
            return self.bind
        return "::1" if ipaddress.ip_address(self.bind).version == 6 else "127.0.0.1"

    @property
    def private_host(self) -> str:
        """The address a client on this machine reaches the privately published ports by."""
        if not self.exposed:
            return self.client_host
        return f"[{self.private_bind}]" if ":" in self.private_bind else self.private_bind

    @property
    def auth_database(self) -> str:
        """The database MLflow's basic-auth app keeps its users and permissions in."""
        return f"{self.postgres.database[:58]}_auth"

    @property
    def exposed(self) -> bool:
        """True when ports are published beyond this machine: always on a swarm, whose
        published MLflow port answers on other nodes' addresses whatever `bind` says."""
        return self.swarm_target or not ipaddress.ip_address(self.bind).is_loopback

    @property
    def swarm_target(self) -> bool:
        return self.target == "swarm"


def _labels(check: Checker, raw: Any) -> dict[str, str]:
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
    problems += replicas_problems(config.target, config.mlflow.replicas)
    problems += tls_problems(config.target, config.tls.enabled)
    problems += exposure_problems(
        exposed=config.exposed,
        auth=config.auth,
        allow_unauthenticated=config.allow_unauthenticated,
    )
    return problems
