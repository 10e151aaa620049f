"""The living scenario: a deterministic population that only moves forward as the clock runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from ams_emulator.clock import Clock
from ams_emulator.entities import ERROR_CODES, MAX_JOB_NAME_LENGTH, EmuJob, JobState
from ams_emulator.query import QueryOptions
from ams_emulator.scenario import ScenarioConfig
from ams_emulator.store import JobStore

UTC = timezone.utc
START = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
HOUR = 3600.0
FINAL = {JobState.FINISHED, JobState.ERROR, JobState.CANCELED}
HISTORY_CODES = {
    "WaitingForFreeResources",
    "Scheduled",
    "Processing",
    "Finished",
    "TaskBillingInformationAdded",
}
# Which states may follow which (directly or after several steps) - never backwards.
LATER: dict[int, set[int]] = {
    JobState.QUEUED: {1, 2, 3, 4, 5, 6},
    JobState.SCHEDULED: {2, 3, 4, 5, 6},
    JobState.PROCESSING: {3, 4, 5, 6},
    JobState.CANCELING: {5},
    JobState.FINISHED: set(),
    JobState.ERROR: set(),
    JobState.CANCELED: set(),
}


def make_store(jobs: int = 200, seed: int = 1, **config: object) -> tuple[JobStore, Clock]:
    clock = Clock(START, speed=0)
    return JobStore(ScenarioConfig(seed=seed, jobs=jobs, **config), clock), clock  # type: ignore[arg-type]


def scheduled_at(job: EmuJob) -> datetime:
    """When the job left the queue, from its first task's history."""
    events = job.tasks[0].historical_events
    return next(event["TimeStamp"] for event in events if event["Code"] == "Scheduled")


def by_id(jobs: list[EmuJob]) -> dict[str, EmuJob]:
    return {job.id: job for job in jobs}


def assert_consistent(job: EmuJob) -> None:
    """The fields of a job and its tasks agree with its state."""
    state = JobState(job.state)
    assert job.created <= job.last_modified, job
    assert job.tasks, job
    task_states = {task.state for task in job.tasks}
    for task in job.tasks:
        assert 0.0 <= task.progress <= 100.0
        assert {event["Code"] for event in task.historical_events} <= HISTORY_CODES
        assert all(detail["Code"] in ERROR_CODES for detail in task.error_details)
        if task.state == JobState.FINISHED:
            assert task.progress == 100.0
            assert task.start_time is not None and task.end_time is not None
            wall_ms = (task.end_time - task.start_time).total_seconds() * 1000
            assert 0 < task.running_duration_ms < wall_ms
    if state in (JobState.QUEUED, JobState.SCHEDULED):
        assert job.start_time is None and job.end_time is None
        assert job.running_duration_ms == 0.0
        assert task_states == {state}
        assert all(task.progress == 0.0 for task in job.tasks)
    elif state == JobState.PROCESSING:
        assert job.start_time is not None and job.end_time is None
        assert job.running_duration_ms == 0.0  # set only when the job ends
        assert JobState.PROCESSING in task_states
    elif state == JobState.CANCELING:
        assert job.end_time is None
        assert JobState.CANCELING in task_states
        assert JobState.PROCESSING not in task_states
    else:
        assert job.end_time is not None
        assert not task_states & {JobState.QUEUED, JobState.SCHEDULED, JobState.PROCESSING}
    if state == JobState.FINISHED:
        assert task_states == {JobState.FINISHED}
        assert job.start_time is not None and job.end_time is not None
        wall_ms = (job.end_time - job.start_time).total_seconds() * 1000
        # RunningDuration is milliseconds, a little less than the wall time (286974 of 319 s).
        assert 0.8 * wall_ms < job.running_duration_ms < wall_ms
    if state == JobState.ERROR:
        failed = [task for task in job.tasks if task.state == JobState.ERROR]
        assert failed and all(task.error_details for task in failed)
    if job.start_time is not None:
        assert job.created <= job.start_time
        assert job.end_time is None or job.start_time <= job.end_time


# --- the starting population ------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [20, 200, 2000])
def test_every_state_is_present_at_start(jobs: int) -> None:
    store, _ = make_store(jobs)
    snapshot = store.snapshot()
    assert len(snapshot) == jobs
    assert {job.state for job in snapshot} == set(JobState)
    for job in snapshot:
        assert_consistent(job)


