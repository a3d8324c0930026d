"""Backup, restore and MLflow-upgrade durations and archive size for N runs with M MB of artifacts.

Run: .venv/bin/python benchmarks/backup_restore.py [--runs 20] [--mb 5] [--storage seaweedfs]
(after scripts/engine and scripts/offline-images). One stack on the older offline MLflow image
(tests/offline-images-mlflow-previous.yaml) gets N runs, each with params, 5 metric steps, tags and
an M MB random artifact (incompressible: the worst case for the archive). Then, each command run
as a user runs it (a new process): `up` with the newer image (backup + migration + new server),
`backup`, `down --purge`, `up`, `restore`. Prints seconds, sizes and counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import yaml
from time_to_ready import free_ports  # run as a script: benchmarks/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
WRITER = textwrap.dedent(
    """
    import os, sys
    import mlflow
    runs, mb, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    mlflow.set_experiment("bench")
    for i in range(runs):
        with mlflow.start_run():
            mlflow.log_params({"i": i, "lr": 0.01 * i})
            for step in range(5):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.set_tag("bench", "yes")
            path = os.path.join(out, f"blob-{i}.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(int(mb * 1024 * 1024)))
            mlflow.log_artifact(path)
            os.remove(path)
    """
)


def mlstack(config: Path, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mlstack", "-c", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"mlstack {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.monotonic() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mb", type=float, default=5.0)
    parser.add_argument("--storage", choices=["seaweedfs", "minio"], default="seaweedfs")
    args = parser.parse_args()
    images = "offline-images.yaml" if args.storage == "seaweedfs" else "offline-images-minio.yaml"
    data = yaml.safe_load((REPO / "tests" / images).read_text())
    newer = data["mlflow"]["image"]
    older = yaml.safe_load((REPO / "tests" / "offline-images-mlflow-previous.yaml").read_text())
    older = older["mlflow"]["image"]
    ports = free_ports(4)
    data["project"] = f"mlb-{uuid.uuid4().hex[:6]}"
    data["storage"].update({"port": ports[0], "console_port": ports[1]})
    data["postgres"]["port"], data["mlflow"]["port"] = ports[2], ports[3]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["MLSTACK_STATE_DIR"] = str(work / "state")
        config = work / "mlstack.yaml"

        def use(image: str) -> None:
            data["mlflow"]["image"] = image
            config.write_text(yaml.safe_dump(data))

        use(older)
        try:
            mlstack(config, "up")
            env = dict(os.environ, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{ports[3]}")
            env.update(
                MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD="false",
                MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD="false",
            )
            subprocess.run(
                [sys.executable, "-c", WRITER, str(args.runs), str(args.mb), tmp],
                env=env,
                check=True,
                capture_output=True,
            )
            use(newer)
            total, out = mlstack(config, "up", "--json")
            upgrade = json.loads(out)["upgrade"]
            archive = work / "bench.tar.gz"
            backup_s, out = mlstack(config, "backup", "-o", str(archive), "--json")
            backup = json.loads(out)
            mlstack(config, "down", "--purge", "--yes")
            mlstack(config, "up")
            restore_s, _ = mlstack(config, "restore", str(archive))
        finally:
            subprocess.run(
                [sys.executable, "-m", "mlstack", "-c", str(config), "down", "--purge", "--yes"],
                capture_output=True,
                check=False,
            )
    mb = backup["object_bytes"] / 2**20
    print(
        f"{args.runs} runs, {backup['objects']} objects, {mb:.1f} MB of artifacts ({args.storage})"
    )
    print(f"archive: {backup['size'] / 2**20:.1f} MB")
    print(f"backup:  {backup_s:.1f} s (command), {backup['seconds']:.1f} s (inside)")
    print(f"restore: {restore_s:.1f} s (command, MLflow restart included)")
    print(
        f"upgrade {older} -> {newer}: `up` {total:.1f} s, backup {upgrade['backup_seconds']:.1f} s, "
        f"migration {upgrade['migrate_seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
