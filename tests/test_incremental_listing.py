"""Incremental listing: between full listings a collection asks AMS only for what can have changed,
and still exports exactly the account's in-scope jobs.

The oracle is the emulator: which jobs are in scope comes from its jobs (active, or ended less than
``finished_window`` ago by the exporter's clock), which listing a collection made from the date in
the ``$filter`` it received, and what a listing must cost from how many of its jobs that filter
matches. The rule for which listing comes when is restated here from the documentation
(docs/configuration.md, ``jobs.full_listing_interval``), not taken from the exporter.

Most tests drive an :class:`AccountPoller` in-process whose wall clock is the emulator's frozen clock
(optionally skewed), so that every date is exact; the reload and request-count tests run the exporter
as ``exporter.wiring`` builds it, on the host's clock.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ams_emulator import EmuJob, Emulator, Fault, JobState
from exporter.collect.poller import AccountPoller
from exporter.collect.snapshot import AccountResult
from exporter.config.model import JobsConfig
from exporter.deadline import Deadline
from exporter.wiring import build_exporter
from tests.support.expected import ACTIVE, ended_at, split_scope
from tests.support.harness import config_for, running_exporter
from tests.support.pki import Pki
from tests.support.spoiler import SpoilingProxy
from tests.support.wired import Wired, account_for, wire

HOUR = 3600.0
DAY = 24 * HOUR
WINDOW = HOUR
# How far before the previous listing a changes listing reaches back (the documented 5 minutes).
OVERLAP = 300.0
PAGE = 1000
JOBS_PATH = re.compile(r"/api/Jobs$")
DATE = re.compile(r"LastModified ge datetime'([0-9T:-]+)'")
START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
# Jobs ending this close to the window's edge are left out of the comparison: the emulator's and the
# exporter's readings of one millisecond date may differ in the last bit.
EDGE = 0.001
FINAL = (JobState.FINISHED, JobState.ERROR, JobState.CANCELED)
# A small living account: jobs arrive, queue for three slots, run a few minutes and end Finished,
# Error or Canceled while the clock moves.
LIVELY: dict[str, Any] = {
    "slots": 3,
    "arrivals_per_hour": 40.0,
    "mean_task_seconds": 200.0,
    "failure_ratio": 0.2,
    "cancel_ratio": 0.1,
    "history_days": 0.5,
    "recent_fraction": 0.3,
}


# ---------------------------------------------------------------------------------------------
# What AMS was asked


def literal_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def listing_dates(emu: Emulator) -> tuple[float | None, ...]:
    """The ``LastModified`` date of each distinct Jobs ``$filter`` the emulator answered, in the
    order first asked (``None``: a filter without a date)."""
    filters = [
        record.query.get("$filter", "")
        for record in emu.request_log
        if record.api == "ams" and JOBS_PATH.search(record.path)
    ]
    dates = []
    for text in dict.fromkeys(filters):
        found = DATE.search(text)
        dates.append(None if found is None else literal_time(found.group(1)))
    return tuple(dates)


def matching(jobs: Sequence[EmuJob], date: float) -> int:
    """How many jobs ``(active states) or LastModified ge date`` matches."""
    return sum(1 for job in jobs if job.state in ACTIVE or job.last_modified.timestamp() >= date)


def pages(matches: int) -> int:
    return matches // PAGE + 1


# ---------------------------------------------------------------------------------------------
# The documented rule of which listing comes when


@dataclass
class Schedule:
    """Which listing the next collection makes, by the documentation.

    Full: the first collection, after a failed or partial listing or a reload, once
    ``interval`` has passed since the last full one started, always with an interval of 0 s, and
    when the host's clock went back. Otherwise a changes listing, dated ``max(now - window,
    previous start - 5 min)``.
    """

    interval: float
    window: float = WINDOW
    previous: float | None = None  # start of the last complete listing; None: next is full
    full: float = 0.0  # start of the last full listing

    def next(self, now: float) -> tuple[str, float]:
        """("full" or "changes", the date of its filter)."""
        cutoff = now - self.window
        previous = self.previous
        if (
            previous is None
            or self.interval <= 0
            or now - self.full >= self.interval
            or now < previous
        ):
            return "full", cutoff
        return "changes", max(cutoff, previous - OVERLAP)

    def done(self, now: float, kind: str, *, complete: bool) -> None:
        if not complete:
            self.previous = None
            return
        self.previous = now
        if kind == "full":
            self.full = now

    def reload(self) -> None:
        self.previous = None


def literal(seconds: float) -> float:
    """A date as a ``datetime'...'`` literal carries it: whole seconds, rounded down."""
    return float(math.floor(seconds))


# ---------------------------------------------------------------------------------------------
# The in-scope oracle


def in_scope(jobs: Sequence[EmuJob], now: float, window: float = WINDOW) -> dict[str, int]:
    """``{id: state}`` of the jobs the contract puts in scope at ``now``."""
    return {
        job.id: int(job.state)
        for job in jobs
        if job.state in ACTIVE or ended_at(job) >= now - window
    }


def on_edge(job: EmuJob, now: float, window: float = WINDOW) -> bool:
    return job.state not in ACTIVE and abs(ended_at(job) - (now - window)) < EDGE


@dataclass
class Oracle:
    """The exported jobs every collection must show, from the emulator's jobs.

    A final job deleted upstream after the exporter listed it may stay until the next full
    listing, or until it leaves the window: a changes listing cannot see that it is gone.
    """

    window: float = WINDOW
    expected: dict[str, int] = field(default_factory=dict)
    known: dict[str, EmuJob] = field(default_factory=dict)
    lingering: set[str] = field(default_factory=set)
    lingered: set[str] = field(default_factory=set)  # every job that ever lingered

    def check(
        self, collected: Collected, kind: str, label: str, unreadable: frozenset[str] = frozenset()
    ) -> None:
        """``unreadable``: jobs AMS sent in a form the exporter cannot read (it skips them)."""
        now = collected.now
        present = {job.id for job in collected.jobs}
        jobs = [job for job in collected.jobs if job.id not in unreadable]
        if kind == "full":
            lingering: set[str] = set()
        else:
            candidates = {i for i, s in self.expected.items() if s not in ACTIVE} | self.lingering
            lingering = {
                job_id
                for job_id in candidates - present
                if ended_at(self.known[job_id]) >= now - self.window
            }
        self.known.update({job.id: job for job in jobs})
        expected = in_scope(jobs, now, self.window)
        expected.update({job_id: int(self.known[job_id].state) for job_id in lingering})
        edge = {job.id for job in jobs if on_edge(job, now, self.window)}
        edge |= {job_id for job_id in lingering if on_edge(self.known[job_id], now, self.window)}
        exported = collected.exported
        assert collected.result.up, f"{label}: {collected.result.error}"
        missing = {i: s for i, s in expected.items() if i not in exported and i not in edge}
        extra = {i: s for i, s in exported.items() if i not in expected and i not in edge}
        wrong = {
            i: (exported[i], s) for i, s in expected.items() if i in exported and exported[i] != s
        }
        assert not missing, f"{label}: in scope upstream but not exported: {missing}"
        assert not extra, f"{label}: exported but not in scope upstream: {extra}"
        assert not wrong, f"{label}: exported state != upstream state: {wrong}"
        self.expected, self.lingering = expected, lingering
        self.lingered |= lingering


# ---------------------------------------------------------------------------------------------
# An account collected in-process on the emulator's clock


class HostClock:
    """The exporter's wall clock: the emulator's (frozen) clock, ``skew`` seconds off."""

    def __init__(self, emu: Emulator, skew: float = 0.0) -> None:
        self.emu = emu
        self.skew = skew

    def __call__(self) -> float:
        return self.emu.clock.now().timestamp() + self.skew


@dataclass(frozen=True)
class Collected:
    now: float  # the exporter's clock during the collection
    result: AccountResult
    dates: tuple[float | None, ...]  # see listing_dates
    jobs: list[EmuJob]  # the emulator's jobs during the collection

    @property
    def exported(self) -> dict[str, int]:
        return {job.id: int(job.state) for job in self.result.jobs}


class Account:
    """An account poller wired as the exporter wires it, on a :class:`HostClock`."""

    def __init__(
        self, emu: Emulator, jobs: JobsConfig, skew: float = 0.0, via: SpoilingProxy | None = None
    ) -> None:
        self.emu = emu
        self.clock = HostClock(emu, skew)
        self.config = replace(account_for(emu), jobs=jobs)
        if via is not None:
            self.config = replace(self.config, endpoint=via.url, ca_file=str(via.ca_file))
        self.wired: Wired = wire(self.config)
        self.poller = AccountPoller(self.config, self.wired.client, self.clock)

    def collect(self) -> Collected:
        emu = self.emu
        emu.clear_log()
        before = sum(self.wired.counter.snapshot().values())
        now = self.clock()
        result = self.poller.collect(Deadline.after(20))
        sent = sum(self.wired.counter.snapshot().values()) - before
        for _ in range(200):  # the emulator logs a request once it answered it
            if len(emu.request_log) >= sent:
                break
            time.sleep(0.01)
        return Collected(now, result, listing_dates(emu), emu.jobs())

    def close(self) -> None:
        self.poller.close()


def jobs_config(interval: float, **overrides: Any) -> JobsConfig:
    return JobsConfig(
        finished_window=WINDOW,
        max_jobs=100_000,
        full_listing_interval=interval,
        **overrides,
    )


@pytest.fixture
def account_of() -> Iterator[Any]:
    """Makes :class:`Account` objects, closed after the test."""
    made: list[Account] = []

    def make(
        emu: Emulator,
        interval: float,
        skew: float = 0.0,
        via: SpoilingProxy | None = None,
        **jobs: Any,
    ) -> Account:
        account = Account(emu, jobs_config(interval, **jobs), skew, via)
        made.append(account)
        return account

    yield make
    for account in made:
        account.close()


def expect_listing(collected: Collected, schedule: Schedule, label: str) -> str:
    """Assert the collection listed as the schedule says; returns the kind."""
    kind, date = schedule.next(collected.now)
    assert collected.dates == (literal(date),), (
        f"{label}: expected a {kind} listing dated {literal(date)}, AMS was asked {collected.dates}"
    )
    return kind


# ---------------------------------------------------------------------------------------------
# 1. A scripted sequence


def test_every_collection_exports_the_in_scope_jobs_between_full_listings(account_of):
    """With a day between full listings, twelve collections over three hours of a living account
    and of jobs the test moves (added, started, ended Finished, Error and Canceled, added and ended
    between two collections, active and final ones deleted) export exactly the in-scope jobs with
    their states; the two final jobs deleted upstream stay until they leave the window, and every
    collection after the first is a changes listing dated as documented."""
    with Emulator(jobs=150, seed=161, speed=0, start=START, **LIVELY) as emu:
        account = account_of(emu, DAY)
        schedule, oracle = Schedule(DAY), Oracle()
        mine: dict[str, str] = {}

        def add(name: str, state: JobState = JobState.QUEUED) -> None:
            mine[name] = emu.add_job(name=f"scripted-{name}", state=state)

        def move(name: str, state: JobState) -> None:
            emu.set_job_state(mine[name], state)

        def scenario_job(state: int, *, final_in_scope: bool = False) -> str:
            now = emu.clock.now().timestamp()
            for job in emu.jobs():
                if job.id in mine.values() or job.state != state:
                    continue
                if not final_in_scope or ended_at(job) >= now - WINDOW + 600:
                    return job.id
            raise AssertionError(f"the scenario has no job in state {state} now")

        def round_1() -> None:
            for name in ("queued", "to-start", "to-delete"):
                add(name)
            for name in ("runs-to-finish", "runs-to-fail", "runs-to-cancel"):
                add(name, JobState.PROCESSING)
            add("ended-early", JobState.FINISHED)
            add("failed-early", JobState.ERROR)

        def round_2() -> None:
            move("to-start", JobState.PROCESSING)
            move("runs-to-finish", JobState.FINISHED)
            move("runs-to-fail", JobState.ERROR)
            move("runs-to-cancel", JobState.CANCELING)
            add("added-and-finished")
            move("added-and-finished", JobState.FINISHED)
            add("added-and-failed", JobState.PROCESSING)
            move("added-and-failed", JobState.ERROR)

        deleted_final: list[str] = []

        def round_3() -> None:
            move("runs-to-cancel", JobState.CANCELED)
            emu.delete_job(mine.pop("to-delete"))  # active, deleted upstream
            emu.delete_job(scenario_job(JobState.QUEUED))
            # Final: they may stay until the next full listing, or until they leave the window.
            deleted_final.extend([mine["ended-early"], scenario_job(3, final_in_scope=True)])
            for job_id in deleted_final:
                emu.delete_job(job_id)
            add("added-and-canceled")
            move("added-and-canceled", JobState.CANCELED)

        def round_4() -> None:
            add("added-started-deleted", JobState.PROCESSING)
            emu.delete_job(mine.pop("added-started-deleted"))
            add("ended-then-deleted", JobState.PROCESSING)

        def round_5() -> None:
            move("ended-then-deleted", JobState.FINISHED)
            emu.delete_job(mine["ended-then-deleted"])  # listed active, gone before it ended
            move("queued", JobState.CANCELED)

        script = {1: round_1, 2: round_2, 3: round_3, 4: round_4, 5: round_5}
        # Seconds the clock moves before each collection: some steps shorter than the overlap,
        # some longer, and enough in all for the early final jobs to leave the window.
        steps = [0, 60, 240, 0, 301, 900, 1500, 45, 2400, 700, 3700, 120]
        for number, seconds in enumerate(steps):
            emu.clock.advance(seconds)
            if number in script:
                script[number]()
            collected = account.collect()
            label = f"collection {number + 1} (+{seconds} s)"
            kind = expect_listing(collected, schedule, label)
            schedule.done(collected.now, kind, complete=True)
            oracle.check(collected, kind, label)
            assert kind == ("full" if number == 0 else "changes"), label
        assert oracle.lingered == set(deleted_final)
        assert oracle.lingering == set(), "a deleted job outlived the finished window"


# ---------------------------------------------------------------------------------------------
# 3. When a full listing comes


def final_in_scope(emu: Emulator, now: float) -> str:
    """A final job that stays in scope for at least another half hour."""
    for job in emu.jobs():
        if job.state not in ACTIVE and ended_at(job) >= now - WINDOW + 1800:
            return job.id
    raise AssertionError("no final job in scope")


def test_a_full_listing_comes_every_full_listing_interval(account_of):
    """With 10m, collections every 170 s list everything at 0, 680 and 1360 s and only the changes
    in between; a final job deleted upstream stays exported until the next full listing."""
    with Emulator(jobs=150, seed=162, speed=0, start=START, **LIVELY) as emu:
        account = account_of(emu, 600.0)
        schedule, oracle = Schedule(600.0), Oracle()
        kinds = []
        deleted = ""
        for number in range(10):
            if number:
                emu.clock.advance(170)
            if number == 1:
                deleted = final_in_scope(emu, account.clock())
                emu.delete_job(deleted)
            collected = account.collect()
            label = f"collection {number + 1}"
            kinds.append(expect_listing(collected, schedule, label))
            schedule.done(collected.now, kinds[-1], complete=True)
            oracle.check(collected, kinds[-1], label)
            assert (deleted in collected.exported) == (kinds[-1] == "changes" and number < 4)
        # 0, 170, 340, 510 s; 680 s is 600 s past the first full listing; then 1360 s.
        assert kinds == ["full", *["changes"] * 3, "full", *["changes"] * 3, "full", "changes"]


def test_a_failed_listing_is_followed_by_a_full_one(account_of):
    """A refused page fails the collection (a changes listing, then a full one); the collection
    after each lists everything, the one after that only the changes."""
    with Emulator(jobs=150, seed=163, speed=0, start=START, **LIVELY) as emu:
        account = account_of(emu, DAY)
        schedule, oracle = Schedule(DAY), Oracle()
        kinds = []
        for number in range(6):
            emu.clock.advance(60)
            failing = number in (2, 3)
            if failing:  # the first page of the listing is refused
                emu.faults.add(Fault(kind="status", status=403, path=r"/api/Jobs$", count=1))
            collected = account.collect()
            label = f"collection {number + 1}"
            kinds.append(expect_listing(collected, schedule, label))
            schedule.done(collected.now, kinds[-1], complete=not failing)
            if failing:
                assert not collected.result.up, label
            else:
                oracle.check(collected, kinds[-1], label)
        # The failed changes listing, then a failed full one: both are followed by a full one.
        assert kinds == ["full", "changes", "changes", "full", "full", "changes"]


def test_a_partial_listing_is_followed_by_a_full_one(account_of, pki: Pki):
    """A job AMS sends with an unknown State is skipped (the rest is exported); the collection after
    that partial listing lists everything."""
    with (
        Emulator(jobs=150, seed=170, speed=0, start=START, **LIVELY) as emu,
        SpoilingProxy(emu, pki) as proxy,
    ):
        account = account_of(emu, DAY, via=proxy)
        schedule, oracle = Schedule(DAY), Oracle()
        kinds = []
        spoiled = frozenset()
        for number in range(6):
            emu.clock.advance(60)
            # An active job: every listing asks for it.
            spoiled = frozenset(
                {min(job.id for job in emu.jobs() if job.state in ACTIVE)} if number == 2 else ()
            )
            proxy.spoiled = set(spoiled)
            collected = account.collect()
            label = f"collection {number + 1}"
            kinds.append(expect_listing(collected, schedule, label))
            assert collected.result.unreadable.get("job", 0) == len(spoiled), label
            schedule.done(collected.now, kinds[-1], complete=not spoiled)
            oracle.check(collected, kinds[-1], label, spoiled)
        assert kinds == ["full", "changes", "changes", "full", "changes", "changes"]


def test_a_host_clock_that_went_back_lists_everything(account_of):
    """The host's clock going back behind the previous listing's start makes a full listing; a clock
    going forward again does not."""
    with Emulator(jobs=150, seed=164, speed=0, start=START, **LIVELY) as emu:
        account = account_of(emu, DAY)
        schedule, oracle = Schedule(DAY), Oracle()
        kinds = []
        for number, skew in enumerate([0.0, 0.0, -400.0, -400.0, 0.0]):
            emu.clock.advance(120)
            account.clock.skew = skew
            collected = account.collect()
            label = f"collection {number + 1} (host clock {skew:+.0f} s)"
            kinds.append(expect_listing(collected, schedule, label))
            schedule.done(collected.now, kinds[-1], complete=True)
            oracle.check(collected, kinds[-1], label)
        assert kinds == ["full", "changes", "full", "changes", "changes"]


def test_changes_made_just_after_a_listing_by_a_clock_behind_the_hosts_are_seen(account_of):
    """The host's clock 4 min ahead of AMS's: jobs that end, and a job added and ended, seconds
    after a listing carry an AMS date before that listing's start by the host's clock; the
    5 minutes of overlap still list them."""
    with Emulator(jobs=150, seed=171, speed=0, start=START, **LIVELY) as emu:
        account = account_of(emu, DAY, skew=240.0)
        schedule, oracle = Schedule(DAY), Oracle()
        for number in range(4):
            emu.clock.advance(10)
            if number:
                active = sorted(job.id for job in emu.jobs() if job.state in ACTIVE)
                emu.set_job_state(active[0], JobState.FINISHED)
                emu.set_job_state(active[1], JobState.ERROR)
                quick = emu.add_job(name="quick", state=JobState.PROCESSING)
                emu.set_job_state(quick, JobState.CANCELED)
            collected = account.collect()
            label = f"collection {number + 1}"
            kind = expect_listing(collected, schedule, label)
            schedule.done(collected.now, kind, complete=True)
            oracle.check(collected, kind, label)


def test_every_listing_is_full_with_an_interval_of_0s(account_of):
    """``full_listing_interval: 0s``: every collection asks for everything in the window."""
    with Emulator(jobs=150, seed=165, speed=0, start=START, **LIVELY) as emu:
        account = account_of(emu, 0.0)
        oracle = Oracle()
        for number in range(5):
            emu.clock.advance(60)
            collected = account.collect()
            label = f"collection {number + 1}"
            assert collected.dates == (literal(collected.now - WINDOW),), label
            oracle.check(collected, "full", label)


@pytest.mark.parametrize("refused_from", [0, 2], ids=["from-the-start", "at-a-changes-listing"])
def test_a_refused_date_literal_makes_every_listing_full(account_of, refused_from):
    """When AMS refuses the date literal, the collection falls back to listing without it (a refused
    changes listing first tries a full one), and every later listing has no date: it is full."""
    with Emulator(jobs=150, seed=166, speed=0, start=START, **LIVELY) as emu:
        account = account_of(emu, DAY)
        schedule, oracle = Schedule(DAY), Oracle()
        for number in range(5):
            emu.clock.advance(90)
            if number == refused_from:
                emu.faults.add(Fault(kind="reject_datetime_filter"))
            collected = account.collect()
            label = f"collection {number + 1}"
            kind, date = schedule.next(collected.now)
            if number < refused_from:
                assert collected.dates == (literal(date),), label
            elif number == refused_from:
                # Refused: a changes listing falls back to a full one, which finds out that the
                # date is what AMS refuses; all in the same collection.
                tried = (
                    (literal(date),)
                    if kind == "full"
                    else (literal(date), literal(collected.now - WINDOW))
                )
                assert collected.dates == (*tried, None), label
                kind = "full"
            else:
                assert collected.dates == (None,), label
                kind = "full"
            schedule.done(collected.now, kind, complete=True)
            oracle.check(collected, kind, label)


# ---------------------------------------------------------------------------------------------
# On the host's clock, wired as ams-exporter wires it


@dataclass(frozen=True)
class Timed:
    """A collection on the host's clock: it started between ``before`` and ``after``."""

    before: float
    after: float
    dates: tuple[float | None, ...]

    def kind(self, previous: Timed | None, window: float) -> str:
        """Which listing the one date says this was: dated by now - window, or by the previous
        collection's start - 5 min."""
        (date,) = self.dates
        assert date is not None
        if literal(self.before - window) <= date <= literal(self.after - window):
            return "full"
        if previous is not None and (
            literal(previous.before - OVERLAP) <= date <= literal(previous.after - OVERLAP)
        ):
            return "changes"
        raise AssertionError(f"a listing dated {date} fits neither kind")


