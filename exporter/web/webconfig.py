"""Protection of the exporter's own HTTP endpoint: the exporter-toolkit ``web-config.yml`` format.

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
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import logging
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter.config.validate import type_name
from exporter.config.yamlio import read_file_capped, read_yaml
from exporter.errors import ConfigError

log = logging.getLogger(__name__)

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
# Successful basic-auth checks remembered, so that a scrape does not pay a bcrypt hash each time.
_AUTH_CACHE_SIZE = 256
# Seconds a client has to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0


class WebConfigError(ConfigError):
    """The web configuration file is invalid; the message names the file and the key path."""


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


def _load(key: str, action: Callable[[], object]) -> None:
    try:
        action()
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WebConfigError(f"{key}: cannot be used: {reason}") from None


@dataclass(frozen=True)
class WebConfig:
    """The whole file: TLS (optional), extra response headers, basic-auth users."""

    tls: TlsServerConfig | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict)

    def authenticator(self) -> BasicAuth | None:
        """The basic-auth check, or ``None`` when the file has no users."""
        return BasicAuth(self.basic_auth_users) if self.basic_auth_users else None


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
    try:
        return parse_web_config(text, base_dir=path.parent, source=str(path))
    except WebConfigError as exc:
        raise WebConfigError(f"{path}: {exc}") from None


def parse_web_config(text: str, base_dir: Path, source: str = "<web config>") -> WebConfig:
    """Validate web configuration text; errors name the key path (``tls_server_config.key_file``)."""
    try:
        document = read_yaml(text, source)
    except ConfigError as exc:
        raise WebConfigError(str(exc)) from None
    if document is None:
        return WebConfig()
    top = _mapping(document, "the web configuration", TOP_LEVEL_KEYS)
    tls = top.get("tls_server_config")
    http = _mapping(top.get("http_server_config") or {}, "http_server_config", HTTP_KEYS)
    return WebConfig(
        tls=None if tls is None else _tls(tls, base_dir),
        headers=MappingProxyType(_headers(http)),
        basic_auth_users=MappingProxyType(_users(top.get("basic_auth_users"))),
    )


def _mapping(value: object, where: str, known: Iterable[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping, got {type_name(value)}")
    allowed = tuple(known)
    for key in value:
        if key not in allowed:
            prefix = "" if where == "the web configuration" else f"{where}."
            raise WebConfigError(
                f"{prefix}{key}: unknown key; expected one of {', '.join(allowed)}"
            )
    return value


def _string(value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{key}: expected a non-empty string, got {type_name(value)}")
    return value


def _strings(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WebConfigError(f"{key}: expected a list, got {type_name(value)}")
    return tuple(_string(item, f"{key}[{index}]") for index, item in enumerate(value))


def _file(value: object, key: str, base_dir: Path) -> Path:
    path = Path(_string(value, key))
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise WebConfigError(f"{key}: {path} is not a readable file")
    return path


def _choice(value: object, key: str, choices: Iterable[str], default: str) -> str:
    if value is None:
        return default
    allowed = tuple(choices)
    text = _string(value, key)
    if text not in allowed:
        raise WebConfigError(f"{key}: {text!r} is not one of {', '.join(allowed)}")
    return text


def _tls(value: object, base_dir: Path) -> TlsServerConfig:
    raw = _mapping(value, "tls_server_config", TLS_KEYS)
    key = "tls_server_config"
    for required in ("cert_file", "key_file"):
        if required not in raw:
            raise WebConfigError(f"{key}.{required}: required when TLS is configured")
    auth = _client_auth(raw)
    ca_given = raw.get("client_ca_file") is not None
    if auth in _VERIFYING_AUTH and not ca_given:
        raise WebConfigError(f"{key}.client_ca_file: required with client_auth_type {auth}")
    if ca_given and auth not in _VERIFYING_AUTH:
        raise WebConfigError(
            f"{key}.client_ca_file: client CAs are configured without a client auth policy that "
            "verifies them; set client_auth_type to RequireAndVerifyClientCert or "
            "VerifyClientCertIfGiven"
        )
    sans = _strings(raw.get("client_allowed_sans"), f"{key}.client_allowed_sans")
    if sans and auth != "RequireAndVerifyClientCert":
        raise WebConfigError(
            f"{key}.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert"
        )
    config = TlsServerConfig(
        cert_file=_file(raw["cert_file"], f"{key}.cert_file", base_dir),
        key_file=_file(raw["key_file"], f"{key}.key_file", base_dir),
        client_auth_type=auth,
        client_ca_file=_file(raw["client_ca_file"], f"{key}.client_ca_file", base_dir)
        if ca_given
        else None,
        client_allowed_sans=sans,
        min_version=_choice(raw.get("min_version"), f"{key}.min_version", TLS_VERSIONS, "TLS12"),
        max_version=_choice(raw.get("max_version"), f"{key}.max_version", TLS_VERSIONS, "TLS13"),
        cipher_suites=_cipher_suites(raw.get("cipher_suites")),
        prefer_server_cipher_suites=_boolean(
            raw.get("prefer_server_cipher_suites", True), f"{key}.prefer_server_cipher_suites"
        ),
        curve_preferences=_curves(raw.get("curve_preferences")),
    )
    if TLS_VERSIONS[config.min_version] > TLS_VERSIONS[config.max_version]:
        raise WebConfigError(
            f"{key}.min_version: {config.min_version} is above max_version {config.max_version}"
        )
    config.context()  # refuse unusable certificates, keys and CAs at start-up
    return config


def _client_auth(raw: Mapping[str, Any]) -> str:
    key = "tls_server_config.client_auth_type"
    auth = _choice(raw.get("client_auth_type"), key, CLIENT_AUTH_TYPES, "NoClientCert")
    if auth == "RequireAnyClientCert":
        raise WebConfigError(
            f"{key}: RequireAnyClientCert (a certificate demanded but not verified) is not "
            "possible with Python's ssl module; use RequireAndVerifyClientCert with client_ca_file"
        )
    return "NoClientCert" if auth == "RequestClientCert" else auth


def _boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise WebConfigError(f"{key}: expected true or false, got {type_name(value)}")
    return value


def _cipher_suites(value: object) -> tuple[str, ...]:
    key = "tls_server_config.cipher_suites"
    names = _strings(value, key)
    for index, name in enumerate(names):
        if name not in CIPHER_SUITES and name not in TLS13_SUITES:
            raise WebConfigError(
                f"{key}[{index}]: unknown or unsupported cipher suite {name!r}; supported: "
                + ", ".join([*CIPHER_SUITES, *TLS13_SUITES])
            )
    return names


def _curves(value: object) -> tuple[str, ...]:
    key = "tls_server_config.curve_preferences"
    names = _strings(value, key)
    for index, name in enumerate(names):
        if name not in CURVES:
            raise WebConfigError(
                f"{key}[{index}]: unknown curve {name!r}; expected one of {', '.join(CURVES)}"
            )
    return names


def _headers(http: Mapping[str, Any]) -> dict[str, str]:
    if "http2" in http:
        _boolean(http["http2"], "http_server_config.http2")
    raw = http.get("headers") or {}
    if not isinstance(raw, dict):
        raise WebConfigError(
            f"http_server_config.headers: expected a mapping, got {type_name(raw)}"
        )
    headers = {}
    for name, value in raw.items():
        if name not in ALLOWED_HEADERS:
            raise WebConfigError(
                f"http_server_config.headers.{name}: not a header that may be set; expected one "
                f"of {', '.join(ALLOWED_HEADERS)}"
            )
        text = _string(value, f"http_server_config.headers.{name}")
        if any(ord(char) < 32 for char in text):
            raise WebConfigError(f"http_server_config.headers.{name}: control characters")
        headers[name] = text
    return headers


def _users(value: object) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"basic_auth_users: expected a mapping, got {type_name(value)}")
    users = {}
    for name, hashed in value.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise WebConfigError(f"basic_auth_users: {name!r} is not a valid user name")
        text = _string(hashed, f"basic_auth_users.{name}")
        # Never quote the value: a plain-text password put here by mistake must not be printed.
        if not text.startswith(("$2a$", "$2b$", "$2y$")) or len(text) != 60:
            raise WebConfigError(
                f"basic_auth_users.{name}: expected a bcrypt hash ($2b$..., 60 characters)"
            )
        users[name] = text.encode("ascii", "replace")
    if users:
        _require_bcrypt()
    return users


def _require_bcrypt() -> None:
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        raise WebConfigError(
            "basic_auth_users: checking bcrypt hashes needs the bcrypt package; install "
            "ams-exporter[bcrypt] (pip install 'ams-exporter[bcrypt]')"
        ) from None


# ---------------------------------------------------------------------------------------------
# Checking requests


class BasicAuth:
    """Checks an ``Authorization: Basic`` header against bcrypt hashes.

    bcrypt is slow on purpose (tens of milliseconds); successful checks are remembered under a
    SHA-256 of user, password and hash so that every scrape does not pay it again. An unknown
    user is checked against a fixed hash so that timing does not tell which users exist.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        import bcrypt

        self._bcrypt = bcrypt
        self._users = dict(users)
        # The dummy costs as much as the users' hashes, so an unknown user takes as long.
        rounds = max(
            (int(hashed[4:6]) for hashed in users.values() if hashed[4:6].isdigit()), default=10
        )
        self._dummy = bcrypt.hashpw(
            b"not a password", bcrypt.gensalt(rounds=min(max(rounds, 4), 16))
        )
        self._good: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        """Whether the ``Authorization`` header value names a user with the right password."""
        credentials = _basic_credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password, hashed or b""))).digest()
        with self._lock:
            if hashed is not None and key in self._good:
                return True
        try:
            ok = self._bcrypt.checkpw(password, hashed or self._dummy) and hashed is not None
        except ValueError:  # a hash bcrypt cannot read; validated at load, so unexpected
            return False
        if ok:
            with self._lock:
                if len(self._good) >= _AUTH_CACHE_SIZE:
                    self._good.clear()
                self._good[key] = None
        return ok


