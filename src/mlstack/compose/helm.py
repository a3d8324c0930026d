"""StackConfig -> values for MLflow's official Helm chart, and the Secrets those values name.

The chart (`oci://ghcr.io/mlflow/charts/mlflow`, source in mlflow/mlflow `charts/`) runs only the
tracking server: the database and the bucket are the managed services of `postgres.external` and
`storage.external`. Every key written here exists in the chart's values.yaml (a copy is pinned in
tests/data/helm/ and the tests walk it); `server.value_options` is the chart's pass-through to
`mlflow server` flags, and the lists (`env`, `extraVolumes`, ...) carry Kubernetes objects, which
the tests validate against Kubernetes' schemas.

No secret is ever a value here: the values name keys of the Secret `<release>-mlstack`
(`secret_manifests`), which `kubectl apply` creates before `helm install`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import yaml

from mlstack.compose.render import AUTH_DEFAULT_PERMISSION, BlockDumper
from mlstack.config import StackConfig

CHART = "oci://ghcr.io/mlflow/charts/mlflow"
# The chart's version on mlflow/mlflow's master since pull request #25365 (tests/data/helm/README).
CHART_VERSION = "0.1.1"
# The commit of mlflow/mlflow whose charts/values.yaml the written keys are checked against.
CHART_VALUES_COMMIT = "003d4902d5b72d06e8b316ee2586061714969b64"
SERVER_PORT = 5000  # the chart's server.value_options.port, which its Service also uses
AUTH_DIR = "/etc/mlstack-auth"  # where the pod mounts MLflow's basic-auth ini
AUTH_INI = "basic_auth.ini"

# Keys of the Secret `<release>-mlstack`.
POSTGRES_PASSWORD = "postgres-password"
S3_ACCESS_KEY = "aws-access-key-id"
S3_SECRET_KEY = "aws-secret-access-key"
ADMIN_USERNAME = "admin-username"
ADMIN_PASSWORD = "admin-password"
FLASK_SECRET_KEY = "flask-secret-key"


@dataclass(frozen=True)
class HelmTarget:
    """Where the release goes: its name, namespace and size."""

    release: str = "mlflow"
    namespace: str = "mlflow"
    replicas: int = 1
    chart_version: str = CHART_VERSION

    @property
    def fullname(self) -> str:
        """The chart's name for its Deployment and Service: `<release>-mlflow`, 63 at most."""
        return f"{self.release}-mlflow"[:63].rstrip("-")

    @property
    def secret_name(self) -> str:
        return f"{self.release}-mlstack"

    @property
    def tls_secret_name(self) -> str:
        return f"{self.release}-mlstack-tls"


def split_image(image: str) -> tuple[str, str]:
    """`repo[:tag][@digest]` as the chart's image.repository and image.tag, which it joins with
    ':'. A digest stays with its tag (`v3.17.2-full@sha256:...`); no tag means `latest`, as for
    Docker. ValueError for a digest without a tag: the chart cannot express it."""
    name, at, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name[: name.rindex(":")], last.split(":", 1)[1]
    elif at:
        raise ValueError(image)
    else:
        repository, tag = name, "latest"
    return repository, tag + (f"@{digest}" if at else "")


def backend_store_uri(config: StackConfig, database: str | None = None) -> str:
    """The managed PostgreSQL's URI without its password: libpq reads that from PGPASSWORD,
    which the pod takes from the Secret (so the URI itself is no secret)."""
    pg = config.postgres.external
    if pg is None:
        raise ValueError("postgres.external is not set")
    host = f"[{pg.host}]" if ":" in pg.host else pg.host
    name = database or config.postgres.database
    return (
        f"postgresql+psycopg2://{quote(pg.user, safe='')}@{host}:{pg.port}/{name}"
        f"?sslmode={pg.sslmode}"
    )


def auth_ini(config: StackConfig) -> str:
    """MLflow's basic-auth config for the pod: users in `<database>_auth` on the managed
    PostgreSQL (password from PGPASSWORD, the admin login from the environment)."""
    uri = backend_store_uri(config, config.auth_database)
    return "\n".join(
        [
            "[mlflow]",
            f"default_permission = {AUTH_DEFAULT_PERMISSION}",
            # configparser reads '%' as interpolation: a quoted user name's %XX is doubled
            "database_uri = " + uri.replace("%", "%%"),
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
            "",
        ]
    )


def allowed_hosts(config: StackConfig, target: HelmTarget) -> list[str]:
    """Host headers MLflow accepts: the Ingress host, the Service's in-cluster names and
    localhost (kubectl port-forward). /health, which the probes call, needs none."""
    hosts = [config.host, f"{config.host}:*"] if config.host else []
    service = target.fullname
    for name in (
        service,
        f"{service}.{target.namespace}",
        f"{service}.{target.namespace}.svc",
        f"{service}.{target.namespace}.svc.cluster.local",
    ):
        hosts.append(f"{name}:*")
    return [*hosts, "localhost:*", "127.0.0.1:*"]


def resources_for(workers: int) -> dict[str, Any]:
    """Requests from the memory measured on the laptop stack (README, Performance): one worker
    about 260 MiB after load plus ~135 MiB for the stock server's second process, each further
    worker ~340-390 MiB. The limit leaves twice that; no CPU limit (throttling, not safety)."""
    memory = 512 + 384 * (workers - 1)
    return {
        "requests": {"cpu": f"{250 * workers}m", "memory": f"{memory}Mi"},
        "limits": {"memory": f"{2 * memory}Mi"},
    }


