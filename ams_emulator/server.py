"""The HTTPS transport: a threaded HTTP/1.1 server on loopback, with faults applied on the wire.

One thread per connection; keep-alive works because every answer carries ``Content-Length``. The
TLS handshake runs in the connection's thread, so a stalled client cannot block ``accept()``. On
stop, open keep-alive connections are shut down too, so pooled clients notice.

Wire-level faults: ``latency`` (wait first), ``reset``/``aad_down`` (TCP RST: SO_LINGER 0, then
close without a TLS close_notify), ``truncated`` (half the body under a Content-Length promising
more, then close) and ``slow_drip`` (the body a few bytes at a time).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import struct
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ams_emulator.faults import Fault, FaultSet, Fired
from ams_emulator.messages import Request, Response
from ams_emulator.requestlog import RequestLog, RequestRecord, safe_headers, safe_query
from ams_emulator.routes import Dispatcher

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # Azure AD forms and nothing else; larger bodies get 413
MAX_QUERY_FIELDS = 100
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0  # seconds an idle keep-alive connection is kept open


class _Refusal(Exception):
    """A request the transport answers itself (bad framing), closing the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Accepts TLS connections and hands each request to the :class:`Dispatcher`."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        *,
        dispatcher: Dispatcher | None,
        faults: FaultSet,
        log: RequestLog,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.context = context
        self.dispatcher = dispatcher  # set by the Emulator once the port is known
        self.faults = faults
        self.log = log
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn), which can be slow.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = (
            str(self.server_address[0]),
            int(self.server_address[1]),
        )

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        return self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Shut down every open connection (keep-alive clients see the server go away)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.close_connections()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ams-emulator"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    # TCP_NODELAY: headers and body go out in separate writes; with Nagle's algorithm the body
    # would wait for the client's delayed ACK of the headers (about 40 ms on Linux), a stall no
    # real service has.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_MERGE = do_HEAD = do_OPTIONS = do_GET

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    # ---- one request -------------------------------------------------------------------------

    def _handle(self) -> None:
        dispatcher = self.server.dispatcher
        assert dispatcher is not None
        try:
            request = self._parse()
        except _Refusal as refusal:
            self._refuse(refusal)
            return
        api = dispatcher.api_of(request.path)
        fired = self.server.faults.take(api, request.path, request.query)
        if fired.latency:
            self.server.stopping.wait(fired.latency)
        kind = fired.fault.kind if fired.fault is not None else None
        # Recorded before anything reaches the client, so a client that has its answer can
        # rely on the log already holding the request.
        if kind in ("reset", "aad_down"):
            self._record(request, api, None, fired)
            self._reset()
            return
        try:
            response = dispatcher.respond(request, fired)
        except Exception:  # a bug in the emulator must not look like a network fault
            logger.exception("the emulator failed to answer %s %s", request.method, request.path)
            response = Response(
                500,
                [("Content-Type", "text/plain; charset=utf-8")],
                b"The emulator failed to answer this request; see its log.\n",
            )
        self._record(request, api, response.status, fired)
        self._send(request, response, fired)

    def _parse(self) -> Request:
        parts = urlsplit(self.path)
        try:
            pairs = parse_qsl(
                parts.query,
                keep_blank_values=True,
                max_num_fields=MAX_QUERY_FIELDS,
                errors="replace",
            )
        except ValueError:
            raise _Refusal(400, "Too many query parameters.") from None
        query: dict[str, str] = {}
        repeated: list[str] = []
        for name, value in pairs:
            if name in query:
                repeated.append(name)
            else:
                query[name] = value
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        return Request(
            method=self.command,
            path=unquote(parts.path, errors="replace"),
            query=query,
            headers=headers,
            body=self._read_body(headers),
            repeated_options=tuple(repeated),
        )

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "transfer-encoding" in headers:
            raise _Refusal(411, "Send request bodies with Content-Length, not Transfer-Encoding.")
        raw = headers.get("content-length")
        if raw is None:
            return b""
        if not raw.strip().isdigit():
            raise _Refusal(400, "The Content-Length header is not a number.")
        length = int(raw)
        if length > MAX_BODY:
            raise _Refusal(413, f"Request bodies are limited to {MAX_BODY} bytes.")
        return self.rfile.read(length)

    # ---- writing answers ---------------------------------------------------------------------

    def _refuse(self, refusal: _Refusal) -> None:
        body = (refusal.message + "\n").encode()
        self.close_connection = True
        self.send_response(refusal.status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send(self, request: Request, response: Response, fired: Fired) -> None:
        kind = fired.fault.kind if fired.fault is not None else None
        length = response.content_length()
        declared = length * 2 + 64 if kind == "truncated" else length
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(declared))
        if kind == "truncated":
            self.send_header("Connection", "close")
            self.close_connection = True
        if kind == "slow_headers" and fired.fault is not None:
            self._drip_all(request, response, fired.fault)
            return
        self.end_headers()
        if request.method == "HEAD":
            return
        chunks = _chunks(response.body)
        if kind == "truncated":
            self._write(_limit(chunks, max(1, length // 2)))
        elif kind == "slow_drip" and fired.fault is not None:
            self._drip(chunks, fired.fault.drip_bytes, fired.fault.drip_interval)
        else:
            self._write(chunks)

    def _write(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            if self.server.stopping.is_set():
                raise ConnectionAbortedError("the emulator is stopping")
            self.wfile.write(chunk)

    def _drip_all(self, request: Request, response: Response, fault: Fault) -> None:
        """The status line and headers (buffered so far, not sent), then the body: all dripped."""
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        head = b"".join([*buffered, b"\r\n"])
        buffered.clear()
        body = [] if request.method == "HEAD" else list(_chunks(response.body))
        self._drip([head, *body], fault.drip_bytes, fault.drip_interval)

    def _drip(self, chunks: Iterable[bytes], size: int, interval: float) -> None:
        for chunk in chunks:
            for start in range(0, len(chunk), size):
                self._write([chunk[start : start + size]])
                if self.server.stopping.wait(interval):
                    raise ConnectionAbortedError("the emulator is stopping")

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (no TLS close_notify, no FIN)."""
        self.close_connection = True
        connection = self.connection
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()

    def _record(self, request: Request, api: str, status: int | None, fired: Fired) -> None:
        self.server.log.append(
            RequestRecord(
                time=datetime.now(timezone.utc),
                api=api,
                method=request.method,
                path=request.path,
                query=safe_query(request.query),
                headers=safe_headers(request.headers.items()),
                status=status,
                fault=fired.label,
            )
        )


def _chunks(body: bytes | Iterable[bytes]) -> Iterable[bytes]:
    return [body] if isinstance(body, bytes) else body


def _limit(chunks: Iterable[bytes], limit: int) -> Iterable[bytes]:
    sent = 0
    for chunk in chunks:
        if sent >= limit:
            return
        piece = chunk[: limit - sent]
        sent += len(piece)
        yield piece
