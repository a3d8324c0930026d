"""StackConfig -> docker-compose.yml + .env: the only place the templates are read.

The SDK path runs what this renders (see services.py), so the compose file a user reads, or runs
with plain `docker compose`, and what `mlstack up` creates cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from mlstack.compose import launcher
from mlstack.compose.launcher import launch
from mlstack.config import StackConfig
from mlstack.credentials import StackSecrets
from mlstack.state import write_private

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc is 3.11+

    import jinja2

COMPOSE_TEMPLATE = "docker-compose.yml.j2"
INIT_TEMPLATE = "mlstack.yaml.j2"
MLFLOW_CONTAINER_PORT = 5000


def templates_dir() -> Traversable:
    """The templates shipped inside the wheel; the repository's templates/ in a source checkout."""
    packaged = resources.files("mlstack").joinpath("templates")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "templates"


@cache
def _template_text(name: str) -> str:
    return templates_dir().joinpath(name).read_text(encoding="utf-8")


def allowed_hosts(config: StackConfig) -> list[str]:
    """Host headers MLflow accepts: the published host:port and the in-network names, nothing else."""
    port = config.mlflow.port
    hosts = [f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"]
    if config.host or config.bind not in ("127.0.0.1", "::1", "0.0.0.0", "::"):
        hosts.append(f"{config.client_host}:{port}")  # the name clients use (`host`)
    if config.bind in ("0.0.0.0", "::"):
        # Published on every interface: whatever name the machine is reached by, on this port.
        hosts.append(f"*:{port}")
    hosts += [
        f"mlflow:{MLFLOW_CONTAINER_PORT}",
        f"{config.project}-mlflow:{MLFLOW_CONTAINER_PORT}",
    ]
    return list(dict.fromkeys(hosts))


# MLflow reads its basic-auth settings from an ini file only (the admin login may also come from
# MLFLOW_AUTH_ADMIN_*). The command writes this file in the container before the server starts,
# so nothing is mounted from the host and no secret is on the command line: the password for the
# auth database comes from PGPASSWORD (libpq reads it), the admin login from the environment.
AUTH_CONFIG_PATH = "/tmp/mlstack-basic-auth.ini"  # inside the container
# A user without a grant on an experiment or model sees nothing of it: accounts the admin creates
# start with no access and are given what they need (creators manage what they create).
AUTH_DEFAULT_PERMISSION = "NO_PERMISSIONS"


def auth_ini(config: StackConfig) -> list[str]:
    """The lines of MLflow's basic-auth config for `config` (no secrets)."""
    return [
        "[mlflow]",
        f"default_permission = {AUTH_DEFAULT_PERMISSION}",
        # No password in the URI: libpq takes it from PGPASSWORD in the container's environment.
        "database_uri = postgresql+psycopg2://${POSTGRES_USER}@postgres:5432/"
        + config.auth_database,
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
    ]


def api_check(timeout: float, *, auth: bool) -> str:
    """Python that calls MLflow's API by its in-network name; with auth, as the admin user whose
    credentials it reads from the container's environment (never written into the script)."""
    url = f"http://mlflow:{MLFLOW_CONTAINER_PORT}/api/2.0/mlflow/experiments/search?max_results=1"
    if not auth:
        return f"import urllib.request as u; u.urlopen({url!r}, timeout={timeout:g}).read()"
    return (
        "import base64, os, urllib.request as u; e = os.environ; "
        "t = base64.b64encode((e['MLFLOW_AUTH_ADMIN_USERNAME'] + ':' + "
        "e['MLFLOW_AUTH_ADMIN_PASSWORD']).encode()).decode(); "
        f"u.urlopen(u.Request({url!r}, headers={{'Authorization': 'Basic ' + t}}), "
        f"timeout={timeout:g}).read()"
    )


def mlflow_command(config: StackConfig) -> list[str]:
    """`mlflow server ...` for `config`, through the launcher (one import, waits for its DB)."""
    return launch(_mlflow_server(config)[1:])


def _mlflow_server(config: StackConfig) -> list[str]:
    command = [
        "mlflow",
        "server",
        "--host",
        "0.0.0.0",
        "--port",
        str(MLFLOW_CONTAINER_PORT),
        "--workers",
        str(config.mlflow.workers),
        # Artifacts are proxied by the server: clients need only the tracking URI, no S3 keys.
        "--serve-artifacts",
        "--artifacts-destination",
        f"s3://{config.storage.bucket}",
        "--allowed-hosts",
        ",".join(allowed_hosts(config)),
    ]
    if config.auth:
        command += ["--app-name", "basic-auth"]
    return command


# SeaweedFS as two processes, so that only S3 is reachable from other containers. `weed mini`
# binds all its parts to one address, so it runs master, volume server, filer and its admin
# server (UI off) on the container's loopback, with WebDAV, its own S3, Iceberg and Lance off;
# `weed s3` serves S3 on every interface with the SigV4 keys from AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY. `weed server -s3.ip.bind` could split the addresses too, but it takes
# ~16 s to stop (its filer waits 15 s for its own subscriptions); `mini` stops in ~3 s.
# weed reports usage to a public server unless told not to (`s3` alone does not report); without
# a size limit it sizes volumes from free disk. S3's gRPC port (8333 + 10000) always binds with
# its HTTP port: weed has no flag to keep it on loopback.
SEAWEEDFS_CORE = [
    "weed", "-logtostderr=true", "mini", "-dir=/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
    "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-s3=false", "-webdav=false",
    "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
]  # fmt: skip
SEAWEEDFS_S3 = [
    "weed", "-logtostderr=true", "s3", "-filer=127.0.0.1:8888", "-ip.bind=0.0.0.0",
    "-port=8333", "-port.iceberg=0", "-port.lance=0",
]  # fmt: skip
# The shell (its trap set before anything starts) stops both on SIGTERM (~2.5 s), and ends the
# container when either ends, so that the restart policy starts both again. POSIX sh: dash in
# the test image, busybox ash in the upstream one.
SEAWEEDFS_SUPERVISOR = """\
trap 'kill -TERM $s3 $core 2>/dev/null; wait; exit 0' TERM INT
{core} &
core=$!
{s3} &
s3=$!
while kill -0 $core 2>/dev/null && kill -0 $s3 2>/dev/null; do sleep 1 & wait $!; done
echo "mlstack: a weed process ended; stopping the other" >&2
kill -TERM $s3 $core 2>/dev/null; wait; exit 1
"""


def seaweedfs_entrypoint() -> list[str]:
    return ["/bin/sh", "-c"]


def seaweedfs_command() -> list[str]:
    """The script `seaweedfs_entrypoint` runs, `$` escaped for compose (`$$`)."""
    script = SEAWEEDFS_SUPERVISOR.format(core=" ".join(SEAWEEDFS_CORE), s3=" ".join(SEAWEEDFS_S3))
    return [script.replace("$", "$$")]


def _environment() -> jinja2.Environment:
    # deferred: jinja2 loads only to render; reading commands find the render in the cache
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)  # noqa: S701 (YAML, not HTML)
    # JSON is YAML; unlike `tojson` (made for HTML) it leaves quotes readable.
    env.filters["json"] = json.dumps
    env.filters["yaml_list"] = yaml_list
    return env


