"""The stack's PostgreSQL: one way to connect, and what mlstack asks of it.

POSTGRES_DB only acts on a fresh volume, so databases are checked and created every time: a
volume that predates a config change still ends up with the configured database. Dumps and
restores run inside the postgres container (through the engine): one consistent snapshot, and
no PostgreSQL client needed on the host.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from mlstack.adapters.targets import PgTarget
from mlstack.engine import EngineAPI
from mlstack.errors import MlstackError, NotReady, ProvisionError, StateError

# Where artifact URIs live in MLflow's schema (tables absent in older schemas are skipped).
URI_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
)
WRONG_PASSWORD = (
    "PostgreSQL rejected the stack's password: its data volume was created with other credentials"
)
WRONG_PASSWORD_HINT = (
    "restore the secrets.env that belongs to this volume, or reset everything with "
    "`mlstack down --purge`"
)


def describe_error(error: Exception) -> str:
    """psycopg2's message, first line only (later lines repeat the host and port)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@contextmanager
def connect(target: PgTarget, timeout: float = 5.0) -> Iterator[Any]:
    """An autocommit connection. A wrong password is a StateError (waiting will not change the
    password in the volume); anything else that keeps us out is NotReady."""
    options: dict[str, Any] = {"sslmode": target.sslmode} if target.sslmode else {}
    try:
        conn = psycopg2.connect(
            host=target.host.strip("[]"),
            port=target.port,
            user=target.user,
            password=target.password,
            dbname=target.database,
            connect_timeout=max(1, int(timeout)),
            **options,
        )
    except psycopg2.OperationalError as e:
        raise _refused(target, e) from e
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        yield conn
    finally:
        conn.close()


def _refused(target: PgTarget, error: Exception) -> MlstackError:
    """Why a connection failed, as one error: the stack's own server, or a managed one."""
    wrong_password = "password authentication failed" in str(error)
    if not target.external:
        if wrong_password:
            return StateError(WRONG_PASSWORD, WRONG_PASSWORD_HINT, service="postgres")
        return NotReady(
            f"cannot connect to the stack's PostgreSQL at {target.where}: {describe_error(error)}",
            "see `mlstack status`; `mlstack up` starts it",
            service="postgres",
        )
    if wrong_password:
        return StateError(
            f"PostgreSQL at {target.where} rejected the password of user {target.user} "
            f"(from {target.external})",
            f"put user {target.user}'s password in {target.external}, or correct "
            "postgres.external.user",
            service="postgres",
        )
    text = describe_error(error)
    hint = (
        "check postgres.external (host, port) and that this machine and Docker's containers "
        "may reach it"
    )
    if "SSL" in text or "pg_hba.conf" in text:
        hint = (
            "set postgres.external.sslmode to what the server accepts, and check that its "
            f"pg_hba.conf admits user {target.user} from this machine and from Docker's networks"
        )
    return NotReady(
        f"cannot connect to the managed PostgreSQL at {target.where} as {target.user}: {text}",
        hint,
        service="postgres",
    )


def ping(target: PgTarget, timeout: float) -> None:
    """An authenticated query: what "PostgreSQL is usable" means."""
    with connect(target, timeout) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:  # cut off mid-query
            raise NotReady(f"PostgreSQL: {describe_error(e)}", service="postgres") from e


def ensure_database(target: PgTarget, database: str) -> bool:
    """Create `database` unless it exists; True when created."""
    try:
        with connect(target.on("postgres")) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            return True
    except NotReady as e:
        raise ProvisionError(
            f"cannot connect to PostgreSQL to create the database: {e.message}",
            "see `mlstack logs postgres`",
        ) from e
    except psycopg2.Error as e:
        if getattr(e, "pgcode", None) == "42P04":  # duplicate_database: created concurrently
            return False
        raise ProvisionError(
            f"creating database {database!r} failed: {str(e).strip()}",
            "see `mlstack logs postgres`",
        ) from e


def recreate_database(target: PgTarget, database: str) -> None:
    """Drop `database` (closing its sessions) and create it empty."""
    name = sql.Identifier(database)
    with connect(target.on("postgres")) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(name))


def schema_revision(target: PgTarget) -> str | None:
    """The alembic revision of MLflow's schema; None without a schema."""
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT version_num FROM alembic_version")
        row = cur.fetchone()
        return str(row[0]) if row else None


def content_counts(target: PgTarget) -> dict[str, int]:
    """What the database holds beyond a fresh MLflow schema (its Default experiment, id 0)."""
    queries = {  # what -> (table, query)
        "experiments": ("experiments", "SELECT count(*) FROM experiments WHERE experiment_id <> 0"),
        "runs": ("runs", "SELECT count(*) FROM runs"),
        "registered models": ("registered_models", "SELECT count(*) FROM registered_models"),
    }
    counts: dict[str, int] = {}
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {row[0] for row in cur.fetchall()}
        for what, (table, query) in queries.items():
            if table in tables:
                cur.execute(query)
                counts[what] = int(cur.fetchone()[0])
    return counts


def bucket_uri_count(target: PgTarget, bucket: str) -> int:
    """How many artifact URIs name `s3://<bucket>/` directly (the server's own are relative)."""
    total = 0
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
        present = {(t, c) for t, c in cur.fetchall()}
        for table, column in (pair for pair in URI_COLUMNS if pair in present):
            cur.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {} LIKE %s").format(
                    sql.Identifier(table), sql.Identifier(column)
                ),
                (f"s3://{bucket}/%",),
            )
            total += int(cur.fetchone()[0])
    return total


