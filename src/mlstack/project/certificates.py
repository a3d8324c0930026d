"""HTTPS for MLflow (`tls`): the certificate it serves and what its clients trust.

`tls: true`: a local CA (kept for good: clients keep trusting its file) and a server
certificate it signs, made into the project's state dir (`tls/`, files 0600). The server
certificate names every address clients use: localhost, 127.0.0.1, ::1, `host`, a `bind`
that is not a wildcard, and the in-network names `mlflow` and `<project>-mlflow`; it is made
again when those change or it nears its end. `tls: {cert, key}`: the user's own files, checked
before anything starts (own_certificate.py).

The stack's own containers (healthcheck, `serve`, `gc`) reach MLflow over https too, by a
name the certificate holds: `mlflow` with the local CA; with a user's certificate, `host` or
the certificate's first DNS name, given to the MLflow container as a network alias.

Certificates reach the MLflow container through its environment (base64 PEM, like the stack's
other secrets), never through a file mounted from this machine: a remote engine has no access
to this machine's files, and `docker compose` with the rendered .env works the same way.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlstack.compose.launcher import TLS_CA, TLS_CERT, TLS_KEY
from mlstack.compose.render import IN_NETWORK
from mlstack.config import StackConfig
from mlstack.errors import ConfigError
from mlstack.state import ProjectState, write_private

TLS_DIR = "tls"  # in the project's state dir
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.pem", "ca.key", "server.pem", "server.key"
NOT_MADE = "not-made-until-up"  # stands in for material the next `up` makes


@dataclass(frozen=True)
class ServerTls:
    """What MLflow serves and what its clients trust."""

    chain: bytes  # PEM: the server certificate, then its issuers
    key: bytes  # PEM: its private key
    trust: bytes  # PEM: the CA the stack's containers trust (b"": their own trust store)
    ca_file: str | None  # what clients on this machine verify by (None: the system's trust)
    name: str  # the name the stack's containers reach MLflow by (the certificate holds it)
    unsaved: Mapping[str, bytes] = field(default_factory=dict)  # made now, for `save`

    def variables(self) -> dict[str, str]:
        """The compose variables (base64, one line each) the MLflow container reads."""
        return {TLS_CERT: _b64(self.chain), TLS_KEY: _b64(self.key), TLS_CA: _b64(self.trust)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else ""


def stand_in_variables() -> dict[str, str]:
    """For reading commands before the first `up` with tls made the certificate."""
    return {TLS_CERT: NOT_MADE, TLS_KEY: NOT_MADE, TLS_CA: ""}


def tls_dir(state: ProjectState) -> Path:
    return state.root / TLS_DIR


def server_tls(config: StackConfig, state: ProjectState, *, create: bool) -> ServerTls | None:
    """The TLS material for `config` (None when tls is off). With `create` (`up`, `render`):
    the local CA and server certificate are made when missing or stale (written by `save`),
    and a user's files are checked, each problem a ConfigError. Without it: what exists, None
    when it does not (yet) or cannot be read."""
    if not config.tls.enabled:
        return None
    if config.tls.own_certificate:
        return _own(config, create=create)
    return _local(config, state, create=create)


def _own(config: StackConfig, *, create: bool) -> ServerTls | None:
    # deferred: cryptography (0.1 s to import) loads only when a certificate is read or made
    from mlstack.project import own_certificate

    try:
        own = own_certificate.own_certificate(config)
    except ConfigError:
        if create:
            raise
        return None  # a reading command shows the stack as it is; `up` says what is wrong
    return ServerTls(own.chain, own.key, own.trust, own.ca_file, own.name)


def _local(config: StackConfig, state: ProjectState, *, create: bool) -> ServerTls | None:
    directory = tls_dir(state)
    found = {n: _read(directory / n) for n in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)}
    unsaved: dict[str, bytes] = {}
    if create:
        # deferred: as in _own
        from mlstack.project import pki

        made = pki.local_files(
            config, found[CA_CERT], found[CA_KEY], found[SERVER_CERT], found[SERVER_KEY]
        )
        unsaved = {
            name: data
            for name, data in (
                (CA_CERT, made.ca_cert),
                (CA_KEY, made.ca_key),
                (SERVER_CERT, made.server_cert),
                (SERVER_KEY, made.server_key),
            )
            if data is not None
        }
    files = {**found, **unsaved}
    chain, key, ca = files[SERVER_CERT], files[SERVER_KEY], files[CA_CERT]
    if chain is None or key is None:
        return None
    return ServerTls(chain, key, ca or b"", str(directory / CA_CERT), IN_NETWORK, unsaved)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def save(state: ProjectState, tls: ServerTls | None) -> None:
    """Write what `server_tls` made (mode 0600)."""
    if tls is None or not tls.unsaved:
        return
    state.ensure()  # the project's dir 0700, then its tls dir
    tls_dir(state).mkdir(mode=0o700, exist_ok=True)
    for name, data in tls.unsaved.items():
        write_private(tls_dir(state) / name, data.decode())


def ca_file(config: StackConfig, state: ProjectState) -> str | None:
    """The file clients on this machine verify MLflow by: the local CA's, or a user's
    certificate file that ends with a self-signed certificate; None otherwise (the system's
    trust applies). A user's file that cannot be used is a ConfigError."""
    if not config.tls.enabled:
        return None
    if config.tls.own_certificate:
        own = _own(config, create=True)
        return own.ca_file if own else None
    return str(tls_dir(state) / CA_CERT)
