"""The result of one collection: what each account reported, as plain immutable data.

The poller produces it; the metrics renderer and the status page read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.ams.model import Job, JobState, MediaProcessor, ReservedUnits, Task
from exporter.collect.history import HistorySnapshot
from exporter.collect.jobview import JobView
from exporter.config.model import OTHER_GROUP


@dataclass(frozen=True, slots=True)
class AccountResult:
    """One account's collection.

    ``jobs`` holds the in-scope jobs that get per-job series (at most ``max_jobs``);
    ``state_counts`` counts every in-scope job, including the ``dropped`` ones; ``unreadable``
    counts the entities skipped because they could not be read, by kind (``job``, ``task``).
    ``history`` is the account's history, there after failed collections too (it is the
    exporter's own count); ``groups`` names the history group of each job in ``jobs``;
    ``reserved_units`` and ``processors`` are the account's capacity as last read.
    """

    account: str
    up: bool
    duration_seconds: float
    last_success: float | None
    error: str | None = None
    jobs: tuple[Job, ...] = ()
    tasks: Mapping[str, tuple[Task, ...]] = field(default_factory=dict)
    state_counts: Mapping[JobState, int] = field(default_factory=dict)
    dropped: int = 0
    unreadable: Mapping[str, int] = field(default_factory=dict)
    history: HistorySnapshot | None = None
    groups: Mapping[str, str] = field(default_factory=dict)
    reserved_units: ReservedUnits | None = None
    processors: Mapping[str, MediaProcessor] = field(default_factory=dict)

    @property
    def listed(self) -> bool:
        """Whether the job listing succeeded: only then are there counts to expose."""
        return bool(self.state_counts)

    def views(self, now: float) -> list[JobView]:
        """The exported jobs with their tasks, as seen at ``now``."""
        tasks, groups, processors = self.tasks, self.groups, self.processors
        return [
            JobView(job, tasks.get(job.id), now, groups.get(job.id, OTHER_GROUP), processors)
            for job in self.jobs
        ]


@dataclass(frozen=True, slots=True)
class Collection:
    """All accounts, collected at ``time`` (Unix seconds)."""

    time: float
    accounts: tuple[AccountResult, ...]
