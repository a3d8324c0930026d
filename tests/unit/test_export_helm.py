"""`mlstack export helm`: keys the chart has, manifests Kubernetes accepts, no secret in values.

The chart's values.yaml is pinned in tests/data/helm/ (see the README there); Kubernetes' schemas
come from the `kubernetes-validate` package (dev extra), which ships them: no network, no cluster.
Helm cannot be installed here, so the chart's templates are not rendered: the Kubernetes objects
the values carry are validated where the chart's templates put them (a Pod's container, volumes
and init containers; the Ingress's rules and tls), as its deployment.yaml and ingress.yaml do.
"""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kube

from mlstack.commands.export import Placeholder, export_helm
from mlstack.compose import helm
from mlstack.compose.helm import HelmTarget, split_image
from mlstack.config import StackConfig
from mlstack.credentials import StackSecrets, save
from mlstack.state import ProjectState

PINNED = Path(__file__).parents[1] / "data" / "helm" / "mlflow-values-003d4902.yaml"
# The chart asks for Kubernetes 1.23+; the package's oldest schemas are 1.25's: those and its
# newest.
KUBE_VERSIONS = (kube.all_versions()[0], kube.latest_version())
SECRETS = {
    "PGPASSWORD": "pg-Secret-4e1b7c",
    "AWS_ACCESS_KEY_ID": "AKIAEXPORTTEST0001",
    "AWS_SECRET_ACCESS_KEY": "s3-Secret-9d2f31a7",
}
EXTERNAL = {
    "postgres": {"external": {"host": "db.example.com", "sslmode": "require"}},
    "storage": {
        "bucket": "team-artifacts",
        "external": {"endpoint": "https://s3.eu-west-1.amazonaws.com", "region": "eu-west-1"},
    },
}


def managed(**top: Any) -> StackConfig:
    return StackConfig.from_mapping({**EXTERNAL, **top})


CONFIGS = {
    "plain": managed(),
    "auth+tls+host": managed(auth=True, tls=True, host="mlflow.example.com"),
    "host, trusted network": managed(host="mlflow.example.com", allow_unauthenticated=True),
    "workers": managed(auth=True, mlflow={"workers": 4}),
}


def _export(config: StackConfig, tmp_path: Path, **target: Any) -> tuple[dict[str, Any], Path]:
    out = tmp_path / "k8s"
    export_helm(config, out, HelmTarget(**target), environ=SECRETS)
    return yaml.safe_load((out / "values.yaml").read_text()), out


def _missing_keys(ours: Any, chart: Any, path: str) -> list[str]:
    """Key paths of `ours` the chart's values do not have. Below a list or an empty mapping of
    the chart (env, resources, annotations...) are Kubernetes objects, checked by schema."""
    if isinstance(chart, list):
        if chart and isinstance(chart[0], dict):  # a list of the chart's own items (ingress.hosts)
            return [m for item in ours for m in _missing_keys(item, chart[0], path + "[]")]
        return []
    if not isinstance(chart, dict) or not chart:
        return [] if not isinstance(ours, dict) or chart == {} else [path + " (not a mapping)"]
    if not isinstance(ours, dict):
        return [path + " (a mapping in the chart)"]
    missing = []
    for key, value in ours.items():
        where = f"{path}.{key}" if path else key
        if path == "server.value_options":
            continue  # `mlflow server` flags: test_server_options_are_mlflow_server_flags
        if key not in chart:
            missing.append(where)
        else:
            missing += _missing_keys(value, chart[key], where)
    return missing


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_key_written_exists_in_the_pinned_chart_values(name: str, tmp_path: Path) -> None:
    values, out = _export(CONFIGS[name], tmp_path)
    assert helm.CHART_VALUES_COMMIT[:8] in PINNED.name  # the copy the code names
    assert helm.CHART_VALUES_COMMIT[:12] in (out / "values.yaml").read_text()
    chart = yaml.safe_load(PINNED.read_text(encoding="utf-8"))
    assert _missing_keys(values, chart, "") == []
    # The walk can fail: a key the chart lacks is found, at any depth.
    assert _missing_keys({"mlflow": {"backendStoreUrl": "x"}}, chart, "") == [
        "mlflow.backendStoreUrl"
    ]
    assert _missing_keys({"ingress": {"hosts": [{"hostname": "a"}]}}, chart, "") == [
        "ingress.hosts[].hostname"
    ]


@pytest.fixture(scope="module")
def server_options() -> dict[str, bool]:
    """`mlflow server`'s options (name -> is a bare flag), from the MLflow mlstack pins."""
    import mlflow.cli

    command = mlflow.cli.cli.commands["server"]
    return {p.name: bool(getattr(p, "is_flag", False)) for p in command.params if p.name}


