"""Credentials and the per-project state dir: random, private, and left as found on refusal."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from mlstack.config import StackConfig
from mlstack.credentials import StackSecrets
from mlstack.credentials import load as load_secrets
from mlstack.errors import StackBusy, StateError
from mlstack.project.context import Project
from mlstack.state import ProjectState


def test_generated_secrets_are_long_random_and_shell_safe() -> None:
    first, second = StackSecrets.generate(), StackSecrets.generate()
    for secret in (first.POSTGRES_PASSWORD, first.S3_SECRET_KEY):
        assert len(secret) >= 24
    # The access key is the public half of the S3 pair (shaped like AWS's 20-character key
    # IDs); its random part still differs per stack.
    assert len(first.S3_ACCESS_KEY) == 20 and first.S3_ACCESS_KEY != second.S3_ACCESS_KEY
    assert not set(first.values()) & set(second.values())
    alphabet = set(string.ascii_letters + string.digits)
    assert all(set(value) <= alphabet for value in first.values())


def test_secrets_are_stored_0600_and_reused(isolated_state: Path) -> None:
    stack = Project.open(StackConfig(), create_secrets=True)
    assert stack is not None and stack.secrets_created
    path = stack.state.secrets_file
    assert path.stat().st_mode & 0o777 == 0o600
    again = Project.open(StackConfig(), create_secrets=True)
    assert again is not None and again.secrets == stack.secrets and not again.secrets_created


def test_up_stores_new_secrets_only_when_told(isolated_state: Path) -> None:
    stack = Project.open(StackConfig(), create_secrets=True, save=False)
    assert stack is not None and not isolated_state.exists()
    stack.save_secrets()
    assert load_secrets(stack.state) == stack.secrets


def test_secrets_readable_by_others_are_refused_with_the_chmod(isolated_state: Path) -> None:
    stack = Project.open(StackConfig(), create_secrets=True)
    assert stack is not None
    stack.state.secrets_file.chmod(0o640)
    with pytest.raises(StateError, match="readable by other users") as refused:
        Project.open(StackConfig())
    assert refused.value.hint == f"run: chmod 600 {stack.state.secrets_file}"


def test_a_lock_on_a_new_project_leaves_nothing(isolated_state: Path) -> None:
    state = ProjectState.for_project("fresh")
    with state.lock("up"):
        assert state.lock_file.exists()
        with (
            pytest.raises(StackBusy, match=r"busy: `mlstack up` \(pid \d+\) is running"),
            state.lock("down"),
        ):
            pass
    assert not state.root.exists()


def test_a_lock_on_an_existing_project_keeps_its_files(isolated_state: Path) -> None:
    state = ProjectState.for_project("kept")
    state.ensure()
    (state.root / "secrets.env").write_text("x")
    with state.lock("up"):
        pass
    assert [p.name for p in state.root.iterdir()] == ["secrets.env"]
