"""The stack's managed services (postgres.external, storage.external), as the commands see them.

`up` checks and provisions them before it creates anything of its own, so a missing right or a
wrong password leaves nothing behind; it records what it created there (`external.json` in the
state dir). `status` diagnoses them from their probe; `down --purge` never touches them and says
what is left there and how to remove it by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from mlstack.adapters.targets import PgTarget
from mlstack.config import StackConfig
from mlstack.engine import EngineAPI
from mlstack.errors import ProvisionError
from mlstack.project.context import Project, stop_grace
from mlstack.project.diagnosis import Diagnosis
from mlstack.project.oneshot import set_admin_login
from mlstack.project.reporting import Event, Reporter
from mlstack.state import ProjectState, write_private

RECORD = "external.json"


@dataclass(frozen=True)
class Made:
    """Something `up` created on a managed service."""

    kind: str  # "database" or "bucket"
    name: str
    where: str  # host:port, or the endpoint


def provision(project: Project) -> list[Made]:
    """Check every managed service (login, rights) and create the database(s) and the bucket
    that are missing: all checks first, so a refusal leaves nothing made. What was created."""
    # deferred: psycopg2 and boto3 load only when a managed service is provisioned
    from mlstack.adapters import managed

    config, made = project.config, []
    target = project.postgres()
    databases = [config.postgres.database] + ([config.auth_database] if config.auth else [])
    missing = []
    if config.postgres.external is not None:
        missing = [name for name in databases if managed.database_missing(target, name)]
    if config.storage.external is not None:
        s3 = project.s3()
        if managed.ensure_bucket(s3, config.storage.bucket):
            made.append(Made("bucket", config.storage.bucket, s3.endpoint))
    for name in missing:
        managed.create_database(target, name)
        made.append(Made("database", name, target.where))
    return made


def adopts_admin(project: Project, made: list[Made]) -> bool:
    """New secrets (after `down --purge`, or on another machine) meet a managed auth database
    made before them: its admin user holds another password, which MLflow never changes."""
    c = project.config
    return (
        project.secrets_created
        and c.auth
        and c.postgres.external is not None
        and not any(m.kind == "database" and m.name == c.auth_database for m in made)
    )


def adopt_admin(project: Project, engine: EngineAPI, report: Reporter) -> None:
    """Give the admin user of the managed auth database the stack's login, as a restore does
    (other users keep theirs), before MLflow starts on it."""
    auth = project.config.auth_database
    report(Event("step", message=f"setting the stack's admin login in {auth}"))
    done = set_admin_login(project, engine, project.config.mlflow.image, auth, role="admin-login")
    if not done.ok:
        raise ProvisionError(
            f"setting the stack's admin login in {auth} on {project.postgres().where} failed: "
            f"{done.problem}",
            f"drop {auth} there (its users go) or put back the secrets.env it was made with",
        )


def record(state: ProjectState, made: list[Made]) -> None:
    """Add what `up` created on managed services to the project's record (0600)."""
    if not made:
        return
    known = created(state)
    known += [m for m in made if m not in known]
    write_private(state.root / RECORD, json.dumps([asdict(m) for m in known], indent=1))


def created(state: ProjectState) -> list[Made]:
    """What mlstack created on the project's managed services, by the record."""
    try:
        data = json.loads((state.root / RECORD).read_text(encoding="utf-8"))
        return [Made(str(d["kind"]), str(d["name"]), str(d["where"])) for d in data]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def retire_local(project: Project, engine: EngineAPI) -> list[str]:
    """Remove the stack's own container of a service that is managed elsewhere now (its volume
    stays: `down --purge` removes it); the warnings to give."""
    warnings = []
    for name in project.external_services():
        container = f"{project.name}-{name}"
        info = engine.inspect(container)
        if info is None or info.project != project.name:
            continue
        engine.stop(container, stop_grace(name))
        engine.remove(container)
        warnings.append(
            f"removed container {container}: {name} is managed elsewhere now ({name}.external); "
            "its volume and data stay until `mlstack down --purge`"
        )
    return warnings


def _where(config: StackConfig) -> str:
    pg = config.postgres.external
    assert pg is not None
    return PgTarget(pg.host, pg.port, pg.user, "", "").where


def purge_notes(config: StackConfig, state: ProjectState) -> list[str]:
    """What `down --purge` leaves on managed services, and how to remove it by hand (read
    before the state dir goes: the record says what mlstack created there)."""
    mine = created(state)
    notes = []
    if config.postgres.external is not None:
        where = _where(config)
        names = [config.postgres.database]
        names += [config.auth_database] if config.auth else []
        ours = [n for n in names if Made("database", n, where) in mine]
        theirs = [n for n in names if n not in ours]
        text = f"PostgreSQL at {where} is not mlstack's: dropped nothing there"
        if ours:
            drops = "; ".join(f"DROP DATABASE {n}" for n in ours)
            text += f"; mlstack created {', '.join(ours)}: to remove it by hand, {drops}"
        if theirs:
            text += f"; {', '.join(theirs)} existed before mlstack: left as it is"
        notes.append(text)
    s3 = config.storage.external
    if s3 is not None:
        bucket = config.storage.bucket
        text = (
            f"bucket {bucket} at {s3.endpoint} is not mlstack's: deleted no object; MLflow's "
            "artifacts are its keys under an experiment id (0/, 1/, ...): remove them by hand"
        )
        if Made("bucket", bucket, s3.endpoint) in mine:
            text += " (mlstack created the bucket: delete it once it is empty)"
        notes.append(text)
    return notes


# --- status ------------------------------------------------------------------------------------

# (a pattern of the probe's detail, cause, fix); {section} is postgres or storage. S3's codes
# only as botocore quotes them, "(AccessDenied)": a bare "403" may be part of a port or a URL.
_FAULTS = (
    (
        r"rejected the password|password authentication failed",
        "the managed PostgreSQL rejects the password",
        "put the right password where postgres.external names it, then `mlstack up`",
    ),
    (
        r"\((InvalidAccessKeyId|SignatureDoesNotMatch)\)",
        "the managed S3 API rejects the keys",
        "put the right keys where storage.external names them, then `mlstack up`",
    ),
    (
        r"\((NoSuchBucket|404)\)",
        "the bucket does not exist (any more)",
        "create it, or run `mlstack up`: it creates it when the keys may",
    ),
    (
        r"\((AccessDenied|403)\)",
        "the keys may not list the bucket (AccessDenied)",
        "grant the keys s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on it",
    ),
    (
        r'database "[^"]+" does not exist',
        "the database does not exist (any more)",
        "run `mlstack up`: it creates it when the user may, or restore a backup",
    ),
    (
        r"(?i)timeout|timed out|refused|could not translate host|could not connect to the "
        r"endpoint|name or service not known|name resolution|no route to host",
        "the managed server does not answer",
        "check {section}.external (address, port) and the network from here and from Docker",
    ),
)


def diagnose(service: str, detail: str) -> Diagnosis:
    """Why a managed service's probe fails, and what fixes it."""
    for pattern, cause, fix in _FAULTS:
        if re.search(pattern, detail):
            return Diagnosis("external, probe failing", cause, fix.format(section=service))
    return Diagnosis(
        "external, probe failing",
        detail,
        f"check the managed service ({service}.external); `mlstack up` says what is missing",
    )
