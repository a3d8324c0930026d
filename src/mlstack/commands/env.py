"""`mlstack env`: the environment an MLflow client needs to use the stack (`eval "$(mlstack env)"`).

Credentials only when asked for (--show-secrets); the names left out are listed, so the CLI can
say how to get them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlstack import credentials
from mlstack.adapters.mlflow_env import ClientEnv, client_env
from mlstack.choices import EnvFormat
from mlstack.config import StackConfig
from mlstack.config.endpoint import resolve_endpoint
from mlstack.errors import UsageError
from mlstack.project.certificates import ca_file
from mlstack.project.reporting import Result
from mlstack.state import ProjectState


@dataclass(frozen=True)
class EnvResult(Result):
    variables: dict[str, str]
    hidden: list[str]  # names left out: secrets not asked for, or not made yet
    format: EnvFormat
    show_secrets: bool

    @property
    def output(self) -> str:
        return ClientEnv(self.variables, self.hidden).format(self.format.value)

    def json_value(self) -> object:
        return self.variables


def env(
    config: StackConfig,
    *,
    style: EnvFormat = EnvFormat.SH,
    s3: bool = False,
    show_secrets: bool = False,
) -> EnvResult:
    """The client environment for `config`'s stack; reads the secrets only when it needs them.
    With tls, MLflow's client verifies the server by the stack's CA file (the local CA's, or a
    user's certificate file that ends with a self-signed certificate)."""
    state = ProjectState.for_project(config.project)
    if s3 and config.storage.external is None:
        if config.swarm_target:
            raise UsageError(
                "--s3 gives the stack's own S3 endpoint, which a swarm publishes nowhere (S3 "
                "answers only inside the stack's overlay network)",
                "clients need only MLFLOW_TRACKING_URI (artifacts go through MLflow)",
            )
        _refuse_remote_s3()
    needs_secrets = s3 or config.auth
    creds = credentials.load(state) if needs_secrets else None
    keys = None
    if s3 and show_secrets and config.storage.external is not None:
        found_keys = credentials.external_secrets(config, services=["storage"])
        keys = (found_keys.s3_access_key, found_keys.s3_secret_key)
    found = client_env(
        config,
        creds,
        s3=s3,
        show_secrets=show_secrets,
        ca_file=ca_file(config, state),
        external_keys=keys,
    )
    return EnvResult(found.variables, found.hidden, style, show_secrets)


def _refuse_remote_s3() -> None:
    """S3 of a stack on another machine's engine is on that machine's loopback: an endpoint of
    127.0.0.1 here would reach nothing, or another stack of this machine."""
    endpoint = resolve_endpoint()
    if endpoint.remote:
        raise UsageError(
            f"--s3 gives the stack's own S3 endpoint, which the engine at {endpoint.describe()} "
            "keeps on its server's loopback",
            "clients need only MLFLOW_TRACKING_URI (artifacts go through MLflow); for direct "
            "S3 access run `mlstack env --s3` on the server",
        )
