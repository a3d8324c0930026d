"""Moving a stack's database to another MLflow image on `up`: backup, `mlflow db upgrade`, start.

The project's state dir records which MLflow image last ran against the database. When `up` is
about to start a server of another image on a database that has MLflow's schema, it takes a
backup (`<state>/backups/`), migrates in a one-shot container of the new image, and only then
starts the new server. A failed migration leaves the old data (MLflow migrates in one transaction,
which PostgreSQL rolls back, though MLflow does not promise it for every revision: the backup
covers that) and says how to go back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from mlstack.engine import ContainerInfo, Engine
from mlstack.stack import Event, Reporter, Stack
from mlstack.state import ProjectState, write_private

RECORD_FILE = "mlflow-image.json"


@dataclass(frozen=True)
class ImageRecord:
    """An MLflow image by reference (what to set mlflow.image back to) and by id (what ran)."""

    image: str
    image_id: str


def read_record(state: ProjectState) -> ImageRecord | None:
    path = state.root / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ImageRecord(str(data["image"]), str(data["image_id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: treated as unknown, which only costs a migration


def record_image(state: ProjectState, image: str, image_id: str) -> None:
    if not image_id or read_record(state) == ImageRecord(image, image_id):
        return
    write_private(state.root / RECORD_FILE, json.dumps({"image": image, "image_id": image_id}))


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


def backups_dir(state: ProjectState) -> Path:
    path = state.root / "backups"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


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
    stack: Stack,
    engine: Engine,
    previous: ImageRecord | None,
    revision: str,
    report: Reporter,
) -> UpgradeOutcome:
    """Back up, then migrate the database with the configured image; the server is stopped."""
    from mlstack.backup import MigrationFailed, create_backup, migrate, schema_revision

    image = stack.config.mlflow.image
    old = previous.image if previous else "the image that ran before"
    report(Event("step", message=f"MLflow image changed ({old} -> {image}): backing up"))
    started = time.monotonic()
    backup = create_backup(
        stack,
        engine,
        directory=backups_dir(stack.state),
        image=previous or ImageRecord("", ""),  # unknown: a restore then migrates
        report=report,
    )
    backup_seconds = time.monotonic() - started
    report(Event("step", message=f"migrating the database (mlflow db upgrade, {image})"))
    started = time.monotonic()
    try:
        migrate(stack, engine, image)
    except MigrationFailed as e:
        engine.remove(stack.service("mlflow").container_name)  # never start it on that schema
        back = f"set mlflow.image: {old} and run `mlstack up`" if previous else "restore it"
        e.message = (
            f"migrating the MLflow database to {image} failed ({e.last_line}); no server was "
            f"started on it, its backup is {backup.path}; to go back {back}, or run "
            f"`mlstack restore {backup.path} --force`"
        )
        raise
    migrate_seconds = time.monotonic() - started
    return UpgradeOutcome(
        old,
        image,
        revision,
        schema_revision(stack) or "",
        backup.path,
        backup_seconds,
        migrate_seconds,
    )
