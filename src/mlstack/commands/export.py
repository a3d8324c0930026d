"""`mlstack export helm`: the stack as values for MLflow's official Helm chart, plus the
Kubernetes Secrets they name and the commands that install them.

Checks first (the config can run on the chart, the names are valid, the directory is free),
writes after: a refused export writes nothing. Secrets come from where the config names them
(the environment variable or file of postgres.external and storage.external, the certificate
files of `tls`, the project's own admin login); one that cannot be read becomes a placeholder
that says what to fill in, and the result lists each. values.yaml never holds a secret.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlstack import credentials
from mlstack.compose import helm
from mlstack.compose.helm import CHART, CHART_VALUES_COMMIT, HelmTarget
from mlstack.config import StackConfig
from mlstack.errors import Conflict, UsageError
from mlstack.project.reporting import Result
from mlstack.state import ProjectState, write_private

VALUES_FILE = "values.yaml"
SECRETS_FILE = "secrets.yaml"
INSTALL_FILE = "INSTALL.md"
# Helm's release names: a DNS-1123 subdomain of 53 characters at most.
_RELEASE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a namespace: DNS-1123 label


@dataclass(frozen=True)
class Placeholder:
    """A Secret value mlstack could not read: where it goes and what to put there."""

    secret: str
    key: str
    what: str

    @property
    def text(self) -> str:
        return f"<fill in: {self.what}>"


@dataclass(frozen=True)
class ExportResult(Result):
    directory: Path
    files: list[Path]
    chart: str
    chart_version: str
    release: str
    namespace: str
    commands: list[str]
    placeholders: list[Placeholder] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.commands)


def check_target(config: StackConfig, target: HelmTarget) -> None:
    """Refuse what the chart cannot run, or names Kubernetes would reject (UsageError)."""
    inside = [
        what
        for what, external in (
            ("PostgreSQL", config.postgres.external),
            ("S3", config.storage.external),
        )
        if external is None
    ]
    if inside:
        raise UsageError(
            f"the config runs {' and '.join(inside)} in a container of the stack, and the "
            "MLflow Helm chart runs no database and no S3 server",
            "set postgres.external and storage.external to managed services (RDS, Cloud "
            "SQL, S3, a company MinIO) in mlstack.yaml; the chart's only store of its own is "
            "SQLite and files on one volume, which a backup cannot be restored into",
        )
    if len(target.release) > 53 or not _RELEASE_RE.match(target.release):
        raise UsageError(
            f"--release {target.release!r} is not a Helm release name",
            "use up to 53 lowercase letters, digits, '-' and '.', e.g. --release mlflow",
        )
    if len(target.namespace) > 63 or not _LABEL_RE.match(target.namespace):
        raise UsageError(
            f"--namespace {target.namespace!r} is not a Kubernetes namespace name",
            "use up to 63 lowercase letters, digits and '-', e.g. --namespace mlflow",
        )
    try:
        helm.split_image(config.mlflow.image)
    except ValueError:
        raise UsageError(
            f"mlflow.image {config.mlflow.image!r} pins a digest without a tag, and the "
            "chart joins image.repository and image.tag with ':'",
            "give the tag with the digest: ghcr.io/mlflow/mlflow:v3.17.2-full@sha256:...",
        ) from None
    _check_exposure(config)


def _check_exposure(config: StackConfig) -> None:
    if config.host is None:
        if config.tls.enabled:
            raise UsageError(
                "tls is on but host is not set: the chart's Ingress serves TLS for a host name",
                "set host to the name clients will use (--set host=mlflow.example.com), "
                "or tls: false",
            )
        return
    try:
        ipaddress.ip_address(config.host)
    except ValueError:
        pass
    else:
        raise UsageError(
            f"host {config.host} is an IP address, and a Kubernetes Ingress rule needs a DNS name",
            "set host to the name clients will use, e.g. --set host=mlflow.example.com",
        )
    if not config.auth and not config.allow_unauthenticated:
        raise UsageError(
            f"host {config.host} publishes MLflow through an Ingress without a login",
            "set auth: true (and tls: true), or allow_unauthenticated: true on a network you trust",
        )


def check_directory(directory: Path, *, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is not a directory", "choose another -o DIR")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise Conflict(
            f"{directory} is not empty",
            f"choose a new or empty -o DIR, or add --force to replace {VALUES_FILE}, "
            f"{SECRETS_FILE} and {INSTALL_FILE} in it",
        )


def _read_source(env: str | None, path: str | None, environ: Mapping[str, str]) -> str | None:
    """The first line of `path`, else the environment variable `env`; None when neither has it."""
    if path:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return text.splitlines()[0].strip() if text.strip() else None
    return environ.get(env or "") or None


def _missing(env: str | None, path: str | None) -> str:
    return f"file {path} is unreadable or empty" if path else f"${env} is not set"


def _read_pem(path: str | None) -> str | None:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8") if path else None
    except (OSError, UnicodeDecodeError):
        return None


def gather_secrets(
    config: StackConfig, target: HelmTarget, environ: Mapping[str, str]
) -> tuple[dict[str, str], list[Placeholder]]:
    """Each Secret key's value, read where the config names it; placeholders for the rest."""
    pg, s3 = config.postgres.external, config.storage.external
    assert pg is not None and s3 is not None  # check_target refused anything else
    wanted: list[tuple[str, str, str | None, str]] = [
        (
            helm.POSTGRES_PASSWORD,
            target.secret_name,
            _read_source(pg.password_env, pg.password_file, environ),
            f"the password of PostgreSQL user {pg.user} on {pg.host} "
            f"({_missing(pg.password_env, pg.password_file)})",
        ),
        (
            helm.S3_ACCESS_KEY,
            target.secret_name,
            _read_source(s3.access_key_env, s3.access_key_file, environ),
            f"the S3 access key id for {s3.endpoint} "
            f"({_missing(s3.access_key_env, s3.access_key_file)})",
        ),
        (
            helm.S3_SECRET_KEY,
            target.secret_name,
            _read_source(s3.secret_key_env, s3.secret_key_file, environ),
            f"the S3 secret access key for {s3.endpoint} "
            f"({_missing(s3.secret_key_env, s3.secret_key_file)})",
        ),
    ]
    if config.auth:
        login = _admin_login(config)
        wanted += [(key, target.secret_name, value, key) for key, value in login.items()]
    if config.host and config.tls.enabled:
        wanted += _tls_sources(config, target)
    values: dict[str, str] = {}
    placeholders = []
    for key, secret, value, what in wanted:
        if value is None:
            placeholders.append(Placeholder(secret, key, what))
        values[key] = placeholders[-1].text if value is None else value
    return values, placeholders


