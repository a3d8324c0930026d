"""Managed services (postgres.external, storage.external) on the real engine.

The test starts its own PostgreSQL and S3 server (SeaweedFS), not through mlstack, with their own
credentials and ports: a role `team` that owns a database `teamdb` (holding a table of its own)
and may not create databases at first, another database of the admin's, and S3 keys that may use
one bucket only, `team-artifacts`, which holds objects of its own. Their ports are published on
the address of Docker's default bridge on the host (172.17.0.1 here): the CLI reaches them
there, and so do the stack's containers (a container's own bridge address is not reachable from
another Docker network, which Docker isolates). Then:

- bad inputs (a wrong password, a database the role may not create, a bucket the keys may not
  create, an unreachable server) each refuse `up` with one line and leave nothing behind;
- the full loop: up, a client logs runs through `mlstack env`, status, backup, down, up, restore
  (refused while the role lacks CREATEDB), down --purge, and the services' own data (and
  MLflow's) is still there; an `up` after the purge serves it again.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
from botocore.config import Config

from mlstack.engine.docker import DockerEngine as Engine
from mlstack.errors import ExitCode

from .conftest import (
    SESSION,
    SESSION_LABEL,
    Project,
    client_json,
    client_process_env,
    docker0,
    free_ports,
)
from .mlflow_data import SNAPSHOT, WRITER

PG_IMAGE = "mlstack-offline/postgres:15"
S3_IMAGE = "mlstack-offline/seaweedfs:4.48"
BUCKET = "team-artifacts"
THEIR_OBJECT = "datasets/train.csv"  # the team's own object in the bucket


@dataclass
class Managed:
    """The test's own PostgreSQL and S3 server, and how to reach them."""

    engine: Engine
    host: str  # the default bridge's address on the host
    pg_port: int
    s3_port: int
    admin_password: str
    team_password: str
    admin_keys: tuple[str, str]
    team_keys: tuple[str, str]
    containers: dict[str, str]  # role -> container id

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    def sql(self, database: str, query: str, *, user: str = "admin") -> list[tuple[Any, ...]]:
        password = self.admin_password if user == "admin" else self.team_password
        conn = psycopg2.connect(
            host=self.host, port=self.pg_port, user=user, password=password, dbname=database
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def databases(self) -> set[str]:
        return {row[0] for row in self.sql("postgres", "SELECT datname FROM pg_database")}

    def s3(self, keys: tuple[str, str] | None = None) -> Any:
        access, secret = keys or self.admin_keys
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def keys(self, bucket: str = BUCKET) -> list[str]:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        body: bytes = self.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return body

    def pause_s3(self, paused: bool) -> None:
        api = self.engine._api
        (api.pause if paused else api.unpause)(self.containers["s3"])


def _token(n: int = 24) -> str:
    return secrets.token_hex(n // 2)


def _wait(what: str, check: Callable[[], object], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Exception as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not ready in {timeout:.0f} s: {e}") from e
            time.sleep(0.3)


def _run(engine: Engine, role: str, image: str, port: int, host: str, **options: Any) -> str:
    api = engine._api
    inside = options.pop("inside")
    created = api.create_container(
        image,
        name=f"mlt-managed-{role}-{uuid.uuid4().hex[:8]}",
        labels={SESSION_LABEL: SESSION, "org.mlstack-tests.role": f"managed-{role}"},
        ports=[inside],
        host_config=api.create_host_config(port_bindings={inside: (host, port)}),
        detach=True,
        **options,
    )
    api.start(created["Id"])
    return str(created["Id"])


def _s3_config(admin: tuple[str, str], team: tuple[str, str]) -> str:
    def identity(name: str, keys: tuple[str, str], actions: list[str]) -> dict[str, Any]:
        creds = [{"accessKey": keys[0], "secretKey": keys[1]}]
        return {"name": name, "credentials": creds, "actions": actions}

    team_actions = [f"{a}:{BUCKET}" for a in ("Read", "Write", "List", "Tagging")]
    return json.dumps(
        {
            "identities": [
                identity("admin", admin, ["Admin", "Read", "Write", "List", "Tagging"]),
                identity("team", team, team_actions),
            ]
        }
    )


@pytest.fixture(scope="module")
def managed(engine: Engine) -> Iterator[Managed]:
    host = docker0(engine)
    pg_port, s3_port = free_ports(2)
    admin_keys = ("ADMIN" + _token(12).upper(), _token(32))
    team_keys = ("TEAM" + _token(12).upper(), _token(32))
    found = Managed(engine, host, pg_port, s3_port, _token(), _token(), admin_keys, team_keys, {})
    config = _s3_config(admin_keys, team_keys).replace("'", "")
    weed = (
        f"printf '%s' '{config}' > /tmp/s3.json && exec weed -logtostderr=true mini -dir=/data "
        "-master.telemetry=false -master.volumeSizeLimitMB=64 -webdav=false -admin.ui=false "
        "-s3.port.iceberg=0 -s3.port.lance=0 -s3.config=/tmp/s3.json"
    )
    try:
        found.containers["pg"] = _run(
            engine,
            "pg",
            PG_IMAGE,
            pg_port,
            host,
            inside=5432,
            environment={"POSTGRES_USER": "admin", "POSTGRES_PASSWORD": found.admin_password},
        )
        found.containers["s3"] = _run(
            engine,
            "s3",
            S3_IMAGE,
            s3_port,
            host,
            inside=8333,
            entrypoint=["/bin/sh", "-c"],
            command=[weed],
        )
        _wait("PostgreSQL", lambda: found.sql("postgres", "SELECT 1"))
        _wait("S3", lambda: found.s3().list_buckets())
        _seed(found)
        yield found
    finally:
        for container in found.containers.values():
            engine.remove(container)


def _seed(m: Managed) -> None:
    """What the team had before mlstack: a role that may not create databases, its database with
    a table of its own, another database, and a bucket holding an object of its own."""
    m.sql("postgres", f"CREATE ROLE team LOGIN PASSWORD '{m.team_password}' NOCREATEDB")
    m.sql("postgres", "CREATE DATABASE teamdb OWNER team")
    m.sql("postgres", "CREATE DATABASE teamdata")
    m.sql("teamdata", "CREATE TABLE results (score int); INSERT INTO results VALUES (42)")
    m.sql("teamdb", "CREATE TABLE team_notes (note text)", user="team")
    m.sql("teamdb", "INSERT INTO team_notes VALUES ('ours')", user="team")
    m.s3().create_bucket(Bucket=BUCKET)
    m.s3().put_object(Bucket=BUCKET, Key=THEIR_OBJECT, Body=b"a,b\n1,2\n")


# --- the stack under test ------------------------------------------------------------------------


def _configure(
    project: Project,
    m: Managed,
    tmp_path: Path,
    *,
    database: str = "teamdb",
    bucket: str = BUCKET,
    pg_port: int | None = None,
    password_env: str = "TEAM_PG_PASSWORD",
    password_file: str | None = None,
) -> None:
    """The stack on the managed services: the password from an environment variable, the keys
    from files (mode 0600)."""
    files = {}
    for name, value in zip(("access", "secret"), m.team_keys, strict=True):
        path = tmp_path / f"s3-{name}-key"
        path.write_text(value + "\n")
        path.chmod(0o600)
        files[f"{name}_key_file"] = str(path)
    uri = f"postgresql://team@{m.host}:{pg_port or m.pg_port}/{database}?sslmode=disable"
    project.write_config(
        auth=True,
        postgres={
            "external": {"uri": uri}
            | (
                {"password_file": password_file}
                if password_file
                else {"password_env": password_env}
            )
        },
        storage={"bucket": bucket, "external": {"endpoint": m.endpoint, **files}},
    )


def _cli(
    project: Project, m: Managed, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """The CLI, which must print none of the managed services' secrets either."""
    code, out, err = project.cli(capsys, *args)
    for value in (m.team_password, m.team_keys[1], m.admin_password, m.admin_keys[1]):
        assert value not in out + err, f"`mlstack {' '.join(args)}` printed a managed secret"
    return code, out, err


def _nothing_left(project: Project) -> None:
    assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}
    assert not (project.state_dir / project.name).exists()


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_bad_inputs_refuse_up_and_leave_nothing_behind(
    engine: Engine,
    managed: Managed,
    seaweed_project: Project,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, m = seaweed_project, managed
    monkeypatch.setenv("TEAM_PG_PASSWORD", m.team_password)
    monkeypatch.setenv("WRONG_PG_PASSWORD", "not-the-password")
    closed = free_ports(1)[0]
    before = m.databases()
    cases: list[tuple[dict[str, Any], ExitCode, list[str]]] = [
        (
            {"password_env": "WRONG_PG_PASSWORD"},
            ExitCode.STATE,
            ["rejected the password of user team", "$WRONG_PG_PASSWORD"],
        ),
        (  # auth: true needs teamdb_auth, and team may not create databases
            {},
            ExitCode.PROVISION,
            [
                f"the database teamdb_auth does not exist on {m.host}:{m.pg_port}",
                "user team may not create databases (CREATEDB)",
                "CREATE DATABASE teamdb_auth OWNER team",
                "ALTER ROLE team CREATEDB",
            ],
        ),
        (
            {"database": "nothere"},
            ExitCode.PROVISION,
            ["the database nothere does not exist", "may not create databases (CREATEDB)"],
        ),
        (
            {"bucket": "not-their-bucket"},
            ExitCode.PROVISION,
            ["bucket not-their-bucket", "AccessDenied on CreateBucket", "s3:CreateBucket"],
        ),
        (
            {"password_file": str(tmp_path / "no-such-file")},
            ExitCode.USAGE,
            [f"postgres.external.password_file {tmp_path}/no-such-file does not exist"],
        ),
        (
            {"pg_port": closed},
            ExitCode.UNHEALTHY,
            [f"cannot connect to the managed PostgreSQL at {m.host}:{closed}", "refused"],
        ),
    ]
    seen = []
    for options, code, words in cases:
        _configure(project, m, tmp_path, **options)
        if "bucket" in options:  # its database must be usable, else that is what fails first
            m.sql("postgres", "CREATE DATABASE teamdb_auth OWNER team")
        try:
            started = time.monotonic()
            got, _, err = _cli(project, m, capsys, "up")
            line = _one_line_error(err)
            seen.append(f"{options}: exit {got} in {time.monotonic() - started:.1f}s: {line}")
            assert got == code, err
            for word in words:
                assert word in line, line
            _nothing_left(project)
        finally:
            if "bucket" in options:
                m.sql("postgres", "DROP DATABASE teamdb_auth")
    assert m.databases() == before  # nothing was created there either
    assert m.keys() == [THEIR_OBJECT]
    print("\n" + "\n".join(seen))


def _client_env(project: Project, m: Managed, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    code, out, err = project.cli(capsys, "env", "--format", "json", "--show-secrets")
    assert code == 0, err
    printed: dict[str, str] = json.loads(out)
    assert set(printed) >= {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME"}
    return client_process_env(printed)


def _write(env: dict[str, str], experiment: str, runs: int, out: Path) -> list[str]:
    out.mkdir(exist_ok=True)
    ids: list[str] = client_json(["-c", WRITER, experiment, str(runs), "0.2", str(out)], env)[
        "run_ids"
    ]
    return ids


def _snapshot(env: dict[str, str]) -> dict[str, Any]:
    snap: dict[str, Any] = client_json(["-c", SNAPSHOT], env)
    return snap


def _ok(project: Project, m: Managed, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = _cli(project, m, capsys, *args)
    assert code == 0, err
    return out + err


def _archive_keys(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest = json.load(io.TextIOWrapper(member, encoding="utf-8"))
    return sorted(o["key"] for o in manifest["objects"])


def test_full_loop_on_managed_services(
    engine: Engine,
    managed: Managed,
    seaweed_project: Project,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, m = seaweed_project, managed
    monkeypatch.setenv("TEAM_PG_PASSWORD", m.team_password)
    m.sql("postgres", "ALTER ROLE team CREATEDB")  # now mlstack may create teamdb_auth
    _configure(project, m, tmp_path)
    timings: dict[str, float] = {}

    def timed(what: str, *args: str) -> str:
        started = time.monotonic()
        text = _ok(project, m, capsys, *args)
        timings[what] = time.monotonic() - started
        return text

    up = json.loads(timed("up", "up", "--json"))
    actions = {s["service"]: s["action"] for s in up["services"]}
    assert actions == {"postgres": "external", "storage": "external", "mlflow": "created"}
    assert up["database_created"] is False and up["bucket_created"] is False
    assert sorted(
        c["Names"][0]
        for c in engine._api.containers(filters={"label": f"io.mlstack.project={project.name}"})
    ) == [f"/{project.name}-mlflow"]
    assert "teamdb_auth" in m.databases()

    env = _client_env(project, m, capsys)
    first = _write(env, "team", 2, tmp_path / "a")
    status = json.loads(timed("status", "status", "--json"))
    assert status["overall"] == "healthy"
    rows = {r["service"]: r for r in status["services"]}
    assert rows["postgres"]["external"] and rows["postgres"]["state"] == "external"
    assert (
        rows["postgres"]["url"] == f"postgresql://team@{m.host}:{m.pg_port}/teamdb?sslmode=disable"
    )
    assert rows["storage"]["url"] == m.endpoint

    archive = tmp_path / "team.tar.gz"
    timed("backup", "backup", "-o", str(archive))
    keys = _archive_keys(archive)
    assert keys and all(k.split("/")[0].isdigit() for k in keys)  # MLflow's only, not theirs
    before = _snapshot(env)
    assert set(before["runs"]) == set(first)

    # after the backup: a run the restore will take away, an object of theirs it must not
    later = _write(env, "team-later", 1, tmp_path / "b")
    m.s3().put_object(Bucket=BUCKET, Key="datasets/later.csv", Body=b"later\n")

    _status_diagnoses_a_paused_s3(project, m, capsys)

    timed("down", "down")
    assert m.read(THEIR_OBJECT) == b"a,b\n1,2\n"
    timed("up again", "up")
    assert set(_snapshot(env)["runs"]) == set(first) | set(later)  # kept across down/up

    m.sql("postgres", "ALTER ROLE team NOCREATEDB")
    code, _, err = _cli(project, m, capsys, "restore", str(archive), "--force")
    assert code == ExitCode.PROVISION, err
    line = _one_line_error(err)
    assert "user team may not create databases (CREATEDB)" in line and "nothing was changed" in line
    assert set(_snapshot(env)["runs"]) == set(first) | set(later)

    m.sql("postgres", "ALTER ROLE team CREATEDB")
    timed("restore", "restore", str(archive), "--force")
    after = _snapshot(env)
    assert after == before  # the archive's runs, params, metrics and artifacts, byte for byte
    assert m.read("datasets/later.csv") == b"later\n"  # theirs, though not in the archive
    assert m.sql("teamdb", "SELECT note FROM team_notes", user="team") == [("ours",)]

    text = timed("purge", "down", "--purge", "--yes")
    assert f"PostgreSQL at {m.host}:{m.pg_port} is not mlstack's: dropped nothing" in text
    assert "mlstack created teamdb_auth" in text and "DROP DATABASE teamdb_auth" in text
    assert "teamdb existed before mlstack" in text
    assert f"bucket {BUCKET} at {m.endpoint} is not mlstack's: deleted no object" in text
    assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}
    # everything on the managed services is still there: theirs and MLflow's
    assert {"teamdb", "teamdb_auth", "teamdata"} <= m.databases()
    assert m.sql("teamdata", "SELECT score FROM results") == [(42,)]
    assert m.sql("teamdb", "SELECT note FROM team_notes", user="team") == [("ours",)]
    assert m.sql("teamdb", "SELECT count(*) FROM runs", user="team") == [(len(first),)]
    left = m.keys()
    assert {THEIR_OBJECT, "datasets/later.csv"} <= set(left)
    assert set(keys) <= set(left)

    # up after the purge: new secrets, the same managed data (its admin given the new login)
    timed("up after purge", "up")
    assert _snapshot(_client_env(project, m, capsys)) == before
    print("\nmanaged services, seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def _status_diagnoses_a_paused_s3(
    project: Project, m: Managed, capsys: pytest.CaptureFixture[str]
) -> None:
    """A managed S3 API that does not answer: `status` says so on its row (exit 10)."""
    m.pause_s3(True)
    try:
        code, out, err = _cli(project, m, capsys, "status", "--json")
    finally:
        m.pause_s3(False)
    assert code == ExitCode.DEGRADED, err
    rows = {r["service"]: r for r in json.loads(out)["services"]}
    storage = rows["storage"]
    assert storage["external"] and not storage["probe"]["ok"], storage
    assert storage["cause"] == "the managed server does not answer", storage
    assert "storage.external" in storage["fix"]
    assert rows["postgres"]["probe"]["ok"], rows["postgres"]


def test_the_managed_adapter_against_the_real_servers(managed: Managed) -> None:
    """Creating what is missing when the keys or the role may, and naming the right when not."""
    from mlstack.adapters import managed as adapter
    from mlstack.adapters.targets import PgTarget, S3Target
    from mlstack.errors import ProvisionError, StateError

    m = managed
    admin = S3Target(m.endpoint, *m.admin_keys, external="$A and $B")
    team = S3Target(m.endpoint, *m.team_keys, external="$A and $B")
    bucket = f"made-{uuid.uuid4().hex[:8]}"
    assert adapter.ensure_bucket(admin, bucket) is True  # missing, and the keys may create it
    assert adapter.ensure_bucket(admin, bucket) is False
    assert adapter.ensure_bucket(team, BUCKET) is False  # theirs: usable as it is
    with pytest.raises(StateError, match="does not match the access key"):
        adapter.ensure_bucket(S3Target(m.endpoint, m.team_keys[0], "wrong", external="$X"), BUCKET)
    with pytest.raises(ProvisionError, match="AccessDenied on CreateBucket"):
        adapter.ensure_bucket(team, bucket)

    role = f"r{uuid.uuid4().hex[:8]}"
    m.sql("postgres", f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}' CREATEDB")
    m.sql("postgres", f"CREATE DATABASE {role}_theirs")  # the admin's: not the role's to rename
    target = PgTarget(m.host, m.pg_port, role, f"pw-{role}", "postgres", "disable", "$PW")
    assert adapter.database_missing(target, f"{role}_db") is True
    adapter.create_database(target, f"{role}_db")
    assert adapter.database_missing(target, f"{role}_db") is False
    assert adapter.restore_problem(target, [f"{role}_db"]) is None
    problem = adapter.restore_problem(target, [f"{role}_db", f"{role}_theirs"])
    assert problem == f"user {role} does not own {role}_theirs (a rename needs the owner)"
    m.sql(f"{role}_theirs", "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    with pytest.raises(
        ProvisionError, match=r"may not create MLflow's tables .* \(CREATE on schema public\)"
    ):
        adapter.database_missing(target, f"{role}_theirs")
