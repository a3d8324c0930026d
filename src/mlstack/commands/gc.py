"""`mlstack gc`: remove for good the runs deleted in MLflow, and their artifacts.

Deleting a run in MLflow only marks it `deleted`: its rows and its artifacts stay. MLflow's own
`mlflow gc` removes them. It runs here in a one-shot container of the stack's MLflow image on
the stack's network (project/oneshot.py), with the server's environment: the backend URI and
the S3 keys reach it there only. The server proxies artifacts, so a run's artifact URI is
`mlflow-artifacts:/<experiment>/<run>/artifacts`, which MLflow's gc resolves against the
tracking URI: it deletes them through the server's artifact proxy (`http://mlflow:5000`, https
with tls; with the admin login when auth is on), which removes them from
`--artifacts-destination s3://<bucket>`.

What is reported is counted, not assumed: the database and the bucket are read on the host
before and after; `--dry-run` only reads them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mlstack.adapters import postgres, s3
from mlstack.adapters.mlflow_env import tracking_login
from mlstack.adapters.postgres import Deleted
from mlstack.compose.launcher import TRUST_CA_SH
from mlstack.engine import EngineAPI
from mlstack.errors import ProvisionError, UsageError
from mlstack.project.context import Project, not_running
from mlstack.project.oneshot import run_on_database
from mlstack.project.reporting import Event, Reporter, Result, quiet
from mlstack.project.servers import tracking_server

# MLflow's own pattern (mlflow/cli gc), with numbers that float() accepts and at least one part.
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(
    rf"^(?:(?P<days>{_NUMBER})d)?(?:(?P<hours>{_NUMBER})h)?"
    rf"(?:(?P<minutes>{_NUMBER})m)?(?:(?P<seconds>{_NUMBER})s)?$"
)
_UNIT_SECONDS = {"days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0}
GC_TIMEOUT = 3600.0
# sh -c SCRIPT gc ARGS: the backend URI (with its password) from the environment, "$@" no secret.
# With tls, the CA the server is verified by is written to a file first.
GC_SCRIPT = TRUST_CA_SH + 'exec mlflow gc --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" "$@"'


@dataclass(frozen=True)
class OlderThan:
    """`--older-than` as given (MLflow's `#d#h#m#s`) and in milliseconds, as MLflow counts."""

    text: str
    ms: int


def older_than(text: str) -> OlderThan:
    """Parse MLflow's duration on the host: a bad one is refused before anything runs."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise UsageError(
            f"--older-than {text!r} is not a duration",
            "use days, hours, minutes and seconds in that order, e.g. --older-than 30d, "
            "1d2h, 90m or 1.5h",
        )
    seconds = sum(float(v) * _UNIT_SECONDS[k] for k, v in match.groupdict().items() if v)
    return OlderThan(text.strip(), int(seconds * 1000))


def removed_by_gc(item: Deleted, now_ms: int, older: OlderThan | None) -> bool:
    """Whether `mlflow gc` (3.17) removes `item`: runs deleted at least `older` ago, logged models
    likewise, experiments deleted (last updated) longer ago than `older`, with every deleted run
    in them; without --older-than everything deleted."""
    cutoff = now_ms - (older.ms if older else 0)

    def old(at: int | None, strict: bool) -> bool:
        return at is not None and (at < cutoff if strict else at <= cutoff)

    if item.kind == "experiment":
        return older is None or old(item.deleted_at, strict=True)
    own = old(item.deleted_at, strict=False)
    if item.kind == "run" and item.experiment_deleted:
        return own or older is None or old(item.experiment_deleted_at, strict=True)
    return own


def bucket_prefix(artifact_uri: str, bucket: str) -> str | None:
    """Where an artifact URI's objects are in the stack's bucket (None: not in it). The server's
    URIs are relative to its destination, `s3://<bucket>` itself."""
    for root in ("mlflow-artifacts://", "mlflow-artifacts:", f"s3://{bucket}/"):
        if artifact_uri.startswith(root):
            path = artifact_uri[len(root) :]
            if root == "mlflow-artifacts://":
                path = path.partition("/")[2]  # past the host
            path = path.strip("/")
            return f"{path}/" if path else None
    return None


@dataclass(frozen=True)
class GcItem:
    """A run or logged model removed (or that would be), and its objects in the bucket."""

    id: str
    name: str
    experiment_id: str
    objects: int
    bytes: int


@dataclass(frozen=True)
class GcResult(Result):
    project: str
    dry_run: bool
    older_than: str | None
    runs: list[GcItem]
    experiments: list[str]
    logged_models: list[GcItem]
    objects: int  # freed: gone from the bucket between before and after (dry run: would be)
    bytes: int
    seconds: float
    gc_seconds: float | None  # the `mlflow gc` container (None: a dry run)

    @property
    def output(self) -> str:
        return "\n".join(run.id for run in self.runs)


class GcFailed(ProvisionError):
    """`mlflow gc` exited non-zero; the message carries the gist of its log."""


def _items(
    found: Iterable[Deleted], kind: str, objects: Mapping[str, int], bucket: str
) -> list[GcItem]:
    items = []
    for item in (i for i in found if i.kind == kind):
        prefix = bucket_prefix(item.artifact_uri, bucket)
        mine = [size for key, size in objects.items() if prefix and key.startswith(prefix)]
        items.append(GcItem(item.id, item.name, item.experiment_id, len(mine), sum(mine)))
    return items


def _result(
    project: Project,
    found: list[Deleted],
    objects: Mapping[str, int],
    older: OlderThan | None,
    *,
    seconds: float,
    gc_seconds: float | None,
) -> GcResult:
    """The result for `found` (what went, or would go) and `objects`: what it freed, or (a dry
    run, `gc_seconds` None) the whole bucket, of which what lies under `found` is counted."""
    bucket = project.config.storage.bucket
    if gc_seconds is None:
        prefixes = [p for p in (bucket_prefix(i.artifact_uri, bucket) for i in found) if p]
        objects = {k: v for k, v in objects.items() if k.startswith(tuple(prefixes))}
    return GcResult(
        project.name,
        dry_run=gc_seconds is None,
        older_than=older.text if older else None,
        runs=_items(found, "run", objects, bucket),
        experiments=[i.id for i in found if i.kind == "experiment"],
        logged_models=_items(found, "logged model", objects, bucket),
        objects=len(objects),
        bytes=sum(objects.values()),
        seconds=seconds,
        gc_seconds=gc_seconds,
    )


def gc_environment(project: Project) -> dict[str, str]:
    """What `mlflow gc` needs beyond the server's environment: the server, through whose proxy it
    deletes artifacts (with the admin login when auth is on), and the artifacts destination
    (`--artifacts-destination`, which MLflow 3.17 takes as the store's default root only)."""
    env = {
        "MLFLOW_TRACKING_URI": project.in_network_url,
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{project.config.storage.bucket}",
    }
    if project.config.auth:
        env.update(tracking_login(project.secrets))
    return env


def _run_gc(project: Project, engine: EngineAPI, image: str, older: OlderThan | None) -> None:
    done = run_on_database(
        project,
        engine,
        image,
        GC_SCRIPT,
        role="gc",
        args=["--older-than", older.text] if older else [],
        environment=gc_environment(project),
        timeout=GC_TIMEOUT,
    )
    if not done.ok:
        raise GcFailed(
            f"`mlflow gc` failed: {done.problem}",
            "runs it removed before it failed are gone, the others are kept; see "
            "`mlstack status`, then run `mlstack gc` again",
        )


def gc(
    project: Project,
    engine: EngineAPI,
    older: OlderThan | None = None,
    *,
    dry_run: bool = False,
    report: Reporter = quiet,
) -> GcResult:
    """Remove (or with `dry_run` only list) what MLflow's gc removes, and count it."""
    started = time.monotonic()
    mlflow = tracking_server(project, engine, "gc")  # a container, or a swarm's service
    if not mlflow.running:
        raise not_running(project.config, "gc")
    bucket = project.config.storage.bucket
    report(Event("step", message=f"reading deleted runs and the objects of bucket {bucket}"))
    now_ms = int(time.time() * 1000)
    before = postgres.deleted(project.postgres())
    objects = s3.object_sizes(project.s3(), bucket)
    if dry_run:
        doomed = [i for i in before if removed_by_gc(i, now_ms, older)]
        seconds = time.monotonic() - started
        return _result(project, doomed, objects, older, seconds=seconds, gc_seconds=None)
    image = mlflow.image_id or mlflow.image
    report(Event("step", message=f"running mlflow gc ({mlflow.image})"))
    gc_started = time.monotonic()
    _run_gc(project, engine, image, older)
    gc_seconds = time.monotonic() - gc_started
    report(Event("step", message="counting what is left"))
    left = {(i.kind, i.id) for i in postgres.deleted(project.postgres())}
    after = s3.object_sizes(project.s3(), bucket)
    removed = [i for i in before if (i.kind, i.id) not in left]
    freed = {k: v for k, v in objects.items() if k not in after}
    return _result(
        project,
        removed,
        freed,
        older,
        seconds=time.monotonic() - started,
        gc_seconds=gc_seconds,
    )
