"""Create what MLflow needs inside the services, idempotently: the database and the bucket.

POSTGRES_DB only acts on a fresh volume, so the database is checked and created every time:
a volume that predates a config change still ends up with the configured database.
"""

from __future__ import annotations

from typing import Any

from mlstack.config import bucket_name_problem
from mlstack.errors import ProvisionError, StateError


def ensure_database(host: str, port: int, user: str, password: str, database: str) -> bool:
    """Create `database` unless it exists; True when created."""
    import psycopg2
    from psycopg2 import sql

    try:
        conn = psycopg2.connect(
            host=host.strip("[]"),
            port=port,
            user=user,
            password=password,
            dbname="postgres",
            connect_timeout=5,
        )
    except psycopg2.OperationalError as e:
        text = str(e)
        if "password authentication failed" in text:
            raise StateError(
                "PostgreSQL rejected the stack's password: its data volume was created with "
                "other credentials",
                "restore the secrets file that belongs to this volume, or reset everything "
                "with `mlstack down --purge`",
            ) from None
        raise ProvisionError(
            f"cannot connect to PostgreSQL to create the database: {text.strip()}",
            "see `mlstack logs postgres`",
        ) from None
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            return True
    except psycopg2.Error as e:
        if getattr(e, "pgcode", None) == "42P04":  # duplicate_database: created concurrently
            return False
        raise ProvisionError(
            f"creating database {database!r} failed: {str(e).strip()}",
            "see `mlstack logs postgres`",
        ) from None
    finally:
        conn.close()


def ensure_bucket(client: Any, bucket: str) -> bool:
    """Create `bucket` unless it exists; True when created. "Already owned" is success."""
    from botocore.exceptions import BotoCoreError, ClientError

    problem = bucket_name_problem(bucket)
    if problem:
        raise ProvisionError(problem, "set storage.bucket to a valid name")
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise StateError(
                f"the S3 server rejected the stack's keys ({code}): its data volume was created "
                "with other credentials",
                "restore the secrets file that belongs to this volume, or reset everything "
                "with `mlstack down --purge`",
            ) from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise ProvisionError(
                f"checking bucket {bucket!r} failed: {e}", "see `mlstack logs storage`"
            ) from None
    except BotoCoreError as e:
        raise ProvisionError(
            f"checking bucket {bucket!r} failed: {e}", "see `mlstack logs storage`"
        ) from None
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise ProvisionError(
            f"creating bucket {bucket!r} failed: {e}", "see `mlstack logs storage`"
        ) from None
    except BotoCoreError as e:
        raise ProvisionError(
            f"creating bucket {bucket!r} failed: {e}", "see `mlstack logs storage`"
        ) from None
    return True
