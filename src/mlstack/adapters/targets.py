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

    def on(self, database: str) -> PgTarget:
        return replace(self, database=database)


@dataclass(frozen=True)
class S3Target:
    """An S3 API endpoint and the keys to it."""

    endpoint: str
    access_key: str
    secret_key: str
