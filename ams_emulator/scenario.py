"""The living scenario: a seeded population of jobs that moves on as the clock advances.

At start the population spans the retention window (90 days): most jobs are final, about 10 % ended
in the last 24 hours and about 5 % are still active, with every state present. From then on a
discrete-event simulation drives it: jobs arrive, wait in Queued until one of the encoding slots
(the account's encoding reserved units, ``CurrentReservedUnits``) is free (higher priority first),
go Scheduled, then Processing with their tasks run one after the other, and end Finished, Error
(a documented ErrorDetails code) or Canceled (through Canceling). Some get stuck: progress stops
while the job stays Processing for hours (until an "operator" cancels it), or the job sits in
Queued or Scheduled for hours. Jobs past the retention window are deleted with their tasks.

Everything random is drawn when a job is created, and events are applied strictly in (time,
sequence) order, so the same seed and start time give the same data however often it is read.
Only jobs with pending events or running tasks are touched when the clock moves.
"""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ams_emulator import lifecycle
from ams_emulator.entities import (
    DEFAULT_MAX_RESERVABLE_UNITS,
    MAX_TASKS_PER_JOB,
    EmuJob,
    JobState,
    ReservedUnitType,
)
from ams_emulator.generator import (
    DAY,
    HARD_NAMES,
    HOUR,
    OUTCOME_CANCEL,
    OUTCOME_FAIL,
    OUTCOME_FINISH,
    STUCK_PROCESSING,
    STUCK_QUEUED,
    Generator,
    Plan,
    below,
    complete_history,
)
from ams_emulator.lifecycle import FINAL_STATES

RECENT_WINDOW = DAY
MAX_JOBS = 2_000_000
MAX_SLOTS = 10_000


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """The shape of the simulated account. Ratios are fractions of jobs (0-1), except
    ``other_processor_ratio``, a fraction of tasks.

    ``slots`` is the account's encoding reserved units (``CurrentReservedUnits``): how many jobs
    hold one at once, from Scheduled until they end. ``max_reservable_units`` None is the
    default quota (25), or ``slots`` when that is more.
    """

    seed: int = 1
    jobs: int = 200
    history_days: float = 90.0
    active_fraction: float = 0.05
    recent_fraction: float = 0.10
    tasks_min: int = 1
    tasks_max: int = 3
    slots: int = 10
    reserved_unit_type: int = ReservedUnitType.S1
    max_reservable_units: int | None = None
    arrivals_per_hour: float | None = None  # None: the history's rate, at least 12 per hour
    failure_ratio: float = 0.08
    cancel_ratio: float = 0.04
    stuck_ratio: float = 0.02
    mean_task_seconds: float = 300.0
    other_processor_ratio: float = 0.1  # tasks run by a media processor other than MES

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
            "other_processor_ratio",
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
            f"slots must be within 1..{MAX_SLOTS}, got {self.slots}"
            if not 1 <= self.slots <= MAX_SLOTS
            else "",
            f"reserved_unit_type must be 0 (S1), 1 (S2) or 2 (S3), got {self.reserved_unit_type}"
            if self.reserved_unit_type not in tuple(ReservedUnitType)
            else "",
            f"max_reservable_units must be within slots..{MAX_SLOTS} "
            f"({self.slots}..{MAX_SLOTS}), got {self.max_reservable_units}"
            if self.max_reservable_units is not None
            and not self.slots <= self.max_reservable_units <= MAX_SLOTS
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
    def reservable_units(self) -> int:
        """``MaxReservableUnits``: at most this many slots can be reserved."""
        if self.max_reservable_units is not None:
            return self.max_reservable_units
        return max(DEFAULT_MAX_RESERVABLE_UNITS, self.slots)

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
        self._gen = Generator(config)
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

    def reserve_units(self, units: int, unit_type: int) -> None:
        """The account now has ``units`` encoding slots of ``unit_type``, from this moment on.

        More slots start queued jobs at once. With fewer, the jobs holding a slot keep it until
        they end, and no job starts until fewer than ``units`` hold one.
        """
        config = self.config
        self.config = dataclasses.replace(
            config,
            slots=units,
            reserved_unit_type=unit_type,
            max_reservable_units=config.reservable_units,
        )
        self._gen.config = self.config
        self._dispatch(self._now)

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

    def _expire(self, now: float) -> bool:
        """Delete final jobs created before the retention window (the service keeps 90 days);
        returns whether any was deleted."""
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
        return bool(expired)

    def advance(self, to: datetime) -> bool:
        """Apply every event up to ``to`` and bring running tasks' progress to that moment.

        A clock set backwards changes nothing: states only move forward. Returns whether anything
        may have changed (an event applied, progress moved, a job expired); False means the
        population is exactly as before, so answers computed from it still hold.
        """
        target = to.timestamp()
        if target < self._now:
            return False
        changed = target > self._now and bool(self._running)
        while self._events and self._events[0].at <= target:
            ev = heapq.heappop(self._events)
            self._now = ev.at
            self._apply(ev)
            changed = True
        self._now = target
        for job_id in self._running:
            job = self._pop.get(job_id)
            plan = self._plans.get(job_id)
            if job is not None and plan is not None:
                self._update_progress(job, plan, target)
        return self._expire(target) or changed

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
        complete_history(job, plan, started, canceled=canceled)
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
        index = below(rng, len(plan.durations))
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