class _BlockDumper(yaml.SafeDumper):
    """YAML with multi-line strings as literal blocks (`|`): the launcher stays readable."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _represent_str)


def yaml_list(items: list[str], indent: int) -> str:
    """`items` as a YAML block sequence, indented by `indent` spaces."""
    text = yaml.dump(list(items), Dumper=_BlockDumper, default_flow_style=False, width=10_000)
    return "\n".join(" " * indent + line if line else line for line in text.splitlines())


def render_compose(config: StackConfig) -> str:
    """The compose file for `config`; secrets appear only as ${VARS} read from .env."""
    template = _environment().from_string(_template_text(COMPOSE_TEMPLATE))
    return template.render(
        project=config.project,
        bind=config.bind,
        port_host=f"[{config.bind}]" if ":" in config.bind else config.bind,
        storage=config.storage,
        postgres=config.postgres,
        mlflow=config.mlflow,
        auth=config.auth,
        auth_config_path=AUTH_CONFIG_PATH,
        mlflow_command=mlflow_command(config),
        wait_databases=",".join(
            [config.postgres.database] + ([config.auth_database] if config.auth else [])
        ),
        auth_config="\n".join(auth_ini(config)),
        mlflow_healthcheck=["CMD", "python", "-S", "-c", api_check(4, auth=config.auth)],
        seaweedfs_entrypoint=seaweedfs_entrypoint(),
        seaweedfs_command=seaweedfs_command(),
        extra_labels=config.labels,
    )


CACHE_FILE = ".compose-render"  # in the project's state dir: a key line, then the render


def _render_key(config: StackConfig) -> str:
    """What a render depends on: the template, the code that fills it, and the config."""
    digest = hashlib.sha256(_template_text(COMPOSE_TEMPLATE).encode())
    for module in (__file__, launcher.__file__):
        digest.update(Path(module).read_bytes())
    digest.update(json.dumps(config.as_dict(), sort_keys=True).encode())
    return digest.hexdigest()


def cached_render(config: StackConfig, directory: Path) -> str:
    """`render_compose(config)`, read back from `directory` when `up` stored that very render
    there (`store_render`): the reading commands then need no template engine."""
    try:
        key, _, text = (directory / CACHE_FILE).read_text(encoding="utf-8").partition("\n")
    except OSError:
        key = text = ""
    return text if key == _render_key(config) else render_compose(config)


def store_render(config: StackConfig, directory: Path, compose: str) -> None:
    write_private(directory / CACHE_FILE, _render_key(config) + "\n" + compose)


def render_init(config: StackConfig) -> str:
    """A commented mlstack.yaml holding `config`'s values (`mlstack init`)."""
    return _environment().from_string(_template_text(INIT_TEMPLATE)).render(c=config)


def render_env(creds: StackSecrets) -> str:
    lines = ["# Secrets for docker-compose.yml beside this file. Keep private (mode 0600)."]
    lines += [f"{key}={value}" for key, value in creds.as_env().items()]
    return "\n".join(lines) + "\n"


def write_rendered(
    directory: Path, config: StackConfig, creds: StackSecrets, *, compose: str | None = None
) -> tuple[Path, Path]:
    """Write docker-compose.yml (0644) and .env (0600) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    compose_path = directory / "docker-compose.yml"
    compose_path.write_text(compose or render_compose(config), encoding="utf-8")
    env_path = directory / ".env"
    write_private(env_path, render_env(creds))
    return compose_path, env_path
