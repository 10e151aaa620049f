"""The exporter's own HTTP/1.1 server: one event loop holds the connections, a few workers answer.

With a thread per connection, anyone who can reach the port costs the process a thread for as long
as they like: open connections and send nothing, send a request a byte at a time (slowloris), start
a TLS handshake and stall, or ask for ``/metrics`` and never read the answer. Here a connection
costs a buffer and a selector registration, never a thread, until its request is complete:

- One loop thread (``selectors``; epoll on Linux) owns every socket, the listening sockets of
  every listen address included (``exporter/web/listen.py``). It accepts, steps TLS
  handshakes without blocking, reads each request until its head (and a small body) is complete,
  and writes the answers without blocking, so that a client that does not read holds only the
  buffer of its answer.
- A complete request goes to one of ``WORKERS`` threads, which run the WSGI app: a scrape waits
  for a collection against AMS, seconds that must not stall the loop. The pool bounds the app
  calls in progress; an answer, whole bytes, goes back to the loop to be written.

Every limit closes the connection (the debug log says why; nothing goes to stderr):

- ``max_connections`` open at once. One more is accepted and closed at once rather than left in
  the kernel's backlog: the client learns it immediately instead of timing out, and the process
  never holds more file descriptors than the cap (plus its own), so ``accept`` cannot run out.
- ``header_timeout`` (10 s, like Go's ``ReadHeaderTimeout``) for a request's head and body, from
  the accept or, on a kept-alive connection, from the request's first byte; a TLS handshake has
  ``HANDSHAKE_TIMEOUT`` (or ``header_timeout``, if shorter) from the accept.
- ``idle_timeout`` (60 s) between two requests on a kept-alive connection; ``write_timeout``
  (60 s) to take the whole answer.
- A request head over ``MAX_HEAD_BYTES`` gets 431, or 414 while its request line is not complete;
  more than ``MAX_HEADERS`` fields 431; a body over ``MAX_BODY_BYTES`` 413; ``Transfer-Encoding``
  411 (chunked; a ``Content-Length`` is required) or 501; anything malformed 400; an HTTP
  version other than 1.0 and 1.1 505.

After an answer that closes, the connection is half-closed and what the client still sends is
read and dropped for a moment (``LINGER_TIMEOUT``), so that the answer is not lost to a reset.

Well-kept WSGI servers were weighed first: waitress holds connections in a loop too, but has no
TLS; cheroot runs the TLS handshake on its accept thread (one stalled handshake delays every new
connection) and reads a request in a worker with a timeout per read, so a client that drips its
request holds a worker.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import io
import logging
import math
import queue
import re
import resource
import selectors
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

from exporter.web.listen import open_listeners
from exporter.web.protect import HANDSHAKE_TIMEOUT, Handshake, accept_tls
from exporter.web.webconfig import TlsServerConfig

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

WORKERS = 8
MAX_CONNECTIONS = 1024
HEADER_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0
WRITE_TIMEOUT = 60.0
LINGER_TIMEOUT = 2.0
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
# The app takes no request bodies (anything but GET and HEAD is 405); a small one is read first.
MAX_BODY_BYTES = 16 * 1024
# A request is read at most this far ahead: the longest request that can be answered (a head, the
# blank line that ends it, a body); whatever is longer is refused once this much is in.
_MAX_REQUEST_BYTES = MAX_HEAD_BYTES + 4 + MAX_BODY_BYTES
_READ_SIZE = 64 * 1024
_WRITE_SIZE = 256 * 1024
# Accepts per wake-up of the loop, so that a flood of connections does not starve the others.
_ACCEPTS_PER_EVENT = 64
# What a closing connection may still send before it is closed without waiting for its end.
_LINGER_BYTES = 1024 * 1024
# When the process has no file descriptor left, accepting pauses this long (the loop would spin).
_ACCEPT_PAUSE = 0.1
_FD_WARNING_INTERVAL = 60.0
# How often a graceful shutdown looks whether the answers it waits for are written.
_DRAIN_POLL = 0.05
# Deadlines are enforced this late at most, so that connections opened together expire in one
# pass over the connections instead of one pass each.
_EXPIRY_SLACK = 0.05
# File descriptors the process needs besides its connections: listener, waker, AMS pools, logs.
_OWN_FILES = 64

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_ABSOLUTE_TARGET = re.compile(rb"https?://[^/?#]*", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
# Control characters other than HTAB have no place in a field value (RFC 9110, section 5.5).
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f]")


# The WSGI environ key of a request's arrival, ``time.monotonic()`` when its last byte was read.
RECEIVED_KEY = "ams_exporter.received"


@dataclass(frozen=True)
class Limits:
    """What one connection may cost; see the module docstring."""

    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT
    workers: int = WORKERS

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.workers < 1:
            raise ValueError("max_connections and workers must be at least 1")
        if min(self.header_timeout, self.idle_timeout, self.write_timeout) <= 0:
            raise ValueError("timeouts must be positive")


class _Refusal(Exception):
    """A request answered by the server itself with an error status, and the connection closed."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Head:
    """A parsed request head. Field names are lower case, values Latin-1 text."""

    method: str
    path: str
    query: str
    version: str
    fields: tuple[tuple[str, str], ...]
    body_length: int
    keep_alive: bool


