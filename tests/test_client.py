"""The AMS client against the emulator over HTTPS, with real MSAL tokens.

Each test sets up the emulator (jobs, faults), calls the client, and asserts on what came back and on
the emulator's request log: what was asked, with which headers, how many times.
"""

from __future__ import annotations

import dataclasses
import email.utils
import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from ams_emulator import EmuJob, Emulator, EmuTask, Fault
from ams_emulator.requestlog import RequestRecord
from exporter.ams.auth import token_provider_for
from exporter.ams.client import (
    ACCEPT_VERBOSE,
    JOB_FIELDS,
    PAGE_WINDOW,
    TASK_FIELDS,
    AmsClient,
    retry_after_seconds,
)
from exporter.ams.http import RequestCounter, UpstreamSession
from exporter.ams.model import Job, JobState, Task
from exporter.deadline import Deadline
from exporter.errors import (
    AmsApiError,
    AmsResponseError,
    AmsTransportError,
    AuthError,
    DeadlineExceeded,
)
from tests.support.wired import ACCOUNT, USER_AGENT, Wired, account_for, settle, wire

TOKEN_PATH = r"/oauth2/(v2\.0/)?token$"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(jobs=2345, seed=3, speed=0.0) as emulator:
        yield emulator


@pytest.fixture
def wired(fresh: Emulator) -> Iterator[Wired]:
    w = wire(account_for(fresh))
    yield w
    w.client.close()


def ams_requests(emu: Emulator, path: str = "/api/Jobs") -> list[RequestRecord]:
    return [r for r in emu.request_log if r.api == "ams" and r.path == path]


def ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def deadline() -> Deadline:
    return Deadline.after(20.0)


class TestListing:
    def test_every_job_is_read_across_pages_with_its_values(
        self, fresh: Emulator, wired: Wired
    ) -> None:
        jobs = wired.client.list_jobs(None, deadline())
        expected = {j.id: j for j in fresh.jobs()}
        assert len(expected) == 2345
        assert len(jobs) == len({j.id for j in jobs}) == 2345
        assert {j.id for j in jobs} == set(expected)
        for job in jobs:
            assert_job_matches(job, expected[job.id])

    def test_pages_are_top_1000_with_skip_and_select(self, fresh: Emulator, wired: Wired) -> None:
        wired.client.list_jobs(None, deadline())
        settle(fresh, wired.counter)
        records = ams_requests(fresh)
        assert [int(r.query["$skip"]) for r in records] == [0, 1000, 2000]
        for record in records:
            assert record.query["$top"] == "1000"
            assert record.query["$select"] == ",".join(JOB_FIELDS)
            assert "$filter" not in record.query
            assert record.status == 200

    def test_a_repeated_listing_fetches_its_known_pages_at_once(
        self, fresh: Emulator, wired: Wired
    ) -> None:
        cutoff = "State eq 3 or LastModified ge datetime'2020-01-01T00:00:00'"
        wired.client.list_jobs(cutoff, deadline())
        # The next collection moves the date; the listing is still the same one. The page that
        # reaches the emulator first is held back 2 s: read one after the other, it would be
        # logged first; fetched together, the other pages are answered meanwhile.
        fresh.faults.add(Fault("latency", latency=2.0, count=1, path="^/api/Jobs$"))
        jobs = wired.client.list_jobs(cutoff.replace("2020", "2021"), deadline())
        settle(fresh, wired.counter)
        second = ams_requests(fresh)[3:]
        assert sorted(int(r.query["$skip"]) for r in second) == [0, 1000, 2000]
        assert [r.fault for r in second] == [None, None, "latency"]
        assert len(jobs) == len({j.id for j in jobs})

    def test_every_request_carries_the_documented_headers(
        self, fresh: Emulator, wired: Wired
    ) -> None:
        wired.client.list_jobs(None, deadline())
        settle(fresh, wired.counter)
        records = ams_requests(fresh)
        for record in records:
            headers = record.headers
            assert headers["authorization"] == "Bearer"
            assert headers["x-ms-version"] == "2.19"
            assert headers["dataserviceversion"] == "3.0"
            assert headers["maxdataserviceversion"] == "3.0"
            assert headers["accept"] == "application/json"
            assert headers["user-agent"] == USER_AGENT
            uuid.UUID(headers["x-ms-client-request-id"])
        request_ids = {r.headers["x-ms-client-request-id"] for r in records}
        assert len(request_ids) == len(records)

    def test_filter_is_sent_as_given_and_applied(self, fresh: Emulator, wired: Wired) -> None:
        jobs = wired.client.list_jobs("State eq 3 and startswith(Name,'a''b') eq false", deadline())
        expected = {j.id for j in fresh.jobs() if j.state == 3}
        assert {j.id for j in jobs} == expected
        assert all(j.state is JobState.FINISHED for j in jobs)
        settle(fresh, wired.counter)
        (first, *_) = ams_requests(fresh)
        assert first.query["$filter"] == "State eq 3 and startswith(Name,'a''b') eq false"

    def test_verbose_json_gives_the_same_jobs(self, fresh: Emulator) -> None:
        minimal, verbose = wire(account_for(fresh)), wire(account_for(fresh), accept=ACCEPT_VERBOSE)
        try:
            from_minimal = minimal.client.list_jobs(None, deadline())
            from_verbose = verbose.client.list_jobs(None, deadline())
        finally:
            minimal.client.close()
            verbose.client.close()
        assert sorted(from_verbose, key=by_id) == sorted(from_minimal, key=by_id)
        settle(fresh, minimal.counter, verbose.counter)
        accepts = {r.headers["accept"] for r in ams_requests(fresh)}
        assert accepts == {"application/json", ACCEPT_VERBOSE}

    def test_verbose_json_with_wcf_dates_gives_the_service_values(self) -> None:
        with Emulator(jobs=60, seed=8, speed=0.0, verbose_date_format="msdate") as emu:
            w = wire(account_for(emu), accept=ACCEPT_VERBOSE)
            try:
                jobs = w.client.list_jobs(None, deadline())
                with_tasks = next(j for j in emu.jobs() if j.tasks)
                tasks = w.client.list_tasks(with_tasks.id, deadline())
            finally:
                w.client.close()
            expected = {j.id: j for j in emu.jobs()}
            assert {j.id for j in jobs} == set(expected)
            for job in jobs:
                assert_job_matches(job, expected[job.id])
            assert_tasks_match(tasks, with_tasks.tasks)

    def test_a_repeated_job_is_listed_once(self, fresh: Emulator, wired: Wired) -> None:
        fresh.faults.add(Fault("repeat_page", count=1))
        jobs = wired.client.list_jobs(None, deadline())
        assert len(jobs) == len({j.id for j in jobs})
        # The repeated job pushes one job off the end of its page: paging by $skip loses it, as
        # it would on the real service when a job is inserted mid-listing.
        assert {j.id for j in jobs} <= {j.id for j in fresh.jobs()}
        assert len(jobs) == len(fresh.jobs()) - 1
        settle(fresh, wired.counter)
        assert any(r.fault == "repeat_page" for r in ams_requests(fresh))


