"""StackConfig -> docker-compose.yml + .env: the only place the templates are read.

The SDK path runs what this renders (see services.py), so the compose file a user reads, or runs
with plain `docker compose`, and what `mlstack up` creates cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import yaml

from mlstack.compose import launcher
from mlstack.compose.launcher import TLS_CA, TLS_CERT_FILE, TLS_KEY_FILE, launch
from mlstack.config import StackConfig
from mlstack.credentials import ExternalSecrets, StackSecrets
from mlstack.state import write_private

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc is 3.11+

    import jinja2

COMPOSE_TEMPLATE = "docker-compose.yml.j2"
INIT_TEMPLATE = "mlstack.yaml.j2"
MLFLOW_CONTAINER_PORT = 5000
IN_NETWORK = "mlflow"  # the MLflow service's name on the stack's network


def templates_dir() -> Traversable:
    """The templates shipped inside the wheel; the repository's templates/ in a source checkout."""
    packaged = resources.files("mlstack").joinpath("templates")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "templates"


@cache
def _template_text(name: str) -> str:
    return templates_dir().joinpath(name).read_text(encoding="utf-8")


def in_network_url(config: StackConfig, name: str = IN_NETWORK) -> str:
    """MLflow as the stack's own containers reach it: https with `tls` (by a name its
    certificate holds: `name`), else http, by the service name."""
    scheme = "https" if config.tls.enabled else "http"
    return f"{scheme}://{name}:{MLFLOW_CONTAINER_PORT}"


def allowed_hosts(config: StackConfig, in_network: str = IN_NETWORK) -> list[str]:
    """Host headers MLflow accepts: the published host:port and the in-network names, nothing else."""
    port = config.mlflow.port
    hosts = [f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"]
    if config.host or config.bind not in ("127.0.0.1", "::1", "0.0.0.0", "::"):
        hosts.append(f"{config.client_host}:{port}")  # the name clients use (`host`)
    if config.bind in ("0.0.0.0", "::") or config.swarm_target:
        # Published on every interface (on a swarm, of every node running a task): whatever
        # name the machine is reached by, on this port.
        hosts.append(f"*:{port}")
    if config.swarm_target:  # a task's healthcheck calls its own server, not the service's
        hosts.append(f"localhost:{MLFLOW_CONTAINER_PORT}")
    hosts += [
        f"mlflow:{MLFLOW_CONTAINER_PORT}",
        f"{config.project}-mlflow:{MLFLOW_CONTAINER_PORT}",
    ]
    if in_network != IN_NETWORK:  # the name a user's own certificate holds, a network alias
        hosts.append(f"{in_network}:{MLFLOW_CONTAINER_PORT}")
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
    # No password in the URI: libpq takes it from PGPASSWORD in the container's environment.
    uri = "postgresql+psycopg2://${POSTGRES_USER}@postgres:5432/" + config.auth_database
    if config.postgres.external is not None:
        # configparser reads `%` as its own interpolation: a quoted user name doubles it
        uri = literal(backend_uri(config, config.auth_database)).replace("%", "%%")
    return [
        "[mlflow]",
        f"default_permission = {AUTH_DEFAULT_PERMISSION}",
        f"database_uri = {uri}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
    ]


def backend_uri(config: StackConfig, database: str | None = None) -> str:
    """MLflow's URI of a managed PostgreSQL (postgres.external): user, host, port, database and
    sslmode; no password (libpq reads PGPASSWORD from the environment)."""
    external = config.postgres.external
    assert external is not None
    host = f"[{external.host}]" if ":" in external.host else external.host
    user = quote(external.user, safe="")
    name = database or config.postgres.database
    return f"postgresql+psycopg2://{user}@{host}:{external.port}/{name}?sslmode={external.sslmode}"


def literal(text: str) -> str:
    """`text` as compose reads it literally: `$` doubled (compose would read a variable)."""
    return text.replace("$", "$$")


def api_check(timeout: float, *, auth: bool, base: str = f"http://{IN_NETWORK}:5000") -> str:
    """Python that calls MLflow's API by its in-network name; with auth, as the admin user whose
    credentials it reads from the container's environment (never written into the script).
    Over https it verifies the server against the stack's CA (base64 in the environment), or
    the image's own trust store when there is none."""
    url = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
    if not auth and not base.startswith("https:"):
        return f"import urllib.request as u; u.urlopen({url!r}, timeout={timeout:g}).read()"
    code = "import base64, os, ssl, urllib.request as u; e = os.environ; h = {}; c = None; "
    if base.startswith("https:"):
        code += (
            f"a = e.get('{TLS_CA}'); "
            "c = ssl.create_default_context(cadata=base64.b64decode(a).decode() if a else None); "
        )
    if auth:
        code += (
            "t = base64.b64encode((e['MLFLOW_AUTH_ADMIN_USERNAME'] + ':' + "
            "e['MLFLOW_AUTH_ADMIN_PASSWORD']).encode()).decode(); "
            "h = {'Authorization': 'Basic ' + t}; "
        )
    return code + f"u.urlopen(u.Request({url!r}, headers=h), timeout={timeout:g}, context=c).read()"


def mlflow_healthcheck(config: StackConfig, in_network: str = IN_NETWORK) -> list[str]:
    """The MLflow container's healthcheck: the API by its in-network name (see api_check); on
    a swarm by localhost, where the name may answer from another replica."""
    base = in_network_url(config, in_network)
    if config.swarm_target:
        base = f"http://localhost:{MLFLOW_CONTAINER_PORT}"
    check = api_check(4, auth=config.auth, base=base)
    return ["CMD", "python", "-S", "-c", check]


def mlflow_command(config: StackConfig, in_network: str = IN_NETWORK) -> list[str]:
    """`mlflow server ...` for `config`, through the launcher (one import, waits for its DB)."""
    return launch(_mlflow_server(config, in_network)[1:])


def _mlflow_server(config: StackConfig, in_network: str = IN_NETWORK) -> list[str]:
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
        ",".join(allowed_hosts(config, in_network)),
    ]
    if config.auth:
        command += ["--app-name", "basic-auth"]
    if config.tls.enabled:
        # uvicorn serves HTTPS from the files the launcher writes from the environment.
        command += [
            "--uvicorn-opts",
            f"--ssl-certfile {TLS_CERT_FILE} --ssl-keyfile {TLS_KEY_FILE}",
        ]
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
    env.filters["literal"] = literal
    return env


