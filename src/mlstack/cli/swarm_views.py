"""Text views of the swarm target's results (`up`, `status`, `down` with target: swarm);
registered in views.VIEWS by class name, JSON as every result's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlstack.cli.output import Screen, escape, table

if TYPE_CHECKING:
    from mlstack.commands.swarm_down import SwarmDownResult
    from mlstack.commands.swarm_status import SwarmStatusResult
    from mlstack.commands.swarm_up import SwarmUpResult
    from mlstack.health import ProbeResult

_COLOUR = {"healthy": "green", "degraded": "yellow", "not running": "red"}


def _probe(probe: ProbeResult | None) -> str:
    if probe is None:
        return "-"
    return f"ok {probe.latency * 1000:.0f} ms" if probe.ok else "failing"


def swarm_up_view(result: SwarmUpResult, screen: Screen) -> None:
    rows = [
        (
            s.service,
            s.name,
            s.action,
            str(s.replicas),
            f"{s.ready_seconds:.1f}s" if s.ready_seconds is not None else "-",
        )
        for s in result.services
    ]
    title = f"mlstack {result.project}: up on the swarm in {result.seconds:.1f}s"
    columns = ("service", "swarm service", "state", "replicas", "ready")
    screen.err.print(table(screen.err, title, columns, rows))
    screen.err.print(f"data (PostgreSQL, S3 volumes) on node {escape(result.data_node)}")
    for endpoint in result.endpoints:
        screen.err.print(f"mlflow on {escape(endpoint.node)}: {escape(endpoint.url)}")
    made = [
        w
        for w, d in (("database", result.database_created), ("bucket", result.bucket_created))
        if d
    ]
    if made:
        screen.err.print(f"created {' and '.join(made)}")
    screen.err.print('use it: eval "$(mlstack env)"   then: python train.py')


def swarm_status_view(result: SwarmStatusResult, screen: Screen) -> None:
    out = screen.out
    title = f"mlstack {result.project} (swarm): [{_COLOUR[result.overall]}]{result.overall}[/]"
    rows = []
    for s in result.services:
        replicas = f"{s.running}/{s.desired}"
        rows.append(
            (s.service, s.name, replicas, "", "", _probe(s.probe) if not s.endpoints else "")
        )
        for t in s.tasks:
            state = (
                t.state if t.state == t.desired_state else f"{t.state} (wanted {t.desired_state})"
            )
            rows.append(("", "", "", escape(t.node or "-"), escape(state), escape(t.error) or ""))
        for e in s.endpoints:
            rows.append(("", "", "", escape(e.node), escape(e.url), _probe(e.probe)))
    columns = ("service", "swarm service", "running", "node", "task / endpoint", "probe")
    out.print(table(out, title, columns, rows))
    for s in result.services:
        failing = [e for e in s.endpoints if not e.probe.ok]
        if s.probe is not None and not s.probe.ok:
            out.print(f"[yellow]{s.service}[/]: {escape(s.probe.detail)}")
        for e in failing:
            out.print(f"[yellow]{s.service} on {escape(e.node)}[/]: {escape(e.probe.detail)}")
    if result.overall == "not running":
        out.print("the stack is not running on the swarm: start it with `mlstack up`")
    elif result.overall == "healthy":
        out.print(f"tracking URI: {result.tracking_uri}")


def swarm_down_view(result: SwarmDownResult, screen: Screen) -> None:
    for note in result.notes:
        screen.err.print(f"kept: {escape(note)}")
    if result.nothing_to_do:
        screen.err.print(f"nothing to do: project {result.project!r} has nothing on the swarm")
        return
    screen.err.print(
        f"removed {len(result.services)} services, {len(result.secrets)} secrets, "
        f"{len(result.configs)} configs and {len(result.networks)} network(s) in "
        f"{result.seconds:.1f}s"
    )
    if result.volumes or result.state_removed:
        screen.err.print(
            f"purged {len(result.volumes)} volume(s) and the project's secrets and files"
        )
    else:
        screen.err.print("data kept: volumes and secrets stay for the next `mlstack up`")
