"""Certificates made by the tests: a CA, a server certificate naming an IP address, client
certificates (a directory as DOCKER_CERT_PATH wants it: ca.pem, cert.pem, key.pem)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Ca = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer or (name, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(signer, hashes.SHA256())


def make_ca(label: str) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    constraints = x509.BasicConstraints(ca=True, path_length=0)
    return _certificate(f"mlstack test CA {label}", key, None, [(constraints, True)]), key


def leaf(ca: Ca, subject: str, ip: str | None) -> tuple[bytes, bytes]:
    """(certificate, key) as PEM: a server's naming `ip`, a client's without one."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if ip else ExtendedKeyUsageOID.CLIENT_AUTH
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([usage]), False),
    ]
    if ip:
        alt = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        extensions.append((alt, False))
    cert = _certificate(subject, key, (ca[0].subject, ca[1]), extensions)
    return cert.public_bytes(serialization.Encoding.PEM), _pem(key)


def client_dir(directory: Path, ca: Ca) -> Path:
    directory.mkdir(parents=True)
    cert, key = leaf(ca, "mlstack test client", None)
    (directory / "ca.pem").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(cert)
    (directory / "key.pem").write_bytes(key)
    (directory / "key.pem").chmod(0o600)
    return directory


def make_certificates(home: Path, ip: str) -> dict[str, bytes]:
    """Client directories under `home` (certs, wrong-certs); the server's files, by name."""
    ca = make_ca("server")
    client_dir(home / "certs", ca)
    client_dir(home / "wrong-certs", make_ca("other"))
    server_cert, server_key = leaf(ca, "mlstack test server", ip)
    return {
        "ca.pem": ca[0].public_bytes(serialization.Encoding.PEM),
        "server-cert.pem": server_cert,
        "server-key.pem": server_key,
    }