class BlockDumper(yaml.SafeDumper):
    """YAML with multi-line strings as literal blocks (`|`): a launcher, an auth ini or a PEM
    file stays readable in what is written."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


BlockDumper.add_representer(str, _represent_str)


def yaml_list(items: list[str], indent: int) -> str:
    """`items` as a YAML block sequence, indented by `indent` spaces."""
    text = yaml.dump(list(items), Dumper=BlockDumper, default_flow_style=False, width=10_000)
    return "\n".join(" " * indent + line if line else line for line in text.splitlines())


def _port_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def render_compose(config: StackConfig, in_network: str = IN_NETWORK) -> str:
    """The compose file for `config`; secrets appear only as ${VARS} read from .env.
    `in_network`: the name the stack's containers reach MLflow by (with a user's own
    certificate, a name it holds)."""
    template = _environment().from_string(_template_text(COMPOSE_TEMPLATE))
    return template.render(
        project=config.project,
        bind=config.bind,
        port_host=_port_host(config.bind),
        # Beyond loopback only MLflow's port is published: the rest on this machine's loopback.
        private_host=_port_host(config.private_bind),
        exposed=config.exposed,
        tls=config.tls.enabled,
        storage=config.storage,
        postgres=config.postgres,
        mlflow=config.mlflow,
        auth=config.auth,
        auth_config_path=AUTH_CONFIG_PATH,
        mlflow_command=mlflow_command(config, in_network),
        backend_uri=literal(backend_uri(config)) if config.postgres.external else "",
        wait_databases=",".join(
            [config.postgres.database] + ([config.auth_database] if config.auth else [])
        ),
        auth_config="\n".join(auth_ini(config)),
        mlflow_healthcheck=mlflow_healthcheck(config, in_network),
        seaweedfs_entrypoint=seaweedfs_entrypoint(),
        seaweedfs_command=seaweedfs_command(),
        extra_labels=config.labels,
    )


CACHE_FILE = ".compose-render"  # in the project's state dir: a key line, then the render


def _render_key(config: StackConfig, in_network: str) -> str:
    """What a render depends on: the template, the code that fills it, and the config."""
    digest = hashlib.sha256(_template_text(COMPOSE_TEMPLATE).encode())
    for module in (__file__, launcher.__file__):
        digest.update(Path(module).read_bytes())
    digest.update(json.dumps(config.as_dict(), sort_keys=True).encode())
    digest.update(in_network.encode())
    return digest.hexdigest()


def cached_render(config: StackConfig, directory: Path, in_network: str = IN_NETWORK) -> str:
    """`render_compose(config)`, read back from `directory` when `up` stored that very render
    there (`store_render`): the reading commands then need no template engine."""
    try:
        key, _, text = (directory / CACHE_FILE).read_text(encoding="utf-8").partition("\n")
    except OSError:
        key = text = ""
    if key == _render_key(config, in_network):
        return text
    return render_compose(config, in_network)


def store_render(
    config: StackConfig, directory: Path, compose: str, in_network: str = IN_NETWORK
) -> None:
    write_private(directory / CACHE_FILE, _render_key(config, in_network) + "\n" + compose)


def render_init(config: StackConfig) -> str:
    """A commented mlstack.yaml holding `config`'s values (`mlstack init`)."""
    return _environment().from_string(_template_text(INIT_TEMPLATE)).render(c=config)


def render_env(
    creds: StackSecrets,
    external: ExternalSecrets | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The .env beside the compose file: the stack's secrets, `extra` variables (the TLS
    certificate and key) and the secrets of its managed services (single-quoted when compose
    would otherwise read `$`, `#`, spaces or quotes in them)."""
    lines = ["# Secrets for docker-compose.yml beside this file. Keep private (mode 0600)."]
    values = {**creds.as_env(), **(extra or {}), **(external.as_env() if external else {})}
    lines += [f"{key}={_env_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _env_value(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./+:@%,=-]*", value) or "'" in value:
        return value
    return f"'{value}'"


def write_rendered(
    directory: Path,
    config: StackConfig,
    creds: StackSecrets,
    *,
    compose: str | None = None,
    extra: Mapping[str, str] | None = None,
    external: ExternalSecrets | None = None,
) -> tuple[Path, Path]:
    """Write docker-compose.yml (0644) and .env (0600) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    compose_path = directory / "docker-compose.yml"
    compose_path.write_text(compose or render_compose(config), encoding="utf-8")
    env_path = directory / ".env"
    write_private(env_path, render_env(creds, external, extra))
    return compose_path, env_path
