"""The CLI through its real entry point (no engine needed for these)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlstack import __version__
from mlstack.cli import run
from mlstack.config import StackConfig, load_config, valid_keys
from mlstack.errors import ExitCode
from tests.secret_scan import assert_no_secrets, leaked, secret_values


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
    assert "AWS_SECRET_ACCESS_KEY" not in out and "add --show-secrets" in err
    code, out, _ = cli(capsys, "env", "--s3", "--show-secrets", "--format", "json")
    values = json.loads(out)
    assert len(values["AWS_SECRET_ACCESS_KEY"]) >= 24
    assert values["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"


def test_env_s3_of_a_remote_engines_stack_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://deploy@server.example")
    code, out, err = cli(capsys, "env", "--format", "json")  # the tracking URI: the server's
    assert code == 0 and json.loads(out)["MLFLOW_TRACKING_URI"] == "http://server.example:5050"
    code, out, err = cli(capsys, "env", "--s3")
    assert code == ExitCode.USAGE and out == ""
    assert err.startswith("error: --s3 gives the stack's own S3 endpoint, which the engine at ")
    assert "ssh://deploy@server.example" in err and "keeps on its server's loopback" in err
    assert len(err.strip().splitlines()) == 1


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
    code, out, err = cli(capsys, "config")
    assert code == 0
    assert not leaked(secret_values(isolated_state / "mlstack" / "secrets.env"), out, err)
    assert "****" in out


def test_env_show_secrets_prints_them_and_the_scanner_sees_it(
    capsys: pytest.CaptureFixture[str], isolated_state: Path
) -> None:
    """The scan every integration test applies to its output can fail: here it must."""
    assert run(["render", "-o", "out"]) == 0
    values = secret_values(isolated_state / "mlstack" / "secrets.env")
    assert len(values) == 5  # PostgreSQL password, S3 keys, MLflow admin password, Flask key
    argv = ["env", "--s3", "--show-secrets"]
    code, out, err = cli(capsys, *argv)
    assert code == 0
    assert len(leaked(values, out)) == 2  # the S3 keys; the password is not the client's
    with pytest.raises(AssertionError, match="printed 2 secret value"):
        assert_no_secrets(["env", "--s3"], values, out, err)
    assert_no_secrets(argv, values, out, err)  # asked for: allowed
    code, out, err = cli(capsys, "env", "--s3")
    assert code == 0 and not leaked(values, out, err)


def test_every_exit_code_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", table, flags=re.MULTILINE))
    for code in ExitCode:
        assert str(int(code)) in rows, f"{code.name} ({int(code)}) is missing from the table"
    assert set(rows) == {str(int(c)) for c in ExitCode}, "the table lists an unknown code"


def _keys(data: dict[str, object], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        if isinstance(value, dict) and key != "labels":
            keys |= _keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_init_writes_a_config_that_loads(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "init")
    assert code == 0 and err.strip() == "wrote mlstack.yaml"
    written = yaml.safe_load(Path("mlstack.yaml").read_text())
    optional = {
        k
        for k in valid_keys()
        if ".external." in k
        or k in ("host", "tls.cert", "tls.key", "mlflow.replicas", "swarm.data_node")
    }
    assert _keys(written) == set(valid_keys()) - optional  # every key, each with its default
    text = Path("mlstack.yaml").read_text()
    for key in (
        "# host:",
        "# replicas:",
        "# data_node:",
        "# external:",
        "{cert:",
        "key:",
        "password_env:",
        "secret_key_env:",
    ):
        assert key in text  # the optional ones, commented
    assert load_config(Path("mlstack.yaml"), env={}).config == StackConfig()
    code, out, _ = cli(capsys, "config", "--json")
    assert code == 0 and json.loads(out)["mlflow"]["port"] == 5050
    # a second init refuses to overwrite it
    code, _, err = cli(capsys, "init")
    assert code == ExitCode.USAGE and "already exists" in err


@pytest.mark.parametrize(
    "argv",
    [[sys.executable, "-m", "mlstack"], [str(Path(sys.executable).parent / "mlstack")]],
    ids=["python -m mlstack", "console script"],
)
def test_python_dash_m_and_console_script_work(tmp_path: Path, argv: list[str]) -> None:
    env = {**os.environ, "MLSTACK_STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [*argv, "--version"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mlstack {__version__}\n"


def test_bare_mlstack_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys)
    assert code == 0 and err == ""
    assert out.startswith("Usage: mlstack") and "\n  up " in out and "--set KEY=VALUE" in out