@dataclass(frozen=True)
class Deleted:
    """A run, experiment or logged model in MLflow's `deleted` lifecycle stage: what `mlflow gc`
    removes for good. `deleted_at` (ms) is the time MLflow's gc compares with --older-than:
    runs.deleted_time, experiments.last_update_time, logged_models.last_updated_timestamp_ms."""

    kind: str  # "run", "experiment" or "logged model"
    id: str
    name: str
    experiment_id: str
    artifact_uri: str  # "" for an experiment: gc deletes its runs' artifacts, not its location
    deleted_at: int | None
    experiment_deleted: bool = False  # a run's experiment is deleted too
    experiment_deleted_at: int | None = None


_DELETED = {
    "run": (
        "SELECT r.run_uuid, r.name, r.experiment_id, r.artifact_uri, r.deleted_time, "
        "e.lifecycle_stage = 'deleted', e.last_update_time "
        "FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        "WHERE r.lifecycle_stage = 'deleted' ORDER BY r.experiment_id, r.start_time, r.run_uuid"
    ),
    "experiment": (
        "SELECT experiment_id, name, experiment_id, '', last_update_time FROM experiments "
        "WHERE lifecycle_stage = 'deleted' ORDER BY experiment_id"
    ),
    "logged model": (
        "SELECT model_id, name, experiment_id, artifact_location, last_updated_timestamp_ms "
        "FROM logged_models WHERE lifecycle_stage = 'deleted' ORDER BY model_id"
    ),
}


def deleted(target: PgTarget) -> list[Deleted]:
    """Every run, experiment and logged model in the `deleted` stage (a schema without logged
    models, older than MLflow 3, has none)."""
    found: list[Deleted] = []
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.logged_models') IS NOT NULL")
        has_models = bool(cur.fetchone()[0])
        for kind, query in _DELETED.items():
            if kind == "logged model" and not has_models:
                continue
            cur.execute(query)
            for row in cur.fetchall():
                ident, name, experiment, uri, at, *rest = row
                found.append(
                    Deleted(kind, str(ident), name or "", str(experiment), uri or "", at, *rest)
                )
    return found


# --- inside the container -------------------------------------------------------------------


def _pg_env(target: PgTarget) -> dict[str, str]:
    env = {"PGPASSWORD": target.password, "PGUSER": target.user}
    if target.sslmode:
        env["PGSSLMODE"] = target.sslmode
    return env


def _last_line(output: str, code: int) -> str:
    lines = output.strip().splitlines()
    return lines[-1] if lines else f"exit code {code}"


def _tool_hint(output: str) -> str:
    if "server version mismatch" in output:
        return (
            "pg_dump must be as new as the server: set postgres.image to an image of the "
            "server's major version (or newer)"
        )
    return "see `mlstack logs postgres`"


@dataclass(frozen=True)
class Tools:
    """Where pg_dump and pg_restore run: a container, and the server's address from inside it
    (the stack's own over its loopback; a managed one by its own address, see pgtools.py)."""

    container: str
    host: str = "127.0.0.1"
    port: int = 5432

    def address(self) -> list[str]:
        return ["-h", self.host.strip("[]"), "-p", str(self.port)]


def dump(
    engine: EngineAPI,
    tools: Tools,
    target: PgTarget,
    dest: Path,
    scrub: Callable[[str], str],
) -> None:
    """`pg_dump -Fc` of `target`'s database, run inside the `tools` container (as `target`'s
    user), copied out to `dest`."""
    container = tools.container
    inside = f"/tmp/mlstack-backup-{os.getpid()}.dump"
    command = ["pg_dump", "-Fc", *tools.address(), "-d", target.database, "-f", inside]
    try:
        code, output = engine.exec(container, command, environment=_pg_env(target))
        if code != 0:
            raise MlstackError(
                f"pg_dump failed: {scrub(_last_line(output, code))}", _tool_hint(output)
            )
        engine.copy_out(container, inside, dest)
    finally:
        engine.exec(container, ["rm", "-f", inside])


def restore(
    engine: EngineAPI,
    tools: Tools,
    target: PgTarget,
    dump_file: Path,
    scrub: Callable[[str], str],
) -> None:
    """pg_restore `dump_file` into `target`'s database (made empty first, from here), in one
    transaction, inside the `tools` container."""
    recreate_database(target, target.database)
    container = tools.container
    directory, name = "/tmp", f"mlstack-restore-{os.getpid()}-{target.database}.dump"
    engine.copy_in(container, dump_file, directory, name)
    command = [
        "pg_restore",
        *tools.address(),
        "-d",
        target.database,
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        f"{directory}/{name}",
    ]
    try:
        code, output = engine.exec(container, command, environment=_pg_env(target))
    finally:
        engine.exec(container, ["rm", "-f", f"{directory}/{name}"])
    if code != 0:
        raise ProvisionError(
            f"pg_restore failed: {scrub(_last_line(output, code))}",
            _tool_hint(output) + "; run the restore again with --force",
        )


def databases(target: PgTarget) -> set[str]:
    """The names of every database of the server."""
    with connect(target.on("postgres")) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database")
        return {str(row[0]) for row in cur.fetchall()}


def rename_databases(target: PgTarget, renames: list[tuple[str, str]]) -> None:
    """Rename databases in one transaction: every rename happens, or none (a swap cannot be left
    half done). Sessions left on them (MLflow stopped, a client may linger) are closed."""
    with connect(target.on("postgres")) as conn:
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                    ([old for old, _ in renames],),
                )
                for old, new in renames:
                    cur.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                            sql.Identifier(old), sql.Identifier(new)
                        )
                    )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


def drop_database(target: PgTarget, database: str) -> None:
    with connect(target.on("postgres")) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
