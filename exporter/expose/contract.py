"""The metric contract: every metric the exporter exposes, declared once.

A declaration holds the name, type, labels and help of a metric and the function that yields its
samples, side by side (as kube-state-metrics declares its families). Both writers iterate
:data:`METRICS`: the fast text writer (``exporter/expose/writer.py``) and the ``prometheus_client``
reference path (``exporter/expose/reference.py``). ``docs/metrics.md`` is generated from the same
table (``python -m exporter.expose.contract``; a test keeps the committed file in step). Adding a
metric is one declaration here, added to :data:`METRICS`, and regenerating ``docs/metrics.md``.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from exporter.ams.model import ENTITY_KINDS, JobState
from exporter.collect.history import Count, Distribution, HistorySnapshot
from exporter.collect.jobview import JobView
from exporter.collect.snapshot import AccountResult, Collection
from exporter.version import Build

JOB_LABELS = ("account", "job_id", "job_name")
STATE_LABELS = tuple((state, state.label) for state in JobState)

# (account, api, code) → requests so far.
RequestCounts = Mapping[tuple[str, str, str], int]
# The values of a sample's own labels (those after the scope's common labels), and its value.
Sample = tuple[tuple[str, ...], float]


class Kind(enum.Enum):
    """Prometheus metric types used by the exporter."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


class Group(enum.Enum):
    """Sections of the metric reference."""

    JOB = "Per job"
    TASK = "Per task"
    ACCOUNT = "Per account"
    HISTORY = "History"
    EXPORTER = "Exporter"


@dataclass(frozen=True, slots=True)
class ConfigStatus:
    """How the last load of the configuration went, as Prometheus reports its own reloads."""

    successful: bool
    success_time: float  # Unix seconds of the last successful load (start-up or reload)


@dataclass(frozen=True, slots=True)
class Scrape:
    """Everything one scrape exposes: the collection, request counters, version, config status."""

    collection: Collection
    requests: RequestCounts
    build: Build
    config: ConfigStatus
    # The one account a probe (``/probe?account=NAME``) asks for; ``None`` for the metrics path.
    account: str | None = None

    @property
    def declarations(self) -> tuple[Declaration, ...]:
        """What this scrape exposes, in :data:`METRICS` order: a probe, only what belongs to an
        account (:attr:`Metric.per_account`), as blackbox_exporter's probe leaves out its own
        metrics. A probe's collection holds its account alone."""
        if self.account is None:
            return METRICS
        return tuple(metric for metric in METRICS if metric.per_account)

    def samples_of(self, metric: ScrapeSeries) -> Iterable[Sample]:
        """``metric``'s samples; a probe's, only those of its account."""
        if self.account is None:
            return metric.samples(self)
        at = metric.labels.index("account")
        return [sample for sample in metric.samples(self) if sample[0][at] == self.account]


@dataclass(frozen=True, slots=True)
class Metric:
    """What every declaration has. ``name`` is the exposed name (counters include ``_total``)."""

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

    @property
    def per_account(self) -> bool:
        """Whether each series belongs to the account its ``account`` label names."""
        return "account" in self.labels


class Moves(enum.Enum):
    """How a per-job value depends on the collection's time."""

    NEVER = "never"  # on the job, its tasks and its group alone
    ALWAYS = "always"  # the job's age
    # While the job has not ended (see JobView.ended): the durations of live jobs.
    UNTIL_ENDED = "until ended"


@dataclass(frozen=True, slots=True)
class JobValue(Metric):
    """One series per exported job, labelled :data:`JOB_LABELS`; ``None`` leaves the job out.

    ``moves`` says whether the value depends on the collection's time (``JobView.now``) besides
    the job, its tasks and its group: the writer reuses the line of an unchanged job only while
    it does not.
    """

    value: Callable[[JobView], float | None]
    moves: Moves = Moves.NEVER


@dataclass(frozen=True, slots=True)
class JobStateSet(Metric):
    """A state set per exported job (OpenMetrics' stateset, a gauge in the text format): one
    series per :class:`JobState`, labelled :data:`JOB_LABELS` and ``state``, 1 for the current
    state and 0 for the others."""

    state: Callable[[JobView], JobState]


@dataclass(frozen=True, slots=True)
class JobSeries(Metric):
    """Series per exported job: :data:`JOB_LABELS`, then the labels each sample names."""

    samples: Callable[[JobView], Iterable[Sample]]


