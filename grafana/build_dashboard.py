"""Generates grafana/dashboards/ams-jobs.json (and docs/dashboard.md) with Grafana's foundation SDK.

    .venv/bin/python grafana/build_dashboard.py           # rewrite the committed files
    .venv/bin/python grafana/build_dashboard.py --check   # exit 1 if a committed file is stale

The SDK (PyPI ``grafana-foundation-sdk``, the Grafana 11.6 build) is a development dependency only:
users import the generated JSON. Every panel and the annotation query the datasource through the
``datasource`` variable; the JSON also declares ``__inputs`` so that Grafana's import dialog asks
for a Prometheus datasource.

The SDK has no builder for a few fields Grafana reads (the Prometheus annotation's title and tag
formats, ``__inputs``/``__requires``); ``build()`` adds them to the encoded dictionary.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    heatmap,
    histogram,
    stat,
    statetimeline,
    table,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from exporter.ams.model import JobState
from exporter.collect.jobview import TASKS_READ_IN
from exporter.config.durations import format_duration
from exporter.config.model import JobsConfig
from exporter.web.palette import STATE_COLOURS

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "grafana" / "dashboards" / "ams-jobs.json"
DOCS = ROOT / "docs" / "dashboard.md"
UID = "ams-jobs"
TITLE = "Azure Media Services jobs"
# Where users read the runbooks; the dashboard links there (Grafana cannot open a relative path).
REPOSITORY_URL = "https://github.com/ams-exporter/ams-exporter"
RUNBOOKS_URL = f"{REPOSITORY_URL}/blob/main/docs/runbooks.md"
METRICS_URL = f"{REPOSITORY_URL}/blob/main/docs/metrics.md"
GRAFANA_VERSION = "11.6.0"

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
ACCOUNT = 'account=~"$account"'
# (?s): a job name may contain newlines, which a plain "." does not match in Prometheus 2.
JOBS = 'account=~"$account", job_name=~"(?s:$job_name)"'
# The history metrics count per group of jobs (the configured groups and "other").
GROUPS = 'account=~"$account", group=~"$group"'
ACTIVE_STATES = [s for s in JobState if not s.is_final]
ACTIVE = "|".join(s.label for s in ACTIVE_STATES)
# Grafana's theme colours, for thresholds that are not about a job state.
GREEN, ORANGE, RED = "green", "orange", "red"
BY_ACCOUNT, BY_STATE, BY_JOB = "{{account}}", "{{state}}", "{{job_id}}"
BY_GROUP, BY_CODE, BY_BOUND = "{{group}}", "{{code}}", "{{le}}"
BY_PROCESSOR, BY_TYPE = "{{media_processor}}", "{{type}}"
BY_ACCOUNT_GROUP = f"{BY_ACCOUNT} / {BY_GROUP}"
TOP_ERROR_CODES = 10
# Stat and bar gauge panels show each series' latest value (the queries are instant).
LAST_VALUE = common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
# The annotation query's step; its expression compares each step with the one before.
ANNOTATION_STEP = "1m"
ERROR_ANNOTATION = "Jobs entering Error"
# Saturation at which every encoding reserved unit is busy.
SATURATED = 1
CAPACITY_INTERVAL = format_duration(JobsConfig().capacity_interval)

PanelT = TypeVar(
    "PanelT",
    bargauge.Panel,
    heatmap.Panel,
    histogram.Panel,
    stat.Panel,
    statetimeline.Panel,
    table.Panel,
    ts.Panel,
)
# A panel's width and height, in grid units.
Size = tuple[int, int]


# --- PromQL -------------------------------------------------------------------------------------


def in_state(states: str) -> str:
    """PromQL: the (account, job_id) pairs of the filtered jobs now in one of ``states``."""
    return f'(max by (account, job_id) (ams_job_state{{{JOBS}, state=~"{states}"}}) == 1)'


def per_job(metric: str) -> str:
    """PromQL: one series per job of ``metric``, duplicates from HA scrapes collapsed."""
    return f"max by (account, job_id) ({metric}{{{JOBS}}})"


def processors_of(jobs: str) -> str:
    """PromQL: one series per media processor of each job that ``jobs`` selects, from the job's
    tasks (``ams_task_info``), duplicates from HA scrapes collapsed."""
    return (
        f"max by (account, job_id, media_processor) (ams_task_info{{{JOBS}}}) "
        f"and on (account, job_id) {jobs}"
    )


def jobs_now(state: JobState) -> str:
    """PromQL: how many in-scope jobs are now in ``state``, over the selected accounts."""
    return f'sum(account_state:ams_jobs:max{{{ACCOUNT}, state="{state.label}"}})'


def ended_in_range(state: JobState) -> str:
    """PromQL: how many filtered jobs reached ``state`` (a final state) inside the dashboard range.

    ``last_over_time`` keeps jobs that already left the exporter's finished window; the end time
    must lie after the range's start.
    """
    in_state_then = (
        f"max by (account, job_id) (last_over_time(ams_job_state"
        f'{{{JOBS}, state="{state.label}"}}[$__range])) == 1'
    )
    ended = (
        "max by (account, job_id) (last_over_time(ams_job_end_timestamp_seconds"
        f"{{{JOBS}}}[$__range])) > ${{__from:date:seconds}}"
    )
    return f"count(({in_state_then}) and on (account, job_id) ({ended})) or vector(0)"


def replicas_collapsed(func: str, selector: str, labels: str, window: str) -> str:
    """PromQL: ``func`` (rate or increase) over ``window`` of each series of a history counter or
    histogram, then the replicas of an HA pair collapsed by ``max by (labels)``.

    Both replicas count the same jobs, so their rates agree. The max of the rates, not the rate of
    a max: when one replica restarts, its counters start again from zero, which ``rate`` of its
    own series reads as a reset; a max of the two counters would instead step down to the other
    replica's value, and ``rate`` would count that step as a reset, adding the whole value again.
    """
    return f"max by ({labels}) ({func}({selector}[{window}]))"


def per_minute(histogram: str, labels: str) -> str:
    """PromQL: jobs per minute in each bucket of ``histogram``, whose series have ``labels``
    besides ``le``; a heatmap's query (Grafana takes the cumulative buckets apart)."""
    selector = f"{histogram}_bucket{{{GROUPS}}}"
    rates = replicas_collapsed("rate", selector, f"{labels}, le", "$__rate_interval")
    return f"60 * sum by (le) ({rates})"