def settle_log(emu: Emulator, sent: int) -> None:
    for _ in range(200):  # the emulator logs a request once it answered it
        if len(emu.request_log) >= sent:
            return
        time.sleep(0.01)


def test_a_reload_makes_the_next_listing_a_full_one():
    """Through ``exporter.wiring``: a reload that keeps the account's poller (unchanged account) and
    one that replaces it (changed account) are each followed by a full listing, then changes."""
    settings: dict[str, Any] = {
        "jobs": {"finished_window": "1h", "full_listing_interval": "1d", "max_jobs": 100000}
    }
    with Emulator(jobs=150, seed=167, speed=0, **LIVELY) as emu:
        exporter = build_exporter(config_for({"a": emu}, {"a": settings}))
        try:

            def collect() -> Timed:
                emu.clear_log()
                sent = sum(exporter.counter.snapshot().values())
                before = time.time()
                collection = exporter.poller.collect(Deadline.after(20))
                after = time.time()
                settle_log(emu, sum(exporter.counter.snapshot().values()) - sent)
                (result,) = collection.accounts
                assert result.up, result.error
                inside, outside = split_scope(emu.jobs(), collection.time, WINDOW)
                exported = {job.id for job in result.jobs}
                assert {job.id for job in inside} <= exported
                assert not {job.id for job in outside} & exported
                return Timed(before, after, listing_dates(emu))

            kinds = []
            previous: Timed | None = None
            for step in ("start", "", "reload unchanged", "", "reload changed", ""):
                if step == "reload unchanged":
                    changes = exporter.apply(config_for({"a": emu}, {"a": settings}))
                    assert changes.kept == ["a"], changes
                elif step == "reload changed":
                    other = {"jobs": {**settings["jobs"], "max_jobs": 99999}}
                    changes = exporter.apply(config_for({"a": emu}, {"a": other}))
                    assert changes.changed == ["a"], changes
                timed = collect()
                kinds.append(timed.kind(previous, WINDOW))
                previous = timed
        finally:
            exporter.close()
    assert kinds == ["full", "changes"] * 3


