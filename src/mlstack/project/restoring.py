"""Replacing a stack's data with an archive's so that no interruption leaves it half done.

1. **Stage.** The dumps are restored into new databases (`mlstack_restore_<token>_<n>`: MLflow's,
   and with auth its users'), the objects uploaded under `.mlstack-restore/<token>/` in the
   bucket. The stack's own data is untouched, MLflow serving it; an interruption abandons it.
2. **Switch.** MLflow stopped, the databases are renamed in one transaction: the stack's own to
   `mlstack_old_<token>_<n>`, the staged ones to the real names. All renames happen or none.
3. **Objects into place.** Each staged object is copied to its key, keys the archive lacks are
   deleted, the staging prefix goes, the old databases are dropped (MLflow's last).

A journal in the state dir (`restore.json`, the archive's keys beside it) names what was
staged; the next `restore` or `up` takes it forward or back, by whether MLflow's old database
exists, which only the switch creates.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from mlstack.adapters import postgres, s3
from mlstack.engine import EngineAPI
from mlstack.errors import ProvisionError
from mlstack.project.context import Project
from mlstack.project.oneshot import set_admin_login
from mlstack.project.pgtools import pg_tools
from mlstack.project.reporting import Event, Reporter
from mlstack.project.snapshot import object_keys
from mlstack.state import write_private

KEYS = "restore-keys.json"
STAGING = ".mlstack-restore/"


@dataclass(frozen=True)
class Journal:
    token: str
    archive: str
    staged: dict[str, str]  # real database name -> the one its data is restored into first
    old: dict[str, str]  # real database name -> the one its own data moves to at the switch

    @property
    def prefix(self) -> str:
        return f"{STAGING}{self.token}/"

    @property
    def marker(self) -> str:
        """The old name of the first (the MLflow) database: present once the switch happened
        (that database exists before any restore), gone only when all else is done."""
        return next(iter(self.old.values()))


def read_journal(project: Project) -> Journal | None:
    path = project.state.restore_journal
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Journal(
            str(data["token"]), str(data["archive"]), dict(data["staged"]), dict(data["old"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_journal(project: Project, journal: Journal, keys: list[str]) -> None:
    write_private(project.state.root / KEYS, json.dumps(keys))
    write_private(project.state.restore_journal, json.dumps(asdict(journal)))


def _forget(project: Project) -> None:
    for path in (project.state.restore_journal, project.state.root / KEYS):
        path.unlink(missing_ok=True)


def new_journal(archive: Path, databases: list[str]) -> Journal:
    """A journal for restoring `databases` (MLflow's first) from `archive`."""
    token = secrets.token_hex(4)
    return Journal(
        token,
        str(archive),
        {name: f"mlstack_restore_{token}_{i}" for i, name in enumerate(databases)},
        {name: f"mlstack_old_{token}_{i}" for i, name in enumerate(databases)},
    )


def stage(
    project: Project,
    engine: EngineAPI,
    journal: Journal,
    dumps: Mapping[str, Path],
    objects: Mapping[str, Path],
    *,
    image: str,
    report: Reporter,
) -> None:
    """Step 1: the archive's data beside the stack's own; nothing of the stack changes. With
    users (`auth`), the stack's admin login is set in them with MLflow `image`."""
    _write_journal(project, journal, sorted(objects))
    target = project.postgres()
    with pg_tools(project, engine, report) as tools:
        for database, dump in dumps.items():
            into = journal.staged[database]
            report(Event("step", message=f"restoring the database into {into}"))
            postgres.restore(engine, tools, target.on(into), dump, project.scrub)
    auth = journal.staged.get(project.config.auth_database)
    if project.config.auth and auth is not None:
        report(Event("step", message="setting the stack's admin login in the restored users"))
        done = set_admin_login(project, engine, image, auth, role="restore-auth")
        if not done.ok:
            raise ProvisionError(
                f"setting the admin login in the restored users failed: {done.problem}",
                "see `mlstack logs mlflow`; the stack's data was not changed",
            )
    report(Event("step", message=f"staging {len(objects)} objects"))
    staged = {journal.prefix + key: path for key, path in objects.items()}
    s3.upload_all(project.s3(), project.config.storage.bucket, staged)


def abandon(project: Project, journal: Journal) -> None:
    """Undo step 1: drop the staged databases and objects (the stack's own never changed)."""
    target = project.postgres()
    for staged in journal.staged.values():
        postgres.drop_database(target, staged)
    bucket = project.config.storage.bucket
    s3.delete(project.s3(), bucket, s3.list_keys(project.s3(), bucket, journal.prefix))
    _forget(project)


def switch(project: Project, journal: Journal, report: Reporter) -> None:
    """Step 2, with MLflow stopped: every database renamed in one transaction."""
    report(Event("step", message="switching to the restored databases"))
    present = postgres.databases(project.postgres())
    renames = [(real, old) for real, old in journal.old.items() if real in present]
    renames += [(staged, real) for real, staged in journal.staged.items()]
    postgres.rename_databases(project.postgres(), renames)


def switched(project: Project, journal: Journal) -> bool:
    """Whether step 2 happened (its one transaction renames every database or none). With neither
    the marker nor a staged database left, undoing is harmless: nothing was staged, or it all
    was placed and only the journal remained."""
    return journal.marker in postgres.databases(project.postgres())


def place_objects(project: Project, journal: Journal, report: Reporter) -> None:
    """Step 3: staged objects to their keys, the others gone, then the old databases. Safe to
    run again from any point: it works from the journal's keys, not from what is left."""
    bucket, target = project.config.storage.bucket, project.s3()
    keys: list[str] = json.loads((project.state.root / KEYS).read_text(encoding="utf-8"))
    staged = set(s3.list_keys(target, bucket, journal.prefix))
    report(Event("step", message=f"moving {len(keys)} objects into place"))
    s3.copy_all(
        target, bucket, [(journal.prefix + k, k) for k in keys if journal.prefix + k in staged]
    )
    wanted = set(keys)
    present = object_keys(project)  # in a managed bucket, only MLflow's: the rest is not ours
    present = s3.list_keys(target, bucket) if present is None else present
    extra = [k for k in present if k not in wanted and not k.startswith(STAGING)]
    s3.delete(target, bucket, extra)
    s3.delete(target, bucket, sorted(staged))
    for old in reversed(journal.old.values()):  # the marker last
        postgres.drop_database(project.postgres(), old)


def finish(project: Project, report: Reporter) -> tuple[Journal, bool] | None:
    """What an interrupted restore left, taken to an end: forward when its switch happened, back
    (the stack's data as it was) when not. The journal it handled and whether it went forward;
    None when there was none."""
    journal = read_journal(project)
    if journal is None:
        return None
    if switched(project, journal):
        report(Event("warning", message=f"finishing the interrupted restore of {journal.archive}"))
        place_objects(project, journal, report)
        _forget(project)
    else:
        report(Event("warning", message=f"undoing the interrupted restore of {journal.archive}"))
        abandon(project, journal)
        return journal, False
    return journal, True


def complete(project: Project) -> None:
    """The restore is whole: forget its journal."""
    _forget(project)