def query(expr: str, legend: str = "__auto", ref: str = "A") -> Any:
    """A range query, for the panels that draw the series over time."""
    q = prom.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE).legend_format(legend)
    return q.range()


def instant(expr: str, legend: str = "__auto", ref: str = "A") -> Any:
    """A query of the latest values only, for the panels that show no history."""
    return query(expr, legend, ref).instant()


def per_account(record: str) -> Any:
    """A range query of a per-account recording rule, one series per selected account."""
    return query(f"{record}{{{ACCOUNT}}}", BY_ACCOUNT)


def per_group(record: str) -> Any:
    """A range query of a per-group recording rule, one series per selected account and group."""
    return query(f"{record}{{{GROUPS}}}", BY_ACCOUNT_GROUP)


# --- Field configuration ------------------------------------------------------------------------


def props(values: Mapping[str, Any]) -> list[dm.DynamicConfigValue]:
    """The properties of a field override, e.g. ``{"unit": "s", "decimals": 0}``."""
    return [dm.DynamicConfigValue(id_val=key, value=value) for key, value in values.items()]


def fixed(colour: str) -> dict[str, str]:
    """An override's ``color``: the matched series or column all in one colour."""
    return {"mode": "fixed", "fixedColor": colour}


def fixed_colour_scheme(colour: str) -> dash.FieldColor:
    return dash.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(colour)


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds; the first step's value is ``None`` (from minus infinity)."""
    return (
        dash.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=colour) for value, colour in steps])
    )


@dataclass(frozen=True)
class Unit:
    """How values are written: Grafana's unit, the decimals if fixed, a ratio from 0 to 1."""

    name: str
    decimals: int | None = None
    ratio: bool = False

    def props(self) -> dict[str, Any]:
        """The same as a table column's override properties."""
        bounds = {"min": 0, "max": 1} if self.ratio else {}
        decimals = {} if self.decimals is None else {"decimals": self.decimals}
        return {"unit": self.name, **bounds, **decimals}

    def apply(self, panel: PanelT) -> PanelT:
        panel = panel.unit(self.name)
        if self.decimals is not None:
            panel = panel.decimals(self.decimals)
        return panel.min(0).max(1) if self.ratio else panel


COUNT = Unit("short", decimals=0)  # whole numbers: jobs, processes
SECONDS = Unit("s", decimals=0)
PERCENT = Unit("percentunit", decimals=0, ratio=True)
STACKED = common.StackingConfig().mode(cm.StackingMode.NORMAL)
DASHED = {"fill": "dash", "dash": [10, 10]}  # a series' custom.lineStyle
THRESHOLD_LINES = common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)


def value_map(*entries: tuple[str, str, str | None]) -> dm.ValueMap:
    """Shows each (value, text, colour) entry's value as its text, in its colour if not None."""
    return dm.ValueMap(
        options={
            value: dm.ValueMappingResult(text=text, color=colour, index=i)
            for i, (value, text, colour) in enumerate(entries)
        }
    )


def state_mapping() -> dm.ValueMap:
    """State names with the status page's colours (Error red, Finished green, Processing blue ...)."""
    return value_map(*((s.label, s.label, STATE_COLOURS[s]) for s in JobState))


def state_colour_overrides(panel: PanelT) -> PanelT:
    """Colours series named after a state (legend ``{{state}}``) like the status page does."""
    for state in JobState:
        panel = panel.override_by_name(state.label, props({"color": fixed(STATE_COLOURS[state])}))
    return panel


# --- Panels -------------------------------------------------------------------------------------
# A panel is made by the helper for its shape; its description, queries and the options of that
# one panel follow as the SDK's own chained calls.


def row(title: str) -> dash.Row:
    return dash.Row(title).collapsed(False).datasource(DATASOURCE)


def panel(kind: Callable[[], PanelT], title: str, size: Size, unit: Unit | None = None) -> PanelT:
    """A panel of ``kind`` and ``size`` on the datasource variable."""
    width, height = size
    built = kind().title(title).datasource(DATASOURCE).span(width).height(height)
    return built if unit is None else unit.apply(built)


def graph(title: str, size: Size, unit: Unit) -> ts.Panel:
    """A time series panel, its y axis from 0."""
    return panel(ts.Panel, title, size, unit).min(0)


def stat_panel(title: str, size: Size, unit: Unit | None = None) -> stat.Panel:
    """The latest value of each series of an instant query, without a sparkline."""
    built = panel(stat.Panel, title, size, unit).reduce_options(LAST_VALUE)
    return built.graph_mode(cm.BigValueGraphMode.NONE)


