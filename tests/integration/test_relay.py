"""The relay on the real engine: with the engine taken as another machine's, every connection
mlstack makes to PostgreSQL, S3 and MLflow goes through exec streams into the relay container,
never to the published ports (which a remote server keeps on its own loopback)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlstack.engine.docker import DockerEngine

from .conftest import Project
from .mlflow_data import cli_ok, snapshot, write_runs


@pytest.fixture
def taken_as_remote(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """DockerEngine.remote is True and every forward is recorded (what, through which container)."""
    forwarded: list[str] = []
    original: Callable[..., Any] = DockerEngine.forward

    def recording(self: DockerEngine, name: str, host: str, port: int) -> tuple[str, int]:
        forwarded.append(f"{name} -> {host}:{port}")
        address: tuple[str, int] = original(self, name, host, port)
        return address

    monkeypatch.setattr(DockerEngine, "remote", property(lambda self: True))
    monkeypatch.setattr(DockerEngine, "forward", recording)
    return forwarded


def test_up_status_backup_restore_through_the_relay(
    seaweed_project: Project,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    taken_as_remote: list[str],
) -> None:
    project = seaweed_project
    cli_ok(project, capsys, "up")
    relay = f"{project.name}-relay"
    # up made the database and the bucket, and probed all three, through the relay
    assert {f"{relay} -> postgres:5432", f"{relay} -> storage:8333"} <= set(taken_as_remote)
    assert f"{relay} -> mlflow:5000" in taken_as_remote
    info = project.engine.inspect(relay)
    assert info is not None and info.running and not info.host_ports()

    data = tmp_path / "data"
    data.mkdir()
    write_runs(project, "relay", runs=2, mb=1, out=str(data))  # the client: published port
    before = snapshot(project)

    taken_as_remote.clear()
    out, _ = cli_ok(project, capsys, "status", "--json")
    status = json.loads(out)
    assert status["overall"] == "healthy", out
    assert "relay" not in json.dumps(status.get("extra", []))  # not an unknown container
    assert taken_as_remote, "status probed without the relay"
    assert status["probed"] == f"through the engine into the stack's network ({relay})"
    text, _ = cli_ok(project, capsys, "status")
    assert f"probed through the engine into the stack's network ({relay})" in " ".join(text.split())

    archive = tmp_path / "relay.tar.gz"
    out, _ = cli_ok(project, capsys, "backup", "-o", str(archive), "--json")
    assert json.loads(out)["objects"] >= 4  # every object came down through the relay
    cli_ok(project, capsys, "restore", "--force", str(archive))
    assert snapshot(project) == before

    # down removes the relay with the rest; up makes it again
    cli_ok(project, capsys, "down")
    assert project.engine.inspect(relay) is None
    cli_ok(project, capsys, "up")
    assert snapshot(project) == before
