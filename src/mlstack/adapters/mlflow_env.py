"""The environment a client needs to use the stack: what `mlstack env` prints.

MLflow 3.17's client asks the server for presigned S3 URLs for large artifacts (upload and
download). The server signs them for the S3 host it sees, `storage:<port>` inside the stack's
network, which a client on the host cannot resolve, and the client then retries for minutes.
Artifacts are proxied by the server anyway, so the client is told to keep them proxied.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass

from mlstack.config import StackConfig
from mlstack.credentials import StackSecrets

PROXY_ARTIFACTS = {
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
}


@dataclass(frozen=True)
class ClientEnv:
    variables: dict[str, str]
    hidden: list[str]  # names left out because secrets were not asked for

    def format(self, style: str) -> str:
        if style == "json":
            return json.dumps(self.variables, indent=2)
        if style == "dotenv":
            return "".join(f"{k}={v}\n" for k, v in self.variables.items())
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.variables.items())


CERT_PATH = "MLFLOW_TRACKING_SERVER_CERT_PATH"  # MLflow's client verifies https by this file


def client_env(
    config: StackConfig,
    creds: StackSecrets | None,
    *,
    s3: bool = False,
    show_secrets: bool = False,
    ca_file: str | None = None,
    external_keys: tuple[str, str] | None = None,
) -> ClientEnv:
    """The environment of a client of the stack; with tls, `ca_file` (the stack's CA, or
    None when the system's trust applies) as what MLflow's client verifies the server by."""
    variables = {"MLFLOW_TRACKING_URI": config.tracking_uri, **PROXY_ARTIFACTS}
    if config.tls.enabled and ca_file:
        variables[CERT_PATH] = ca_file
    hidden: list[str] = []
    if config.auth:
        # MLflow's client sends these as HTTP basic auth on every request.
        login = tracking_login(creds)
        if show_secrets and login:
            variables.update(login)
        else:
            hidden += ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]
    if s3:
        external = config.storage.external
        endpoint = external.endpoint if external else config.s3_endpoint
        variables["MLFLOW_S3_ENDPOINT_URL"] = endpoint
        variables["AWS_ENDPOINT_URL_S3"] = endpoint
        variables["AWS_DEFAULT_REGION"] = external.region if external else "us-east-1"
        keys = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
        if external_keys is not None:  # a managed S3 API's, from where the config names them
            keys = dict(zip(keys, external_keys, strict=True))
        elif creds is not None:
            keys = {
                "AWS_ACCESS_KEY_ID": creds.S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": creds.S3_SECRET_KEY,
            }
        if show_secrets and all(keys.values()):
            variables.update(keys)
        else:
            hidden += list(keys)
    return ClientEnv(variables, hidden)


def tracking_login(creds: StackSecrets | None) -> dict[str, str]:
    """MLFLOW_TRACKING_USERNAME/PASSWORD for the admin user; empty before any `up` made them."""
    if creds is None or not creds.has_auth:
        return {}
    return {
        "MLFLOW_TRACKING_USERNAME": creds.MLFLOW_AUTH_ADMIN_USERNAME,
        "MLFLOW_TRACKING_PASSWORD": creds.MLFLOW_AUTH_ADMIN_PASSWORD,
    }


def activate(config: StackConfig, creds: StackSecrets | None, ca_file: str | None = None) -> None:
    """Point MLflow in this process at the stack, as `eval "$(mlstack env)"` does for a shell
    (with the admin login when auth is on: this process is the stack's own user).

    Call it before importing mlflow: some of its settings are read once. MLflow also prints run
    URLs on stdout unless told not to; stdout belongs to the command's own output.
    """
    variables = client_env(config, creds, show_secrets=True, ca_file=ca_file).variables
    if CERT_PATH not in variables:
        os.environ.pop(CERT_PATH, None)  # another stack's CA would fail this one's certificate
    os.environ.update(variables)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
