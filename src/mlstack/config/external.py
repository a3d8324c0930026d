"""Services the stack uses but does not run: a managed PostgreSQL and a managed S3 bucket.

With `postgres.external` or `storage.external`, mlstack runs no container for that service and
points MLflow at the given one. Secrets never live in the config: a password or key is named by
the environment variable or file that holds it (read when a command needs it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from mlstack.config.checks import PORT_RANGE, Checker, unknown_keys

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
ADDRESSING_STYLES = ("path", "virtual", "auto")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def host_problem(value: str) -> str | None:
    if _HOST_RE.match(value):
        return None
    return f"{value!r} is not a host name or IP address (like db.example.com or 10.0.0.5)"


def _env_name_problem(value: str) -> str | None:
    if _ENV_NAME_RE.match(value):
        return None
    return f"{value!r} is not an environment variable name (like PGPASSWORD)"


def _secret_source(
    check: Checker, prefix: str, data: Mapping[str, Any], env_key: str, file_key: str
) -> tuple[str | None, str | None]:
    env = data.get(env_key)
    file = data.get(file_key)
    env_name = None if env is None else check.text(prefix + env_key, env, _env_name_problem)
    file_path = None if file is None else check.text(prefix + file_key, file)
    if env_name and file_path:
        check.fail(prefix + file_key, f"{prefix}{env_key} and {prefix}{file_key}: give one")
    return env_name, file_path


@dataclass(frozen=True)
class ExternalPostgres:
    """A PostgreSQL server run elsewhere (RDS, Cloud SQL, a team's own): the database name is
    `postgres.database` (or the path of `uri`)."""

    host: str
    port: int = 5432
    user: str = "mlflow"
    # The password: from this environment variable (PGPASSWORD, libpq's own, unless a file
    # is named) or from the first line of this file.
    password_env: str | None = "PGPASSWORD"
    password_file: str | None = None
    sslmode: str = "prefer"  # libpq's default

    @property
    def password_source(self) -> str:
        return f"file {self.password_file}" if self.password_file else f"${self.password_env}"

    @classmethod
    def checked(
        cls, data: Mapping[str, Any], check: Checker
    ) -> tuple[ExternalPostgres | None, str | None]:
        """The external server and the database the config names in it (from `uri`), if any."""
        prefix = "postgres.external."
        unknown_keys(check, prefix, data, _PostgresKeys)
        values = dict(data)
        database = None
        if "uri" in values:
            parsed = _postgres_uri(check, values.pop("uri"))
            if parsed is None:
                return None, None
            parsed.update({k: v for k, v in values.items() if k not in parsed})
            database = parsed.pop("database", None)
            values = parsed
        host = (
            check.text(prefix + "host", values.get("host"), host_problem)
            if ("host" in values)
            else None
        )
        if host is None:
            if "host" not in values:
                check.fail(prefix + "host", f"{prefix}host (or {prefix}uri) is required")
            return None, None
        env_name, file_path = _secret_source(check, prefix, values, "password_env", "password_file")
        sslmode = check.choice(prefix + "sslmode", values.get("sslmode", "prefer"), SSL_MODES)
        user = check.text(prefix + "user", values.get("user", "mlflow"))
        port = check.integer(prefix + "port", values.get("port", 5432), PORT_RANGE)
        external = cls(
            host=host.strip("[]"),
            port=port or 5432,
            user=user or "mlflow",
            password_env=None if file_path else (env_name or "PGPASSWORD"),
            password_file=file_path,
            sslmode=sslmode or "prefer",
        )
        return external, database


@dataclass(frozen=True)
class _PostgresKeys:
    """Every key `postgres.external` accepts (uri is parsed into the others)."""

    uri: str = ""
    host: str = ""
    port: int = 0
    user: str = ""
    password_env: str = ""
    password_file: str = ""
    sslmode: str = ""


def _postgres_uri(check: Checker, value: Any) -> dict[str, Any] | None:
    key = "postgres.external.uri"
    text = check.text(key, value)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        check.fail(key, f"{key}: {text!r} is not a URI like postgresql://user@host:5432/mlflow")
        return None
    if parts.password is not None:
        check.fail(
            key,
            f"{key} must not carry the password: put it in an environment variable "
            "(postgres.external.password_env, default PGPASSWORD) or a file (password_file)",
        )
        return None
    found: dict[str, Any] = {"host": parts.hostname}
    try:
        if parts.port is not None:
            found["port"] = parts.port
    except ValueError:
        check.fail(key, f"{key}: the port in {text!r} is not a number between 1 and 65535")
        return None
    if parts.username:
        found["user"] = unquote(parts.username)
    if parts.path.strip("/"):
        found["database"] = unquote(parts.path.strip("/"))
    sslmode = parse_qs(parts.query).get("sslmode")
    if sslmode:
        found["sslmode"] = sslmode[0]
    return found


@dataclass(frozen=True)
class ExternalStorage:
    """An S3 API run elsewhere (AWS S3, GCS's S3 API, a company MinIO): the bucket is
    `storage.bucket` (or `bucket` here)."""

    endpoint: str  # https://s3.eu-west-1.amazonaws.com, http://minio.internal:9000
    region: str = "us-east-1"
    addressing_style: str = "path"
    access_key_env: str | None = "AWS_ACCESS_KEY_ID"
    secret_key_env: str | None = "AWS_SECRET_ACCESS_KEY"
    access_key_file: str | None = None
    secret_key_file: str | None = None

    @property
    def key_sources(self) -> tuple[str, str]:
        access = (
            f"file {self.access_key_file}" if self.access_key_file else f"${self.access_key_env}"
        )
        secret = (
            f"file {self.secret_key_file}" if self.secret_key_file else f"${self.secret_key_env}"
        )
        return access, secret

    @classmethod
    def checked(
        cls, data: Mapping[str, Any], check: Checker
    ) -> tuple[ExternalStorage | None, str | None]:
        """The external S3 API and the bucket the config names here, if any."""
        prefix = "storage.external."
        unknown_keys(check, prefix, data, _StorageKeys)
        endpoint = check.text(prefix + "endpoint", data.get("endpoint"), _endpoint_problem)
        access_env, access_file = _secret_source(
            check, prefix, data, "access_key_env", "access_key_file"
        )
        secret_env, secret_file = _secret_source(
            check, prefix, data, "secret_key_env", "secret_key_file"
        )
        region = check.text(prefix + "region", data.get("region", "us-east-1"))
        style = check.choice(
            prefix + "addressing_style", data.get("addressing_style", "path"), ADDRESSING_STYLES
        )
        bucket = data.get("bucket")
        bucket = None if bucket is None else check.text(prefix + "bucket", bucket)
        if endpoint is None:
            return None, bucket
        return (
            cls(
                endpoint=endpoint.rstrip("/"),
                region=region or "us-east-1",
                addressing_style=style or "path",
                access_key_env=None if access_file else (access_env or "AWS_ACCESS_KEY_ID"),
                secret_key_env=None if secret_file else (secret_env or "AWS_SECRET_ACCESS_KEY"),
                access_key_file=access_file,
                secret_key_file=secret_file,
            ),
            bucket,
        )


@dataclass(frozen=True)
class _StorageKeys:
    """Every key `storage.external` accepts."""

    endpoint: str = ""
    bucket: str = ""
    region: str = ""
    addressing_style: str = ""
    access_key_env: str = ""
    secret_key_env: str = ""
    access_key_file: str = ""
    secret_key_file: str = ""


def _endpoint_problem(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname and not parts.username:
        return None
    if parts.username:
        return "must not carry credentials: name them with access_key_env/secret_key_env"
    return f"{value!r} is not a URL like https://s3.eu-west-1.amazonaws.com or http://host:9000"


EXTERNAL_KEYS = {
    "postgres.external": [f"postgres.external.{k}" for k in _PostgresKeys.__dataclass_fields__],
    "storage.external": [f"storage.external.{k}" for k in _StorageKeys.__dataclass_fields__],
}
