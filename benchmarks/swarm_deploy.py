"""`mlstack up` on the 3-node test swarm next to the local engine, in one run.

Run: .venv/bin/python benchmarks/swarm_deploy.py [--rounds 3]
(after scripts/engine and scripts/offline-images). It uses the cluster of scripts/swarm-cluster
(started for the run, and taken down after, unless it was up before). Each round, as a user
runs them (a new process each time): on the local engine `up` on nothing, `status --json`,
`down --purge --yes`; on the swarm (DOCKER_HOST at the manager, tcp with TLS) `up` on nothing
(MLflow 2 replicas), `status --json`, `down`, `up` again on the kept data, `down --purge --yes`.
The first swarm round also pulls the images onto the nodes from the cluster's registry.
Prints seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the cluster's helpers

from benchmarks.remote_engine import config_file, local_env, mlstack  # noqa: E402
from tests.integration.swarm_cluster import ClusterScript, SwarmCluster  # noqa: E402


def swarm_config(directory: Path, cluster: SwarmCluster) -> Path:
    path = config_file(directory, f"bench-{uuid.uuid4().hex[:6]}", remote=False)
    data = yaml.safe_load(path.read_text())
    for section in ("postgres", "storage", "mlflow"):
        data[section]["image"] = cluster.pull_ref(data[section]["image"])
    data.update(target="swarm", allow_unauthenticated=True)
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    script = ClusterScript.from_environment()
    started = not script.is_up()
    t0 = time.monotonic()
    cluster = script.up() if started else script.load()
    print(f"cluster {'made' if started else 'found'}: {time.monotonic() - t0:.1f} s")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            base = local_env(home)
            swarm = {
                **base,
                "DOCKER_HOST": cluster.manager_url,
                "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": str(Path(cluster.tls.ca).parent),
            }
            print(
                f"{'round':<7}{'local up':>10}{'status':>8}{'swarm up':>10}{'status':>8}"
                f"{'down':>7}{'up again':>10}{'purge':>7}"
            )
            for round_ in range(1, args.rounds + 1):
                local = config_file(home, f"bench-{uuid.uuid4().hex[:6]}", remote=False)
                local_up = mlstack(local, base, "up")
                local_status = mlstack(local, base, "status", "--json")
                mlstack(local, base, "down", "--purge", "--yes")
                config = swarm_config(home, cluster)
                up = mlstack(config, swarm, "up", "--timeout", "600")
                status = mlstack(config, swarm, "status", "--json")
                down = mlstack(config, swarm, "down")
                again = mlstack(config, swarm, "up", "--timeout", "600")
                purge = mlstack(config, swarm, "down", "--purge", "--yes")
                print(
                    f"{round_:<7}{local_up:>10.1f}{local_status:>8.2f}{up:>10.1f}{status:>8.2f}"
                    f"{down:>7.1f}{again:>10.1f}{purge:>7.1f}"
                )
    finally:
        if started:
            script.down()


if __name__ == "__main__":
    main()