@dataclass(frozen=True, slots=True)
class AccountSeries(Metric):
    """Series per account: ``account``, then the labels each sample names."""

    samples: Callable[[AccountResult], Iterable[Sample]]


@dataclass(frozen=True, slots=True)
class ScrapeSeries(Metric):
    """Series of the whole scrape; each sample names all its labels."""

    samples: Callable[[Scrape], Iterable[Sample]]


@dataclass(frozen=True, slots=True)
class CounterPoint:
    """One counter series of an account: its own labels (after ``account``), its count and
    exemplar, and when counting started (OpenMetrics' ``_created``)."""

    labels: tuple[str, ...]
    count: Count
    created: float


@dataclass(frozen=True, slots=True)
class HistogramPoint:
    """One histogram series of an account: its own labels, buckets, sum, and ``_created``."""

    labels: tuple[str, ...]
    distribution: Distribution
    created: float


@dataclass(frozen=True, slots=True)
class AccountCounter(Metric):
    """Counter series per account: ``account``, then the labels each point names. OpenMetrics
    output carries their exemplars and ``_created``; the text format 0.0.4 neither."""

    points: Callable[[AccountResult], Iterable[CounterPoint]]


@dataclass(frozen=True, slots=True)
class AccountHistogram(Metric):
    """Histogram series per account (``_bucket`` with ``le``, ``_count``, ``_sum``), with
    exemplars on the buckets and ``_created`` in OpenMetrics output only."""

    points: Callable[[AccountResult], Iterable[HistogramPoint]]


Declaration = (
    JobValue
    | JobStateSet
    | JobSeries
    | AccountSeries
    | AccountCounter
    | AccountHistogram
    | ScrapeSeries
)


def _error_codes(view: JobView) -> list[Sample]:
    return [((task_id, code), 1) for task_id, code in view.error_codes]


def _task_progress(view: JobView) -> list[Sample]:
    return [
        ((task.id, task.name), task.progress / 100.0)
        for task in view.exported_tasks
        if task.progress is not None
    ]


def _task_info(view: JobView) -> list[Sample]:
    # Own labels in name order (media_processor, media_processor_version, task_id, task_name):
    # all sort after job_name, so the writer's fast path applies.
    return [((*view.processor_of(task), task.id, task.name), 1) for task in view.exported_tasks]


def _reserved_units(result: AccountResult) -> list[Sample]:
    units = result.reserved_units
    return [] if units is None else [((units.type,), units.current)]


def _reserved_units_max(result: AccountResult) -> list[Sample]:
    units = result.reserved_units
    return [] if units is None or units.maximum is None else [((), units.maximum)]


def _job_counts(result: AccountResult) -> list[Sample]:
    if not result.listed:  # zeros after a failed listing would lie
        return []
    return [((label,), result.state_counts.get(state, 0)) for state, label in STATE_LABELS]


def _unreadable(result: AccountResult) -> list[Sample]:
    if not result.listed:
        return []
    return [((entity,), result.unreadable.get(entity, 0)) for entity in ENTITY_KINDS]


_Value = TypeVar("_Value", Count, Distribution)
_Point = TypeVar("_Point", CounterPoint, HistogramPoint)


def _history_points(
    series: Callable[[HistorySnapshot], Iterable[tuple[tuple[str, ...], _Value]]],
    point: Callable[[tuple[str, ...], _Value, float], _Point],
) -> Callable[[AccountResult], list[_Point]]:
    """The points of one of the history's counters or histograms, none for a result without
    history."""

    def points(result: AccountResult) -> list[_Point]:
        history = result.history
        if history is None:
            return []
        return [point(key, value, history.created) for key, value in series(history)]

    return points


def _last_ended(result: AccountResult) -> list[Sample]:
    history = result.history
    return [] if history is None else list(history.last_ended)


def _requests(scrape: Scrape) -> list[Sample]:
    return [(key, count) for key, count in sorted(scrape.requests.items())]


