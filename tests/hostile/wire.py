"""A small threaded HTTPS/1.1 server whose every answer is chosen by the scenario, byte by byte.

The server parses requests itself (request line, headers, ``Content-Length`` body) and writes
replies itself, so a reply can be anything a broken or malicious peer could send: a normal answer,
exact raw bytes (lying ``Content-Length``, broken chunking, HTTP/1.0 without a length), a response
dripped one byte at a time (status line and headers included), a flood of body bytes, a reset, or
silence. Everything is bounded: connections, requests per connection, bytes read, and every wait
is cut short by :meth:`HostileServer.stop`. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import http
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_CONNECTIONS = 256
MAX_REQUESTS_PER_CONNECTION = 1000
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
SOCKET_TIMEOUT = 30.0
JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class Request:
    """One request as it arrived. ``path`` is percent-decoded; header names are lower case."""

    server: str
    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def bearer(self) -> str | None:
        """The bearer token of the ``Authorization`` header, if any."""
        value = self.headers.get("authorization", "")
        return value[len("Bearer ") :] if value.startswith("Bearer ") else None


@dataclass(frozen=True)
class Answer:
    """A well-formed HTTP/1.1 response; ``Content-Length`` is added unless a header sets framing."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0

    def wire(self) -> bytes:
        """The response exactly as it goes on the wire."""
        try:
            reason = http.HTTPStatus(self.status).phrase
        except ValueError:
            reason = "Whatever"
        names = {name.lower() for name, _ in self.headers}
        lines = [f"HTTP/1.1 {self.status} {reason}", *(f"{k}: {v}" for k, v in self.headers)]
        if "content-length" not in names and "transfer-encoding" not in names:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass(frozen=True)
class Raw:
    """Exactly these bytes, then the connection is closed."""

    data: bytes
    delay: float = 0.0


@dataclass(frozen=True)
class Drip:
    """``data`` one byte every ``every`` seconds, for at most ``for_at_most`` seconds, then close."""

    data: bytes
    every: float
    for_at_most: float


@dataclass(frozen=True)
class Flood:
    """``head``, then ``chunk`` repeated until ``total`` bytes of body went out or the peer left."""

    head: bytes
    chunk: bytes
    total: int


@dataclass(frozen=True)
class Reset:
    """Close the connection with a TCP reset instead of an answer."""


@dataclass(frozen=True)
class Silence:
    """Say nothing for ``seconds``, then close."""

    seconds: float


Reply = Answer | Raw | Drip | Flood | Reset | Silence
Handler = Callable[[Request], Reply]


class _Reader:
    """Reads requests off one connection, keeping bytes that arrived early for the next one."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> bool:
        chunk = self._sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def head(self) -> bytes | None:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_HEAD_BYTES or not self._fill():
                return None
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        return head

    def body(self, length: int) -> bytes | None:
        if length > MAX_BODY_BYTES:
            return None
        while len(self._buffer) < length:
            if not self._fill():
                return None
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return body


@dataclass
class _Live:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sockets: set[socket.socket] = field(default_factory=set)
    threads: list[threading.Thread] = field(default_factory=list)


class HostileServer:
    """Serves ``handler``'s replies over TLS on 127.0.0.1; records every request it parsed."""

    def __init__(self, name: str, context: ssl.SSLContext, handler: Handler) -> None:
        self.name = name
        self._context = context
        self._handler = handler
        self._stop = threading.Event()
        self._live = _Live()
        self._log_lock = threading.Lock()
        self._requests: list[Request] = []
        self.errors: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"hostile-{name}", daemon=True
        )

    def start(self) -> HostileServer:
        """Start accepting connections."""
        self._acceptor.start()
        return self

    def url(self, host: str = "127.0.0.1") -> str:
        """``https://host:port`` of this server."""
        return f"https://{host}:{self.port}"

    @property
    def requests(self) -> list[Request]:
        """A copy of every request parsed so far, in arrival order."""
        with self._log_lock:
            return list(self._requests)

    def stop(self) -> None:
        """Stop accepting, cut every connection and every wait, and join the threads (bounded)."""
        self._stop.set()
        self._acceptor.join(JOIN_TIMEOUT)
        self._listener.close()
        with self._live.lock:
            sockets, threads = list(self._live.sockets), list(self._live.threads)
        for sock in sockets:
            _cut(sock)
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._live.lock:
                self._live.threads = [t for t in self._live.threads if t.is_alive()]
                if len(self._live.threads) >= MAX_CONNECTIONS:
                    _close_quietly(conn)
                    continue
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._live.threads.append(thread)
                self._live.sockets.add(conn)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(SOCKET_TIMEOUT)
        sock: socket.socket = conn
        try:
            sock = self._context.wrap_socket(conn, server_side=True)
            with self._live.lock:
                self._live.sockets.add(sock)
            reader = _Reader(sock)
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                request = self._read(reader)
                if request is None or self._stop.is_set():
                    break
                with self._log_lock:
                    self._requests.append(request)
                if not self._send(sock, self._reply(request)):
                    break
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            _close_quietly(sock)
            with self._live.lock:
                self._live.sockets.discard(sock)
                self._live.sockets.discard(conn)

    def _reply(self, request: Request) -> Reply:
        try:
            return self._handler(request)
        except Exception as exc:  # a bug of the hostile server itself: make it visible
            self.errors.append(f"{request.method} {request.target}: {exc!r}")
            return Answer(500, b"hostile handler crashed")

    def _read(self, reader: _Reader) -> Request | None:
        head = reader.head()
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        body = reader.body(int(headers.get("content-length", "0") or 0))
        if body is None:
            return None
        split = urlsplit(target)
        return Request(
            server=self.name,
            method=method,
            target=target,
            path=unquote(split.path),
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            at=time.monotonic(),
        )

    def _send(self, sock: socket.socket, reply: Reply) -> bool:
        """Write ``reply``; whether the connection may carry another request."""
        if isinstance(reply, Answer):
            if reply.delay and self._stop.wait(reply.delay):
                return False
            sock.sendall(reply.wire())
            return True
        if isinstance(reply, Raw):
            if reply.delay and self._stop.wait(reply.delay):
                return False
            sock.sendall(reply.data)
        elif isinstance(reply, Drip):
            self._drip(sock, reply)
        elif isinstance(reply, Flood):
            sock.sendall(reply.head)
            for _ in range(max(0, reply.total) // max(1, len(reply.chunk))):
                if self._stop.is_set():
                    break
                sock.sendall(reply.chunk)
        elif isinstance(reply, Reset):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif isinstance(reply, Silence):
            self._stop.wait(reply.seconds)
        return False

    def _drip(self, sock: socket.socket, drip: Drip) -> None:
        ends = time.monotonic() + drip.for_at_most
        for index in range(len(drip.data)):
            if time.monotonic() >= ends:
                return
            sock.sendall(drip.data[index : index + 1])
            if self._stop.wait(drip.every):
                return


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _cut(sock: socket.socket) -> None:
    """Wake a thread blocked on ``sock`` (``close`` alone does not), then close it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    _close_quietly(sock)