class TestTasks:
    def test_tasks_of_a_job_with_select_and_encoded_id(self, fresh: Emulator, wired: Wired) -> None:
        job = next(j for j in fresh.jobs() if len(j.tasks) >= 2)
        tasks = wired.client.list_tasks(job.id, deadline())
        assert_tasks_match(tasks, job.tasks)
        settle(fresh, wired.counter)
        (record,) = ams_requests(fresh, f"/api/Jobs('{job.id}')/Tasks")
        assert record.query == {"$select": ",".join(TASK_FIELDS)}

    def test_tasks_of_many_jobs_and_a_vanished_one(self, fresh: Emulator, wired: Wired) -> None:
        jobs = fresh.jobs()[:20]
        gone = "nb:jid:UUID:00000000-0000-4000-8000-000000000000"
        results = wired.client.list_tasks_many([*(j.id for j in jobs), gone], deadline())
        assert results[gone] == []
        for job in jobs:
            tasks = results[job.id]
            assert isinstance(tasks, list)
            assert_tasks_match(tasks, job.tasks)
        assert wired.count("ams", "404") == 1

    def test_one_failing_job_does_not_hide_the_others(self, fresh: Emulator, wired: Wired) -> None:
        first, second = fresh.jobs()[:2]
        fresh.faults.add(Fault("status", status=403, path=f"Jobs\\('{first.id}'\\)"))
        results = wired.client.list_tasks_many([first.id, second.id], deadline())
        failure = results[first.id]
        assert isinstance(failure, AmsApiError) and failure.status == 403
        assert isinstance(results[second.id], list)

    def test_tasks_not_read_by_the_deadline_are_reported_per_job(
        self, fresh: Emulator, wired: Wired
    ) -> None:
        wired.client.list_jobs("State eq 2", deadline())  # token and connections ready
        jobs = [j.id for j in fresh.jobs()[:3]]
        fresh.faults.add(Fault("latency", latency=30.0, path="/Tasks$"))
        results = wired.client.list_tasks_many(jobs, Deadline.after(1.0))
        assert set(results) == set(jobs)
        for outcome in results.values():
            assert isinstance(outcome, (DeadlineExceeded, AmsTransportError))


