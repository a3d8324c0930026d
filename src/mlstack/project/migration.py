"""Moving a project's database to another MLflow image: backup, `mlflow db upgrade`, then start.

The state dir records which MLflow image last ran against the database. When `up` is about to
start a server of another image on a database that has MLflow's schema, it takes a backup
(`<state>/backups/`), migrates in a one-shot container of the new image, and only then starts
the new server; `restore` migrates an archive written by another image. A failed migration
leaves the old data (MLflow migrates in one transaction, which PostgreSQL rolls back, though
MLflow does not promise it for every revision: the backup covers that) and says how to go back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mlstack.adapters import postgres
from mlstack.adapters.archive import default_name
from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.errors import ProvisionError
from mlstack.project.context import Project
from mlstack.project.oneshot import backend_on, run_on_database
from mlstack.project.reporting import Event, Reporter
from mlstack.project.snapshot import take_backup
from mlstack.state import ImageRecord


class MigrationFailed(ProvisionError):
    """`mlflow db upgrade` exited non-zero; `last_line` is the gist of its log."""

    def __init__(self, image: str, last_line: str) -> None:
        super().__init__(f"`mlflow db upgrade` with {image} failed: {last_line}")
        self.last_line = last_line


def previous_image(
    record: ImageRecord | None, container: ContainerInfo | None
) -> ImageRecord | None:
    """The image that last ran against the database: the record, else the existing container's
    (a stack from before records were kept), else unknown."""
    if record is not None:
        return record
    if container is not None and container.image_id:
        return ImageRecord(container.image, container.image_id)
    return None


def needs_migration(previous: ImageRecord | None, next_id: str, revision: str | None) -> bool:
    """Migrate when the database has MLflow's schema and another (or an unknown) image ran on it."""
    return revision is not None and (previous is None or previous.image_id != next_id)


def may_need_migration(previous: ImageRecord | None, next_id: str) -> bool:
    """Whether to look at the database at all: a no-op `up` must stay free of extra queries."""
    return previous is None or previous.image_id != next_id


def migrate(
    project: Project,
    engine: EngineAPI,
    image: str,
    timeout: float = 600.0,
    *,
    database: str | None = None,
) -> None:
    """Run `mlflow db upgrade` with `image` in a one-shot container on the stack's network, on
    MLflow's database or on `database` (a restore's staged one).

    The backend URI (with its password) reaches the container in its environment only, like the
    server's, never on its command line.
    """
    done = run_on_database(
        project,
        engine,
        image,
        'exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"',
        role="migrate",
        environment=backend_on(project, database),
        timeout=timeout,
    )
    if not done.ok:
        raise MigrationFailed(image, done.problem)


@dataclass(frozen=True)
class UpgradeOutcome:
    from_image: str
    to_image: str
    from_revision: str
    to_revision: str
    backup: Path
    backup_seconds: float
    migrate_seconds: float


def upgrade(
    project: Project,
    engine: EngineAPI,
    previous: ImageRecord | None,
    revision: str,
    report: Reporter,
) -> UpgradeOutcome:
    """Back up, then migrate the database with the configured image; the server is stopped."""
    image = project.config.mlflow.image
    old = previous.image if previous else "the image that ran before"
    report(Event("step", message=f"MLflow image changed ({old} -> {image}): backing up"))
    started = time.monotonic()
    backup = take_backup(
        project,
        engine,
        project.state.backups_dir() / default_name(project.name),
        image=previous or ImageRecord("", ""),  # unknown: a restore then migrates
        force=False,
        report=report,
    )
    backup_seconds = time.monotonic() - started
    report(Event("step", message=f"migrating the database (mlflow db upgrade, {image})"))
    started = time.monotonic()
    try:
        migrate(project, engine, image)
    except MigrationFailed as e:
        engine.remove(project.container("mlflow"))  # never start it on that schema
        back = f"set mlflow.image: {old} and run `mlstack up`" if previous else "restore it"
        e.message = (
            f"migrating the MLflow database to {image} failed ({e.last_line}); no server was "
            f"started on it, its backup is {backup.path}; to go back {back}, or run "
            f"`mlstack restore {backup.path} --force`"
        )
        raise
    return UpgradeOutcome(
        old,
        image,
        revision,
        postgres.schema_revision(project.postgres()) or "",
        backup.path,
        backup_seconds,
        time.monotonic() - started,
    )
