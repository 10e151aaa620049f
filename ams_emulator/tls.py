"""Certificates the emulator makes for itself at start-up.

A throw-away CA signs the server certificate, so clients verify the connection against ``ca_file``
instead of disabling verification. A separate RSA client certificate is the credential registered for
the emulator's app (certificate credentials sign their client assertion with it).

EC P-256 keys keep start-up fast; the client key is RSA because Azure AD only accepts RS256/PS256
client assertions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=7)
_BACKDATE = dt.timedelta(hours=1)  # tolerate small clock differences between processes


@dataclass(frozen=True)
class ClientCertificate:
    """The certificate credential registered for the emulator's client id."""

    certificate: x509.Certificate
    certificate_pem: str
    private_key_pem: str
    file: Path  # private key + certificate, PEM
    sha1_thumbprint: str  # hex, upper case, as the Azure portal shows it
    sha256_thumbprint: str  # hex, upper case


@dataclass(frozen=True)
class TlsMaterial:
    """Everything the server and its clients need; files live in ``directory``."""

    directory: Path
    ca_pem: str
    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client: ClientCertificate

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the emulator's certificate (TLS 1.2 or newer)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.server_cert_file, self.server_key_file)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ams-exporter emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _builder(subject: str, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
    )


def _subject_alt_names(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (
        _builder("ams-exporter emulator CA", _name("ams-exporter emulator CA"), public)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_server(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: tuple[str, ...]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder("localhost", ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_subject_alt_names(hosts), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _make_client(client_id: str, directory: Path) -> ClientCertificate:
    """A self-signed RSA certificate, as an app registration's uploaded certificate would be."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        _builder(client_id, _name(client_id), key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    cert_pem, key_pem = _pem(cert), _key_pem(key)
    file = directory / "client-certificate.pem"
    _write_private(file, key_pem + cert_pem)
    return ClientCertificate(
        certificate=cert,
        certificate_pem=cert_pem,
        private_key_pem=key_pem,
        file=file,
        sha1_thumbprint=hashlib.sha1(der).hexdigest().upper(),
        sha256_thumbprint=hashlib.sha256(der).hexdigest().upper(),
    )


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text, encoding="ascii")


def generate_tls(directory: Path, hosts: tuple[str, ...], client_id: str) -> TlsMaterial:
    """Create the CA, a server certificate valid for ``hosts`` and the client certificate.

    ``directory`` must exist and be private to this emulator; the caller removes it on stop.
    """
    ca, ca_key = _make_ca()
    server, server_key = _make_server(ca, ca_key, hosts)
    ca_pem = _pem(ca)
    ca_file = directory / "ca.pem"
    ca_file.write_text(ca_pem, encoding="ascii")
    server_cert_file = directory / "server.pem"
    server_cert_file.write_text(_pem(server) + ca_pem, encoding="ascii")
    server_key_file = directory / "server-key.pem"
    _write_private(server_key_file, _key_pem(server_key))
    return TlsMaterial(
        directory=directory,
        ca_pem=ca_pem,
        ca_file=ca_file,
        server_cert_file=server_cert_file,
        server_key_file=server_key_file,
        client=_make_client(client_id, directory),
    )
