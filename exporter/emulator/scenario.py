"""The living scenario: a seeded population of jobs that moves on as the clock advances.

At start the population spans the retention window (90 days): most jobs are final, about 10 % ended
in the last 24 hours and about 5 % are still active, with every state present. From then on a
discrete-event simulation drives it: jobs arrive, wait in Queued until one of the encoding slots
(reserved units) is free (higher priority first), go Scheduled, then Processing with their tasks run
one after the other, and end Finished, Error (a documented ErrorDetails code) or Canceled (through
Canceling). Some get stuck: progress stops while the job stays Processing for hours (until an
"operator" cancels it), or the job sits in Queued or Scheduled for hours. Jobs past the retention
window are deleted with their tasks.

Everything random is drawn when a job is created, and events are applied strictly in (time,
sequence) order, so the same seed and start time give the same data however often it is read.
Only jobs with pending events or running tasks are touched when the clock moves.
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol, TypeVar

from exporter.emulator import lifecycle
from exporter.emulator.entities import (
    ERROR_CODES,
    EVENT_BILLING,
    EVENT_FINISHED,
    EVENT_PROCESSING,
    EVENT_SCHEDULED,
    EVENT_WAITING,
    JOB_ID_PREFIX,
    MAX_JOB_NAME_LENGTH,
    MAX_TASKS_PER_JOB,
    MES_PROCESSOR_ID,
    TASK_ID_PREFIX,
    EmuJob,
    EmuTask,
    JobState,
    new_guid,
)
from exporter.emulator.lifecycle import FINAL_STATES, at_ms

T = TypeVar("T")
HOUR = 3600.0
DAY = 86_400.0
RECENT_WINDOW = DAY
MAX_JOBS = 2_000_000


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """The shape of the simulated account. Ratios are fractions of jobs (0-1)."""

    seed: int = 1
    jobs: int = 200
    history_days: float = 90.0
    active_fraction: float = 0.05
    recent_fraction: float = 0.10
    tasks_min: int = 1
    tasks_max: int = 3
    slots: int = 10
    arrivals_per_hour: float | None = None  # None: the history's rate, at least 12 per hour
    failure_ratio: float = 0.08
    cancel_ratio: float = 0.04
    stuck_ratio: float = 0.02
    mean_task_seconds: float = 300.0

    def __post_init__(self) -> None:
        problems = [p for p in self._problems() if p]
        if problems:
            raise ValueError("invalid scenario: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        ratios = (
            "active_fraction",
            "recent_fraction",
            "failure_ratio",
            "cancel_ratio",
            "stuck_ratio",
        )
        rate = self.arrivals_per_hour
        return [
            f"jobs must be within 0..{MAX_JOBS}, got {self.jobs}"
            if not 0 <= self.jobs <= MAX_JOBS
            else "",
            f"history_days must be in (0, 3650], got {self.history_days}"
            if not 0 < self.history_days <= 3650
            else "",
            f"need 1 <= tasks_min <= tasks_max <= {MAX_TASKS_PER_JOB}, "
            f"got {self.tasks_min}..{self.tasks_max}"
            if not 1 <= self.tasks_min <= self.tasks_max <= MAX_TASKS_PER_JOB
            else "",
            f"slots must be within 1..10000, got {self.slots}"
            if not 1 <= self.slots <= 10_000
            else "",
            f"arrivals_per_hour must be within 0..1e6, got {rate}"
            if rate is not None and not 0 <= rate <= 1e6
            else "",
            f"mean_task_seconds must be within 1..86400, got {self.mean_task_seconds}"
            if not 1 <= self.mean_task_seconds <= DAY
            else "",
            *(
                f"{name} must be within 0..1, got {getattr(self, name)}"
                for name in ratios
                if not 0.0 <= getattr(self, name) <= 1.0
            ),
            "failure_ratio + cancel_ratio + stuck_ratio must not exceed 1"
            if self.failure_ratio + self.cancel_ratio + self.stuck_ratio > 1.0
            else "",
        ]

    @property
    def arrival_rate(self) -> float:
        """New jobs per hour once the clock runs."""
        if self.arrivals_per_hour is not None:
            return self.arrivals_per_hour
        return max(self.jobs / (self.history_days * 24.0), 12.0)


class Population(Protocol):
    """Where the scenario's jobs live (the store's indexes)."""

    def add(self, job: EmuJob) -> None: ...

    def remove_many(self, job_ids: list[str]) -> None: ...

    def get(self, job_id: str) -> EmuJob | None: ...


# ---------------------------------------------------------------------------------------------
# Names

_WORDS = (
    "keynote", "trailer", "interview", "match-highlights", "newscast", "webinar", "concert",
    "lecture", "product-demo", "documentary", "town-hall", "episode", "teaser", "recap",
)  # fmt: skip
_RESOLUTIONS = ("2160p", "1080p", "720p", "480p")
_EXTENSIONS = ("mp4", "mov", "mxf", "ts", "mkv")
HARD_NAMES: tuple[str, ...] = (
    "新闻联播-2024-精选片段.mp4",
    "宣传片_最终版_高清版本.mov",
    'director\'s cut - "final" v2.mp4',
    'O\'Brien "live" at the O2.mov',
    "C:\\media\\uploads\\2024\\clip.mp4",
    "subtitled\nsecond line.mp4",
    ("very-long-name-" + "abcdefghij" * 30)[:MAX_JOB_NAME_LENGTH],
)


def _pick(rng: random.Random, items: Sequence[T]) -> T:
    """``rng.choice`` without its overhead (generation of 100,000 jobs draws millions)."""
    return items[int(rng.random() * len(items))]


def _below(rng: random.Random, n: int) -> int:
    """A uniform integer in ``[0, n)``."""
    return int(rng.random() * n)


@functools.lru_cache(maxsize=4096)
def _day(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * DAY, timezone.utc).strftime("%Y-%m-%d")


def _plain_name(rng: random.Random, created: float) -> str:
    day = _day(int(created // DAY))
    pattern = _below(rng, 4)
    word = _pick(rng, _WORDS)
    if pattern == 0:
        return f"ingest-{day}-{word}-{_pick(rng, _RESOLUTIONS)}.{_pick(rng, _EXTENSIONS)}"
    if pattern == 1:
        return f"Encode {word} {1 + _below(rng, 499):03d} to Adaptive Streaming"
    if pattern == 2:
        return f"{word}_{day.replace('-', '')}_v{1 + _below(rng, 8)}.{_pick(rng, _EXTENSIONS)}"
    return f"{word}-{_below(rng, 10_000):04d}-{_pick(rng, _RESOLUTIONS)}"


def _job_name(rng: random.Random, created: float) -> str:
    if rng.random() < 0.03:
        return _pick(rng, HARD_NAMES)
    return _plain_name(rng, created)


# ---------------------------------------------------------------------------------------------
# Plans: everything random about a job, drawn when it is created

OUTCOME_FINISH = "finish"
OUTCOME_FAIL = "fail"
OUTCOME_CANCEL = "cancel"
STUCK_PROCESSING = "stuck-processing"
STUCK_QUEUED = "stuck-queued"
STUCK_SCHEDULED = "stuck-scheduled"
_STOPS_IN_TASK = frozenset({OUTCOME_FAIL, STUCK_PROCESSING})


@dataclass(slots=True)
class Plan:
    """A scenario job's fate and where it is in the simulation."""

    durations: list[float]  # seconds per task; tasks run one after the other
    outcome: str
    fail_task: int = 0  # for fail and stuck-processing: the task that stops
    stop_fraction: float = 1.0  # where that task's progress stops (0-1)
    error_code: str = "Unknown"
    hold_seconds: float = 0.0  # queued but not eligible for a slot this long
    schedule_delay: float = 5.0  # Scheduled -> Processing
    cancel_after: float = 0.0  # cancel: after creation; stuck-processing: after progress stops
    cancel_delay: float = 20.0  # Canceling -> Canceled
    duration_factor: float = 0.9  # RunningDuration / wall time
    current_task: int = 0
    task_started: float = 0.0

    def progress_cap(self, index: int) -> float:
        """Where task ``index``'s progress stops (100 unless it fails or gets stuck)."""
        if self.outcome in _STOPS_IN_TASK and index == self.fail_task:
            return 100.0 * self.stop_fraction
        return 100.0

    def run_seconds(self) -> float:
        """Wall time from processing start to the job's end (or to where it stops)."""
        if self.outcome in _STOPS_IN_TASK:
            stop = self.durations[self.fail_task] * self.stop_fraction
            return sum(self.durations[: self.fail_task]) + stop
        return sum(self.durations)