def state_count(state: JobState, title: str, width: int, expr: str) -> stat.Panel:
    """A number of jobs, written in ``state``'s colour."""
    built = stat_panel(title, (width, 5), COUNT).with_target(instant(expr, state.label))
    built = built.color_scheme(fixed_colour_scheme(STATE_COLOURS[state]))
    return built.color_mode(cm.BigValueColorMode.VALUE)


def duration_histogram(title: str, state: JobState, width: int) -> histogram.Panel:
    """A histogram of one duration over the jobs, in the colour of the jobs' state."""
    built = panel(histogram.Panel, title, (width, 8)).combine(True).unit("s").fill_opacity(80)
    return built.color_scheme(fixed_colour_scheme(STATE_COLOURS[state]))


def histogram_heatmap(title: str, histogram: str, labels: str) -> heatmap.Panel:
    """A heatmap of a histogram's buckets over time: how many jobs per minute fell in each.

    The buckets come as they are (``format: heatmap``), not recalculated by Grafana, and the
    exemplars (the Id of the latest job of each bucket) are drawn on the cells.
    """
    target = query(per_minute(histogram, labels), BY_BOUND).format(pm.PromQueryFormat.HEATMAP)
    return (
        panel(heatmap.Panel, title, (12, 9))
        .with_target(target.exemplar(True))
        .calculate(False)
        .rows_frame(heatmap.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.LE))
        .y_axis(heatmap.YAxisConfig().unit("s").decimals(0))
        .cell_values(heatmap.CellValues().unit("cpm"))
        .show_value(cm.VisibilityMode.NEVER)
    )


def quantiles(title: str, record: str, legend: str = BY_ACCOUNT_GROUP) -> ts.Panel:
    """The recorded median and 95th percentile over the last hour (``<record>:p50_1h`` and
    ``:p95_1h``), the 95th dashed."""
    return (
        graph(title, (8, 8), SECONDS)
        .with_target(query(f"{record}:p50_1h{{{GROUPS}}}", f"{legend} p50"))
        .with_target(query(f"{record}:p95_1h{{{GROUPS}}}", f"{legend} p95", "B"))
        .override_by_query("B", props({"custom.lineStyle": DASHED}))
    )


# The media processor column of the job tables: the field Grafana's groupBy transformation makes
# of a job's processors ("All unique values", which a table cell shows joined by ", ").
PROCESSORS_FIELD = "media_processor (uniqueValues)"
PROCESSORS_TITLE = "Media processor"


def processors_grouped(ref: str) -> dm.DataTransformerConfig:
    """Grafana's groupBy on query ``ref`` only: one row per job (account, job_id), its processors'
    names in one cell, instead of one row per job and processor."""
    by = {"operation": "groupby", "aggregations": []}
    fields = {
        "account": by,
        "job_id": by,
        "media_processor": {"operation": "aggregate", "aggregations": ["uniqueValues"]},
    }
    return dm.DataTransformerConfig(
        id_val="groupBy",
        filter_val=dm.MatcherConfig(id_val="byRefId", options=ref),
        options={"fields": fields},
    )


def jobs_table(
    title: str,
    size: Size,
    columns: Sequence[tuple[str, str]],
    sort: str,
    *exprs: str,
    processors_of_jobs: str,
) -> table.Panel:
    """A table of jobs, one row per series of its instant queries A, B, ...

    The queries are merged on their labels: A gives the rows, whose value is hidden unless
    ``columns`` names it (``Value #A``), and each of the others one value column. A last query
    gives the media processors of the jobs ``processors_of_jobs`` selects (the table's own),
    grouped into one row per job before the merge. The columns are Name and Account,
    ``columns`` ((field, title) in display order), the media processors, then job_id, which the
    names' links to the Job detail row need. Rows are sorted by the ``sort`` column, largest
    first.
    """
    built = panel(table.Panel, title, size)
    every_expr = (*exprs, processors_of(processors_of_jobs))
    refs = string.ascii_uppercase[: len(every_expr)]
    for ref, expr in zip(refs, every_expr, strict=True):
        built = built.with_target(instant(expr, ref=ref).format(pm.PromQueryFormat.TABLE))
    built = built.with_transformation(processors_grouped(refs[-1]))
    built = built.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    titles = dict(columns)
    hidden = ["Time"] if "Value #A" in titles else ["Time", "Value #A"]
    # Grafana names a value "Value #<ref>" only when more than one query returned data; with
    # the processors' query empty, A's value is plain "Value".
    aliases = {"Value": titles["Value #A"]} if "Value #A" in titles else {}
    every = [
        ("job_name", "Name"),
        ("account", "Account"),
        *columns,
        (PROCESSORS_FIELD, PROCESSORS_TITLE),
        ("job_id", None),
    ]
    organize = {
        "excludeByName": dict.fromkeys(hidden, True),
        "indexByName": {field: i for i, (field, _) in enumerate(every)},
        "renameByName": {field: title for field, title in every if title} | aliases,
    }
    built = built.with_transformation(dm.DataTransformerConfig(id_val="organize", options=organize))
    by = common.TableSortByFieldState().display_name(sort).desc(True)
    return built.sort_by([by]).filterable(True)


def names_link_to_detail(panel: table.Panel) -> table.Panel:
    """Each job name links to this dashboard with the job selected in the Job detail row."""
    link = dash.DashboardLink("Show this job's detail").url(
        f"/d/{UID}/ams-jobs?${{__url_time_range}}&${{datasource:queryparam}}"
        "&${account:queryparam}&var-job_id=${__data.fields.job_id}"
    )
    return panel.override_by_name("Name", props({"links": [link.build()]}))


# --- Rows ---------------------------------------------------------------------------------------


