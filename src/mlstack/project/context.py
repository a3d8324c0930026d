"""One project's config, state, credentials and specs, derived once per command.

Every command starts here: `Project.open` reads the secrets (never creating them unless asked),
renders the compose file and parses it into the specs the engine creates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlstack import credentials
from mlstack.adapters.mlflow_http import basic_auth_header
from mlstack.adapters.targets import PgTarget, S3Target
from mlstack.compose.launcher import TLS_CA
from mlstack.compose.render import IN_NETWORK, cached_render, in_network_url
from mlstack.compose.services import StackSpec, from_compose
from mlstack.config import StackConfig
from mlstack.credentials import AUTH_KEYS, ExternalSecrets, StackSecrets
from mlstack.engine import EngineAPI, ServiceSpec
from mlstack.errors import NotRunning
from mlstack.health import MlflowProbe, run_probe
from mlstack.project.certificates import ServerTls, server_tls, stand_in_variables
from mlstack.project.certificates import save as save_tls
from mlstack.project.relay import Relay, relay_spec
from mlstack.state import ProjectState

SERVICES = ("postgres", "storage", "mlflow")
STOP_GRACE = {"postgres": 20.0}  # PostgreSQL gets time for a clean shutdown checkpoint


# What the compose file reads for a managed service's secret that a reading command could not
# read (`need_external=False`): the render needs a value, nothing uses it.
_EXTERNAL_STAND_INS = dict.fromkeys(ExternalSecrets("-", "-", "-").as_env(), "not-read")


def stop_grace(service: str) -> float:
    return STOP_GRACE.get(service, 10.0)


@dataclass(frozen=True)
class Project:
    """One project's config, state, credentials and specs."""

    config: StackConfig
    state: ProjectState
    secrets: StackSecrets
    spec: StackSpec
    compose: str
    secrets_created: bool = False
    secrets_added: tuple[str, ...] = ()  # keys an older secrets file lacked, generated now
    tls: ServerTls | None = None  # with `tls`: what MLflow serves and its clients trust
    # The password and keys of managed services (postgres.external, storage.external), read
    # from where the config names them; never stored but in the rendered .env (0600).
    external: ExternalSecrets = field(default_factory=ExternalSecrets)
    # On a remote engine: the services' in-network ports, forwarded to this machine.
    relay: Relay | None = field(default=None, compare=False)

    @classmethod
    def open(
        cls,
        config: StackConfig,
        *,
        create_secrets: bool = False,
        save: bool = True,
        engine: EngineAPI | None = None,
        need_external: bool = True,
    ) -> Project | None:
        """The project for `config`; None when it has never been brought up (no secrets yet).

        With `create_secrets`, missing secrets are generated, and stored unless `save` is False:
        `up` stores them only once its preflight passed, so a refused `up` leaves no state.
        The secrets of managed services are read now: one missing is a ConfigError, unless not
        `need_external` (a command that only reads logs).
        """
        state = ProjectState.for_project(config.project)
        loaded = credentials.load(state)
        if loaded is None and not create_secrets:
            return None
        added: tuple[str, ...] = ()
        if loaded is None:
            creds = StackSecrets.generate()
        elif create_secrets:
            creds, added = credentials.complete(loaded)
        else:
            creds = loaded
        tls = server_tls(config, state, create=create_secrets)
        external = credentials.external_secrets(config, strict=need_external)
        compose = cached_render(config, state.root, tls.name if tls else IN_NETWORK)
        variables = {**creds.as_env(), **_EXTERNAL_STAND_INS, **external.as_env()}
        if not creds.has_auth:
            # A secrets file from before auth existed: the next `up` adds the login. Until then
            # the reading commands render with stand-ins (`status` then shows MLflow's config
            # as changed, which it is).
            variables.update({k: "not-made-until-up" for k in AUTH_KEYS if not variables[k]})
        if config.tls.enabled:  # likewise a certificate no `up` has made yet
            variables.update(tls.variables() if tls else stand_in_variables())
        spec = from_compose(compose, variables)
        relay = None
        if engine is not None and (engine.remote or config.swarm_target):
            # (a swarm publishes neither PostgreSQL nor S3: they are reached inside its network)
            relay = Relay(
                engine,
                relay_spec(config.project, config.mlflow.image, config.labels),
                spec.network,
                spec.labels,
            )
        project = cls(
            config, state, creds, spec, compose, loaded is None, added, tls, external, relay
        )
        if save:
            project.save_secrets()
        return project

    def save_secrets(self) -> None:
        """Store new secrets, or the keys an older file lacks (mode 0600); never changes a value."""
        if self.secrets_created or self.secrets_added:
            credentials.save(self.state, self.secrets, self.secrets_added)
        save_tls(self.state, self.tls)

    @property
    def name(self) -> str:
        return self.config.project

    def service(self, name: str) -> ServiceSpec:
        return self.spec.services[name]

    def external_services(self) -> list[str]:
        """The services run elsewhere (postgres.external, storage.external): no container."""
        c = self.config
        found = [("postgres", c.postgres.external), ("storage", c.storage.external)]
        return [name for name, external in found if external is not None]

    def data_services(self) -> list[str]:
        """The data services the stack runs itself, as containers."""
        return [name for name in ("postgres", "storage") if name in self.spec.services]

    def container(self, service: str) -> str:
        """The container name of one of the stack's services."""
        return self.spec.services[service].container_name

    def reach(self, service: str, container_port: int, published: int) -> tuple[str, int]:
        """Where this machine connects to a service: its published port, or on a remote
        engine a port forwarded into the stack's network (MLflow's too, unless exposed)."""
        if service == "mlflow" and (self.relay is None or self.config.exposed):
            return self.config.client_host, published
        if self.relay is None:  # on this machine's loopback when the stack is exposed
            return self.config.private_host, published
        return self.relay.address(service, container_port)

    def route(self) -> str:
        """Which way this machine reaches the services, for `status` to say."""
        published = f"the ports published on {self.config.client_host}"
        if self.relay is None:
            return published
        inside = f"through the engine into the stack's network ({self.relay.spec.container_name})"
        if self.config.exposed:
            return f"MLflow on {published}; PostgreSQL and S3 {inside}"
        return inside

    def postgres(self) -> PgTarget:
        """The stack's PostgreSQL as a client on this machine reaches it (a managed one at its
        own address)."""
        c, s = self.config, self.secrets
        external = c.postgres.external
        if external is not None:
            return PgTarget(
                external.host,
                external.port,
                external.user,
                self.external.postgres_password,
                c.postgres.database,
                sslmode=external.sslmode,
                external=external.password_source,
            )
        host, port = self.reach("postgres", 5432, c.postgres.port)
        return PgTarget(host, port, s.POSTGRES_USER, s.POSTGRES_PASSWORD, c.postgres.database)

    def s3(self) -> S3Target:
        c = self.config
        external = c.storage.external
        if external is not None:
            return S3Target(
                external.endpoint,
                self.external.s3_access_key,
                self.external.s3_secret_key,
                region=external.region,
                addressing_style=external.addressing_style,
                external=" and ".join(external.key_sources),
            )
        host, port = self.reach("storage", c.storage.container_port, c.storage.port)
        return S3Target(
            f"http://{host}:{port}", self.secrets.S3_ACCESS_KEY, self.secrets.S3_SECRET_KEY
        )

    @property
    def tracking_uri(self) -> str:
        """MLflow as mlstack's own calls reach it (`config.tracking_uri` is what clients use)."""
        host, port = self.reach("mlflow", 5000, self.config.mlflow.port)
        if (host, port) == (self.config.client_host, self.config.mlflow.port):
            return self.config.tracking_uri
        return f"{'https' if self.config.tls.enabled else 'http'}://{host}:{port}"

    def mlflow_headers(self) -> dict[str, str]:
        """What an API call to MLflow sends: the admin's basic-auth header when auth is on."""
        headers = {}
        if self.tracking_uri != self.config.tracking_uri:
            # forwarded: MLflow answers only Host headers it allows, such as its in-network name
            headers["Host"] = "mlflow:5000"
        if not self.config.auth or not self.secrets.has_auth:
            return headers
        return headers | basic_auth_header(
            self.secrets.MLFLOW_AUTH_ADMIN_USERNAME, self.secrets.MLFLOW_AUTH_ADMIN_PASSWORD
        )

    def mlflow_probe(self) -> MlflowProbe:
        return MlflowProbe(
            "mlflow", self.tracking_uri, headers=self.mlflow_headers(), cafile=self.ca_file
        )

    @property
    def ca_file(self) -> str | None:
        """What mlstack verifies MLflow's certificate by (None: the system's trust)."""
        return self.tls.ca_file if self.tls else None

    @property
    def in_network_name(self) -> str:
        """The name the stack's containers reach MLflow by (its certificate holds it)."""
        return self.tls.name if self.tls else IN_NETWORK

    @property
    def in_network_url(self) -> str:
        """MLflow as the stack's own containers reach it (`serve`, `gc`)."""
        return in_network_url(self.config, self.in_network_name)

    def in_network_trust(self) -> dict[str, str]:
        """What a container of the stack needs to verify MLflow over https (the launchers and
        one-shot scripts write it to a file): the CA, base64; nothing without tls."""
        return {TLS_CA: self.tls.variables()[TLS_CA]} if self.tls else {}

    def aliases(self, service: str) -> list[str]:
        """A service's names on the stack's network (with a user's certificate, MLflow also
        has the name the certificate holds)."""
        names = [service, self.container(service)]
        if service == "mlflow" and self.in_network_name not in names:
            names.append(self.in_network_name)
        return names

    def render_variables(self) -> dict[str, str]:
        """What the rendered .env holds besides the secrets: the TLS certificate and key."""
        return self.tls.variables() if self.tls else {}

    def scrub(self, text: str) -> str:
        """`text` with every secret value masked: logs may echo credentials."""
        for value in [*self.secrets.values(), *self.external.values()]:
            text = text.replace(value, "****")
        return text

    def urls(self) -> dict[str, str]:
        """Where each service is, without secrets (a managed one at its own address)."""
        c = self.config
        pg, s3 = c.postgres.external, c.storage.external
        database = f"postgresql://{c.private_host}:{c.postgres.port}/{c.postgres.database}"
        if pg is not None:
            target = self.postgres()
            database = f"postgresql://{target.user}@{target.where}/{target.database}"
            database += f"?sslmode={pg.sslmode}"
        return {
            "postgres": database,
            "storage": s3.endpoint if s3 is not None else c.s3_endpoint,
            "mlflow": c.tracking_uri,
        }


