"""`mlstack backup`: the database (pg_dump) and every object of the bucket in one archive.

Checks first (target file, its directory, the data services running, on one engine or a
swarm), then takes the backup (project/snapshot.py, shared with `up`'s backup before a
migration). MLflow keeps serving.
"""

from __future__ import annotations

from pathlib import Path

from mlstack.adapters.archive import default_name
from mlstack.engine import EngineAPI
from mlstack.errors import ArchiveError, Conflict
from mlstack.project.context import Project
from mlstack.project.reporting import Reporter, quiet
from mlstack.project.servers import tracking_server
from mlstack.project.snapshot import BackupResult, take_backup
from mlstack.state import ImageRecord, read_image_record


def backup(
    project: Project,
    engine: EngineAPI,
    output: Path | None = None,
    *,
    force: bool = False,
    report: Reporter = quiet,
) -> BackupResult:
    """Archive the stack's database and bucket into `output` (default: a dated name in the
    project's backups dir, which `down --purge` never deletes)."""
    path = output or project.state.backups_dir() / default_name(project.name)
    if path.exists() and not force:
        raise Conflict(f"{path} already exists", "choose another -o, or add --force to replace it")
    if not path.parent.is_dir():
        raise ArchiveError(f"{path.parent} is not a directory", "create it, or choose another -o")
    server = tracking_server(project, engine, "backup")
    recorded = ImageRecord(server.image, server.image_id) if server.image_id else None
    image = read_image_record(project.state) or recorded or ImageRecord("", "")
    return take_backup(project, engine, path, image=image, force=force, report=report)
