"""Where the exporter's CPU goes during scrapes: py-spy samples of its process, by category.

Only samples of threads holding the GIL are counted (``py-spy record --gil``): the Python work
of collecting and rendering. Each sample is charged to the first category (in the order of
:data:`CATEGORIES`) with a marker anywhere in its stack. py-spy is a development tool; without it
the profile is skipped.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.support.process import Child

RATE_PER_SECOND = 500
STOP_SECONDS = 30.0

# (category, markers of a frame's "function (file:line)"), in priority order: a sample goes to
# the first category with a marker anywhere in its stack.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON decoding", ("json/decoder.py", "json/__init__.py")),
    ("reading entities (odata)", ("exporter/ams/odata.py",)),
    (
        "process metrics (prometheus_client)",
        ("prometheus_client/exposition.py", "prometheus_client/openmetrics", "_poller.py"),
    ),
    (
        "rendering the exposition",
        (
            "exporter/expose/writer.py",
            "exporter/expose/reference.py",
            "exporter/collect/jobview.py",
        ),
    ),
    ("HTTP and TLS (requests, urllib3, ssl)", ("requests/", "urllib3/", "ssl.py", "http/client")),
    ("client: paging, retries, deadline", ("exporter/ams/client.py", "exporter/ams/http.py")),
    (
        "poller: scope, tasks, results",
        ("exporter/collect/poller.py", "exporter/collect/snapshot.py"),
    ),
    ("serving the response (wsgiref)", ("wsgiref/", "exporter/web/server.py", "socketserver")),
)
OTHER = "other (threads, queues, interpreter)"


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter or on PATH, if any."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record`` attached to a running process until :meth:`stop`; its own output goes
    next to ``output``."""

    def __init__(self, executable: str, pid: int, output: Path) -> None:
        self._output = output
        args = [executable, "record", "--pid", str(pid), "--gil", "--format", "raw"]
        args += ["--rate", str(RATE_PER_SECOND), "--output", str(output)]
        self._child = Child(args, output.parent, output.stem)

    def stop(self) -> dict[str, float]:
        """Stop sampling (SIGINT makes py-spy write its profile); the share of samples per
        category (empty if py-spy failed)."""
        self._child.signal(signal.SIGINT)
        try:
            self._child.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._child.stop()
            return {}
        if not self._output.exists():
            errors = self._child.output("stderr")
            print(f"py-spy wrote no profile: {errors.strip()[-300:]}", flush=True)
            return {}
        return shares(self._output.read_text())


def shares(raw: str) -> dict[str, float]:
    """Samples per category as fractions, from py-spy's raw (collapsed stack) output."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            counts[_category(stack.split(";"))] += int(number)
    total = sum(counts.values())
    return {name: count / total for name, count in counts.most_common()} if total else {}


def _category(frames: list[str]) -> str:
    for name, markers in CATEGORIES:
        if any(marker in frame for frame in frames for marker in markers):
            return name
    return OTHER
