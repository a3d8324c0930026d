"""Changing mlflow.image on an existing stack: `up` backs up, migrates, then starts the new server;
a migration that fails (a downgrade) leaves the data as it was and says how to go back."""

from __future__ import annotations

import json
import stat
import tarfile
from pathlib import Path

import pytest
import yaml

from mlstack.adapters.archive import parse_manifest
from mlstack.adapters.postgres import connect, schema_revision
from mlstack.project.context import Project as Stack

from .conftest import REPO, Project
from .mlflow_data import cli_ok, snapshot, write_runs

PREVIOUS = REPO / "tests" / "offline-images-mlflow-previous.yaml"


def set_image(project: Project, image: str) -> None:
    """Change only mlflow.image in the project's file (ports and the rest stay)."""
    data = yaml.safe_load(project.config_path.read_text())
    data["mlflow"]["image"] = image
    project.config_path.write_text(yaml.safe_dump(data))


def run_ids(stack: Stack) -> list[str]:
    with connect(stack.postgres()) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_uuid FROM runs ORDER BY run_uuid")
        return [row[0] for row in cur.fetchall()]


def test_upgrade_then_failed_downgrade(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project = seaweed_project
    older = yaml.safe_load(PREVIOUS.read_text())["mlflow"]["image"]
    newer = project.config.mlflow.image
    assert older != newer

    # a stack on the older MLflow, with runs and artifacts
    set_image(project, older)
    cli_ok(project, capsys, "up")
    write_runs(project, "upgrade", runs=3, mb=1, out=str(tmp_path))
    before = snapshot(project)
    stack = Stack.open(project.config)
    assert stack is not None
    old_revision = schema_revision(stack.postgres())
    assert old_revision

    # the newer image: backup, migration, new server, same data
    set_image(project, newer)
    out, _ = cli_ok(project, capsys, "up", "--json")
    upgrade = json.loads(out)["upgrade"]
    assert upgrade is not None
    assert (upgrade["from_image"], upgrade["to_image"]) == (older, newer)
    assert upgrade["from_revision"] == old_revision
    new_revision = schema_revision(stack.postgres())
    assert new_revision == upgrade["to_revision"] != old_revision
    backup = Path(upgrade["backup"])
    assert backup.parent == stack.state.backups  # outside the state dir: purge keeps it
    assert stat.S_IMODE(backup.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert snapshot(project) == before
    code, _, _ = project.cli(capsys, "status")
    assert code == 0
    with tarfile.open(backup) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest = parse_manifest(member.read())
    assert (manifest.mlflow_image, manifest.alembic_revision) == (older, old_revision)

    # the same image again: no backup, no migration, nothing recreated
    out, _ = cli_ok(project, capsys, "up", "--json")
    again = json.loads(out)
    assert again["upgrade"] is None
    assert {s["action"] for s in again["services"]} == {"kept"}
    assert len(list(backup.parent.iterdir())) == 1

    # back to the older image: its `mlflow db upgrade` does not know the newer schema
    set_image(project, older)
    code, _, err = project.cli(capsys, "up")
    assert code == 7, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "Can't locate revision" in errors[0]
    assert f"set mlflow.image: {newer}" in errors[0] and "mlstack restore" in errors[0]
    assert "hint:" not in err and "Traceback" not in err
    assert schema_revision(stack.postgres()) == new_revision
    assert run_ids(stack) == sorted(before["runs"])
    assert project.engine.inspect(f"{project.name}-mlflow") is None  # never started
    assert len(list(backup.parent.iterdir())) == 2

    # and back to the newer image: everything is there
    set_image(project, newer)
    out, _ = cli_ok(project, capsys, "up", "--json")
    assert json.loads(out)["upgrade"] is None
    assert snapshot(project) == before
    code, _, _ = project.cli(capsys, "status")
    assert code == 0

    # the backup of the older schema restores into the newer stack: migrated on the way
    out, _ = cli_ok(project, capsys, "restore", "--force", str(backup), "--json")
    assert json.loads(out)["migrated"] is True
    assert schema_revision(stack.postgres()) == new_revision
    assert snapshot(project) == before
