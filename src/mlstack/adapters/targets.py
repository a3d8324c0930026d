"""Where the stack's data services are and as whom to reach them: plain data, no client library,
so that what only names them (the project context, the probes) imports neither psycopg2 nor
boto3."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class PgTarget:
    """A PostgreSQL database: where, and as whom to connect."""

    host: str
    port: int
    user: str
    password: str
    database: str
    sslmode: str | None = None  # None: libpq's default
    # A managed server (postgres.external): where its password comes from ("$PGPASSWORD",
    # "file /run/secrets/pg"), for messages; "" for the stack's own.
    external: str = ""

    def on(self, database: str) -> PgTarget:
        return replace(self, database=database)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class S3Target:
    """An S3 API endpoint and the keys to it."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    addressing_style: str = "path"
    # A managed S3 API (storage.external): where its keys come from, for messages; "" for the
    # stack's own.
    external: str = ""
