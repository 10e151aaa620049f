"""One ``requests`` session per account and upstream API, with the guarantees every call needs.

:class:`UpstreamSession` pins TLS verification to the account's CA on every request (the
``REQUESTS_CA_BUNDLE`` environment variable would otherwise override ``Session.verify``), never
follows redirects (requests drops ``Authorization`` on a cross-host redirect, and AMS's 301 must be
handled by the client), bounds every call by a timeout and by the caller's :class:`Deadline`,
reads bodies under a size cap while watching the deadline, and counts each request for
``ams_api_requests_total``. MSAL uses the ``aad`` session as its ``http_client``; since MSAL
cannot pass a deadline, :meth:`UpstreamSession.bounded_by` sets one for the calling thread.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from exporter.deadline import Deadline
from exporter.errors import DeadlineExceeded

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_CHUNK_BYTES = 256 * 1024


class BodyTooLarge(Exception):
    """A response body exceeded the session's size cap; the connection was dropped."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"the response body of {url} exceeds {limit} bytes")
        self.limit = limit


class RequestCounter:
    """Counts upstream requests by ``(account, api, code)``; safe to share between threads.

    ``code`` is the HTTP status as a string, or ``"error"`` when no response arrived.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}

    def add(self, account: str, api: str, code: str) -> None:
        """Count one request."""
        key = (account, api, code)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        """A copy of the counts so far."""
        with self._lock:
            return dict(self._counts)


class UpstreamSession(requests.Session):
    """The HTTP session toward one upstream (``api`` is ``"ams"`` or ``"aad"``) of one account."""

    def __init__(  # noqa: PLR0917 - the documented interface takes these positionally
        self,
        account: str,
        api: str,
        counter: RequestCounter,
        ca_file: Path | None,
        default_timeout: float,
        user_agent: str,
        pool_size: int = 16,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__()
        self.account = account
        self.api = api
        self._counter = counter
        self._verify: str | bool = str(ca_file) if ca_file is not None else True
        self.verify = self._verify
        self._default_timeout = default_timeout
        self.max_body_bytes = max_body_bytes
        self.headers["User-Agent"] = user_agent
        self._local = threading.local()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.mount("https://", adapter)
        # Managed identity endpoints (App Service, IMDS) are plain HTTP on a local address.
        self.mount("http://", adapter)

    @contextmanager
    def bounded_by(self, deadline: Deadline) -> Iterator[None]:
        """Bound every request this thread makes inside the block by ``deadline``."""
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = deadline
        try:
            yield
        finally:
            self._local.deadline = previous

    def request(  # type: ignore[override]
        self, method: str | bytes, url: str | bytes, **kwargs: Any
    ) -> requests.Response:
        """Send one request: verified, bounded, not redirected, counted.

        Extra keyword ``deadline`` bounds the call (else the one set by :meth:`bounded_by`).
        Unless ``stream=True``, the body is read here, under the size cap and the deadline;
        :class:`BodyTooLarge` or :class:`DeadlineExceeded` say why it could not be.
        """
        deadline: Deadline | None = kwargs.pop("deadline", None) or getattr(
            self._local, "deadline", None
        )
        cap = kwargs.pop("timeout", None) or self._default_timeout
        if isinstance(cap, tuple):
            cap = max(part for part in cap if part is not None)
        kwargs["timeout"] = self._timeout(deadline, cap)
        kwargs["verify"] = self._verify
        kwargs.setdefault("allow_redirects", False)
        stream = bool(kwargs.pop("stream", False))
        try:
            response = super().request(method, url, stream=True, **kwargs)
        except requests.RequestException:
            self._counter.add(self.account, self.api, "error")
            raise
        self._counter.add(self.account, self.api, str(response.status_code))
        if not stream:
            try:
                read_body(response, deadline, self.max_body_bytes)
            except DeadlineExceeded as exc:
                raise DeadlineExceeded(f"account {self.account}: {exc}") from None
        return response

    def _timeout(self, deadline: Deadline | None, cap: float) -> float:
        if deadline is None:
            return cap
        try:
            return deadline.timeout(cap)
        except DeadlineExceeded:
            raise DeadlineExceeded(
                f"account {self.account}: no time left for a request to {self.api.upper()}"
            ) from None


def read_body(response: requests.Response, deadline: Deadline | None, limit: int) -> bytes:
    """Read a streamed body into ``response.content``, at most ``limit`` bytes (decoded).

    Reads whatever arrives (``read1``) so that a body sent a few bytes at a time cannot outlive
    the deadline: the deadline is checked between reads and each read waits at most the time
    left. On any failure the connection is closed rather than returned to the pool.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if deadline is not None:
                _limit_socket_wait(response, deadline)
            chunk = _read_some(response, deadline)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(_path(response), limit)
            chunks.append(chunk)
    except BaseException:
        response.close()
        raise
    body = b"".join(chunks)
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]
    response.raw.release_conn()
    return body


def _read_some(response: requests.Response, deadline: Deadline | None) -> bytes:
    """One read of whatever has arrived, with urllib3's errors turned into requests' ones."""
    try:
        chunk: bytes = response.raw.read1(_CHUNK_BYTES, decode_content=True)
    except ReadTimeoutError as exc:
        if deadline is not None and deadline.expired():
            raise DeadlineExceeded(
                f"reading the response of {_path(response)} outlived the deadline"
            ) from None
        raise requests.exceptions.ReadTimeout(str(exc), response=response) from None
    except DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(str(exc), response=response) from None
    except (ProtocolError, urllib3.exceptions.SSLError, OSError) as exc:
        raise requests.exceptions.ConnectionError(str(exc), response=response) from None
    return chunk


def transport_reason(exc: BaseException) -> str:
    """A short, secret-free reason for a failed request: "timed out", "ConnectionRefusedError"."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    root = exc
    for _ in range(10):
        nxt = root.__cause__ or root.__context__
        if nxt is None:
            break
        root = nxt
    if root is exc:
        return type(exc).__name__
    return f"{type(exc).__name__}: {type(root).__name__}"


def _limit_socket_wait(response: requests.Response, deadline: Deadline) -> None:
    left = deadline.remaining()
    if left <= 0.0:
        raise DeadlineExceeded(f"reading the response of {_path(response)} outlived the deadline")
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            sock.settimeout(min(left, sock.gettimeout() or left))
        except OSError:
            log.debug("could not shorten the socket timeout", exc_info=True)


def _path(response: requests.Response) -> str:
    url = response.url or ""
    return url.split("?", 1)[0]
