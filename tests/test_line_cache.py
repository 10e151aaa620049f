"""Reused job lines: a scrape with the line cache writes exactly what one without it writes.

Each example is a run of scrapes through one :class:`JobLineCache`, with the collection changed
between them as collections change: jobs change state, end, appear and disappear, tasks move, a job
moves to another group, a media processor is renamed, time passes, an account goes away, a probe
scrapes one account, formats alternate. After every step the body must equal the reference path
(prometheus_client's encoder on the contract's families) for the same scrape.
"""

from __future__ import annotations

import dataclasses
import gc

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from exporter.ams.model import Job, JobState, MediaProcessor, Task
from exporter.collect.jobview import JobView
from exporter.collect.snapshot import AccountResult, Collection
from exporter.expose.contract import (
    METRICS,
    ConfigStatus,
    JobSeries,
    JobStateSet,
    JobValue,
    Moves,
    Scrape,
)
from exporter.expose.linecache import JobLineCache
from exporter.expose.negotiation import negotiate
from exporter.expose.reference import Exposition, build_families
from exporter.expose.writer import _CyclicGcPause, _is_openmetrics, _number, render
from exporter.version import Build

BUILD = Build("1.0.0", "0" * 40, "2026-12-02T01:00:00Z", "3.12.8")
START = 1_764_650_000.5
TEXT = "text/plain;version=0.0.4"
OPENMETRICS = "application/openmetrics-text;version=1.0.0"
PROCESSOR = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"
NAMES = ["plain", 'quote " x', "back\\slash", "new\nline", "日本語 🎬", ""]


def _job(index: int, state: JobState, now: float) -> Job:
    created = now - 600.0 - index
    started = state not in (JobState.QUEUED, JobState.SCHEDULED)
    return Job(
        id=f"nb:jid:UUID:{index:08d}",
        name=NAMES[index % len(NAMES)] + f" {index}",
        state=state,
        created=created,
        last_modified=now,
        start_time=created + 30.0 if started else None,
        end_time=now if state.is_final else None,
        priority=index % 3,
        running_duration_seconds=0.0 if not state.is_final else 500.0 + index,
    )


def _tasks(index: int, progress: float) -> tuple[Task, ...]:
    return (
        Task(
            id=f"nb:tid:UUID:{index}-1",
            name=f"task {NAMES[index % len(NAMES)]}",
            state=2,
            progress=progress,
            running_duration_seconds=1.0,
            start_time=START,
            end_time=None,
            error_codes=("ErrorProcessingTask",),
            media_processor_id=PROCESSOR if index % 2 else f"nb:mpid:UUID:other-{index}",
        ),
    )


@dataclasses.dataclass
class _Account:
    """One account's state, changed step by step; its result is built on demand."""

    name: str
    jobs: dict[str, Job] = dataclasses.field(default_factory=dict)
    tasks: dict[str, tuple[Task, ...]] = dataclasses.field(default_factory=dict)
    groups: dict[str, str] = dataclasses.field(default_factory=dict)
    processor_name: str = "Media Encoder Standard"

    def result(self) -> AccountResult:
        return AccountResult(
            account=self.name,
            up=True,
            duration_seconds=0.5,
            last_success=START,
            jobs=tuple(self.jobs.values()),
            tasks=dict(self.tasks),
            state_counts=dict.fromkeys(JobState, 1),
            groups=dict(self.groups),
            processors={PROCESSOR: MediaProcessor(PROCESSOR, self.processor_name, "1.0")},
        )


def _accounts(now: float) -> list[_Account]:
    accounts = [_Account('one "1"'), _Account("two\\")]
    for index in range(24):
        account = accounts[index % 2]
        state = list(JobState)[index % len(JobState)]
        job = _job(index, state, now)
        account.jobs[job.id] = job
        account.tasks[job.id] = _tasks(index, 10.0)
        account.groups[job.id] = "uhd" if index % 3 else "other"
    return accounts


_step = st.one_of(
    st.tuples(st.just("state"), st.integers(0, 40), st.sampled_from(list(JobState))),
    st.tuples(st.just("progress"), st.integers(0, 40), st.floats(0, 100)),
    st.tuples(st.just("group"), st.integers(0, 40), st.sampled_from(["uhd", "news", "other"])),
    st.tuples(st.just("rename"), st.integers(0, 1), st.sampled_from(["MES", 'P "2"', "x\\y"])),
    st.tuples(st.just("remove"), st.integers(0, 40), st.none()),
    st.tuples(st.just("add"), st.integers(100, 140), st.sampled_from(list(JobState))),
    st.tuples(st.just("rename-job"), st.integers(0, 40), st.sampled_from(NAMES)),
    st.tuples(st.just("time"), st.integers(0, 1), st.floats(0.001, 5000)),
    st.tuples(st.just("drop-account"), st.integers(0, 1), st.none()),
    st.tuples(st.just("nothing"), st.integers(0, 1), st.none()),
)