def overview() -> list[Builder[Any]]:
    now = (
        state_count(state, f"{state.label} now", 2, jobs_now(state)).description(
            f"In-scope jobs now in state {state.label}, over the selected accounts."
        )
        for state in ACTIVE_STATES
    )
    ended = (
        state_count(state, title, 3, ended_in_range(state)).description(
            f"Jobs (name filter applied) that ended in {state.label} within the selected time range."
        )
        for state, title in (
            (JobState.ERROR, "Failed in range"),
            (JobState.FINISHED, "Finished in range"),
        )
    )
    return [
        row("Overview"),
        *now,
        *ended,
        stat_panel("Collection per account", (5, 5))
        .description(
            "ams_up: 1 when the exporter's last collection of the account fully succeeded."
        )
        .with_target(instant(f"max by (account) (ams_up{{{ACCOUNT}}})", BY_ACCOUNT))
        .mappings([value_map(("0", "DOWN", RED), ("1", "UP", GREEN))])
        .thresholds(thresholds((None, RED), (1, GREEN)))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME),
        stat_panel("Last successful collection", (5, 5), SECONDS)
        .description("Seconds since the newest successful collection of each account.")
        .with_target(
            instant(f"account:ams_collection_staleness_seconds:max{{{ACCOUNT}}}", BY_ACCOUNT)
        )
        .thresholds(thresholds((None, GREEN), (180, ORANGE), (900, RED)))
        .color_mode(cm.BigValueColorMode.VALUE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME),
    ]


def states_over_time() -> list[Builder[Any]]:
    return [
        row("Jobs over time"),
        state_colour_overrides(
            graph("Jobs per state", (16, 8), COUNT)
            .description("In-scope jobs per state (ams_jobs), stacked, over the selected accounts.")
            .with_target(
                query(f"sum by (state) (account_state:ams_jobs:max{{{ACCOUNT}}})", BY_STATE)
            )
            .fill_opacity(40)
            .stacking(STACKED)
        ),
        graph("Active jobs per account", (8, 8), COUNT)
        .description("Jobs not yet final (Queued, Scheduled, Processing, Canceling) per account.")
        .with_target(per_account("account:ams_jobs_active:sum")),
    ]


# The value columns of the running jobs table: query ref, per-job metric, column title.
RUNNING_COLUMNS = [
    ("B", "ams_job_progress_ratio", "Progress"),
    ("C", "ams_job_age_seconds", "Age"),
    ("D", "ams_job_queued_duration_seconds", "Queued"),
    ("E", "ams_job_running_duration_seconds", "Running"),
    ("F", "ams_job_priority", "Priority"),
]


def running_jobs() -> list[Builder[Any]]:
    jobs = f'max by (account, job_id, job_name, state) (ams_job_state{{{JOBS}, state=~"{ACTIVE}"}}) == 1'
    values = (
        f"{per_job(metric)} and on (account, job_id) {in_state(ACTIVE)}"
        for _, metric, _ in RUNNING_COLUMNS
    )
    progress_gauge = {
        **PERCENT.props(),
        "custom.cellOptions": {"type": "gauge", "mode": "basic"},
        "color": fixed(STATE_COLOURS[JobState.PROCESSING]),
    }
    state_cells = {
        "mappings": [state_mapping()],
        "custom.cellOptions": {"type": "color-background"},
    }
    columns = [("state", "State"), *((f"Value #{ref}", title) for ref, _, title in RUNNING_COLUMNS)]
    running = (
        jobs_table(
            "Running jobs",
            (24, 10),
            columns,
            "Running",
            jobs,
            *values,
            processors_of_jobs=in_state(ACTIVE),
        )
        .description(
            "Jobs not yet final, longest running first, with the media processors of their "
            "tasks (none for Queued and Scheduled jobs, whose tasks are not read). Click a name "
            "for the job's detail below."
        )
        .override_by_name("State", props(state_cells))
        .override_by_name("Progress", props(progress_gauge))
        .override_by_regexp("Age|Queued|Running", props(SECONDS.props()))
        .override_by_name("Priority", props({"decimals": 0}))
    )
    tasks = (
        "max by (account, job_id, job_name, task_id, task_name) "
        f"(ams_task_progress_ratio{{{JOBS}}}) and on (account, job_id) "
        f"{in_state(JobState.PROCESSING.label)}"
    )
    return [
        row("Jobs in progress"),
        names_link_to_detail(running),
        panel(bargauge.Panel, "Task progress of processing jobs", (24, 8), PERCENT)
        .description("ams_task_progress_ratio of every task of the jobs now Processing.")
        .with_target(instant(tasks, "{{job_name}} / {{task_name}}"))
        .reduce_options(LAST_VALUE)
        .thresholds(thresholds((None, STATE_COLOURS[JobState.PROCESSING])))
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL),
    ]


