"""Backups of a stack's data (database and bucket) into one archive, and restoring them.

An archive is a .tar.gz holding, in this order: `manifest.json` (what it is and a sha256 of every
member), `database.dump` (`pg_dump -Fc`, taken inside the postgres container: one consistent
snapshot) and `objects/<key>` for every object of the bucket, listed after the snapshot so every
artifact of a run in the dump is in the archive. Restoring validates the whole archive before it
changes anything. Nothing here prints: progress goes to an Event callback.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlstack import __version__
from mlstack.engine import Engine
from mlstack.errors import ArchiveError, Conflict, MlstackError, NotRunning, ProvisionError
from mlstack.health import MlflowProbe, s3_client, wait_ready
from mlstack.services import LABEL_SERVICE
from mlstack.stack import Event, Reporter, Stack, _quiet, not_running
from mlstack.upgrade import ImageRecord, previous_image, read_record, record_image

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE = "database.dump"
OBJECTS = "objects/"
COMPRESS_LEVEL = 1  # pg_dump -Fc is compressed already, artifacts mostly are: speed wins
# Where artifact URIs live in MLflow's schema (tables absent in older schemas are skipped).
URI_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
)


# --- the manifest (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One member of the archive besides the manifest."""

    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectEntry(Entry):
    key: str


@dataclass(frozen=True)
class Manifest:
    format: int
    mlstack_version: str
    project: str
    database: str
    bucket: str
    mlflow_image: str
    mlflow_image_id: str
    alembic_revision: str | None
    created_at: str
    dump: Entry
    objects: list[ObjectEntry] = field(default_factory=list)
    bucket_uris: int = 0  # artifact URIs in the database that name s3://<bucket> directly

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @property
    def object_bytes(self) -> int:
        return sum(o.size for o in self.objects)


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ArchiveError(f"the archive's manifest has no valid {name!r}")
    return value


def _entry(data: Any, what: str) -> tuple[int, str]:
    if not isinstance(data, Mapping):
        raise ArchiveError(f"the archive's manifest has no valid {what}")
    size, digest = data.get("size"), data.get("sha256")
    if not isinstance(size, int) or size < 0 or not isinstance(digest, str) or len(digest) != 64:
        raise ArchiveError(f"the archive's manifest has no valid size and sha256 for {what}")
    return size, digest


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest of an archive, validated: a bad one raises ArchiveError naming what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ArchiveError("the archive's manifest is not JSON") from None
    if not isinstance(data, dict):
        raise ArchiveError("the archive's manifest is not a JSON object")
    version = _field(data, "format", int)
    if version != FORMAT:
        newer = " (written by a newer mlstack: upgrade mlstack)" if version > FORMAT else ""
        raise ArchiveError(f"unknown archive format {version}, this mlstack reads {FORMAT}{newer}")
    objects: list[ObjectEntry] = []
    seen: set[str] = set()
    for item in _field(data, "objects", list):
        key = item.get("key") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key or key in seen:
            raise ArchiveError("the archive's manifest lists an object without a key, or twice")
        seen.add(key)
        size, digest = _entry(item, f"object {key!r}")
        objects.append(ObjectEntry(size, digest, key))
    revision = data.get("alembic_revision")
    if revision is not None and not isinstance(revision, str):
        raise ArchiveError("the archive's manifest has no valid 'alembic_revision'")
    return Manifest(
        format=version,
        mlstack_version=_field(data, "mlstack_version", str),
        project=_field(data, "project", str),
        database=_field(data, "database", str),
        bucket=_field(data, "bucket", str),
        mlflow_image=_field(data, "mlflow_image", str),
        mlflow_image_id=_field(data, "mlflow_image_id", str),
        alembic_revision=revision,
        created_at=_field(data, "created_at", str),
        dump=Entry(*_entry(data.get("dump"), "the database dump")),
        objects=objects,
        bucket_uris=int(data.get("bucket_uris") or 0),
    )


