"""Managed services (postgres.external, storage.external) without Docker: their secrets, the
rendered file and its specs, `up`/`status`/`down`/`logs`/`env` on the FakeEngine, and every bad
input for their keys."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlstack import labels
from mlstack.adapters import managed
from mlstack.adapters.postgres import Tools
from mlstack.cli import options, run
from mlstack.commands.down import down
from mlstack.commands.env import env
from mlstack.commands.logs import logs
from mlstack.commands.status import status
from mlstack.commands.up import Action, up
from mlstack.compose.render import render_compose, render_env, write_rendered
from mlstack.compose.services import from_compose
from mlstack.config import StackConfig, load_config
from mlstack.credentials import ExternalSecrets, external_secrets, read_secret
from mlstack.engine import OneShot
from mlstack.errors import (
    ConfigError,
    ExitCode,
    NotReady,
    ProvisionError,
    StateError,
    UsageError,
)
from mlstack.project.context import Project
from mlstack.project.external import Made, diagnose
from mlstack.project.oneshot import backend_on
from mlstack.project.pgtools import pg_tools
from mlstack.state import ProjectState
from tests.fakes import FakeBackends, FakeEngine

from .test_render_services import SECRETS, compose_binary

PG = "postgres.external.uri=postgresql://bob@db.example.com:6432/team?sslmode=require"
S3 = "storage.external.endpoint=https://s3.eu-west-1.example.com"
PASSWORD = "pg-Secret$pass#1"
ACCESS, SECRET = "AKIATEAMKEY0001", "team/secret+key0001"


@pytest.fixture(autouse=True)
def managed_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The managed services' secrets where the config names them by default."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    yield


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def config(*sets: str) -> StackConfig:
    storage, console, postgres, mlflow = free_ports(4)
    ports = [
        f"storage.port={storage}",
        f"storage.console_port={console}",
        f"postgres.port={postgres}",
        f"mlflow.port={mlflow}",
    ]
    return load_config(env={}, sets=["project=p", *ports, *sets]).config


def opened(cfg: StackConfig) -> Project:
    project = Project.open(cfg, create_secrets=True, save=False)
    assert project is not None
    return project


def fake_engine(cfg: StackConfig) -> FakeEngine:
    images = {s.image: f"sha256:{i:064x}" for i, s in enumerate(opened(cfg).spec.services.values())}
    images[cfg.postgres.image] = "sha256:" + "f" * 64  # pg_dump's image (pgtools)
    return FakeEngine(images=images)


# --- secrets: read when needed, one line naming the key and the source when they cannot be ---


def test_a_secret_comes_from_its_variable_or_the_first_line_of_its_file(tmp_path: Path) -> None:
    assert read_secret("postgres.external.password", "PW", None, {"PW": "x y"}) == "x y"
    path = tmp_path / "pw"
    path.write_text("first line\nsecond\n")
    assert read_secret("postgres.external.password", None, str(path), {}) == "first line"


@pytest.mark.parametrize(
    ("env_name", "file", "environ", "words"),
    [
        ("PGPASSWORD", None, {}, ["postgres.external.password_env: $PGPASSWORD is not set"]),
        ("PGPASSWORD", None, {"PGPASSWORD": ""}, ["$PGPASSWORD is empty"]),
        (None, "missing", {}, ["postgres.external.password_file", "missing does not exist"]),
        (None, "empty", {}, ["postgres.external.password_file", "empty is empty"]),
        (None, "newline-only", {}, ["newline-only is empty"]),
        (None, "a-directory", {}, ["a-directory cannot be read"]),
    ],
)
def test_a_missing_or_empty_secret_is_one_line_naming_key_and_source(
    tmp_path: Path,
    env_name: str | None,
    file: str | None,
    environ: dict[str, str],
    words: list[str],
) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "newline-only").write_text("\n")
    (tmp_path / "a-directory").mkdir()
    path = str(tmp_path / file) if file else None
    with pytest.raises(ConfigError) as info:
        read_secret("postgres.external.password", env_name, path, environ)
    line = f"{info.value.message}; hint: {info.value.hint}"
    assert "\n" not in line
    for word in words:
        assert word in line
    assert info.value.exit_code == ExitCode.USAGE


def test_storage_keys_are_read_from_their_own_sources(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(ACCESS + "\n")
    cfg = config(S3, f"storage.external.access_key_file={key}", "storage.external.secret_key_env=S")
    found = external_secrets(cfg, {"S": SECRET})
    assert found == ExternalSecrets("", ACCESS, SECRET)
    with pytest.raises(ConfigError, match=r"storage.external.secret_key_env: \$S is not set"):
        external_secrets(cfg, {})
    assert external_secrets(cfg, {}, strict=False).s3_secret_key == ""


def test_a_local_stack_reads_no_external_secret() -> None:
    assert external_secrets(config(), {}) == ExternalSecrets()


# --- the rendered file and its specs --------------------------------------------------------


def test_a_managed_postgresql_has_no_container_and_mlflow_points_at_it() -> None:
    cfg = config(PG)
    text = render_compose(cfg)
    assert PASSWORD not in text
    spec = from_compose(text, {**SECRETS.as_env(), **ExternalSecrets(PASSWORD).as_env()})
    assert set(spec.services) == {"storage", "mlflow"}
    assert list(spec.volumes) == ["storage-data"]
    mlflow = spec.services["mlflow"]
    uri = "postgresql+psycopg2://bob@db.example.com:6432/team?sslmode=require"
    assert mlflow.environment["MLFLOW_BACKEND_STORE_URI"] == uri  # no password in it
    assert mlflow.environment["PGPASSWORD"] == PASSWORD  # libpq reads it from there
    assert mlflow.depends_on == ("storage",)
    assert mlflow.environment["MLSTACK_WAIT_DATABASES"] == "team"
    assert not any(PASSWORD in part for part in mlflow.command or ())


def test_a_managed_s3_api_has_no_container_and_mlflow_points_at_it() -> None:
    cfg = config(
        S3, "storage.external.region=eu-west-1", "storage.external.addressing_style=virtual"
    )
    keys = ExternalSecrets("", ACCESS, SECRET)
    spec = from_compose(render_compose(cfg), {**SECRETS.as_env(), **keys.as_env()})
    assert set(spec.services) == {"postgres", "mlflow"}
    env = spec.services["mlflow"].environment
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.eu-west-1.example.com"
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"] == "virtual"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (ACCESS, SECRET)
    assert spec.services["mlflow"].depends_on == ("postgres",)


def test_both_managed_with_auth_leave_only_mlflow() -> None:
    user = ["postgres.external.host=db.example.com", "postgres.external.port=6432"]
    user += ["postgres.external.user=b%b", "postgres.database=team"]
    cfg = config(*user, S3, "auth=true", "postgres.external.sslmode=require")
    all_vars = {**SECRETS.as_env(), **ExternalSecrets(PASSWORD, ACCESS, SECRET).as_env()}
    spec = from_compose(render_compose(cfg), all_vars)
    assert set(spec.services) == {"mlflow"}
    assert spec.volumes == {}
    env = spec.services["mlflow"].environment
    assert spec.services["mlflow"].depends_on == ()
    assert env["PGPASSWORD"] == PASSWORD  # once, the managed server's: for the auth database too
    assert env["MLSTACK_WAIT_DATABASES"] == "team,team_auth"
    # configparser reads `%` as interpolation: the quoted user's `%25` is doubled in the ini
    assert "b%%25b@db.example.com:6432/team_auth?sslmode=require" in env["MLSTACK_AUTH_CONFIG"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://b%25b@")


def test_a_dollar_in_a_managed_value_reaches_the_container_as_is() -> None:
    cfg = config(
        "storage.external.endpoint=http://s3.example.com/$x", "storage.external.region=r$1"
    )
    keys = ExternalSecrets("", ACCESS, SECRET)
    env = from_compose(render_compose(cfg), {**SECRETS.as_env(), **keys.as_env()})
    assert env.services["mlflow"].environment["AWS_DEFAULT_REGION"] == "r$1"


@pytest.mark.parametrize("sets", [[PG], [S3], [PG, S3, "auth=true"]])
def test_the_managed_renders_are_valid_for_docker_compose(tmp_path: Path, sets: list[str]) -> None:
    cfg = config(*sets)
    external = ExternalSecrets(PASSWORD, ACCESS, SECRET)
    write_rendered(tmp_path, cfg, SECRETS, external=external)
    done = subprocess.run(
        [
            compose_binary(),
            "-f",
            str(tmp_path / "docker-compose.yml"),
            "config",
            "--format",
            "json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    ours = from_compose(render_compose(cfg), {**SECRETS.as_env(), **external.as_env()})
    assert set(parsed["services"]) == set(ours.services)
    # compose prints a literal `$` (the .env quotes the password: compose reads it as is) as `$$`
    theirs = {
        k: v.replace("$$", "$") for k, v in parsed["services"]["mlflow"]["environment"].items()
    }
    assert theirs == dict(ours.services["mlflow"].environment)


def test_the_env_file_holds_the_managed_secrets_quoted_and_private(tmp_path: Path) -> None:
    external = ExternalSecrets(PASSWORD, ACCESS, SECRET)
    text = render_env(SECRETS, external)
    assert f"EXTERNAL_POSTGRES_PASSWORD='{PASSWORD}'" in text  # `$` and `#`: quoted for compose
    assert f"EXTERNAL_S3_SECRET_KEY={SECRET}" in text
    _, env_file = write_rendered(tmp_path, config(PG, S3), SECRETS, external=external)
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_a_one_shot_container_keeps_the_sslmode_of_the_backend_uri() -> None:
    project = opened(config(PG))
    uri = backend_on(project, "staged")["MLFLOW_BACKEND_STORE_URI"]
    assert uri == "postgresql+psycopg2://bob@db.example.com:6432/staged?sslmode=require"
    local = opened(config())
    assert backend_on(local, "x")["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/x")


# --- the project's view of them -----------------------------------------------------------


def test_the_project_targets_the_managed_services(tmp_path: Path) -> None:
    project = opened(config(PG, S3, "storage.bucket=team-art", "storage.external.region=eu-west-1"))
    pg = project.postgres()
    assert (pg.host, pg.port, pg.user, pg.password, pg.database) == (
        "db.example.com",
        6432,
        "bob",
        PASSWORD,
        "team",
    )
    assert pg.sslmode == "require" and pg.external == "$PGPASSWORD"
    s3 = project.s3()
    assert (s3.endpoint, s3.access_key, s3.secret_key, s3.region) == (
        "https://s3.eu-west-1.example.com",
        ACCESS,
        SECRET,
        "eu-west-1",
    )
    assert project.urls()["postgres"] == "postgresql://bob@db.example.com:6432/team?sslmode=require"
    assert project.urls()["storage"] == "https://s3.eu-west-1.example.com"
    assert project.scrub(f"x {PASSWORD} {SECRET} {ACCESS}") == "x **** **** ****"
    assert project.external_services() == ["postgres", "storage"]
    assert project.data_services() == []


def test_a_command_refuses_when_a_managed_secret_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(ConfigError, match=r"postgres.external.password_env: \$PGPASSWORD is not"):
        Project.open(config(PG), create_secrets=True, save=False)
    assert Project.open(config(PG), create_secrets=True, need_external=False) is not None


# --- up, status, down, logs, env on the FakeEngine --------------------------------------------


class Stack:
    def __init__(self, *sets: str) -> None:
        self.config = config(*sets)
        self.engine = fake_engine(self.config)
        external = [n for n in ("postgres", "storage") if getattr(self.config, n).external]
        self.backends = FakeBackends(self.engine, "p", external)

    def up(self) -> Any:
        return up(opened(self.config), self.engine, timeout=10, backends=self.backends)

    def status(self) -> Any:
        return status(self.config, self.engine, backends=self.backends)


def test_up_runs_no_container_for_a_managed_service() -> None:
    stack = Stack(PG)
    stack.backends.made = [Made("database", "team", "db.example.com:6432")]
    result = stack.up()
    assert stack.engine.names() == ["p-mlflow", "p-storage"]
    actions = {s.service: s.action for s in result.services}
    assert actions == {
        "postgres": Action.EXTERNAL,
        "storage": Action.CREATED,
        "mlflow": Action.CREATED,
    }
    assert result.database_created and result.bucket_created
    assert stack.backends.prepared == 1 and stack.backends.databases == []  # not the local way
    assert stack.engine.volumes(labels.of_project("p")) == ["p-storage-data"]
    record = ProjectState.for_project("p").root / "external.json"
    assert json.loads(record.read_text()) == [
        {"kind": "database", "name": "team", "where": "db.example.com:6432"}
    ]
    assert record.stat().st_mode & 0o777 == 0o600
    env = ProjectState.for_project("p").env_file
    assert f"EXTERNAL_POSTGRES_PASSWORD='{PASSWORD}'" in env.read_text()
    assert env.stat().st_mode & 0o777 == 0o600


def test_up_checks_the_managed_services_before_it_makes_anything() -> None:
    stack = Stack(PG, S3)
    seen: list[str] = []
    stack.backends.external_error = ProvisionError(
        "the database team does not exist on db.example.com:6432 and user bob may not create "
        "databases (CREATEDB)",
        "create it (CREATE DATABASE team OWNER bob) or grant CREATEDB (ALTER ROLE bob CREATEDB)",
    )
    stack.engine.interrupt_at = None
    with pytest.raises(ProvisionError, match="may not create databases"):
        up(
            opened(stack.config),
            stack.engine,
            timeout=10,
            backends=stack.backends,
            report=lambda e: seen.append(e.message),
        )
    assert seen == ["managed postgres and storage"]
    assert stack.engine.calls == []  # no network, volume or container
    assert not ProjectState.for_project("p").root.exists()  # and no state


def test_a_second_up_on_managed_services_changes_nothing() -> None:
    stack = Stack(PG, S3)
    stack.up()
    calls = len(stack.engine.calls)
    result = stack.up()
    assert not result.changed
    assert stack.engine.calls[calls:] == []


def test_up_retires_the_stacks_own_container_of_a_service_now_managed() -> None:
    stack = Stack()
    stack.backends = FakeBackends(stack.engine, "p")
    stack.up()
    stack.config = load_config(env={}, sets=["project=p", PG, *_ports(stack.config)]).config
    stack.backends = FakeBackends(stack.engine, "p", ["postgres"])
    result = stack.up()
    assert "p-postgres" not in stack.engine.names()
    assert "p-postgres-data" in stack.engine.volumes(labels.of_project("p"))  # data stays
    assert any("removed container p-postgres" in w for w in result.warnings)
    assert stack.status().overall.value == "healthy"


def _ports(cfg: StackConfig) -> list[str]:
    return [
        f"storage.port={cfg.storage.port}",
        f"storage.console_port={cfg.storage.console_port}",
        f"mlflow.port={cfg.mlflow.port}",
    ]


def test_status_shows_managed_services_as_external_rows() -> None:
    stack = Stack(PG, S3)
    stack.up()
    result = stack.status()
    rows = {r.service: r for r in result.services}
    assert result.overall.value == "healthy"
    assert rows["postgres"].external and rows["postgres"].state == "external"
    assert rows["postgres"].container == "-"
    assert rows["postgres"].url == "postgresql://bob@db.example.com:6432/team?sslmode=require"
    assert rows["storage"].probe is not None and rows["storage"].probe.ok


@pytest.mark.parametrize(
    ("service", "error", "cause", "fix"),
    [
        (
            "postgres",
            StateError("PostgreSQL at db:5432 rejected the password of user bob"),
            "rejects the password",
            "postgres.external",
        ),
        (
            "postgres",
            NotReady("cannot connect: timeout expired"),
            "does not answer",
            "postgres.external",
        ),
        (
            "storage",
            NotReady("S3 at x: An error occurred (NoSuchBucket) when calling"),
            "does not exist",
            "mlstack up",
        ),
        (
            "storage",
            NotReady("S3 at x: (AccessDenied) when calling ListObjectsV2"),
            "may not list",
            "s3:ListBucket",
        ),
        (
            "storage",
            NotReady("S3 at x: (InvalidAccessKeyId)"),
            "rejects the keys",
            "storage.external",
        ),
    ],
)
def test_status_diagnoses_a_failing_managed_service(
    service: str, error: Exception, cause: str, fix: str
) -> None:
    stack = Stack(PG, S3)
    stack.up()
    stack.backends.scripted[service].error = error  # its own probe, and MLflow's through it
    result = stack.status()
    assert result.overall.value == "degraded" and result.exit_code == ExitCode.DEGRADED
    row = {r.service: r for r in result.services}[service]
    assert not row.healthy and cause in row.cause and fix in row.fix
    assert row.problem


def test_down_purge_touches_no_managed_service_and_says_what_is_left() -> None:
    stack = Stack(PG, S3, "auth=true")
    stack.backends.made = [Made("database", "team_auth", "db.example.com:6432")]
    stack.up()
    result = down(stack.config, stack.engine, purge=True)
    assert result.state_removed
    pg, s3 = result.external
    assert "PostgreSQL at db.example.com:6432 is not mlstack's: dropped nothing" in pg
    assert "mlstack created team_auth" in pg and "DROP DATABASE team_auth" in pg
    assert "team existed before mlstack" in pg
    assert "bucket mlflow at https://s3.eu-west-1.example.com is not mlstack's" in s3
    assert "deleted no object" in s3
    plain = down(stack.config, stack.engine)
    assert plain.external == []


def test_logs_of_a_managed_service_say_there_is_none() -> None:
    stack = Stack(PG)
    stack.up()
    with pytest.raises(UsageError, match="postgres is managed elsewhere"):
        list(logs(stack.config, stack.engine, "postgres", follow=False, tail=5))
    assert {s for s, _ in logs(stack.config, stack.engine, None, follow=False, tail=5)} <= {
        "storage",
        "mlflow",
    }


def test_env_s3_names_the_managed_endpoint_and_its_keys_only_when_asked() -> None:
    cfg = config(S3, "storage.external.region=eu-west-1")
    hidden = env(cfg, s3=True)
    assert hidden.variables["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.eu-west-1.example.com"
    assert hidden.variables["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert "AWS_SECRET_ACCESS_KEY" in hidden.hidden
    shown = env(cfg, s3=True, show_secrets=True)
    assert shown.variables["AWS_SECRET_ACCESS_KEY"] == SECRET


def test_pg_dump_runs_beside_a_managed_server_in_a_container_removed_afterwards() -> None:
    cfg = config(PG)
    project = opened(cfg)
    engine = fake_engine(cfg)
    del engine.images[cfg.postgres.image]  # pulled first
    engine.pullable.add(cfg.postgres.image)
    seen = []

    def fail_inside() -> None:
        with pg_tools(project, engine) as tools:
            seen.append(tools)
            container = engine.container("p-pgtools")
            assert container.state == "running" and container.network == "p-net"
            assert container.spec is not None and container.spec.environment == {}  # no secret
            assert container.labels[labels.PROJECT] == "p"
            raise RuntimeError("pg_dump failed")

    with pytest.raises(RuntimeError):
        fail_inside()
    assert seen == [Tools("p-pgtools", "db.example.com", 6432)]
    assert "p-pgtools" not in engine.names()  # removed, even on failure
    assert ("pull", cfg.postgres.image) in engine.calls
    local = opened(config())
    with pg_tools(local, engine) as tools:
        assert tools == Tools("p-postgres")  # the stack's own: inside its container


# --- what the managed services answer, as one line each -------------------------------------


@pytest.mark.parametrize(
    ("listing", "code", "words"),
    [
        (
            "NoSuchBucket",
            "AccessDenied",
            [
                "bucket b does not exist at http://s3",
                "AccessDenied on CreateBucket",
                "s3:CreateBucket",
            ],
        ),
        (
            "AccessDenied",
            "AccessDenied",
            ["may not use bucket b", "nor create it", "s3:ListBucket"],
        ),
        (
            "AccessDenied",
            "BucketAlreadyOwnedByYou",
            ["the keys own bucket b at http://s3 but may not list it"],
        ),
        ("NoSuchBucket", "BucketAlreadyExists", ["bucket name b is taken", "storage.bucket"]),
        ("NoSuchBucket", "InvalidAccessKeyId", ["does not know the access key", "$K"]),
    ],
)
def test_a_bucket_that_may_not_be_made_is_one_line_naming_the_right(
    listing: str, code: str, words: list[str]
) -> None:
    from mlstack.adapters.targets import S3Target

    target = S3Target("http://s3", "a", "b", external="$K")
    error = managed._not_created(target, "b", listing, code, Exception(code))
    line = f"{error.message}; hint: {error.hint}"
    for word in words:
        assert word in line, line


def test_only_mlflows_keys_of_a_managed_bucket_are_its_own() -> None:
    assert managed.mlflow_key("1/abc/artifacts/x.bin")
    assert managed.mlflow_key("0/models/m-1/artifacts/MLmodel")
    assert not managed.mlflow_key("datasets/train.csv")
    assert not managed.mlflow_key(".mlstack-restore/t/1/x")


@pytest.mark.parametrize(
    ("detail", "cause"),
    [
        ('S3 at http://h:40312: Read timeout on endpoint URL: "http://h:40312/b"', "not answer"),
        ("S3 at http://h:9000: An error occurred (403) when calling the HeadBucket", "may not"),
        ("S3 at http://h:4404: Could not connect to the endpoint URL", "does not answer"),
        ('cannot connect: FATAL:  database "team" does not exist', "database does not exist"),
    ],
)
def test_a_code_in_a_port_is_not_mistaken_for_the_servers_answer(detail: str, cause: str) -> None:
    assert cause in diagnose("storage", detail).cause


def test_an_unknown_probe_failure_still_gets_a_fix() -> None:
    found = diagnose("postgres", "something odd")
    assert found.cause == "something odd" and "postgres.external" in found.fix


# --- through the CLI's entry point ----------------------------------------------------------


def test_cli_up_without_the_managed_password_is_one_line_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    cfg = config(PG)
    engine = fake_engine(cfg)
    monkeypatch.setattr(options, "engine", lambda: engine)
    monkeypatch.delenv("PGPASSWORD")
    file = tmp_path / "mlstack.yaml"
    file.write_text(f"project: p\npostgres:\n  external:\n    uri: {PG.split('=', 1)[1]}\n")
    code = run(["-c", str(file), "up"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert err.strip().splitlines() == [
        "error: postgres.external.password_env: $PGPASSWORD is not set; hint: export PGPASSWORD "
        "in the shell that runs mlstack, or name a file with postgres.external.password_file "
        "(see postgres.external in mlstack.yaml)"
    ]
    assert engine.calls == []
    assert not ProjectState.for_project("p").root.exists()


def test_cli_render_with_a_missing_key_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "mlstack.yaml"
    file.write_text(
        "storage:\n  external:\n    endpoint: http://s3.example.com\n"
        f"    secret_key_file: {tmp_path}/nope\n"
    )
    code = run(["-c", str(file), "render", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    (line,) = err.strip().splitlines()
    assert line.startswith(
        f"error: storage.external.secret_key_file {tmp_path}/nope does not exist: "
    )
    assert not (tmp_path / "out").exists()


def test_new_secrets_on_a_managed_auth_database_give_its_admin_the_new_login() -> None:
    stack = Stack(PG, "auth=true")
    result = stack.up()  # team_auth existed before: the stack's secrets are new
    (run,) = stack.engine.one_shots
    assert run.name == "p-mlflow-admin-login" and run.network == "p-net"
    uri = "postgresql+psycopg2://bob@db.example.com:6432/team_auth?sslmode=require"
    assert run.environment["MLFLOW_BACKEND_STORE_URI"] == uri
    assert run.environment["MLFLOW_AUTH_ADMIN_PASSWORD"] not in " ".join(run.command)
    assert result.services[2].action == Action.CREATED
    stack.up()  # the same secrets: nothing to set
    assert len(stack.engine.one_shots) == 1


def test_a_managed_auth_database_made_by_this_up_needs_no_login_set() -> None:
    stack = Stack(PG, "auth=true")
    stack.backends.made = [Made("database", "team_auth", "db.example.com:6432")]
    stack.up()
    assert stack.engine.one_shots == []


def test_a_failed_admin_login_is_one_line_with_its_fix() -> None:
    stack = Stack(PG, "auth=true")
    stack.engine.one_shot_behaviours["admin-login"] = lambda run: OneShot(1, "OperationalError: x")
    with pytest.raises(ProvisionError) as info:
        stack.up()
    assert "setting the stack's admin login in team_auth on db.example.com:6432 failed" in str(
        info.value
    )
    assert "drop team_auth" in info.value.hint


def test_up_with_both_services_managed_starts_mlflow_alone() -> None:
    stack = Stack(PG, S3)
    steps: list[str] = []
    up(opened(stack.config), stack.engine, timeout=10, backends=stack.backends,
       report=lambda e: steps.append(e.message) if e.kind == "step" else None)  # fmt: skip
    assert stack.engine.names() == ["p-mlflow"]
    assert stack.engine.volumes(labels.of_project("p")) == []
    assert "starting " not in steps and any(s.startswith("starting mlflow") for s in steps)