# for a tracking server that runs but does not answer
REPAIR_HINT = "see `mlstack status`; `mlstack up` repairs the stack"


def not_running(config: StackConfig, command: str) -> NotRunning:
    return NotRunning(
        f"the stack {config.project!r} is not running: `mlstack {command}` needs it",
        "start it with `mlstack up`",
    )


def open_existing(config: StackConfig, command: str, engine: EngineAPI | None = None) -> Project:
    """The project, when it has been brought up before (it has secrets); NotRunning otherwise."""
    project = Project.open(config, engine=engine)
    if project is None:
        raise not_running(config, command)
    return project


def require_running(config: StackConfig, engine: EngineAPI, command: str) -> Project:
    """The project, when its tracking server runs and answers an API call; NotRunning otherwise.

    For commands that use the stack rather than manage it (`demo`, `serve`).
    """
    project = open_existing(config, command, engine)
    info = engine.inspect(project.container("mlflow"))
    if info is None or not info.running or info.project != config.project:
        raise not_running(config, command)
    probe = run_probe(project.mlflow_probe())
    if not probe.ok:
        raise NotRunning(
            f"the tracking server of stack {config.project!r} does not answer at "
            f"{config.tracking_uri}: {probe.detail}",
            REPAIR_HINT,
        )
    return project


def require_data_services(project: Project, engine: EngineAPI, command: str) -> None:
    """NotRunning unless the stack's PostgreSQL and S3 containers run (`backup`, `restore`); a
    managed one has none."""
    for name in project.data_services():
        info = engine.inspect(project.container(name))
        if info is None or not info.running:
            raise not_running(project.config, command)
