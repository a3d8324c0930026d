"""The stack's one typed, validated configuration model (loading.py fills it from its sources).

Everything else (the compose file, the Docker calls, the probes, `mlstack env`) is derived from a
`StackConfig`; nothing reads the environment or the file again after `load_config`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from mlstack import labels as label_keys

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


Image = Annotated[str, AfterValidator(_check_image)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Section):
    engine: Literal["minio", "seaweedfs"] = "minio"
    image: Image = ""
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
    image: Image = "postgres:17"
    port: Port = 5432
    database: str = "mlflow"

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
    image: Image = "ghcr.io/mlflow/mlflow:v3.17.2-full"
    port: Port = 5050  # not 5000: macOS AirPlay holds 5000
    workers: Annotated[int, Field(ge=1, le=16)] = 1


class StackConfig(_Section):
    project: str = "mlstack"
    bind: str = "127.0.0.1"
    # MLflow's basic-auth app: a login for the UI and the API (admin credentials in secrets.env).
    # Top level, beside `bind`: together they say who can reach the stack and who can use it.
    auth: bool = False
    storage: StorageConfig = StorageConfig()
    postgres: PostgresConfig = PostgresConfig()
    mlflow: MlflowConfig = MlflowConfig()
    # Extra labels on every container, network and volume of the stack (e.g. a team or cost
    # centre), as compose's `labels:`; mlstack's own (io.mlstack.*) are always set besides.
    labels: dict[str, str] = Field(default_factory=dict)

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

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            problem = label_keys.key_problem(key)
            if problem:
                raise ValueError(problem)
        return value

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
