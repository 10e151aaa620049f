"""A scrape's body does not stay resident after it was sent.

Two causes kept bodies of earlier scrapes in memory, measured at 50,000 jobs as about 28 MB more
per scrape up to over 300 MB (``bench/``): every idle worker of the HTTP server held its last answer,
and glibc, which raises its mmap threshold to the size of each large block freed, served later
bodies from heaps it keeps. Both are checked here on their own, with real sockets and real processes.
"""

from __future__ import annotations

import gc
import http.client
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from exporter.web.httpserver import HttpServer

_MARK = b"answer-body:"


def _held_bodies() -> int:
    """Bodies served by the test app that a container still references (bytes are not tracked
    by the garbage collector, but the lists and tuples holding them are)."""
    gc.collect()
    held = 0
    for holder in gc.get_objects():
        if isinstance(holder, (list, tuple)):
            held += sum(
                1
                for item in holder
                if isinstance(item, bytes) and len(item) > 100_000 and item.startswith(_MARK)
            )
    return held


def test_no_worker_keeps_an_answer_it_has_sent():
    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [_MARK + b"x" * 1_000_000]

    server = HttpServer(app, ["127.0.0.1:0"])
    server.start()
    try:
        port = server.server_addresses[0][1]
        for _ in range(12):  # more than the workers
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/metrics")
            assert connection.getresponse().read().startswith(_MARK)
            connection.close()
        assert _held_bodies() == 0, "an answer is still referenced after it was sent"
    finally:
        server.shutdown()
        server.server_close()


_RESIDENT_AFTER_FREE = textwrap.dedent(
    """
    import sys
    from exporter.allocator import return_large_blocks

    def resident_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

    if sys.argv[1] == "fixed":
        assert return_large_blocks()
    before = resident_mb()
    for _ in range(3):  # the first free raises glibc's threshold; the later blocks stay
        block = b"x" * (20 * 1024 * 1024)  # below 32 MB, the most glibc raises the threshold to
        del block
    print(resident_mb() - before)
    """
)


def _resident_growth(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _RESIDENT_AFTER_FREE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return float(done.stdout)


def test_large_blocks_go_back_to_the_system_once_freed():
    # glibc as it comes keeps a freed 20 MB block; with the exporter's setting none stays.
    assert _resident_growth("default") > 15
    assert _resident_growth("fixed") < 5
