"""The exporter's HTTP side: a small WSGI app and the threaded server that runs it.

Routes: ``/`` (status page), the telemetry path (``/metrics``), ``/healthz`` (the process serves) and
``/readyz`` (every account collected successfully, recently). A scrape's collection is bounded by
Prometheus's ``X-Prometheus-Scrape-Timeout-Seconds`` minus a margin, so the exporter answers with what
it has (and ``ams_up 0``) instead of letting Prometheus time out.
"""

from __future__ import annotations

import gzip
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter.collector import Collector
from exporter.deadline import Deadline
from exporter.exposition import render
from exporter.http import RequestCounter
from exporter.status_page import render_status_page
from exporter.webconfig import ProtectedApp, TlsServerConfig, WebConfig, accept_tls

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Environ = dict[str, Any]

# Scrape-timeout header as WSGI names it.
SCRAPE_TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"
# Longest budget a header may ask for; Prometheus caps scrape_timeout at the scrape interval anyway.
MAX_SCRAPE_TIMEOUT = 300.0
# The status page shows a collection at most this old, collecting (shared with scrapes) otherwise,
# so that it stays live without Prometheus and adds at most one collection per this interval.
STATUS_PAGE_MAX_AGE = 15.0


def collection_budget(header: str | None, default: float) -> float:
    """Seconds a collection may take: the scrape timeout minus a margin for rendering and network.

    The margin is 10 % of the timeout, between 0.1 s and 1 s. Without a usable header the default
    (the longest account timeout) applies.
    """
    try:
        timeout = float(header) if header else default
    except ValueError:
        log.debug("ignoring unreadable scrape timeout header %r", header)
        timeout = default
    if not 0 < timeout <= MAX_SCRAPE_TIMEOUT:
        timeout = default
    margin = min(1.0, max(0.1, timeout * 0.1))
    return max(0.05, timeout - margin)


def _process_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class ExporterApp:
    """The WSGI application."""

    def __init__(
        self,
        collector: Collector,
        counter: RequestCounter,
        *,
        version: str,
        telemetry_path: str = "/metrics",
        default_timeout: float = 10.0,
    ) -> None:
        self._collector = collector
        self._counter = counter
        self._version = version
        self._telemetry_path = telemetry_path
        self._default_timeout = default_timeout
        self._process = _process_registry()
        self._routes: dict[str, Callable[[Environ], tuple[str, list[tuple[str, str]], bytes]]] = {
            "/": self._status_page,
            telemetry_path: self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
        }

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        route = self._routes.get(environ.get("PATH_INFO", "/"))
        if route is None:
            status, headers, body = _text("404 Not Found", "not found; see / for the endpoints\n")
        elif method not in ("GET", "HEAD"):
            status, headers, body = _text("405 Method Not Allowed", "only GET and HEAD\n")
            headers.append(("Allow", "GET, HEAD"))
        else:
            try:
                status, headers, body = route(environ)
            except Exception:
                log.exception("internal error serving %s", environ.get("PATH_INFO"))
                status, headers, body = _text("500 Internal Server Error", "internal error\n")
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [b""] if method == "HEAD" else [body]

    def _metrics(self, environ: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
        budget = collection_budget(environ.get(SCRAPE_TIMEOUT_HEADER), self._default_timeout)
        collection = self._collector.collect(Deadline.after(budget))
        body, content_type = render(
            collection,
            self._counter.snapshot(),
            self._version,
            environ.get("HTTP_ACCEPT", ""),
            self._process,
        )
        headers = [("Content-Type", content_type)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return "200 OK", headers, body

    def _status_page(self, _environ: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
        collection = self._collector.latest
        if collection is None or self._collector.age_of_latest() > STATUS_PAGE_MAX_AGE:
            collection = self._collector.collect(Deadline.after(self._default_timeout))
        page = render_status_page(
            collection, version=self._version, metrics_path=self._telemetry_path
        )
        return "200 OK", [("Content-Type", "text/html; charset=utf-8")], page.encode()

    def _healthz(self, _environ: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
        return _text("200 OK", "ok\n")

    def _readyz(self, _environ: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
        """Judged from the collections that scrapes (and the start-up warm-up) made.

        The probe never polls AMS itself: probes come every few seconds and would multiply the
        upstream load that the scrape interval was chosen to bound.
        """
        reason = self._collector.unready_reason()
        if reason is None:
            return _text("200 OK", "ready\n")
        return _text("503 Service Unavailable", f"not ready: {reason}\n")


def _text(status: str, text: str) -> tuple[str, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "text/plain; charset=utf-8")], text.encode()


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the debug log, not to stderr."""

    # The error answer to a request line that cannot be parsed (400, 505) needs a status line;
    # with the library default (HTTP/0.9) the client would get a bare HTML body.
    default_request_version = "HTTP/1.0"
    # Seconds a client may stall while sending its request or reading the answer; without it, a
    # client that never finishes its request holds a thread for ever.
    timeout = 60.0

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ExporterServer(ThreadingMixIn, WSGIServer):
    """A threaded WSGI server; each request in its own daemon thread.

    With TLS (``--web.config.file``), the handshake runs in the request's thread, so a client that
    stalls or speaks plain HTTP cannot hold up the others.
    """

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of scrapes (HA pairs,
    # dashboards), which the clients then retry after 1 s, 3 s, 7 s: scrapes late by seconds.
    request_queue_size = socket.SOMAXCONN
    tls: TlsServerConfig | None = None
    tls_context: ssl.SSLContext | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that stalled or went away: the debug log, not a traceback on stderr."""
        log.debug("request from %s failed", client_address, exc_info=True)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None or self.tls_context is None:
            super().finish_request(request, client_address)
            return
        secured = accept_tls(self.tls_context, self.tls, request, client_address)
        if secured is None:
            return
        try:
            super().finish_request(secured, client_address)
        finally:
            secured.close()


def parse_listen_address(address: str) -> tuple[str, int]:
    """``host:port``, ``:port`` (all interfaces) or ``[v6]:port`` → (host, port)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected host:port, :port or [address]:port, got {address!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def start_server(
    app: ExporterApp, address: str, web_config: WebConfig | None = None
) -> ExporterServer:
    """Bind ``address`` and serve ``app`` in a background thread; returns the running server.

    ``web_config`` adds TLS, basic auth and response headers (exporter-toolkit's web-config.yml).
    """
    host, port = parse_listen_address(address)
    server_class = type(
        "BoundServer",
        (ExporterServer,),
        {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
    )
    server: ExporterServer = server_class((host, port), _QuietHandler)
    if web_config is None:
        server.set_app(app)
    else:
        server.set_app(ProtectedApp(app, web_config.authenticator(), web_config.headers))
        if web_config.tls is not None:
            server.tls, server.tls_context = web_config.tls, web_config.tls.context()
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server