def _admin_login(config: StackConfig) -> dict[str, str]:
    """The project's own admin login (the one a restored auth database knows), else a new one."""
    stored = credentials.load(ProjectState.for_project(config.project))
    source = (
        stored if stored is not None and stored.has_auth else credentials.StackSecrets.generate()
    )
    return {
        helm.ADMIN_USERNAME: source.MLFLOW_AUTH_ADMIN_USERNAME,
        helm.ADMIN_PASSWORD: source.MLFLOW_AUTH_ADMIN_PASSWORD,
        helm.FLASK_SECRET_KEY: source.MLFLOW_FLASK_SERVER_SECRET_KEY,
    }


def _tls_sources(config: StackConfig, target: HelmTarget) -> list[tuple[str, str, str | None, str]]:
    tls, name = config.tls, target.tls_secret_name
    if tls.own_certificate:
        return [
            ("tls.crt", name, _read_pem(tls.cert), f"the PEM certificate ({tls.cert} unreadable)"),
            ("tls.key", name, _read_pem(tls.key), f"the PEM private key ({tls.key} unreadable)"),
        ]
    why = "mlstack's own CA is trusted on this machine only"
    return [
        ("tls.crt", name, None, f"the PEM certificate for {config.host} ({why})"),
        ("tls.key", name, None, f"its PEM private key ({why})"),
    ]