def utc_stamp(now: datetime | None = None) -> str:
    """UTC time as in archive names: 20261128T020304Z."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def default_name(project: str, now: datetime | None = None) -> str:
    return f"mlstack-{project}-{utc_stamp(now)}.tar.gz"


# --- the database ------------------------------------------------------------------------------


@contextmanager
def connect(stack: Stack, dbname: str | None = None) -> Iterator[Any]:
    """An autocommit connection to the stack's PostgreSQL from the host."""
    import psycopg2

    c, s = stack.config, stack.secrets
    try:
        conn = psycopg2.connect(
            host=c.client_host.strip("[]"),
            port=c.postgres.port,
            user=s.POSTGRES_USER,
            password=s.POSTGRES_PASSWORD,
            dbname=dbname or c.postgres.database,
            connect_timeout=5,
        )
    except psycopg2.OperationalError as e:
        raise NotRunning(
            f"cannot connect to the stack's PostgreSQL: {str(e).strip().splitlines()[0]}",
            "run `mlstack up`",
        ) from None
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def schema_revision(stack: Stack) -> str | None:
    """The alembic revision of MLflow's schema in the stack's database; None without a schema."""
    with connect(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT version_num FROM alembic_version")
        row = cur.fetchone()
        return str(row[0]) if row else None


def _existing_columns(cur: Any, pairs: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    cur.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public'"
    )
    present = {(t, c) for t, c in cur.fetchall()}
    return [p for p in pairs if p in present]


def content_counts(stack: Stack) -> dict[str, int]:
    """What the database holds beyond a fresh MLflow schema (its Default experiment, id 0)."""
    queries = {  # what -> (table, query)
        "experiments": ("experiments", "SELECT count(*) FROM experiments WHERE experiment_id <> 0"),
        "runs": ("runs", "SELECT count(*) FROM runs"),
        "registered models": ("registered_models", "SELECT count(*) FROM registered_models"),
    }
    counts: dict[str, int] = {}
    with connect(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {row[0] for row in cur.fetchall()}
        for what, (table, query) in queries.items():
            if table in tables:
                cur.execute(query)
                counts[what] = int(cur.fetchone()[0])
    return counts


def bucket_uri_count(stack: Stack, bucket: str) -> int:
    """How many artifact URIs name `s3://<bucket>/` directly (the server's own are relative)."""
    from psycopg2 import sql

    total = 0
    with connect(stack) as conn, conn.cursor() as cur:
        for table, column in _existing_columns(cur, URI_COLUMNS):
            cur.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {} LIKE %s").format(
                    sql.Identifier(table), sql.Identifier(column)
                ),
                (f"s3://{bucket}/%",),
            )
            total += int(cur.fetchone()[0])
    return total


def _pg_env(stack: Stack) -> dict[str, str]:
    return {"PGPASSWORD": stack.secrets.POSTGRES_PASSWORD, "PGUSER": stack.secrets.POSTGRES_USER}


def dump_database(stack: Stack, engine: Engine, dest: Path) -> None:
    """`pg_dump -Fc` inside the postgres container (one snapshot), copied out to `dest`."""
    container = stack.service("postgres").container_name
    inside = f"/tmp/mlstack-backup-{os.getpid()}.dump"
    try:
        code, output = engine.exec(
            container,
            [
                "pg_dump",
                "-Fc",
                "-h",
                "127.0.0.1",
                "-d",
                stack.config.postgres.database,
                "-f",
                inside,
            ],
            environment=_pg_env(stack),
        )
        if code != 0:
            raise MlstackError(
                f"pg_dump failed: {stack.scrub(output).strip().splitlines()[-1:]}",
                "see `mlstack logs postgres`",
            )
        engine.copy_out(container, inside, dest)
    finally:
        engine.exec(container, ["rm", "-f", inside])


def restore_database(stack: Stack, engine: Engine, dump: Path) -> None:
    """Drop and recreate the database, then pg_restore the dump inside the postgres container."""
    from psycopg2 import sql

    database = stack.config.postgres.database
    with connect(stack, "postgres") as conn, conn.cursor() as cur:
        name = sql.Identifier(database)
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(name))
    container = stack.service("postgres").container_name
    directory, name_inside = "/tmp", f"mlstack-restore-{os.getpid()}.dump"
    engine.copy_in(container, dump, directory, name_inside)
    try:
        code, output = engine.exec(
            container,
            [
                "pg_restore",
                "-h",
                "127.0.0.1",
                "-d",
                database,
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"{directory}/{name_inside}",
            ],
            environment=_pg_env(stack),
        )
    finally:
        engine.exec(container, ["rm", "-f", f"{directory}/{name_inside}"])
    if code != 0:
        lines = stack.scrub(output).strip().splitlines()
        raise ProvisionError(
            f"pg_restore failed: {lines[-1] if lines else f'exit code {code}'}",
            "see `mlstack logs postgres`; run the restore again with --force",
        )


