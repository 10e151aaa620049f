"""How a collection behaves: scope, paging, credentials, retries, failures and deadlines."""

from __future__ import annotations

import concurrent.futures
import logging
import math
import time

import pytest

from ams_emulator import Emulator, Fault
from tests.support import expected
from tests.support.harness import RunningExporter, Scrape, running_exporter


def _collect_once(exporter: RunningExporter, *emulators: Emulator) -> None:
    """One collection, then the emulators' request logs are cleared: they hold only what follows."""
    exporter.scrape()
    for emulator in emulators:
        emulator.clear_log()


def _job_pages(emulator: Emulator) -> list[dict[str, str]]:
    """Query options of the job listings the emulator answered."""
    return [
        r.query
        for r in emulator.request_log
        if r.api == "ams" and r.path.rstrip("/").endswith("/Jobs")
    ]


def test_paging_crosses_1000_jobs_with_skip_and_top():
    with Emulator(jobs=2345, seed=3, speed=0) as emulator:
        wide = {"jobs": {"finished_window": "3000h", "max_jobs": 10000, "tasks": False}}
        with running_exporter({"big": emulator}, {"big": wide}) as exporter:
            scrape = exporter.scrape()
        assert scrape.value("ams_up", account="big") == 1
        assert len(scrape.by_job("ams_job_priority", "big")) == 2345
        pages = _job_pages(emulator)
        assert sorted(int(p.get("$skip", "0")) for p in pages) == [0, 1000, 2000]
        assert {p["$top"] for p in pages} == {"1000"}
        assert all("RunningDuration" in p["$select"] for p in pages)


def test_max_jobs_caps_per_job_series_and_counts_the_rest():
    with Emulator(jobs=300, seed=5, speed=0) as emulator:
        capped = {"jobs": {"max_jobs": 10}}
        with running_exporter({"capped": emulator}, {"capped": capped}) as exporter:
            scrape = exporter.scrape()
    in_scope = sum(scrape.values("ams_jobs", account="capped"))
    assert len(scrape.by_job("ams_job_priority", "capped")) == 10
    assert scrape.value("ams_jobs_dropped", account="capped") == in_scope - 10
    assert in_scope > 10


def test_legacy_endpoint_is_resolved_through_the_301_keeping_authorization():
    with Emulator(jobs=50, seed=1, speed=0) as emulator:
        legacy = {"endpoint": emulator.legacy_endpoint}
        with running_exporter({"legacy": emulator}, {"legacy": legacy}) as exporter:
            first = exporter.scrape()
            second = exporter.scrape()
        assert first.value("ams_up", account="legacy") == 1
        assert second.value("ams_up", account="legacy") == 1
        roots = [r for r in emulator.request_log if r.api == "ams" and r.path == "/"]
        assert [r.status for r in roots] == [301], "the legacy root is resolved once"
        assert all(r.status == 200 for r in emulator.request_log if "/Jobs" in r.path)


def test_certificate_credential():
    with Emulator(jobs=30, seed=2, speed=0) as emulator:
        by_cert = {
            "client_secret": None,
            "client_certificate_file": str(emulator.client_certificate_file),
        }
        with running_exporter({"cert": emulator}, {"cert": by_cert}) as exporter:
            scrape = exporter.scrape()
    assert scrape.value("ams_up", account="cert") == 1
    assert scrape.value("ams_api_requests_total", account="cert", api="aad", code="200") >= 1


def test_managed_identity_credential(monkeypatch):
    with Emulator(jobs=30, seed=2, speed=0) as emulator:
        monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.managed_identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emulator.managed_identity_header)
        by_identity = {
            "client_secret": None,
            "tenant": None,
            "client_id": None,
            "managed_identity": True,
        }
        with running_exporter({"mi": emulator}, {"mi": by_identity}) as exporter:
            scrape = exporter.scrape()
    assert scrape.value("ams_up", account="mi") == 1


def test_expired_token_is_replaced_after_one_401():
    with Emulator(jobs=30, seed=2, speed=0) as emulator:
        with running_exporter({"a": emulator}) as exporter:
            exporter.scrape()
            emulator.expire_tokens()
            emulator.clear_log()
            scrape = exporter.scrape()
        assert scrape.value("ams_up", account="a") == 1
        statuses = [r.status for r in emulator.request_log if r.api == "ams"]
        assert statuses[0] == 401 and statuses[1:] == [200] * (len(statuses) - 1)
        assert len([r for r in emulator.request_log if r.api == "aad" and r.status == 200]) == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, count=2),
        Fault(kind="status", status=500, count=1),
        Fault(kind="status", status=502, count=1),
        Fault(kind="status", status=504, count=1),
        Fault(kind="status", status=408, count=1),
        Fault(kind="status", status=429, count=1, retry_after=1),
        Fault(kind="reset", count=1),
    ],
    ids=["503-busy", "500", "502", "504", "408", "429-retry-after", "connection-reset"],
)
def test_transient_failures_are_retried_within_the_collection(fault):
    with Emulator(jobs=30, seed=2, speed=0) as emulator:
        with running_exporter({"a": emulator}) as exporter:
            exporter.scrape()
            emulator.faults.add(fault)
            scrape = exporter.scrape()
    assert scrape.value("ams_up", account="a") == 1
    code = "error" if fault.kind == "reset" else str(fault.status)
    assert scrape.value("ams_api_requests_total", account="a", api="ams", code=code) == (
        fault.count
    )


