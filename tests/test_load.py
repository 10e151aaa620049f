"""Many concurrent scrapes of an exporter collecting a large account.

Rounds of 50 scrapes fired together (as many Prometheus replicas and dashboards at once): each
round costs AMS one collection's worth of requests, because the scrapes share the collection in
flight; every response is complete and carries the same job series; and once the rounds are over,
the process has no more threads or open file descriptors than after the first round.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator, Fault
from tests.support.harness import RunningExporter, running_exporter

SCRAPERS = 50
ROUNDS = 2
JOBS = 1100
WIDE = {"jobs": {"finished_window": "3000h", "max_jobs": 5000}}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(jobs=JOBS, seed=41, speed=0) as emulator:
        yield emulator


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(measure: Callable[[], int], ceiling: int, what: str) -> int:
    """Wait (bounded) until ``measure()`` is back at ``ceiling`` or below; the last value."""
    value = measure()
    for _ in range(100):
        if value <= ceiling:
            return value
        time.sleep(0.1)
        value = measure()
    pytest.fail(f"{what}: {value} after the rounds, {ceiling} before")


def job_lines(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line.startswith("ams_job"))


def scrape_round(exporter: RunningExporter) -> list[str]:
    """``SCRAPERS`` scrapes released together; the bodies."""
    barrier = threading.Barrier(SCRAPERS)

    def scrape(_: int) -> str:
        barrier.wait(timeout=60)
        with requests.Session() as session:
            response = session.get(exporter.url + "/metrics", timeout=60)
        assert response.status_code == 200
        return response.text

    with ThreadPoolExecutor(max_workers=SCRAPERS) as pool:
        return list(pool.map(scrape, range(SCRAPERS)))


def test_concurrent_scrapes_share_collections_and_leak_nothing(emulator):
    expected_ids = {job.id for job in emulator.jobs()}
    with running_exporter({"big": emulator}, {"big": WIDE}) as exporter:
        exporter.scrape()  # the first collection also gets a token and the tasks of final jobs
        emulator.clear_log()
        single = exporter.scrape()
        one_collection = len(emulator.request_log)
        assert single.value("ams_up", account="big") == 1
        assert set(single.by_job("ams_job_priority", "big")) == expected_ids

        # The first round grows the worker pools to their size; it is the baseline.
        emulator.faults.add(Fault("latency", latency=2.0, path=r"/api/Jobs$"))
        scrape_round(exporter)
        threads, fds = threading.active_count(), open_fds()

        per_round = []
        for _ in range(ROUNDS):
            emulator.clear_log()
            bodies = scrape_round(exporter)
            per_round.append(len(emulator.request_log))
            first = job_lines(bodies[0])
            for body in bodies:
                assert job_lines(body) == first, "scrapes of one collection differ"
            samples = [s for f in text_string_to_metric_families(bodies[0]) for s in f.samples]
            assert [s.value for s in samples if s.name == "ams_up"] == [1.0]
            ids = {s.labels["job_id"] for s in samples if s.name == "ams_job_priority"}
            assert ids == expected_ids
        emulator.faults.clear()

        settle(threading.active_count, threads, "threads")
        settle(open_fds, fds, "open file descriptors")
    assert per_round == [one_collection] * ROUNDS, (
        f"one collection is {one_collection} requests; rounds of {SCRAPERS} scrapes made {per_round}"
    )