def _from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def environment(config: StackConfig, target: HelmTarget) -> list[dict[str, Any]]:
    """The server's environment: credentials by reference to the Secret, the rest as values."""
    s3 = config.storage.external
    if s3 is None:
        raise ValueError("storage.external is not set")
    secret = target.secret_name
    env = [
        _from_secret("PGPASSWORD", secret, POSTGRES_PASSWORD),
        _from_secret("AWS_ACCESS_KEY_ID", secret, S3_ACCESS_KEY),
        _from_secret("AWS_SECRET_ACCESS_KEY", secret, S3_SECRET_KEY),
        {"name": "MLFLOW_S3_ENDPOINT_URL", "value": s3.endpoint},
        {"name": "AWS_DEFAULT_REGION", "value": s3.region},
        {"name": "MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE", "value": s3.addressing_style},
        # As on the laptop: the GenAI job runner triples the server's memory, tracking needs none.
        {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"},
    ]
    if config.auth:
        env += [
            {"name": "MLFLOW_AUTH_CONFIG_PATH", "value": f"{AUTH_DIR}/{AUTH_INI}"},
            _from_secret("MLFLOW_AUTH_ADMIN_USERNAME", secret, ADMIN_USERNAME),
            _from_secret("MLFLOW_AUTH_ADMIN_PASSWORD", secret, ADMIN_PASSWORD),
            _from_secret("MLFLOW_FLASK_SERVER_SECRET_KEY", secret, FLASK_SECRET_KEY),
        ]
    return env


def migration_container(config: StackConfig, target: HelmTarget) -> dict[str, Any]:
    """`mlflow db upgrade` before each server starts (the merged chart has no migration job): a
    no-op on a schema already at the image's version, the migration after `image.tag` changed."""
    repository, tag = split_image(config.mlflow.image)
    return {
        "name": "mlflow-db-upgrade",
        "image": f"{repository}:{tag}",
        "command": ["mlflow", "db", "upgrade", "$(MLFLOW_BACKEND_STORE_URI)"],
        "env": [
            {"name": "MLFLOW_BACKEND_STORE_URI", "value": backend_store_uri(config)},
            _from_secret("PGPASSWORD", target.secret_name, POSTGRES_PASSWORD),
        ],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def _ingress(config: StackConfig, target: HelmTarget) -> dict[str, Any]:
    ingress: dict[str, Any] = {
        "enabled": True,
        # Artifacts go through the server in one request each: ingress-nginx's default 1 MiB
        # body limit would refuse most; other controllers ignore this annotation.
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "0"},
        "hosts": [{"host": config.host, "paths": [{"path": "/", "pathType": "Prefix"}]}],
    }
    if config.tls.enabled:
        ingress["tls"] = [{"secretName": target.tls_secret_name, "hosts": [config.host]}]
    return ingress


def helm_values(config: StackConfig, target: HelmTarget) -> dict[str, Any]:
    """The chart's values for `config` (postgres.external and storage.external set)."""
    repository, tag = split_image(config.mlflow.image)
    options: dict[str, Any] = {
        "workers": config.mlflow.workers,
        "allowed_hosts": ",".join(allowed_hosts(config, target)),
    }
    if config.auth:
        options["app_name"] = "basic-auth"
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag},
        "replicaCount": target.replicas,
        # Artifacts proxied by the server, as on the laptop: clients need no S3 keys.
        "server": {"value_options": options, "flag_options": ["serve_artifacts"]},
        "mlflow": {
            "backendStoreUri": backend_store_uri(config),
            "artifactsDestination": f"s3://{config.storage.bucket}",
        },
        "env": environment(config, target),
        "extraInitContainers": [migration_container(config, target)],
        "resources": resources_for(config.mlflow.workers),
    }
    if config.auth:
        values["extraVolumes"] = [
            {
                "name": "mlstack-auth",
                "secret": {
                    "secretName": target.secret_name,
                    "items": [{"key": AUTH_INI, "path": AUTH_INI}],
                },
            }
        ]
        values["extraVolumeMounts"] = [
            {"name": "mlstack-auth", "mountPath": AUTH_DIR, "readOnly": True}
        ]
    if config.host:
        values["ingress"] = _ingress(config, target)
    return values


def secret_keys(config: StackConfig) -> list[str]:
    """The keys of the Secret `<release>-mlstack` for `config`, in order."""
    keys = [POSTGRES_PASSWORD, S3_ACCESS_KEY, S3_SECRET_KEY]
    if config.auth:
        keys += [ADMIN_USERNAME, ADMIN_PASSWORD, FLASK_SECRET_KEY, AUTH_INI]
    return keys


def _secret(target: HelmTarget, name: str, kind: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "mlstack",
                "app.kubernetes.io/instance": target.release,
            },
        },
        "type": kind,
        "stringData": data,
    }


def secret_manifests(
    config: StackConfig, target: HelmTarget, values: dict[str, str]
) -> list[dict[str, Any]]:
    """The Secrets the values refer to; `values` holds each key's text (or its placeholder),
    and `tls.crt`/`tls.key` when the Ingress serves TLS."""
    data = {key: values[key] for key in secret_keys(config) if key != AUTH_INI}
    if config.auth:
        data[AUTH_INI] = auth_ini(config)
    manifests = [_secret(target, target.secret_name, "Opaque", data)]
    if config.host and config.tls.enabled:
        tls = {key: values[key] for key in ("tls.crt", "tls.key")}
        manifests.append(_secret(target, target.tls_secret_name, "kubernetes.io/tls", tls))
    return manifests


def dump_yaml(documents: list[dict[str, Any]], header: str = "") -> str:
    """`documents` as YAML (`---` between them), after `header` lines turned into comments."""
    lines = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    texts = [
        yaml.dump(doc, Dumper=BlockDumper, sort_keys=False, default_flow_style=False, width=10_000)
        for doc in documents
    ]
    return lines + "---\n".join(texts)
