"""Connection abuse on the exporter's own port (scenario 10 of the hostile suite)."""

from __future__ import annotations

import select
import socket
import threading
import time

from tests.hostile.azure import job
from tests.hostile.lab import Lab
from tests.hostile.leaks import Witness

IDLE = 500
SLOWLORIS = 100
BYTE_EVERY = 0.5
HEADER_TIMEOUT = 10.0
CLOSED_BY = 15.0
MAX_THREADS = 100


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the exporter closed ``sock``: EOF (after any answer) or a reset."""
    for _ in range(64):
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            if not sock.recv(65536):
                return True
        except OSError:
            return True
    return False


def test_idle_and_slowloris_connections_cannot_starve_the_exporter(
    lab: Lab, witness: Witness
) -> None:
    azure = lab.azure()
    account = lab.account(azure, "abused")
    account.jobs = [job(0), job(3)]
    exporter = lab.exporter([lab.entry(azure, account)])
    exporter.wait_ready()
    idle: list[socket.socket] = []
    slow: list[socket.socket] = []
    failed: set[int] = set()
    stop = threading.Event()

    def drip() -> None:
        header = b"X-Slow: " + b"a" * 4096
        for position in range(int(CLOSED_BY / BYTE_EVERY) + 4):
            for index, sock in enumerate(slow):
                if index not in failed:
                    try:
                        sock.send(header[position % len(header) : position % len(header) + 1])
                    except OSError:
                        failed.add(index)
            if stop.wait(BYTE_EVERY):
                return

    dripper = threading.Thread(target=drip, daemon=True)
    try:
        for _ in range(IDLE):
            idle.append(socket.create_connection(("127.0.0.1", exporter.port), timeout=5))
        started = time.monotonic()
        for _ in range(SLOWLORIS):
            sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n")
            slow.append(sock)
        dripper.start()
        time.sleep(1.0)

        scrape = exporter.scrape(4, timeout=5)
        threads = [exporter.proc_status("Threads")]
        while time.monotonic() - started < CLOSED_BY:
            threads.append(exporter.proc_status("Threads"))
            time.sleep(0.5)
        late = exporter.scrape(4, timeout=5)
        stop.set()
        dripper.join(5)
        still_open = [i for i, s in enumerate(slow) if i not in failed and not _closed_by_peer(s)]
    finally:
        stop.set()
        for sock in idle + slow:
            sock.close()

    assert scrape.up("abused") == 1 and late.up("abused") == 1
    assert max(threads) < MAX_THREADS, f"the exporter ran up to {max(threads)} threads"
    assert not still_open, f"{len(still_open)} slowloris connections still open after {CLOSED_BY} s"
    witness.assert_clean()
