"""Why a service is not healthy, and the command that fixes it: what a senior engineer reads in
`docker inspect` and the log, as rules.

Pure: it gets a container's state, its probe, the masked tail of its log and whether its image
is still here, and returns the diagnosis. `status` applies it to every service that is not
healthy, then links the services (MLflow failing because its database fails names the root).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from mlstack.engine import ContainerInfo

GENERIC = "read `mlstack logs {service} --tail 50`, then run `mlstack up`"
CRASH_LOOP_RESTARTS = 2  # restarts within the window below make a crash loop
CRASH_LOOP_WINDOW = 300.0  # seconds since the container was created
STOPPED_CODES = (0, 137, 143)  # how a container ends on `docker stop` or `docker kill`
STOPPED = (
    "it was stopped (`docker stop` or `docker kill`, or its engine shut down): its restart "
    "policy does not start a stopped container again"
)


@dataclass(frozen=True)
class Diagnosis:
    state: str  # what Docker says, in words: "exited (exit code 1)", "crash-looping: ..."
    cause: str  # why, as far as it can be told; "" when nothing specific is known
    fix: str  # the command (or commands) that fix it
    root: str = ""  # another service this one fails because of


@dataclass(frozen=True)
class Rule:
    """A cause a log tells apart: its pattern, what it is, the fix (may name {service})."""

    pattern: re.Pattern[str]
    cause: str
    fix: str
    services: tuple[str, ...] = ()  # empty: any


def _restore_fix(backup: str | None) -> str:
    if backup is None:
        return (
            "restore your latest backup: mlstack down --purge --yes && mlstack up && "
            "mlstack restore <archive> --force (purge keeps backups: they live outside the "
            "state dir)"
        )
    return (
        f"restore the latest backup: mlstack down --purge --yes && mlstack up && "
        f"mlstack restore {backup} --force (purge keeps it: backups live outside the state dir)"
    )


CREDENTIALS_FIX = (
    "restore the secrets.env that belongs to these volumes into the state dir, or reset the "
    "stack (all data) with `mlstack down --purge`"
)


# A write refused for lack of room, as the services log it: the kernel's ENOSPC in SeaweedFS's
# words ("write /data/mlflow_1.dat: no space left on device") and PostgreSQL's ("could not extend
# file \"base/16384/16385\": No space left on device").
DISK_FULL = Rule(
    re.compile(r"no space left on device|could not extend file|disk (is )?full|ENOSPC", re.I),
    "its disk is full (no space left on device)",
    "free space on the disk that holds its volume (Docker's data root, `docker info -f "
    "'{{.DockerRootDir}}'`, unless the volume has a size of its own): `docker system df` shows "
    "what Docker keeps there, `docker image prune -a` and `docker builder prune` delete unused "
    "images and build cache; no restart needed: writes work again once there is room, and what "
    "is stored is kept",
)


def disk_full(log: str) -> bool:
    """Whether a log says a write failed for lack of room."""
    return DISK_FULL.pattern.search(log) is not None


def disk_full_lines(log: str) -> list[str]:
    """The lines of a log that say a write failed for lack of room, each once."""
    return list(dict.fromkeys(line.rstrip() for line in log.splitlines() if disk_full(line)))


def without_disk_full(log: str) -> str:
    """A log without those lines: for a disk that has room again, they are no longer the cause."""
    return "\n".join(line for line in log.splitlines() if not disk_full(line))


def rules(latest_backup: str | None) -> list[Rule]:
    """The causes a log tells apart, most specific first."""
    return [
        DISK_FULL,
        Rule(
            re.compile(
                r"could not locate a valid checkpoint|invalid (checkpoint|primary checkpoint|"
                r"page in block|data in file)|database files are incompatible|"
                r"could not find the database system|could not open file \"[^\"]*global/|PANIC:",
                re.I,
            ),
            "its data directory is damaged",
            _restore_fix(latest_backup),
            ("postgres",),
        ),
        Rule(
            re.compile(r"password authentication failed", re.I),
            "the stack's PostgreSQL password does not match the one its volume was made with",
            CREDENTIALS_FIX,
        ),
        Rule(
            re.compile(
                r"InvalidAccessKeyId|SignatureDoesNotMatch|access key.*(not|does not) exist", re.I
            ),
            "the stack's S3 keys do not match the ones its volume was made with",
            CREDENTIALS_FIX,
        ),
        Rule(
            re.compile(r"flask[_-]wtf", re.I),
            "the MLflow image lacks Flask-WTF, which auth: true (MLflow's basic-auth app) needs",
            "use an image with mlflow[auth] installed (the official -full image, or `pip install "
            "'mlflow[auth]'` in yours) as mlflow.image, or set auth: false",
            ("mlflow",),
        ),
    ]


def _match(service: str, text: str, found: Sequence[Rule]) -> Rule | None:
    return next(
        (r for r in found if (not r.services or service in r.services) and r.pattern.search(text)),
        None,
    )


def crash_loop(info: ContainerInfo, now: float) -> str | None:
    """ "crash-looping: restarted 5 times in the last 40 s", or None."""
    if info.restart_count < CRASH_LOOP_RESTARTS or not info.created:
        return None
    age = max(0.0, now - info.created)
    recent = info.state == "restarting" or (info.started_at and now - info.started_at < 60)
    if age > CRASH_LOOP_WINDOW and not recent:
        return None
    return f"crash-looping: restarted {info.restart_count} times in the last {age:.0f} s"


def _state(info: ContainerInfo, now: float) -> str:
    looping = crash_loop(info, now)
    code = f"exit code {info.exit_code}" + (", killed: out of memory" if info.oom_killed else "")
    if looping and info.running:  # between two attempts: Docker has reset the exit code to 0
        return looping + (" (last killed: out of memory)" if info.oom_killed else "")
    if looping:
        return f"{looping} (last {code})"
    if info.state == "restarting":
        return f"restarting (last {code})"
    return f"{info.state} ({code})"


def diagnose(
    service: str,
    info: ContainerInfo,
    *,
    log: str,
    image_present: bool,
    ports: Mapping[str, int],
    now: float,
    latest_backup: str | None = None,
) -> Diagnosis:
    """A container that is not running as it should (exited, restarting, crash-looping)."""
    state = _state(info, now)
    if not image_present:
        key = f"{service}.image"
        return Diagnosis(
            state,
            f"its image {info.image} is no longer on this machine",
            f"run `mlstack up` (it pulls the image again), or set {key} to an image you have",
        )
    if re.search(r"address already in use|port is already allocated", info.error, re.I):
        port = next((p for k, p in ports.items() if str(p) in info.error), None)
        key = next((k for k, p in ports.items() if p == port), f"{service}.port")
        where = f"port {port}" if port else "its host port"
        return Diagnosis(
            state,
            f"{where} is taken by another program: {info.error}",
            f"free {where}, or set {key} to another port; then run `mlstack up`",
        )
    if info.state == "paused":
        return Diagnosis(
            state,
            "it is paused (`docker pause`): frozen, it answers nothing",
            f"run `mlstack up` (it unpauses it), or `docker unpause {info.name}`",
        )
    if info.oom_killed:
        return Diagnosis(
            state,
            "the kernel killed it: out of memory",
            "give Docker more memory (Docker Desktop: Settings > Resources) or lower "
            "mlflow.workers; then run `mlstack up`",
        )
    rule = _match(service, log, rules(latest_backup))
    if rule is not None:
        return Diagnosis(state, rule.cause, rule.fix.replace("{service}", service))
    if info.state == "exited" and info.exit_code in STOPPED_CODES and not crash_loop(info, now):
        # restart: unless-stopped starts again whatever ends by itself: this was stopped by hand
        return Diagnosis(state, STOPPED, "run `mlstack up`")
    return Diagnosis(state, "", GENERIC.format(service=service))


def probe_failing(service: str, detail: str, log: str, latest_backup: str | None) -> Diagnosis:
    """A running container whose probe fails: the log may still tell why."""
    rule = _match(service, f"{log}\n{detail}", rules(latest_backup))
    if rule is not None:
        return Diagnosis("running, probe failing", rule.cause, rule.fix)
    return Diagnosis(
        "running, probe failing",
        detail,
        f"read `mlstack logs {service} --tail 50`; if it persists, run `mlstack up`",
    )


def link(diagnoses: Mapping[str, Diagnosis]) -> dict[str, Diagnosis]:
    """MLflow failing while its database or S3 fails is their fault: say so, point at the root."""
    linked = dict(diagnoses)
    mlflow = linked.get("mlflow")
    if mlflow is None:
        return linked
    for root in ("postgres", "storage"):
        found = linked.get(root)
        if found is None:
            continue
        because = found.cause or found.state
        linked["mlflow"] = replace(
            mlflow,
            cause=f"{root} is not healthy ({because}); MLflow needs it",
            fix=f"fix {root} first: {found.fix}",
            root=root,
        )
        break
    return linked
