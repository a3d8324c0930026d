"""`mlstack backup` and `mlstack restore` on the real engine: a purged stack comes back whole."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlstack.adapters.postgres import content_counts, databases
from mlstack.adapters.s3 import list_keys
from mlstack.errors import ExitCode
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


# --- a restore interrupted at each of its steps --------------------------------------------------


def _leftovers(project: Project) -> dict[str, object]:
    """What a restore stages or keeps while it runs: nothing of it may outlive the restore."""
    stack = Stack.open(project.config)
    assert stack is not None
    names = databases(stack.postgres())
    keys = list_keys(stack.s3(), project.config.storage.bucket, ".mlstack-restore/")
    return {
        "databases": sorted(n for n in names if n.startswith(("mlstack_restore_", "mlstack_old_"))),
        "staged objects": len(keys),
        "journal": stack.state.restore_journal.exists(),
    }


def _switched(project: Project) -> bool:
    """Whether a restore stopped after its switch (the old MLflow database exists)."""
    stack = Stack.open(project.config)
    assert stack is not None
    return any(n.startswith("mlstack_old_") for n in databases(stack.postgres()))


@pytest.mark.parametrize(
    ("marker", "sig", "recover"),
    [
        ("restoring the database into", signal.SIGKILL, "up"),
        ("staging", signal.SIGINT, None),
        ("stopping mlflow", signal.SIGKILL, "restore"),
        ("switching to the restored databases", signal.SIGKILL, "up"),
        ("moving", signal.SIGINT, "restore"),
        ("moving", signal.SIGKILL, "up"),
    ],
    ids=["kill-pg_restore", "ctrl-c-staging", "kill-stopping", "kill-switch", "ctrl-c-moving",
         "kill-moving"],
)  # fmt: skip
def test_interrupted_restore_leaves_one_whole_stack(
    seaweed_project: Project,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    marker: str,
    sig: signal.Signals,
    recover: str | None,
) -> None:
    """Wherever a restore stops (Ctrl-C, or killed), the stack ends with its own data or the
    archive's, never a mixture, and nothing staged is left: before its switch an interruption
    changes nothing, after it `up` (or the same restore again) finishes it."""
    project = seaweed_project
    cli_ok(project, capsys, "up")
    write_runs(project, "archived", runs=3, mb=8, out=str(tmp_path))  # long enough to stop in
    archived = snapshot(project)
    archive = tmp_path / "a.tar.gz"
    cli_ok(project, capsys, "backup", "-o", str(archive))
    write_runs(project, "later", runs=1, mb=0.1, out=str(tmp_path))
    before = snapshot(project)
    assert before != archived

    proc = subprocess.Popen(
        [sys.executable, "-m", "mlstack", "-c", str(project.config_path), "restore", "--force",
         str(archive)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            proc.send_signal(sig)
            break
    _, rest = proc.communicate(timeout=180)
    err = "".join(seen) + rest
    assert any(marker in line for line in seen), err
    assert "Traceback" not in err
    assert proc.returncode == (ExitCode.INTERRUPTED if sig == signal.SIGINT else -signal.SIGKILL)

    stack = Stack.open(project.config)
    assert stack is not None
    journal = stack.state.restore_journal.exists()
    if journal:
        expected = archived if _switched(project) else before
        _, out, _ = project.cli(capsys, "status")
        assert "was interrupted" in out and "mlstack up" in out
    elif "switching to the restored databases" not in err:
        expected = before  # stopped before the switch: the staging was dropped at once
    else:
        expected = archived  # the switch happened and the restore went on to its end
    if sig == signal.SIGINT and not journal:
        assert _mlflow_running(project)  # Ctrl-C before the switch: MLflow serves as before
    if recover:
        cli_ok(
            project, capsys, recover, *(["--force", str(archive)] if recover == "restore" else [])
        )
        if recover == "restore":
            expected = archived
    assert _leftovers(project) == {"databases": [], "staged objects": 0, "journal": False}
    assert snapshot(project) == expected
    assert project.cli(capsys, "status")[0] == 0