@dataclass(frozen=True, slots=True)
class _Draw:
    """The job-level values of a new job, before its tasks exist."""

    job_id: str
    name: str
    priority: int
    template_id: str | None
    subscription: tuple[str, int] | None


_TASK_PRESETS = (
    ("Adaptive Streaming", "Adaptive Streaming"),
    ("Thumbnails", '{"Version":1.0,"Codecs":[{"Type":"PngImage","Start":"00:00:05"}]}'),
    ("Audio only", "AAC Good Quality Audio"),
    ("H264 Multiple Bitrate 1080p", "H264 Multiple Bitrate 1080p"),
)


def _task_body(index: int) -> str:
    return (
        '<?xml version="1.0" encoding="utf-16"?><taskBody>'
        f"<inputAsset>JobInputAsset({index})</inputAsset>"
        f'<outputAsset assetName="output-{index}">JobOutputAsset({index})</outputAsset></taskBody>'
    )


def _task_template(index: int) -> tuple[str, str, str]:
    """Name, Configuration and TaskBody of a job's ``index``-th task."""
    name, configuration = _TASK_PRESETS[index % len(_TASK_PRESETS)]
    if index >= len(_TASK_PRESETS):
        name = f"{name} {index}"
    return name, configuration, _task_body(index)


_TASK_TEMPLATES = tuple(_task_template(i) for i in range(MAX_TASKS_PER_JOB))