class TestEndpoint:
    def test_legacy_root_is_resolved_once_and_keeps_authorization(self, fresh: Emulator) -> None:
        # The emulator's legacy root (localhost) redirects to its account host, 127.0.0.1.
        w = wire(account_for(fresh, endpoint=fresh.legacy_endpoint, redirect_hosts=("127.0.0.1",)))
        try:
            first = w.client.list_jobs("State eq 2", deadline())
            second = w.client.list_jobs("State eq 2", deadline())
        finally:
            w.client.close()
        assert {j.id for j in first} == {j.id for j in second}
        settle(fresh, w.counter)
        roots = [r for r in fresh.request_log if r.api == "ams" and r.path == "/"]
        assert len(roots) == 1
        assert roots[0].status == 301
        assert roots[0].headers["authorization"] == "Bearer"
        jobs_requests = ams_requests(fresh)
        assert len(jobs_requests) == 2
        assert all(r.headers["authorization"] == "Bearer" for r in jobs_requests)
        assert all(r.status == 200 for r in jobs_requests)

    @pytest.mark.parametrize("allowed", [(), ("*.cloudapp.net",), ("127.0.0.2", "localhost")])
    def test_a_redirect_to_a_host_outside_the_cloud_and_redirect_hosts_is_refused(
        self, fresh: Emulator, allowed: tuple[str, ...]
    ) -> None:
        account = account_for(fresh, endpoint=fresh.legacy_endpoint, redirect_hosts=allowed)
        w = wire(account)
        try:
            with pytest.raises(AmsApiError, match="redirect_hosts") as info:
                w.client.list_jobs(None, deadline())
        finally:
            w.client.close()
        assert "'127.0.0.1'" in str(info.value), "the error names the refused host"
        assert info.value.code == "RedirectRefused"
        settle(fresh, w.counter)
        assert not ams_requests(fresh), "nothing, and so no token, went to the refused host"

    def test_redirect_loop_is_an_error_naming_it(self, fresh: Emulator) -> None:
        fresh.faults.add(Fault("redirect_loop"))
        w = wire(account_for(fresh, endpoint=fresh.legacy_endpoint))
        try:
            with pytest.raises(AmsApiError, match="redirects in a loop") as info:
                w.client.list_jobs(None, deadline())
        finally:
            w.client.close()
        assert info.value.status == 301
        settle(fresh, w.counter)
        assert len(fresh.request_log) <= 4


