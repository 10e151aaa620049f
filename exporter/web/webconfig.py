"""The exporter-toolkit ``web-config.yml`` format: what protects the exporter's own HTTP endpoint.

The file a Go exporter takes with ``--web.config.file`` works here too::

    tls_server_config:
      cert_file: server.crt           # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
      client_allowed_sans: [prometheus.example.org]
      min_version: TLS12
      max_version: TLS13
      cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
      prefer_server_cipher_suites: true
      curve_preferences: [CurveP256]
    http_server_config:
      http2: true                     # accepted; this server speaks HTTP/1.1
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2b$12$...          # bcrypt hash (needs the optional extra ams-exporter[bcrypt])

Where Python's ``ssl`` module cannot do what Go does, the file is refused with an error that says
so, never silently weakened: ``RequireAnyClientCert`` (a certificate demanded but not verified) has
no equivalent, and only the Go cipher suite names with an OpenSSL counterpart are accepted.
``RequestClientCert`` grants the same access as ``NoClientCert`` (a certificate is asked for and
never checked in Go either) and is served as that.

The file is read once, at start-up, into frozen values, with the account configuration's
vocabulary (:mod:`exporter.config.validate`): every error names the key path, and an unknown key
or a misspelt name gets "did you mean". The TLS context is built here too, so that an unusable
certificate, key or CA stops the start. :mod:`exporter.web.protect` enforces the settings on every
connection and request.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter.config.validate import (
    Context,
    Section,
    boolean,
    choice,
    join,
    key_line,
    list_of,
    mapping,
    string,
)
from exporter.config.yamlio import read_file_capped, read_yaml
from exporter.errors import ConfigError

__all__ = [
    "ALLOWED_HEADERS",
    "CIPHER_SUITES",
    "CLIENT_AUTH_TYPES",
    "CURVES",
    "TLS_VERSIONS",
    "TlsServerConfig",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
]

TOP_LEVEL_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
HTTP_KEYS = ("http2", "headers")
# The response headers exporter-toolkit lets a web config set.
ALLOWED_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
_VERIFYING_AUTH = {
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go's TLS 1.2 cipher suite names and their OpenSSL names. TLS 1.3 suites are not configurable
# in Go nor in Python's ssl; their names are accepted and always enabled, as in Go.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# How a message names text that did not come from a file.
_UNNAMED_SOURCE = "<web config>"
# The keys whose empty value is an error rather than the default: a boolean is true or false.
_BOOLEAN_KEYS = ("prefer_server_cipher_suites", "http2")


class WebConfigError(ConfigError):
    """The web configuration file is invalid; the message names the file and the key path."""


class _UnusableError(WebConfigError):
    """A file or setting of ``tls_server_config`` that the ssl module refuses."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: cannot be used: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class TlsServerConfig:
    """``tls_server_config``, validated; :meth:`context` builds the server's SSL context."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()

    def context(self) -> ssl.SSLContext:
        """A server-side context; raises :class:`WebConfigError` if a file cannot be used."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.maximum_version = TLS_VERSIONS[self.max_version]
        _load(
            "tls_server_config.cert_file",
            lambda: context.load_cert_chain(self.cert_file, self.key_file),
        )
        if self.client_auth_type in _VERIFYING_AUTH:
            context.verify_mode = _VERIFYING_AUTH[self.client_auth_type]
            _load(
                "tls_server_config.client_ca_file",
                lambda: context.load_verify_locations(cafile=self.client_ca_file),
            )
        openssl_names = [
            CIPHER_SUITES[name] for name in self.cipher_suites if name in CIPHER_SUITES
        ]
        if openssl_names:
            _load(
                "tls_server_config.cipher_suites",
                lambda: context.set_ciphers(":".join(openssl_names)),
            )
        if self.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        if self.curve_preferences:
            # Python's ssl sets one ECDH curve; the most preferred one is used.
            _load(
                "tls_server_config.curve_preferences",
                lambda: context.set_ecdh_curve(CURVES[self.curve_preferences[0]]),
            )
        return context

    def allows_peer(self, certificate: Mapping[str, Any] | None) -> bool:
        """Whether a verified client certificate carries one of ``client_allowed_sans``."""
        if not self.client_allowed_sans:
            return True
        if certificate is None:
            return False
        names = {value for _kind, value in certificate.get("subjectAltName", ())}
        return any(san in names for san in self.client_allowed_sans)


