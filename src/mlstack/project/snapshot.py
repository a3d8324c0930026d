"""Taking a backup of a project's data: `mlstack backup`, and `up` before it migrates.

The dump is taken first (one consistent snapshot, by pg_dump inside the postgres container, or in
a container of its image for a managed server), the bucket is listed after it, so every artifact
of a run in the dump is in the archive. In a managed bucket only MLflow's objects are taken.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlstack import __version__
from mlstack.adapters import managed, postgres, s3
from mlstack.adapters.archive import (
    DATABASE,
    FORMAT,
    Manifest,
    ObjectEntry,
    entry_for,
    utc_now_iso,
    write_archive,
)
from mlstack.adapters.postgres import Tools
from mlstack.engine import EngineAPI
from mlstack.project.context import Project
from mlstack.project.pgtools import pg_tools
from mlstack.project.reporting import Event, Reporter, Result
from mlstack.state import ImageRecord


@dataclass(frozen=True)
class BackupResult(Result):
    path: Path
    size: int
    objects: int
    object_bytes: int
    seconds: float
    manifest: Manifest

    @property
    def output(self) -> str:
        return str(self.path)


def _auth_dump(project: Project, engine: EngineAPI, tools: Tools, work: Path) -> Path | None:
    """With `auth: true`, MLflow's users and permissions (`<database>_auth`) too."""
    auth = project.config.auth_database
    if not project.config.auth or auth not in postgres.databases(project.postgres()):
        return None
    dest = work / "auth.dump"
    postgres.dump(engine, tools, project.postgres().on(auth), dest, project.scrub)
    return dest


def object_keys(project: Project) -> list[str] | None:
    """The keys a backup or restore handles: every one of the stack's own bucket (None), only
    MLflow's in a managed one (other objects there are not the stack's)."""
    if project.config.storage.external is None:
        return None
    keys = s3.list_keys(project.s3(), project.config.storage.bucket)
    return [key for key in keys if managed.mlflow_key(key)]


def take_backup(
    project: Project,
    engine: EngineAPI,
    path: Path,
    *,
    image: ImageRecord,
    force: bool,
    report: Reporter,
) -> BackupResult:
    """Archive the project's database and bucket into `path` (checked by the caller).

    `image` is the MLflow image that last ran against the database: a restore into a stack of
    another image migrates.
    """
    started = time.monotonic()
    config = project.config
    bucket = config.storage.bucket
    with tempfile.TemporaryDirectory(prefix="mlstack-backup-") as tmp:
        work = Path(tmp)
        report(Event("step", message="dumping the database (pg_dump)"))
        dump = work / DATABASE
        with pg_tools(project, engine, report) as tools:
            postgres.dump(engine, tools, project.postgres(), dump, project.scrub)
            auth_dump = _auth_dump(project, engine, tools, work)
        revision = postgres.schema_revision(project.postgres())
        uris = postgres.bucket_uri_count(project.postgres(), bucket)
        report(Event("step", message=f"downloading the objects of bucket {bucket}"))
        objects = [
            (ObjectEntry(entry.size, entry.sha256, key), file)
            for key, file in s3.download_all(project.s3(), bucket, work, object_keys(project))
            for entry in (entry_for(file),)
        ]
        manifest = Manifest(
            format=FORMAT,
            mlstack_version=__version__,
            project=config.project,
            database=config.postgres.database,
            bucket=bucket,
            mlflow_image=image.image,
            mlflow_image_id=image.image_id,
            alembic_revision=revision,
            created_at=utc_now_iso(),
            dump=entry_for(dump),
            objects=[o for o, _ in objects],
            bucket_uris=uris,
            auth_database=config.auth_database if auth_dump else None,
            auth_dump=entry_for(auth_dump) if auth_dump else None,
        )
        report(Event("step", message=f"writing {path}"))
        write_archive(path, manifest, dump, objects, force=force, auth_dump=auth_dump)
    return BackupResult(
        path,
        path.stat().st_size,
        len(objects),
        manifest.object_bytes,
        time.monotonic() - started,
        manifest,
    )