def failures() -> list[Builder[Any]]:
    end_ms = f"{per_job('ams_job_end_timestamp_seconds')} * 1000"
    in_error = in_state(JobState.ERROR.label)
    # A task's identity is (account, job_id, task_id); its processor comes along.
    failed_tasks = (
        "sort_desc(count by (media_processor) (max by (account, job_id, task_id, media_processor) "
        f"(ams_task_info{{{JOBS}}}) and on (account, job_id) {in_error}))"
    )
    # One row per task error code; a job in Error without error codes still gets one row.
    failed = (
        "max by (account, job_id, job_name, task_id, code) "
        f"(ams_job_error_info{{{JOBS}}}) * on (account, job_id) group_left () ({end_ms})"
        f" or on (account, job_id) ({end_ms} and on (account, job_id) {in_error})"
    )
    columns = [("code", "Error code"), ("task_id", "Task"), ("Value #A", "Ended")]
    error_codes = {
        "color": fixed(STATE_COLOURS[JobState.ERROR]),
        "custom.cellOptions": {"type": "color-text"},
    }
    return [
        row("Failures"),
        names_link_to_detail(
            jobs_table(
                "Failed jobs",
                (16, 9),
                columns,
                "Ended",
                failed,
                processors_of_jobs=in_error,
            )
            .description(
                "Jobs in Error still in the exporter's finished window: one row per task error "
                "code, with the job's end time and the media processors of its tasks."
            )
            .override_by_name("Ended", props({"unit": "dateTimeAsIso"}))
            .override_by_name("Error code", props(error_codes))
        ),
        panel(bargauge.Panel, "Failures by media processor", (8, 9), COUNT)
        .description(
            "Tasks of the jobs now in Error (those in the exporter's finished window) per media "
            "processor (ams_task_info), most first."
        )
        .with_target(instant(failed_tasks, BY_PROCESSOR))
        .reduce_options(LAST_VALUE)
        .thresholds(thresholds((None, STATE_COLOURS[JobState.ERROR])))
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL),
        graph("Error ratio (1 h window)", (8, 8), Unit("percentunit", decimals=1, ratio=True))
        .description(
            "Failed ÷ ended jobs over the last hour, per account (account:ams_job_errors:ratio1h)."
        )
        .with_target(per_account("account:ams_job_errors:ratio1h"))
        .thresholds(thresholds((None, GREEN), (0.2, RED)))
        .thresholds_style(THRESHOLD_LINES),
        graph("Jobs ended and failed (1 h window)", (8, 8), COUNT)
        .description("Jobs that reached a final state, and those in Error, within the last hour.")
        .with_target(query(f"account:ams_jobs_ended:count1h{{{ACCOUNT}}}", f"{BY_ACCOUNT} ended"))
        .with_target(
            query(f"account:ams_jobs_failed:count1h{{{ACCOUNT}}}", f"{BY_ACCOUNT} failed", "B")
        )
        .override_by_query("B", props({"color": fixed(STATE_COLOURS[JobState.ERROR])})),
        graph("Failed tasks per media processor (1 h window)", (8, 8), COUNT)
        .description(
            "Tasks with error details in the jobs that ended in Error within the last hour, per "
            "account and media processor (account_media_processor:ams_tasks_failed:count1h)."
        )
        .with_target(
            query(
                f"account_media_processor:ams_tasks_failed:count1h{{{ACCOUNT}}}",
                f"{BY_ACCOUNT} / {BY_PROCESSOR}",
            )
        ),
    ]


def durations() -> list[Builder[Any]]:
    finished = (
        f"{per_job('ams_job_running_duration_seconds')} and on (account, job_id) "
        f"{in_state(JobState.FINISHED.label)}"
    )
    return [
        row("Queue wait, capacity and durations"),
        graph("Oldest queued job", (6, 8), SECONDS)
        .description("Longest wait among jobs now Queued or Scheduled, per account.")
        .with_target(per_account("account:ams_oldest_queued_job_age_seconds:max")),
        graph("Encoding reserved units", (6, 8), COUNT)
        .description(
            "Each account's encoding reserved units by type (ams_encoding_reserved_units: how "
            "many tasks run at once) and the most it may reserve (ams_encoding_reserved_units_max, "
            "dashed). The exporter reads them once per jobs.capacity_interval "
            f"({CAPACITY_INTERVAL} by default)."
        )
        .with_target(
            query(
                f"max by (account, type) (ams_encoding_reserved_units{{{ACCOUNT}}})",
                f"{BY_ACCOUNT} {BY_TYPE}",
            )
        )
        .with_target(
            query(
                f"max by (account) (ams_encoding_reserved_units_max{{{ACCOUNT}}})",
                f"{BY_ACCOUNT} max",
                "B",
            )
        )
        .override_by_query("B", props({"custom.lineStyle": DASHED})),
        graph("Encoding saturation", (6, 8), Unit("percentunit", decimals=0))
        .description(
            "Jobs Processing ÷ encoding reserved units, per account "
            "(account:ams_encoding_saturation:ratio). At the red line (100 %) every unit is busy "
            "and new jobs wait in Queued. No line while the units are unknown or 0."
        )
        .with_target(per_account("account:ams_encoding_saturation:ratio"))
        .thresholds(thresholds((None, GREEN), (SATURATED, RED)))
        .thresholds_style(THRESHOLD_LINES)
        .axis_soft_max(SATURATED),
        graph("Longest running job", (6, 8), SECONDS)
        .description("Longest running time among jobs now Processing, per account.")
        .with_target(per_account("account:ams_job_running_duration_seconds:max")),
        duration_histogram("Queued durations (in-scope jobs)", JobState.QUEUED, 12)
        .description("Distribution of ams_job_queued_duration_seconds over the filtered jobs, now.")
        .with_target(instant(per_job("ams_job_queued_duration_seconds"), BY_JOB)),
        duration_histogram("Running durations of finished jobs", JobState.FINISHED, 12)
        .description(
            "Distribution of ams_job_running_duration_seconds over the filtered Finished jobs."
        )
        .with_target(instant(finished, BY_JOB)),
    ]


