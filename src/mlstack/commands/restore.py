"""`mlstack restore`: replace the running stack's databases and bucket with an archive's.

Checks everything first (running stack, a whole and valid archive, an empty target unless
--force), then stages the archive's data beside the stack's while MLflow still serves it, and
migrates it there when another MLflow image wrote it; only then stops MLflow for the switch
(`project.restoring`), so a refused, failed or interrupted restore before it changes nothing.
A restore interrupted after the switch is finished by the next `restore` or `up`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from mlstack.adapters import managed, postgres, s3
from mlstack.adapters.archive import Extracted, Manifest, read_archive, read_manifest
from mlstack.engine import EngineAPI
from mlstack.errors import ArchiveError, Conflict, ProvisionError
from mlstack.project import restoring
from mlstack.project.context import Project, not_running
from mlstack.project.migration import MigrationFailed, migrate
from mlstack.project.reporting import Event, Reporter, Result, quiet
from mlstack.project.servers import TrackingServer, tracking_server
from mlstack.project.snapshot import object_keys
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
    mine = object_keys(project)  # a managed bucket: only MLflow's objects count
    has_objects = s3.has_objects(project.s3(), bucket) if mine is None else bool(mine)
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


def _migrate_staged(
    project: Project, engine: EngineAPI, manifest: Manifest, image: str, database: str
) -> None:
    """An archive of another MLflow image, migrated where it was staged: a failure leaves the
    stack's own data as it was."""
    try:
        migrate(project, engine, image, database=database)
    except MigrationFailed as e:
        e.message = f"{e.message}; the stack's data was not changed"
        e.hint = (
            f"the archive was written with {manifest.mlflow_image}: set mlflow.image to it, "
            "run `mlstack up`, then restore again with --force"
        )
        raise


def _check_rights(project: Project, databases: list[str]) -> None:
    """On a managed server, a restore creates databases beside the stack's and renames them:
    refused up front, with the right it lacks, when it may not."""
    if project.config.postgres.external is None:
        return
    target = project.postgres()
    problem = managed.restore_problem(target, databases)
    if problem:
        raise ProvisionError(
            f"a restore stages the archive in new databases on {target.where} and renames "
            f"them in place of {', '.join(databases)}, but {problem}; nothing was changed",
            f"ALTER ROLE {target.user} CREATEDB (and make it the owner of "
            f"{', '.join(databases)}) for the restore",
        )


def _databases(project: Project, extracted: Extracted, warnings: list[str]) -> dict[str, Path]:
    """The dumps to restore, by database: MLflow's, and its users' when both sides have auth."""
    config = project.config
    dumps = {config.postgres.database: extracted.dump}
    if extracted.auth_dump is not None and config.auth:
        dumps[config.auth_database] = extracted.auth_dump
    elif extracted.auth_dump is not None:
        warnings.append(
            "the archive holds MLflow users and permissions; this stack has auth off, so they "
            "were not restored (set auth: true, `mlstack up`, restore again with --force)"
        )
    elif config.auth:
        warnings.append(
            "the archive holds no MLflow users (written without auth): kept the stack's"
        )
    return dumps


@dataclass
class _Run:
    """One restore: the archive read and checked, then staged, switched and placed."""

    project: Project
    engine: EngineAPI
    report: Reporter
    mlflow: TrackingServer
    warnings: list[str] = field(default_factory=list)
    migrated: bool = False

    def replace(self, archive: Path, *, force: bool) -> Manifest:
        project, engine, report = self.project, self.engine, self.report
        with tempfile.TemporaryDirectory(prefix="mlstack-restore-") as tmp:
            report(Event("step", message=f"verifying {archive}"))
            extracted = read_archive(archive, Path(tmp))
            manifest = extracted.manifest
            _check_bucket(manifest, project.config.storage.bucket)
            if not force:
                refuse_if_not_empty(project)
            dumps = _databases(project, extracted, self.warnings)
            _check_rights(project, list(dumps))
            journal = restoring.new_journal(archive.resolve(), list(dumps))
            self.migrated = bool(manifest.alembic_revision) and (
                manifest.mlflow_image_id != self.mlflow.image_id
            )
            with _abandoned_on_failure(project, journal):
                image = self.mlflow.image_id or self.mlflow.image
                restoring.stage(
                    project, engine, journal, dumps, extracted.objects, image=image, report=report
                )
                if self.migrated:
                    message = f"migrating the restored database with {self.mlflow.image}"
                    report(Event("step", message=message))
                    staged = journal.staged[project.config.postgres.database]
                    _migrate_staged(project, engine, manifest, image, staged)
        self.switch(journal)
        return manifest

    def switch(self, journal: restoring.Journal) -> None:
        """Stop MLflow, switch; interrupted before the switch, the stack is as it was."""
        project, report = self.project, self.report
        report(Event("step", message="stopping mlflow"))
        try:
            self.mlflow.stop()
            restoring.switch(project, journal, report)
        except BaseException:
            with suppress(Exception):  # the failure that stopped us is the one to report
                if not restoring.switched(project, journal):
                    restoring.abandon(project, journal)
                    self.mlflow.start()
            raise
        restoring.place_objects(project, journal, report)
        restoring.complete(project)


@contextmanager
def _abandoned_on_failure(project: Project, journal: restoring.Journal) -> Iterator[None]:
    """On any failure or Ctrl-C, the staging is dropped (the best one can; what is left, the
    next `restore` or `up` drops) and the failure goes on."""
    try:
        yield
    except BaseException:
        with suppress(Exception):
            restoring.abandon(project, journal)
        raise


def restore(
    project: Project,
    engine: EngineAPI,
    archive: Path,
    *,
    force: bool = False,
    timeout: float = 300.0,
    report: Reporter = quiet,
) -> RestoreResult:
    """Replace the stack's databases and bucket with the archive's, then restart MLflow."""
    started = time.monotonic()
    bucket = project.config.storage.bucket
    if not archive.is_file():
        raise ArchiveError(
            f"{archive} does not exist or is not a file", "give the path of a backup"
        )
    mlflow = tracking_server(project, engine, "restore")
    run = _Run(project, engine, report, mlflow)
    pending = restoring.finish(project, report)
    if pending is None and not mlflow.running:
        raise not_running(project.config, "restore")
    if pending is not None and pending[1] and pending[0].archive == str(archive.resolve()):
        manifest = read_manifest(archive)  # that restore, now finished, was this one
    else:
        manifest = run.replace(archive, force=force)
    report(Event("step", message="starting mlflow"))
    mlflow.start()
    report(Event("ready", service="mlflow", seconds=mlflow.wait_ready(timeout)))
    record_image(project.state, mlflow.image, mlflow.image_id)
    if manifest.bucket != bucket:
        run.warnings.append(
            f"the archive's bucket was {manifest.bucket!r}; its objects are now in {bucket!r}"
        )
    return RestoreResult(
        archive,
        manifest.project,
        manifest.created_at,
        len(manifest.objects),
        manifest.object_bytes,
        run.migrated,
        time.monotonic() - started,
        run.warnings,
    )