# ---------------------------------------------------------------------------------------------
# 4. What a listing costs


def test_requests_per_collection_follow_the_formula_for_both_listings():
    """2,500 in-scope jobs, 300 active: ``ams_api_requests_total{api="ams"}`` grows by the documented
    count per collection: the first one by 3 full-listing pages, a Tasks read per running job and
    per job in Error, and the two capacity reads; each steady one by one changes-listing page and
    a Tasks read per running job, which is fewer."""
    big = {"jobs": {"finished_window": "48h", "full_listing_interval": "1d", "max_jobs": 100000}}
    scenario = {"history_days": 1.5, "active_fraction": 0.12}
    with Emulator(jobs=2500, seed=168, speed=0, **scenario) as emu:
        with running_exporter({"big": emu}, {"big": big}) as exporter:
            collections: list[Timed] = []
            requests: list[int] = []
            total = 0.0
            for _ in range(4):
                emu.clear_log()
                before = time.time()
                scrape = exporter.scrape()
                after = time.time()
                assert scrape.value("ams_up", account="big") == 1
                counted = sum(scrape.values("ams_api_requests_total", account="big", api="ams"))
                requests.append(int(counted - total))
                settle_log(emu, requests[-1])
                collections.append(Timed(before, after, listing_dates(emu)))
                total = counted
            jobs = emu.jobs()
    window = 48 * HOUR
    inside, _ = split_scope(jobs, collections[0].before, window)
    assert len(inside) == len(jobs), "every job is in scope, none near the window's edge"
    running = sum(1 for job in jobs if job.state in (JobState.PROCESSING, JobState.CANCELING))
    failed = sum(1 for job in jobs if job.state == JobState.ERROR)
    previous: Timed | None = None
    costs = []
    for number, (timed, made) in enumerate(zip(collections, requests, strict=True)):
        kind = timed.kind(previous, window)
        (date,) = timed.dates
        assert date is not None
        listed = pages(matching(jobs, date))
        if number == 0:
            assert kind == "full"
            # The job pages, the tasks of each running job and of each job in Error (once), the
            # reserved units and the media processors.
            expected = listed + running + failed + 2
        else:
            assert kind == "changes"
            expected = listed + running
        assert made == expected, (number, kind, listed, running, failed)
        costs.append((kind, listed, made))
        previous = timed
    assert costs[0][1] == 3 and all(listed == 1 for _, listed, _ in costs[1:]), costs
    assert all(requests < costs[0][2] for _, _, requests in costs[1:]), costs