def _load(path: str, action: Callable[[], object]) -> None:
    try:
        action()
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _UnusableError(path, reason) from None


@dataclass(frozen=True)
class WebConfig:
    """The whole file: TLS (optional), extra response headers, basic-auth users and their bcrypt
    hashes."""

    tls: TlsServerConfig | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading the file


def load_web_config(path: Path) -> WebConfig:
    """Read and validate a web configuration file; paths in it are relative to its folder."""
    try:
        text = read_file_capped(path, "web configuration", WebConfigError).decode("utf-8-sig")
    except OSError as exc:
        raise WebConfigError(f"{path}: cannot read the web configuration: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise WebConfigError(f"{path}: the web configuration is not UTF-8 text") from None
    return parse_web_config(text, base_dir=path.parent, source=str(path))


def parse_web_config(text: str, base_dir: Path, source: str = _UNNAMED_SOURCE) -> WebConfig:
    """Validate web configuration text; errors name the key path (``tls_server_config.key_file``)
    after ``source``, the file, when one is named."""
    ctx = Context(
        None if source == _UNNAMED_SOURCE else source,
        base_dir=base_dir,
        error=WebConfigError,
        document="the web configuration",
    )
    document = read_yaml(text, source, WebConfigError)
    if document is None:
        return WebConfig()
    top = _given(mapping(ctx, "", document, TOP_LEVEL_KEYS))
    http = Section(
        ctx,
        "http_server_config",
        _given(mapping(ctx, "http_server_config", top.get("http_server_config", {}), HTTP_KEYS)),
    )
    tls = top.get("tls_server_config")
    tls_config = None if tls is None else _tls(ctx, tls)
    http.get("http2", boolean, False)  # accepted and checked; this server speaks HTTP/1.1
    return WebConfig(
        tls=tls_config,
        headers=MappingProxyType(http.get("headers", _headers, {})),
        basic_auth_users=MappingProxyType(_users(ctx, top.get("basic_auth_users", {}))),
    )


def _given(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a mapping that have a value: an empty one (``key:`` and nothing after it) means
    the default, as if the key were not there, except for a boolean, which is true or false."""
    return {key: value for key, value in raw.items() if value is not None or key in _BOOLEAN_KEYS}


def _tls(ctx: Context, value: object) -> TlsServerConfig:
    path = "tls_server_config"
    raw = mapping(ctx, path, value, TLS_KEYS)
    for key in ("cert_file", "key_file"):
        if key not in raw:
            ctx.fail(join(path, key), "required when TLS is configured")
    section = Section(ctx, path, _given(raw))
    auth = section.get("client_auth_type", _client_auth, "NoClientCert")
    ca_given = "client_ca_file" in section.raw
    if auth in _VERIFYING_AUTH and not ca_given:
        ctx.fail(join(path, "client_ca_file"), f"required with client_auth_type {auth}")
    if ca_given and auth not in _VERIFYING_AUTH:
        ctx.fail(
            join(path, "client_ca_file"),
            "client CAs are configured without a client auth policy that verifies them; set "
            "client_auth_type to RequireAndVerifyClientCert or VerifyClientCertIfGiven",
        )
    sans: tuple[str, ...] = section.get("client_allowed_sans", _strings, ())
    if sans and auth != "RequireAndVerifyClientCert":
        ctx.fail(
            join(path, "client_allowed_sans"), "needs client_auth_type RequireAndVerifyClientCert"
        )
    config = TlsServerConfig(
        cert_file=_file(ctx, join(path, "cert_file"), raw["cert_file"]),
        key_file=_file(ctx, join(path, "key_file"), raw["key_file"]),
        client_auth_type=auth,
        client_ca_file=section.get("client_ca_file", _file, None),
        client_allowed_sans=sans,
        min_version=section.get("min_version", _tls_version, "TLS12"),
        max_version=section.get("max_version", _tls_version, "TLS13"),
        cipher_suites=section.get("cipher_suites", _cipher_suites, ()),
        prefer_server_cipher_suites=section.get("prefer_server_cipher_suites", boolean, True),
        curve_preferences=section.get("curve_preferences", _curves, ()),
    )
    if TLS_VERSIONS[config.min_version] > TLS_VERSIONS[config.max_version]:
        ctx.fail(
            join(path, "min_version"),
            f"{config.min_version} is above max_version {config.max_version}",
        )
    try:
        config.context()  # refuse unusable certificates, keys and CAs at start-up
    except _UnusableError as exc:
        ctx.fail(exc.path, f"cannot be used: {exc.reason}")
    return config


def _file(ctx: Context, path: str, value: object) -> Path:
    """An existing file; a relative name is relative to the web configuration's folder (as in
    exporter-toolkit, ``~`` is not expanded)."""
    file = Path(string(ctx, path, value))
    if not file.is_absolute() and ctx.base_dir is not None:
        file = ctx.base_dir / file
    if not file.is_file():
        ctx.fail(path, f"{file} is not a readable file")
    return file


def _strings(ctx: Context, path: str, value: object) -> tuple[str, ...]:
    return list_of(ctx, path, value, string)


def _client_auth(ctx: Context, path: str, value: object) -> str:
    auth = choice(ctx, path, value, CLIENT_AUTH_TYPES)
    if auth == "RequireAnyClientCert":
        ctx.fail(
            path,
            "RequireAnyClientCert (a certificate demanded but not verified) is not possible with "
            "Python's ssl module; use RequireAndVerifyClientCert with client_ca_file",
        )
    return "NoClientCert" if auth == "RequestClientCert" else auth


def _tls_version(ctx: Context, path: str, value: object) -> str:
    return choice(ctx, path, value, list(TLS_VERSIONS))


def _cipher_suites(ctx: Context, path: str, value: object) -> tuple[str, ...]:
    return list_of(ctx, path, value, _cipher_suite)


def _cipher_suite(ctx: Context, path: str, value: object) -> str:
    # The names differ in few letters (AES_128/AES_256, RSA/ECDSA): only a typo gets a suggestion.
    return choice(
        ctx,
        path,
        value,
        [*CIPHER_SUITES, *TLS13_SUITES],
        kind="a supported cipher suite",
        cutoff=0.9,
    )


def _curves(ctx: Context, path: str, value: object) -> tuple[str, ...]:
    return list_of(ctx, path, value, _curve)


def _curve(ctx: Context, path: str, value: object) -> str:
    return choice(ctx, path, value, list(CURVES))


def _headers(ctx: Context, path: str, value: object) -> dict[str, str]:
    raw = mapping(ctx, path, value, ALLOWED_HEADERS, unknown="not a header that may be set")
    return {name: string(ctx, join(path, name), text) for name, text in raw.items()}


def _users(ctx: Context, value: object) -> dict[str, bytes]:
    path = "basic_auth_users"
    raw = mapping(ctx, path, value, None)
    users = {}
    for name, hashed in raw.items():
        # A name is not quoted here: "user:password" written as a name would show a password.
        if name == "":
            ctx.fail(path, f"the user name{key_line(raw, name)} is empty")
        if ":" in name:
            ctx.fail(
                path,
                f"the user name{key_line(raw, name)} contains ':', which basic auth cannot carry "
                "in a user name",
            )
        user_path = join(path, name)
        text = string(ctx, user_path, hashed)
        # Never quote the value: a plain-text password put here by mistake must not be printed.
        if not text.startswith(("$2a$", "$2b$", "$2y$")) or len(text) != 60:
            ctx.fail(user_path, "expected a bcrypt hash ($2b$..., 60 characters)")
        users[name] = text.encode("ascii", "replace")
    if users:
        _require_bcrypt(ctx)
    return users


def _require_bcrypt(ctx: Context) -> None:
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        ctx.fail(
            "basic_auth_users",
            "checking bcrypt hashes needs the bcrypt package; install ams-exporter[bcrypt] "
            "(pip install 'ams-exporter[bcrypt]')",
        )