def _apply(accounts: list[_Account], step: tuple[str, int, object], now: float) -> float:
    """Change ``accounts`` by ``step``; the collection's time afterwards."""
    kind, index, value = step
    if kind == "time":
        assert isinstance(value, float)
        return now + value
    if kind in ("rename", "drop-account"):
        if index < len(accounts):
            if kind == "rename":
                accounts[index].processor_name = str(value)
            elif len(accounts) > 1:
                del accounts[index]
        return now
    account = accounts[index % len(accounts)]
    job_id = f"nb:jid:UUID:{index:08d}"
    job = account.jobs.get(job_id)
    if kind == "add" and isinstance(value, JobState):
        account.jobs[job_id] = _job(index, value, now)
        account.tasks[job_id] = _tasks(index, 0.0)
    elif job is None:
        return now
    elif kind == "state" and isinstance(value, JobState):
        account.jobs[job_id] = dataclasses.replace(
            _job(index, value, now), created=job.created, name=job.name
        )
    elif kind == "progress" and isinstance(value, float):
        account.tasks[job_id] = _tasks(index, value)
    elif kind == "group":
        account.groups[job_id] = str(value)
    elif kind == "remove":
        del account.jobs[job_id]
    elif kind == "rename-job":
        account.jobs[job_id] = dataclasses.replace(job, name=f"{value} renamed")
    return now


def _scrape(collection: Collection, account: str | None = None) -> Scrape:
    requests = {(result.account, "ams", "200"): 3 for result in collection.accounts}
    return Scrape(collection, requests, BUILD, ConfigStatus(True, START), account)


def _reference(scrape: Scrape, accept: str) -> bytes:
    encoder, _ = choose_encoder(accept)
    families = build_families(scrape, om=_is_openmetrics(encoder))
    return encoder(Exposition(families, CollectorRegistry()))


@settings(max_examples=80, deadline=None)
@given(steps=st.lists(st.tuples(_step, st.booleans(), st.integers(0, 2)), min_size=1, max_size=25))
def test_scrapes_through_one_cache_write_what_the_reference_writes(steps):
    cache = JobLineCache()
    now = START
    accounts = _accounts(now)
    for step, openmetrics, probe in steps:
        now = _apply(accounts, step, now)
        accept = OPENMETRICS if openmetrics else TEXT
        results = tuple(account.result() for account in accounts)
        if probe < len(results) and probe < 2 and len(results) > 1 and step[0] == "nothing":
            probed = results[probe]
            scrape = _scrape(Collection(now, (probed,)), probed.account)
        else:
            scrape = _scrape(Collection(now, results))
        body, _ = render(scrape, negotiate(accept), CollectorRegistry(), cache)
        assert body == _reference(scrape, accept), f"after {step}"


def test_an_unchanged_job_is_not_written_again():
    accounts = _accounts(START)
    collection = Collection(START, tuple(account.result() for account in accounts))
    cache = JobLineCache()
    render(_scrape(collection), negotiate(TEXT), CollectorRegistry(), cache)
    first = {account.name: dict(_entries(cache, account.name)) for account in accounts}
    later = Collection(START + 60, collection.accounts)
    render(_scrape(later), negotiate(OPENMETRICS), CollectorRegistry(), cache)
    for account in accounts:
        again = _entries(cache, account.name)
        assert again.keys() == first[account.name].keys() == account.jobs.keys()
        assert all(again[job_id] is first[account.name][job_id] for job_id in again)
    assert len(cache) == sum(len(account.jobs) for account in accounts)


def test_a_removed_account_leaves_the_cache_with_the_next_scrape_of_every_account():
    accounts = _accounts(START)
    cache = JobLineCache()
    both = Collection(START, tuple(account.result() for account in accounts))
    render(_scrape(both), negotiate(TEXT), CollectorRegistry(), cache)
    probe = Collection(START, (accounts[0].result(),))
    render(_scrape(probe, accounts[0].name), negotiate(TEXT), CollectorRegistry(), cache)
    assert _entries(cache, accounts[1].name)  # a probe of one account keeps the others
    render(_scrape(probe), negotiate(TEXT), CollectorRegistry(), cache)
    assert not _entries(cache, accounts[1].name)
    assert len(cache) == len(accounts[0].jobs)


_times = st.none() | st.floats(START - 10 * 86400, START, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    state=st.sampled_from(list(JobState)),
    start=_times,
    end=_times,
    reported=st.none() | st.floats(0, 1e6) | st.just(0.0),
    later=st.floats(0.001, 1e7),
)
def test_what_the_writer_keeps_does_not_depend_on_the_collection_time(
    state, start, end, reported, later
):
    """The cache's premise, for any job: a value that does not move is the same at any ``now``,
    and one that moves until the job ended is the same once it has."""
    job = Job(
        id="nb:jid:UUID:1",
        name="n",
        state=state,
        created=START - 20 * 86400,
        last_modified=START,
        start_time=start,
        end_time=end,
        priority=0,
        running_duration_seconds=reported,
    )
    tasks = _tasks(1, 50.0)
    early, late = (JobView(job, tasks, now) for now in (START, START + later))
    for metric in METRICS:
        if isinstance(metric, JobValue) and metric.moves is Moves.ALWAYS:
            continue
        if isinstance(metric, JobValue) and metric.moves is Moves.UNTIL_ENDED and not early.ended:
            continue
        if isinstance(metric, JobValue):
            assert metric.value(early) == metric.value(late), metric.name
        elif isinstance(metric, JobStateSet):
            assert metric.state(early) is metric.state(late), metric.name
        elif isinstance(metric, JobSeries):
            assert list(metric.samples(early)) == list(metric.samples(late)), metric.name


