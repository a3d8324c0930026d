"""What is wrong with each service of a running stack, and why: `status`'s diagnosis.

For each service that is not healthy (or that answers on a full disk) a Finding: the diagnosis
(project/diagnosis.py), what its probe said and the gist of its log, linked across services so
the root cause is named once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.health import ProbeResult
from mlstack.project import external
from mlstack.project.context import Project
from mlstack.project.diagnosis import (
    DISK_FULL,
    Diagnosis,
    crash_loop,
    diagnose,
    disk_full,
    disk_full_lines,
    link,
    probe_failing,
    without_disk_full,
)
from mlstack.project.diskspace import volume_space
from mlstack.project.watch import log_gist

GIST_LINES = 5  # of a service's log shown when it is not healthy
LOG_LINES = 80  # of a service's log read when it is not healthy


@dataclass(frozen=True)
class Finding:
    """A service that is not healthy: its diagnosis, its probe's words, the gist of its log."""

    diagnosis: Diagnosis
    detail: str
    log: tuple[str, ...]
    full: bool = False  # a service that answers, on a full disk


def findings(
    project: Project,
    engine: EngineAPI,
    containers: Mapping[str, ContainerInfo],
    results: Mapping[str, ProbeResult],
    logs: Mapping[str, str],  # of the data services: `diskspace.data_logs`
) -> dict[str, Finding]:
    """Diagnose each service that is not healthy, and each data service that looks healthy but
    whose log says a write failed for lack of room (see `_full_volume`)."""
    now = time.time()
    latest = project.state.latest_backup()
    backup = str(latest) if latest else None
    found: dict[str, Finding] = {}
    for name, info in containers.items():
        probe = results.get(name)
        looping = crash_loop(info, now)
        if info.running and not looping and (probe is None or probe.ok):
            full = full_volume(project, engine, name, info, logs.get(name, ""))
            if full is not None:
                found[name] = full
            continue
        # What this run printed (an earlier incident's lines would mislead), but all of a crash
        # loop caught between two attempts: the one that just began has not failed yet.
        since = 0.0 if info.running and looping else info.started_at
        log = project.scrub(engine.log_tail(info.id, LOG_LINES, since=since))
        space = (
            volume_space(project, engine, name, info.id)
            if info.running and disk_full(log)
            else None
        )
        if space is not None and not space.full:
            log = without_disk_full(log)  # lines from before room was made: not the cause now
        if not info.running or looping:
            present = engine.image_id(project.service(name).image) is not None
            ports = project.config.published_ports()
            d = diagnose(
                name,
                info,
                log=log,
                image_present=present,
                ports=ports,
                now=now,
                latest_backup=backup,
            )
        else:
            d = probe_failing(name, probe.detail if probe else "", log, backup)
        gist = log_gist(log, GIST_LINES).splitlines()
        if d.cause == DISK_FULL.cause:
            gist = disk_full_lines(log)[-GIST_LINES:]
            d = replace(d, cause=f"{d.cause}: {space}" if space else d.cause)
        found[name] = Finding(d, probe.detail if probe else "", tuple(gist))
    for name in project.external_services():
        probe = results.get(name)
        if probe is not None and not probe.ok:
            found[name] = Finding(external.diagnose(name, probe.detail), probe.detail, ())
    linked = link({n: f.diagnosis for n, f in found.items()})
    return {n: replace(f, diagnosis=linked[n]) for n, f in found.items()}


def full_volume(
    project: Project, engine: EngineAPI, name: str, info: ContainerInfo, log: str
) -> Finding | None:
    """A service that answers (reads work) but whose log says a write failed for lack of room,
    on a volume still full: `df` runs only after such a line, to tell a disk still full from one
    that had room made since (the line stays in the log)."""
    volumes = project.service(name).volumes
    if not volumes or not disk_full(log):
        return None
    space = volume_space(project, engine, name, info.id)
    if space is not None and not space.full:
        return None
    cause = f"{DISK_FULL.cause}: {space}" if space else DISK_FULL.cause
    return Finding(
        Diagnosis("running, writes fail", cause, DISK_FULL.fix),
        f"writes fail: no space left on its volume {volumes[0][0]}",
        tuple(disk_full_lines(log)[-GIST_LINES:]),
        full=True,
    )
