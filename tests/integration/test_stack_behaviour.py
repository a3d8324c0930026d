"""How `up`, `status`, `logs` and `down` behave on a real stack: idempotence, drift, failures."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from mlstack.errors import ExitCode

from .conftest import Project


def container_names(project: Project) -> list[str]:
    return sorted(project.leftovers()["containers"])


def test_running_stack(seaweed_project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    """One stack, many checks: each would cost a fresh stack otherwise."""
    project = seaweed_project
    config = project.config
    code, _, err = project.cli(capsys, "up")
    assert code == 0, err
    state = project.state_dir / project.name
    assert {p.name: p.stat().st_mode & 0o777 for p in state.iterdir()} == {
        "secrets.env": 0o600,
        ".env": 0o600,
        "docker-compose.yml": 0o644,
        "mlflow-image.json": 0o600,  # which MLflow image last ran on the database (upgrades)
        ".compose-render": 0o600,  # that render, for the reading commands (no template engine)
    }

    # up on a healthy stack changes nothing
    code, out, err = project.cli(capsys, "up", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert [s["action"] for s in result["services"]] == ["kept", "kept", "kept"]
    assert result["tracking_uri"] == config.tracking_uri

    # ports are published on 127.0.0.1 only
    for name in ("postgres", "storage", "mlflow"):
        info = project.engine.inspect(f"{project.name}-{name}")
        assert info is not None and info.restart_count == 0
        host_ips = {ip for binds in info.ports.values() for ip, _ in binds}
        assert host_ips == {"127.0.0.1"}, (name, info.ports)
        assert info.labels["io.mlstack.project"] == project.name

    # MLflow's Host check is on: a foreign Host header gets 403 on the API, /health stays open
    base = config.tracking_uri
    api = base + "/api/2.0/mlflow/experiments/search?max_results=1"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(
            urllib.request.Request(api, headers={"Host": "evil.example:80"}), timeout=10
        )
    assert denied.value.code == 403
    with urllib.request.urlopen(
        urllib.request.Request(base + "/health", headers={"Host": "evil.example:80"})
    ) as r:
        assert r.read() == b"OK"
    with urllib.request.urlopen(api, timeout=10) as r:
        assert r.status == 200

    # logs: a service's lines, never a secret (project.cli scans every output for them)
    code, out, err = project.cli(capsys, "logs", "postgres", "--tail", "20")
    assert code == 0, err
    assert out.strip()
    code, out, _ = project.cli(capsys, "logs", "--tail", "5")
    assert code == 0 and "mlflow  | " in out

    # a config change recreates only the service it touches; the data stays
    project.write_config(
        storage={"port": config.storage.port, "console_port": config.storage.console_port},
        postgres={"port": config.postgres.port},
        mlflow={"port": config.mlflow.port, "workers": 2},
    )
    code, out, err = project.cli(capsys, "status", "--json")
    assert code == 0  # it still works: drift is reported, not an outage
    drift = {s["service"]: s["problem"] for s in json.loads(out)["services"]}
    assert drift["mlflow"] == "its config changed since it was created"
    code, out, err = project.cli(capsys, "up", "--json")
    assert code == 0, err
    actions = {s["service"]: s["action"] for s in json.loads(out)["services"]}
    assert actions == {"postgres": "kept", "storage": "kept", "mlflow": "recreated"}

    # a stopped service: status names it and exits non-zero; up heals it
    project.engine.stop(f"{project.name}-mlflow", timeout=5)
    code, out, _ = project.cli(capsys, "status", "--json")
    assert code == ExitCode.DEGRADED
    mlflow = next(s for s in json.loads(out)["services"] if s["service"] == "mlflow")
    assert mlflow["state"] == "exited"
    assert "mlstack up" in mlflow["fix"]
    code, out, err = project.cli(capsys, "up", "--json")
    assert code == 0, err
    assert {s["service"]: s["action"] for s in json.loads(out)["services"]}["mlflow"] == "started"
    code, _, _ = project.cli(capsys, "status")
    assert code == 0


def test_a_service_that_exits_fails_fast_with_its_log(
    seaweed_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project = seaweed_project
    # an image without mlflow: the container exits at once
    project.write_config(mlflow={"image": "mlstack-offline/postgres:15"})
    code, _, err = project.cli(capsys, "up", "--timeout", "240")
    assert code == ExitCode.UNHEALTHY, err
    assert "error: mlflow stopped while starting" in err
    assert "last log lines of mlflow:" in err
    assert err.splitlines()[-1].endswith("; hint: read its log: mlstack logs mlflow")
