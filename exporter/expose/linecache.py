"""The written lines of each exported job, kept from one scrape to the next while the job is unchanged.

Most of a scrape's body is per-job lines, and from one collection to the next almost every job is the
same (a final job never changes). An entry is reused only when the job, its tasks, its history group
and, for a job whose tasks are exposed, the media processors are equal to those it was written from;
the lines that move with the collection's time (:attr:`JobValue.moves`) are written again on every
scrape: a job's age always, the durations of a job until it has ended.

Entries are kept per account, and each scrape keeps only the jobs it wrote: the memory is bounded by
the exported jobs (``max_jobs`` per account). Scrapes may run concurrently: each reads the entries
and stores a new mapping for its accounts; whichever stores last is kept, and both are right.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from exporter.collect.jobview import JobView
from exporter.expose.contract import Metric


@dataclass(frozen=True, slots=True)
class JobLines:
    """One job's lines: what they were written from, its escaped labels, and per metric its
    lines, encoded.

    ``ended``: the job had ended (:attr:`JobView.ended`), so the texts of the metrics that move
    until then are kept too; otherwise those texts are empty and written by every scrape.
    """

    key: tuple[object, ...]
    labels: str
    ended: bool
    texts: tuple[bytes, ...]


def written_from(view: JobView) -> tuple[object, ...]:
    """What a job's lines depend on besides the time; equal keys mean equal lines."""
    processors = view.processors if view.tasks else None
    return (view.job, view.tasks, view.group, processors)


class JobLineCache:
    """The :class:`JobLines` of each account's jobs, by job Id, for one list of metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, tuple[tuple[Metric, ...], Mapping[str, JobLines]]] = {}

    def lines_of(self, account: str, metrics: tuple[Metric, ...]) -> Mapping[str, JobLines]:
        """The entries of ``account`` written for ``metrics`` (empty when written for others)."""
        with self._lock:
            kept = self._accounts.get(account)
        if kept is None or kept[0] != metrics:
            return {}
        return kept[1]

    def store(
        self, account: str, metrics: tuple[Metric, ...], lines: Mapping[str, JobLines]
    ) -> None:
        """Keep ``lines`` as the entries of ``account``, replacing what it had."""
        with self._lock:
            self._accounts[account] = (metrics, lines)

    def keep_only(self, accounts: Collection[str]) -> None:
        """Forget the accounts not in ``accounts`` (removed by a reload)."""
        with self._lock:
            for name in [name for name in self._accounts if name not in accounts]:
                del self._accounts[name]

    def __len__(self) -> int:
        """How many jobs have entries, over every account."""
        with self._lock:
            return sum(len(lines) for _, lines in self._accounts.values())