def _basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


StartResponse = Callable[..., Any]


class ProtectedApp:
    """WSGI middleware: basic auth on every path (as exporter-toolkit does) and extra headers.

    ``/healthz`` and ``/readyz`` are protected too: a Kubernetes probe sends the header with
    ``httpHeaders``. A 401 carries ``WWW-Authenticate`` and nothing about the configured users.
    """

    def __init__(
        self,
        app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
        auth: BasicAuth | None,
        headers: Mapping[str, str],
    ) -> None:
        self._app = app
        self._auth = auth
        self._headers = list(headers.items())

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._auth is not None and not self._auth.check(environ.get("HTTP_AUTHORIZATION")):
            body = b"Unauthorized\n"
            start_response(
                "401 Unauthorized",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("WWW-Authenticate", 'Basic realm="ams-exporter", charset="UTF-8"'),
                    ("Content-Length", str(len(body))),
                    *self._headers,
                ],
            )
            return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]

        def with_headers(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [*headers, *self._headers], *exc)

        return self._app(environ, with_headers)


class Handshake(enum.Enum):
    """Where the server side of a TLS handshake stands after a step of :func:`accept_tls`."""

    DONE = "done"
    WANT_READ = "want read"
    WANT_WRITE = "want write"
    REFUSED = "refused"


def accept_tls(config: TlsServerConfig, secured: ssl.SSLSocket, peer: object) -> Handshake:
    """One step of the server side of the TLS handshake on a non-blocking connection.

    ``secured`` is an accepted, non-blocking socket wrapped by ``config.context()`` without the
    handshake (``do_handshake_on_connect=False``); the caller steps again when the socket is
    readable or writable as asked, and bounds the whole (``HANDSHAKE_TIMEOUT``). A completed
    handshake has a client certificate verified by the context; the SANs are checked here.
    ``REFUSED`` (plain HTTP, no or an untrusted certificate, a SAN not allowed) goes to the
    debug log with its reason, and the caller closes the connection.
    """
    try:
        secured.do_handshake()
    except ssl.SSLWantReadError:
        return Handshake.WANT_READ
    except ssl.SSLWantWriteError:
        return Handshake.WANT_WRITE
    except (ssl.SSLError, OSError) as exc:
        log.debug("TLS handshake with %s failed: %s", peer, exc)
        return Handshake.REFUSED
    if not config.allows_peer(secured.getpeercert()):
        log.debug("TLS client %s refused: no allowed subject alternative name", peer)
        return Handshake.REFUSED
    return Handshake.DONE
