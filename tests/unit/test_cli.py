"""The CLI through its real entry point (no engine needed for these)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlstack.cli import run
from mlstack.errors import ExitCode


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in (
        "up",
        "status",
        "down",
        "logs",
        "env",
        "config",
        "init",
        "render",
        "backup",
        "restore",
    ):
        assert f"  {command}" in out


def test_env_prints_a_tracking_uri_for_eval(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--set", "mlflow.port=5151", "env")
    assert code == 0
    assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:5151\n" in out
    assert "export MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD=false\n" in out


def test_env_json_and_dotenv(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "env", "--format", "json")
    assert code == 0 and json.loads(out)["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5050"
    code, out, _ = cli(capsys, "env", "--format", "dotenv")
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:5050\n" in out


def test_env_hides_keys_without_show_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["render", "-o", "out"]) == 0
    capsys.readouterr()
    code, out, err = cli(capsys, "env", "--s3")
    assert code == 0
    assert "AWS_SECRET_ACCESS_KEY" not in out and "hidden: add --show-secrets" in err
    code, out, _ = cli(capsys, "env", "--s3", "--show-secrets", "--format", "json")
    values = json.loads(out)
    assert len(values["AWS_SECRET_ACCESS_KEY"]) >= 24
    assert values["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"


def test_render_writes_compose_and_private_env(
    capsys: pytest.CaptureFixture[str], isolated_state: Path
) -> None:
    code, _, _ = cli(capsys, "render", "-o", "out")
    assert code == 0
    assert (Path("out") / "docker-compose.yml").exists()
    assert (Path("out") / ".env").stat().st_mode & 0o777 == 0o600
    secrets_file = isolated_state / "mlstack" / "secrets.env"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    # a second render reuses the same secrets
    first = secrets_file.read_text()
    assert run(["render", "-o", "out2"]) == 0
    assert secrets_file.read_text() == first
    assert (Path("out2") / ".env").read_text() == (Path("out") / ".env").read_text()


def test_config_masks_secrets(capsys: pytest.CaptureFixture[str], isolated_state: Path) -> None:
    assert run(["render", "-o", "out"]) == 0
    capsys.readouterr()
    code, out, _ = cli(capsys, "config")
    assert code == 0
    secrets = (isolated_state / "mlstack" / "secrets.env").read_text()
    for line in secrets.splitlines()[1:]:
        key, _, value = line.partition("=")
        if "USER" not in key:
            assert value not in out
    assert "****" in out


def test_init_writes_a_config_that_loads(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = cli(capsys, "init")
    assert code == 0 and Path("mlstack.yaml").exists()
    code, out, _ = cli(capsys, "config", "--json")
    assert code == 0 and json.loads(out)["mlflow"]["port"] == 5050
    code, _, err = cli(capsys, "init")
    assert code == ExitCode.USAGE and "already exists" in err and "--force" in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--set", "mlflow.prot=1", "config"], ExitCode.USAGE, "did you mean 'mlflow.port'"),
        (["--set", "mlflow.port=99999", "env"], ExitCode.USAGE, "between 1 and 65535"),
        (["--config", "missing.yaml", "config"], ExitCode.USAGE, "does not exist"),
        (["env", "--format", "xml"], ExitCode.USAGE, "--format 'xml'"),
        (["up", "--pull", "sometimes"], ExitCode.USAGE, "--pull 'sometimes'"),
        (["up", "--timeout", "0"], ExitCode.USAGE, "--timeout must be positive"),
        (["logs", "nginx"], ExitCode.USAGE, "unknown service 'nginx'"),
        (["down", "--purge"], ExitCode.USAGE, "add --yes"),
        (["frobnicate"], ExitCode.USAGE, "No such command"),
        (["--project", "Bad Name", "env"], ExitCode.USAGE, "not a valid project name"),
    ],
)
def test_bad_input_gets_one_line_and_exit_code(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    got, out, err = cli(capsys, *args)
    assert got == code, err
    assert message in err
    assert "Traceback" not in err + out
    assert err.startswith("error: ")
    assert "hint: " in err


def test_engine_unreachable_says_how_to_start_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, _, err = cli(capsys, "status")
    assert code == ExitCode.ENGINE
    assert "not reachable at unix:///nonexistent/docker.sock" in err
    assert "hint: start Docker" in err


def test_malformed_yaml_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    Path("mlstack.yaml").write_text("project: a\nmlflow: x\n  port: 1\n")
    code, _, err = cli(capsys, "config")
    assert code == ExitCode.USAGE and "mlstack.yaml:3: malformed YAML" in err


def test_python_dash_m_and_console_script_work(tmp_path: Path) -> None:
    env = {**os.environ, "MLSTACK_STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "mlstack", "--version"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("mlstack ")
    result = subprocess.run(
        [sys.executable, "-m", "mlstack", "--set", "x=1", "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == ExitCode.USAGE and "Traceback" not in result.stderr