def job_history() -> list[Builder[Any]]:
    error_codes = replicas_collapsed(
        "increase", f"ams_job_errors_total{{{GROUPS}}}", "account, group, code", "$__range"
    )
    top_codes = f"sort_desc(topk({TOP_ERROR_CODES}, sum by (code) ({error_codes}) > 0))"
    ended = f"sum by (state) (account_group_state:ams_jobs_ended:increase1h{{{GROUPS}}})"
    return [
        row("History"),
        state_colour_overrides(
            graph("Jobs ended per hour by state", (10, 8), COUNT)
            .description(
                "Jobs of the selected groups that ended in the hour up to each point, per final "
                "state (account_group_state:ams_jobs_ended:increase1h), stacked."
            )
            .with_target(query(ended, BY_STATE))
            .fill_opacity(40)
            .stacking(STACKED)
        ),
        graph("Error ratio by group (1 h window)", (7, 8), Unit("percentunit", 1, ratio=True))
        .description(
            "Jobs ended in Error ÷ jobs ended, over the last hour, per account and group "
            "(account_group:ams_jobs_error:ratio1h)."
        )
        .with_target(per_group("account_group:ams_jobs_error:ratio1h"))
        .thresholds(thresholds((None, GREEN), (0.2, RED)))
        .thresholds_style(THRESHOLD_LINES),
        panel(bargauge.Panel, "Top error codes", (7, 8), COUNT)
        .description(
            f"The {TOP_ERROR_CODES} ErrorDetails codes most counted in failed jobs within the "
            "selected time range (ams_job_errors_total)."
        )
        .with_target(instant(top_codes, BY_CODE))
        .reduce_options(LAST_VALUE)
        .thresholds(thresholds((None, STATE_COLOURS[JobState.ERROR])))
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL),
        histogram_heatmap(
            "Job duration heatmap", "ams_job_duration_seconds", "account, group, state"
        ).description(
            "RunningDuration of the jobs that ended (ams_job_duration_seconds), per bucket and "
            "minute; the marks are exemplars, each one ended job's Id."
        ),
        histogram_heatmap(
            "Queue wait heatmap", "ams_job_queue_wait_seconds", "account, group"
        ).description(
            "How long the jobs that started waited, StartTime - Created "
            "(ams_job_queue_wait_seconds), per bucket and minute; the marks are exemplars, each "
            "one started job's Id."
        ),
        quantiles(
            "Job duration p50 / p95 by group (1 h window)",
            "account_group:ams_job_duration_seconds",
        ).description(
            "Median and 95th percentile of the RunningDuration of the jobs that ended in the "
            "last hour, all final states together, per account and group."
        ),
        quantiles(
            "Job duration p50 / p95 by final state (1 h window)",
            "account_group_state:ams_job_duration_seconds",
            f"{BY_ACCOUNT_GROUP} {BY_STATE}",
        ).description(
            "The same per final state: how long Finished jobs took, how long failed and "
            "canceled ones ran."
        ),
        quantiles(
            "Queue wait p50 / p95 by group (1 h window)", "account_group:ams_job_queue_wait_seconds"
        ).description(
            "Median and 95th percentile of the queue wait of the jobs that started in the last "
            "hour, per account and group."
        ),
    ]


def exporter_health() -> list[Builder[Any]]:
    requests = f"sum by (api, code) (rate(ams_api_requests_total{{{ACCOUNT}}}[$__rate_interval]))"
    return [
        row("Exporter"),
        graph("Collection duration vs scrape timeout", (8, 8), Unit("s"))
        .description(
            "How long each account's collection took (ams_collection_duration_seconds) against the "
            "Prometheus scrape timeout set in the dashboard variable."
        )
        .with_target(
            query(f"max by (account) (ams_collection_duration_seconds{{{ACCOUNT}}})", BY_ACCOUNT)
        )
        .with_target(query("vector($scrape_timeout)", "scrape timeout", "B"))
        .override_by_query("B", props({"color": fixed(RED), "custom.lineStyle": DASHED})),
        graph("AMS API requests by status code", (8, 8), Unit("reqps"))
        .description("Requests to AMS and Azure AD per second, by API and HTTP status.")
        .with_target(query(requests, "{{api}} {{code}}"))
        .fill_opacity(30)
        .stacking(STACKED),
        graph("Dropped jobs (max_jobs)", (4, 8), COUNT)
        .description("In-scope jobs left without per-job series because of the max_jobs cap.")
        .with_target(query(f"max by (account) (ams_jobs_dropped{{{ACCOUNT}}})", BY_ACCOUNT))
        .thresholds(thresholds((None, GREEN), (1, RED)))
        .thresholds_style(THRESHOLD_LINES),
        stat_panel("Exporter versions", (4, 8), COUNT)
        .description("Exporter processes per version (ams_exporter_build_info).")
        .with_target(instant("count by (version) (ams_exporter_build_info)", "{{version}}"))
        .color_mode(cm.BigValueColorMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME),
    ]


def job_detail() -> list[Builder[Any]]:
    one_job = 'account=~"$account", job_id="$job_id"'
    tasks = f"max by (task_name) (ams_task_progress_ratio{{{one_job}}})"
    return [
        row("Job detail: $job_id"),
        state_colour_overrides(
            panel(statetimeline.Panel, "Job state", (12, 7))
            .description("The selected job's state over time (pick a job in the tables above).")
            .with_target(query(f"max by (state) (ams_job_state{{{one_job}}}) == 1", BY_STATE))
            .mappings([value_map(("1", "current", None))])
            .show_value(cm.VisibilityMode.NEVER)
            .merge_values(True)
        ),
        graph("Job and task progress", (12, 7), PERCENT)
        .description("The selected job's progress and each of its tasks' progress over time.")
        .with_target(query(f"max(ams_job_progress_ratio{{{one_job}}})", "job"))
        .with_target(query(tasks, "{{task_name}}", "B")),
    ]


