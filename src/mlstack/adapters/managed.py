"""A managed PostgreSQL and S3 API (postgres.external, storage.external): what mlstack may do
there, checked before it does it, and said exactly when it may not.

mlstack does not own these servers: it creates the database and the bucket only when they are
missing and its user or keys have the right to, and otherwise names the missing right and the
command that grants it (one line, nothing changed). In a managed bucket it touches only MLflow's
objects (`mlflow_key`): other objects there are never read, written or deleted.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError
from psycopg2 import sql

from mlstack.adapters import postgres, s3
from mlstack.adapters.targets import PgTarget, S3Target
from mlstack.errors import (
    MlstackError,
    NotReady,
    ProvisionError,
    ServiceUnhealthy,
    StateError,
)

# The server's artifact root is the bucket itself: every object MLflow writes there (runs,
# logged models, traces) is under the id of its experiment.
_MLFLOW_KEY = re.compile(r"^\d+/")
_MAINTENANCE = ("postgres", "template1")  # where to look when the database is missing
_INSUFFICIENT_PRIVILEGE = "42501"
_WRONG_REGION = (
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
    "IllegalLocationConstraintException",
)


def mlflow_key(key: str) -> bool:
    """Whether a key of a managed bucket is MLflow's (under an experiment id)."""
    return bool(_MLFLOW_KEY.match(key))


def _unreachable(error: NotReady) -> ServiceUnhealthy:
    return ServiceUnhealthy(error.message, error.hint, service=error.service)


# --- PostgreSQL ----------------------------------------------------------------------------------


def _may_create_databases(cur: Any) -> bool:
    cur.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
    row = cur.fetchone()
    return bool(row and row[0])


def _missing_createdb(target: PgTarget, database: str, why: str) -> ProvisionError:
    user = target.user
    return ProvisionError(
        f"{why} and user {user} may not create databases (CREATEDB)",
        f"create it (CREATE DATABASE {database} OWNER {user}) or grant CREATEDB "
        f"(ALTER ROLE {user} CREATEDB)",
    )


def database_missing(target: PgTarget, database: str) -> bool:
    """Whether `database` must be created; raises (one line, the right named) when it exists
    but MLflow could not use it, or when it is missing and may not be created."""
    try:
        with postgres.connect(target.on(database)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT to_regclass('public.alembic_version') IS NOT NULL, "
                "has_schema_privilege('public', 'CREATE')"
            )
            schema, may_create_tables = cur.fetchone()
    except psycopg2.Error as e:  # e.g. no schema public there
        raise ProvisionError(
            f"checking database {database} on {target.where} failed: {postgres.describe_error(e)}",
            "MLflow keeps its tables in the schema public of that database",
        ) from e
    except NotReady as e:
        text = str(e.__cause__ or e)
        if f'database "{database}" does not exist' in text:
            _check_createdb(target, database)
            return True
        if "permission denied for database" in text:
            raise ProvisionError(
                f"user {target.user} may not connect to database {database} on "
                f"{target.where} (CONNECT)",
                f"GRANT CONNECT ON DATABASE {database} TO {target.user}",
            ) from e
        raise _unreachable(e) from e
    if not schema and not may_create_tables:
        raise ProvisionError(
            f"user {target.user} may not create MLflow's tables in database {database} on "
            f"{target.where} (CREATE on schema public)",
            f"GRANT CREATE ON SCHEMA public TO {target.user} in {database}, or make "
            f"{target.user} the database's owner",
        )
    return False


def _check_createdb(target: PgTarget, database: str) -> None:
    why = f"the database {database} does not exist on {target.where}"
    for maintenance in _MAINTENANCE:
        try:
            with postgres.connect(target.on(maintenance)) as conn, conn.cursor() as cur:
                if not _may_create_databases(cur):
                    raise _missing_createdb(target, database, why)
                return
        except NotReady:
            continue
    raise ProvisionError(
        f"{why}, and user {target.user} may connect to none of "
        f"{', '.join(_MAINTENANCE)} to create it",
        f"create it (CREATE DATABASE {database} OWNER {target.user})",
    )


def create_database(target: PgTarget, database: str) -> None:
    """CREATE DATABASE on the managed server (its rights checked by `database_missing`)."""
    why = f"the database {database} does not exist on {target.where}"
    for maintenance in _MAINTENANCE:
        try:
            with postgres.connect(target.on(maintenance)) as conn, conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                return
        except NotReady:
            continue
        except psycopg2.Error as e:
            if getattr(e, "pgcode", None) == "42P04":  # created meanwhile
                return
            if getattr(e, "pgcode", None) == _INSUFFICIENT_PRIVILEGE:
                raise _missing_createdb(target, database, why) from e
            raise ProvisionError(
                f"creating database {database} on {target.where} failed: "
                f"{postgres.describe_error(e)}",
                "create it by hand, then run `mlstack up` again",
            ) from e
    raise ProvisionError(
        f"{why}, and user {target.user} may connect to none of {', '.join(_MAINTENANCE)} "
        "to create it",
        f"create it (CREATE DATABASE {database} OWNER {target.user})",
    )


