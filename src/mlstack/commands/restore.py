"""`mlstack restore`: replace the running stack's database and bucket with an archive's.

Checks everything first (running stack, a whole and valid archive, an empty target unless
--force); only then stops MLflow, so a refused restore changes nothing. An archive written by
another MLflow image is migrated with the stack's image before MLflow starts again.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlstack.adapters import postgres, s3
from mlstack.adapters.archive import Manifest, read_archive
from mlstack.engine import EngineAPI
from mlstack.errors import ArchiveError, Conflict
from mlstack.health import wait_ready
from mlstack.project.context import Project, not_running, require_data_services
from mlstack.project.migration import MigrationFailed, migrate
from mlstack.project.reporting import Event, Reporter, Result, quiet
from mlstack.state import record_image


@dataclass(frozen=True)
class RestoreResult(Result):
    path: Path
    source_project: str
    created_at: str
    objects: int
    object_bytes: int
    migrated: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)


def refuse_if_not_empty(project: Project) -> None:
    bucket = project.config.storage.bucket
    counts = {k: v for k, v in postgres.content_counts(project.postgres()).items() if v}
    has_objects = s3.has_objects(project.s3(), bucket)
    if counts or has_objects:
        held = [f"{n} {what}" for what, n in counts.items()]
        if has_objects:
            held.append(f"objects in bucket {bucket}")
        raise Conflict(
            f"the stack {project.name!r} is not empty ({', '.join(held)}): a restore "
            "would replace its data",
            "restore into a fresh stack, or add --force to replace everything it holds",
        )


def _check_bucket(manifest: Manifest, bucket: str) -> None:
    """Only URIs naming s3://<bucket>/ directly tie an archive to its bucket's name."""
    if manifest.bucket != bucket and manifest.bucket_uris:
        raise ArchiveError(
            f"{manifest.bucket_uris} artifact URIs in the archive name bucket "
            f"{manifest.bucket!r} directly, the stack's bucket is {bucket!r}",
            f"set storage.bucket: {manifest.bucket} in mlstack.yaml and run `mlstack up` "
            "first; nothing was changed",
        )


def _migrate_restored(project: Project, engine: EngineAPI, manifest: Manifest, image: str) -> None:
    try:
        migrate(project, engine, image)
    except MigrationFailed as e:
        e.hint = (
            f"the archive was written with {manifest.mlflow_image}: set mlflow.image to it, "
            "run `mlstack up`, then restore again with --force"
        )
        raise


def _replace_data(
    project: Project, engine: EngineAPI, archive: Path, *, force: bool, report: Reporter
) -> Manifest:
    """Verify the archive, then (MLflow stopped) replace the database and the bucket with it."""
    bucket = project.config.storage.bucket
    with tempfile.TemporaryDirectory(prefix="mlstack-restore-") as tmp:
        report(Event("step", message=f"verifying {archive}"))
        extracted = read_archive(archive, Path(tmp))
        _check_bucket(extracted.manifest, bucket)
        if not force:
            refuse_if_not_empty(project)
        report(Event("step", message="stopping mlflow"))
        engine.stop(project.container("mlflow"), 10.0)
        report(Event("step", message="restoring the database (pg_restore)"))
        postgres.restore(
            engine,
            project.container("postgres"),
            project.postgres(),
            extracted.dump,
            project.scrub,
        )
        report(Event("step", message=f"restoring {len(extracted.objects)} objects"))
        s3.empty(project.s3(), bucket)
        s3.upload_all(project.s3(), bucket, extracted.objects)
    return extracted.manifest


def restore(
    project: Project,
    engine: EngineAPI,
    archive: Path,
    *,
    force: bool = False,
    timeout: float = 300.0,
    report: Reporter = quiet,
) -> RestoreResult:
    """Replace the stack's database and bucket with the archive's, then restart MLflow."""
    started = time.monotonic()
    bucket = project.config.storage.bucket
    if not archive.is_file():
        raise ArchiveError(
            f"{archive} does not exist or is not a file", "give the path of a backup"
        )
    mlflow_name = project.container("mlflow")
    mlflow = engine.inspect(mlflow_name)
    if mlflow is None or not mlflow.running:
        raise not_running(project.config, "restore")
    require_data_services(project, engine, "restore")
    manifest = _replace_data(project, engine, archive, force=force, report=report)
    migrated = manifest.alembic_revision is not None and manifest.mlflow_image_id != mlflow.image_id
    if migrated:
        report(Event("step", message=f"migrating the restored database with {mlflow.image}"))
        _migrate_restored(project, engine, manifest, mlflow.image_id or mlflow.image)
    report(Event("step", message="starting mlflow"))
    engine.start(mlflow_name)
    ready = wait_ready([project.mlflow_probe()], timeout=timeout)
    report(Event("ready", service="mlflow", seconds=ready.get("mlflow")))
    record_image(project.state, mlflow.image, mlflow.image_id)
    warnings = []
    if manifest.bucket != bucket:
        warnings.append(
            f"the archive's bucket was {manifest.bucket!r}; its objects are now in {bucket!r}"
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