JOB_STATE = JobStateSet(
    "ams_job_state",
    Kind.GAUGE,
    (*JOB_LABELS, "state"),
    "Job state as a state set: 1 for the current state, 0 for the six others.",
    Group.JOB,
    lambda view: view.job.state,
)
JOB_CREATED = JobValue(
    "ams_job_created_timestamp_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "When the job was created (Created), Unix seconds.",
    Group.JOB,
    lambda view: view.job.created,
)
JOB_START = JobValue(
    "ams_job_start_timestamp_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "When the job started processing (StartTime), Unix seconds; absent until it starts.",
    Group.JOB,
    lambda view: view.job.start_time,
)
JOB_END = JobValue(
    "ams_job_end_timestamp_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "When the job finished, failed or was canceled (EndTime), Unix seconds; absent until then.",
    Group.JOB,
    lambda view: view.job.end_time,
)
JOB_AGE = JobValue(
    "ams_job_age_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "Collection time minus Created.",
    Group.JOB,
    lambda view: view.age_seconds,
    moves=Moves.ALWAYS,
)
JOB_RUNNING = JobValue(
    "ams_job_running_duration_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "RunningDuration in seconds; while Processing with RunningDuration 0, time since StartTime.",
    Group.JOB,
    lambda view: view.running_seconds,
    moves=Moves.UNTIL_ENDED,
)
JOB_QUEUED = JobValue(
    "ams_job_queued_duration_seconds",
    Kind.GAUGE,
    JOB_LABELS,
    "StartTime minus Created; while the job has not started, collection time minus Created (EndTime minus Created for a job that ended without starting).",
    Group.JOB,
    lambda view: view.queued_seconds,
    moves=Moves.UNTIL_ENDED,
)
JOB_PROGRESS = JobValue(
    "ams_job_progress_ratio",
    Kind.GAUGE,
    JOB_LABELS,
    "Mean of the tasks' Progress as 0..1 (0 before the job starts, 1 once Finished); absent for Canceled jobs, whose tasks are not read.",
    Group.JOB,
    lambda view: view.progress_ratio,
)
JOB_PRIORITY = JobValue(
    "ams_job_priority",
    Kind.GAUGE,
    JOB_LABELS,
    "Job Priority (a higher value runs sooner).",
    Group.JOB,
    lambda view: view.job.priority,
)
JOB_INFO = JobSeries(
    "ams_job_info",
    Kind.GAUGE,
    (*JOB_LABELS, "group"),
    "Always 1; the job's history group (jobs.groups, else other), to join per-job series with "
    "their group's history.",
    Group.JOB,
    lambda view: [((view.group,), 1)],
)
JOB_ERROR_INFO = JobSeries(
    "ams_job_error_info",
    Kind.GAUGE,
    (*JOB_LABELS, "task_id", "code"),
    "1 for each ErrorDetails code of a task of a job in Error (documented codes only).",
    Group.JOB,
    _error_codes,
)
TASK_PROGRESS = JobSeries(
    "ams_task_progress_ratio",
    Kind.GAUGE,
    (*JOB_LABELS, "task_id", "task_name"),
    "Task Progress as 0..1, for the tasks of jobs that are Processing, Canceling or in Error (the states whose tasks are read).",
    Group.TASK,
    _task_progress,
)
TASK_INFO = JobSeries(
    "ams_task_info",
    Kind.GAUGE,
    (*JOB_LABELS, "media_processor", "media_processor_version", "task_id", "task_name"),
    "Always 1, for the tasks whose series are exposed (those of ams_task_progress_ratio); "
    "media_processor is the Name of the task's MediaProcessorId in the MediaProcessors set, or "
    "the Id itself when the set does not list it.",
    Group.TASK,
    _task_info,
)
JOBS = AccountSeries(
    "ams_jobs",
    Kind.GAUGE,
    ("account", "state"),
    "In-scope jobs per state, counting jobs beyond max_jobs too; all seven states present whenever the job listing succeeded (absent when it failed, see ams_up).",
    Group.ACCOUNT,
    _job_counts,
)
UP = AccountSeries(
    "ams_up",
    Kind.GAUGE,
    ("account",),
    "1 if the last collection of the account fully succeeded, else 0.",
    Group.ACCOUNT,
    lambda result: [((), 1 if result.up else 0)],
)
COLLECTION_DURATION = AccountSeries(
    "ams_collection_duration_seconds",
    Kind.GAUGE,
    ("account",),
    "How long the last collection of the account took; one collection serves every scrape that "
    "arrives while it runs (Prometheus's scrape_duration_seconds times each scrape).",
    Group.ACCOUNT,
    lambda result: [((), result.duration_seconds)],
)
LAST_SUCCESS = AccountSeries(
    "ams_last_success_timestamp_seconds",
    Kind.GAUGE,
    ("account",),
    "End of the last fully successful collection of the account, Unix seconds.",
    Group.ACCOUNT,
    lambda result: [] if result.last_success is None else [((), result.last_success)],
)
JOBS_DROPPED = AccountSeries(
    "ams_jobs_dropped",
    Kind.GAUGE,
    ("account",),
    "In-scope jobs left without per-job series because of max_jobs; absent when the job listing failed.",
    Group.ACCOUNT,
    lambda result: [((), result.dropped)] if result.listed else [],
)
UNREADABLE_ENTITIES = AccountSeries(
    "ams_unreadable_entities",
    Kind.GAUGE,
    ("account", "entity"),
    "Entities (entity: job or task) skipped in the last collection because a required field (Id, "
    "State, Created) could not be read; absent when the job listing failed.",
    Group.ACCOUNT,
    _unreadable,
)
RESERVED_UNITS = AccountSeries(
    "ams_encoding_reserved_units",
    Kind.GAUGE,
    ("account", "type"),
    "CurrentReservedUnits of the account's EncodingReservedUnitTypes entity (type: S1, S2 or "
    "S3), read once per jobs.capacity_interval; absent until it was read.",
    Group.ACCOUNT,
    _reserved_units,
)
RESERVED_UNITS_MAX = AccountSeries(
    "ams_encoding_reserved_units_max",
    Kind.GAUGE,
    ("account",),
    "MaxReservableUnits of the account's EncodingReservedUnitTypes entity; absent until it was "
    "read.",
    Group.ACCOUNT,
    _reserved_units_max,
)
JOBS_ENDED = AccountCounter(
    "ams_jobs_ended_total",
    Kind.COUNTER,
    ("account", "group", "state"),
    "Jobs that ended (state: Finished, Error, Canceled), each counted once, when a collection "
    "first sees it in that state; from the process start, or the stored watermark with "
    "--storage.path.",
    Group.HISTORY,
    _history_points(lambda history: history.ended, CounterPoint),
)
JOB_DURATION = AccountHistogram(
    "ams_job_duration_seconds",
    Kind.HISTOGRAM,
    ("account", "group", "state"),
    "RunningDuration of the jobs that ended, observed once per job when it is counted in "
    "ams_jobs_ended_total (buckets: jobs.history.duration_buckets).",
    Group.HISTORY,
    _history_points(lambda history: history.durations, HistogramPoint),
)
JOB_QUEUE_WAIT = AccountHistogram(
    "ams_job_queue_wait_seconds",
    Kind.HISTOGRAM,
    ("account", "group"),
    "StartTime minus Created, observed once per job when a collection first sees it started "
    "(buckets: jobs.history.queue_wait_buckets).",
    Group.HISTORY,
    _history_points(
        lambda history: (((group,), values) for group, values in history.queue_waits),
        HistogramPoint,
    ),
)
JOB_ERRORS = AccountCounter(
    "ams_job_errors_total",
    Kind.COUNTER,
    ("account", "group", "code"),
    "ErrorDetails codes of the tasks of jobs that ended in Error, once per job and code "
    "(documented codes, others as Unknown).",
    Group.HISTORY,
    _history_points(lambda history: history.errors, CounterPoint),
)
GROUP_LAST_ENDED = AccountSeries(
    "ams_group_last_ended_timestamp_seconds",
    Kind.GAUGE,
    ("account", "group", "state"),
    "EndTime of the most recent job of the group that ended in that state, Unix seconds; "
    "absent until the exporter has seen one.",
    Group.HISTORY,
    _last_ended,
)
API_REQUESTS = ScrapeSeries(
    "ams_api_requests_total",
    Kind.COUNTER,
    ("account", "api", "code"),
    "Upstream requests by API (ams or aad) and HTTP status code (error for transport failures).",
    Group.ACCOUNT,
    _requests,
)
BUILD_INFO = ScrapeSeries(
    "ams_exporter_build_info",
    Kind.GAUGE,
    ("version", "revision", "pythonversion"),
    "Always 1; the exporter's version, the git commit it was built from (unknown when not built "
    "from git) and the Python version as labels.",
    Group.EXPORTER,
    lambda scrape: [
        ((scrape.build.version, scrape.build.revision, scrape.build.python_version), 1)
    ],
)

