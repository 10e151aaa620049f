"""What happened to an account's jobs: outcome counters and duration histograms, once per job.

Every collection lists the in-scope jobs again; :class:`JobHistory` counts each job the first time
a collection sees it in a final state, and observes its queue wait the first time it is seen with a
StartTime. The key is the job Id. Two floors say from when jobs count: a job counts only if it
ended at or after the *end floor*, and its queue wait is observed only if it started at or after
the *start floor*. Both start at the process start (nothing from before is counted) and move up to
the *watermark* (the latest EndTime counted) minus :data:`NEAR_SECONDS`; the ids counted above
the floors are remembered, so a job seen in many collections counts once and the memory stays
bounded. That state (:class:`HistoryState`) is what ``--storage.path`` keeps, so that after a
restart the jobs that ended while the exporter was down are counted, once.
"""

from __future__ import annotations

import bisect
import datetime
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.ams.model import ERROR_CODES, FINAL_STATES, Job, JobState, Task
from exporter.collect.jobview import JobView
from exporter.config.durations import format_duration
from exporter.config.model import JobsConfig

log = logging.getLogger(__name__)

# The final states, in the order their series are written (the ``state`` label).
ENDED_STATES = (JobState.FINISHED, JobState.ERROR, JobState.CANCELED)
_LABEL = {state: state.label for state in JobState}  # the property is slow in a 50,000-job loop
# How far below the watermark jobs are still looked for (and their ids kept): a job that AMS shows
# in its final state later than this after its EndTime is not counted.
NEAR_SECONDS = 600.0
# OpenMetrics limits an exemplar's label set to 128 characters (names and values).
_EXEMPLAR_LABEL_CHARS = 128

GroupState = tuple[str, str]  # (group, state label)


@dataclass(frozen=True, slots=True)
class Exemplar:
    """The latest job observed in a bucket or counted by a counter."""

    job_id: str
    value: float
    timestamp: float  # the job's EndTime (its StartTime for a queue wait), Unix seconds


@dataclass(frozen=True, slots=True)
class Count:
    """A counter's value and its exemplar."""

    value: int
    exemplar: Exemplar | None


@dataclass(frozen=True, slots=True)
class Distribution:
    """A histogram's state. ``buckets`` are cumulative counts, one per bound then ``+Inf``;
    ``exemplars`` hold, per bucket, the latest job whose value fell in that bucket."""

    bounds: tuple[float, ...]
    buckets: tuple[int, ...]
    exemplars: tuple[Exemplar | None, ...]
    sum: float

    @property
    def count(self) -> int:
        return self.buckets[-1]


@dataclass(frozen=True, slots=True)
class HistorySnapshot:
    """An account's history at the end of a collection, in the order its series are written.

    ``created`` is when counting started (Unix seconds): the ``_created`` of every series.
    """

    created: float
    ended: tuple[tuple[GroupState, Count], ...]
    durations: tuple[tuple[GroupState, Distribution], ...]
    queue_waits: tuple[tuple[str, Distribution], ...]
    errors: tuple[tuple[tuple[str, str], Count], ...]  # ((group, code), count)
    last_ended: tuple[tuple[GroupState, float], ...]


@dataclass(frozen=True)
class HistoryState:
    """What a restart needs to go on counting, once: the floors, the ids counted above them, and
    the last ended timestamps. :mod:`exporter.collect.history_file` writes and reads it."""

    end_floor: float
    start_floor: float
    watermark: float | None
    ended: Mapping[str, float] = field(default_factory=dict)  # job id → EndTime
    waited: Mapping[str, float] = field(default_factory=dict)  # job id → StartTime
    last_ended: Mapping[GroupState, float] = field(default_factory=dict)


class _Histogram:
    """A histogram being filled: per-bucket (not cumulative) counts, exemplars and the sum."""

    __slots__ = ("bounds", "counts", "exemplars", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.exemplars: list[Exemplar | None] = [None] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, exemplar: Exemplar | None) -> None:
        at = bisect.bisect_left(self.bounds, value)  # le: a value equal to a bound is in it
        self.counts[at] += 1
        if exemplar is not None:
            self.exemplars[at] = exemplar
        self.total += value

    def freeze(self) -> Distribution:
        cumulative, running = [], 0
        for count in self.counts:
            running += count
            cumulative.append(running)
        return Distribution(self.bounds, tuple(cumulative), tuple(self.exemplars), self.total)


