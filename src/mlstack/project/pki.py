"""The certificates behind `tls`, with `cryptography` (MLflow's own dependency): a local CA and
the server certificates it signs (a user's own certificate is checked in own_certificate.py).

Keys are P-256 (fast to make, accepted by every client); the CA lasts ten years, a server
certificate 397 days (what browsers accept) and is made again 30 days before its end.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mlstack.compose.render import IN_NETWORK
from mlstack.config import StackConfig

CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_DAYS = 30
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# --- the local CA ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Made:
    """The local CA's files made now (None: the stored one stays)."""

    ca_cert: bytes | None = None
    ca_key: bytes | None = None
    server_cert: bytes | None = None  # the server certificate, then the CA's
    server_key: bytes | None = None


def local_names(config: StackConfig) -> tuple[list[str], list[IpAddress]]:
    """The DNS names and addresses the server certificate holds."""
    dns = ["localhost", IN_NETWORK, f"{config.project}-mlflow"]
    ips: list[IpAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    for value in (config.host, config.bind):
        if not value:
            continue
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            if value.lower() not in dns:
                dns.append(value.lower())
            continue
        if not address.is_unspecified and address not in ips:
            ips.append(address)
    return dns, ips


def local_files(
    config: StackConfig,
    ca_cert: bytes | None,
    ca_key: bytes | None,
    server_cert: bytes | None,
    server_key: bytes | None,
) -> Made:
    """What to write so that the stored files serve `config`: a CA when there is none usable
    (else it is kept), a server certificate when there is none, the CA changed, its names
    differ from `local_names(config)` or it nears its end."""
    key, cert = _usable_ca(ca_cert, ca_key)
    made = Made()
    if key is None or cert is None:
        key, cert = make_ca(config.project)
        made = Made(ca_cert=cert_pem(cert), ca_key=key_pem(key))
    dns, ips = local_names(config)
    fresh_ca = made.ca_cert is not None
    if (
        fresh_ca
        or server_cert is None
        or server_key is None
        or not _fits(server_cert, server_key, cert, dns, ips)
    ):
        server_key_obj, server = make_server(key, cert, dns, ips)
        made = Made(
            made.ca_cert, made.ca_key, cert_pem(server) + cert_pem(cert), key_pem(server_key_obj)
        )
    return made


def _usable_ca(
    cert_data: bytes | None, key_data: bytes | None
) -> tuple[ec.EllipticCurvePrivateKey | None, x509.Certificate | None]:
    """The stored CA, when it is whole, its key is its own and it outlives a server certificate."""
    if cert_data is None or key_data is None:
        return None, None
    try:
        cert = x509.load_pem_x509_certificate(cert_data)
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None, None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not same_key(cert, key):
        return None, None
    if cert.not_valid_after_utc - _now() < datetime.timedelta(days=SERVER_DAYS):
        return None, None
    return key, cert


def _fits(
    chain: bytes, key: bytes, ca: x509.Certificate, dns: list[str], ips: list[IpAddress]
) -> bool:
    """The stored server certificate is the CA's, its key is its own, it names exactly `dns`
    and `ips`, and it is not near its end."""
    try:
        cert = x509.load_pem_x509_certificates(chain)[0]
        cert.verify_directly_issued_by(ca)
        if not same_key(cert, serialization.load_pem_private_key(key, password=None)):
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    have_dns, have_ips = names_of(cert)
    if set(have_dns) != set(dns) or set(have_ips) != set(ips):
        return False
    return cert.not_valid_after_utc - _now() > datetime.timedelta(days=RENEW_DAYS)


def _subject(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mlstack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def make_ca(project: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA for one project's server certificates; it signs nothing else."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _subject(f"mlstack local CA ({project})")
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    dns: list[str],
    ips: list[IpAddress],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate for `dns` and `ips`, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    names += [x509.IPAddress(ip) for ip in ips]
    issuer_id = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder(_subject(dns[0]), ca.subject, key.public_key(), SERVER_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_id),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def same_key(cert: x509.Certificate, key: object) -> bool:
    """True when `key` is the private key of `cert`'s public key."""
    public = getattr(key, "public_key", None)
    if public is None:
        return False
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(cert.public_key().public_bytes(der, spki) == public().public_bytes(der, spki))


def names_of(cert: x509.Certificate) -> tuple[list[str], list[IpAddress]]:
    """The DNS names (lower case) and addresses a certificate's subjectAltName holds."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    ips = [
        ip
        for ip in san.get_values_for_type(x509.IPAddress)
        if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address))
    ]
    return dns, ips


def covers(cert: x509.Certificate, host: str) -> bool:
    """True when a client checking `host` accepts `cert` (its subjectAltName)."""
    dns, ips = names_of(cert)
    host = host.strip("[]").lower()
    try:
        return ipaddress.ip_address(host) in ips
    except ValueError:
        pass
    for name in dns:
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
