"""Taking a backup of a project's data: `mlstack backup`, and `up` before it migrates.

The dump is taken first (one consistent snapshot inside the postgres container), the bucket is
listed after it, so every artifact of a run in the dump is in the archive.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlstack import __version__
from mlstack.adapters import postgres, s3
from mlstack.adapters.archive import (
    DATABASE,
    FORMAT,
    Manifest,
    ObjectEntry,
    entry_for,
    utc_now_iso,
    write_archive,
)
from mlstack.engine import EngineAPI
from mlstack.project.context import Project
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


def _auth_dump(project: Project, engine: EngineAPI, work: Path) -> Path | None:
    """With `auth: true`, MLflow's users and permissions (`<database>_auth`) too."""
    auth = project.config.auth_database
    if not project.config.auth or auth not in postgres.databases(project.postgres()):
        return None
    dest = work / "auth.dump"
    postgres.dump(
        engine, project.container("postgres"), project.postgres().on(auth), dest, project.scrub
    )
    return dest


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
        postgres.dump(
            engine, project.container("postgres"), project.postgres(), dump, project.scrub
        )
        auth_dump = _auth_dump(project, engine, work)
        revision = postgres.schema_revision(project.postgres())
        uris = postgres.bucket_uri_count(project.postgres(), bucket)
        report(Event("step", message=f"downloading the objects of bucket {bucket}"))
        objects = [
            (ObjectEntry(entry.size, entry.sha256, key), file)
            for key, file in s3.download_all(project.s3(), bucket, work)
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