class _Generator:
    """Draws jobs and plans from the scenario's random generator, in a fixed order."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)

    def job(self, created: float, name: str | None = None) -> _Draw:
        rng = self.rng
        priority = 0 if rng.random() < 0.8 else 1 + _below(rng, 10)
        template = f"nb:jtid:UUID:{new_guid(rng)}" if rng.random() < 0.1 else None
        subscription = None
        if rng.random() < 0.05:
            subscription = (f"nb:nepid:UUID:{new_guid(rng)}", 1 + _below(rng, 2))
        job_id = JOB_ID_PREFIX + new_guid(rng)
        if name is None:
            name = _job_name(rng, created)
        return _Draw(job_id, name, priority, template, subscription)

    def outcome(self) -> str:
        cfg = self.config
        roll = self.rng.random()
        for ratio, outcome in (
            (cfg.failure_ratio, OUTCOME_FAIL),
            (cfg.cancel_ratio, OUTCOME_CANCEL),
        ):
            if roll < ratio:
                return outcome
            roll -= ratio
        if roll < cfg.stuck_ratio:
            return _pick(
                self.rng, (STUCK_PROCESSING, STUCK_PROCESSING, STUCK_QUEUED, STUCK_SCHEDULED)
            )
        return OUTCOME_FINISH

    def plan(self, outcome: str) -> Plan:
        rng = self.rng
        cfg = self.config
        n_tasks = cfg.tasks_min + _below(rng, cfg.tasks_max - cfg.tasks_min + 1)
        mu = math.log(cfg.mean_task_seconds) - 0.18  # lognormal with the configured mean
        durations = [min(max(rng.lognormvariate(mu, 0.6), 20.0), 6 * HOUR) for _ in range(n_tasks)]
        plan = Plan(
            durations=durations,
            outcome=outcome,
            fail_task=_below(rng, n_tasks),
            stop_fraction=rng.uniform(0.05, 0.95),
            error_code=_pick(rng, ERROR_CODES),
            schedule_delay=rng.uniform(2.0, 30.0),
            cancel_after=rng.uniform(60.0, 2 * HOUR),
            cancel_delay=rng.uniform(5.0, 90.0),
            duration_factor=rng.uniform(0.85, 0.95),
        )
        if outcome == STUCK_PROCESSING:
            plan.cancel_after = rng.uniform(3 * HOUR, 12 * HOUR)
        elif outcome == STUCK_QUEUED:
            plan.hold_seconds = rng.uniform(2 * HOUR, 8 * HOUR)
        elif outcome == STUCK_SCHEDULED:
            plan.schedule_delay = rng.uniform(2 * HOUR, 6 * HOUR)
        return plan

    def entity(self, draw: _Draw, plan: Plan, created: float) -> EmuJob:
        when = at_ms(created)
        job = EmuJob(
            id=draw.job_id,
            name=draw.name,
            created=when,
            last_modified=when,
            start_time=None,
            end_time=None,
            priority=draw.priority,
            running_duration_ms=0.0,
            state=JobState.QUEUED,
            template_id=draw.template_id,
        )
        if draw.subscription is not None:
            endpoint, target = draw.subscription
            job.notification_subscriptions.append(
                {"NotificationEndPointId": endpoint, "TargetJobState": target}
            )
        job.tasks = [self._task(job, index) for index in range(len(plan.durations))]
        return job

    def _task(self, job: EmuJob, index: int) -> EmuTask:
        name, configuration, body = _TASK_TEMPLATES[index]
        return EmuTask(
            id=TASK_ID_PREFIX + new_guid(self.rng),
            job_id=job.id,
            name=name,
            configuration=configuration,
            media_processor_id=MES_PROCESSOR_ID,
            state=JobState.QUEUED,
            progress=0.0,
            running_duration_ms=0.0,
            start_time=None,
            end_time=None,
            priority=job.priority,
            task_body=body,
        )


def _complete_history(job: EmuJob, plan: Plan, started: float, *, canceled: bool) -> None:
    """Bring a new (Queued) job to the final state its plan gives, as if it ran from ``started``.

    The same outcome as stepping it through ``lifecycle`` but written in one pass, because the
    starting population of 100,000 jobs is almost all history. The scenario tests check these
    jobs with the same invariants as the ones the clock moves.
    """
    factor = plan.duration_factor
    queued_until = started - plan.schedule_delay
    scheduled = at_ms(queued_until)
    waited = queued_until - job.created.timestamp() > 60.0
    stop = plan.fail_task if plan.outcome == OUTCOME_FAIL else len(plan.durations)
    at, when = started, at_ms(started)
    job.start_time = when
    for index, task in enumerate(job.tasks):
        events = task.historical_events
        if waited:
            events.append(lifecycle.event(EVENT_WAITING, job.created))
        events.append(lifecycle.event(EVENT_SCHEDULED, scheduled))
        if index > stop:
            task.state = JobState.CANCELED
            continue
        task.start_time = when
        events.append(lifecycle.event(EVENT_PROCESSING, when))
        task_started = at
        duration = plan.durations[index]
        if index < stop:
            at += duration
            when = at_ms(at)
            task.state, task.progress, task.end_time = JobState.FINISHED, 100.0, when
            task.running_duration_ms = lifecycle.running_ms(duration, factor)
            task.perf_message = lifecycle.perf_message(duration, task.running_duration_ms)
            events.append(lifecycle.event(EVENT_FINISHED, when))
            events.append(lifecycle.event(EVENT_BILLING, when, lifecycle.billing_message(duration)))
            continue
        at += duration * plan.stop_fraction
        task.progress = round(plan.progress_cap(index), 2)
        if canceled:
            at += plan.cancel_delay
            task.state = JobState.CANCELED
        else:
            task.state = JobState.ERROR
            task.error_details.append(lifecycle.error_detail(plan.error_code))
        when = at_ms(at)
        task.end_time = when
        task.running_duration_ms = lifecycle.running_ms(at - task_started, factor)
    final = JobState.FINISHED if stop == len(plan.durations) else JobState.ERROR
    job.state = JobState.CANCELED if canceled else final
    job.end_time = job.last_modified = when
    job.running_duration_ms = lifecycle.running_ms(at - started, factor)


# ---------------------------------------------------------------------------------------------
# The simulation

EV_ARRIVAL = 0
EV_ELIGIBLE = 1
EV_START = 2
EV_TASK_DONE = 3
EV_FAIL = 4
EV_CANCEL = 5
EV_CANCELED = 6


@dataclass(order=True, slots=True)
class _Event:
    at: float
    seq: int
    kind: int = field(compare=False)
    job_id: str = field(compare=False, default="")
    task: int = field(compare=False, default=0)


class Scenario:
    """Owns the plans and the event heap and mutates jobs of the population in place.

    Not thread-safe by itself: the store calls it under its lock.
    """

    def __init__(self, config: ScenarioConfig, population: Population, start: datetime) -> None:
        self.config = config
        self._pop = population
        self._gen = _Generator(config)
        self._now = start.timestamp()
        self._events: list[_Event] = []
        self._seq = 0
        self._plans: dict[str, Plan] = {}
        self._ready: list[tuple[int, float, int, str]] = []  # (-priority, created, seq, id)
        self._busy: set[str] = set()  # jobs holding an encoding slot
        self._running: set[str] = set()  # Processing jobs whose progress follows the clock
        self._retention: list[tuple[float, str]] = []

    def _push(self, at: float, kind: int, job_id: str = "", task: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._events, _Event(at, self._seq, kind, job_id, task))

    def _add(self, job: EmuJob, plan: Plan | None) -> None:
        self._pop.add(job)
        if plan is not None:
            self._plans[job.id] = plan
        heapq.heappush(self._retention, (job.created.timestamp(), job.id))

    def adopt(self, job: EmuJob) -> None:
        """Add a job the scenario does not drive (a test's); only retention applies to it."""
        self._add(job, None)

    def release(self, job_id: str) -> None:
        """Stop driving ``job_id`` (a test took control of it or deleted it); frees its slot."""
        self._plans.pop(job_id, None)
        self._running.discard(job_id)
        self._free_slot(job_id, self._now)

    def _free_slot(self, job_id: str, at: float) -> None:
        if job_id in self._busy:
            self._busy.discard(job_id)
            self._dispatch(at)

    # -- the dispatcher -------------------------------------------------------------------------

    def _make_ready(self, job: EmuJob) -> None:
        self._seq += 1
        heapq.heappush(self._ready, (-job.priority, job.created.timestamp(), self._seq, job.id))

    def _dispatch(self, at: float) -> None:
        while self._ready and len(self._busy) < self.config.slots:
            job_id = heapq.heappop(self._ready)[3]
            job = self._pop.get(job_id)
            plan = self._plans.get(job_id)
            if job is None or plan is None or job.state != JobState.QUEUED:
                continue
            lifecycle.schedule(job, at)
            self._busy.add(job_id)
            self._push(at + plan.schedule_delay, EV_START, job_id)

    # -- event handlers -------------------------------------------------------------------------

    def _start_task(self, job: EmuJob, plan: Plan, index: int, at: float) -> None:
        lifecycle.start_task(job.tasks[index], at)
        plan.current_task = index
        plan.task_started = at
        self._plan_task_end(job, plan, index, at)

    def _plan_task_end(self, job: EmuJob, plan: Plan, index: int, started: float) -> None:
        duration = plan.durations[index]
        if plan.outcome == OUTCOME_FAIL and index == plan.fail_task:
            self._push(started + duration * plan.stop_fraction, EV_FAIL, job.id, index)
        elif plan.outcome == STUCK_PROCESSING and index == plan.fail_task:
            stops = started + duration * plan.stop_fraction
            self._push(stops + plan.cancel_after, EV_CANCEL, job.id)
        else:
            self._push(started + duration, EV_TASK_DONE, job.id, index)

    def _end(self, job: EmuJob, plan: Plan, state: JobState, at: float) -> None:
        lifecycle.end_job(job, state, at, plan.duration_factor)
        self._running.discard(job.id)
        self._plans.pop(job.id, None)
        self._free_slot(job.id, at)

    def _on_start(self, job: EmuJob, plan: Plan, at: float) -> None:
        lifecycle.start_job(job, at)
        self._running.add(job.id)
        self._start_task(job, plan, 0, at)

    def _on_task_done(self, job: EmuJob, plan: Plan, index: int, at: float) -> None:
        lifecycle.finish_task(job.tasks[index], at, plan.durations[index], plan.duration_factor)
        if index + 1 < len(job.tasks):
            self._start_task(job, plan, index + 1, at)
        else:
            self._end(job, plan, JobState.FINISHED, at)

    def _on_fail(self, job: EmuJob, plan: Plan, index: int, at: float) -> None:
        # Progress as it stood when the task stopped, however rarely the store was read.
        job.tasks[index].progress = round(plan.progress_cap(index), 2)
        lifecycle.fail_task(job, index, at, plan.error_code, plan.duration_factor)
        self._end(job, plan, JobState.ERROR, at)

    def _on_cancel(self, job: EmuJob, plan: Plan, at: float) -> None:
        if job.id in self._running:
            self._update_progress(job, plan, at)
            self._running.discard(job.id)
        lifecycle.cancel(job, at)
        self._push(at + plan.cancel_delay, EV_CANCELED, job.id)

    def _on_canceled(self, job: EmuJob, plan: Plan, at: float) -> None:
        lifecycle.canceled(job, at, plan.duration_factor)
        self._end(job, plan, JobState.CANCELED, at)

    def _update_progress(self, job: EmuJob, plan: Plan, at: float) -> None:
        index = plan.current_task
        ratio = (at - plan.task_started) / plan.durations[index]
        # Stays below 100 until the task's end event sets exactly 100.
        value = min(max(ratio * 100.0, 0.0), plan.progress_cap(index), 99.99)
        job.tasks[index].progress = round(value, 2)

    def _arrive(self, at: float) -> None:
        draw = self._gen.job(at)
        plan = self._gen.plan(self._gen.outcome())
        job = self._gen.entity(draw, plan, at)
        self._add(job, plan)
        if plan.outcome == OUTCOME_CANCEL:
            self._push(at + plan.cancel_after, EV_CANCEL, job.id)
        if plan.hold_seconds > 0:
            self._push(at + plan.hold_seconds, EV_ELIGIBLE, job.id)
        else:
            self._make_ready(job)
            self._dispatch(at)
        if job.state == JobState.QUEUED:
            lifecycle.wait(job, at)

    def _next_arrival(self, after: float) -> None:
        rate = self.config.arrival_rate
        if rate > 0:
            self._push(after + self._gen.rng.expovariate(rate / HOUR), EV_ARRIVAL)

    def _apply(self, ev: _Event) -> None:
        if ev.kind == EV_ARRIVAL:
            self._arrive(ev.at)
            self._next_arrival(ev.at)
            return
        job = self._pop.get(ev.job_id)
        plan = self._plans.get(ev.job_id)
        if job is None or plan is None:
            return  # deleted, ended or taken over by a test: the event is stale
        state = job.state
        if ev.kind == EV_ELIGIBLE and state == JobState.QUEUED:
            self._make_ready(job)
            self._dispatch(ev.at)
        elif ev.kind == EV_START and state == JobState.SCHEDULED:
            self._on_start(job, plan, ev.at)
        elif ev.kind == EV_TASK_DONE and state == JobState.PROCESSING:
            self._on_task_done(job, plan, ev.task, ev.at)
        elif ev.kind == EV_FAIL and state == JobState.PROCESSING:
            self._on_fail(job, plan, ev.task, ev.at)
        elif ev.kind == EV_CANCEL and state in lifecycle.CANCELABLE:
            self._on_cancel(job, plan, ev.at)
        elif ev.kind == EV_CANCELED and state == JobState.CANCELING:
            self._on_canceled(job, plan, ev.at)

    def _expire(self, now: float) -> None:
        """Delete final jobs created before the retention window (the service keeps 90 days)."""
        horizon = now - self.config.history_days * DAY
        expired: list[str] = []
        while self._retention and self._retention[0][0] < horizon:
            job_id = heapq.heappop(self._retention)[1]
            job = self._pop.get(job_id)
            if job is not None and job.state in FINAL_STATES:
                expired.append(job_id)
                self._plans.pop(job_id, None)
        if expired:
            self._pop.remove_many(expired)

    def advance(self, to: datetime) -> None:
        """Apply every event up to ``to`` and bring running tasks' progress to that moment.

        A clock set backwards changes nothing: states only move forward.
        """
        target = to.timestamp()
        if target < self._now:
            return
        while self._events and self._events[0].at <= target:
            ev = heapq.heappop(self._events)
            self._now = ev.at
            self._apply(ev)
        self._now = target
        for job_id in self._running:
            job = self._pop.get(job_id)
            plan = self._plans.get(job_id)
            if job is not None and plan is not None:
                self._update_progress(job, plan, target)
        self._expire(target)

    # -- the starting population ----------------------------------------------------------------

    def populate(self) -> None:
        """Create the starting population at the start time and schedule its future."""
        t0 = self._now
        n = self.config.jobs
        n_active = min(n, max(round(n * self.config.active_fraction), min(n, 6)))
        n_final = n - n_active
        n_recent = min(n_final, max(round(n * self.config.recent_fraction), min(n_final, 3)))
        for i in range(n_final):
            self._seed_final(i, recent=i < n_recent, t0=t0)
        for role in self._active_roles(n_active):
            self._seed_active(role, t0)
        self._dispatch(t0)
        self._next_arrival(t0)

    def _active_roles(self, n_active: int) -> list[str]:
        """The must-have roles first (so that a small population shows them all), then fill."""
        roles = ["stuck", "processing", "held", "scheduled", "canceling", "queued"][:n_active]
        holders = sum(1 for r in roles if r in ("stuck", "processing", "scheduled", "canceling"))
        while len(roles) < n_active:
            if holders < self.config.slots:
                roles.append("processing")
                holders += 1
            else:
                roles.append("queued")
        return roles

    def _final_outcome(self, i: int) -> str:
        """The first final jobs cover every final state; the rest follow the ratios."""
        if i < 3:
            return (OUTCOME_FAIL, OUTCOME_CANCEL, OUTCOME_FINISH)[i]
        outcome = self._gen.outcome()
        return OUTCOME_FINISH if outcome.startswith("stuck") else outcome

    def _seed_final(self, i: int, *, recent: bool, t0: float) -> None:
        rng = self._gen.rng
        window = self.config.history_days * DAY
        recent_span = min(RECENT_WINDOW, window / 2)
        outcome = self._final_outcome(i)
        if recent:
            end = t0 - rng.uniform(min(60.0, recent_span / 2), recent_span)
        else:
            # Old enough not to be recent, young enough to stay a while in the retention window.
            end = t0 - rng.uniform(recent_span, window - min(2 * DAY, window / 4))
        # Jobs 3.. carry the hard names first, so that small populations have them too.
        hard = HARD_NAMES[i - 3] if 3 <= i < 3 + len(HARD_NAMES) else None
        draw = self._gen.job(end, hard)
        canceled = outcome == OUTCOME_CANCEL
        # A canceled history job stopped inside a task, like a failed one, then took
        # cancel_delay to reach Canceled.
        plan = self._gen.plan(OUTCOME_FAIL if canceled else outcome)
        started = end - plan.run_seconds() - (plan.cancel_delay if canceled else 0.0)
        created = started - plan.schedule_delay - rng.uniform(1.0, 600.0)
        job = self._gen.entity(draw, plan, created)
        _complete_history(job, plan, started, canceled=canceled)
        self._add(job, None)

    def _seed_active(self, role: str, t0: float) -> None:
        rng = self._gen.rng
        outcome = {"stuck": STUCK_PROCESSING, "held": STUCK_QUEUED}.get(role, OUTCOME_FINISH)
        if role == "processing":
            drawn = self._gen.outcome()
            outcome = drawn if drawn in (OUTCOME_FAIL, OUTCOME_CANCEL) else OUTCOME_FINISH
        plan = self._gen.plan(outcome)
        if role in ("queued", "held", "scheduled"):
            created = t0 - rng.uniform(60.0, {"queued": 3.0, "held": 6.0}.get(role, 0.5) * HOUR)
            job = self._gen.entity(self._gen.job(created), plan, created)
            self._add(job, plan)
            {"queued": self._seed_queued, "held": self._seed_held}.get(role, self._seed_scheduled)(
                job, plan, t0
            )
            return
        index, into, stopped = self._position(role, plan, t0)
        started = stopped - into - sum(plan.durations[:index])
        created = started - plan.schedule_delay - rng.uniform(30.0, 900.0)
        job = self._gen.entity(self._gen.job(created), plan, created)
        self._add(job, plan)
        task_started = self._run_until(job, plan, started, index, stopped)
        if role == "canceling":
            self._on_cancel(job, plan, stopped)
        elif role == "stuck":
            self._push(t0 + rng.uniform(HOUR, 6 * HOUR), EV_CANCEL, job.id)
        else:
            self._plan_task_end(job, plan, index, task_started)
            if plan.outcome == OUTCOME_CANCEL:
                self._push(t0 + rng.uniform(60.0, max(plan.cancel_after, 61.0)), EV_CANCEL, job.id)

    def _position(self, role: str, plan: Plan, t0: float) -> tuple[int, float, float]:
        """For a job seeded in Processing: its current task, the seconds it has been in that task
        at the reference moment, and that moment (``t0``, or when a Canceling job was canceled)."""
        rng = self._gen.rng
        if role == "stuck":
            stuck_for = rng.uniform(2 * HOUR, 5 * HOUR)
            index = plan.fail_task
            return index, plan.durations[index] * plan.stop_fraction + stuck_for, t0
        if role == "canceling":
            return 0, rng.uniform(0.1, 0.8) * plan.durations[0], t0 - rng.uniform(1.0, 4.0)
        index = _below(rng, len(plan.durations))
        if plan.outcome == OUTCOME_FAIL:
            index = min(index, plan.fail_task)
        fraction = rng.uniform(0.02, 0.9) * plan.progress_cap(index) / 100.0
        return index, fraction * plan.durations[index], t0

    def _seed_queued(self, job: EmuJob, plan: Plan, t0: float) -> None:
        lifecycle.wait(job, job.created.timestamp())
        self._make_ready(job)
        if plan.outcome == OUTCOME_CANCEL:
            self._push(t0 + plan.cancel_after, EV_CANCEL, job.id)

    def _seed_held(self, job: EmuJob, plan: Plan, t0: float) -> None:
        lifecycle.wait(job, job.created.timestamp())
        self._push(t0 + self._gen.rng.uniform(HOUR, 4 * HOUR), EV_ELIGIBLE, job.id)

    def _seed_scheduled(self, job: EmuJob, plan: Plan, t0: float) -> None:
        scheduled_at = t0 - self._gen.rng.uniform(1.0, min(plan.schedule_delay, 20.0))
        lifecycle.schedule(job, scheduled_at)
        self._busy.add(job.id)
        self._push(max(scheduled_at + plan.schedule_delay, t0 + 1.0), EV_START, job.id)

    def _run_until(self, job: EmuJob, plan: Plan, started: float, index: int, ref: float) -> float:
        """Put ``job`` in Processing since ``started`` with the tasks before ``index`` finished
        and progress as of ``ref``; returns when task ``index`` started."""
        lifecycle.schedule(job, started - plan.schedule_delay)
        lifecycle.start_job(job, started)
        at = started
        for done in range(index):
            lifecycle.start_task(job.tasks[done], at)
            at += plan.durations[done]
            lifecycle.finish_task(job.tasks[done], at, plan.durations[done], plan.duration_factor)
        lifecycle.start_task(job.tasks[index], at)
        plan.current_task = index
        plan.task_started = at
        self._busy.add(job.id)
        self._running.add(job.id)
        self._update_progress(job, plan, ref)
        return at
