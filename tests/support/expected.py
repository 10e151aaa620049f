"""What the exporter must report, derived from the emulator's own state without the exporter's code.

The emulator keeps the service's values (aware datetimes, RunningDuration in milliseconds, integer
states); these functions restate the metric contract (docs/metrics.md) on top of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

STATE_NAMES = ("Queued", "Scheduled", "Processing", "Finished", "Error", "Canceled", "Canceling")
ACTIVE = {0, 1, 2, 6}
# Jobs whose end lies this close to the edge of the finished window are not asserted either way:
# the exporter's clock and the test's differ by the time a scrape takes.
WINDOW_EDGE_SECONDS = 60.0


def ts(value: datetime | None) -> float | None:
    """Unix seconds of an aware datetime."""
    return None if value is None else value.timestamp()


@dataclass(frozen=True)
class ExpectedJob:
    """The contract's values for one emulator job at collection time ``now``."""

    job: Any  # an EmuJob
    now: float

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.job.state]

    def created(self) -> float:
        created = ts(self.job.created)
        assert created is not None
        return created

    def queued(self) -> float:
        job = self.job
        if job.start_time is not None:
            return job.start_time.timestamp() - self.created()
        if job.end_time is not None and job.state in (3, 4, 5):
            return job.end_time.timestamp() - self.created()
        return self.now - self.created()

    def running(self) -> float:
        job = self.job
        if job.running_duration_ms > 0 or job.state != 2 or job.start_time is None:
            return job.running_duration_ms / 1000.0
        return self.now - job.start_time.timestamp()

    def progress(self) -> float | None:
        job = self.job
        if job.state in (0, 1):
            return 0.0
        if job.state == 3:
            return 1.0
        if job.state == 5:
            return None  # Canceled jobs' tasks are never fetched
        tasks = job.tasks
        return sum(t.progress for t in tasks) / (100.0 * len(tasks))

    def error_codes(self) -> set[tuple[str, str]]:
        if self.job.state != 4:
            return set()
        return {(t.id, d["Code"]) for t in self.job.tasks for d in t.error_details}


def ended_at(job: Any) -> float:
    """EndTime, or LastModified for a final job without one."""
    end = job.end_time or job.last_modified
    return float(end.timestamp())


def in_scope(job: Any, now: float, window: float) -> bool | None:
    """True/False by the contract; None when too close to the window's edge to tell."""
    if job.state in ACTIVE:
        return True
    age = now - ended_at(job)
    if abs(age - window) < WINDOW_EDGE_SECONDS:
        return None
    return age < window


def split_scope(jobs: Iterable[Any], now: float, window: float) -> tuple[list[Any], list[Any]]:
    """(certainly in scope, certainly out of scope); edge cases are in neither."""
    inside: list[Any] = []
    outside: list[Any] = []
    for job in jobs:
        verdict = in_scope(job, now, window)
        if verdict is True:
            inside.append(job)
        elif verdict is False:
            outside.append(job)
    return inside, outside
