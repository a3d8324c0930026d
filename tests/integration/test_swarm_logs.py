"""`mlstack logs` on the 3-node swarm of scripts/swarm-cluster: MLflow's two replicas read
through the manager, each line naming its task and node; PostgreSQL's own startup lines; a
secret that PostgreSQL writes into its log masked; an unknown service refused in one line."""

from __future__ import annotations

import json
import time

import pytest

from mlstack import labels
from mlstack.errors import ExitCode
from tests.integration.swarm_cluster import SwarmCluster, wait_for
from tests.secret_scan import leaked, secret_values

from .conftest import Project, offline_swarm_images


def sources(out: str) -> set[str]:
    """The `service.slot@node` prefixes of printed log lines."""
    return {line.split("|")[0].strip() for line in out.splitlines() if "|" in line}


def test_logs_per_replica_and_node_with_secrets_masked(
    swarm_cluster: SwarmCluster,
    swarm_project: Project,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = swarm_project
    image = swarm_cluster.pull_ref(offline_swarm_images()["mlflow"])
    project.write_config(
        target="swarm",
        allow_unauthenticated=True,
        mlflow={"replicas": 2, "image": image},
        postgres={"image": swarm_cluster.pull_ref(offline_swarm_images()["postgres"])},
        storage={"image": swarm_cluster.pull_ref(offline_swarm_images()["storage"])},
    )
    started = time.monotonic()
    code, out, err = project.cli(capsys, "up", "--json", "--timeout", "600")
    assert code == 0, err
    nodes = {e["node"] for e in json.loads(out)["endpoints"]}
    assert len(nodes) == 2  # host mode: a replica per node

    code, out, err = project.cli(capsys, "logs", "mlflow", "--tail", "50")
    assert code == 0, err
    assert {s.split("@")[1] for s in sources(out)} == nodes, out[-3000:]
    # a task that replaced a failed one says its task id after its slot
    assert {".".join(s.split("@")[0].split(".")[:2]) for s in sources(out)} == {
        "mlflow.1",
        "mlflow.2",
    }

    code, out, err = project.cli(capsys, "logs", "postgres")
    assert code == 0, err
    assert "database system is ready to accept connections" in out, out[-3000:]
    assert not sources(out)  # one task: its lines as one container's

    # PostgreSQL names a role it does not know in its log: here the database password
    password = project.secrets.POSTGRES_PASSWORD
    manager = swarm_cluster.engine()
    try:
        selector = {labels.PROJECT: project.name, labels.SERVICE: "postgres"}
        (container,) = [c for c in manager.containers(selector) if c.running]
        status, said = manager.exec(container.id, ["psql", "-U", password, "-c", "select 1"])
    finally:
        manager.close()
    assert status != 0 and password in said  # psql's own words are not mlstack's output

    def masked() -> str:
        _, printed, _ = project.cli(capsys, "logs", "postgres", "--tail", "20")
        return printed if 'role "****" does not exist' in printed else ""

    printed = wait_for("the refused role in PostgreSQL's log", masked, seconds=60)
    values = secret_values(project.secrets_file)
    assert password in values and leaked(values, printed) == []

    code, out, err = project.cli(capsys, "logs", "--tail", "5")
    assert code == 0, err
    assert {s.split(".")[0] for s in sources(out)} == {"postgres", "storage", "mlflow"}

    code, out, err = project.cli(capsys, "logs", "nosuch")
    assert code == ExitCode.USAGE and not out and len(err.strip().splitlines()) == 1, err
    assert "unknown service 'nosuch'" in err
    with capsys.disabled():
        print(f"\nswarm logs: {time.monotonic() - started:.1f} s (up included)")