class TestTransport:
    def test_tls_is_verified_against_the_account_ca_only(self, fresh: Emulator) -> None:
        account = account_for(fresh)
        counter = RequestCounter()
        aad = UpstreamSession(ACCOUNT, "aad", counter, account.ca_file, 5.0, USER_AGENT)
        # No ca_file: the system trust store, which does not know the emulator's CA.
        ams = UpstreamSession(ACCOUNT, "ams", counter, None, 5.0, USER_AGENT)
        client = AmsClient(account, token_provider_for(account, aad), ams)
        try:
            with pytest.raises(AmsTransportError, match="SSLError"):
                client.list_jobs(None, deadline())
        finally:
            client.close()
        assert counter.snapshot()[(ACCOUNT, "ams", "error")] == 1  # not retried
        assert not ams_requests(fresh)

    def test_verification_cannot_be_switched_off_per_request(self, fresh: Emulator) -> None:
        counter = RequestCounter()
        session = UpstreamSession(ACCOUNT, "ams", counter, None, 5.0, USER_AGENT)
        with session, pytest.raises(requests.exceptions.SSLError):
            session.get(fresh.account_endpoint, verify=False)
        assert counter.snapshot() == {(ACCOUNT, "ams", "error"): 1}

    @pytest.mark.parametrize(
        ("header", "seconds"),
        [(None, 0.0), ("", 0.0), ("3", 3.0), ("soon", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
    )
    def test_retry_after_values(self, header: str | None, seconds: float) -> None:
        assert retry_after_seconds(header) == seconds

    def test_retry_after_as_a_future_http_date(self) -> None:
        future = email.utils.formatdate(time.time() + 30, usegmt=True)
        assert 20.0 < retry_after_seconds(future) <= 30.0


class TestRetries:
    @pytest.mark.parametrize(
        ("fault", "code"),
        [
            (Fault("status", status=503, count=2), "503"),
            (Fault("status", status=500, count=1), "500"),
            (Fault("status", status=502, count=1), "502"),
            (Fault("status", status=429, retry_after=1, count=1), "429"),
            (Fault("reset", count=2), "error"),
            (Fault("truncated", count=1), "200"),
        ],
        ids=["503-busy", "500", "502", "429-retry-after", "reset", "truncated"],
    )
    def test_transient_failure_is_retried_and_counted(
        self, fresh: Emulator, wired: Wired, fault: Fault, code: str
    ) -> None:
        fresh.faults.add(dataclasses.replace(fault, path="^/api/Jobs$"))
        jobs = wired.client.list_jobs("State eq 2", deadline())
        assert {j.id for j in jobs} == {j.id for j in fresh.jobs() if j.state == 2}
        settle(fresh, wired.counter)
        records = ams_requests(fresh)
        faulted = [r for r in records if r.fault]
        assert len(faulted) == fault.count
        assert len(records) == fault.count + 1
        assert wired.count("ams", code) >= fault.count
        assert wired.count("ams", "200") >= 1

    def test_retries_stop_after_four(self, fresh: Emulator, wired: Wired) -> None:
        fresh.faults.add(Fault("status", status=503, path="^/api/Jobs$"))
        with pytest.raises(AmsApiError, match="Server is busy") as info:
            wired.client.list_jobs(None, deadline())
        assert info.value.status == 503
        assert info.value.retryable
        settle(fresh, wired.counter)
        assert len(ams_requests(fresh)) == 5
        assert wired.count("ams", "503") == 5

    @pytest.mark.parametrize("status", [400, 403, 404])
    def test_client_errors_are_not_retried(
        self, fresh: Emulator, wired: Wired, status: int
    ) -> None:
        fresh.faults.add(Fault("status", status=status, path="^/api/Jobs$"))
        with pytest.raises(AmsApiError) as info:
            wired.client.list_jobs(None, deadline())
        assert info.value.status == status
        assert not info.value.retryable
        settle(fresh, wired.counter)
        assert len(ams_requests(fresh)) == 1
        assert wired.count("ams", str(status)) == 1

    def test_retry_after_beyond_the_deadline_gives_up_at_once(
        self, fresh: Emulator, wired: Wired
    ) -> None:
        fresh.faults.add(Fault("status", status=429, retry_after=120, path="^/api/Jobs$"))
        with pytest.raises(AmsApiError) as info:
            wired.client.list_jobs(None, Deadline.after(10.0))
        assert info.value.status == 429
        settle(fresh, wired.counter)
        assert len(ams_requests(fresh)) == 1


class TestTokens:
    def test_revoked_token_gives_one_401_then_a_new_token(
        self, fresh: Emulator, wired: Wired
    ) -> None:
        wired.client.list_jobs("State eq 2", deadline())
        token_requests = wired.count("aad", "200")
        fresh.revoke_tokens()
        wired.client.list_jobs("State eq 2", deadline())
        settle(fresh, wired.counter)
        assert [r.status for r in ams_requests(fresh)] == [200, 401, 200]
        assert wired.count("aad", "200") == token_requests + 1

    def test_a_persistent_401_is_retried_once_only(self, fresh: Emulator, wired: Wired) -> None:
        fresh.faults.add(Fault("status", status=401, path="^/api/Jobs$"))
        with pytest.raises(AmsApiError) as info:
            wired.client.list_jobs(None, deadline())
        assert info.value.status == 401
        settle(fresh, wired.counter)
        assert len(ams_requests(fresh)) == 2


class TestBadResponses:
    def test_latency_beyond_the_deadline(self, fresh: Emulator, wired: Wired) -> None:
        wired.client.list_jobs("State eq 2", deadline())  # token and connection ready
        fresh.clear_log()
        fresh.faults.add(Fault("latency", latency=30.0, path="^/api/Jobs$"))
        with pytest.raises((DeadlineExceeded, AmsTransportError)):
            wired.client.list_jobs(None, Deadline.after(1.0))
        assert len(ams_requests(fresh)) <= 1

    def test_slow_drip_body_does_not_outlive_the_deadline(
        self, fresh: Emulator, wired: Wired
    ) -> None:
        wired.client.list_jobs("State eq 2", deadline())
        fresh.faults.add(Fault("slow_drip", drip_bytes=16, drip_interval=0.05, path="^/api/Jobs$"))
        with pytest.raises(DeadlineExceeded):
            wired.client.list_jobs(None, Deadline.after(1.5))

    def test_dripping_headers_do_not_outlive_the_deadline_and_leave_nothing_held(
        self, fresh: Emulator, wired: Wired
    ) -> None:
        """Each header byte restarts a socket timeout; only the deadline bounds the exchange."""
        wired.client.list_jobs("State eq 2", deadline())
        fresh.faults.add(Fault("slow_headers", drip_bytes=1, drip_interval=0.2))
        # As many failed listings as the client has page workers: a worker still held by its
        # drip (a minute of headers) would leave none for the listing after recovery.
        for _ in range(PAGE_WINDOW):
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                wired.client.list_jobs(None, Deadline.after(1.0))
            assert time.monotonic() - started < 3.0
        fresh.faults.clear()
        jobs = wired.client.list_jobs("State eq 2", Deadline.after(5.0))
        assert {j.id for j in jobs} == {j.id for j in fresh.jobs() if j.state == 2}

    def test_a_token_endpoint_dripping_headers_releases_the_token_lock_at_the_deadline(
        self, fresh: Emulator
    ) -> None:
        fresh.faults.add(
            Fault("slow_headers", api="aad", path=TOKEN_PATH, drip_bytes=1, drip_interval=0.2)
        )
        w = wire(account_for(fresh))
        try:
            started = time.monotonic()
            with pytest.raises((DeadlineExceeded, AuthError)):
                w.client.list_jobs("State eq 2", Deadline.after(1.5))
            assert time.monotonic() - started < 4.0
            fresh.faults.clear()
            jobs = w.client.list_jobs("State eq 2", Deadline.after(5.0))
        finally:
            w.client.close()
        assert {j.id for j in jobs} == {j.id for j in fresh.jobs() if j.state == 2}

    def test_huge_body_is_refused(self, fresh: Emulator, wired: Wired) -> None:
        fresh.faults.add(Fault("huge", size=64 * 1024 * 1024, count=1))
        with pytest.raises(AmsResponseError, match="exceeds 33554432 bytes"):
            wired.client.list_jobs(None, deadline())
        settle(fresh, wired.counter)
        assert len(ams_requests(fresh)) == 1

    def test_malformed_json(self, fresh: Emulator, wired: Wired) -> None:
        fresh.faults.add(Fault("malformed_json", count=1, path="^/api/Jobs$"))
        with pytest.raises(AmsResponseError, match="not valid JSON") as info:
            wired.client.list_jobs(None, deadline())
        assert len(str(info.value)) < 300

    def test_wrong_shape(self, fresh: Emulator, wired: Wired) -> None:
        fresh.faults.add(Fault("wrong_shape", count=1, path="^/api/Jobs$"))
        with pytest.raises(AmsResponseError, match="job page at \\$skip=0"):
            wired.client.list_jobs(None, deadline())

    def test_recovers_when_the_fault_clears(self, fresh: Emulator, wired: Wired) -> None:
        fresh.faults.add(Fault("malformed_json", path="^/api/Jobs$"))
        with pytest.raises(AmsResponseError):
            wired.client.list_jobs("State eq 2", deadline())
        fresh.faults.clear()
        jobs = wired.client.list_jobs("State eq 2", deadline())
        assert {j.id for j in jobs} == {j.id for j in fresh.jobs() if j.state == 2}


def by_id(job: Job) -> str:
    return job.id


def assert_job_matches(job: Job, e: EmuJob) -> None:
    assert job.name == (e.name or "")
    assert int(job.state) == e.state
    assert job.created == pytest.approx(ts(e.created), abs=1e-3)
    assert job.last_modified == pytest.approx(ts(e.last_modified), abs=1e-3)
    assert job.start_time == pytest.approx(ts(e.start_time), abs=1e-3)
    assert job.end_time == pytest.approx(ts(e.end_time), abs=1e-3)
    assert job.priority == e.priority
    assert job.running_duration_seconds == pytest.approx(e.running_duration_ms / 1000)


def assert_tasks_match(tasks: list[Task], emu_tasks: list[EmuTask]) -> None:
    by_task = {t.id: t for t in tasks}
    assert set(by_task) == {t.id for t in emu_tasks}
    for e in emu_tasks:
        task = by_task[e.id]
        assert task.name == (e.name or "")
        assert task.state == e.state
        assert task.progress == pytest.approx(e.progress)
        assert task.running_duration_seconds == pytest.approx(e.running_duration_ms / 1000)
        assert task.start_time == pytest.approx(ts(e.start_time), abs=1e-3)
        assert task.end_time == pytest.approx(ts(e.end_time), abs=1e-3)
        codes = tuple(d["Code"] for d in e.error_details)
        assert task.error_codes == codes
