"""The metric contract: every metric the exporter exposes, in one table.

The exposition code (``exporter/expose/reference.py``, ``exporter/expose/writer.py``) reads these entries, and
``docs/metrics.md`` is generated from them (``python -m exporter.expose.contract``; a test keeps the committed
file in step), so the names, types, labels and help texts cannot drift apart.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass

JOB_LABELS = ("account", "job_id", "job_name")


class Kind(enum.Enum):
    """Prometheus metric types used by the exporter."""

    GAUGE = "gauge"
    COUNTER = "counter"


class Group(enum.Enum):
    """Sections of the metric reference."""

    JOB = "Per job"
    TASK = "Per task"
    ACCOUNT = "Per account"
    EXPORTER = "Exporter"


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of the contract. ``name`` is the exposed name (counters include ``_total``)."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    group: Group

    @property
    def family_name(self) -> str:
        """The name prometheus_client expects: counters without their ``_total`` suffix."""
        if self.kind is Kind.COUNTER:
            return self.name.removesuffix("_total")
        return self.name


JOB_STATE = Metric(
    "ams_job_state",
    Kind.GAUGE,
    (*JOB_LABELS, "state"),
    "Job state as a state set: 1 for the current state, 0 for the six others.",
    Group.JOB,
)
JOB_CREATED = Metric(
    "ams_job_created_timestamp_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "When the job was created (Created), Unix seconds.",
    Group.JOB,
)
JOB_START = Metric(
    "ams_job_start_timestamp_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "When the job started processing (StartTime), Unix seconds; absent until it starts.",
    Group.JOB,
)
JOB_END = Metric(
    "ams_job_end_timestamp_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "When the job finished, failed or was canceled (EndTime), Unix seconds; absent until then.",
    Group.JOB,
)
JOB_AGE = Metric(
    "ams_job_age_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "Collection time minus Created.",
    Group.JOB,
)
JOB_RUNNING = Metric(
    "ams_job_running_duration_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "RunningDuration in seconds; while Processing with RunningDuration 0, time since StartTime.",
    Group.JOB,
)
JOB_QUEUED = Metric(
    "ams_job_queued_duration_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "StartTime minus Created; while the job has not started, collection time minus Created (EndTime minus Created for a job that ended without starting).",
    Group.JOB,
)
JOB_PROGRESS = Metric(
    "ams_job_progress_ratio",
    Kind.GAUGE,
    JOB_LABELS,
    "Mean of the tasks' Progress as 0..1 (0 before the job starts, 1 once Finished); absent for Canceled jobs, whose tasks are not read.",
    Group.JOB,
)
JOB_PRIORITY = Metric(
    "ams_job_priority",
    Kind.GAUGE,
    JOB_LABELS,
    "Job Priority (a higher value runs sooner).",
    Group.JOB,
)
JOB_ERROR_INFO = Metric(
    "ams_job_error_info",
    Kind.GAUGE,
    (*JOB_LABELS, "task_id", "code"),
    "1 for each ErrorDetails code of a task of a job in Error (documented codes only).",
    Group.JOB,
)
TASK_PROGRESS = Metric(
    "ams_task_progress_ratio",
    Kind.GAUGE,
    (*JOB_LABELS, "task_id", "task_name"),
    "Task Progress as 0..1, for the tasks of jobs that are Processing, Canceling or in Error (the states whose tasks are read).",
    Group.TASK,
)
JOBS = Metric(
    "ams_jobs",
    Kind.GAUGE,
    ("account", "state"),
    "In-scope jobs per state, counting jobs beyond max_jobs too; all seven states present whenever the job listing succeeded (absent when it failed, see ams_up).",
    Group.ACCOUNT,
)
UP = Metric(
    "ams_up",
    Kind.GAUGE,
    ("account",),
    "1 if the last collection of the account fully succeeded, else 0.",
    Group.ACCOUNT,
)
SCRAPE_DURATION = Metric(
    "ams_scrape_duration_seconds",
    Kind.GAUGE,
    ("account",),
    "How long the last collection of the account took.",
    Group.ACCOUNT,
)
LAST_SUCCESS = Metric(
    "ams_last_success_timestamp_seconds",
    Kind.GAUGE,
    ("account",),
    "End of the last fully successful collection of the account, Unix seconds.",
    Group.ACCOUNT,
)
JOBS_DROPPED = Metric(
    "ams_jobs_dropped",
    Kind.GAUGE,
    ("account",),
    "In-scope jobs left without per-job series because of max_jobs; absent when the job listing failed.",
    Group.ACCOUNT,
)
UNREADABLE_ENTITIES = Metric(
    "ams_unreadable_entities",
    Kind.GAUGE,
    ("account", "entity"),
    "Entities (entity: job or task) skipped in the last collection because a required field (Id, "
    "State, Created) could not be read; absent when the job listing failed.",
    Group.ACCOUNT,
)
API_REQUESTS = Metric(
    "ams_api_requests_total",
    Kind.COUNTER,
    ("account", "api", "code"),
    "Upstream requests by API (ams or aad) and HTTP status code (error for transport failures).",
    Group.ACCOUNT,
)
BUILD_INFO = Metric(
    "ams_exporter_build_info",
    Kind.GAUGE,
    ("version",),
    "Always 1; the exporter's version as a label.",
    Group.EXPORTER,
)

METRICS: tuple[Metric, ...] = (
    JOB_STATE,
    JOB_CREATED,
    JOB_START,
    JOB_END,
    JOB_AGE,
    JOB_RUNNING,
    JOB_QUEUED,
    JOB_PROGRESS,
    JOB_PRIORITY,
    JOB_ERROR_INFO,
    TASK_PROGRESS,
    JOBS,
    UP,
    SCRAPE_DURATION,
    LAST_SUCCESS,
    JOBS_DROPPED,
    UNREADABLE_ENTITIES,
    API_REQUESTS,
    BUILD_INFO,
)

_REFERENCE_INTRO = """\
# Metric reference

Generated from `exporter/expose/contract.py` by `python -m exporter.expose.contract > docs/metrics.md`; a test fails when
this file and the code disagree. Besides these, the exporter serves the client library's `process_*` and
`python_*` metrics.

Per-job series carry `account` (the configured account name), `job_id` (the AMS Id, `nb:jid:UUID:...`)
and `job_name` (the AMS Name: not unique, so never used alone). AMS's `job` would collide with the label
Prometheus sets on every target, hence `job_id`/`job_name`.

Which jobs are exported: every job in Queued, Scheduled, Processing or Canceling, plus Finished, Error
and Canceled jobs for `finished_window` after they end, within the optional `ids`, `name_prefix` and
`filter` of the account, and at most `max_jobs` of them per account (`ams_jobs_dropped` counts the
rest; `ams_jobs` counts them all). Series of a job disappear when it leaves that scope.
"""


def reference_markdown() -> str:
    """The metric reference (``docs/metrics.md``) as Markdown."""
    lines = [_REFERENCE_INTRO]
    for group in Group:
        lines += [
            f"## {group.value}",
            "",
            "| metric | type | labels | meaning |",
            "|---|---|---|---|",
        ]
        for metric in METRICS:
            if metric.group is group:
                labels = ", ".join(f"`{label}`" for label in metric.labels)
                lines.append(
                    f"| `{metric.name}` | {metric.kind.value} | {labels} | {metric.help} |"
                )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