class _Counter:
    __slots__ = ("exemplar", "value")

    def __init__(self) -> None:
        self.value = 0
        self.exemplar: Exemplar | None = None

    def add(self, exemplar: Exemplar | None) -> None:
        self.value += 1
        if exemplar is not None:
            self.exemplar = exemplar


def _time_and_id(item: tuple[float, str, Job]) -> tuple[float, str]:
    return item[0], item[1]


def ended_at(job: Job) -> float:
    """When a final job ended: its EndTime, or LastModified when AMS sent none."""
    return job.end_time if job.end_time is not None else job.last_modified


class JobHistory:
    """One account's counters and histograms, and the memory that counts each job once.

    Whoever calls :meth:`observe` holds :attr:`lock` (a reload may hand the history to a new
    poller while the old one's last collection still runs); :attr:`snapshot` (immutable) may be
    read from any thread.
    """

    def __init__(self, jobs: JobsConfig, created: float, state: HistoryState | None = None) -> None:
        self.jobs = jobs
        self.created = created
        self.lock = threading.RLock()
        groups = jobs.group_names
        self._ended = {(g, s.label): _Counter() for g in groups for s in ENDED_STATES}
        self._errors = {(g, code): _Counter() for g in groups for code in ERROR_CODES}
        history = jobs.history
        self._durations = {
            (g, s.label): _Histogram(history.duration_buckets) for g in groups for s in ENDED_STATES
        }
        self._waits = {g: _Histogram(history.queue_wait_buckets) for g in groups}
        if state is None:
            state = HistoryState(end_floor=created, start_floor=created, watermark=None)
        self._end_floor = state.end_floor
        self._start_floor = state.start_floor
        self._watermark = state.watermark
        self._counted = dict(state.ended)
        self._waited = dict(state.waited)
        known = set(self._ended)
        self._last_ended = {key: t for key, t in state.last_ended.items() if key in known}
        # Error jobs counted whose tasks (and so error codes) were not read yet: id → (group, end).
        self._codes_pending: dict[str, tuple[str, float]] = {}
        self._group_cache: dict[str, str] = {}
        self._changed = False
        self._now = float("inf")
        self.snapshot = self._freeze()

    @property
    def state(self) -> HistoryState:
        """What ``--storage.path`` keeps (a copy)."""
        return HistoryState(
            self._end_floor,
            self._start_floor,
            self._watermark,
            dict(self._counted),
            dict(self._waited),
            dict(self._last_ended),
        )

    def codes_wanted(self, jobs: Iterable[Job]) -> list[str]:
        """Ids of the jobs in Error whose tasks the next :meth:`observe` needs for error codes."""
        return [
            job.id
            for job in jobs
            if job.state is JobState.ERROR
            and (job.id in self._codes_pending or self._counts(job, ended_at(job)))
        ]

    def observe(
        self,
        jobs: Sequence[Job],
        tasks: Mapping[str, Sequence[Task]],
        now: float | None = None,
    ) -> bool:
        """Count what a complete listing of the in-scope ``jobs`` shows for the first time.

        ``tasks`` holds the tasks read for jobs (those of jobs in Error give the error codes).
        ``now`` is the collection time: an EndTime after it (a clock ahead, or a hostile answer)
        moves the watermark no further than ``now``, so that it cannot stop the counting of
        the jobs that really end meanwhile. Returns whether the state changed (so that it is
        worth writing).
        """
        self._now = float("inf") if now is None else now
        cache, group_of = self._group_cache, self.jobs.group_of
        groups = {job.id: cache.get(job.id) or group_of(job.name) for job in jobs}
        self._group_cache = groups
        self._changed = False
        # By id: a job listed twice (two filters of one listing) is still one job.
        ending: dict[str, tuple[float, str, Job]] = {}
        starting: dict[str, tuple[float, str, Job]] = {}
        counted, waited, last = self._counted, self._waited, self._last_ended
        end_floor, start_floor = self._end_floor, self._start_floor
        for job in jobs:  # one pass: most jobs were counted long ago
            if job.state in FINAL_STATES:
                end = job.end_time if job.end_time is not None else job.last_modified
                key = (groups[job.id], _LABEL[job.state])
                if end > last.get(key, float("-inf")):
                    last[key] = end
                    self._changed = True
                if job.id not in counted and end >= end_floor:
                    ending[job.id] = (end, job.id, job)
            start = job.start_time
            if start is not None and start >= start_floor and job.id not in waited:
                starting[job.id] = (start, job.id, job)
        # Oldest first, so that each exemplar is the latest job of its series.
        for end, job_id, job in sorted(ending.values(), key=_time_and_id):
            self._end(job, groups[job_id], end)
        for start, job_id, job in sorted(starting.values(), key=_time_and_id):
            self._wait(job, groups[job_id], start)
        self._count_codes(tasks)
        self._raise_floors(groups)  # its keys are the listed ids
        self.snapshot = self._freeze()
        return self._changed

    def group_of(self, job: Job) -> str:
        """The job's group, as the last :meth:`observe` classified it."""
        return self._group_cache.get(job.id) or self.jobs.group_of(job.name)

    def _counts(self, job: Job, end: float) -> bool:
        """Whether ``observe`` would count the final ``job``, which ended at ``end``."""
        return job.id not in self._counted and end >= self._end_floor

    def _end(self, job: Job, group: str, end: float) -> None:
        self._changed = True
        self._counted[job.id] = end
        key = (group, _LABEL[job.state])
        self._ended[key].add(_exemplar(job.id, 1.0, end))
        running = JobView(job, None, end).running_seconds
        if running is not None:
            self._durations[key].observe(running, _exemplar(job.id, running, end))
        if job.state is JobState.ERROR:
            self._codes_pending[job.id] = (group, end)
        mark = min(end, self._now)
        if self._watermark is None or mark > self._watermark:
            self._watermark = mark

    def _wait(self, job: Job, group: str, start: float) -> None:
        if job.state.is_final and ended_at(job) < self._end_floor:
            return  # ended before counting started: its wait is as old as its end
        self._changed = True
        self._waited[job.id] = start
        wait = max(0.0, start - job.created)
        self._waits[group].observe(wait, _exemplar(job.id, wait, start))

    def _count_codes(self, tasks: Mapping[str, Sequence[Task]]) -> None:
        for job_id in [job_id for job_id in self._codes_pending if job_id in tasks]:
            group, end = self._codes_pending.pop(job_id)
            codes = dict.fromkeys(
                code if code in ERROR_CODES else "Unknown"
                for task in tasks[job_id]
                for code in task.error_codes
            )
            for code in codes:
                self._errors[(group, code)].add(_exemplar(job_id, 1.0, end))

    def _raise_floors(self, listed: Mapping[str, str]) -> None:
        """Move both floors up to the watermark minus :data:`NEAR_SECONDS` and forget the ids
        below them; forget pending codes of jobs that left the listing."""
        if self._watermark is not None:
            horizon = self._watermark - NEAR_SECONDS
            if horizon > self._end_floor or horizon > self._start_floor:
                self._changed = True
                self._end_floor = max(self._end_floor, horizon)
                self._start_floor = max(self._start_floor, horizon)
                self._counted = {i: t for i, t in self._counted.items() if t >= self._end_floor}
                self._waited = {i: t for i, t in self._waited.items() if t >= self._start_floor}
        if any(job_id not in listed for job_id in self._codes_pending):
            self._codes_pending = {i: v for i, v in self._codes_pending.items() if i in listed}

    def _freeze(self) -> HistorySnapshot:
        def count(counter: _Counter) -> Count:
            return Count(counter.value, counter.exemplar)

        return HistorySnapshot(
            created=self.created,
            ended=tuple((key, count(c)) for key, c in self._ended.items()),
            durations=tuple((key, h.freeze()) for key, h in self._durations.items()),
            queue_waits=tuple((group, h.freeze()) for group, h in self._waits.items()),
            errors=tuple((key, count(c)) for key, c in self._errors.items()),
            last_ended=tuple(
                (key, self._last_ended[key]) for key in self._ended if key in self._last_ended
            ),
        )


def _exemplar(job_id: str, value: float, timestamp: float) -> Exemplar | None:
    """An exemplar naming the job; ``None`` when its id is too long for one."""
    if len("job_id") + len(job_id) > _EXEMPLAR_LABEL_CHARS:
        return None
    return Exemplar(job_id, value, timestamp)


def resumed(jobs: JobsConfig, created: float, state: HistoryState, account: str) -> JobHistory:
    """A history that goes on from a stored ``state``: counters at zero, floors and ids kept."""
    history = JobHistory(jobs, created, state)
    since = state.end_floor
    log.info(
        "account %s: history resumed; jobs that ended since %s are counted once",
        account,
        _iso(since),
    )
    reach = created - jobs.finished_window
    if reach > since:
        log.warning(
            "account %s: jobs that ended between %s and %s (%s) are beyond finished_window (%s) "
            "and are not counted",
            account,
            _iso(since),
            _iso(reach),
            format_duration(reach - since),
            format_duration(jobs.finished_window),
        )
    return history


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