# ---------------------------------------------------------------------------------------------
# 2. Random histories


@pytest.fixture(scope="module")
def lively() -> Iterator[Emulator]:
    """One living account for every example; each example polls it with a new poller."""
    with Emulator(jobs=120, seed=169, speed=0, start=START, **LIVELY) as emu:
        yield emu


ADD = st.sampled_from([JobState.QUEUED, JobState.PROCESSING, *FINAL])
MOVE = st.sampled_from(
    [JobState.PROCESSING, JobState.CANCELING, JobState.FINISHED, JobState.ERROR, JobState.CANCELED]
)
OPERATIONS = st.one_of(
    st.tuples(st.just("add"), ADD),
    st.tuples(st.just("move"), st.integers(0, 999), MOVE),
    st.tuples(st.just("delete"), st.integers(0, 999)),
    st.tuples(st.just("fail")),
)
STEPS = st.lists(
    st.tuples(
        st.sampled_from([0, 20, 150, 299, 301, 700, 1900, 3700]),
        st.lists(OPERATIONS, max_size=4),
    ),
    min_size=1,
    max_size=8,
)


def apply(emu: Emulator, operation: tuple[Any, ...], now: float) -> bool:
    """Change the account as ``operation`` says; True when it makes the next listing fail."""
    match operation:
        case ("add", state):
            emu.add_job(name="random", state=state)
        case ("move", pick, state):
            active = [job.id for job in emu.jobs() if job.state in ACTIVE]
            if active:
                emu.set_job_state(active[pick % len(active)], state)
        case ("delete", pick):
            scope = sorted(in_scope(emu.jobs(), now))
            if scope:
                emu.delete_job(scope[pick % len(scope)])
        case ("fail",):
            emu.faults.add(Fault(kind="status", status=403, path=r"/api/Jobs$", count=1))
            return True
    return False


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=STEPS,
    interval=st.sampled_from([0.0, 600.0, DAY]),
    skew=st.sampled_from([0.0, 240.0, -240.0]),
)
def test_random_histories_export_the_in_scope_jobs(lively, steps, interval, skew):
    """Random operations between collections (jobs added in any state, moved, deleted; listings
    refused; the clock moved by less and more than the overlap and the window), with a host clock
    up to 4 min off AMS's: each collection lists as documented and exports the in-scope jobs."""
    emu = lively
    emu.faults.clear()
    account = Account(emu, jobs_config(interval), skew)
    schedule, oracle = Schedule(interval), Oracle()
    failures = 0
    try:
        for number, (seconds, operations) in enumerate(steps):
            emu.clock.advance(seconds)
            for operation in operations:
                failures += apply(emu, operation, account.clock())
            collected = account.collect()
            label = f"collection {number + 1}"
            kind = expect_listing(collected, schedule, label)
            failed = failures > 0
            failures = max(0, failures - 1)
            schedule.done(collected.now, kind, complete=not failed)
            if failed:
                assert not collected.result.up, label
            else:
                oracle.check(collected, kind, label)
    finally:
        account.close()
        emu.faults.clear()
