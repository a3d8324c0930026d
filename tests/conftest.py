"""Shared fixtures: every test gets its own state dir and a clean MLSTACK_* environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("MLSTACK_"):
            monkeypatch.delenv(name)
    state = tmp_path / "state"
    monkeypatch.setenv("MLSTACK_STATE_DIR", str(state))
    monkeypatch.setenv("MLSTACK_BACKUP_DIR", str(tmp_path / "backups"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield state