ROWS = (
    overview,
    states_over_time,
    running_jobs,
    failures,
    durations,
    job_history,
    exporter_health,
    job_detail,
)


# --- Dashboard ----------------------------------------------------------------------------------


def label_variable(name: str, label: str, source: str) -> dash.QueryVariable:
    """One, several or all values of the label ``name`` of the series ``source`` selects."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": f"label_values({source}, {name})", "refId": name})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def variables() -> list[Builder[dm.VariableModel]]:
    return [
        dash.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(
            dm.VariableOption(selected=True, text="${DS_PROMETHEUS}", value="${DS_PROMETHEUS}")
        ),
        label_variable("account", "Account", "ams_up"),
        # Every group's counters exist from the exporter's first collection, so all are listed.
        label_variable("group", "Group", f"ams_jobs_ended_total{{{ACCOUNT}}}").description(
            "The job groups the History row shows (the configured ones and other)."
        ),
        dash.TextBoxVariable("job_name")
        .label("Job name (regex)")
        .description("A regular expression matched against the whole job name, newlines included.")
        .default_value(".*"),
        dash.TextBoxVariable("job_id")
        .label("Job ID")
        .description("The job shown in the Job detail row; set by clicking a job name.")
        .default_value(""),
        dash.TextBoxVariable("scrape_timeout")
        .label("Scrape timeout (s)")
        .description(
            "The scrape_timeout of the Prometheus job that scrapes the exporter, in seconds."
        )
        .default_value("15"),
    ]


def error_annotation() -> dash.AnnotationQuery:
    """Marks the evaluation step at which a job is first seen in Error.

    Error is a final state, so a job is new in Error when it is in Error now and its Error series
    was not 1 at its last sample in the hour up to the previous step (ANNOTATION_STEP before).
    Looking back over the hour rather than at the single previous step keeps the mark from
    coming back after a gap: a failed collection or an exporter restart leaves no per-job series
    (Prometheus marks them stale), and a plain `offset 1m` would then see nothing and mark every
    job in Error again. The `max by` without `instance` also bridges a restart that changes the
    target's labels (a new pod). A gap longer than the hour marks the jobs again.
    """
    selector = f'ams_job_state{{{JOBS}, state="Error"}}'
    now = f"max by (account, job_id, job_name) ({selector}) == 1"
    before = (
        f"max by (account, job_id) (last_over_time({selector}[1h] offset {ANNOTATION_STEP})) == 1"
    )
    return (
        dash.AnnotationQuery()
        .name(ERROR_ANNOTATION)
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color(STATE_COLOURS[JobState.ERROR])
        .expr(f"{now} unless on (account, job_id) {before}")
    )


def external_link(title: str, url: str, icon: str, tooltip: str = "") -> dash.DashboardLink:
    """A link in the dashboard's header that opens in a new tab."""
    link = dash.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(url).icon(icon)
    return link.tooltip(tooltip).target_blank(True)


def dashboard() -> dash.Dashboard:
    """The dashboard's settings, links, annotation and variables: everything but the panels."""
    return (
        dash.Dashboard(TITLE)
        .uid(UID)
        .description("Azure Media Services v2 encoding jobs, from ams-exporter.")
        .tags(["ams", "azure-media-services", "ams-exporter"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .link(
            external_link("Runbooks", RUNBOOKS_URL, "doc", "What each alert means and what to do")
        )
        .link(external_link("Metric reference", METRICS_URL, "info"))
        .annotation(error_annotation())
        .variables(variables())
    )


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model; panel ids count rows and panels in order."""
    builder = dashboard()
    items = (item for section in ROWS for item in section())
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, dash.Row):
            builder = builder.with_row(item.id(panel_id))
        else:
            builder = builder.with_panel(item.id(panel_id))  # type: ignore[attr-defined]
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return finish(model)


def finish(model: dict[str, Any]) -> dict[str, Any]:
    """Adds what the SDK cannot express: import inputs and the annotation's display formats."""
    for annotation in model["annotations"]["list"]:
        annotation.update(
            {
                "step": ANNOTATION_STEP,
                "titleFormat": "{{job_name}} failed",
                "textFormat": "account {{account}}, job {{job_id}}",
                "tagKeys": "account",
                "useValueForTime": False,
            }
        )
    panel_kinds = sorted({p["type"] for p in model["panels"] if p["type"] != "row"})
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes ams-exporter",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *({"type": "panel", "id": k, "name": k, "version": ""} for k in panel_kinds),
        ],
        "id": None,
        **model,
    }


# --- docs/dashboard.md --------------------------------------------------------------------------


def variable_docs(model: dict[str, Any]) -> list[str]:
    lines = ["## Variables", "", "| variable | kind | meaning |", "|---|---|---|"]
    for variable in model["templating"]["list"]:
        meaning = variable.get("description") or variable.get("label", "")
        if variable["type"] == "query":
            meaning = (
                f"{variable['label']}: values of `{variable['query']['query']}`, multi, All = `.*`"
            )
            if variable.get("description"):
                meaning += f". {variable['description']}"
        elif variable["type"] == "datasource":
            meaning = "Prometheus datasource; the import dialog fills it in (`DS_PROMETHEUS`)"
        lines.append(f"| `${variable['name']}` | {variable['type']} | {meaning} |")
    return lines