def _parse_head(head: bytes) -> _Head:
    """The request line and fields (without the blank line that ends them); raises ``_Refusal``."""
    lines = [line.removesuffix(b"\r") for line in head.split(b"\n")]
    request_line, field_lines = lines[0], lines[1:]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise _Refusal(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
        raise _Refusal(HTTPStatus.BAD_REQUEST, "malformed method or request target")
    if not _VERSION.fullmatch(version):
        raise _Refusal(HTTPStatus.BAD_REQUEST, "not an HTTP request")
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise _Refusal(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP version not supported")
    if len(field_lines) > MAX_HEADERS:
        raise _Refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields")
    fields = []
    for line in field_lines:
        name, colon, value = line.partition(b":")
        # A name that is not a token includes a line folded onto the previous one (obsolete).
        if not colon or not _TOKEN.fullmatch(name):
            raise _Refusal(HTTPStatus.BAD_REQUEST, "malformed header field")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise _Refusal(HTTPStatus.BAD_REQUEST, "control character in a header field")
        fields.append((name.decode("ascii").lower(), value.decode("latin-1")))
    path, query = _split_target(target)
    _check_host(version, fields)
    return _Head(
        method=method.decode("ascii"),
        path=path,
        query=query,
        version=version.decode("ascii"),
        fields=tuple(fields),
        body_length=_body_length(fields),
        keep_alive=_keep_alive(version, fields),
    )


def _split_target(target: bytes) -> tuple[str, str]:
    absolute = _ABSOLUTE_TARGET.match(target)
    if absolute is not None:
        target = target[absolute.end() :] or b"/"
    if not target.startswith(b"/") and target != b"*":
        raise _Refusal(HTTPStatus.BAD_REQUEST, "request target is not a path")
    path, _, query = target.partition(b"#")[0].partition(b"?")
    return path.decode("ascii"), query.decode("ascii")


def _values(fields: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every comma-separated element of the fields called ``name``, stripped."""
    return [element.strip() for key, value in fields if key == name for element in value.split(",")]


def _check_host(version: bytes, fields: list[tuple[str, str]]) -> None:
    hosts = sum(name == "host" for name, _ in fields)
    if hosts > 1 or (version == b"HTTP/1.1" and hosts == 0):
        raise _Refusal(HTTPStatus.BAD_REQUEST, "not exactly one Host field")


def _body_length(fields: list[tuple[str, str]]) -> int:
    names = {name for name, _ in fields}
    if "transfer-encoding" in names:
        # Both framings at once is how requests are smuggled past proxies.
        if "content-length" in names:
            raise _Refusal(HTTPStatus.BAD_REQUEST, "Transfer-Encoding with Content-Length")
        if _values(fields, "transfer-encoding")[-1].lower() == "chunked":
            raise _Refusal(HTTPStatus.LENGTH_REQUIRED, "chunked request body")
        raise _Refusal(HTTPStatus.NOT_IMPLEMENTED, "unknown transfer coding")
    lengths = set(_values(fields, "content-length"))
    if not lengths:
        return 0
    text = lengths.pop()
    if lengths or not _DIGITS.fullmatch(text):
        raise _Refusal(HTTPStatus.BAD_REQUEST, "unreadable Content-Length")
    if len(text) > 9 or int(text) > MAX_BODY_BYTES:
        raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
    return int(text)


def _keep_alive(version: bytes, fields: list[tuple[str, str]]) -> bool:
    options = {option.lower() for option in _values(fields, "connection")}
    if version == b"HTTP/1.1":
        return "close" not in options
    return "keep-alive" in options


def _refusal_answer(status: HTTPStatus) -> list[bytes]:
    body = f"{status.phrase}\n".encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return [head.encode("ascii") + body]


class _Phase(enum.Enum):
    HANDSHAKE = "TLS handshake not complete in time"
    READING = "request not complete in time"
    ANSWERING = "answering"
    WRITING = "answer not read in time"
    LINGERING = "closed after its answer"


@dataclass(eq=False)
class _Connection:
    """One client connection; touched by the loop thread only."""

    sock: socket.socket
    address: tuple[Any, ...]
    local: tuple[Any, ...]  # the address of the listener it was accepted on
    phase: _Phase
    deadline: float | None = None
    inbox: bytearray = field(default_factory=bytearray)
    scanned: int = 0  # how far ``inbox`` has been searched for the end of the head
    pending: _Head | None = None  # a parsed head whose body is still arriving
    outbox: deque[memoryview] = field(default_factory=deque)
    close_after: bool = False
    peer_done: bool = False  # the client has shut down its side
    served: int = 0
    events: int = 0
    discarded: int = 0
    closed: bool = False
    tls: TlsServerConfig | None = None  # what the connection was accepted with

    @property
    def peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


@dataclass(frozen=True, eq=False)
class _Listener:
    sock: socket.socket
    address: tuple[Any, ...]


_WAKER = object()


class HttpServer:
    """Serves a WSGI app on every one of ``addresses`` (``--web.listen-address`` forms, all in
    the one loop); :meth:`start` runs the loop and the workers in threads.

    With ``tls``, every connection is TLS (``--web.config.file``): the handshake is stepped in the
    loop, the client certificate is verified by the context, and the SANs are checked when it ends.
    """

    def __init__(
        self,
        app: WsgiApp,
        addresses: Sequence[str],
        *,
        tls: TlsServerConfig | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._app = app
        self._limits = limits or Limits()
        # What new connections are accepted with: the TLS settings and their context, together.
        self._security = (tls, None if tls is None else tls.context())
        _raise_file_limit(self._limits.max_connections + _OWN_FILES)
        self._listeners = [
            _Listener(sock, sock.getsockname()) for sock in open_listeners(addresses)
        ]
        self.server_addresses = tuple(listener.address for listener in self._listeners)
        self.server_address: tuple[Any, ...] = self.server_addresses[0]
        self._scheme = "http" if tls is None else "https"
        self._selector = selectors.DefaultSelector()
        self._waker, self._wake_end = socket.socketpair()
        self._waker.setblocking(False)
        self._wake_end.setblocking(False)
        self._listen()
        self._selector.register(self._waker, selectors.EVENT_READ, _WAKER)
        self._connections: set[_Connection] = set()
        self._next_due = math.inf
        self._accept_paused_until: float | None = None
        self._last_fd_warning = -math.inf
        self._jobs: queue.SimpleQueue[tuple[_Connection, _Head, bytes, float] | None] = (
            queue.SimpleQueue()
        )
        self._answers: deque[tuple[_Connection, list[bytes], bool]] = deque()
        self._stopping = False
        self._drain_until: float | None = None  # set by a graceful shutdown
        self._listeners_closed = False
        self._loop: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._closed = False

    # -- the public side ---------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop and the workers in daemon threads."""
        self._workers = [
            threading.Thread(target=self._work, name=f"http-worker-{index}", daemon=True)
            for index in range(self._limits.workers)
        ]
        for worker in self._workers:
            worker.start()
        self._loop = threading.Thread(target=self._serve, name="http", daemon=True)
        self._loop.start()

    def reconfigure(self, app: WsgiApp, tls: TlsServerConfig | None) -> None:
        """Serve with ``app`` and accept with ``tls`` from now on (a reloaded web config).

        Requests read from now on go to ``app``; connections accepted from now on use ``tls``;
        a connection already open keeps the TLS session it has.
        """
        self._app = app
        self._security = (tls, None if tls is None else tls.context())
        self._scheme = "http" if tls is None else "https"

    def shutdown(self, grace: float = 0.0) -> None:
        """Stop serving; waits for the loop.

        With ``grace`` (seconds), first stop accepting and let the requests being answered finish
        and be written, for at most ``grace``; idle and half-read connections close at once.
        Then close every connection and let the workers end.
        """
        if grace > 0 and self._loop is not None and self._loop.is_alive():
            self._drain_until = time.monotonic() + grace
        else:
            self._stopping = True
        self._wake()
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join()

    def server_close(self) -> None:
        """Close the listening sockets (after :meth:`shutdown`, which it calls if needed)."""
        if self._loop is not None and self._loop.is_alive():
            self.shutdown()
        if self._closed:
            return
        self._closed = True
        self._selector.close()
        for sock in (*(listener.sock for listener in self._listeners), self._waker, self._wake_end):
            sock.close()

    # -- the loop ----------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stopping:
                ready = self._selector.select(self._timeout(time.monotonic()))
                now = time.monotonic()
                for key, _mask in ready:
                    self._dispatch(key.data, now)
                self._take_answers(now)
                self._resume_accepting(now)
                self._expire(now)
                if self._drain_until is not None:
                    self._wind_down(now)
        finally:
            for connection in list(self._connections):
                self._close(connection)
            for _ in self._workers:
                self._jobs.put(None)
            give_up = time.monotonic() + 2.0
            for worker in self._workers:
                worker.join(max(0.0, give_up - time.monotonic()))

    def _timeout(self, now: float) -> float | None:
        due = self._next_due
        if self._accept_paused_until is not None:
            due = min(due, self._accept_paused_until)
        if self._drain_until is not None:
            due = min(due, now + _DRAIN_POLL)
        return None if due == math.inf else max(0.0, due - now)

    def _dispatch(self, target: object, now: float) -> None:
        if isinstance(target, _Listener):
            try:
                self._accept(target, now)
            except Exception:
                log.exception("internal error accepting connections")
            return
        if target is _WAKER:
            self._drain_waker()
            return
        connection = cast(_Connection, target)
        if connection.closed:
            return
        try:
            if connection.phase is _Phase.HANDSHAKE:
                self._handshake(connection, now)
            elif connection.phase is _Phase.READING:
                self._read(connection, now)
            elif connection.phase is _Phase.WRITING:
                self._write(connection, now)
            elif connection.phase is _Phase.LINGERING:
                self._drain(connection)
        except Exception:
            log.exception("closing %s after an internal error", connection.peer)
            self._close(connection)

    def _arm(self, connection: _Connection, deadline: float | None) -> None:
        connection.deadline = deadline
        if deadline is not None and deadline + _EXPIRY_SLACK < self._next_due:
            self._next_due = deadline + _EXPIRY_SLACK

    def _expire(self, now: float) -> None:
        if now < self._next_due:
            return
        due = math.inf
        for connection in list(self._connections):
            deadline = connection.deadline
            if deadline is None:
                continue
            if deadline <= now:
                reason = connection.phase.value
                if connection.phase is _Phase.READING and not (
                    connection.inbox or connection.pending
                ):
                    reason = "idle" if connection.served else "no request in time"
                log.debug("closing %s: %s", connection.peer, reason)
                self._close(connection)
            else:
                due = min(due, deadline + _EXPIRY_SLACK)
        self._next_due = due

    def _want(self, connection: _Connection, events: int) -> None:
        if events == connection.events:
            return
        if connection.events == 0:
            self._selector.register(connection.sock, events, connection)
        elif events == 0:
            self._selector.unregister(connection.sock)
        else:
            self._selector.modify(connection.sock, events, connection)
        connection.events = events

    def _close(self, connection: _Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        self._want(connection, 0)
        self._connections.discard(connection)
        with contextlib.suppress(OSError):
            connection.sock.close()

    # -- accepting ---------------------------------------------------------------------------

    def _listen(self) -> None:
        for listener in self._listeners:
            self._selector.register(listener.sock, selectors.EVENT_READ, listener)

    def _accept(self, listener: _Listener, now: float) -> None:
        for _ in range(_ACCEPTS_PER_EVENT):
            try:
                sock, address = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accepting(now, exc)
                else:
                    log.debug("accept failed: %s", exc)
                return
            if len(self._connections) >= self._limits.max_connections:
                log.debug(
                    "refused %s:%s: %d connections open",
                    address[0],
                    address[1],
                    len(self._connections),
                )
                sock.close()
                continue
            self._open(sock, _unmapped(address), listener.address, now)

    def _open(
        self, sock: socket.socket, address: tuple[Any, ...], local: tuple[Any, ...], now: float
    ) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls, context = self._security
        if tls is None or context is None:
            connection = _Connection(sock, address, local, _Phase.READING)
            self._connections.add(connection)
            self._arm(connection, now + self._limits.header_timeout)
            self._want(connection, selectors.EVENT_READ)
            return
        try:
            secured = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            log.debug("TLS with %s:%s failed: %s", address[0], address[1], exc)
            sock.close()
            return
        connection = _Connection(secured, address, local, _Phase.HANDSHAKE, tls=tls)
        self._connections.add(connection)
        self._arm(connection, now + min(HANDSHAKE_TIMEOUT, self._limits.header_timeout))
        self._handshake(connection, now)

    def _pause_accepting(self, now: float, error: OSError) -> None:
        if now - self._last_fd_warning >= _FD_WARNING_INTERVAL:
            self._last_fd_warning = now
            log.warning(
                "cannot accept connections (%s) with %d open; lower --web.max-connections or "
                "raise the open files limit",
                error.strerror,
                len(self._connections),
            )
        for listener in self._listeners:
            self._selector.unregister(listener.sock)
        self._accept_paused_until = now + _ACCEPT_PAUSE

    def _wind_down(self, now: float) -> None:
        """A graceful shutdown's step: no new connections, no new requests, answers finish."""
        if not self._listeners_closed:
            self._listeners_closed = True
            self._accept_paused_until = None
            for listener in self._listeners:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(listener.sock)
                listener.sock.close()
        busy = 0
        for connection in list(self._connections):
            if connection.phase in (_Phase.ANSWERING, _Phase.WRITING):
                busy += 1
            else:
                self._close(connection)
        assert self._drain_until is not None
        if busy == 0 or now >= self._drain_until:
            self._stopping = True

    def _resume_accepting(self, now: float) -> None:
        if self._listeners_closed:
            return
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self._listen()

    # -- a connection's life -----------------------------------------------------------------

    def _handshake(self, connection: _Connection, now: float) -> None:
        assert connection.tls is not None
        step = accept_tls(connection.tls, cast(ssl.SSLSocket, connection.sock), connection.peer)
        if step is Handshake.WANT_READ:
            self._want(connection, selectors.EVENT_READ)
        elif step is Handshake.WANT_WRITE:
            self._want(connection, selectors.EVENT_WRITE)
        elif step is Handshake.REFUSED:
            self._close(connection)
        else:
            connection.phase = _Phase.READING
            self._arm(connection, now + self._limits.header_timeout)
            self._read(connection, now)

    def _read(self, connection: _Connection, now: float) -> None:
        while len(connection.inbox) < _MAX_REQUEST_BYTES:
            try:
                data = connection.sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._want(connection, selectors.EVENT_WRITE)
                return
            except OSError as exc:
                log.debug("reading from %s failed: %s", connection.peer, exc)
                self._close(connection)
                return
            if not data:
                connection.peer_done = True
                break
            if not connection.inbox and connection.pending is None and connection.served:
                # The first byte of the next request on a kept-alive connection.
                self._arm(connection, now + self._limits.header_timeout)
            connection.inbox += data
        self._advance(connection, now)

    def _advance(self, connection: _Connection, now: float) -> None:
        """Hand a complete request to the workers, refuse a bad one, or wait for more."""
        try:
            request = _next_request(connection)
        except _Refusal as refusal:
            log.debug(
                "refused a request from %s with %d: %s",
                connection.peer,
                refusal.status.value,
                refusal.reason,
            )
            self._send(connection, _refusal_answer(refusal.status), True, now)
            return
        if request is None:
            if connection.peer_done:
                self._close(connection)
            else:
                self._want(connection, selectors.EVENT_READ)
            return
        connection.phase = _Phase.ANSWERING
        self._arm(connection, None)
        self._want(connection, 0)
        self._jobs.put((connection, *request, time.monotonic()))

    def _send(self, connection: _Connection, parts: list[bytes], close: bool, now: float) -> None:
        connection.phase = _Phase.WRITING
        connection.outbox = deque(memoryview(part) for part in parts if part)
        connection.close_after = close or connection.peer_done or self._drain_until is not None
        self._arm(connection, now + self._limits.write_timeout)
        self._write(connection, now)

    def _write(self, connection: _Connection, now: float) -> None:
        outbox = connection.outbox
        while outbox:
            view = outbox[0]
            try:
                # TLS wants a write that could not complete repeated with the same bytes: the
                # same slice of the same view is.
                sent = connection.sock.send(view[:_WRITE_SIZE])
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self._want(connection, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._want(connection, selectors.EVENT_READ)
                return
            except OSError as exc:
                log.debug("writing to %s failed: %s", connection.peer, exc)
                self._close(connection)
                return
            if sent == len(view):
                outbox.popleft()
            else:
                outbox[0] = view[sent:]
        connection.served += 1
        if connection.close_after:
            self._linger(connection, now)
            return
        connection.phase = _Phase.READING
        wait = self._limits.header_timeout if connection.inbox else self._limits.idle_timeout
        self._arm(connection, now + wait)
        self._read(connection, now)

    def _linger(self, connection: _Connection, now: float) -> None:
        if connection.peer_done:
            self._close(connection)  # everything the client sent has been read
            return
        try:
            connection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(connection)
            return
        connection.phase = _Phase.LINGERING
        self._arm(connection, now + LINGER_TIMEOUT)
        self._want(connection, selectors.EVENT_READ)
        self._drain(connection)

    def _drain(self, connection: _Connection) -> None:
        while True:
            try:
                data = connection.sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            except OSError:
                data = b""
            connection.discarded += len(data)
            if not data or connection.discarded > _LINGER_BYTES:
                self._close(connection)
                return

    # -- workers -----------------------------------------------------------------------------

    def _take_answers(self, now: float) -> None:
        while self._answers:
            connection, parts, close = self._answers.popleft()
            if connection.closed:
                continue
            try:
                self._send(connection, parts, close, now)
            except Exception:
                log.exception("closing %s after an internal error", connection.peer)
                self._close(connection)

    def _wake(self) -> None:
        # OSError: the socket is full (the loop has wake-ups to read anyway) or closed.
        with contextlib.suppress(OSError):
            self._wake_end.send(b"\0")

    def _drain_waker(self) -> None:
        while True:
            try:
                if not self._waker.recv(4096):
                    return
            except (BlockingIOError, InterruptedError):
                return

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            connection, head, body, received = job
            parts, close = self._answer(connection.address, connection.local, head, body, received)
            self._answers.append((connection, parts, close))
            # An idle worker must not hold its last answer (a scrape's body: megabytes) until its
            # next request: eight workers would keep eight bodies alive.
            del job, connection, head, body, parts
            self._wake()

    def _answer(
        self,
        address: tuple[Any, ...],
        local: tuple[Any, ...],
        head: _Head,
        body: bytes,
        received: float,
    ) -> tuple[list[bytes], bool]:
        """The app's answer to one request as bytes to write, and whether to close after it."""
        try:
            environ = self._environ(address, local, head, body, received)
            status, headers, chunks = self._call_app(environ)
        except Exception:
            log.exception("internal error answering %s %s", head.method, head.path)
            return _refusal_answer(HTTPStatus.INTERNAL_SERVER_ERROR), True
        log.debug("%s:%s %s %s %s", address[0], address[1], head.method, head.path, status[:3])
        if head.method == "HEAD":
            chunks = []
        names = {name.lower() for name, _ in headers}
        lines = [f"{head.version} {status}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        if "date" not in names:
            lines.append(f"Date: {formatdate(usegmt=True)}\r\n")
        if "content-length" not in names and head.method != "HEAD":
            lines.append(f"Content-Length: {sum(len(chunk) for chunk in chunks)}\r\n")
        if not head.keep_alive:
            lines.append("Connection: close\r\n")
        elif head.version == "HTTP/1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        return ["".join(lines).encode("latin-1"), *chunks], not head.keep_alive

    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        started: list[tuple[str, list[tuple[str, str]]]] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            # Nothing is sent before the app returns, so a later call (with exc_info) replaces.
            started[:] = [(status, list(headers))]
            return chunks.append

        result = self._app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the WSGI app returned without starting a response")
        status, headers = started[0]
        return status, headers, [bytes(chunk) for chunk in chunks if chunk]

    def _environ(
        self,
        address: tuple[Any, ...],
        local: tuple[Any, ...],
        head: _Head,
        body: bytes,
        received: float,
    ) -> dict[str, Any]:
        """The WSGI environ; ``RECEIVED_KEY`` holds when the request was complete (monotonic),
        since a request may wait for a worker and its deadline runs from its arrival."""
        environ: dict[str, Any] = {
            RECEIVED_KEY: received,
            "REQUEST_METHOD": head.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(head.path, "iso-8859-1"),
            "QUERY_STRING": head.query,
            "SERVER_NAME": str(local[0]),
            "SERVER_PORT": str(local[1]),
            "SERVER_PROTOCOL": head.version,
            "REMOTE_ADDR": str(address[0]),
            "REMOTE_PORT": str(address[1]),
            "CONTENT_LENGTH": str(len(body)) if body else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self._scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in head.fields:
            # A field spelled with "_" would pass for the one spelled with "-" (as in wsgiref).
            if "_" in name or name == "content-length":
                continue
            key = (
                "CONTENT_TYPE"
                if name == "content-type"
                else "HTTP_" + name.upper().replace("-", "_")
            )
            environ[key] = f"{environ[key]}, {value}" if key in environ else value
        return environ


def _next_request(connection: _Connection) -> tuple[_Head, bytes] | None:
    """The next complete request in ``connection.inbox`` (taken out of it), or ``None`` yet."""
    inbox = connection.inbox
    if connection.pending is None:
        # Empty lines before a request line are to be ignored (RFC 9112, section 2.2).
        blank = len(inbox) - len(inbox.lstrip(b"\r\n"))
        if blank:
            del inbox[:blank]
            connection.scanned = max(0, connection.scanned - blank)
        end = _END_OF_HEAD.search(inbox, max(0, connection.scanned - 3))
        if end is None or end.start() > MAX_HEAD_BYTES:
            connection.scanned = len(inbox)
            if len(inbox) <= MAX_HEAD_BYTES:
                return None
            if inbox.find(b"\n", 0, MAX_HEAD_BYTES) == -1:
                raise _Refusal(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            raise _Refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        connection.pending = _parse_head(bytes(inbox[: end.start()]))
        del inbox[: end.end()]
        connection.scanned = 0
    head = connection.pending
    if len(inbox) < head.body_length:
        return None
    body = bytes(inbox[: head.body_length])
    del inbox[: head.body_length]
    connection.pending = None
    return head, body


def _unmapped(address: tuple[Any, ...]) -> tuple[Any, ...]:
    """A peer's address, an IPv4 client of a dual-stack listener as IPv4 (``127.0.0.1``), as Go
    reports it, rather than as the IPv4-mapped IPv6 address (``::ffff:127.0.0.1``)."""
    host = str(address[0])
    if host.startswith("::ffff:") and "." in host:
        return (host.removeprefix("::ffff:"), address[1])
    return address


def _raise_file_limit(wanted: int) -> None:
    """Raise the soft limit on open files toward ``wanted`` (Go raises it to the hard limit).

    Many systems start processes with a soft limit of 1024, which the default connection cap and
    the process's own files would exceed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target <= soft:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.debug("cannot raise the open files limit to %d: %s", target, exc)