def test_population_spans_the_retention_window_with_recent_and_active_jobs() -> None:
    store, _ = make_store(2000)
    jobs = store.snapshot()
    oldest = min(job.created for job in jobs)
    assert START - timedelta(days=90) < oldest < START - timedelta(days=80)
    recent = [j for j in jobs if j.end_time is not None and j.end_time > START - timedelta(days=1)]
    active = [j for j in jobs if j.state not in FINAL]
    assert 150 <= len(recent) <= 250  # ~10 %
    assert 70 <= len(active) <= 130  # ~5 %
    assert all(job.created <= START for job in jobs)


def test_failed_jobs_carry_documented_error_codes() -> None:
    store, _ = make_store(2000)
    failed = [job for job in store.snapshot() if job.state == JobState.ERROR]
    codes = {
        detail["Code"] for job in failed for task in job.tasks for detail in task.error_details
    }
    assert len(failed) > 50
    assert codes <= set(ERROR_CODES)
    assert len(codes) >= 5


def test_a_small_population_has_a_stuck_processing_job() -> None:
    store, clock = make_store(20)
    before = by_id(store.snapshot())
    clock.advance(0.5 * HOUR)
    after = by_id(store.snapshot())
    stuck = [
        job
        for job in before.values()
        if job.state == JobState.PROCESSING
        and job.start_time is not None
        and job.start_time < START - timedelta(hours=1)
        and after[job.id].state == JobState.PROCESSING
        and [t.progress for t in after[job.id].tasks] == [t.progress for t in job.tasks]
    ]
    assert stuck, "expected a job that stays Processing while its progress does not move"


def test_a_small_population_has_a_job_waiting_in_queued_for_hours() -> None:
    store, clock = make_store(20)
    clock.advance(HOUR)
    waiting = [
        job
        for job in store.snapshot()
        if job.state == JobState.QUEUED and job.created < START - timedelta(minutes=50)
    ]
    assert waiting
    for job in waiting:
        for task in job.tasks:
            assert [event["Code"] for event in task.historical_events] == [
                "WaitingForFreeResources"
            ]
            assert task.historical_events[0]["TimeStamp"] == job.created


def test_names_include_the_hard_characters() -> None:
    store, _ = make_store(20)
    names = [job.name or "" for job in store.snapshot()]
    assert any("'" in name for name in names)
    assert any('"' in name for name in names)
    assert any("\\" in name for name in names)
    assert any("\n" in name for name in names)
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in name) for name in names)
    assert any(len(name) == MAX_JOB_NAME_LENGTH for name in names)
    assert all(len(name) <= MAX_JOB_NAME_LENGTH for name in names)
    assert any(name.startswith("ingest-") or name.startswith("Encode ") for name in names)


def test_ids_have_the_service_form() -> None:
    store, _ = make_store(50)
    for job in store.snapshot():
        assert job.id.startswith("nb:jid:UUID:") and len(job.id) == 12 + 36
        for task in job.tasks:
            assert task.id.startswith("nb:tid:UUID:") and len(task.id) == 12 + 36
            assert task.job_id == job.id
        assert 1 <= len(job.tasks) <= 3


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_and_start_give_identical_data() -> None:
    first, _ = make_store(300, seed=9)
    second, _ = make_store(300, seed=9)
    assert first.snapshot() == second.snapshot()


def test_different_seeds_give_different_data() -> None:
    first, _ = make_store(300, seed=9)
    second, _ = make_store(300, seed=10)
    first_ids = {job.id for job in first.snapshot()}
    second_ids = {job.id for job in second.snapshot()}
    assert not first_ids & second_ids


def test_data_does_not_depend_on_how_often_it_is_read() -> None:
    often, often_clock = make_store(200, seed=4)
    once, once_clock = make_store(200, seed=4)
    for _ in range(360):  # 12 hours, read every 2 minutes
        often_clock.advance(120)
        often.list_jobs(QueryOptions(top=5))
    once_clock.advance(360 * 120)
    assert often.snapshot() == once.snapshot()


# --- the state machine as the clock advances ---------------------------------------------------