def annotation_docs(model: dict[str, Any]) -> list[str]:
    lines = ["## Annotations", ""]
    for annotation in model["annotations"]["list"]:
        lines += [f"**{annotation['name']}**", "", "```promql", annotation["expr"], "```", ""]
        if annotation["name"] == ERROR_ANNOTATION:
            lines += [
                f"One mark per job, at the {ANNOTATION_STEP} step where it is first seen in Error.",
                "It compares with the job's last Error value in the hour before that step, so a",
                "failed collection or an exporter restart (a gap in the series) does not mark the",
                "jobs in Error again; a gap of more than an hour does.",
                "",
            ]
    return lines


# What a reader of docs/dashboard.md needs to know about a row beyond its panels' queries.
ROW_NOTES = {
    "Queue wait, capacity and durations": [
        "The encoding reserved units are read once per `jobs.capacity_interval`",
        f"({CAPACITY_INTERVAL} by default), not on every collection, and have no series until the",
        "first read. The saturation panel reads the recording rule",
        "`account:ams_encoding_saturation:ratio` (jobs Processing ÷ reserved units, absent with",
        "0 units), the ratio the alert `AMSEncodingCapacitySaturated` watches: at 1 every unit",
        "is busy, and jobs that arrive wait in Queued.",
        "",
    ],
    "History": [
        "The history counters and histograms count each job once, from the exporter's start",
        "(or its `--storage.path` state); every series exists at zero from the first",
        "collection, for each configured group and `other`. A group is one account's: the",
        "panels keep `account` beside `group`. Two exporter replicas count the same jobs, so",
        "every query, like the recording rules it reads, takes `rate()` or `increase()` of each",
        "series first, collapses the replicas with a `max by` over all the series' own labels,",
        "and only then sums. The `$group` variable filters this row only.",
        "",
        "The heatmaps read the buckets themselves and ask for exemplars: the Id of the latest",
        "job of each bucket (`job_id`). Grafana shows them when Prometheus scrapes the exporter",
        "with OpenMetrics (its default) and keeps exemplars (`--enable-feature=exemplar-storage`).",
        "The p50 / p95 panels read recorded series, which carry no exemplars. The Prometheus of",
        "`compose.yaml` runs with exemplar storage.",
        "",
    ],
}


def panel_docs(model: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for panel in model["panels"]:
        if panel["type"] == "row":
            lines += [f"## Row: {panel['title']}", "", *ROW_NOTES.get(panel["title"], [])]
            continue
        lines += [f"### {panel['title']} ({panel['type']})", "", panel.get("description", ""), ""]
        for target in panel["targets"]:
            kind = "instant" if target.get("instant") else "range"
            fmt = target.get("format", "time_series")
            fmt_note = "" if fmt == "time_series" else f", {fmt}"
            exemplar_note = ", exemplars" if target.get("exemplar") else ""
            legend = target.get("legendFormat", "__auto")
            legend_note = f", legend `{legend}`" if legend != "__auto" else ""
            heading = f"Query {target['refId']} ({kind}{fmt_note}{exemplar_note}{legend_note}):"
            lines += [heading, "", "```promql", target["expr"], "```", ""]
        lines += transformation_docs(panel)
    return lines


def transformation_docs(panel: dict[str, Any]) -> list[str]:
    """The panel's Grafana transformations in order, and how a job table gets its processors."""
    steps = []
    grouped = None
    for transformation in panel.get("transformations", []):
        where = transformation.get("filter", {}).get("options")
        steps.append(f"`{transformation['id']}`" + (f" (query {where} only)" if where else ""))
        if transformation["id"] == "groupBy":
            grouped = where
    if not steps:
        return []
    lines = [f"Transformations: {', '.join(steps)}.", ""]
    if grouped:
        *first, last = [state.label for state in JobState if state in TASKS_READ_IN]
        lines += [
            f"{PROCESSORS_TITLE}: query {grouped} has one series per job and media processor",
            f"(`ams_task_info` exists for the tasks of jobs in {', '.join(first)} and {last}).",
            "*Group by* makes one row per job of it, the processors' names in one cell (*All",
            "unique values*, shown joined by commas), and *Merge* adds that cell to the job's",
            "rows by `account` and `job_id`. PromQL cannot join label values across series, and",
            "a `group_left (media_processor)` join fails outright as soon as one job's tasks run",
            "on two processors (two series on its one side).",
            "",
        ]
    return lines


def render_docs(model: dict[str, Any]) -> str:
    """docs/dashboard.md: every variable, and every panel with its queries, in dashboard order."""
    lines = [
        "# The Grafana dashboard",
        "",
        "<!-- Generated by grafana/build_dashboard.py from the same code as the dashboard JSON;",
        "     edit the generator, not this file. -->",
        "",
        f"`grafana/dashboards/{OUTPUT.name}` (uid `{model['uid']}`, {model['title']!r}), built for",
        f"Grafana {GRAFANA_VERSION.rsplit('.', 1)[0]}. Import and provisioning: `grafana/README.md`.",
        "Every query reads the exporter's metrics (`docs/metrics.md`) or the recording rules of",
        "`prometheus/rules.yml`, through the `datasource` variable.",
        "",
        *variable_docs(model),
        "",
        *annotation_docs(model),
        *panel_docs(model),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def outputs() -> dict[Path, str]:
    """Every generated file and its content."""
    model = build()
    return {
        OUTPUT: json.dumps(model, indent=2, ensure_ascii=False) + "\n",
        DOCS: render_docs(model),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in outputs().items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                print(f"{path} is stale: run grafana/build_dashboard.py", file=sys.stderr)
                stale = 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return stale


if __name__ == "__main__":
    sys.exit(main())
