"""Exposition rendering on its own: one real collection, rendered by the exporter's metrics route.

The collection is made once, in this process, by the exporter's own poller (wired as the CLI wires
it); then the WSGI app renders it again and again with the upstream out of the picture. What is timed
is exactly what a scrape does after its collection: families, encoding, headers.
"""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass
from typing import Any, cast

from bench.processes import EmulatorInfo, exporter_config
from exporter.ams.http import RequestCounter
from exporter.collect.poller import Poller
from exporter.collect.snapshot import Collection
from exporter.config.accounts import parse_config
from exporter.deadline import Deadline
from exporter.version import running
from exporter.web.server import ExporterApp
from exporter.wiring import build_poller

_SECRET_VARIABLE = "AMS_BENCH_CLIENT_SECRET"


@dataclass(frozen=True)
class RenderRun:
    """Median time to render one collection, in seconds, and what was rendered."""

    wall_seconds: float
    cpu_seconds: float
    series: int
    body_bytes: int

    @property
    def microseconds_per_series(self) -> float:
        return 1e6 * self.wall_seconds / max(1, self.series)


class _FixedPoller:
    """Stands in for the poller: every scrape gets the same, already finished collection."""

    def __init__(self, collection: Collection) -> None:
        self._collection = collection

    def collect(self, _deadline: Deadline, arrived: float | None = None) -> Collection:
        return self._collection


def collect_once(info: EmulatorInfo, timeout: float) -> tuple[Collection, RequestCounter]:
    """One collection by the exporter's own poller, in this process."""
    config = parse_config(
        exporter_config(info, timeout), {_SECRET_VARIABLE: info.client_secret}, source="bench"
    )
    counter = RequestCounter()
    poller = build_poller(config, counter)
    try:
        collection = poller.collect(Deadline.after(timeout))
    finally:
        poller.close()
    if not all(account.up for account in collection.accounts):
        errors = [account.error for account in collection.accounts]
        raise RuntimeError(f"the in-process collection failed: {errors}")
    return collection, counter


def _render(app: ExporterApp, accept: str) -> bytes:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/metrics",
        "HTTP_ACCEPT": accept,
        "wsgi.input": io.BytesIO(),
    }
    status: list[str] = []
    body = b"".join(app(environ, lambda s, _h: status.append(s)))
    if status != ["200 OK"]:
        raise RuntimeError(f"rendering answered {status}")
    return body


def time_rendering(collection: Collection, counter: RequestCounter, repeat: int) -> RenderRun:
    """Render ``collection`` ``repeat`` times through the metrics route; medians."""
    app = ExporterApp(cast(Poller, _FixedPoller(collection)), counter, build=running())
    walls, cpus = [], []
    body = b""
    for _ in range(max(1, repeat)):
        wall, cpu = time.perf_counter(), time.process_time()
        body = _render(app, "text/plain")
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return RenderRun(
        wall_seconds=statistics.median(walls),
        cpu_seconds=statistics.median(cpus),
        series=count_series(body),
        body_bytes=len(body),
    )


def count_series(body: bytes) -> int:
    """Sample lines of a text exposition (comments and blank lines excluded)."""
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