def test_states_only_move_forward_over_simulated_hours() -> None:
    store, clock = make_store(200, seed=2)
    previous = by_id(store.snapshot())
    initial_ids = set(previous)
    seen_transitions: set[tuple[int, int]] = set()
    for _ in range(12 * 6):  # 12 hours in 10-minute steps
        clock.advance(600)
        current = by_id(store.snapshot())
        busy = sum(1 for j in current.values() if j.state in (1, 2))
        assert busy <= store.config.slots
        for job_id, job in current.items():
            assert_consistent(job)
            old = previous.get(job_id)
            if old is None:
                continue
            assert job.last_modified >= old.last_modified
            if job.state != old.state:
                assert job.state in LATER[old.state], (old.state, job.state)
                assert job.last_modified > old.last_modified
                seen_transitions.add((old.state, job.state))
            for old_task, task in zip(old.tasks, job.tasks, strict=True):
                assert task.progress >= old_task.progress
                assert task.state == old_task.state or task.state in LATER[old_task.state]
        previous = current
    arrived = set(previous) - initial_ids
    assert len(arrived) > 50  # ~12 per hour
    # The clock drove jobs through the whole life cycle.
    assert {(2, 3), (2, 4), (6, 5)} <= seen_transitions
    assert any(old == JobState.QUEUED for old, _ in seen_transitions)
    assert {(0, 5), (2, 5)} & seen_transitions  # canceled within one step


def test_progress_advances_with_time_while_processing() -> None:
    store, clock = make_store(200, seed=3)
    before = by_id(store.snapshot())
    clock.advance(60)
    after = by_id(store.snapshot())
    moved = [
        job_id
        for job_id, job in before.items()
        if job.state == JobState.PROCESSING
        and after[job_id].state == JobState.PROCESSING
        and sum(t.progress for t in after[job_id].tasks) > sum(t.progress for t in job.tasks)
    ]
    assert moved


def test_higher_priority_jobs_leave_the_queue_first() -> None:
    store, clock = make_store(
        0,
        seed=6,
        slots=1,
        arrivals_per_hour=6.0,
        failure_ratio=0.0,
        cancel_ratio=0.0,
        stuck_ratio=0.0,
        tasks_max=1,
        mean_task_seconds=900.0,
    )
    clock.advance(6 * HOUR)
    queued = [job for job in store.snapshot() if job.state == JobState.QUEUED]
    assert len(queued) >= 10, "the queue should be long with one slot"
    ids = {job.id for job in queued}
    clock.advance(6 * HOUR)
    started = [job for job in store.snapshot() if job.id in ids and job.state != 0]
    assert len(started) >= 5
    started.sort(key=scheduled_at)
    order = [(-job.priority, job.created) for job in started]
    assert order == sorted(order)
    # A later job overtook an earlier one, so the order is not first-come-first-served.
    assert any(a.priority > b.priority and a.created > b.created for a in started for b in started)


def test_jobs_past_the_retention_window_are_deleted_with_their_tasks() -> None:
    store, clock = make_store(300, seed=8, history_days=3.0)
    initial = store.snapshot()
    oldest = min(initial, key=lambda job: job.created)
    task_id = oldest.tasks[0].id
    assert store.get_task(task_id) is not None
    clock.advance(2 * 24 * HOUR)
    now = clock.now()
    remaining = store.snapshot()
    assert store.get_job(oldest.id) is None
    assert store.get_task(task_id) is None
    survivors = {job.id for job in initial} & {job.id for job in remaining}
    assert len(survivors) < 100  # the initial history was at most 3 days old
    for job in remaining:
        assert job.created >= now - timedelta(days=3) or job.state not in FINAL
        for task in job.tasks:
            assert store.get_task(task.id) == task
    assert store.count() == len(remaining)
    every_task = store.list_tasks(QueryOptions())
    assert {task.job_id for task in every_task} <= {job.id for job in remaining}


def test_deleting_in_small_steps_or_one_jump_gives_the_same_data() -> None:
    stepped, stepped_clock = make_store(300, seed=8, history_days=3.0)
    jumped, jumped_clock = make_store(300, seed=8, history_days=3.0)
    # The old history ended between 1 and 2.25 days before the start; it leaves the 3-day
    # window between 0.75 and 2 days after it.
    for _ in range(6 * 48):  # a few deletions per step
        stepped_clock.advance(600)
        stepped.count()
    jumped_clock.advance(48 * HOUR)  # hundreds of deletions at once
    assert jumped.snapshot() == stepped.snapshot()
    assert jumped.list_tasks(QueryOptions()) == stepped.list_tasks(QueryOptions())


def test_a_clock_set_backwards_changes_nothing() -> None:
    store, clock = make_store(100, seed=5)
    clock.advance(HOUR)
    later = store.snapshot()
    clock.set(START)
    assert store.snapshot() == later


