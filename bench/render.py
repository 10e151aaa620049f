"""Exposition rendering on its own: one real collection, rendered by the exporter's metrics route
and by prometheus_client's encoder.

The collection is made once, in this process, by the exporter's own poller (wired as the CLI wires
it); then it is rendered again and again with the upstream out of the picture, three ways:

- through a fresh WSGI app each time (the first scrape of a process: nothing remembered yet);
- through one app, again and again (what a scrape of an unchanged collection costs);
- as ``prometheus_client`` writes it: the reference families of ``exporter/expose/reference.py``
  encoded by ``generate_latest``.

What is timed for the app is exactly what a scrape does after its collection: families, encoding,
headers. The reference and the app's body are compared byte for byte, except for the process
metrics that only the app appends (they change from one call to the next).
"""

from __future__ import annotations

import io
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from bench.processes import EmulatorInfo, exporter_config
from exporter.ams.http import RequestCounter
from exporter.collect.poller import Poller
from exporter.collect.snapshot import Collection
from exporter.config.accounts import parse_config
from exporter.deadline import Deadline
from exporter.expose.contract import Scrape
from exporter.expose.reference import Exposition, build_families
from exporter.version import running
from exporter.web.server import ExporterApp
from exporter.wiring import build_poller

_SECRET_VARIABLE = "AMS_BENCH_CLIENT_SECRET"
TEXT = "text/plain"  # the text format 0.0.4, which prometheus_client's generate_latest writes
# The families the app appends after the contract's: the client library's process metrics.
_PROCESS_FAMILY = re.compile(rb"^# HELP (?!process_|python_)", re.MULTILINE)


@dataclass(frozen=True)
class RenderRun:
    """Median times to render one collection, in seconds, and what was rendered.

    ``first_*``: a fresh app each time; ``wall_seconds``/``cpu_seconds``: one app rendering the
    same collection again; ``reference_*``: the reference families through prometheus_client.
    """

    first_wall_seconds: float
    first_cpu_seconds: float
    wall_seconds: float
    cpu_seconds: float
    reference_wall_seconds: float
    reference_cpu_seconds: float
    series: int
    body_bytes: int

    @property
    def microseconds_per_series(self) -> float:
        return 1e6 * self.wall_seconds / max(1, self.series)

    @property
    def encoder_ratio(self) -> float:
        """prometheus_client's encoder time ÷ the app's steady render time."""
        return self.reference_wall_seconds / self.wall_seconds


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


def _timed(work: Callable[[], bytes]) -> tuple[float, float, bytes]:
    wall, cpu = time.perf_counter(), time.process_time()
    body = work()
    return time.perf_counter() - wall, time.process_time() - cpu, body


def _medians(runs: list[tuple[float, float, bytes]]) -> tuple[float, float]:
    return statistics.median(run[0] for run in runs), statistics.median(run[1] for run in runs)


def time_rendering(collection: Collection, counter: RequestCounter, repeat: int) -> RenderRun:
    """Render ``collection`` ``repeat`` times each way; medians. Raises if the app's body and
    prometheus_client's differ."""
    poller = cast(Poller, _FixedPoller(collection))
    build = running()
    repeat = max(1, repeat)

    # Each app is made before its first render is timed, as a process makes it before it
    # listens; the last one goes on rendering the same collection.
    apps = [ExporterApp(poller, counter, build=build) for _ in range(repeat)]
    firsts = [_timed(partial(_render, fresh, TEXT)) for fresh in apps]
    app = apps[-1]
    steady = [_timed(partial(_render, app, TEXT)) for _ in range(repeat)]
    scrape = Scrape(collection, counter.snapshot(), build, app.config_status)

    def reference() -> bytes:
        families = build_families(scrape, om=False)
        return generate_latest(Exposition(families, CollectorRegistry(auto_describe=False)))

    references = [_timed(reference) for _ in range(repeat)]
    body = steady[-1][2]
    same_as_reference(firsts[-1][2], references[-1][2])
    same_as_reference(body, references[-1][2])
    (first_wall, first_cpu), (wall, cpu) = _medians(firsts), _medians(steady)
    reference_wall, reference_cpu = _medians(references)
    return RenderRun(
        first_wall_seconds=first_wall,
        first_cpu_seconds=first_cpu,
        wall_seconds=wall,
        cpu_seconds=cpu,
        reference_wall_seconds=reference_wall,
        reference_cpu_seconds=reference_cpu,
        series=count_series(body),
        body_bytes=len(body),
    )


def same_as_reference(body: bytes, reference: bytes) -> None:
    """The app's ``body`` is ``reference`` followed by process metrics only; raises otherwise."""
    if not body.startswith(reference) or _PROCESS_FAMILY.search(body, len(reference)):
        at = next(
            (i for i, (a, b) in enumerate(zip(body, reference, strict=False)) if a != b),
            min(len(body), len(reference)),
        )
        raise RuntimeError(
            f"the exporter's body differs from prometheus_client's at byte {at}: "
            f"{body[at - 80 : at + 80]!r} against {reference[at - 80 : at + 80]!r}"
        )


def count_series(body: bytes) -> int:
    """Sample lines of a text exposition (comments and blank lines excluded)."""
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