CONFIG_RELOAD_SUCCESSFUL = ScrapeSeries(
    "ams_exporter_config_last_reload_successful",
    Kind.GAUGE,
    (),
    "1 if the last load of the configuration (start-up, SIGHUP or /-/reload) succeeded, else 0.",
    Group.EXPORTER,
    lambda scrape: [((), 1 if scrape.config.successful else 0)],
)
CONFIG_RELOAD_SUCCESS_TIME = ScrapeSeries(
    "ams_exporter_config_last_reload_success_timestamp_seconds",
    Kind.GAUGE,
    (),
    "When the configuration was last loaded successfully, Unix seconds.",
    Group.EXPORTER,
    lambda scrape: [((), scrape.config.success_time)],
)

METRICS: tuple[Declaration, ...] = (
    JOB_STATE,
    JOB_CREATED,
    JOB_START,
    JOB_END,
    JOB_AGE,
    JOB_RUNNING,
    JOB_QUEUED,
    JOB_PROGRESS,
    JOB_PRIORITY,
    JOB_INFO,
    JOB_ERROR_INFO,
    TASK_PROGRESS,
    TASK_INFO,
    JOBS,
    UP,
    COLLECTION_DURATION,
    LAST_SUCCESS,
    JOBS_DROPPED,
    UNREADABLE_ENTITIES,
    RESERVED_UNITS,
    RESERVED_UNITS_MAX,
    JOBS_ENDED,
    JOB_DURATION,
    JOB_QUEUE_WAIT,
    JOB_ERRORS,
    GROUP_LAST_ENDED,
    API_REQUESTS,
    BUILD_INFO,
    CONFIG_RELOAD_SUCCESSFUL,
    CONFIG_RELOAD_SUCCESS_TIME,
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

The history series (`ams_jobs_ended_total`, `ams_job_duration_seconds`, `ams_job_queue_wait_seconds`,
`ams_job_errors_total`, `ams_group_last_ended_timestamp_seconds`) are per account and `group`, never
per job: each in-scope job is counted once, `max_jobs` or not, and stays counted after it leaves the
scope. `group` is the first of the account's `jobs.groups` whose `name_regex` matches the job's Name,
else `other`; `ams_job_info` names it for each exported job. How a job is counted, and from when, is
described [below the History table](#how-the-history-counts).

Two things are read by time rather than on every collection, as they seldom change: the account's
encoding reserved units (`ams_encoding_reserved_units`, `ams_encoding_reserved_units_max`), see
[below the Per account table](#encoding-reserved-units), and its media processors, which name
`media_processor` in `ams_task_info`, see [below the Per task table](#media-processors).
"""

_TASK_SEMANTICS = """\
### Media processors

`media_processor` and `media_processor_version` of `ams_task_info` say what runs the task: the Name
and Version of the entry of the account's MediaProcessors set whose Id is the task's
MediaProcessorId (its Id when the entry has no Name).

- **When the set is read.** By the first collection whose job listing succeeds, then once an hour,
  and in between when a task names a MediaProcessorId that the set does not list: once per such Id,
  as an Id still missing after that read waits for the hourly one. A failed read is tried again
  after 5 minutes, and the processors read before are kept meanwhile. With `jobs.tasks: false` no
  task names a processor, and the set is not read.
- **While a processor is not listed** (the set not read yet, its reads failing, a processor the set
  does not have), `media_processor` is the task's MediaProcessorId itself and
  `media_processor_version` is empty. A task that names no processor has both empty.
"""

_CAPACITY_SEMANTICS = """\
### Encoding reserved units

- **What they mean.** A reserved unit runs one task at a time: `ams_encoding_reserved_units` is how
  many of the account's tasks can run at once, and a job beyond them waits in Queued until a unit is
  free. `type` is the kind of unit: S1, S2 or S3, S3 the fastest.
  `ams_encoding_reserved_units_max` is how many units the account may reserve (its quota). Accounts
  migrated to automatic scaling (after April 2021) still answer the EncodingReservedUnitTypes
  entity, but its number no longer bounds what runs: AMS adds capacity by itself.
- **When they are read.** By the first collection whose job listing succeeds, then by the first
  collection that comes to them at least `jobs.capacity_interval` (default 5m) after the previous
  read: one request per interval, however many scrapes. Between reads the values are served from
  memory.
- **Absent, then kept.** Both series are absent until the entity has been read, and while the
  account lists none (`ams_encoding_reserved_units_max` also when MaxReservableUnits cannot be
  read). A failed read keeps the values of the last successful one, and so does a failed collection;
  the failure is logged once, and once more when a read succeeds again, and leaves `ams_up` alone.
  After a restart, or a reload that changes the account, they are absent until its first collection
  reads them.
"""

_HISTORY_SEMANTICS = """\
### How the history counts

- **Once per job, by Id.** Every collection whose job listing succeeds sees all the in-scope jobs of
  the account, those beyond `max_jobs` included. A job is counted in `ams_jobs_ended_total` and
  `ams_job_duration_seconds` by the first collection that sees it Finished, Error or Canceled, and
  by no later one, however many see it again. A job created and ended between two collections is
  counted all the same: it is still in the listing, for `finished_window` after it ended. Its queue
  wait (StartTime minus Created) is observed by the first collection that sees a StartTime. A job's
  end is its EndTime (LastModified when AMS sent none); its duration is its RunningDuration (StartTime
  to EndTime when AMS sent none that can be read), and a job with neither is counted but not
  observed. A collection whose listing fails counts nothing; the next one that succeeds counts the
  jobs that ended meanwhile, as long as they are still in scope.
- **From when: the watermark.** A job is counted only if it ended at or after the account's *end
  floor*, and its queue wait observed only if it started at or after the *start floor* (and, for a
  job that has ended, if it ended at or after the end floor). Without `--storage.path`, both floors
  are the process start: jobs that ended before it are in scope but not counted, the counters start
  at zero and their `_created` is the start. As jobs are counted, the *watermark*, the latest EndTime
  counted (never later than the collection that counted it, whatever AMS's clock says), moves up,
  and both floors follow it 10 minutes below. The Ids counted above the floors are
  remembered, so that no job counts twice, and forgotten below them, so that the memory stays small.
  A job that a collection first sees ended when its EndTime is already more than 10 minutes below the
  watermark is not counted. EndTime is AMS's clock and the process start the exporter's: keep the
  exporter's clock synchronised.
- **Across restarts: `--storage.path`.** With it, the exporter keeps each account's floors,
  watermark, the Ids counted near the watermark and the last ended timestamps in a file, written
  after every collection that changed them, atomically (a temporary file in the same directory,
  fsync, rename). After a restart, the floors come from the file: the first collection counts, once,
  the jobs that ended while the exporter was down, as far back as the listing reaches, i.e.
  `finished_window`. The start-up log says from when jobs are counted, and a warning says which span
  of a longer downtime could not be recovered. On the first start with the flag (no file yet), and
  when the file cannot be read or belongs to something else (it is renamed `<file>.unreadable`, with
  a warning), the account starts afresh, as without the flag; it never stops the exporter. The file
  is described in [configuration.md](configuration.md#history-storage).
- **Counters restart at zero** after every restart, with the flag or without; `increase()` and
  `rate()` take the drop as a counter reset. With the flag, the jobs of the downtime are the first
  increase after it. Prometheus sees a reset only where the first value after the restart is below
  the last one before it; at a steady rate of jobs, that holds unless the exporter was down longer
  than it had run.
- **HA pairs and replicas.** The two Prometheus servers of an HA pair that scrape one exporter read
  the same counters. Two exporters that export the same account (one beside each server of a pair,
  or the old and the new pod of a rolling update) count the same jobs, each from its own start, and
  reset at different times. Take `increase()` or
  `rate()` of each series first, then the maximum over the replicas (`max without (instance)`, or
  `max by` the labels that identify the series), and only then sum: never sum the replicas, never
  take `increase()` of their maximum. The recording rules in `prometheus/rules.yml` and the
  dashboard do so.
- **Error codes.** `ams_job_errors_total` counts the ErrorDetails codes of the tasks of each job
  counted in Error, once per job and code. The tasks of jobs in Error beyond `max_jobs`, which have
  no per-job series, are read once for their codes (a failed read is retried by the next collection
  while the job is in scope). With `jobs.tasks: false` no tasks are read and no codes are counted.
- **Last ended.** `ams_group_last_ended_timestamp_seconds` is the latest EndTime of the in-scope
  jobs seen in that group and state, counted or not (a job that ended before counting started
  sets it too); with `--storage.path` it is kept across restarts.
- **Reloads.** An account removed by a reload drops its history with its series; its file stays on
  disk, and the account goes on from it if it is added again. An account whose `groups` or
  `history` buckets change keeps its floors and Ids but restarts its counters at zero, with a new
  `_created`; any other change keeps the counters.
- **OpenMetrics only:** every history counter and histogram series carries `_created`, and each
  counter and bucket an exemplar with the `job_id` of the latest job it counted; the text format
  0.0.4 has neither.
"""

# What the tables cannot say, printed below each section's table.
_SEMANTICS = {
    Group.TASK: _TASK_SEMANTICS,
    Group.ACCOUNT: _CAPACITY_SEMANTICS,
    Group.HISTORY: _HISTORY_SEMANTICS,
}


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
        if group in _SEMANTICS:
            lines.append(_SEMANTICS[group])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
