"""Every metric of the contract, checked against values derived independently from the emulator."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from ams_emulator import Emulator
from exporter import __version__
from tests.support.expected import STATE_NAMES, ExpectedJob, split_scope
from tests.support.harness import RunningExporter, Scrape, running_exporter

DAY = 86400.0


@pytest.fixture(scope="module")
def frozen_emulator() -> Emulator:
    """A living scenario stopped in time, so that what the test reads is what the exporter read."""
    with Emulator(jobs=400, seed=7, speed=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def exporter(frozen_emulator: Emulator) -> RunningExporter:
    with running_exporter({"main": frozen_emulator}) as running:
        yield running


@pytest.fixture(scope="module")
def scraped(exporter: RunningExporter) -> tuple[Scrape, float, float]:
    before = time.time()
    scrape = exporter.scrape()
    after = time.time()
    assert scrape.status == 200
    return scrape, before, after


def _collection_time(scrape: Scrape) -> float:
    """Created + age is the collection time; it must be one instant for every job."""
    ages = scrape.by_job("ams_job_age_seconds", "main")
    created = scrape.by_job("ams_job_created_timestamp_seconds", "main")
    instants = {round(created[job_id] + ages[job_id], 3) for job_id in ages}
    assert len(instants) == 1, f"age + created differs between jobs: {sorted(instants)[:5]}"
    return instants.pop()


def test_exported_jobs_are_exactly_the_jobs_in_scope(frozen_emulator, scraped):
    scrape, before, after = scraped
    now = _collection_time(scrape)
    assert before - 1 <= now <= after
    inside, outside = split_scope(frozen_emulator.jobs(), now, DAY)
    exported = set(scrape.by_job("ams_job_created_timestamp_seconds", "main"))
    assert {job.id for job in inside} <= exported
    assert not {job.id for job in outside} & exported
    assert len(inside) > 20, "the scenario should leave plenty of jobs in scope"


def test_job_values_follow_the_emulator(frozen_emulator, scraped):
    scrape, _, _ = scraped
    now = _collection_time(scrape)
    inside, _ = split_scope(frozen_emulator.jobs(), now, DAY)
    for job in inside:
        expected = ExpectedJob(job, now)
        labels = {"account": "main", "job_id": job.id}
        assert scrape.value("ams_job_created_timestamp_seconds", **labels) == pytest.approx(
            expected.created(), abs=1e-3
        )
        assert scrape.values("ams_job_start_timestamp_seconds", **labels) == (
            [pytest.approx(job.start_time.timestamp(), abs=1e-3)] if job.start_time else []
        )
        assert scrape.values("ams_job_end_timestamp_seconds", **labels) == (
            [pytest.approx(job.end_time.timestamp(), abs=1e-3)] if job.end_time else []
        )
        assert scrape.value("ams_job_priority", **labels) == job.priority
        assert scrape.value("ams_job_queued_duration_seconds", **labels) == pytest.approx(
            expected.queued(), abs=1e-2
        )
        assert scrape.value("ams_job_running_duration_seconds", **labels) == pytest.approx(
            expected.running(), abs=1e-2
        )
        progress = expected.progress()
        assert scrape.values("ams_job_progress_ratio", **labels) == (
            [] if progress is None else [pytest.approx(progress, abs=1e-9)]
        )


def test_state_is_a_state_set(frozen_emulator, scraped):
    scrape, _, _ = scraped
    now = _collection_time(scrape)
    inside, _ = split_scope(frozen_emulator.jobs(), now, DAY)
    for job in inside:
        states = {
            s.labels["state"]: s.value
            for s in scrape.samples
            if s.name == "ams_job_state" and s.labels["job_id"] == job.id
        }
        assert states == {name: float(name == STATE_NAMES[job.state]) for name in STATE_NAMES}


def test_names_with_quotes_backslashes_newlines_and_chinese_survive_escaping(
    frozen_emulator, scraped
):
    scrape, _, _ = scraped
    names = {
        s.labels["job_id"]: s.labels["job_name"]
        for s in scrape.samples
        if s.name == "ams_job_priority"
    }
    emulated = {job.id: job.name for job in frozen_emulator.jobs()}
    for job_id, name in names.items():
        assert name == emulated[job_id]
    hard = [n for n in names.values() if any(c in n for c in '"\\\n') or not n.isascii()]
    assert hard, "the scenario should put names with hard characters in scope"


def test_task_progress_and_error_codes(frozen_emulator, scraped):
    scrape, _, _ = scraped
    now = _collection_time(scrape)
    inside, _ = split_scope(frozen_emulator.jobs(), now, DAY)
    errors_seen = 0
    for job in inside:
        labels = {"account": "main", "job_id": job.id}
        tasks = {
            s.labels["task_id"]: s.value
            for s in scrape.samples
            if s.name == "ams_task_progress_ratio" and s.labels["job_id"] == job.id
        }
        if job.state in (2, 4, 6):
            assert tasks == {t.id: pytest.approx(t.progress / 100.0) for t in job.tasks}
        else:
            assert tasks == {}
        codes = {
            (s.labels["task_id"], s.labels["code"])
            for s in scrape.samples
            if s.name == "ams_job_error_info" and s.labels["job_id"] == job.id
        }
        assert codes == ExpectedJob(job, now).error_codes()
        errors_seen += bool(codes)
        assert all(v == 1 for v in scrape.values("ams_job_error_info", **labels))
    assert errors_seen, "the scenario should have failed jobs in scope"


def test_account_metrics(frozen_emulator, scraped):
    scrape, before, after = scraped
    now = _collection_time(scrape)
    inside, _ = split_scope(frozen_emulator.jobs(), now, DAY)
    counts = Counter(STATE_NAMES[job.state] for job in inside)
    for state in STATE_NAMES:
        exported = scrape.value("ams_jobs", account="main", state=state)
        # Jobs at the window's edge may go either way; everything else must match.
        assert counts[state] <= exported <= counts[state] + 2
    assert scrape.value("ams_up", account="main") == 1
    assert scrape.value("ams_jobs_dropped", account="main") == 0
    assert before <= scrape.value("ams_last_success_timestamp_seconds", account="main") <= after
    assert 0 < scrape.value("ams_collection_duration_seconds", account="main") <= after - before
    assert scrape.value("ams_exporter_build_info", version=__version__) == 1


def _entity_set(path: str) -> str:
    """The entity set a request read: ``Jobs``, ``Tasks`` (of one job), ``MediaProcessors`` ..."""
    return path.rstrip("/").rsplit("/", 1)[-1].partition("(")[0]


@pytest.mark.parametrize("tasks", [True, False], ids=["tasks", "no-tasks"])
def test_a_first_collection_makes_the_requests_of_the_formula(frozen_emulator, tasks):
    """docs/scaling.md's first(account): the first token (the authority's OpenID configuration,
    then the token), one page of jobs, the tasks of every job that is Processing, Canceling or in
    Error, and one read of each capacity set; without tasks, no MediaProcessors either."""
    frozen_emulator.clear_log()
    with running_exporter({"main": frozen_emulator}, {"main": {"jobs": {"tasks": tasks}}}) as fresh:
        scrape = fresh.scrape()
    served = list(frozen_emulator.request_log)
    assert {r.status for r in served} == {200}

    jobs = frozen_emulator.jobs()
    inside, outside = split_scope(jobs, _collection_time(scrape), DAY)
    assert len(inside) < 1000, "one page of jobs"
    read_in = {job.id for job in jobs if job.state in (2, 4, 6)}  # Processing, Error, Canceling
    wanted = read_in & {job.id for job in inside}
    at_the_edge = read_in - wanted - {job.id for job in outside}
    tasks_of = {r.path.split("'")[1] for r in served if _entity_set(r.path) == "Tasks"}
    expected = {"Jobs": 1, "EncodingReservedUnitTypes": 1}
    if tasks:
        assert wanted <= tasks_of <= wanted | at_the_edge
        expected |= {"Tasks": len(tasks_of), "MediaProcessors": 1}
    else:
        assert not tasks_of
    ams = [r for r in served if r.api == "ams"]
    assert Counter(_entity_set(r.path) for r in ams) == expected
    assert [_entity_set(r.path) for r in served if r.api == "aad"] == [
        "openid-configuration",
        "token",
    ]
    assert scrape.value("ams_api_requests_total", account="main", api="ams", code="200") == len(ams)
    assert scrape.value("ams_api_requests_total", account="main", api="aad", code="200") == 2


def test_one_scrape_asks_for_one_page_and_the_tasks_of_moving_jobs(exporter, frozen_emulator):
    exporter.scrape()  # tasks of jobs in Error are fetched once, then remembered
    frozen_emulator.clear_log()
    # Well within jobs.capacity_interval and the hour of the media processors: neither capacity
    # set is read again.
    before = exporter.scrape()
    upstream = [r for r in frozen_emulator.request_log if r.api == "ams"]
    after = exporter.scrape()
    moving = sum(1 for job in frozen_emulator.jobs() if job.state in (2, 6))
    assert [r.status for r in upstream] == [200] * (1 + moving)
    assert sum(1 for r in upstream if r.path.rstrip("/").endswith("/Jobs")) == 1
    counted = [
        scrape.value("ams_api_requests_total", account="main", api="ams", code="200")
        for scrape in (before, after)
    ]
    assert counted[1] - counted[0] == len(upstream)
    assert before.value("ams_api_requests_total", account="main", api="aad", code="200") >= 1
