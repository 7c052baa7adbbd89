"""TLS for the emulators: a private CA and a loopback server certificate.

EMULATOR CODE. MSAL insists on an ``https`` authority, so the sandbox serves TLS on 127.0.0.1 with a CA
it generates itself. Clients must be given the CA file explicitly (``ca_path``); nothing is installed in
the system trust store.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CA_DAYS = 3650
_SERVER_DAYS = 825
_RENEW_BEFORE = timedelta(days=7)
_LOOPBACK_IP = ipaddress.ip_address("127.0.0.1")


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA and the server certificate live."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _still_valid(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - _RENEW_BEFORE > now


def _server_matches(server: x509.Certificate, ca: x509.Certificate, now: datetime) -> bool:
    if not _still_valid(server, now) or server.issuer != ca.subject:
        return False
    try:
        server.verify_directly_issued_by(ca)
        names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return _LOOPBACK_IP in names.get_values_for_type(x509.IPAddress) and "localhost" in (
        names.get_values_for_type(x509.DNSName)
    )


def _make_ca(now: datetime) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailunblock sandbox (EMULATOR)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "mailunblock sandbox CA - not for production"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_server(
    ca: x509.Certificate, ca_key: rsa.RSAPrivateKey, now: datetime
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _new_key()
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=_SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(_LOOPBACK_IP), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_key(path: Path) -> rsa.RSAPrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPrivateKey) else None


def ensure_tls(directory: Path) -> TlsFiles:
    """Create (or reuse, while still valid) the sandbox CA and loopback server certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
    )
    ca_key_path = directory / "ca-key.pem"
    now = datetime.now(UTC)
    ca, ca_key = _load_cert(files.ca_cert), _load_key(ca_key_path)
    if ca is None or ca_key is None or not _still_valid(ca, now):
        ca, ca_key = _make_ca(now)
        files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        _write_key(ca_key_path, ca_key)
    server = _load_cert(files.server_cert)
    if (
        server is None
        or _load_key(files.server_key) is None
        or not _server_matches(server, ca, now)
    ):
        server, server_key = _make_server(ca, ca_key, now)
        files.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        _write_key(files.server_key, server_key)
    return files
