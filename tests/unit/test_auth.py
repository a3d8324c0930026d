"""`auth: true` pieces that need no engine: secrets, the client environment, messages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlstack import credentials as secrets_store
from mlstack.adapters.mlflow_env import activate, client_env
from mlstack.cli import run
from mlstack.commands.up import exposed_warning
from mlstack.config import StackConfig
from mlstack.credentials import AUTH_KEYS, StackSecrets
from mlstack.project.backends import HostBackends
from mlstack.project.context import Project
from mlstack.project.watch import log_hint
from mlstack.state import ProjectState

OLD_FILE = (
    "# mlstack credentials for this project: keep private (mode 0600).\n"
    "POSTGRES_USER=mlflow\n"
    "POSTGRES_PASSWORD=oldpostgrespassword0123456789abc\n"
    "S3_ACCESS_KEY=mlstackOLDKEY0000001\n"
    "S3_SECRET_KEY=oldsecretkey0123456789oldsecretkey012345\n"
)


def write_old_file(state: ProjectState) -> None:
    state.ensure()
    state.secrets_file.write_text(OLD_FILE)
    state.secrets_file.chmod(0o600)


def test_new_secrets_carry_a_long_admin_password() -> None:
    fresh = StackSecrets.generate()
    assert fresh.has_auth and fresh.MLFLOW_AUTH_ADMIN_USERNAME == "admin"
    assert (
        len(fresh.MLFLOW_AUTH_ADMIN_PASSWORD) >= 32 and fresh.MLFLOW_AUTH_ADMIN_PASSWORD.isalnum()
    )
    assert fresh.MLFLOW_AUTH_ADMIN_PASSWORD != StackSecrets.generate().MLFLOW_AUTH_ADMIN_PASSWORD
    # scrubbed like the others; a user name is not a secret
    assert fresh.MLFLOW_AUTH_ADMIN_PASSWORD in fresh.values()
    assert fresh.MLFLOW_FLASK_SERVER_SECRET_KEY in fresh.values()
    assert "admin" not in fresh.values()


def test_an_old_secrets_file_gains_the_auth_keys_and_keeps_its_values(
    isolated_state: Path,
) -> None:
    state = ProjectState.for_project("old", {"MLSTACK_STATE_DIR": str(isolated_state)})
    write_old_file(state)
    # Readers do not write: an old file loads as it is.
    loaded = secrets_store.load(state)
    assert loaded is not None and not loaded.has_auth
    assert state.secrets_file.read_text() == OLD_FILE

    upgraded, created = secrets_store.ensure(state)
    assert not created and upgraded.has_auth
    assert upgraded.POSTGRES_PASSWORD == "oldpostgrespassword0123456789abc"
    assert upgraded.S3_ACCESS_KEY == "mlstackOLDKEY0000001"
    assert upgraded.S3_SECRET_KEY == "oldsecretkey0123456789oldsecretkey012345"
    text = state.secrets_file.read_text()
    assert text.startswith(OLD_FILE)  # every old line stays as it was
    for key in AUTH_KEYS:
        assert f"{key}={getattr(upgraded, key)}" in text
    assert state.secrets_file.stat().st_mode & 0o777 == 0o600
    # and the next `up` reuses them
    again, _ = secrets_store.ensure(state)
    assert again == upgraded


def test_env_exports_the_login_only_with_show_secrets() -> None:
    config = StackConfig(auth=True)
    creds = StackSecrets.generate()
    hidden = client_env(config, creds)
    assert "MLFLOW_TRACKING_PASSWORD" not in hidden.variables
    assert hidden.hidden == ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]
    shown = client_env(config, creds, show_secrets=True)
    assert shown.variables["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert shown.variables["MLFLOW_TRACKING_PASSWORD"] == creds.MLFLOW_AUTH_ADMIN_PASSWORD
    assert shown.hidden == []
    # without auth there is no login to hide or show
    off = client_env(StackConfig(), creds, show_secrets=True)
    assert "MLFLOW_TRACKING_USERNAME" not in off.variables and off.hidden == []


def test_activate_logs_the_process_in(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = StackSecrets.generate()
    names = [*client_env(StackConfig(auth=True), creds, show_secrets=True).variables]
    for name in [*names, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"]:
        monkeypatch.setenv(name, "")  # recorded: restored after the test
        monkeypatch.delenv(name)
    activate(StackConfig(auth=True), creds)
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == creds.MLFLOW_AUTH_ADMIN_PASSWORD
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "admin"


def test_env_command_with_auth(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--set", "auth=true", "render", "-o", "out"]) == 0
    capsys.readouterr()
    assert run(["--set", "auth=true", "env"]) == 0
    hidden = capsys.readouterr()
    password = Project.open(StackConfig()).secrets.MLFLOW_AUTH_ADMIN_PASSWORD  # type: ignore[union-attr]
    assert password not in hidden.out and password not in hidden.err
    assert "MLFLOW_TRACKING_PASSWORD" not in hidden.out
    assert len(hidden.err.strip().splitlines()) == 1
    assert "credentials hidden" in hidden.err and "--show-secrets" in hidden.err
    assert run(["--set", "auth=true", "env", "--show-secrets", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert shown["MLFLOW_TRACKING_PASSWORD"] == password


def test_probes_send_the_admin_login_only_with_auth() -> None:
    off = Project.open(StackConfig(), create_secrets=True)
    on = Project.open(StackConfig(auth=True), create_secrets=True)
    assert off is not None and on is not None
    assert off.mlflow_headers() == {}
    assert on.mlflow_headers()["Authorization"].startswith("Basic ")
    assert HostBackends(on).probes()["mlflow"].headers == on.mlflow_headers()  # type: ignore[attr-defined]


def test_exposed_warning_recommends_auth_only_when_it_is_off() -> None:
    off = exposed_warning(StackConfig(bind="0.0.0.0", allow_unauthenticated=True))
    assert "set auth: true" in off
    on = exposed_warning(StackConfig(bind="0.0.0.0", auth=True))
    assert "set auth: true" not in on and "0.0.0.0" in on


def test_missing_flask_wtf_gets_a_hint() -> None:
    log = (
        "Traceback (most recent call last):\n"
        '  File "/opt/mlflow/lib/python3.11/site-packages/mlflow/server/auth/__init__.py", '
        "line 70, in <module>\n"
        "    from flask_wtf import CSRFProtect\n"
        "ModuleNotFoundError: No module named 'flask_wtf'\n"
    )
    hint = log_hint("mlflow", log)
    assert hint is not None and "mlflow[auth]" in hint and "mlflow.image" in hint
    # MLflow 3.17.2's own words, as its log ends in an image without Flask-WTF
    newer = (
        '  File "/opt/mlflow/lib/python3.11/site-packages/mlflow/server/auth/__init__.py", '
        "line 489, in <module>\n    raise ImportError(\n"
        "ImportError: The MLflow basic auth app requires the Flask-WTF package to perform CSRF "
        "validation. Please run `pip install mlflow[auth]` to install it.\n"
    )
    assert log_hint("mlflow", newer) == hint
    assert log_hint("mlflow", "ModuleNotFoundError: No module named 'psycopg2'") is None
    assert log_hint("postgres", log) is None


def test_reading_commands_work_with_an_old_file_and_auth_on(isolated_state: Path) -> None:
    """`auth: true` set, no `up` since: status, logs, demo and serve still open the stack."""
    write_old_file(ProjectState.for_project("mlstack"))
    stack = Project.open(StackConfig(auth=True))
    assert stack is not None and not stack.secrets.has_auth
    assert stack.mlflow_headers() == {}
    assert "--app-name" in " ".join(stack.service("mlflow").command or ())
    assert ProjectState.for_project("mlstack").secrets_file.read_text() == OLD_FILE
