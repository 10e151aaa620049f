"""One ``requests`` session per account and upstream API, with the guarantees every call needs.

:class:`UpstreamSession` pins TLS verification to the account's CA on every request (the
``REQUESTS_CA_BUNDLE`` environment variable would otherwise override ``Session.verify``), never
follows redirects (requests drops ``Authorization`` on a cross-host redirect, and AMS's 301 must be
handled by the client), bounds every call by a timeout and by the caller's :class:`Deadline`,
reads bodies under a size cap while watching the deadline, and counts each request for
``ams_api_requests_total``. MSAL uses the ``aad`` session as its ``http_client``; since MSAL
cannot pass a deadline, :meth:`UpstreamSession.bounded_by` sets one for the calling thread.

A socket timeout bounds one read, not an exchange: a server that sends its status line and
headers a byte at a time restarts it with every byte. So every request is also watched by
:class:`_Watchdog`, which shuts the request's socket down when the deadline passes, whatever the
exchange is doing (TLS handshake, headers, body): the blocked read returns at once, and the
thread, its pooled connection and any lock the caller holds are freed with the collection.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
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


class _Exchange:
    """The sockets one request uses, shut down together if its deadline passes first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.expired = False

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
            if self.expired:
                _shut(sock)

    def detach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    """Shut ``sock`` down for both directions: a read blocked on it returns at once."""
    with contextlib.suppress(OSError):  # already closed or never connected: nothing waits on it
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that expires exchanges at their deadlines (a heap, earliest first)."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._heap: list[tuple[float, int, _Exchange]] = []
        self._order = itertools.count()
        self._live: set[int] = set()
        self._thread: threading.Thread | None = None

    def watch(self, at: float, exchange: _Exchange) -> int:
        """Expire ``exchange`` at monotonic time ``at`` unless :meth:`cancel` comes first."""
        with self._wake:
            ticket = next(self._order)
            heapq.heappush(self._heap, (at, ticket, exchange))
            self._live.add(ticket)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="upstream-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()
            return ticket

    def cancel(self, ticket: int) -> None:
        with self._wake:
            self._live.discard(ticket)

    def _run(self) -> None:
        while True:
            with self._wake:
                due = self._due()
                if due is None:
                    self._wake.wait(self._pause())
                    continue
            due.expire()

    def _due(self) -> _Exchange | None:
        """The next exchange to expire now, dropping cancelled entries (lock held)."""
        while self._heap:
            at, ticket, exchange = self._heap[0]
            if ticket not in self._live:
                heapq.heappop(self._heap)
                continue
            if at > time.monotonic():
                return None
            heapq.heappop(self._heap)
            self._live.discard(ticket)
            return exchange
        return None

    def _pause(self) -> float | None:
        return max(0.0, self._heap[0][0] - time.monotonic()) if self._heap else None


_WATCHDOG = _Watchdog()
_current = threading.local()


class _WatchedConnection(HTTPConnection):
    """A connection whose socket the current thread's exchange can shut down.

    It keeps a duplicate of its socket's descriptor: TLS wraps the socket into a new object
    (detaching the original) during the handshake, and the duplicate reaches the connection
    through both, without ever naming a descriptor that may have been reused.
    """

    _watch_handle: socket.socket | None = None
    _watch_exchange: _Exchange | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        try:
            self._watch_handle = sock.dup()
        except OSError:
            self._watch_handle = None  # out of descriptors: the socket timeout still applies
        self._watch_by_current()
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._watch_by_current()
        super().request(*args, **kwargs)

    def close(self) -> None:
        handle, exchange = self._watch_handle, self._watch_exchange
        self._watch_handle = self._watch_exchange = None
        super().close()
        if handle is not None:
            if exchange is not None:
                exchange.detach(handle)
            handle.close()

    def _watch_by_current(self) -> None:
        exchange: _Exchange | None = getattr(_current, "exchange", None)
        if exchange is None or self._watch_handle is None:
            return
        if self._watch_exchange is not None and self._watch_exchange is not exchange:
            self._watch_exchange.detach(self._watch_handle)
        self._watch_exchange = exchange
        exchange.attach(self._watch_handle)


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections the watchdog can shut down."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


@contextmanager
def _watched(deadline: Deadline | None) -> Iterator[_Exchange | None]:
    """Run the block as one exchange of this thread, expired at ``deadline``."""
    if deadline is None:
        yield None
        return
    exchange = _Exchange()
    previous = getattr(_current, "exchange", None)
    _current.exchange = exchange
    ticket = _WATCHDOG.watch(deadline.at, exchange)
    try:
        yield exchange
    finally:
        _WATCHDOG.cancel(ticket)
        _current.exchange = previous


class RequestCounter:
    """Counts upstream requests by ``(account, api, code)``; safe to share between threads.

    ``code`` is the HTTP status as a string, or ``"error"`` when no response arrived.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._accounts: frozenset[str] | None = None  # None: every account counts

    def add(self, account: str, api: str, code: str) -> None:
        """Count one request (of an account still counted, see :meth:`count_only`)."""
        key = (account, api, code)
        with self._lock:
            if self._accounts is None or account in self._accounts:
                self._counts[key] = self._counts.get(key, 0) + 1

    def count_only(self, accounts: Iterable[str]) -> None:
        """Count only ``accounts`` from now on and drop the others' counts, with their series.

        After a reload: a collection of a removed account that is still under way counts nothing.
        """
        with self._lock:
            self._accounts = frozenset(accounts)
            self._counts = {k: n for k, n in self._counts.items() if k[0] in self._accounts}

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
        adapter = _WatchedAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
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
        with _watched(deadline) as exchange:
            try:
                response = super().request(method, url, stream=True, **kwargs)
            except requests.RequestException:
                self._counter.add(self.account, self.api, "error")
                if exchange is not None and exchange.expired:
                    raise self._outlived(url) from None
                raise
            self._counter.add(self.account, self.api, str(response.status_code))
            if not stream:
                try:
                    read_body(response, deadline, self.max_body_bytes)
                except DeadlineExceeded as exc:
                    raise DeadlineExceeded(f"account {self.account}: {exc}") from None
                except requests.RequestException:
                    if exchange is not None and exchange.expired:
                        raise self._outlived(url) from None
                    raise
        return response

    def _outlived(self, url: str | bytes) -> DeadlineExceeded:
        path = (url.decode("utf-8", "replace") if isinstance(url, bytes) else url).split("?")[0]
        return DeadlineExceeded(
            f"account {self.account}: the exchange with {self.api.upper()} ({path}) "
            "outlived the deadline"
        )

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