def restore_problem(target: PgTarget, databases: list[str]) -> str | None:
    """What keeps a restore from staging beside `databases` and switching to them on a managed
    server (it creates databases and renames the stack's own): None when nothing does."""
    with postgres.connect(target.on(databases[0])) as conn, conn.cursor() as cur:
        if not _may_create_databases(cur):
            return f"user {target.user} may not create databases (CREATEDB)"
        cur.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s) AND NOT "
            "pg_has_role(current_user, datdba, 'MEMBER')",
            (databases,),
        )
        foreign = [str(row[0]) for row in cur.fetchall()]
    if foreign:
        return f"user {target.user} does not own {', '.join(foreign)} (a rename needs the owner)"
    return None


# --- S3 ------------------------------------------------------------------------------------------


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _keys_rejected(target: S3Target, code: str) -> StateError:
    if code == "InvalidAccessKeyId":
        what = f"S3 at {target.endpoint} does not know the access key"
    else:
        what = f"the secret key does not match the access key at {target.endpoint}"
    return StateError(
        f"{what} ({code}; keys from {target.external})",
        "put the right keys there, or correct storage.external.access_key_env / secret_key_env",
        service="storage",
    )


def ensure_bucket(target: S3Target, bucket: str) -> bool:
    """Create `bucket` on a managed S3 API when it is missing and the keys may; True when
    created. One line naming the missing right otherwise."""
    client = s3.client(target)
    where = f"bucket {bucket} at {target.endpoint}"
    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        return False
    except ClientError as e:
        listing = _code(e)
        if listing in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise _keys_rejected(target, listing) from e
        if listing not in ("NoSuchBucket", "AccessDenied", "403", "404"):
            hint = "check storage.external"
            if listing in _WRONG_REGION:
                hint = "set storage.external.region to the bucket's region"
            raise ProvisionError(f"listing {where} failed: {e}", hint) from e
    except BotoCoreError as e:
        raise _s3_unreachable(target, e) from e
    return _create_bucket(client, target, bucket, listing)


def _s3_unreachable(target: S3Target, error: Exception) -> ServiceUnhealthy:
    return ServiceUnhealthy(
        f"cannot reach the managed S3 API at {target.endpoint}: {error}",
        "check storage.external.endpoint and that this machine and Docker's containers may "
        "reach it",
        service="storage",
    )


def _create_bucket(client: Any, target: S3Target, bucket: str, listing: str) -> bool:
    options: dict[str, Any] = {}
    if target.region != "us-east-1":  # AWS wants the region named, except for its first one
        options["CreateBucketConfiguration"] = {"LocationConstraint": target.region}
    try:
        client.create_bucket(Bucket=bucket, **options)
    except ClientError as e:
        raise _not_created(target, bucket, listing, _code(e), e) from e
    except BotoCoreError as e:
        raise _s3_unreachable(target, e) from e
    return True


def _not_created(
    target: S3Target, bucket: str, listing: str, code: str, error: Exception
) -> MlstackError:
    at = f"at {target.endpoint}"
    use = "s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject"
    if code == "BucketAlreadyOwnedByYou":
        if listing in ("NoSuchBucket", "404"):
            return ProvisionError(
                f"bucket {bucket} {at} appeared while up checked it", "run up again"
            )
        return ProvisionError(
            f"the keys own bucket {bucket} {at} but may not list it (AccessDenied on "
            "ListObjectsV2)",
            f"grant the keys {use} on it",
        )
    if code == "BucketAlreadyExists":
        return ProvisionError(
            f"bucket name {bucket} is taken {at} (BucketAlreadyExists: another account owns it)",
            "choose another storage.bucket",
        )
    if code in ("AccessDenied", "403"):
        if listing in ("NoSuchBucket", "404"):
            return ProvisionError(
                f"bucket {bucket} does not exist {at} and the keys may not create it "
                "(AccessDenied on CreateBucket)",
                "create it, or grant the keys s3:CreateBucket",
            )
        return ProvisionError(
            f"the keys may not use bucket {bucket} {at} (AccessDenied on ListObjectsV2) nor "
            "create it (AccessDenied on CreateBucket): it may not exist",
            f"create it and grant the keys {use} on it, or grant s3:CreateBucket",
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return _keys_rejected(target, code)
    return ProvisionError(
        f"creating bucket {bucket} {at} failed: {error}", "check storage.external"
    )