def test_a_failing_account_does_not_hide_the_others():
    with (
        Emulator(jobs=30, seed=1, speed=0) as healthy,
        Emulator(jobs=30, seed=2, speed=0) as broken,
    ):
        broken.faults.add(Fault(kind="status", status=403))
        with running_exporter({"healthy": healthy, "broken": broken}) as exporter:
            scrape = exporter.scrape()
    assert scrape.value("ams_up", account="healthy") == 1
    assert scrape.value("ams_up", account="broken") == 0
    assert scrape.by_job("ams_job_priority", "healthy")
    assert not scrape.by_job("ams_job_priority", "broken")
    assert scrape.values("ams_jobs", account="broken") == []
    assert scrape.value("ams_api_requests_total", account="broken", api="ams", code="403") == 1


def test_scrape_timeout_header_bounds_the_collection():
    with Emulator(jobs=30, seed=1, speed=0) as fast, Emulator(jobs=30, seed=2, speed=0) as slow:
        with running_exporter({"fast": fast, "slow": slow}) as exporter:
            exporter.scrape()
            slow.faults.add(Fault(kind="latency", latency=8.0))
            # Prometheus would give up after 3 s; the exporter must answer before that.
            scrape = exporter.scrape(headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"})
            slow.faults.clear()
    assert scrape.status == 200
    assert scrape.value("ams_up", account="fast") == 1
    assert scrape.value("ams_up", account="slow") == 0
    assert scrape.value("ams_collection_duration_seconds", account="slow") < 3


def test_concurrent_scrapes_share_one_collection():
    with Emulator(jobs=200, seed=4, speed=0) as emulator:
        with running_exporter({"a": emulator}) as exporter:
            _collect_once(exporter, emulator)
            emulator.faults.add(Fault(kind="latency", latency=0.5))
            with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
                scrapes = list(pool.map(lambda _: exporter.scrape(), range(10)))
        listings = _job_pages(emulator)
    assert all(s.value("ams_up", account="a") == 1 for s in scrapes)
    assert len(listings) <= 2, f"10 concurrent scrapes caused {len(listings)} job listings"
    assert len({s.text.count("\n") for s in scrapes}) <= 2


def test_a_caller_with_a_shorter_deadline_joining_a_collection_keeps_the_finished_accounts():
    with Emulator(jobs=30, seed=1, speed=0) as fast, Emulator(jobs=30, seed=2, speed=0) as slow:
        with running_exporter({"fast": fast, "slow": slow}) as exporter:
            _collect_once(exporter, slow, fast)
            slow.faults.add(Fault(kind="latency", latency=4.0))
            # A patient caller (a status page, a scrape with a long timeout) starts a collection;
            # once the fast account has listed its jobs, Prometheus, with a 2 s timeout, joins it.
            patient_scrape, hurried = _start_then_join(exporter, fast, starts="30", joins="2")
        fast_listings = _job_pages(fast)
    assert hurried.value("ams_up", account="fast") == 1
    assert hurried.by_job("ams_job_priority", "fast")
    assert hurried.value("ams_up", account="slow") == 0
    assert patient_scrape.value("ams_up", account="slow") == 1
    assert len(fast_listings) == 1, "the joining caller shares the collection in flight"


def test_a_tiny_scrape_timeout_cannot_shorten_the_collection_that_others_join():
    """An unauthenticated client with a 60 ms budget starts the collection; Prometheus joins it."""
    with Emulator(jobs=30, seed=6, speed=0) as emulator:
        with running_exporter({"a": emulator}) as exporter:
            _collect_once(exporter, emulator)
            emulator.faults.add(Fault(kind="latency", latency=0.3))
            hurried, patient = _start_then_join(exporter, emulator, starts="0.06", joins="10")
        listings = _job_pages(emulator)
        inside, _ = expected.split_scope(emulator.jobs(), time.time(), 24 * 3600.0)
    assert hurried.value("ams_up", account="a") == 0
    assert patient.value("ams_up", account="a") == 1
    assert {job.id for job in inside} <= set(patient.by_job("ams_job_priority", "a"))
    assert len(listings) == 1, "the patient caller joined the collection the hurried one started"


def _start_then_join(
    exporter: RunningExporter, listing: Emulator, *, starts: str, joins: str
) -> tuple[Scrape, Scrape]:
    """A scrape with timeout ``starts`` starts a collection; once ``listing`` has answered a job
    listing (the collection is under way), a scrape with timeout ``joins`` joins it. Both scrapes,
    the starter's first."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        starter = pool.submit(exporter.scrape, {"X-Prometheus-Scrape-Timeout-Seconds": starts})
        _wait_until_listing_started(listing)
        joiner = exporter.scrape(headers={"X-Prometheus-Scrape-Timeout-Seconds": joins})
        return starter.result(timeout=60), joiner


def _wait_until_listing_started(emulator: Emulator) -> None:
    """Bounded wait until the emulator has answered a job listing (it logs before answering)."""
    for _ in range(200):
        if any(r.path.rstrip("/").endswith("/Jobs") for r in emulator.request_log):
            return
        time.sleep(0.02)
    raise AssertionError("the collection never asked for jobs")


def test_a_filter_that_ams_refuses_costs_one_request_per_collection():
    with Emulator(jobs=30, seed=1, speed=0) as emulator:
        emulator.faults.add(Fault(kind="status", status=400, path="/Jobs"))
        with running_exporter({"a": emulator}) as exporter:
            _collect_once(exporter, emulator)
            scrape = exporter.scrape()
        listings = _job_pages(emulator)
    assert scrape.value("ams_up", account="a") == 0
    assert len(listings) == 1


def test_date_filter_refusal_falls_back_to_filtering_on_the_exporter(caplog):
    with Emulator(jobs=300, seed=6, speed=0) as emulator:
        with running_exporter({"a": emulator}) as normal:
            expected = normal.scrape()
        emulator.faults.add(Fault(kind="reject_datetime_filter"))
        with caplog.at_level(logging.WARNING), running_exporter({"a": emulator}) as exporter:
            first = exporter.scrape()
            second = exporter.scrape()
    assert first.value("ams_up", account="a") == 1
    assert second.value("ams_up", account="a") == 1
    assert set(first.by_job("ams_job_priority", "a")) == set(
        expected.by_job("ams_job_priority", "a")
    )
    assert first.value("ams_api_requests_total", account="a", api="ams", code="400") == 1
    assert second.value("ams_api_requests_total", account="a", api="ams", code="400") == 1
    warnings = [r for r in caplog.records if "datetime" in r.getMessage()]
    assert len(warnings) == 1


def test_finished_window_zero_exports_only_active_jobs():
    with Emulator(jobs=300, seed=8, speed=0) as emulator:
        active_only = {"jobs": {"finished_window": "0s"}}
        with running_exporter({"a": emulator}, {"a": active_only}) as exporter:
            scrape = exporter.scrape()
        active = {job.id for job in emulator.jobs() if job.state in (0, 1, 2, 6)}
    assert set(scrape.by_job("ams_job_priority", "a")) == active
    assert math.fsum(scrape.values("ams_jobs", account="a")) == len(active)


def test_name_prefix_and_ids_select_jobs_on_the_server():
    with Emulator(jobs=300, seed=9, speed=0) as emulator:
        jobs = [job for job in emulator.jobs() if job.state in (0, 1, 2, 6)]
        chosen = [job.id for job in jobs[:3]]
        prefix = jobs[0].name[:4]
        with running_exporter(
            {"ids": emulator, "prefix": emulator},
            {
                "ids": {"jobs": {"ids": chosen, "finished_window": "0s"}},
                "prefix": {"jobs": {"name_prefix": prefix, "finished_window": "0s"}},
            },
        ) as exporter:
            scrape = exporter.scrape()
    assert set(scrape.by_job("ams_job_priority", "ids")) == set(chosen)
    by_prefix = set(scrape.by_job("ams_job_priority", "prefix"))
    assert by_prefix == {job.id for job in jobs if job.name.startswith(prefix)}


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", api="aad", path="oauth2", status=503, count=1),
        Fault(kind="reset", api="aad", path="oauth2", count=1),
    ],
    ids=["aad-503", "aad-reset"],
)
def test_a_transient_azure_ad_failure_while_renewing_the_token_is_retried(fault):
    with Emulator(jobs=30, seed=2, speed=0) as emulator:
        with running_exporter({"a": emulator}) as exporter:
            exporter.scrape()
            emulator.expire_tokens()
            emulator.faults.add(fault)
            scrape = exporter.scrape()
        token_requests = [r.status for r in emulator.request_log if "oauth2" in r.path]
    assert scrape.value("ams_up", account="a") == 1
    assert token_requests[-2:] == [None if fault.kind == "reset" else 503, 200]


def test_concurrent_401s_after_a_revocation_cost_one_new_token():
    with Emulator(jobs=400, seed=7, speed=0) as emulator:
        moving = sum(1 for job in emulator.jobs() if job.state in (2, 6))
        assert moving >= 3, "the scenario should have several jobs whose tasks are read"
        with running_exporter({"a": emulator}) as exporter:
            _collect_once(exporter, emulator)
            emulator.faults.add(Fault(kind="latency", path="/Tasks", latency=1.0))
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                scrape = pool.submit(exporter.scrape)
                _wait_until_listing_started(emulator)
                time.sleep(0.3)  # the task requests are now waiting in the emulator
                emulator.revoke_tokens()
                result = scrape.result(timeout=60)
        rejected = [r for r in emulator.request_log if r.api == "ams" and r.status == 401]
        tokens = [r for r in emulator.request_log if "oauth2" in r.path and r.status == 200]
    assert result.value("ams_up", account="a") == 1
    assert len(rejected) >= 2, "several task requests should have been refused at once"
    assert len(tokens) == 1
