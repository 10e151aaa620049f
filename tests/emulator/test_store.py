"""The job store: queries over the live population (order, paging, the 1000 cap, copies) and
the controls tests use to put jobs in a given state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from ams_emulator.clock import Clock
from ams_emulator.entities import EmuJob, JobState
from ams_emulator.query import QueryOptions, parse_query
from ams_emulator.scenario import ScenarioConfig
from ams_emulator.store import JobStore

UTC = timezone.utc
START = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def big() -> JobStore:
    """2,500 jobs on a frozen clock: enough for several pages. Read-only."""
    return JobStore(ScenarioConfig(seed=21, jobs=2500), Clock(START, speed=0))


@pytest.fixture
def store() -> tuple[JobStore, Clock]:
    """A small store of its own, on a frozen clock."""
    clock = Clock(START, speed=0)
    return JobStore(ScenarioConfig(seed=22, jobs=50), clock), clock


def ids(jobs: list[EmuJob]) -> list[str]:
    return [job.id for job in jobs]


def query(store: JobStore, **params: str) -> list[EmuJob]:
    renamed = {f"${name}": value for name, value in params.items()}
    return store.list_jobs(parse_query(renamed, "Jobs"))


# --- order and paging ---------------------------------------------------------------------------


def test_default_order_is_by_id_and_one_answer_holds_at_most_1000(big: JobStore) -> None:
    everything = sorted(ids(big.snapshot()))
    first = big.list_jobs(QueryOptions())
    assert ids(first) == everything[:1000]


def test_top_above_1000_is_cut_to_1000(big: JobStore) -> None:
    assert len(query(big, top="5000")) == 1000
    assert len(query(big, top="1001")) == 1000
    assert len(query(big, top="999")) == 999
    assert query(big, top="0") == []


def test_skip_top_pages_cover_every_job_once(big: JobStore) -> None:
    pages = [query(big, skip=str(skip), top="1000") for skip in (0, 1000, 2000, 3000)]
    assert [len(page) for page in pages] == [1000, 1000, 500, 0]
    assert [job.id for page in pages for job in page] == sorted(ids(big.snapshot()))


def test_filter_then_skip_then_top(big: JobStore) -> None:
    expected = [job.id for job in big.snapshot() if job.state == JobState.FINISHED]
    assert len(expected) > 1500
    page = query(big, filter="State eq 3", skip="1000", top="300")
    assert ids(page) == expected[1000:1300]


DAY_BEFORE = datetime(2024, 5, 31, 8, tzinfo=UTC)
MIDNIGHT = datetime(2024, 6, 1, tzinfo=UTC)
FILTERS: list[tuple[str, Callable[[EmuJob], bool]]] = [
    ("State eq 4", lambda j: j.state == 4),
    ("State ne 3 and Priority gt 0", lambda j: j.state != 3 and j.priority > 0),
    (
        "startswith(Name,'ingest-') or endswith(Name,'.mov')",
        lambda j: (j.name or "").startswith("ingest-") or (j.name or "").endswith(".mov"),
    ),
    ("EndTime eq null", lambda j: j.end_time is None),
    (
        "Created ge datetime'2024-05-31T08:00:00' and Created lt datetime'2024-06-01T00:00:00Z'",
        lambda j: DAY_BEFORE <= j.created < MIDNIGHT,
    ),
    ("RunningDuration gt 600000", lambda j: j.running_duration_ms > 600000),
    (
        "substringof('\"',Name) or substringof('''',Name)",
        lambda j: '"' in (j.name or "") or "'" in (j.name or ""),
    ),
]


@pytest.mark.parametrize(("text", "predicate"), FILTERS, ids=[text for text, _ in FILTERS])
def test_filters_select_what_python_selects(
    big: JobStore, text: str, predicate: Callable[[EmuJob], bool]
) -> None:
    expected = [job.id for job in big.snapshot() if predicate(job)][:1000]
    assert expected, "the filter should match something"
    assert ids(query(big, filter=text)) == expected


def test_orderby_with_id_as_the_tie_break(big: JobStore) -> None:
    jobs = big.snapshot()
    expected = sorted(jobs, key=lambda j: j.id)
    expected.sort(key=lambda j: j.created, reverse=True)
    expected.sort(key=lambda j: j.priority, reverse=True)
    got = query(big, orderby="Priority desc,Created desc", top="1000", skip="10")
    assert ids(got) == ids(expected)[10:1010]


def test_orderby_puts_nulls_first_ascending_and_last_descending(big: JobStore) -> None:
    ascending = query(big, orderby="EndTime", top="1000")
    nulls = sum(1 for job in big.snapshot() if job.end_time is None)
    assert 0 < nulls < 1000
    assert all(job.end_time is None for job in ascending[:nulls])
    ends = [job.end_time for job in ascending[nulls:]]
    assert all(isinstance(e, datetime) for e in ends)
    assert ends == sorted(e for e in ends if e is not None)
    descending = query(big, orderby="EndTime desc", skip=str(len(big.snapshot()) - nulls))
    assert [job.end_time for job in descending] == [None] * nulls


def test_orderby_name_is_ordinal(big: JobStore) -> None:
    got = [job.name for job in query(big, orderby="Name", top="50")]
    assert got == sorted(got, key=lambda n: (n is not None, n))


def test_answers_are_copies(big: JobStore) -> None:
    first = query(big, top="1")[0]
    first.state = 99
    again = query(big, top="1")[0]
    assert again.state != 99
    whole = big.get_job(first.id)
    assert whole is not None
    whole.tasks[0].progress = -1.0
    fresh = big.get_job(first.id)
    assert fresh is not None and fresh.tasks[0].progress >= 0.0


def test_job_pages_leave_out_the_tasks_a_jobs_answer_never_shows(big: JobStore) -> None:
    page = query(big, top="50")
    assert page and all(job.tasks == [] for job in page)
    whole = {job.id: job for job in big.snapshot()}
    assert all(whole[job.id].tasks for job in page)
    for job in page:  # everything else is the job as stored
        whole[job.id].tasks = []
        assert job == whole[job.id]


# --- single entities and tasks -------------------------------------------------------------------


def test_get_job_and_task(big: JobStore) -> None:
    job = big.snapshot()[0]
    assert big.get_job(job.id) == job
    assert big.get_task(job.tasks[0].id) == job.tasks[0]
    assert big.get_job("nb:jid:UUID:00000000-0000-4000-8000-000000000000") is None
    assert big.get_task("nb:tid:UUID:00000000-0000-4000-8000-000000000000") is None


def test_tasks_of_a_job_in_id_order(big: JobStore) -> None:
    job = next(j for j in big.snapshot() if len(j.tasks) == 3)
    tasks = big.list_tasks(QueryOptions(), job_id=job.id)
    assert [t.id for t in tasks] == sorted(t.id for t in job.tasks)
    selected = big.list_tasks(parse_query({"$filter": "Progress eq 100"}, "Tasks"), job.id)
    assert [t.id for t in selected] == sorted(t.id for t in job.tasks if t.progress == 100.0)


def test_tasks_of_an_unknown_job_raise_key_error(big: JobStore) -> None:
    with pytest.raises(KeyError, match="no job with Id 'nb:jid:UUID:nope'"):
        big.list_tasks(QueryOptions(), job_id="nb:jid:UUID:nope")


def test_all_tasks_are_paged_like_jobs(big: JobStore) -> None:
    every = sorted(task.id for job in big.snapshot() for task in job.tasks)
    assert len(every) > 2000
    page = big.list_tasks(parse_query({"$skip": "1000", "$top": "2000"}, "Tasks"))
    assert [task.id for task in page] == every[1000:2000]
    errors = big.list_tasks(parse_query({"$filter": "State eq 4"}, "Tasks"))
    assert errors and all(task.error_details for task in errors)


# --- test controls -----------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(JobState))
def test_add_job_in_any_state_is_consistent(store: tuple[JobStore, Clock], state: JobState) -> None:
    jobs, clock = store
    created = START - timedelta(minutes=30)
    job_id = jobs.add_job(name="manual.mp4", state=state, created=created, priority=3, tasks=2)
    job = jobs.get_job(job_id)
    assert job is not None
    assert job.id.startswith("nb:jid:UUID:")
    assert (job.name, job.state, job.created, job.priority) == ("manual.mp4", state, created, 3)
    assert len(job.tasks) == 2
    assert job.last_modified == START
    if state in (JobState.QUEUED, JobState.SCHEDULED):
        assert job.start_time is None and {t.state for t in job.tasks} == {state}
    if state == JobState.PROCESSING:
        assert job.start_time == START and job.end_time is None
        assert [t.state for t in job.tasks] == [JobState.PROCESSING, JobState.QUEUED]
    if state.is_final:
        assert job.end_time == START
    if state == JobState.FINISHED:
        assert all(t.progress == 100.0 and t.state == JobState.FINISHED for t in job.tasks)
    if state == JobState.ERROR:
        assert job.tasks[0].error_details[0]["Code"] == "ErrorProcessingTask"
        assert job.tasks[1].state == JobState.CANCELED
    # Nobody but the test moves it.
    clock.advance(3600)
    later = jobs.get_job(job_id)
    assert later is not None and later.state == state


def test_add_job_with_exact_times_keeps_microseconds(store: tuple[JobStore, Clock]) -> None:
    jobs, _ = store
    created = datetime(2024, 6, 1, 7, 0, 0, 123456, tzinfo=UTC)
    started = datetime(2024, 6, 1, 9, 16, 49, 460000, tzinfo=timezone(timedelta(hours=2)))
    ended = datetime(2024, 6, 1, 7, 22, 8, 467001, tzinfo=UTC)
    job_id = jobs.add_job(
        name="timed",
        state=JobState.FINISHED,
        created=created,
        start_time=started,
        end_time=ended,
        running_duration_ms=286974.0,
        tasks=2,
    )
    job = jobs.get_job(job_id)
    assert job is not None
    assert job.created == created
    assert job.start_time == started and job.start_time.tzinfo == UTC
    assert (job.end_time, job.last_modified) == (ended, ended)
    assert job.running_duration_ms == 286974.0
    assert all(t.start_time == started and t.end_time == ended for t in job.tasks)


def test_add_job_derives_duration_and_creation_from_given_times(
    store: tuple[JobStore, Clock],
) -> None:
    jobs, _ = store
    started = START - timedelta(minutes=10)
    job_id = jobs.add_job(name="x", state=JobState.ERROR, start_time=started, end_time=START)
    job = jobs.get_job(job_id)
    assert job is not None
    assert job.created == started
    assert job.running_duration_ms == 540_000.0  # 90 % of ten minutes, in milliseconds
    processing = jobs.add_job(name="y", state=JobState.PROCESSING, start_time=started)
    running = jobs.get_job(processing)
    assert running is not None
    assert (running.start_time, running.end_time, running.running_duration_ms) == (
        started,
        None,
        0.0,
    )


def test_add_job_with_progress_and_error_code(store: tuple[JobStore, Clock]) -> None:
    jobs, _ = store
    running = jobs.add_job(name="a", state=JobState.PROCESSING, progress=42.5)
    failed = jobs.add_job(name="b", state=JobState.ERROR, error_code="TransientError")
    running_job = jobs.get_job(running)
    failed_job = jobs.get_job(failed)
    assert running_job is not None and running_job.tasks[0].progress == 42.5
    assert failed_job is not None
    assert failed_job.tasks[0].error_details == [
        {"Code": "TransientError", "Message": failed_job.tasks[0].error_details[0]["Message"]}
    ]
    assert jobs.count() == 52


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"tasks": 0}, ValueError, "a job has 1 to 30 tasks, got 0"),
        ({"tasks": 31}, ValueError, "a job has 1 to 30 tasks, got 31"),
        ({"name": "x" * 257}, ValueError, "a job name has at most 256 characters, got 257"),
        ({"state": 7}, ValueError, "job state must be 0-6 (JobState), got 7"),
        ({"state": JobState.ERROR, "error_code": "Oops"}, ValueError, "unknown error code 'Oops'"),
        (
            {"error_code": "TransientError"},
            ValueError,
            "an error code only goes with state ERROR, not QUEUED",
        ),
        ({"progress": 5.0}, ValueError, "progress only goes with state PROCESSING, not QUEUED"),
        (
            {"state": JobState.PROCESSING, "progress": 101.0},
            ValueError,
            "progress must be within 0..100, got 101.0",
        ),
        ({"created": datetime(2024, 1, 1)}, ValueError, "created must be an aware datetime"),
        ({"job_id": "job-1"}, ValueError, "job Id 'job-1' must start 'nb:jid:UUID:'"),
        ({"start_time": START}, ValueError, "a QUEUED job has not started; it takes no start_time"),
        (
            {"state": JobState.PROCESSING, "end_time": START},
            ValueError,
            "end_time and running_duration_ms are set when a job ends, not for PROCESSING",
        ),
        (
            {"state": JobState.PROCESSING, "running_duration_ms": 5.0},
            ValueError,
            "end_time and running_duration_ms are set when a job ends, not for PROCESSING",
        ),
        (
            {"state": JobState.FINISHED, "running_duration_ms": -1.0},
            ValueError,
            "running_duration_ms must be >= 0, got -1.0",
        ),
        (
            {"state": JobState.FINISHED, "start_time": START, "end_time": START - timedelta(1)},
            ValueError,
            "need created <= start_time <= end_time",
        ),
        (
            {"state": JobState.FINISHED, "end_time": datetime(2024, 1, 1)},
            ValueError,
            "end_time must be an aware datetime",
        ),
    ],
)
def test_add_job_refuses_bad_input(
    store: tuple[JobStore, Clock], fields: dict[str, object], error: type, message: str
) -> None:
    jobs, _ = store
    values: dict[str, object] = {"name": "x"}
    values.update(fields)
    with pytest.raises(error) as caught:
        jobs.add_job(**values)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert jobs.count() == 50


def _one_in(jobs: JobStore, state: JobState) -> EmuJob:
    """The first job of the store in ``state``."""
    return next(j for j in jobs.snapshot() if j.state == state)


def _forced(jobs: JobStore, job: EmuJob, state: JobState, error_code: str | None = None) -> EmuJob:
    """``job`` as the store holds it after ``set_job_state``, which must have put it in ``state``."""
    jobs.set_job_state(job.id, state, error_code=error_code)
    after = jobs.get_job(job.id)
    assert after is not None and after.state == state
    return after


def test_set_job_state_to_error_fails_the_running_task(store: tuple[JobStore, Clock]) -> None:
    jobs, clock = store
    job = _one_in(jobs, JobState.PROCESSING)
    clock.advance(5)
    after = _forced(jobs, job, JobState.ERROR, error_code="ErrorUploadingOutputAsset")
    assert after.end_time == clock.now() == after.last_modified
    assert after.running_duration_ms > 0
    failed = [t for t in after.tasks if t.state == JobState.ERROR]
    assert [d["Code"] for d in failed[0].error_details] == ["ErrorUploadingOutputAsset"]
    clock.advance(24 * 3600)
    assert jobs.get_job(job.id) == after


def test_set_job_state_to_finished_completes_every_task(store: tuple[JobStore, Clock]) -> None:
    jobs, _ = store
    after = _forced(jobs, _one_in(jobs, JobState.QUEUED), JobState.FINISHED)
    assert all(t.state == JobState.FINISHED and t.progress == 100.0 for t in after.tasks)


def test_set_job_state_cancel_then_canceled(store: tuple[JobStore, Clock]) -> None:
    jobs, _ = store
    job = _one_in(jobs, JobState.PROCESSING)
    canceling = _forced(jobs, job, JobState.CANCELING)
    assert JobState.PROCESSING not in {t.state for t in canceling.tasks}
    canceled = _forced(jobs, job, JobState.CANCELED)
    assert canceled.end_time is not None


def test_set_job_state_refuses_unknown_jobs_and_codes(store: tuple[JobStore, Clock]) -> None:
    jobs, _ = store
    with pytest.raises(KeyError, match="no job with Id 'nb:jid:UUID:x'"):
        jobs.set_job_state("nb:jid:UUID:x", JobState.FINISHED)
    some = jobs.snapshot()[0].id
    with pytest.raises(ValueError, match="unknown error code 'Bad'"):
        jobs.set_job_state(some, JobState.ERROR, error_code="Bad")


def test_set_task_progress(store: tuple[JobStore, Clock]) -> None:
    jobs, clock = store
    job = _one_in(jobs, JobState.PROCESSING)
    jobs.set_task_progress(job.id, 0, 12.5)
    clock.advance(600)
    after = jobs.get_job(job.id)
    assert after is not None and after.tasks[0].progress == 12.5
    with pytest.raises(ValueError, match=r"progress must be within 0\.\.100, got 100\.5"):
        jobs.set_task_progress(job.id, 0, 100.5)
    with pytest.raises(IndexError, match=r"has \d task\(s\); no task index"):
        jobs.set_task_progress(job.id, len(job.tasks), 1.0)


def test_delete_job_removes_its_tasks(store: tuple[JobStore, Clock]) -> None:
    jobs, _ = store
    job = jobs.snapshot()[3]
    jobs.delete_job(job.id)
    assert jobs.get_job(job.id) is None
    assert all(jobs.get_task(t.id) is None for t in job.tasks)
    assert job.id not in ids(jobs.list_jobs(QueryOptions()))
    assert jobs.count() == 49
    with pytest.raises(KeyError):
        jobs.delete_job(job.id)


# --- scale --------------------------------------------------------------------------------------


def test_one_hundred_thousand_jobs() -> None:
    clock = Clock(START, speed=0)
    jobs = JobStore(ScenarioConfig(seed=5, jobs=100_000), clock)
    assert jobs.count() == 100_000
    first_page = jobs.list_jobs(QueryOptions())
    assert len(first_page) == 1000
    assert ids(first_page) == sorted(ids(first_page))
    processing = query(jobs, filter="State eq 2", top="1000")
    assert processing and all(job.state == JobState.PROCESSING for job in processing)
    last = query(jobs, skip="99999")
    assert len(last) == 1
    recent = query(jobs, filter="EndTime ge datetime'2024-05-31T08:00:00'", orderby="EndTime desc")
    assert len(recent) == 1000
    assert all(job.end_time is not None for job in recent)
    clock.advance(3600)
    assert jobs.count() > 100_000


def test_id_filters_find_exactly_those_jobs(big: JobStore) -> None:
    jobs = big.snapshot()
    wanted = [jobs[1500], jobs[7], jobs[2200]]
    missing = "nb:jid:UUID:00000000-0000-4000-8000-000000000000"
    text = " or ".join(f"Id eq '{job.id}'" for job in [*wanted, jobs[7]]) + f" or Id eq '{missing}'"
    assert ids(query(big, filter=text)) == sorted(job.id for job in wanted)
    assert ids(query(big, filter=f"Id eq '{wanted[0].id}'", top="1")) == [wanted[0].id]
    other_state = next(s for s in range(7) if s != wanted[0].state)
    narrowed = f"Id eq '{wanted[0].id}' and State eq {other_state}"
    assert query(big, filter=narrowed) == []
    assert query(big, filter=f"Id eq '{wanted[0].id}'", skip="1") == []
    task = wanted[1].tasks[0]
    found = big.list_tasks(parse_query({"$filter": f"Id eq '{task.id}'"}, "Tasks"))
    assert found == [task]
    of_job = big.list_tasks(parse_query({"$filter": f"Id eq '{task.id}'"}, "Tasks"), wanted[0].id)
    assert of_job == []


# --- threads -----------------------------------------------------------------------------------


def test_concurrent_readers_and_writers_see_consistent_answers() -> None:
    clock = Clock(START, speed=600.0)  # ten simulated minutes per second, so the scenario moves
    jobs = JobStore(ScenarioConfig(seed=23, jobs=300), clock)
    target = _one_in(jobs, JobState.PROCESSING)
    failures: list[BaseException] = []
    processing = parse_query({"$filter": "State eq 2"}, "Jobs")

    def reader() -> None:
        try:
            for _ in range(20):
                page = jobs.list_jobs(processing)
                assert all(job.state == JobState.PROCESSING for job in page)
                assert ids(page) == sorted(ids(page))
                every = jobs.list_jobs(QueryOptions())
                assert len(set(ids(every))) == len(every)
                for job in every[:20]:
                    jobs.get_job(job.id)
                    jobs.list_tasks(QueryOptions(), job.id)
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)

    def writer() -> None:
        try:
            for step in range(40):
                jobs.set_task_progress(target.id, 0, float(step))
                jobs.add_job(name=f"concurrent-{step}", state=JobState.PROCESSING)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    final = jobs.get_job(target.id)
    assert final is not None and final.tasks[0].progress == 39.0
    added = jobs.list_jobs(parse_query({"$filter": "startswith(Name,'concurrent-')"}, "Jobs"))
    assert len(added) == 40
