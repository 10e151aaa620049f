"""The web configuration enforced: on every connection the TLS handshake and the client's SANs,
on every request basic auth and the extra response headers.

:mod:`exporter.web.webconfig` reads the file and builds the TLS context; what runs while serving
is here.
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
from typing import Any

from exporter.web.webconfig import TlsServerConfig, WebConfig

__all__ = ["HANDSHAKE_TIMEOUT", "BasicAuth", "Handshake", "ProtectedApp", "accept_tls"]

log = logging.getLogger(__name__)

# Successful basic-auth checks remembered, so that a scrape does not pay a bcrypt hash each time.
_AUTH_CACHE_SIZE = 256
# Seconds a client has to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0


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
        config: WebConfig,
    ) -> None:
        self._app = app
        self._auth = BasicAuth(config.basic_auth_users) if config.basic_auth_users else None
        self._headers = list(config.headers.items())

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
