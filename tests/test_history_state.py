"""The history's memory: each job counted once above the floors, and the file that keeps it.

:class:`JobHistory` is fed plain :class:`Job` values, as a poller would after each listing; the
expected counts come from the jobs' own timestamps and a small model of the floors (the process
start, then the latest EndTime counted minus ``NEAR_SECONDS``). :class:`HistoryFile` is written
and read in a temporary directory, and every kind of damaged or foreign file is set aside.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.ams.model import ERROR_CODES, Job, JobState, Task
from exporter.collect.history import (
    NEAR_SECONDS,
    Distribution,
    Exemplar,
    HistoryState,
    JobHistory,
)
from exporter.collect.history_file import (
    MAX_FILE_BYTES,
    HistoryFile,
    StorageError,
    prepare_directory,
)
from exporter.config.model import HistoryConfig, JobGroup, JobsConfig

T0 = 1_700_000_000.0  # the process start of most tests
# A directory in which nobody, root included, can create a file (Linux procfs).
UNWRITABLE = Path("/proc/self")
ACCOUNT = "prod"
FINISHED, ERROR, CANCELED = JobState.FINISHED, JobState.ERROR, JobState.CANCELED
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# OpenMetrics: an exemplar's label names and values together are at most 128 characters.
LONGEST_EXEMPLAR_ID = 128 - len("job_id")


def job(
    job_id: str,
    state: JobState,
    *,
    created: float = T0,
    start: float | None = None,
    end: float | None = None,
    name: str = "",
    running: float | None = None,
) -> Job:
    """A job as the client reads it. Without ``running`` (RunningDuration unreadable) the
    duration comes from StartTime and EndTime."""
    last = max(t for t in (created, start, end) if t is not None)
    return Job(
        id=job_id,
        name=name or job_id,
        state=state,
        created=created,
        last_modified=last,
        start_time=start,
        end_time=end,
        priority=0,
        running_duration_seconds=running,
    )


def ended_job(job_id: str, end: float, *, state: JobState = FINISHED, name: str = "") -> Job:
    """A job that ran for a minute up to ``end``, after waiting ten seconds."""
    return job(job_id, state, created=end - 70, start=end - 60, end=end, name=name)


def task(*codes: str) -> Task:
    return Task("nb:tid:1", "t", 4, 100.0, 1.0, None, None, codes)


def jobs_config(
    groups: Iterable[tuple[str, str]] = (),
    durations: tuple[float, ...] = (10.0, 30.0, 60.0),
    waits: tuple[float, ...] = (1.0, 5.0, 15.0),
) -> JobsConfig:
    return JobsConfig(
        groups=tuple(JobGroup(name, re.compile(regex)) for name, regex in groups),
        history=HistoryConfig(duration_buckets=durations, queue_wait_buckets=waits),
    )


def fresh(config: JobsConfig | None = None, created: float = T0) -> JobHistory:
    return JobHistory(config or jobs_config(), created)


def ended(history: JobHistory) -> dict[tuple[str, str], int]:
    """The non-zero ``ams_jobs_ended_total`` counters by (group, state)."""
    return {key: count.value for key, count in history.snapshot.ended if count.value}


def exemplar_of_ended(history: JobHistory, group: str, state: str) -> Exemplar | None:
    return dict(history.snapshot.ended)[(group, state)].exemplar


def durations(history: JobHistory) -> dict[tuple[str, str], Distribution]:
    return dict(history.snapshot.durations)


def waits(history: JobHistory) -> dict[str, Distribution]:
    return dict(history.snapshot.queue_waits)


def errors(history: JobHistory) -> dict[tuple[str, str], int]:
    return {key: count.value for key, count in history.snapshot.errors if count.value}


def observed(distributions: Iterable[Distribution]) -> int:
    return sum(d.count for d in distributions)


# ---------------------------------------------------------------------------------------------
# Counting once


def test_a_job_first_seen_final_is_counted_once_however_often_it_is_listed() -> None:
    history = fresh()
    listing = [job("a", FINISHED, created=T0, start=T0 + 10, end=T0 + 60)]
    assert history.observe(listing, {}) is True
    for _ in range(5):
        assert history.observe(listing, {}) is False
    assert ended(history) == {("other", "Finished"): 1}
    duration = durations(history)[("other", "Finished")]
    assert (duration.count, duration.sum) == (1, 50.0)
    wait = waits(history)["other"]
    assert (wait.count, wait.sum) == (1, 10.0)


def test_a_job_is_counted_when_a_collection_first_sees_it_in_its_final_state() -> None:
    history = fresh()
    queued = job("a", JobState.QUEUED, created=T0 + 1)
    processing = job("a", JobState.PROCESSING, created=T0 + 1, start=T0 + 5, running=0.0)
    done = job("a", ERROR, created=T0 + 1, start=T0 + 5, end=T0 + 25)
    history.observe([queued], {})
    assert (ended(history), observed(waits(history).values())) == ({}, 0)
    history.observe([processing], {})
    assert (ended(history), waits(history)["other"].sum) == ({}, 4.0)
    for _ in range(3):
        history.observe([done], {"a": [task("ErrorProcessingTask")]})
    assert ended(history) == {("other", "Error"): 1}
    assert durations(history)[("other", "Error")].sum == 20.0
    assert waits(history)["other"].count == 1
    assert errors(history) == {("other", "ErrorProcessingTask"): 1}


@pytest.mark.parametrize(("end", "counted"), [(T0 - 0.001, 0), (T0, 1), (T0 + 0.001, 1)])
def test_a_job_that_ended_before_the_process_started_is_not_counted(
    end: float, counted: int
) -> None:
    history = fresh()
    history.observe([job("a", CANCELED, created=end - 30, start=end - 20, end=end)], {})
    assert sum(ended(history).values()) == counted
    assert observed(durations(history).values()) == counted
    assert observed(waits(history).values()) == 0  # it started before the process did


def test_a_job_that_started_before_the_process_counts_its_end_but_not_its_wait() -> None:
    history = fresh()
    history.observe([job("a", JobState.PROCESSING, created=T0 - 90, start=T0 - 30)], {})
    history.observe([job("a", FINISHED, created=T0 - 90, start=T0 - 30, end=T0 + 30)], {})
    assert ended(history) == {("other", "Finished"): 1}
    assert observed(waits(history).values()) == 0


def test_a_final_job_without_end_time_ends_at_its_last_modified() -> None:
    history = fresh()
    late = replace(job("a", FINISHED, created=T0 - 100, start=T0 - 50), last_modified=T0 + 5)
    early = replace(job("b", FINISHED, created=T0 - 100, start=T0 - 50), last_modified=T0 - 5)
    history.observe([late, early], {})
    assert ended(history) == {("other", "Finished"): 1}
    assert history.state.watermark == T0 + 5


def test_the_order_of_a_listing_changes_nothing() -> None:
    listing = [
        ended_job(f"j{i}", T0 + 37 * i % 500, state=(FINISHED, ERROR)[i % 2]) for i in range(20)
    ]
    forward, backward = fresh(), fresh()
    forward.observe(listing, {})
    backward.observe(listing[::-1], {})
    assert forward.snapshot == backward.snapshot
    assert forward.state == backward.state


def test_a_job_listed_twice_in_one_listing_is_counted_once() -> None:
    history = fresh()
    a = ended_job("a", T0 + 100)
    history.observe([a, a], {})
    assert ended(history) == {("other", "Finished"): 1}
    assert observed(durations(history).values()) == 1
    assert observed(waits(history).values()) == 1


def test_jobs_are_counted_in_their_group() -> None:
    config = jobs_config(groups=[("news", r"^news_\d+$"), ("vod", "vod")])
    history = fresh(config)
    history.observe(
        [
            ended_job("1", T0 + 10, name="news_1"),
            ended_job("2", T0 + 20, name="news_1x"),
            ended_job("3", T0 + 30, name="my-vod", state=CANCELED),
        ],
        {},
    )
    assert ended(history) == {
        ("news", "Finished"): 1,
        ("other", "Finished"): 1,
        ("vod", "Canceled"): 1,
    }
    assert [key for key, _ in history.snapshot.queue_waits] == ["news", "vod", "other"]


# ---------------------------------------------------------------------------------------------
# Exemplars and buckets


def test_the_exemplar_is_the_job_that_ended_last_whatever_the_listing_order() -> None:
    history = fresh()
    listing = [
        ended_job("mid", T0 + 200),
        ended_job("last", T0 + 300),
        ended_job("first", T0 + 100),
    ]
    history.observe(listing, {})
    assert exemplar_of_ended(history, "other", "Finished") == Exemplar("last", 1.0, T0 + 300)
    duration = durations(history)[("other", "Finished")]
    assert duration.exemplars[2] == Exemplar("last", 60.0, T0 + 300)  # 60s is in le=60
    wait = waits(history)["other"]
    assert wait.exemplars[2] == Exemplar("last", 10.0, T0 + 240)  # at its StartTime
    later = fresh()
    later.observe(listing[:1], {})
    later.observe(listing, {})
    assert exemplar_of_ended(later, "other", "Finished") == Exemplar("last", 1.0, T0 + 300)


def test_a_value_equal_to_a_bound_is_in_that_bucket() -> None:
    history = fresh(jobs_config(durations=(10.0, 30.0, 60.0), waits=(1.0, 5.0)))
    runs = [0.0, 10.0, 10.5, 30.0, 60.0, 60.001, 1000.0]
    queued = [0.0, 1.0, 1.5, 5.0, 5.5, 0.2, 9.0]
    listing = [
        job(f"j{i}", FINISHED, created=T0 + i, start=T0 + i + q, end=T0 + i + q + r)
        for i, (r, q) in enumerate(zip(runs, queued, strict=True))
    ]
    history.observe(listing, {})
    duration = durations(history)[("other", "Finished")]
    assert duration.bounds == (10.0, 30.0, 60.0)
    assert duration.buckets == (2, 4, 5, 7)  # cumulative; the last is +Inf
    assert duration.sum == pytest.approx(sum(runs))
    wait = waits(history)["other"]
    assert wait.buckets == (3, 5, 7)
    assert wait.sum == pytest.approx(sum(queued))


def test_a_reported_running_duration_is_observed_rather_than_the_timestamps() -> None:
    history = fresh()
    history.observe([job("a", FINISHED, start=T0 + 10, end=T0 + 100, running=42.5)], {})
    assert durations(history)[("other", "Finished")].sum == 42.5


@pytest.mark.parametrize(
    ("length", "has_exemplar"),
    [(1, True), (LONGEST_EXEMPLAR_ID, True), (LONGEST_EXEMPLAR_ID + 1, False), (1000, False)],
)
def test_exemplars_are_omitted_for_ids_beyond_the_openmetrics_limit(
    length: int, has_exemplar: bool
) -> None:
    history = fresh()
    job_id = "x" * length
    history.observe([ended_job(job_id, T0 + 100, state=ERROR)], {job_id: [task("TransientError")]})
    assert ended(history) == {("other", "Error"): 1}  # counted either way
    error = dict(history.snapshot.errors)[("other", "TransientError")]
    assert error.value == 1
    found = [
        exemplar_of_ended(history, "other", "Error"),
        *durations(history)[("other", "Error")].exemplars,
        *waits(history)["other"].exemplars,
        error.exemplar,
    ]
    found = [e for e in found if e is not None] or [None] * 4
    if has_exemplar:
        assert [e.job_id for e in found if e is not None] == [job_id] * 4
    else:
        assert found == [None] * 4


# ---------------------------------------------------------------------------------------------
# Error codes


def test_error_codes_are_counted_once_per_job_and_code() -> None:
    history = fresh()
    failed = ended_job("a", T0 + 100, state=ERROR)
    tasks = {"a": [task("ErrorProcessingTask", "TransientError"), task("ErrorProcessingTask")]}
    for _ in range(3):
        history.observe([failed], tasks)
    assert errors(history) == {("other", "ErrorProcessingTask"): 1, ("other", "TransientError"): 1}


def test_error_codes_wait_for_the_tasks_and_are_counted_when_they_come() -> None:
    history = fresh()
    failed = ended_job("a", T0 + 100, state=ERROR)
    finished = ended_job("b", T0 + 100)
    assert history.codes_wanted([failed, finished]) == ["a"]
    history.observe([failed, finished], {})
    assert ended(history) == {("other", "Error"): 1, ("other", "Finished"): 1}
    assert errors(history) == {}
    assert history.codes_wanted([failed, finished]) == ["a"]
    history.observe([failed, finished], {})  # the tasks could not be read again
    assert history.codes_wanted([failed]) == ["a"]
    history.observe([failed, finished], {"a": [task("ErrorUploadingOutputAsset")]})
    assert errors(history) == {("other", "ErrorUploadingOutputAsset"): 1}
    assert history.codes_wanted([failed]) == []
    history.observe([failed], {"a": [task("ErrorUploadingOutputAsset")]})
    assert errors(history) == {("other", "ErrorUploadingOutputAsset"): 1}
    assert ended(history) == {("other", "Error"): 1, ("other", "Finished"): 1}


def test_pending_codes_are_forgotten_when_the_job_leaves_the_listing() -> None:
    history = fresh()
    failed = ended_job("a", T0 + 100, state=ERROR)
    history.observe([failed], {})
    history.observe([], {})
    assert history.codes_wanted([failed]) == []
    history.observe([failed], {"a": [task("TransientError")]})
    assert errors(history) == {}


def test_undocumented_codes_are_counted_as_unknown_once() -> None:
    history = fresh()
    failed = ended_job("a", T0 + 100, state=ERROR)
    codes = ("Weird", "Unknown", "ErrorProcessingTask", "Other thing", "errorprocessingtask")
    history.observe([failed], {"a": [task(*codes)]})
    assert errors(history) == {("other", "Unknown"): 1, ("other", "ErrorProcessingTask"): 1}
    assert {code for (_, code), _ in history.snapshot.errors} == set(ERROR_CODES)


def test_codes_are_not_wanted_for_jobs_below_the_floor_or_not_in_error() -> None:
    history = fresh()
    old = ended_job("old", T0 - 1, state=ERROR)
    running = job("run", JobState.PROCESSING, start=T0 + 1, running=0.0)
    assert history.codes_wanted([old, running, ended_job("f", T0 + 5)]) == []


# ---------------------------------------------------------------------------------------------
# Floors, watermark and memory


def test_floors_rise_to_the_watermark_less_near_seconds_and_never_fall() -> None:
    history = fresh()
    history.observe([ended_job("a", T0 + 5000)], {})
    state = history.state
    assert state.watermark == T0 + 5000
    assert state.end_floor == state.start_floor == T0 + 5000 - NEAR_SECONDS
    history.observe([ended_job("b", T0 + 5000 - NEAR_SECONDS - 0.5)], {})  # too late to see
    history.observe([ended_job("c", T0 + 5000 - NEAR_SECONDS)], {})  # at the floor: counts
    assert ended(history) == {("other", "Finished"): 2}
    assert history.state.end_floor == T0 + 5000 - NEAR_SECONDS
    history.observe([ended_job("d", T0 + 100)], {})
    assert history.state.end_floor == T0 + 5000 - NEAR_SECONDS
    assert ended(history) == {("other", "Finished"): 2}


def test_a_floor_below_the_process_start_stays_at_the_start() -> None:
    history = fresh()
    history.observe([ended_job("a", T0 + 10)], {})
    assert (history.state.end_floor, history.state.start_floor) == (T0, T0)


def test_memory_keeps_only_the_ids_near_the_watermark() -> None:
    history = fresh()
    listed: list[Job] = []
    for index in range(300):  # one job ends every minute; the listing keeps every old one
        listed.append(ended_job(f"j{index}", T0 + 60 * (index + 1)))
        history.observe(listed, {})
        state = history.state
        assert all(end >= state.end_floor for end in state.ended.values())
        assert all(start >= state.start_floor for start in state.waited.values())
    state = history.state
    assert ended(history) == {("other", "Finished"): 300}
    assert observed(waits(history).values()) == 300
    assert state.end_floor == T0 + 60 * 300 - NEAR_SECONDS
    assert len(state.ended) == NEAR_SECONDS / 60 + 1
    assert len(state.waited) <= NEAR_SECONDS / 60 + 1


def test_observe_says_whether_the_state_changed() -> None:
    history = fresh()
    steps = [
        [job("a", JobState.QUEUED, created=T0 + 1)],
        [job("a", JobState.QUEUED, created=T0 + 1)],
        [job("a", JobState.PROCESSING, created=T0 + 1, start=T0 + 2, running=0.0)],
        [job("a", JobState.PROCESSING, created=T0 + 1, start=T0 + 2, running=0.0)],
        [ended_job("b", T0 - 5)],  # not counted, but the last ended time moved
        [ended_job("b", T0 - 5)],
        [ended_job("c", T0 + 2000)],
    ]
    outcomes = []
    for listing in steps:
        before = history.state
        outcomes.append(history.observe(listing, {}))
        assert outcomes[-1] == (history.state != before)
    assert outcomes == [False, False, True, False, True, False, True]


# ---------------------------------------------------------------------------------------------
# Resuming from the state


def test_a_history_resumed_from_the_state_counts_nothing_twice_and_counts_new_ends() -> None:
    config = jobs_config(groups=[("news", "^news")])
    before = fresh(config)
    old = [ended_job("a", T0 + 100, name="news-a"), ended_job("b", T0 + 200, state=ERROR)]
    started = job("c", JobState.PROCESSING, created=T0 + 150, start=T0 + 160, running=0.0)
    before.observe([*old, started], {"b": [task("TransientError")]})
    after = JobHistory(config, T0 + 1000, state=before.state)
    assert dict(after.snapshot.last_ended) == {
        ("news", "Finished"): T0 + 100,
        ("other", "Error"): T0 + 200,
    }
    done = job("c", CANCELED, created=T0 + 150, start=T0 + 160, end=T0 + 900)
    after.observe([*old, done, ended_job("d", T0 + 950)], {"b": [task("TransientError")]})
    assert ended(after) == {("other", "Canceled"): 1, ("other", "Finished"): 1}
    assert waits(after)["other"].count == 1  # d's; c's wait was observed before the restart
    assert errors(after) == {}
    assert after.snapshot.created == T0 + 1000


def test_the_state_is_a_copy() -> None:
    history = fresh()
    history.observe([ended_job("a", T0 + 100)], {})
    state = history.state
    history.observe([ended_job("b", T0 + 200)], {})
    assert list(state.ended) == ["a"]


def test_last_ended_of_groups_no_longer_configured_is_dropped() -> None:
    state = HistoryState(
        T0, T0, None, last_ended={("gone", "Finished"): T0, ("other", "Error"): T0}
    )
    history = JobHistory(jobs_config(), T0, state=state)
    assert dict(history.snapshot.last_ended) == {("other", "Error"): T0}


# ---------------------------------------------------------------------------------------------
# Any sequence of listings: the counts a model of the floors expects


@dataclass(frozen=True)
class Life:
    """One job's life: Queued from ``created``, Processing from ``start`` (``None``: never),
    final at ``end``."""

    id: str
    name: str
    created: float
    start: float | None
    end: float
    final: JobState
    reported: bool  # whether AMS gives a RunningDuration once it ended

    def at(self, now: float) -> Job | None:
        if now < self.created:
            return None
        if now >= self.end:
            running = self.run if self.reported else None
            return job(self.id, self.final, created=self.created, start=self.start, end=self.end, name=self.name, running=running)  # fmt: skip
        if self.start is not None and now >= self.start:
            return job(self.id, JobState.PROCESSING, created=self.created, start=self.start, name=self.name, running=0.0)  # fmt: skip
        return job(self.id, JobState.QUEUED, created=self.created, name=self.name, running=0.0)

    @property
    def run(self) -> float:
        return 0.0 if self.start is None else self.end - self.start

    @property
    def duration(self) -> float | None:
        """What the duration histogram observes when it ends (nothing without any duration)."""
        if self.reported or self.start is not None:
            return self.run
        return None

    @property
    def group(self) -> str:
        return "alpha" if self.name.startswith("a-") else "other"


@st.composite
def lives(draw: st.DrawFn) -> list[Life]:
    count = draw(st.integers(1, 10))
    found = []
    for index in range(count):
        created = T0 + draw(st.integers(-2000, 5000))
        queued = draw(st.none() | st.integers(0, 1500))
        start = None if queued is None else created + queued
        end = (created if start is None else start) + draw(st.integers(0, 3000))
        found.append(
            Life(
                id=f"nb:jid:UUID:{index}",
                name=f"{draw(st.sampled_from(['a', 'b']))}-{index}",
                created=created,
                start=start,
                end=end,
                final=draw(st.sampled_from([FINISHED, ERROR, CANCELED])),
                reported=draw(st.booleans()),
            )
        )
    return found


class Model:
    """What the history should count: a job once, when first listed final with its EndTime at or
    above the floor; a queue wait once, when first listed started at or above it (unless the job
    ended below it). The floor is the process start, raised after each listing to the latest
    counted EndTime less NEAR_SECONDS."""

    def __init__(self) -> None:
        self.floor = T0
        self.watermark: float | None = None
        self.counted: set[str] = set()
        self.waited: set[str] = set()
        self.ended: Counter[tuple[str, str]] = Counter()
        self.durations: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
        self.waits: defaultdict[str, list[float]] = defaultdict(list)

    def observe(self, shown: list[tuple[Life, Job]]) -> None:
        floor = self.floor
        for life, seen in shown:
            if seen.state.is_final and life.id not in self.counted and life.end >= floor:
                self.counted.add(life.id)
                key = (life.group, life.final.label)
                self.ended[key] += 1
                if life.duration is not None:
                    self.durations[key].append(life.duration)
                self.watermark = max(self.watermark or life.end, life.end)
            if (
                seen.start_time is not None
                and life.id not in self.waited
                and seen.start_time >= floor
                and not (seen.state.is_final and life.end < floor)
            ):
                self.waited.add(life.id)
                self.waits[life.group].append(seen.start_time - life.created)
        if self.watermark is not None:
            self.floor = max(self.floor, self.watermark - NEAR_SECONDS)


def summed(pairs: Iterable[tuple[object, Distribution]]) -> dict[object, tuple[int, float]]:
    """Observations and their sum by key, over several histories; keys without any left out."""
    total: dict[object, tuple[int, float]] = {}
    for key, distribution in pairs:
        count, value = total.get(key, (0, 0.0))
        total[key] = (count + distribution.count, value + distribution.sum)
    return {key: pair for key, pair in total.items() if pair[0]}


def assert_observed(
    got: dict[object, tuple[int, float]], values: dict[object, list[float]]
) -> None:
    expected = {key: v for key, v in values.items() if v}
    assert {key: n for key, (n, _) in got.items()} == {key: len(v) for key, v in expected.items()}
    for key, (_, total) in got.items():
        assert total == pytest.approx(sum(expected[key]))


@SETTINGS
@given(lives(), st.data())
def test_any_sequence_of_listings_counts_what_the_floors_allow_once(
    plans: list[Life], data: st.DataObject
) -> None:
    config = jobs_config(groups=[("alpha", "^a-")])
    times = sorted(data.draw(st.lists(st.integers(0, 9000), min_size=1, max_size=8)))
    restart = data.draw(st.none() | st.integers(0, len(times) - 1))
    histories = [fresh(config)]
    model = Model()
    for index, offset in enumerate(times):
        now = T0 + offset
        if index == restart:
            histories.append(JobHistory(config, now, state=histories[-1].state))
        history = histories[-1]
        visible = data.draw(st.lists(st.booleans(), min_size=len(plans), max_size=len(plans)))
        shown = [
            (life, seen)
            for life, show in zip(plans, visible, strict=True)
            if show and (seen := life.at(now)) is not None
        ]
        shown = data.draw(st.permutations(shown))
        before = history.state
        changed = history.observe([seen for _, seen in shown], {})
        model.observe(shown)
        state = history.state
        assert changed == (state != before)
        assert (state.end_floor, state.start_floor) == (model.floor, model.floor)
        assert state.watermark == model.watermark
        assert all(end >= max(T0, state.end_floor) for end in state.ended.values())
        assert set(state.ended) <= model.counted and set(state.waited) <= model.waited
    counts = sum((Counter(ended(history)) for history in histories), Counter())
    assert counts == model.ended
    assert_observed(
        summed(p for h in histories for p in h.snapshot.durations), dict(model.durations)
    )
    assert_observed(summed(p for h in histories for p in h.snapshot.queue_waits), dict(model.waits))


# ---------------------------------------------------------------------------------------------
# The history file: round trip and atomic writes


def sample_state() -> HistoryState:
    return HistoryState(
        end_floor=T0 + 100.5,
        start_floor=T0 + 90.25,
        watermark=T0 + 700.125,
        ended={"nb:jid:UUID:a": T0 + 700.125, "ünï-💥": T0 + 200.0},
        waited={"nb:jid:UUID:a": T0 + 300.0},
        last_ended={("news", "Finished"): T0 + 700.125, ("other", "Canceled"): T0 - 5.0},
    )


def stored(tmp_path: Path, document: object | bytes, account: str = ACCOUNT) -> HistoryFile:
    """A history file holding ``document`` (JSON-encoded unless it is bytes)."""
    file = HistoryFile(tmp_path, account)
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    file.path.write_bytes(raw)
    return file


def test_a_saved_state_loads_back_equal(tmp_path: Path) -> None:
    file = HistoryFile(tmp_path, ACCOUNT)
    for state in (
        sample_state(),
        replace(sample_state(), watermark=None, ended={}, waited={}, last_ended={}),
    ):
        assert file.save(state, now=T0 + 800) is True
        assert HistoryFile(tmp_path, ACCOUNT).load(now=T0 + 800) == state


@SETTINGS
@given(
    st.dictionaries(st.text(max_size=40), st.floats(0, 1e10), max_size=5),
    st.dictionaries(st.text(max_size=40), st.floats(0, 1e10), max_size=5),
    st.dictionaries(
        st.tuples(st.text(max_size=10), st.sampled_from(["Finished", "Error", "Canceled"])),
        st.floats(0, 1e10),
        max_size=4,
    ),
    st.floats(0, 1e10),
    st.none() | st.floats(0, 1e10),
)
def test_any_state_loads_back_equal(
    ended_ids: dict[str, float],
    waited_ids: dict[str, float],
    last: dict[tuple[str, str], float],
    floor: float,
    watermark: float | None,
) -> None:
    state = HistoryState(floor, floor, watermark, ended_ids, waited_ids, last)
    with tempfile.TemporaryDirectory() as directory:
        file = HistoryFile(Path(directory), ACCOUNT)
        assert file.save(state, now=1e10)
        assert file.load(now=1e10) == state


def test_a_state_with_a_long_job_id_loads_back(tmp_path: Path) -> None:
    state = replace(sample_state(), ended={"x" * 2000: T0 + 700.125})
    file = HistoryFile(tmp_path, ACCOUNT)
    assert file.save(state, now=T0 + 800)
    assert file.load(now=T0 + 800) == state


def test_a_history_resumed_from_the_file_counts_nothing_twice(tmp_path: Path) -> None:
    config = jobs_config()
    before = fresh(config)
    listing = [ended_job("a", T0 + 100), ended_job("b", T0 + 200)]
    before.observe(listing, {})
    HistoryFile(tmp_path, ACCOUNT).save(before.state, now=T0 + 300)
    state = HistoryFile(tmp_path, ACCOUNT).load(now=T0 + 400)
    assert state is not None
    after = JobHistory(config, T0 + 400, state=state)
    after.observe([*listing, ended_job("c", T0 + 350)], {})
    assert ended(after) == {("other", "Finished"): 1}


def test_each_account_has_its_own_file_whatever_its_name(tmp_path: Path) -> None:
    names = ["prod", "Prod", "../etc/passwd", "a/b", "ünï", "x" * 300]
    paths = {HistoryFile(tmp_path, name).path for name in names}
    assert len(paths) == len(names)
    assert all(path.parent == tmp_path for path in paths)
    assert all(re.fullmatch(r"history-[0-9a-f]{16}\.json", path.name) for path in paths)


def test_saves_replace_the_file_and_leave_no_temporary_file(tmp_path: Path) -> None:
    file = HistoryFile(tmp_path, ACCOUNT)
    for step in range(5):
        state = replace(sample_state(), watermark=T0 + step)
        assert file.save(state, now=T0 + 800)
        assert sorted(p.name for p in tmp_path.iterdir()) == [file.path.name]
        assert file.load(now=T0 + 800) == state
    document = json.loads(file.path.read_text())
    assert (document["format"], document["version"], document["account"]) == (
        "ams-exporter-history",
        1,
        ACCOUNT,
    )
    assert document["saved"] == T0 + 800


def test_a_save_that_cannot_replace_the_file_removes_its_temporary_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = HistoryFile(tmp_path, ACCOUNT)
    file.path.mkdir()  # os.replace cannot put a file over a directory
    with caplog.at_level(logging.WARNING, "exporter"):
        assert file.save(sample_state(), now=T0) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == [file.path.name]
    assert len(caplog.records) == 1


def _break_deleted(directory: Path) -> None:
    shutil.rmtree(directory)


def _break_unwritable(directory: Path) -> None:
    # procfs takes no new files, whoever asks (a chmod would not stop root, who runs CI).
    shutil.rmtree(directory)
    directory.symlink_to(UNWRITABLE)


def _break_file(directory: Path) -> None:
    shutil.rmtree(directory)
    directory.write_text("a file where the directory was\n")


def _repair(directory: Path) -> None:
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    if directory.exists():
        directory.chmod(0o700)
    else:
        directory.mkdir()


@pytest.mark.parametrize("breaks", [_break_deleted, _break_unwritable, _break_file])
def test_a_failing_save_warns_once_and_the_next_success_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, breaks: Callable[[Path], None]
) -> None:
    directory = tmp_path / "storage"
    directory.mkdir()
    file = HistoryFile(directory, ACCOUNT)
    assert file.save(sample_state(), now=T0)
    breaks(directory)
    try:
        with caplog.at_level(logging.INFO, "exporter"):
            assert file.save(sample_state(), now=T0) is False
            assert file.save(sample_state(), now=T0) is False
            assert file.save(sample_state(), now=T0) is False
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            message = warnings[0].getMessage()
            assert f"account {ACCOUNT}: cannot write the history file {file.path} (" in message
            caplog.clear()
            _repair(directory)
            assert file.save(sample_state(), now=T0) is True
            assert file.save(sample_state(), now=T0) is True
    finally:
        _repair(directory)
    (recovered,) = caplog.records
    assert recovered.levelno == logging.INFO
    assert recovered.getMessage() == (
        f"account {ACCOUNT}: the history file {file.path} is written again"
    )
    assert sorted(p.name for p in directory.iterdir()) == [file.path.name]
    assert file.load(now=T0 + 1000) == sample_state()


# ---------------------------------------------------------------------------------------------
# The history file: what load refuses


def test_a_missing_file_loads_as_nothing_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "exporter"):
        assert HistoryFile(tmp_path, ACCOUNT).load(now=T0) is None
    assert caplog.records == []
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_cannot_be_read_is_warned_about_and_left_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = HistoryFile(tmp_path, ACCOUNT)
    file.path.mkdir()
    with caplog.at_level(logging.WARNING, "exporter"):
        assert file.load(now=T0) is None
    (record,) = caplog.records
    assert str(file.path) in record.getMessage()
    assert file.path.is_dir()


def _valid() -> dict[str, object]:
    """A document as a save writes it, for T0 + 800."""
    return {
        "format": "ams-exporter-history",
        "version": 1,
        "account": ACCOUNT,
        "saved": T0 + 800,
        "end_floor": T0 + 100,
        "start_floor": T0 + 100,
        "watermark": T0 + 700,
        "ended": {"a": T0 + 700},
        "waited": {"a": T0 + 640},
        "last_ended": [["other", "Finished", T0 + 700]],
    }


_MISSING = object()


def _with(**changes: object) -> dict[str, object]:
    """The valid document with keys replaced (``_MISSING`` removes one)."""
    document = _valid()
    for key, value in changes.items():
        if value is _MISSING:
            document.pop(key)
        else:
            document[key] = value
    return document


_TRUNCATED = json.dumps(_valid()).encode()[:-20]

# (what the file holds, what the warning says is wrong with it)
_REFUSED: list[tuple[str, object | bytes, str]] = [
    ("truncated", _TRUNCATED, "not JSON: "),
    ("not utf-8", b'{"format": "\xff\xfe"}', "not JSON: "),
    ("latin-1", json.dumps(_valid()).replace('"a"', '"\u00e9"').encode("latin-1"), "not JSON: "),
    ("empty", b"", "not JSON: "),
    ("blank", b"  \n", "not JSON: "),
    ("nul bytes", b"\0" * 100, "not JSON: "),
    ("null", None, "not an ams-exporter history file"),
    ("true", True, "not an ams-exporter history file"),
    ("integer", 1, "not an ams-exporter history file"),
    ("float", 1.5, "not an ams-exporter history file"),
    ("string", "s", "not an ams-exporter history file"),
    ("list", [], "not an ams-exporter history file"),
    ("object", {}, "not an ams-exporter history file"),
    ("list of the document", [_valid()], "not an ams-exporter history file"),
    ("other format", _with(format="prometheus-history"), "not an ams-exporter history file"),
    ("no format", _with(format=_MISSING), "not an ams-exporter history file"),
    ("format in capitals", _with(format="AMS-EXPORTER-HISTORY"), "not an ams-exporter history file"),
    ("later version", _with(version=2), "format version 2, expected 1"),
    ("version 0", _with(version=0), "format version 0, expected 1"),
    ("no version", _with(version=_MISSING), "format version null, expected 1"),
    ("version as text", _with(version="1"), 'format version "1", expected 1'),
    ("version true", _with(version=True), "format version true, expected 1"),
    ("version 1.5", _with(version=1.5), "format version 1.5, expected 1"),
    ("another account", _with(account="staging"), 'it belongs to the account "staging"'),
    ("no account", _with(account=_MISSING), "it belongs to the account null"),
    ("account in capitals", _with(account="PROD"), 'it belongs to the account "PROD"'),
    ("end floor ahead", _with(end_floor=T0 + 800 + 86400 + 1), "its times are more than a day ahead"),
    ("start floor ahead", _with(start_floor=T0 + 800 + 86400 + 1), "its times are more than a day ahead"),
    ("watermark ahead", _with(watermark=T0 + 800 + 86400 + 1), "its times are more than a day ahead"),
    ("last ended pair", _with(last_ended=[["other", "Finished"]]), "last_ended: expected [group, state, time] entries"),
    ("last ended four", _with(last_ended=[["other", "Finished", T0, 1]]), "last_ended: expected [group, state, time] entries"),
    ("last ended state", _with(last_ended=[["other", "Running", T0]]), "last_ended: expected [group, state, time] entries"),
    ("last ended group", _with(last_ended=[[1, "Finished", T0]]), "last_ended: expected [group, state, time] entries"),
    ("last ended object", _with(last_ended=[{"group": "other"}]), "last_ended: expected [group, state, time] entries"),
    ("last ended list state", _with(last_ended=[["other", ["Finished"], T0]]), "last_ended: expected [group, state, time] entries"),
    ("last ended object state", _with(last_ended=[["other", {}, T0]]), "last_ended: expected [group, state, time] entries"),
    ("last ended time", _with(last_ended=[["other", "Finished", "x"]]), 'last_ended: expected a number of seconds, got "x"'),
]  # fmt: skip

# Every field that holds a time, and each JSON value of the wrong type or out of range.
_TIME_FIELDS = ["end_floor", "start_floor", "watermark", "ended", "waited", "last_ended"]
_WRONG_TIMES: list[tuple[str, str]] = [
    # (the value as JSON text, what the message says about it)
    ("null", "expected a number of seconds, got null"),
    ("true", "expected a number of seconds, got true"),
    ("false", "expected a number of seconds, got false"),
    ('"1700000000"', 'expected a number of seconds, got "1700000000"'),
    ("[]", "expected a number of seconds, got list"),
    ("{}", "expected a number of seconds, got dict"),
    ("NaN", "expected a number of seconds, got NaN"),
    ("Infinity", "expected a number of seconds, got Infinity"),
    ("-Infinity", "expected a number of seconds, got -Infinity"),
    ("1e400", "expected a number of seconds, got Infinity"),
    ("-1", "-1 is not a Unix time"),
    ("-0.5", "-0.5 is not a Unix time"),
    ("1e11", "100000000000.0 is not a Unix time"),
    ("1e300", "1e+300 is not a Unix time"),
    ("1" + "0" * 400, "a 401-digit number is not a Unix time"),
]


def _time_cases() -> list[tuple[str, bytes, str]]:
    """Each wrong value in each time field (inside the object or entry that holds it)."""
    cases = []
    for field in _TIME_FIELDS:
        for text, problem in _WRONG_TIMES:
            if field == "watermark" and text == "null":
                continue  # no watermark yet: valid
            document = _valid()
            key = field
            if field in ("ended", "waited"):
                document[field] = {"a": "@@"}
                key = f"{field}['a']"
            elif field == "last_ended":
                document[field] = [["other", "Finished", "@@"]]
            else:
                document[field] = "@@"
            raw = json.dumps(document).replace('"@@"', text).encode()
            shown = text if len(text) <= 12 else f"a {len(text)}-digit integer"
            cases.append((f"{field}={shown}", raw, f"{key}: {problem}"))
    return cases


# The containers themselves, with each JSON type they must not be.
_CONTAINERS = {
    "ended": ("expected an object of job ids", ["null", "true", "1", "1.5", '"s"', "[]"]),
    "waited": ("expected an object of job ids", ["null", "true", "1", "1.5", '"s"', "[]"]),
    "last_ended": ("expected a list", ["null", "true", "1", "1.5", '"s"', "{}"]),
}


def _container_cases() -> list[tuple[str, bytes, str]]:
    cases = []
    for field, (problem, values) in _CONTAINERS.items():
        for text in values:
            document = _valid()
            document[field] = "@@"
            raw = json.dumps(document).replace('"@@"', text).encode()
            cases.append((f"{field}={text}", raw, f"{field}: {problem}, got "))
        missing = _valid()
        missing.pop(field)
        cases.append((f"no {field}", json.dumps(missing).encode(), f"{field}: {problem}, got null"))
    for field in ("end_floor", "start_floor"):
        missing = _valid()
        missing.pop(field)
        cases.append((f"no {field}", json.dumps(missing).encode(), f"{field}: expected a number of seconds, got null"))  # fmt: skip
    return cases


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


_CASES = [
    *((name, value if isinstance(value, bytes) else json.dumps(value).encode(), reason) for name, value, reason in _REFUSED),
    *_time_cases(),
    *_container_cases(),
    ("deeply nested", _deep(200_000), "not JSON: "),
    ("deeply nested inside", json.dumps(_with(ended="@@")).replace('"@@"', "[" * 200_000).encode(), "not JSON: "),
]  # fmt: skip


def _assert_set_aside(
    file: HistoryFile, content: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    message = warnings[0].getMessage()
    assert message.startswith(f"account {ACCOUNT}: the history file {file.path} cannot be used (")
    assert reason in message
    assert f"it was renamed to {file.path.name}.unreadable; counting starts afresh" in message
    aside = file.path.with_name(file.path.name + ".unreadable")
    assert not file.path.exists()
    assert aside.read_bytes() == content


@pytest.mark.parametrize(("content", "reason"), [c[1:] for c in _CASES], ids=[c[0] for c in _CASES])
def test_a_file_that_cannot_be_used_is_set_aside_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, reason: str
) -> None:
    file = stored(tmp_path, content)
    with caplog.at_level(logging.WARNING, "exporter"):
        assert file.load(now=T0 + 800) is None
    _assert_set_aside(file, content, reason, caplog)
    with caplog.at_level(logging.WARNING, "exporter"):
        assert file.load(now=T0 + 800) is None  # the file set aside is not read again


def test_the_valid_document_of_these_tests_loads(tmp_path: Path) -> None:
    assert stored(tmp_path, _valid()).load(now=T0 + 800) == HistoryState(
        T0 + 100, T0 + 100, T0 + 700, {"a": T0 + 700}, {"a": T0 + 640}, {("other", "Finished"): T0 + 700}
    )  # fmt: skip


def test_a_file_over_the_size_limit_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = HistoryFile(tmp_path, ACCOUNT)
    with file.path.open("wb") as handle:
        handle.write(json.dumps(_valid()).encode())
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: no time spent writing it
    with caplog.at_level(logging.WARNING, "exporter"):
        assert file.load(now=T0 + 800) is None
    (record,) = caplog.records
    assert "(larger than 64 MiB)" in record.getMessage()
    assert file.path.with_name(file.path.name + ".unreadable").stat().st_size == MAX_FILE_BYTES + 1


def test_a_file_set_aside_replaces_an_older_one_set_aside(tmp_path: Path) -> None:
    file = stored(tmp_path, b"first")
    assert file.load(now=T0) is None
    file.path.write_bytes(b"second")
    assert file.load(now=T0) is None
    aside = file.path.with_name(file.path.name + ".unreadable")
    assert aside.read_bytes() == b"second"


def test_floors_slightly_ahead_of_the_clock_are_brought_back_to_now(tmp_path: Path) -> None:
    now = T0 + 800
    document = _with(end_floor=now + 100, start_floor=now + 86400, watermark=now + 86400)
    state = stored(tmp_path, document).load(now=now)
    assert state is not None
    assert (state.end_floor, state.start_floor) == (now, now)
    assert state.watermark == now + 86400  # a day ahead at most is believed


def test_floors_behind_the_clock_are_kept(tmp_path: Path) -> None:
    state = stored(tmp_path, _with(end_floor=T0, start_floor=T0 - 5)).load(now=T0 + 800)
    assert state is not None
    assert (state.end_floor, state.start_floor) == (T0, T0 - 5)


def test_fields_the_reader_does_not_know_are_ignored(tmp_path: Path) -> None:
    assert stored(tmp_path, _with(comment="hand edited")).load(now=T0 + 800) is not None


# ---------------------------------------------------------------------------------------------
# The storage directory


def test_prepare_directory_creates_a_missing_directory(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    assert prepare_directory(directory) == directory
    assert directory.is_dir()
    assert list(directory.iterdir()) == []  # the probe is gone
    assert prepare_directory(directory) == directory  # and an existing one is fine


def test_prepare_directory_refuses_a_regular_file(tmp_path: Path) -> None:
    file = tmp_path / "storage"
    file.write_text("x")
    with pytest.raises(StorageError) as caught:
        prepare_directory(file)
    assert str(caught.value) == f"{file} is not a directory"


def test_prepare_directory_refuses_a_path_under_a_regular_file(tmp_path: Path) -> None:
    file = tmp_path / "storage"
    file.write_text("x")
    with pytest.raises(StorageError) as caught:
        prepare_directory(file / "history")
    assert str(caught.value) == f"cannot create {file / 'history'}: Not a directory"


def test_prepare_directory_refuses_a_directory_it_cannot_write_in() -> None:
    with pytest.raises(StorageError) as caught:
        prepare_directory(UNWRITABLE)
    assert str(caught.value).startswith(f"cannot write in {UNWRITABLE}: ")


@pytest.mark.parametrize(
    "document",
    [
        _with(ended={"a": T0 + 800 + 86400 + 1}),
        _with(waited={"a": T0 + 800 + 86400 + 1}),
        _with(last_ended=[["other", "Finished", T0 + 800 + 86400 + 1]]),
    ],
    ids=["ended", "waited", "last ended"],
)
def test_job_times_ahead_of_the_clock_are_kept_as_ams_sent_them(tmp_path, caplog, document):
    # Only the floors and the watermark are the exporter's own times (the watermark never
    # passes the collection time); a job's EndTime or StartTime is what AMS sent, and the file
    # must load back whatever it was, or the exporter would refuse its own file after a restart.
    path = tmp_path / HistoryFile(tmp_path, "prod").path.name
    path.write_text(json.dumps(document))
    with caplog.at_level(logging.WARNING):
        state = HistoryFile(tmp_path, "prod").load(T0 + 800)
    assert state is not None
    assert not caplog.records
