"""`auth: true` on the real engine: MLflow's basic-auth app with its database on the stack's
PostgreSQL, probes and clients with the admin login, and auth turned on for an existing stack."""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import pytest
import yaml

from mlstack.adapters.mlflow_http import basic_auth_header

from .conftest import Project, client_process_env, free_ports, run_client

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"

# A user's train.py: a run with a metric and an artifact, with only what `mlstack env` printed.
CLIENT = textwrap.dedent(
    """
    import json, os, sys
    import mlflow
    out = sys.argv[1]
    mlflow.set_experiment("auth")
    path = os.path.join(out, "notes.txt")
    with open(path, "w") as f:
        f.write("behind a login")
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.75)
        mlflow.log_artifact(path)
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="notes.txt", dst_path=os.path.join(out, "dl")
    )
    got = mlflow.get_run(run.info.run_id)
    print(json.dumps({
        "run_id": run.info.run_id,
        "metrics": got.data.metrics,
        "notes": open(back).read(),
    }))
    """
)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def env_of(out: str) -> dict[str, str]:
    """A process environment with only what `mlstack env --format json` printed (plus PATH)."""
    return client_process_env(json.loads(out))


def python(code: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_client(["-c", code, *args], env, 240)


def auth_tables(project: Project) -> list[str]:
    config, secrets = project.config, project.secrets
    with (
        psycopg2.connect(
            host="127.0.0.1",
            port=config.postgres.port,
            user=secrets.POSTGRES_USER,
            password=secrets.POSTGRES_PASSWORD,
            dbname=config.auth_database,
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return sorted(row[0] for row in cur.fetchall())


def test_stack_with_auth(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path, mlflow_env: None
) -> None:
    project = seaweed_project
    project.write_config(auth=True)
    config = project.config
    outputs: list[str] = []

    code, out, err = project.cli(capsys, "up")
    outputs += [out, err]
    assert code == 0, err
    password = project.secrets.MLFLOW_AUTH_ADMIN_PASSWORD
    assert len(password) >= 12

    # Anonymous API calls are refused; the admin's login is accepted.
    status, _ = get(config.tracking_uri + SEARCH)
    assert status == 401
    status, _ = get(config.tracking_uri + SEARCH, basic_auth_header("admin", "wrong" * 4))
    assert status == 401
    status, body = get(config.tracking_uri + SEARCH, basic_auth_header("admin", password))
    assert status == 200 and "experiments" in body

    # The auth database is on the stack's PostgreSQL, with MLflow's auth tables in it.
    tables = auth_tables(project)
    assert {"users", "experiment_permissions", "registered_model_permissions"} <= set(tables)

    # `env` without --show-secrets: no password anywhere, one line saying how to get it.
    code, out, err = project.cli(capsys, "env")
    outputs += [out, err]
    assert code == 0 and "MLFLOW_TRACKING_PASSWORD" not in out
    assert "credentials hidden" in err and "--show-secrets" in err

    # A client with only `env --show-secrets` logs a run with a metric and an artifact.
    code, out, err = project.cli(capsys, "env", "--show-secrets", "--format", "json")
    assert code == 0, err
    result = python(CLIENT, [str(tmp_path)], env_of(out))
    assert result.returncode == 0, result.stderr[-3000:]
    logged = json.loads(result.stdout.strip().splitlines()[-1])
    assert logged["metrics"] == {"accuracy": 0.75}
    assert logged["notes"] == "behind a login"
    # ... and the same client without the login is refused.
    code, out, _ = project.cli(capsys, "env", "--format", "json")
    refused = python(CLIENT, [str(tmp_path / "anon")], env_of(out))
    assert refused.returncode != 0
    assert "401" in refused.stderr or "Unauthorized" in refused.stderr

    code, out, err = project.cli(capsys, "status", "--json")
    outputs += [out, err]
    assert code == 0, out
    assert json.loads(out)["overall"] == "healthy"
    code, out, err = project.cli(capsys, "status")
    outputs += [out, err]

    # `demo` and `serve` log in themselves; the model server downloads the model with the login.
    code, out, err = project.cli(capsys, "demo", "--runs", "1", "--json")
    outputs += [out, err]
    assert code == 0, err
    port = free_ports(1)[0]
    code, out, err = project.cli(
        capsys, "serve", "models:/mlstack-demo@champion", "--port", str(port), "--json"
    )
    outputs += [out, err]
    assert code == 0, err
    served = json.loads(out)
    request = urllib.request.Request(
        served["url"] + "/invocations",
        data=json.dumps(served["payload"]).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert len(json.loads(response.read())["predictions"]) >= 1
    code, out, err = project.cli(capsys, "logs", "serve-mlstack-demo")
    outputs += [out, err]
    code, out, err = project.cli(capsys, "logs", "mlflow")
    outputs += [out, err]
    assert code == 0 and "Created admin user" in out
    code, out, err = project.cli(capsys, "config")
    outputs += [out, err]
    code, out, err = project.cli(capsys, "up")  # a no-op on a healthy stack
    outputs += [out, err]
    assert code == 0, err
    secret_values = [password, project.secrets.MLFLOW_FLASK_SERVER_SECRET_KEY]
    for text in outputs:
        for value in secret_values:
            assert value not in text

    # The rendered compose file names the secrets, never their values.
    compose = (project.state_dir / project.name / "docker-compose.yml").read_text()
    assert "${MLFLOW_AUTH_ADMIN_PASSWORD" in compose
    assert all(value not in compose for value in secret_values)


def test_turning_auth_on_keeps_the_runs_and_recreates_only_mlflow(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project = seaweed_project
    code, _, err = project.cli(capsys, "up")
    assert code == 0, err
    code, out, _ = project.cli(capsys, "env", "--format", "json")
    result = python(CLIENT, [str(tmp_path)], env_of(out))
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]

    # A secrets file from before auth existed: only the four original keys.
    secrets_file = project.state_dir / project.name / "secrets.env"
    old_lines = [line for line in secrets_file.read_text().splitlines() if "MLFLOW_" not in line]
    secrets_file.write_text("\n".join(old_lines) + "\n")
    before = project.secrets
    assert not before.has_auth

    data = yaml.safe_load(project.config_path.read_text())
    data["auth"] = True
    project.config_path.write_text(yaml.safe_dump(data))
    code, out, err = project.cli(capsys, "up", "--json")
    assert code == 0, err
    actions = {s["service"]: s["action"] for s in json.loads(out)["services"]}
    assert actions == {"postgres": "kept", "storage": "kept", "mlflow": "recreated"}

    after = project.secrets
    assert after.has_auth
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
        assert getattr(after, key) == getattr(before, key)
    for line in old_lines[1:]:
        assert line in secrets_file.read_text().splitlines()

    url = f"{project.config.tracking_uri}/api/2.0/mlflow/runs/get?run_id={run_id}"
    assert get(url)[0] == 401
    status, body = get(url, basic_auth_header("admin", after.MLFLOW_AUTH_ADMIN_PASSWORD))
    assert status == 200
    assert json.loads(body)["run"]["data"]["metrics"][0]["value"] == 0.75
    code, out, _ = project.cli(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["overall"] == "healthy"


def post(url: str, body: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={**headers, "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_restore_brings_back_the_users_with_this_stacks_admin_login(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Users and permissions are in the backup; restored into a stack with other secrets (here:
    after `down --purge`), they come back and the stack's own admin login still works."""
    project = seaweed_project
    project.write_config(auth=True)
    assert project.cli(capsys, "up")[0] == 0
    search = project.config.tracking_uri + SEARCH
    old_admin = basic_auth_header("admin", project.secrets.MLFLOW_AUTH_ADMIN_PASSWORD)
    alice = basic_auth_header("alice", "alice-passw0rd-long")
    created = post(
        project.config.tracking_uri + "/api/2.0/mlflow/users/create",
        {"username": "alice", "password": "alice-passw0rd-long"},
        old_admin,
    )
    assert created[0] == 200, created
    assert get(search, alice)[0] == 200

    archive = tmp_path / "users.tar.gz"
    code, out, err = project.cli(capsys, "backup", "-o", str(archive), "--json")
    assert code == 0, err
    assert json.loads(out)["manifest"]["auth_database"] == project.config.auth_database

    assert project.cli(capsys, "down", "--purge", "--yes")[0] == 0
    assert project.cli(capsys, "up")[0] == 0
    new_admin = basic_auth_header("admin", project.secrets.MLFLOW_AUTH_ADMIN_PASSWORD)
    assert new_admin != old_admin
    assert get(search, alice)[0] == 401  # a fresh stack: no alice

    code, out, err = project.cli(capsys, "restore", str(archive), "--json")
    assert code == 0, err
    assert json.loads(out)["warnings"] == []
    assert get(search, alice)[0] == 200
    assert get(search, new_admin)[0] == 200
    assert get(search, old_admin)[0] == 401
    code, out, _ = project.cli(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["overall"] == "healthy"