# --- the bucket --------------------------------------------------------------------------------


def _s3(stack: Stack) -> Any:
    s = stack.secrets
    return s3_client(stack.config.s3_endpoint, s.S3_ACCESS_KEY, s.S3_SECRET_KEY, timeout=120.0)


def list_keys(client: Any, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_objects(client: Any, bucket: str, workdir: Path) -> list[tuple[ObjectEntry, Path]]:
    keys = list_keys(client, bucket)

    def fetch(index_key: tuple[int, str]) -> tuple[ObjectEntry, Path]:
        index, key = index_key
        path = workdir / f"object-{index}"
        client.download_file(bucket, key, str(path))
        return ObjectEntry(path.stat().st_size, sha256_file(path), key), path

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(fetch, enumerate(keys)))


def empty_bucket(client: Any, bucket: str) -> None:
    keys = list_keys(client, bucket)
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def upload_objects(client: Any, bucket: str, files: Mapping[str, Path]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kv: client.upload_file(str(kv[1]), bucket, kv[0]), files.items()))


# --- backup ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    objects: int
    object_bytes: int
    seconds: float
    manifest: Manifest


def _require_data_services(stack: Stack, engine: Engine, command: str) -> None:
    for name in ("postgres", "storage"):
        info = engine.inspect(stack.service(name).container_name)
        if info is None or not info.running:
            raise not_running(stack.config, command)