def test_an_empty_population_fills_up_from_arrivals() -> None:
    store, clock = make_store(0, seed=11)
    assert store.snapshot() == []
    clock.advance(2 * HOUR)
    assert store.count() > 5


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"jobs": -1}, "jobs must be within 0..2000000, got -1"),
        ({"jobs": 10**9}, "jobs must be within 0..2000000, got 1000000000"),
        ({"tasks_min": 0}, "need 1 <= tasks_min <= tasks_max <= 30, got 0..3"),
        ({"tasks_max": 31}, "need 1 <= tasks_min <= tasks_max <= 30, got 1..31"),
        ({"slots": 0}, "slots must be within 1..10000, got 0"),
        ({"failure_ratio": 1.5}, "failure_ratio must be within 0..1, got 1.5"),
        ({"history_days": 0}, "history_days must be in (0, 3650], got 0"),
        ({"arrivals_per_hour": -2.0}, "arrivals_per_hour must be within 0..1e6, got -2.0"),
        (
            {"failure_ratio": 0.5, "cancel_ratio": 0.5, "stuck_ratio": 0.1},
            "failure_ratio + cancel_ratio + stuck_ratio must not exceed 1",
        ),
    ],
)
def test_invalid_configuration_is_refused_with_the_reason(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        ScenarioConfig(**fields)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_tasks_per_job_follow_the_configuration() -> None:
    store, _ = make_store(100, tasks_min=4, tasks_max=30)
    counts = {len(job.tasks) for job in store.snapshot()}
    assert min(counts) >= 4 and max(counts) <= 30 and len(counts) > 5


# --- the clock ----------------------------------------------------------------------------------


def test_a_frozen_clock_moves_only_when_told() -> None:
    clock = Clock(START, speed=0)
    assert clock.now() == START == clock.now()
    clock.advance(90.5)
    assert clock.now() == START + timedelta(seconds=90.5)
    clock.set(START + timedelta(days=2))
    assert clock.now() == START + timedelta(days=2)
    clock.set(START)
    assert clock.now() == START


def test_a_running_clock_never_goes_backwards_and_keeps_its_time_across_speed_changes() -> None:
    clock = Clock(START, speed=1000.0)
    readings = [clock.now() for _ in range(200)]
    assert readings == sorted(readings)
    assert readings[0] >= START
    clock.speed = 0
    frozen = clock.now()
    assert frozen >= readings[-1]
    assert clock.now() == frozen
    assert clock.speed == 0


def test_the_clock_is_utc_and_defaults_to_now() -> None:
    plus_two = timezone(timedelta(hours=2))
    clock = Clock(datetime(2024, 1, 15, 14, 0, tzinfo=plus_two), speed=0)
    assert clock.now() == START
    assert clock.now().tzinfo == UTC
    default = Clock()
    assert abs(default.now() - datetime.now(UTC)) < timedelta(hours=1)
    assert default.speed == 1.0


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda: Clock(datetime(2024, 1, 1)), "the clock needs an aware datetime"),
        (lambda: Clock(START, speed=-1.0), "clock speed must be a finite number >= 0"),
        (lambda: Clock(START, speed=float("nan")), "clock speed must be a finite number >= 0"),
        (lambda: Clock(START, speed=float("inf")), "clock speed must be a finite number >= 0"),
        (lambda: Clock(START).advance(-1.0), "the clock only moves forward"),
        (lambda: Clock(START).advance(float("nan")), "the clock only moves forward"),
        (lambda: Clock(START).set(datetime(2024, 1, 1)), "the clock needs an aware datetime"),
    ],
)
def test_the_clock_refuses_bad_values(action: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        action()


def test_concurrent_advances_all_count() -> None:
    clock = Clock(START, speed=0)

    def advance_many() -> None:
        for _ in range(500):
            clock.advance(1.0)

    threads = [threading.Thread(target=advance_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert clock.now() == START + timedelta(seconds=2000)


def test_some_jobs_and_their_tasks_are_subscribed_to_notifications() -> None:
    store, _ = make_store(400, seed=12)
    subscribed = [job for job in store.snapshot() if job.notification_subscriptions]
    assert 5 <= len(subscribed) <= 40  # ~5 %
    for job in subscribed:
        (subscription,) = job.notification_subscriptions
        assert subscription["TargetJobState"] in (1, 2)
        for task in job.tasks:
            assert task.notification_subscriptions == [
                {
                    "IncludeTaskProgress": True,
                    "NotificationEndPointId": subscription["NotificationEndPointId"],
                    "TargetTaskState": subscription["TargetJobState"],
                }
            ]