def test_the_values_that_move_are_declared_so():
    moving = {
        metric.name: metric.moves
        for metric in METRICS
        if isinstance(metric, JobValue) and metric.moves is not Moves.NEVER
    }
    assert moving == {
        "ams_job_age_seconds": Moves.ALWAYS,
        "ams_job_running_duration_seconds": Moves.UNTIL_ENDED,
        "ams_job_queued_duration_seconds": Moves.UNTIL_ENDED,
    }
    queued = JobView(_job(1, JobState.QUEUED, START), None, START)
    processing = JobView(_job(2, JobState.PROCESSING, START), None, START)
    later = [dataclasses.replace(view, now=START + 60) for view in (queued, processing)]
    assert queued.queued_seconds + 60 == later[0].queued_seconds
    assert processing.running_seconds + 60 == later[1].running_seconds


def _entries(cache: JobLineCache, account: str):
    # The entries for whatever metrics the writer keyed them by: read through the private map.
    kept = cache._accounts.get(account)
    return {} if kept is None else kept[1]


def _changed_once(change) -> tuple[bytes, bytes]:
    """A scrape through a warm cache after ``change``, and the reference for the same scrape."""
    cache = JobLineCache()
    accounts = _accounts(START)
    before = _scrape(Collection(START, tuple(account.result() for account in accounts)))
    render(before, negotiate(TEXT), CollectorRegistry(), cache)
    change(accounts)
    after = _scrape(Collection(START, tuple(account.result() for account in accounts)))
    body, _ = render(after, negotiate(TEXT), CollectorRegistry(), cache)
    return body, _reference(after, TEXT)


def _processing(account: _Account) -> str:
    return next(i for i, job in account.jobs.items() if job.state is JobState.PROCESSING)


def test_each_input_of_a_job_line_invalidates_it():
    def rename_processor(accounts):
        accounts[1].processor_name = "renamed"  # account two runs index 1, 3, ...: PROCESSOR

    def move_task(accounts):
        job_id = _processing(accounts[0])
        accounts[0].tasks[job_id] = _tasks(int(job_id[-8:]), 99.0)

    def regroup(accounts):
        accounts[0].groups = dict.fromkeys(accounts[0].groups, "news")

    def end_job(accounts):
        job_id = _processing(accounts[0])
        accounts[0].jobs[job_id] = _job(int(job_id[-8:]), JobState.FINISHED, START)

    for change in (rename_processor, move_task, regroup, end_job):
        body, reference = _changed_once(change)
        assert body == reference, change.__name__


def test_a_job_that_left_leaves_the_cache():
    accounts = _accounts(START)
    cache = JobLineCache()
    render(
        _scrape(Collection(START, tuple(a.result() for a in accounts))),
        negotiate(TEXT),
        CollectorRegistry(),
        cache,
    )
    gone = next(iter(accounts[0].jobs))
    del accounts[0].jobs[gone]
    render(
        _scrape(Collection(START, tuple(a.result() for a in accounts))),
        negotiate(TEXT),
        CollectorRegistry(),
        cache,
    )
    assert gone not in _entries(cache, accounts[0].name)
    assert len(cache) == sum(len(account.jobs) for account in accounts)


@settings(max_examples=2000, deadline=None)
@given(st.floats() | st.integers(-(10**20), 10**20) | st.sampled_from([1e6, -1e6, 999999.9999]))
def test_the_quick_number_is_prometheus_clients_number(value):
    assert _number(value) == floatToGoString(value)


def test_the_collector_is_paused_while_any_body_is_written_and_resumed_after():
    assert gc.isenabled()
    first = _CyclicGcPause()
    first.__enter__()
    assert not gc.isenabled()
    first.__enter__()  # a second writer, overlapping
    first.__exit__(None, None, None)
    assert not gc.isenabled(), "the first writer to finish must not resume the collector"
    first.__exit__(None, None, None)
    assert gc.isenabled()
    gc.disable()  # paused by someone else: a write leaves it paused
    try:
        with _CyclicGcPause():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    accounts = _accounts(START)
    render(
        _scrape(Collection(START, tuple(a.result() for a in accounts))),
        negotiate(TEXT),
        CollectorRegistry(),
        JobLineCache(),
    )
    assert gc.isenabled()
