"""A user's own certificate (`tls: {cert, key}`), checked before anything starts: present,
PEM, the key of that certificate, valid now, and naming the address clients use. Each problem
is one ConfigError that says what to change."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from mlstack.config import StackConfig
from mlstack.errors import ConfigError
from mlstack.project.pki import cert_pem, covers, names_of, same_key, self_signed

_OWN_HINT = "or set tls: true to have mlstack make a local CA and certificate"


@dataclass(frozen=True)
class OwnCertificate:
    chain: bytes  # the file as it is: the certificate, then its intermediates
    key: bytes
    trust: bytes  # the self-signed certificate the file ends with, b"" when none
    ca_file: str | None  # the certificate file, when it ends with a self-signed certificate
    name: str  # the name the stack's containers reach MLflow by


def own_certificate(config: StackConfig) -> OwnCertificate:
    """`tls.cert` and `tls.key`, checked: each problem is one ConfigError."""
    cert_path = Path(config.tls.cert or "").expanduser().absolute()
    key_path = Path(config.tls.key or "").expanduser().absolute()
    chain = _read("tls.cert", cert_path)
    key_data = _read("tls.key", key_path)
    certs = _certificates(cert_path, chain)
    key = _private_key(key_path, key_data)
    leaf = certs[0]
    if not same_key(leaf, key):
        raise ConfigError(
            f"tls.key {key_path} is not the key of the certificate in tls.cert {cert_path}",
            "give the private key the certificate was issued for",
        )
    _check_valid(cert_path, leaf)
    _check_client_host(config, cert_path, leaf)
    root = certs[-1] if self_signed(certs[-1]) else None
    return OwnCertificate(
        chain,
        key_data,
        cert_pem(root) if root is not None else b"",
        str(cert_path) if root is not None else None,
        in_network_name(config, cert_path, leaf),
    )


def _read(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{key}: {path} does not exist",
            f"give the path of your server certificate and its key in PEM, {_OWN_HINT}",
        ) from None
    except OSError as e:
        raise ConfigError(
            f"{key}: cannot read {path}: {e.strerror or e}",
            "check the file's permissions: mlstack reads it as the user that runs it",
        ) from None


def _certificates(path: Path, data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(
            f"tls.cert: {path} is not a PEM certificate",
            "give the server certificate in PEM (-----BEGIN CERTIFICATE-----, then its "
            "intermediates); a DER file converts with: openssl x509 -inform der -in FILE "
            "-out cert.pem",
        ) from None


def _private_key(path: Path, data: bytes) -> object:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"tls.key: {path} is encrypted with a passphrase",
            "give the key unencrypted (mode 0600): openssl pkey -in FILE -out server.key",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"tls.key: {path} is not a PEM private key",
            "give the certificate's private key in PEM (-----BEGIN PRIVATE KEY-----)",
        ) from None


def _check_valid(path: Path, cert: x509.Certificate) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_after_utc <= now:
        when = cert.not_valid_after_utc.strftime("%Y-%m-%d")
        raise ConfigError(
            f"tls.cert {path} expired on {when}", f"renew the certificate, {_OWN_HINT}"
        )
    if cert.not_valid_before_utc > now:
        when = cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M UTC")
        raise ConfigError(
            f"tls.cert {path} is not valid before {when}",
            "check this machine's clock, or wait until then",
        )


def _check_client_host(config: StackConfig, path: Path, cert: x509.Certificate) -> None:
    host = config.client_host.strip("[]")
    if covers(cert, host):
        return
    dns, ips = names_of(cert)
    held = ", ".join([*dns, *map(str, ips)]) or "no subjectAltName"
    raise ConfigError(
        f"tls.cert {path} is for {held}, not {host}: clients of "
        f"{config.tracking_uri} would refuse it",
        "set host to a name the certificate holds, or use a certificate for " + host,
    )


def in_network_name(config: StackConfig, path: Path, cert: x509.Certificate) -> str:
    """The name the stack's own containers reach MLflow by: `host` when the certificate holds
    it, else its first DNS name (a wildcard's as `mlflow.<domain>`); never `localhost`, which
    is each container itself."""
    dns, _ = names_of(cert)
    candidates = [config.host.lower()] if config.host and covers(cert, config.host) else []
    candidates += ["mlflow" + n[1:] if n.startswith("*.") else n for n in dns]
    for name in candidates:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            if name != "localhost":
                return name
    raise ConfigError(
        f"tls.cert {path} holds no DNS name (only addresses or localhost): the stack's own "
        "containers (healthcheck, serve, gc) reach MLflow by a name the certificate holds",
        f"use a certificate that also holds a DNS name, {_OWN_HINT}",
    )
