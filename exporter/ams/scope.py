"""Which jobs an account exports, as an OData ``$filter`` for AMS and as the same rule in Python.

A job is in scope when it matches the account's ``ids``/``name_prefix``/``filter`` and either has not
reached a final state or reached it less than ``finished_window`` ago. The server-side filter selects
final jobs by ``LastModified`` (a job is modified when it ends, so this is a superset of "ended within
the window"); :func:`in_scope` then applies the exact rule on EndTime.

Whether AMS accepts ``datetime'...'`` literals is not documented, so :func:`server_filter` can also
leave the date part out; the poller falls back to that when AMS answers 400.
"""

from __future__ import annotations

from exporter.ams.model import ACTIVE_STATES, Job
from exporter.ams.odata import datetime_literal, quote
from exporter.config.model import JobsConfig

# Ids per request: each one adds about 60 characters to the URL, and URLs beyond a few KB are
# refused by many front ends.
IDS_PER_FILTER = 40


def server_filters(
    jobs: JobsConfig, now: float, *, with_dates: bool = True, since: float | None = None
) -> list[str | None]:
    """The ``$filter`` values of one listing: one per chunk of ``ids``, or a single one.

    Final jobs are selected by ``LastModified`` at or after ``since`` (by default, and never
    earlier than, ``now`` minus ``finished_window``). ``None`` stands for "no filter at all"
    (every job of the account).
    """
    cutoff = now - jobs.finished_window
    if since is not None:
        cutoff = max(cutoff, since)
    common = _selection_parts(jobs) + _lifecycle_parts(jobs, cutoff, with_dates)
    if not jobs.ids:
        return [_conjunction(common)]
    filters: list[str | None] = []
    for start in range(0, len(jobs.ids), IDS_PER_FILTER):
        chunk = jobs.ids[start : start + IDS_PER_FILTER]
        ids = " or ".join(f"Id eq {quote(job_id)}" for job_id in chunk)
        filters.append(_conjunction([f"({ids})", *common]))
    return filters


def in_scope(job: Job, jobs: JobsConfig, now: float) -> bool:
    """The lifecycle rule on the client: active, or ended less than ``finished_window`` ago.

    ``ids``/``name_prefix``/``filter`` are left to the server, which always applies them.
    """
    if job.state in ACTIVE_STATES:
        return True
    ended = job.end_time if job.end_time is not None else job.last_modified
    return ended >= now - jobs.finished_window


def _selection_parts(jobs: JobsConfig) -> list[str]:
    parts = []
    if jobs.name_prefix:
        parts.append(f"startswith(Name,{quote(jobs.name_prefix)})")
    if jobs.filter:
        parts.append(f"({jobs.filter})")
    return parts


def _lifecycle_parts(jobs: JobsConfig, cutoff: float, with_dates: bool) -> list[str]:
    if not with_dates:
        return []
    active = " or ".join(f"State eq {int(state)}" for state in sorted(ACTIVE_STATES))
    if jobs.finished_window <= 0:
        return [f"({active})"]
    return [f"({active} or LastModified ge {datetime_literal(cutoff)})"]


def _conjunction(parts: list[str]) -> str | None:
    return " and ".join(parts) if parts else None
