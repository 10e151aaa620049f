"""Certificates for tests of TLS endpoints: a server CA and certificate, a client CA and clients."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    """A server CA and certificate, a client CA with two clients, and a stranger's client."""

    folder: Path
    server_ca: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    client: tuple[str, str]  # (certificate file, key file), SAN prometheus.test
    other_client: tuple[str, str]  # same CA, SAN intruder.test
    stranger: tuple[str, str]  # self-signed, not from the client CA


def private_key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """``key`` as unencrypted PKCS #8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate(
    name: str,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: tuple[x509.Name, CertificateIssuerPrivateKeyTypes] | None,
    *,
    ca: bool = False,
    san: x509.GeneralName | None = None,
) -> x509.Certificate:
    """A certificate for ``key`` with common name ``name``, valid from an hour ago for a day,
    signed by ``issuer`` (its name and key) or, without one, by ``key`` itself."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(private_key_pem(key))
    return str(cert_file), str(key_file)


def make_pki(folder: Path) -> Pki:
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("sca", "srv", "cca", "c1")}
    keys.update({name: ec.generate_private_key(ec.SECP256R1()) for name in ("c2", "x")})
    server_ca = certificate("server CA", keys["sca"], None, ca=True)
    client_ca = certificate("client CA", keys["cca"], None, ca=True)
    server = certificate(
        "127.0.0.1",
        keys["srv"],
        (server_ca.subject, keys["sca"]),
        san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    )
    by_client_ca = (client_ca.subject, keys["cca"])
    client = certificate(
        "prometheus", keys["c1"], by_client_ca, san=x509.DNSName("prometheus.test")
    )
    other = certificate("intruder", keys["c2"], by_client_ca, san=x509.DNSName("intruder.test"))
    stranger = certificate("stranger", keys["x"], None, san=x509.DNSName("prometheus.test"))
    server_ca_file, _ = _write(folder, "server-ca", server_ca, keys["sca"])
    client_ca_file, _ = _write(folder, "client-ca", client_ca, keys["cca"])
    server_cert, server_key = _write(folder, "server", server, keys["srv"])
    return Pki(
        folder=folder,
        server_ca=Path(server_ca_file),
        server_cert=Path(server_cert),
        server_key=Path(server_key),
        client_ca=Path(client_ca_file),
        client=_write(folder, "client", client, keys["c1"]),
        other_client=_write(folder, "other", other, keys["c2"]),
        stranger=_write(folder, "stranger", stranger, keys["x"]),
    )
