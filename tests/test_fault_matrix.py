"""The fault matrix: every upstream fault, over real sockets, against a two-account exporter.

For each fault the account ``bad`` is hit while ``ok`` is not, and the test asserts that the
exporter keeps serving, that ``/metrics`` answers within the scrape timeout Prometheus announced,
that ``ams_up`` tells which account is affected and the other keeps its jobs, that the error is
logged once for the whole episode with the account and the status and without a secret, that
``ams_api_requests_total`` counts the failed requests, and that the next collection after the fault
clears succeeds. ``docs/reliability.md`` publishes the same table; a test keeps the two equal
(regenerate it with ``python -m tests.test_fault_matrix``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator, Fault
from tests.support.harness import RunningExporter, Scrape, running_exporter

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
TOKEN_PATH = r"/oauth2/(v2\.0/)?token$"
JOBS_PATH = r"/api/Jobs$"
# What Prometheus would announce; the exporter must answer before it runs out.
SCRAPE_TIMEOUT = 5.0
EPISODE_SCRAPES = 2


@dataclass(frozen=True)
class Case:
    """One row of the matrix."""

    id: str
    fault: str  # what goes wrong, for the published table
    behaviour: str  # what the exporter does, for the published table
    inject: Callable[[Emulator], None]
    counted: tuple[str, str]  # (api, code) of ams_api_requests_total that must grow
    log: str | None  # text of the one warning of the episode; None: no warning at all
    up: bool = False  # ams_up of the affected account during the fault
    recovers: bool = True
    overrides: Mapping[str, Any] = field(default_factory=dict)
    big: bool = False  # needs more than one page of jobs
    from_start: bool = False  # the fault is there before the first collection


def faults(*added: Fault, expire: bool = False) -> Callable[[Emulator], None]:
    """Inject ``added``; with ``expire``, also make the cached token useless so AAD is asked."""

    def inject(emulator: Emulator) -> None:
        for fault in added:
            emulator.faults.add(fault)
        if expire:
            emulator.expire_tokens()

    return inject


def revoke_during_the_listing(emulator: Emulator) -> None:
    """Slow the listing down and revoke every token while it is in flight."""
    emulator.faults.add(Fault("latency", path=JOBS_PATH, latency=1.0, count=1))
    threading.Timer(0.3, emulator.revoke_tokens).start()


CASES = (
    Case(
        "aad-down",
        "Azure AD resets every connection (token needs renewing)",
        "ams_up 0, AuthError 'Azure AD could not be reached'",
        faults(Fault("aad_down"), expire=True),
        ("aad", "error"),
        "Azure AD could not be reached",
    ),
    Case(
        "aad-503",
        "Azure AD answers 503 to token requests",
        "ams_up 0, AuthError with the status",
        faults(Fault("status", api="aad", status=503, path=TOKEN_PATH), expire=True),
        ("aad", "503"),
        "503",
    ),
    Case(
        "aad-slow-headers",
        "Azure AD sends its status line and headers one byte a second",
        "the exchange is cut at the deadline, the token lock freed, ams_up 0",
        faults(
            Fault("slow_headers", api="aad", path=TOKEN_PATH, drip_bytes=1, drip_interval=1.0),
            expire=True,
        ),
        ("aad", "error"),
        "outlived the deadline",
        overrides={"timeout": "3s"},
    ),
    Case(
        "aad-500",
        "Azure AD answers 500 to token requests",
        "ams_up 0, AuthError with the status",
        faults(Fault("status", api="aad", status=500, path=TOKEN_PATH), expire=True),
        ("aad", "500"),
        "500",
    ),
    Case(
        "wrong-credentials",
        "wrong client secret (AADSTS7000215 invalid_client)",
        "ams_up 0 from the first collection; AAD's code named, never the secret",
        faults(),
        ("aad", "401"),
        "invalid_client",
        recovers=False,
        overrides={"client_secret": "not-the-right-secret"},
        from_start=True,
    ),
    Case(
        "token-revoked",
        "every token revoked while a listing is in flight",
        "AMS 401, token dropped, one retry with a new token: ams_up stays 1",
        revoke_during_the_listing,
        ("ams", "401"),
        None,
        up=True,
    ),
    Case(
        "ams-401",
        "AMS answers 401 to every request",
        "one new token and one retry, then ams_up 0",
        faults(Fault("status", status=401)),
        ("ams", "401"),
        "HTTP 401",
    ),
    Case(
        "ams-403",
        "AMS answers 403 (account disabled, role missing)",
        "ams_up 0, not retried",
        faults(Fault("status", status=403)),
        ("ams", "403"),
        "HTTP 403",
    ),
    Case(
        "ams-404",
        "AMS answers 404 (wrong endpoint path)",
        "ams_up 0, not retried",
        faults(Fault("status", status=404)),
        ("ams", "404"),
        "HTTP 404",
    ),
    Case(
        "ams-400-date-filter",
        "AMS refuses datetime literals in $filter with 400",
        "falls back to filtering finished jobs itself, warns once, ams_up stays 1",
        faults(Fault("reject_datetime_filter")),
        ("ams", "400"),
        "refused a datetime literal",
        up=True,
    ),
    Case(
        "ams-500",
        "AMS answers 500 to every request",
        "retried with back-off within the deadline, then ams_up 0",
        faults(Fault("status", status=500)),
        ("ams", "500"),
        "HTTP 500",
    ),
    Case(
        "ams-502",
        "AMS answers 502 to every request",
        "retried with back-off within the deadline, then ams_up 0",
        faults(Fault("status", status=502)),
        ("ams", "502"),
        "HTTP 502",
    ),
    Case(
        "ams-503-busy",
        'AMS answers 503 "Server is busy" to every request',
        "retried with back-off within the deadline, then ams_up 0",
        faults(Fault("status", status=503)),
        ("ams", "503"),
        "HTTP 503",
    ),
    Case(
        "ams-429-retry-after",
        "AMS answers 429 with Retry-After: 1 to every request",
        "waits Retry-After between retries, never past the deadline, then ams_up 0",
        faults(Fault("status", status=429, retry_after=1)),
        ("ams", "429"),
        "HTTP 429",
    ),
    Case(
        "latency-beyond-deadline",
        "AMS answers after 30 s",
        "answers at the scrape deadline with ams_up 0",
        faults(Fault("latency", latency=30.0)),
        ("ams", "error"),
        "deadline",
        overrides={"timeout": "3s"},
    ),
    Case(
        "connection-reset",
        "AMS resets every connection (TCP RST)",
        "retried, then ams_up 0 (transport error)",
        faults(Fault("reset")),
        ("ams", "error"),
        "ConnectionError",
    ),
    Case(
        "truncated-body",
        "AMS closes the connection before Content-Length bytes",
        "retried, then ams_up 0 (transport error)",
        faults(Fault("truncated")),
        ("ams", "200"),
        "failed",
    ),
    Case(
        "malformed-json",
        "AMS answers 200 with a body that is not JSON",
        "ams_up 0, 'not valid JSON'",
        faults(Fault("malformed_json")),
        ("ams", "200"),
        "not valid JSON",
    ),
    Case(
        "wrong-shape",
        "AMS answers 200 with JSON that is not an OData collection",
        "ams_up 0, the shape is named",
        faults(Fault("wrong_shape")),
        ("ams", "200"),
        "expected 'value' or 'd'",
    ),
    Case(
        "repeated-job",
        "a page repeats the last job of the previous page",
        "each job exported once, ams_up stays 1",
        faults(Fault("repeat_page")),
        ("ams", "200"),
        None,
        up=True,
        big=True,
    ),
    Case(
        "redirect-loop",
        "the legacy endpoint 301s to itself (at start-up; once resolved, it is not asked again)",
        "loop detected, ams_up 0, the chain named",
        faults(Fault("redirect_loop")),
        ("ams", "301"),
        "redirects in a loop",
        overrides={"endpoint": "LEGACY"},
        from_start=True,
    ),
    Case(
        "huge-response",
        "a 64 MiB job page (far beyond 1000 jobs)",
        "reading stops at 32 MiB, ams_up 0",
        faults(Fault("huge", size=64 * 1024 * 1024)),
        ("ams", "200"),
        "exceeds",
    ),
    Case(
        "slow-headers",
        "the status line and headers arrive one byte a second",
        "the exchange is cut at the deadline (headers included), ams_up 0",
        faults(Fault("slow_headers", path=JOBS_PATH, drip_bytes=1, drip_interval=1.0)),
        ("ams", "error"),
        "outlived the deadline",
        overrides={"timeout": "3s"},
    ),
    Case(
        "slow-drip",
        "the body arrives 8 bytes every 50 ms",
        "reading stops at the deadline, ams_up 0",
        faults(Fault("slow_drip")),
        ("ams", "200"),
        "deadline",
        overrides={"timeout": "3s"},
    ),
)


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthy() -> Iterator[Emulator]:
    with Emulator(jobs=60, seed=21, speed=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def small() -> Iterator[Emulator]:
    with Emulator(jobs=40, seed=22, speed=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def big() -> Iterator[Emulator]:
    with Emulator(jobs=1100, seed=23, speed=0) as emulator:
        yield emulator


def scrape_in_time(exporter: RunningExporter) -> Scrape:
    """A scrape as Prometheus makes it: announcing its timeout and giving up when it runs out."""
    return timed_scrape(exporter, SCRAPE_TIMEOUT)


def timed_scrape(exporter: RunningExporter, timeout: float) -> Scrape:
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}"}
    try:
        response = exporter.session.get(exporter.url + "/metrics", headers=headers, timeout=timeout)
    except requests.Timeout:
        pytest.fail(f"/metrics did not answer within the {timeout:g} s scrape timeout")
    assert response.status_code == 200
    samples = [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]
    return Scrape(response.status_code, response.text, samples)


def requests_of(scrape: Scrape | None, api: str, code: str) -> float:
    if scrape is None:
        return 0.0
    found = scrape.values("ams_api_requests_total", account="bad", api=api, code=code)
    return found[0] if found else 0.0


def overrides_for(case: Case, emulator: Emulator) -> dict[str, Any]:
    wide = {"jobs": {"finished_window": "3000h", "max_jobs": 5000, "tasks": False}}
    resolved = {
        key: emulator.legacy_endpoint if value == "LEGACY" else value
        for key, value in case.overrides.items()
    }
    return {**(wide if case.big else {}), **resolved}


def collection_warnings(records: list[logging.LogRecord], account: str) -> list[str]:
    return [
        r.getMessage()
        for r in records
        if r.levelno >= logging.WARNING and f"account {account}" in r.getMessage()
    ]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fault(case, healthy, small, big, caplog):
    emulator = big if case.big else small
    emulator.faults.clear()
    with running_exporter(
        {"ok": healthy, "bad": emulator}, {"bad": overrides_for(case, emulator)}
    ) as exporter:
        if case.from_start:
            case.inject(emulator)
            before = None
        else:
            before = scrape_in_time(exporter)
            assert before.value("ams_up", account="bad") == 1
            caplog.clear()
            case.inject(emulator)
        with caplog.at_level(logging.INFO):
            episode = [scrape_in_time(exporter) for _ in range(EPISODE_SCRAPES)]
        warnings = collection_warnings(caplog.records, "bad")
        emulator.faults.clear()
        after = scrape_in_time(exporter)
        assert exporter.get("/healthz").status_code == 200

    ok_jobs = episode[0].by_job("ams_job_priority", "ok")
    assert ok_jobs, "the healthy account exports its jobs"
    for scrape in episode:
        assert scrape.value("ams_up", account="bad") == (1 if case.up else 0)
        assert scrape.value("ams_up", account="ok") == 1
        assert scrape.by_job("ams_job_priority", "ok") == ok_jobs
    api, code = case.counted
    assert requests_of(episode[-1], api, code) > requests_of(before, api, code)
    if case.log is None:
        assert warnings == []
    else:
        assert len(warnings) == 1, warnings
        assert case.log in warnings[0]
    for record in caplog.records:
        assert emulator.client_secret not in record.getMessage()
        assert "not-the-right-secret" not in record.getMessage()
        assert "Bearer" not in record.getMessage()
    if case.recovers:
        assert after.value("ams_up", account="bad") == 1
    if case.big:
        exported = [s for s in episode[0].samples if s.name == "ams_job_priority"]
        ids = [s.labels["job_id"] for s in exported if s.labels["account"] == "bad"]
        assert len(ids) == len(set(ids)), "a repeated job must be exported once"
        assert len(after.by_job("ams_job_priority", "bad")) == len(emulator.jobs())


def test_a_scrape_during_an_episode_does_not_wait_for_retries_beyond_the_deadline(small, healthy):
    """The worst case of the matrix (persistent 429 with Retry-After) against a short timeout."""
    small.faults.clear()
    small.faults.add(Fault("status", status=429, retry_after=1))
    try:
        with running_exporter({"ok": healthy, "bad": small}) as exporter:
            scrape = timed_scrape(exporter, 2.0)
    finally:
        small.faults.clear()
    assert scrape.value("ams_up", account="bad") == 0
    assert scrape.value("ams_up", account="ok") == 1


# ---------------------------------------------------------------------------------------------
# The published table


def render_matrix() -> str:
    """The Markdown table of docs/reliability.md."""
    lines = [
        "| fault | behaviour | test |",
        "|---|---|---|",
        *(
            f"| {case.fault} | {case.behaviour} | "
            f"`tests/test_fault_matrix.py::test_fault[{case.id}]` |"
            for case in CASES
        ),
    ]
    return "\n".join(lines) + "\n"


def test_reliability_doc_publishes_the_matrix():
    text = DOC.read_text(encoding="utf-8")
    start = text.index("<!-- fault-matrix:start -->\n") + len("<!-- fault-matrix:start -->\n")
    end = text.index("<!-- fault-matrix:end -->")
    assert text[start:end] == render_matrix(), (
        "docs/reliability.md is out of date: python -m tests.test_fault_matrix"
    )


def _write_doc() -> None:
    text = DOC.read_text(encoding="utf-8")
    head, _, rest = text.partition("<!-- fault-matrix:start -->\n")
    _, _, tail = rest.partition("<!-- fault-matrix:end -->")
    DOC.write_text(
        head
        + "<!-- fault-matrix:start -->\n"
        + render_matrix()
        + "<!-- fault-matrix:end -->"
        + tail
    )


if __name__ == "__main__":
    _write_doc()