def test_server_options_are_mlflow_server_flags(
    server_options: dict[str, bool], tmp_path: Path
) -> None:
    written = set()
    for name, config in CONFIGS.items():
        values, _ = _export(config, tmp_path / name.replace(" ", "_"))
        for key in values["server"]["value_options"]:
            assert server_options.get(key) is False, key  # rendered as --key=value
            written.add(key)
        for flag in values["server"]["flag_options"]:
            assert server_options.get(flag) is True, flag  # rendered as --flag
    assert written == {"app_name", "allowed_hosts", "workers"}
    assert server_options.get("allowed-hosts") is None  # the check can fail


def _validate(obj: dict[str, Any]) -> None:
    for version in KUBE_VERSIONS:
        kube.validate(obj, version, strict=True)


def _as_the_chart_places_them(values: dict[str, Any], target: HelmTarget) -> list[dict[str, Any]]:
    """The Pod fragment and the Ingress the chart's templates make of these values."""
    container = {
        "name": "mlflow",
        "image": f"{values['image']['repository']}:{values['image']['tag']}",
        "env": values["env"],
        "resources": values["resources"],
        "volumeMounts": values.get("extraVolumeMounts", []),
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": target.fullname},
        "spec": {
            "containers": [container],
            "initContainers": values["extraInitContainers"],
            "volumes": values.get("extraVolumes", []),
        },
    }
    objects = [pod]
    ingress = values.get("ingress")
    if ingress:
        backend = {"service": {"name": target.fullname, "port": {"name": "http"}}}
        rules = [
            {"host": h["host"], "http": {"paths": [{**p, "backend": backend} for p in h["paths"]]}}
            for h in ingress["hosts"]
        ]
        spec: dict[str, Any] = {"rules": rules}
        if ingress.get("tls"):
            spec["tls"] = ingress["tls"]
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": target.fullname, "annotations": ingress["annotations"]},
                "spec": spec,
            }
        )
    return objects


@pytest.mark.parametrize("name", list(CONFIGS))
def test_manifests_validate_against_kubernetes_schemas(name: str, tmp_path: Path) -> None:
    target = HelmTarget(release="team", namespace="ml")
    values, out = _export(CONFIGS[name], tmp_path, release="team", namespace="ml")
    secrets = list(yaml.safe_load_all((out / "secrets.yaml").read_text()))
    assert secrets and all(doc["metadata"]["namespace"] == "ml" for doc in secrets)
    for obj in [*secrets, *_as_the_chart_places_them(values, target)]:
        _validate(obj)
    # Every key the values take from a Secret is in that Secret.
    keys = {(d["metadata"]["name"], k) for d in secrets for k in d["stringData"]}
    refs = [e["valueFrom"]["secretKeyRef"] for e in values["env"] if "valueFrom" in e]
    assert {(r["name"], r["key"]) for r in refs} <= keys
    for tls in values.get("ingress", {}).get("tls", []):
        assert (tls["secretName"], "tls.crt") in keys


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    values, _ = _export(CONFIGS["auth+tls+host"], tmp_path)
    values["env"][0]["valueFrom"]["secretKeyRef"]["optional"] = "yes"  # not a boolean
    with pytest.raises(kube.ValidationError):
        _validate(_as_the_chart_places_them(values, HelmTarget())[0])


def _all_text(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir()}


