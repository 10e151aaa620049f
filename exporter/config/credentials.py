"""The files a configuration names for Azure: secret files, client certificates, CA bundles.

Each is read once, at start-up, and checked for what it must hold (an unencrypted key with the
certificate that belongs to it, at least one CA certificate); a secret or key is kept as a
:class:`Secret`. Messages name the file, or the variable it came from, never its content.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from exporter.config.model import Secret
from exporter.config.validate import Context, string
from exporter.config.yamlio import FileTooLargeError, read_at_most

__all__ = ["MAX_PEM_SIZE", "MAX_SECRET_SIZE", "ca_file", "certificate_file", "secret_file"]

# Reading stops at these sizes: a secret is under 1 KiB, and a PEM bundle (a certificate chain,
# or a CA bundle such as the system's) well under 1 MiB.
MAX_SECRET_SIZE = 64 * 2**10
MAX_PEM_SIZE = 2**20


def secret_file(ctx: Context, path: str, file: Path) -> Secret:
    """The whole file is the secret, minus the line ending most editors add."""
    data = _read_file(ctx, path, file, MAX_SECRET_SIZE, "a secret file")
    text = _decode(ctx, path, file, data).rstrip("\r\n")
    if text == "":
        ctx.fail(path, f"{ctx.show_file(path, file)} is empty")
    return Secret(text)


def certificate_file(ctx: Context, path: str, file: Path) -> Secret:
    """A PEM file with an unencrypted private key and the certificate that belongs to it."""
    data = _read_file(ctx, path, file, MAX_PEM_SIZE, "a PEM file")
    text = _decode(ctx, path, file, data)
    shown = ctx.show_file(path, file)
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        ctx.fail(path, f"the private key in {shown} is encrypted; give an unencrypted PEM key")
    except ValueError:
        ctx.fail(path, f"{shown} has no readable PEM private key (expected key and certificate)")
    except UnsupportedAlgorithm:
        ctx.fail(path, f"{shown} has a private key of an unsupported kind")
    certificates = _pem_certificates(data)
    if not certificates:
        ctx.fail(path, f"{shown} has no PEM certificate (expected key and certificate)")
    public = _public_der(key.public_key())
    if not any(_public_der(cert.public_key()) == public for cert in certificates):
        ctx.fail(path, f"the private key in {shown} does not belong to its certificate")
    return Secret(text)


def ca_file(ctx: Context, path: str, value: object) -> Path:
    """A PEM file with at least one certificate, to verify AMS and Azure AD against."""
    file = ctx.resolve(path, string(ctx, path, value))
    if not _pem_certificates(_read_file(ctx, path, file, MAX_PEM_SIZE, "a PEM file")):
        shown = ctx.show_file(path, file)
        ctx.fail(path, f"{shown} contains no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return file


def _public_der(key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _pem_certificates(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def _read_file(ctx: Context, path: str, file: Path, limit: int, what: str) -> bytes:
    """Read a small regular file; a FIFO or device (``/dev/stdin``) would block start-up."""
    shown = ctx.show_file(path, file)
    try:
        if file.exists() and not file.is_file():
            ctx.fail(path, f"{shown} is not a regular file")
        data = read_at_most(file, limit)
    except FileTooLargeError as exc:
        ctx.fail(path, f"{shown} is {exc} for {what}")
    except OSError as exc:
        ctx.fail(path, f"cannot read {shown}: {exc.strerror or type(exc).__name__}")
    if not data.strip():
        ctx.fail(path, f"{shown} is empty")
    return data


def _decode(ctx: Context, path: str, file: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        ctx.fail(path, f"{ctx.show_file(path, file)} is not UTF-8 text")
