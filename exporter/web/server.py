"""The exporter's HTTP side: the WSGI app, and ``start_server``, which serves it.

Routes: ``/`` (status page), the telemetry path (``/metrics``), ``/healthz`` and ``/-/healthy`` (the
process serves), ``/readyz`` and ``/-/ready`` (every account collected successfully, recently) and
``POST /-/reload`` (with ``--web.enable-lifecycle``). A scrape's collection is bounded by
Prometheus's ``X-Prometheus-Scrape-Timeout-Seconds`` minus a margin, so the exporter answers with what
it has (and ``ams_up 0``) instead of letting Prometheus time out. The connections themselves
(limits, timeouts, TLS) are ``exporter/web/httpserver.py``'s.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter.ams.http import RequestCounter
from exporter.collect.poller import Poller
from exporter.deadline import Deadline
from exporter.expose.contract import ConfigStatus, Scrape
from exporter.expose.linecache import JobLineCache
from exporter.expose.negotiation import negotiate, qvalue
from exporter.expose.writer import render
from exporter.redact import redact
from exporter.version import Build
from exporter.web.httpserver import (
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    RECEIVED_KEY,
    WRITE_TIMEOUT,
    HttpServer,
    Limits,
)
from exporter.web.probe import PROBE_PATH, ProbeRefused, probed_account, unknown_account
from exporter.web.protect import ProtectedApp
from exporter.web.status_page import render_status_page
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Environ = dict[str, Any]

# Scrape-timeout header as WSGI names it.
SCRAPE_TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"
RELOAD_PATH = "/-/reload"
# Longest budget a header may ask for; Prometheus caps scrape_timeout at the scrape interval anyway.
MAX_SCRAPE_TIMEOUT = 300.0
# The status page shows the latest collection; only when none is younger than this does it collect
# (shared with scrapes), so that the demo stays live without Prometheus while page loads add no
# upstream load to a scraped exporter.
STATUS_PAGE_MAX_AGE = 60.0


def collection_budget(header: str | None, default: float) -> float:
    """Seconds a collection may take: the scrape timeout minus a margin for rendering and network.

    The margin is 10 % of the timeout, between 0.1 s and 1 s. Without a usable header the default
    (the longest account timeout) applies.
    """
    try:
        timeout = float(header) if header else default
    except ValueError:
        log.debug("ignoring an unreadable scrape timeout header")
        timeout = default
    if not 0 < timeout <= MAX_SCRAPE_TIMEOUT:
        timeout = default
    margin = min(1.0, max(0.1, timeout * 0.1))
    return max(0.05, timeout - margin)


def gzip_accepted(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value lets the answer be gzip-coded (RFC 9110, 12.5.3).

    ``gzip`` (or its alias ``x-gzip``), in any case, with a weight above 0, or ``*`` with a
    weight above 0 when gzip is not named. Without either the answer is not coded, even when the
    header refuses ``identity``: an uncoded exposition is better than a 406.
    """
    named: float | None = None
    anything: float | None = None
    for element in accept_encoding.split(","):
        coding, *parameters = element.split(";")
        coding = coding.strip().lower()
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                weight = qvalue(value.strip())
        if coding in ("gzip", "x-gzip"):
            named = max(weight, named or 0.0)
        elif coding == "*":
            anything = max(weight, anything or 0.0)
    if named is not None:
        return named > 0
    return anything is not None and anything > 0