def export_helm(
    config: StackConfig,
    directory: Path,
    target: HelmTarget,
    *,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ExportResult:
    """Write values.yaml, secrets.yaml (0600) and INSTALL.md for `config` into `directory`."""
    check_target(config, target)
    check_directory(directory, force=force)
    secrets, placeholders = gather_secrets(
        config, target, os.environ if environ is None else environ
    )
    values = helm.dump_yaml([helm.helm_values(config, target)], _values_header(config, target))
    manifests = helm.dump_yaml(
        helm.secret_manifests(config, target, secrets),
        "Kubernetes Secrets for the values.yaml beside this file (mlstack export helm).\n"
        "Keep private: it holds the credentials. Apply it before `helm install`.",
    )
    commands = install_commands(directory, target)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    if created:
        directory.chmod(0o700)
    paths = [directory / VALUES_FILE, directory / SECRETS_FILE, directory / INSTALL_FILE]
    paths[0].write_text(values, encoding="utf-8")
    write_private(paths[1], manifests)
    paths[2].write_text(install_text(config, target, commands, placeholders), encoding="utf-8")
    return ExportResult(
        directory=directory,
        files=paths,
        chart=CHART,
        chart_version=target.chart_version,
        release=target.release,
        namespace=target.namespace,
        commands=commands,
        placeholders=placeholders,
        warnings=_warnings(config),
    )


def _values_header(config: StackConfig, target: HelmTarget) -> str:
    return (
        f"Values for MLflow's Helm chart {CHART} {target.chart_version}, written by\n"
        f"`mlstack export helm` for project {config.project}. No secret is in this file: the\n"
        f"credentials are in the Secret {target.secret_name} (secrets.yaml beside it).\n"
        f"Keys checked against the chart's values.yaml at mlflow/mlflow {CHART_VALUES_COMMIT[:12]}."
    )


def _warnings(config: StackConfig) -> list[str]:
    repository, _ = helm.split_image(config.mlflow.image)
    if repository == "ghcr.io/mlflow/mlflow":
        return []
    return [
        f"mlflow.image {config.mlflow.image} is not MLflow's official image: the cluster must "
        "be able to pull it, and it needs psycopg2, boto3 and (with auth) mlflow[auth]"
    ]


def install_commands(directory: Path, target: HelmTarget) -> list[str]:
    """The commands that install the export, in order."""
    commands = []
    if target.namespace != "default":
        commands.append(f"kubectl create namespace {target.namespace}")
    return [
        *commands,
        f"kubectl apply -f {directory / SECRETS_FILE}",
        f"helm install {target.release} {CHART} --version {target.chart_version} "
        f"-f {directory / VALUES_FILE} -n {target.namespace}",
    ]


def install_text(
    config: StackConfig, target: HelmTarget, commands: list[str], placeholders: list[Placeholder]
) -> str:
    """INSTALL.md: what was exported, what to fill in, the commands, and what comes after."""
    lines = [
        f"# MLflow on Kubernetes: project {config.project}",
        "",
        f"Written by `mlstack export helm` for the chart {CHART} {target.chart_version}",
        f"(release {target.release}, namespace {target.namespace}).",
        "",
    ]
    if placeholders:
        lines += [f"Before applying, fill in these values in {SECRETS_FILE}:", ""]
        lines += [f"- `{p.secret}` `{p.key}`: {p.what}" for p in placeholders]
        lines.append("")
    names = [config.postgres.database] + ([config.auth_database] if config.auth else [])
    lines += [
        f"The database{'s' if len(names) > 1 else ''} {' and '.join(f'`{n}`' for n in names)} "
        "must exist on the managed PostgreSQL, writable by its user: MLflow creates tables, "
        "not databases.",
        "",
    ]
    lines += ["Install (the namespace once; skip it if it exists):", "", "```bash"]
    lines += [*commands, "```", ""]
    if config.host:
        scheme = "https" if config.tls.enabled else "http"
        lines.append(f"Then: `export MLFLOW_TRACKING_URI={scheme}://{config.host}`")
    else:
        lines.append(
            f"Then: `kubectl port-forward -n {target.namespace} svc/{target.fullname} "
            "5000:5000` and `export MLFLOW_TRACKING_URI=http://127.0.0.1:5000`"
        )
    lines += [
        "",
        "Upgrade after a new export: `"
        + commands[-1].replace("helm install", "helm upgrade", 1)
        + "`.",
        "",
    ]
    return "\n".join(lines)
