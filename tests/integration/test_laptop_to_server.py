"""From the laptop to the team's server: a backup of a stack of containers restores into a stack
on managed services (the test's own PostgreSQL and S3, see test_external.py), every run, metric,
artifact and model the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlstack.engine.docker import DockerEngine as Engine

from .conftest import make_project
from .mlflow_data import cli_ok, snapshot, write_runs
from .test_external import Managed, _client_env, _ok, _snapshot, managed

__all__ = ["managed"]  # the module-scoped servers, shared with test_external.py


def test_a_laptop_backup_restores_into_managed_services(
    engine: Engine,
    managed: Managed,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    m = managed
    (tmp_path / "laptop").mkdir()
    (tmp_path / "server").mkdir()
    laptop = make_project(engine, tmp_path / "laptop", monkeypatch, "seaweedfs")
    server = make_project(engine, tmp_path / "server", monkeypatch, "seaweedfs")
    try:
        cli_ok(laptop, capsys, "up")
        data = tmp_path / "data"
        data.mkdir()
        write_runs(laptop, "laptop", runs=2, mb=1, out=str(data))
        before = snapshot(laptop)
        archive = tmp_path / "laptop.tar.gz"
        cli_ok(laptop, capsys, "backup", "-o", str(archive))
        cli_ok(laptop, capsys, "down")

        # the server's stack: MLflow only, on a database and a bucket of the managed services
        # that mlstack creates (the admin role and keys may)
        monkeypatch.setenv("ADMIN_PG_PASSWORD", m.admin_password)
        monkeypatch.setenv("ADMIN_S3_ACCESS", m.admin_keys[0])
        monkeypatch.setenv("ADMIN_S3_SECRET", m.admin_keys[1])
        server.write_config(
            auth=True,
            postgres={
                "database": "fromlaptop",
                "external": {
                    "uri": f"postgresql://admin@{m.host}:{m.pg_port}/fromlaptop?sslmode=disable",
                    "password_env": "ADMIN_PG_PASSWORD",
                },
            },
            storage={
                "bucket": "from-laptop",
                "external": {
                    "endpoint": m.endpoint,
                    "access_key_env": "ADMIN_S3_ACCESS",
                    "secret_key_env": "ADMIN_S3_SECRET",
                },
            },
        )
        _ok(server, m, capsys, "up")
        assert "fromlaptop" in m.databases()
        _ok(server, m, capsys, "restore", str(archive))
        env = _client_env(server, m, capsys)
        assert _snapshot(env) == before  # runs, params, metrics, artifacts and models
        assert {k.split("/")[0] for k in m.keys("from-laptop")} - {"0"}  # objects up there
    finally:
        laptop.purge()
        server.purge()