# A probe leaves out the process's own metrics, as blackbox_exporter's probe does.
_NO_PROCESS = CollectorRegistry(auto_describe=False)


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
        poller: Poller,
        counter: RequestCounter,
        *,
        build: Build,
        telemetry_path: str = "/metrics",
        default_timeout: float = 10.0,
    ) -> None:
        self._poller = poller
        self._counter = counter
        self._build = build
        self._telemetry_path = telemetry_path
        # The scrape budget without a timeout header; a reload may change it.
        self.default_timeout = default_timeout
        self._process = _process_registry()
        # The lines of unchanged jobs, reused by the next scrape (probes and every format share it).
        self._job_lines = JobLineCache()
        # Set by the process when it loads or reloads the configuration.
        self.config_status = ConfigStatus(successful=True, success_time=time.time())
        # ``POST /-/reload`` calls this (``--web.enable-lifecycle``): ``None`` or why it failed.
        self.reload: Callable[[], str | None] | None = None
        self._routes: dict[str, Callable[[Environ], tuple[str, list[tuple[str, str]], bytes]]] = {
            "/": self._status_page,
            PROBE_PATH: self._probe,  # a telemetry path of the same name (refused by the CLI) wins
            telemetry_path: self._metrics,
            "/healthz": self._healthz,
            "/-/healthy": self._healthz,
            "/readyz": self._readyz,
            "/-/ready": self._readyz,
        }

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        route = self._routes.get(path)
        if path == RELOAD_PATH:
            status, headers, body = self._reload(method)
        elif route is None:
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
        return self._exposition(environ, None)

    def _probe(self, environ: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
        """``/probe?account=NAME``: the metrics path's answer for that account alone."""
        try:
            account = probed_account(environ.get("QUERY_STRING", ""), self._poller.names)
            return self._exposition(environ, account)
        except ProbeRefused as refusal:
            log.debug("refused a probe: %s", refusal.reason)
            return _text("400 Bad Request", str(refusal))

    def _exposition(
        self, environ: Environ, account: str | None
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        """A scrape of every account, or of ``account`` alone (a probe: its series only)."""
        # Negotiated before collecting: whatever the header says, the collection is answered.
        negotiation = negotiate(environ.get("HTTP_ACCEPT", ""))
        budget = collection_budget(environ.get(SCRAPE_TIMEOUT_HEADER), self.default_timeout)
        # A request may have waited for a worker: its budget, like Prometheus's timeout, runs
        # from its arrival, and a collection that finished after it arrived answers it too.
        received = environ.get(RECEIVED_KEY)
        arrived = received if isinstance(received, float) else time.monotonic()
        deadline = Deadline(arrived + budget)
        if account is None:
            collection = self._poller.collect(deadline, arrived=arrived)
        else:
            try:
                collection = self._poller.collect_account(account, deadline, arrived=arrived)
            except KeyError:  # a reload removed the account since the query was read
                raise unknown_account(account, self._poller.names) from None
        scrape = Scrape(
            collection, self._counter.snapshot(), self._build, self.config_status, account
        )
        process = self._process if account is None else _NO_PROCESS
        body, content_type = render(scrape, negotiation, process, self._job_lines)
        headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return "200 OK", headers, body

    def _status_page(self, _environ: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
        collection = self._poller.latest
        if collection is None or self._poller.age_of_latest() > STATUS_PAGE_MAX_AGE:
            collection = self._poller.collect(Deadline.after(self.default_timeout))
        page = render_status_page(
            collection,
            version=self._build.version,
            metrics_path=self._telemetry_path,
            now=time.time(),
        )
        return "200 OK", [("Content-Type", "text/html; charset=utf-8")], page.encode()

    def _reload(self, method: str) -> tuple[str, list[tuple[str, str]], bytes]:
        """``POST``/``PUT /-/reload`` as Prometheus answers it: 403 unless the lifecycle API is on."""
        if method not in ("POST", "PUT"):
            status, headers, body = _text("405 Method Not Allowed", "only POST and PUT\n")
            headers.append(("Allow", "POST, PUT"))
            return status, headers, body
        if self.reload is None:
            return _text("403 Forbidden", "Lifecycle API is not enabled.\n")
        failure = self.reload()
        if failure is not None:
            return _text(
                "500 Internal Server Error", f"failed to reload config: {redact(failure)}\n"
            )
        return _text("200 OK", "reloaded\n")

    def _healthz(self, _environ: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
        return _text("200 OK", "ok\n")

    def _readyz(self, _environ: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
        """Judged from the collections that scrapes (and the start-up warm-up) made.

        The probe never polls AMS itself: probes come every few seconds and would multiply the
        upstream load that the scrape interval was chosen to bound.
        """
        reason = self._poller.unready_reason()
        if reason is None:
            return _text("200 OK", "ready\n")
        return _text("503 Service Unavailable", f"not ready: {reason}\n")


def _text(status: str, text: str) -> tuple[str, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "text/plain; charset=utf-8")], text.encode()


def protected(app: ExporterApp, web_config: WebConfig | None) -> Callable[..., Any]:
    """``app`` behind ``web_config``'s basic auth and headers (``app`` itself without one)."""
    return app if web_config is None else ProtectedApp(app, web_config)


def use_web_config(server: HttpServer, app: ExporterApp, web_config: WebConfig | None) -> None:
    """Serve new connections with a reloaded web config (TLS, basic auth, headers)."""
    server.reconfigure(protected(app, web_config), None if web_config is None else web_config.tls)


def start_server(
    app: ExporterApp,
    addresses: Sequence[str],
    web_config: WebConfig | None = None,
    *,
    max_connections: int = MAX_CONNECTIONS,
    header_timeout: float = HEADER_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    write_timeout: float = WRITE_TIMEOUT,
) -> HttpServer:
    """Bind every one of ``addresses`` (``exporter/web/listen.py`` reads them) and serve ``app``
    on all of them in background threads; returns the running server.

    ``web_config`` adds TLS, basic auth and response headers (exporter-toolkit's web-config.yml).
    The limits are ``exporter/web/httpserver.py``'s; the command line sets only ``max_connections``
    (``--web.max-connections``), the timeouts are there for tests.
    """
    server = HttpServer(
        protected(app, web_config),
        addresses,
        tls=None if web_config is None else web_config.tls,
        limits=Limits(
            max_connections=max_connections,
            header_timeout=header_timeout,
            idle_timeout=idle_timeout,
            write_timeout=write_timeout,
        ),
    )
    server.start()
    return server