def _write_archive(
    path: Path, manifest: Manifest, dump: Path, objects: list[tuple[ObjectEntry, Path]], force: bool
) -> None:
    """Write the archive beside `path` under a temporary name, then move it in place (0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w:gz", compresslevel=COMPRESS_LEVEL) as tar,
        ):
            data = manifest.to_json()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for name, source in [(DATABASE, dump)] + [(OBJECTS + o.key, p) for o, p in objects]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = source.stat().st_size, 0o600, int(time.time())
                with open(source, "rb") as f:
                    tar.addfile(info, f)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o600)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # never clobbers: fails when `path` appeared meanwhile
            except FileExistsError:
                raise Conflict(
                    f"{path} already exists", "choose another -o, or add --force"
                ) from None
            tmp.unlink()
    finally:
        tmp.unlink(missing_ok=True)


def create_backup(
    stack: Stack,
    engine: Engine,
    output: Path | None = None,
    *,
    directory: Path | None = None,
    force: bool = False,
    image: ImageRecord | None = None,
    report: Reporter = _quiet,
) -> BackupResult:
    """Archive the stack's database and bucket into `output` (default: a dated name in `directory`,
    else the current directory).

    `image` is the MLflow image that last ran against the database (default: the recorded one,
    else the existing container's); a restore migrates when the stack runs another.
    """
    started = time.monotonic()
    config = stack.config
    path = output or (directory or Path.cwd()) / default_name(config.project)
    if path.exists() and not force:
        raise Conflict(f"{path} already exists", "choose another -o, or add --force to replace it")
    if not path.parent.is_dir():
        raise ArchiveError(f"{path.parent} is not a directory", "create it, or choose another -o")
    _require_data_services(stack, engine, "backup")
    mlflow = engine.inspect(stack.service("mlflow").container_name)
    image = image or previous_image(read_record(stack.state), mlflow) or ImageRecord("", "")
    with tempfile.TemporaryDirectory(prefix="mlstack-backup-") as tmp:
        work = Path(tmp)
        report(Event("step", message="dumping the database (pg_dump)"))
        dump = work / DATABASE
        dump_database(stack, engine, dump)
        revision = schema_revision(stack)
        uris = bucket_uri_count(stack, config.storage.bucket)
        report(Event("step", message=f"downloading the objects of bucket {config.storage.bucket}"))
        objects = download_objects(_s3(stack), config.storage.bucket, work)
        manifest = Manifest(
            format=FORMAT,
            mlstack_version=__version__,
            project=config.project,
            database=config.postgres.database,
            bucket=config.storage.bucket,
            mlflow_image=image.image,
            mlflow_image_id=image.image_id,
            alembic_revision=revision,
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            dump=Entry(dump.stat().st_size, sha256_file(dump)),
            objects=[o for o, _ in objects],
            bucket_uris=uris,
        )
        report(Event("step", message=f"writing {path}"))
        _write_archive(path, manifest, dump, objects, force)
    return BackupResult(
        path,
        path.stat().st_size,
        len(objects),
        manifest.object_bytes,
        time.monotonic() - started,
        manifest,
    )


# --- restore -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extracted:
    manifest: Manifest
    dump: Path
    objects: dict[str, Path]


def read_archive(path: Path, workdir: Path) -> Extracted:
    """Unpack and verify an archive into `workdir` (never by member name): every member known,
    present once, of the size and sha256 the manifest says. Raises ArchiveError otherwise."""
    try:
        return _read_archive(path, workdir)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError) and e.filename == str(path):
            raise ArchiveError(f"{path} does not exist", "give the path of a backup") from None
        raise ArchiveError(
            f"{path} is not a readable mlstack backup (corrupt or truncated: {e})",
            "use another backup; nothing was changed",
        ) from None


def _read_archive(path: Path, workdir: Path) -> Extracted:
    manifest: Manifest | None = None
    expected: dict[str, Entry] = {}
    files: dict[str, Path] = {}
    with tarfile.open(path, mode="r|gz") as tar:
        for index, member in enumerate(tar):
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise ArchiveError(f"{path}: unexpected member {member.name!r}")
            if manifest is None:
                if member.name != MANIFEST or member.size > 64 << 20:
                    raise ArchiveError(f"{path} is not an mlstack backup (no manifest first)")
                manifest = parse_manifest(source.read())
                expected = {DATABASE: manifest.dump}
                expected.update({OBJECTS + o.key: o for o in manifest.objects})
                continue
            entry = expected.get(member.name)
            if entry is None or member.name in files:
                raise ArchiveError(f"{path}: member {member.name!r} is not in its manifest")
            target = workdir / f"member-{index}"
            digest = hashlib.sha256()
            with open(target, "wb") as out:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if target.stat().st_size != entry.size or digest.hexdigest() != entry.sha256:
                raise ArchiveError(
                    f"{path}: {member.name} does not match its checksum (the archive is corrupt)",
                    "use another backup; nothing was changed",
                )
            files[member.name] = target
    if manifest is None:
        raise ArchiveError(f"{path} is empty: not an mlstack backup")
    missing = sorted(set(expected) - set(files))
    if missing:
        raise ArchiveError(
            f"{path} lacks {len(missing)} member(s) of its manifest, e.g. {missing[0]} "
            "(truncated?)",
            "use another backup; nothing was changed",
        )
    objects = {o.key: files[OBJECTS + o.key] for o in manifest.objects}
    return Extracted(manifest, files[DATABASE], objects)


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    source_project: str
    created_at: str
    objects: int
    object_bytes: int
    migrated: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)


def refuse_if_not_empty(stack: Stack, client: Any) -> None:
    counts = {k: v for k, v in content_counts(stack).items() if v}
    has_objects = bool(
        client.list_objects_v2(Bucket=stack.config.storage.bucket, MaxKeys=1).get("KeyCount")
    )
    if counts or has_objects:
        held = [f"{n} {what}" for what, n in counts.items()]
        if has_objects:
            held.append(f"objects in bucket {stack.config.storage.bucket}")
        raise Conflict(
            f"the stack {stack.config.project!r} is not empty ({', '.join(held)}): a restore "
            "would replace its data",
            "restore into a fresh stack, or add --force to replace everything it holds",
        )


def restore(
    stack: Stack,
    engine: Engine,
    archive: Path,
    *,
    force: bool = False,
    timeout: float = 300.0,
    report: Reporter = _quiet,
) -> RestoreResult:
    """Replace the stack's database and bucket with the archive's, then restart MLflow.

    Checks everything first (running stack, valid archive, empty target unless `force`);
    only then stops MLflow, so a refused restore changes nothing.
    """
    started = time.monotonic()
    config = stack.config
    if not archive.is_file():
        raise ArchiveError(
            f"{archive} does not exist or is not a file", "give the path of a backup"
        )
    mlflow_name = stack.service("mlflow").container_name
    mlflow = engine.inspect(mlflow_name)
    if mlflow is None or not mlflow.running:
        raise not_running(config, "restore")
    _require_data_services(stack, engine, "restore")
    with tempfile.TemporaryDirectory(prefix="mlstack-restore-") as tmp:
        report(Event("step", message=f"verifying {archive}"))
        extracted = read_archive(archive, Path(tmp))
        manifest = extracted.manifest
        if manifest.bucket != config.storage.bucket and manifest.bucket_uris:
            raise ArchiveError(
                f"{manifest.bucket_uris} artifact URIs in the archive name bucket "
                f"{manifest.bucket!r} directly, the stack's bucket is {config.storage.bucket!r}",
                f"set storage.bucket: {manifest.bucket} in mlstack.yaml and run `mlstack up` "
                "first; nothing was changed",
            )
        client = _s3(stack)
        if not force:
            refuse_if_not_empty(stack, client)
        report(Event("step", message="stopping mlflow"))
        engine.stop(mlflow_name, 10.0)
        report(Event("step", message="restoring the database (pg_restore)"))
        restore_database(stack, engine, extracted.dump)
        report(Event("step", message=f"restoring {len(extracted.objects)} objects"))
        empty_bucket(client, config.storage.bucket)
        upload_objects(client, config.storage.bucket, extracted.objects)
    migrated = False
    if manifest.alembic_revision is not None and manifest.mlflow_image_id != mlflow.image_id:
        report(Event("step", message=f"migrating the restored database with {mlflow.image}"))
        try:
            migrate(stack, engine, mlflow.image_id or mlflow.image)
        except MigrationFailed as e:
            e.hint = (
                f"the archive was written with {manifest.mlflow_image}: set mlflow.image to it, "
                "run `mlstack up`, then restore again with --force"
            )
            raise
        migrated = True
    report(Event("step", message="starting mlflow"))
    engine.start(mlflow_name)
    ready = wait_ready([MlflowProbe("mlflow", config.tracking_uri)], timeout=timeout)
    report(Event("ready", service="mlflow", seconds=ready.get("mlflow")))
    record_image(stack.state, mlflow.image, mlflow.image_id)
    warnings = []
    if manifest.bucket != config.storage.bucket:
        warnings.append(
            f"the archive's bucket was {manifest.bucket!r}; its objects are now in "
            f"{config.storage.bucket!r}"
        )
    return RestoreResult(
        archive,
        manifest.project,
        manifest.created_at,
        len(manifest.objects),
        manifest.object_bytes,
        migrated,
        time.monotonic() - started,
        warnings,
    )


# --- migrations ----------------------------------------------------------------------------


class MigrationFailed(ProvisionError):
    """`mlflow db upgrade` exited non-zero; `last_line` is the gist of its log."""

    def __init__(self, image: str, last_line: str) -> None:
        super().__init__(f"`mlflow db upgrade` with {image} failed: {last_line}")
        self.last_line = last_line


def migrate(stack: Stack, engine: Engine, image: str, timeout: float = 600.0) -> None:
    """Run `mlflow db upgrade` with `image` in a one-shot container on the stack's network.

    The backend URI (with its password) reaches the container in its environment only, like the
    server's, never on its command line.
    """
    spec = stack.service("mlflow")
    labels = dict(stack.spec.labels)
    labels[LABEL_SERVICE] = "migrate"
    code, tail = engine.run_once(
        image,
        ["sh", "-c", 'exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"'],
        name=f"{stack.config.project}-mlflow-migrate",
        network=stack.spec.network,
        environment=spec.environment,
        labels=labels,
        timeout=timeout,
    )
    if code != 0:
        lines = [line.strip() for line in stack.scrub(tail).splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {code}"
        if code == -1:
            last = f"no result after {timeout:.0f}s ({last})"
        raise MigrationFailed(image, last)
