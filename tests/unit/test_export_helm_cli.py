"""`mlstack export helm` through the CLI: the commands printed, and each bad input answered in
one line with its exit code and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlstack.cli import run
from mlstack.errors import ExitCode

MANAGED = [
    "--set", "postgres.external.host=db.example.com",
    "--set", "storage.external.endpoint=https://s3.example.com",
]  # fmt: skip
SECRETS = {"PGPASSWORD": "pg-cli-Secret-1", "AWS_SECRET_ACCESS_KEY": "s3-cli-Secret-2"}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_prints_the_install_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        capsys, *MANAGED, "export", "helm", "-o", "k8s", "-n", "ml", "--release", "team"
    )
    assert code == 0, err
    assert out.splitlines() == [
        "kubectl create namespace ml",
        "kubectl apply -f k8s/secrets.yaml",
        "helm install team oci://ghcr.io/mlflow/charts/mlflow --version 0.1.1 "
        "-f k8s/values.yaml -n ml",
    ]
    assert "team-mlstack aws-access-key-id: the S3 access key id" in err  # not set: to fill in
    assert "$AWS_ACCESS_KEY_ID" in err
    assert out.splitlines()[-1] in Path("k8s/INSTALL.md").read_text()
    for value in SECRETS.values():
        assert value not in out + err
        assert value in Path("k8s/secrets.yaml").read_text()


def test_export_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, *MANAGED, "export", "helm", "-o", "k8s", "--json")
    data = json.loads(out)
    assert code == 0 and data["chart_version"] == "0.1.1" and data["namespace"] == "mlflow"
    assert [p["key"] for p in data["placeholders"]] == ["aws-access-key-id"]


def test_help_lists_export(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "export", "--help")
    assert code == 0 and "helm" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], ExitCode.USAGE, "runs PostgreSQL and S3 in a container"),
        (MANAGED[:2], ExitCode.USAGE, "runs S3 in a container"),
        (MANAGED[2:], ExitCode.USAGE, "runs PostgreSQL in a container"),
        ([*MANAGED, "--set", "host=10.1.2.3", "--set", "auth=true"], ExitCode.USAGE, "is an IP address"),
        ([*MANAGED, "--set", "tls=true"], ExitCode.USAGE, "tls is on but host is not set"),
        ([*MANAGED, "--set", "host=ml.example.com"], ExitCode.USAGE, "without a login"),
        ([*MANAGED, "--set", "mlflow.image=ghcr.io/mlflow/mlflow@sha256:ab"], ExitCode.USAGE, "digest without a tag"),
    ],
)  # fmt: skip
def test_configs_the_chart_cannot_run(
    capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    got, out, err = cli(capsys, *args, "export", "helm", "-o", "k8s")
    assert got == code
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and message in err and "hint: " in err
    assert not Path("k8s").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--release", "Team_1"], "is not a Helm release name"),
        (["--release", "a" * 54], "is not a Helm release name"),
        (["--namespace", "ml.team"], "is not a Kubernetes namespace name"),
        (["--replicas", "0"], "--replicas"),
    ],
)
def test_bad_flags(capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    code, out, err = cli(capsys, *MANAGED, "export", "helm", "-o", "k8s", *flags)
    assert code == ExitCode.USAGE and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not Path("k8s").exists()


def test_a_directory_that_is_not_empty_needs_force(capsys: pytest.CaptureFixture[str]) -> None:
    Path("k8s").mkdir()
    Path("k8s/notes.txt").write_text("mine")
    code, out, err = cli(capsys, *MANAGED, "export", "helm", "-o", "k8s")
    assert code == ExitCode.CONFLICT and out == "" and len(err.strip().splitlines()) == 1
    assert "k8s is not empty" in err and "--force" in err
    assert sorted(p.name for p in Path("k8s").iterdir()) == ["notes.txt"]
    code, _, _ = cli(capsys, *MANAGED, "export", "helm", "-o", "k8s", "--force")
    assert code == 0
    assert sorted(p.name for p in Path("k8s").iterdir()) == [
        "INSTALL.md", "notes.txt", "secrets.yaml", "values.yaml",
    ]  # fmt: skip
    assert Path("k8s/notes.txt").read_text() == "mine"


def test_an_output_that_is_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    Path("k8s").write_text("a file")
    code, _, err = cli(capsys, *MANAGED, "export", "helm", "-o", "k8s", "--force")
    assert code == ExitCode.USAGE and "k8s is not a directory" in err
    assert Path("k8s").read_text() == "a file"
