"""`mlstack backup` and `mlstack restore` on the real engine: a purged stack comes back whole."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from mlstack.adapters.postgres import content_counts
from mlstack.project.context import Project as Stack

from .conftest import Project
from .mlflow_data import cli_ok, snapshot, write_runs


def _mlflow_running(project: Project) -> bool:
    info = project.engine.inspect(f"{project.name}-mlflow")
    return info is not None and info.running


def test_backup_purge_restore(
    any_project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project = any_project
    cli_ok(project, capsys, "up")
    data = tmp_path / "data"
    data.mkdir()
    write_runs(project, "bk", runs=3, mb=2, out=str(data))
    before = snapshot(project)
    assert len(before["runs"]) == 3
    assert all(len(r["artifacts"]) == 2 for r in before["runs"].values())
    assert list(before["models"]) == ["bk-model"]

    # backup: the archive is private, its path on stdout
    archive = tmp_path / "stack.tar.gz"
    out, err = cli_ok(project, capsys, "backup", "-o", str(archive), "--json")
    result = json.loads(out)
    assert Path(result["path"]) == archive
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert result["objects"] >= 6  # 2 artifacts per run, plus the server's own
    assert result["manifest"]["alembic_revision"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".stack.tar.gz")]

    # never overwritten without --force
    size = archive.stat().st_size
    code, _, err = project.cli(capsys, "backup", "-o", str(archive))
    assert code == 4 and "already exists" in err and "--force" in err
    assert archive.stat().st_size == size

    # restoring into a stack that holds data is refused, and changes nothing
    code, _, err = project.cli(capsys, "restore", str(archive))
    assert code == 4, err
    assert "not empty" in err and "--force" in err
    assert _mlflow_running(project)
    assert snapshot(project) == before

    # a corrupt or truncated archive is refused before anything changes
    raw = archive.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(raw[: len(raw) // 2])
    flipped = tmp_path / "flipped.tar.gz"
    flipped.write_bytes(raw[:-5000] + bytes([raw[-5000] ^ 0xFF]) + raw[-4999:])
    for bad in (truncated, flipped):
        code, _, err = project.cli(capsys, "restore", "--force", str(bad))
        assert code == 2, err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {bad}"), err
        assert "Traceback" not in err
        assert _mlflow_running(project)
    assert snapshot(project) == before

    # a stopped stack can neither be backed up nor restored into
    cli_ok(project, capsys, "down")
    code, _, err = project.cli(capsys, "backup", "-o", str(tmp_path / "other.tar.gz"))
    assert code == 11 and "mlstack up" in err
    code, _, err = project.cli(capsys, "restore", str(archive))
    assert code == 11 and "mlstack up" in err

    # purge everything, start fresh, restore: the same runs, metrics, tags, artifacts, models
    cli_ok(project, capsys, "down", "--purge", "--yes")
    cli_ok(project, capsys, "up")
    stack = Stack.open(project.config)
    assert stack is not None
    assert not any(content_counts(stack.postgres()).values())
    out, err = cli_ok(project, capsys, "restore", str(archive), "--json")
    restored = json.loads(out)
    assert restored["objects"] == result["objects"]
    assert restored["migrated"] is False
    after = snapshot(project)
    assert after == before
    code, _, _ = project.cli(capsys, "status")
    assert code == 0

    # restoring again over the restored data needs --force, and then gives the same data
    code, _, _ = project.cli(capsys, "restore", str(archive))
    assert code == 4
    cli_ok(project, capsys, "restore", "--force", str(archive))
    assert snapshot(project) == before