def test_no_secret_in_values_and_every_secret_in_the_private_file(
    tmp_path: Path, isolated_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    login = StackSecrets.generate()
    save(ProjectState.for_project("mlstack"), login)  # the laptop stack's admin login
    config = CONFIGS["auth+tls+host"]
    files = tmp_path / "files"
    files.mkdir()
    (files / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIBcert\n")
    (files / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nMIIBkeySecret77\n")
    config = StackConfig.from_mapping(
        {
            **config.as_dict(),
            "tls": {"cert": str(files / "cert.pem"), "key": str(files / "key.pem")},
        }
    )
    result = export_helm(config, tmp_path / "k8s", HelmTarget(), environ=SECRETS)
    text = _all_text(tmp_path / "k8s")
    secret_values = [
        *SECRETS.values(),
        login.MLFLOW_AUTH_ADMIN_PASSWORD,
        login.MLFLOW_FLASK_SERVER_SECRET_KEY,
        "MIIBkeySecret77",
    ]
    for value in secret_values:
        assert value in text["secrets.yaml"]  # the scan below can fail: they were written
        assert value not in text["values.yaml"] and value not in text["INSTALL.md"]
        assert value not in result.output
    assert result.placeholders == []
    assert stat.S_IMODE((tmp_path / "k8s" / "secrets.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k8s").stat().st_mode) == 0o700


def test_secrets_from_files(tmp_path: Path) -> None:
    for name, value in (("pg", "pg-from-file-1"), ("ak", "ak-file"), ("sk", "sk-from-file-2")):
        (tmp_path / name).write_text(value + "\nsecond line ignored\n")
    config = StackConfig.from_mapping(
        {
            "postgres": {"external": {"host": "db", "password_file": str(tmp_path / "pg")}},
            "storage": {
                "external": {
                    "endpoint": "http://minio.internal:9000",
                    "access_key_file": str(tmp_path / "ak"),
                    "secret_key_file": str(tmp_path / "sk"),
                }
            },
        }
    )
    export_helm(config, tmp_path / "k8s", HelmTarget(), environ={})
    (doc,) = yaml.safe_load_all((tmp_path / "k8s" / "secrets.yaml").read_text())
    assert doc["stringData"] == {
        "postgres-password": "pg-from-file-1",
        "aws-access-key-id": "ak-file",
        "aws-secret-access-key": "sk-from-file-2",
    }


def test_unreadable_sources_become_placeholders_that_say_what(tmp_path: Path) -> None:
    config = managed(auth=True, tls=True, host="mlflow.example.com")
    result = export_helm(config, tmp_path / "k8s", HelmTarget(), environ={})
    (creds, tls) = yaml.safe_load_all((tmp_path / "k8s" / "secrets.yaml").read_text())
    missing = {(p.secret, p.key) for p in result.placeholders}
    assert missing == {
        ("mlflow-mlstack", "postgres-password"),
        ("mlflow-mlstack", "aws-access-key-id"),
        ("mlflow-mlstack", "aws-secret-access-key"),
        ("mlflow-mlstack-tls", "tls.crt"),
        ("mlflow-mlstack-tls", "tls.key"),
    }
    by_key = {p.key: p for p in result.placeholders}
    assert creds["stringData"]["postgres-password"] == by_key["postgres-password"].text
    assert "$PGPASSWORD is not set" in by_key["postgres-password"].what
    assert "user mlflow on db.example.com" in by_key["postgres-password"].what
    assert tls["stringData"]["tls.crt"].startswith("<fill in: the PEM certificate for mlflow.")
    install = (tmp_path / "k8s" / "INSTALL.md").read_text()
    assert all(p.what in install for p in result.placeholders)
    assert Placeholder("s", "k", "x").text == "<fill in: x>"


def test_auth_ini_is_what_mlflow_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's own reader, loaded alone: its package's __init__ needs Flask-WTF (mlflow[auth]).
    import mlflow

    path = Path(mlflow.__file__).parent / "server" / "auth" / "config.py"
    spec = importlib.util.spec_from_file_location("mlflow_auth_config", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    read_auth_config = module.read_auth_config
    config = managed(
        auth=True, postgres={"database": "ml", "external": {"host": "db", "user": "a%b"}}
    )
    (tmp_path / "basic_auth.ini").write_text(helm.auth_ini(config))
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "basic_auth.ini"))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    read = read_auth_config()
    assert read.database_uri == "postgresql+psycopg2://a%25b@db:5432/ml_auth?sslmode=prefer"
    assert read.default_permission == "NO_PERMISSIONS"


def test_allowed_hosts_let_in_the_ingress_and_the_service_only(tmp_path: Path) -> None:
    from mlflow.server.security_utils import is_allowed_host_header

    values, _ = _export(CONFIGS["auth+tls+host"], tmp_path, release="team", namespace="ml")
    allowed = values["server"]["value_options"]["allowed_hosts"].split(",")
    for host in (
        "mlflow.example.com",
        "team-mlflow.ml.svc:5000",
        "team-mlflow.ml.svc.cluster.local:5000",
        "127.0.0.1:5000",
    ):
        assert is_allowed_host_header(allowed, host), host
    for host in ("evil.example.com", "10.0.0.7:5000", "mlflow.example.com.evil.io"):
        assert not is_allowed_host_header(allowed, host), host


def test_values_follow_the_config(tmp_path: Path) -> None:
    config = managed(mlflow={"workers": 3, "image": "registry.local:5000/ml/mlflow:3.17.2"})
    values, _ = _export(config, tmp_path, replicas=2)
    assert values["image"] == {"repository": "registry.local:5000/ml/mlflow", "tag": "3.17.2"}
    assert values["replicaCount"] == 2
    assert values["server"]["value_options"]["workers"] == 3
    assert "app_name" not in values["server"]["value_options"] and "ingress" not in values
    assert values["mlflow"] == {
        "backendStoreUri": "postgresql+psycopg2://mlflow@db.example.com:5432/mlflow?sslmode=require",
        "artifactsDestination": "s3://team-artifacts",
    }
    env = {e["name"]: e.get("value") for e in values["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.eu-west-1.amazonaws.com"
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert values["resources"]["requests"]["memory"] == "1280Mi"
    assert values["extraInitContainers"][0]["image"] == "registry.local:5000/ml/mlflow:3.17.2"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("ghcr.io/mlflow/mlflow:v3.17.2-full", ("ghcr.io/mlflow/mlflow", "v3.17.2-full")),
        ("localhost:5000/mlflow", ("localhost:5000/mlflow", "latest")),
        ("mlflow:3@sha256:abc", ("mlflow", "3@sha256:abc")),
    ],
)
def test_split_image(image: str, expected: tuple[str, str]) -> None:
    assert split_image(image) == expected


def test_split_image_refuses_a_digest_without_a_tag() -> None:
    with pytest.raises(ValueError, match="sha256"):
        split_image("ghcr.io/mlflow/mlflow@sha256:abc")
