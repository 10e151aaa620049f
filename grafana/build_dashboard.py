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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import bargauge, common, histogram, stat, statetimeline, table
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from exporter.ams.model import JobState
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
ACTIVE_STATES = [s for s in JobState if not s.is_final]
ACTIVE = "|".join(s.label for s in ACTIVE_STATES)
# Grafana's theme colours, for thresholds that are not about a job state.
GREEN, ORANGE, RED = "green", "orange", "red"
BY_ACCOUNT, BY_STATE, BY_JOB = "{{account}}", "{{state}}", "{{job_id}}"
# Stat and bar gauge panels show each series' latest value (the queries are instant).
LAST_VALUE = common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
# The annotation query's step; its expression compares each step with the one before.
ANNOTATION_STEP = "1m"
ERROR_ANNOTATION = "Jobs entering Error"

PanelT = TypeVar(
    "PanelT",
    bargauge.Panel,
    histogram.Panel,
    stat.Panel,
    statetimeline.Panel,
    table.Panel,
    ts.Panel,
)


# --- PromQL -------------------------------------------------------------------------------------


def in_state(states: str) -> str:
    """PromQL: the (account, job_id) pairs of the filtered jobs now in one of ``states``."""
    return f'(max by (account, job_id) (ams_job_state{{{JOBS}, state=~"{states}"}}) == 1)'


def per_job(metric: str) -> str:
    """PromQL: one series per job of ``metric``, duplicates from HA scrapes collapsed."""
    return f"max by (account, job_id) ({metric}{{{JOBS}}})"


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


def query(expr: str, ref: str = "A", legend: str = "__auto", *, instant: bool = False) -> Any:
    q = prom.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE).legend_format(legend)
    return q.instant() if instant else q.range()


def table_query(expr: str, ref: str) -> Any:
    return query(expr, ref, instant=True).format(pm.PromQueryFormat.TABLE)


# --- Field configuration ------------------------------------------------------------------------


def props(values: dict[str, Any]) -> list[dm.DynamicConfigValue]:
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


def threshold_lines(panel: ts.Panel, *steps: tuple[float | None, str]) -> ts.Panel:
    """Thresholds drawn as lines across the graph."""
    return panel.thresholds(thresholds(*steps)).thresholds_style(
        common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
    )


def counts(panel: PanelT) -> PanelT:
    """Whole numbers: jobs, processes."""
    return panel.unit("short").decimals(0)


def ratio(panel: PanelT, decimals: int = 0) -> PanelT:
    """A ratio from 0 to 1, shown as a percentage."""
    return panel.unit("percentunit").min(0).max(1).decimals(decimals)


def stacked(panel: ts.Panel, fill_opacity: int) -> ts.Panel:
    return panel.fill_opacity(fill_opacity).stacking(
        common.StackingConfig().mode(cm.StackingMode.NORMAL)
    )


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


def row(title: str) -> dash.Row:
    return dash.Row(title).collapsed(False).datasource(DATASOURCE)


def panel(
    kind: Callable[[], PanelT],
    title: str,
    description: str,
    size: tuple[int, int],
    *targets: Any,
) -> PanelT:
    """A panel of ``kind``, ``size`` (width, height) grid units, on the datasource variable."""
    width, height = size
    built = kind().title(title).description(description).datasource(DATASOURCE)
    built = built.span(width).height(height)
    for target in targets:
        built = built.with_target(target)
    return built


def stat_panel(
    title: str, description: str, size: tuple[int, int], expr: str, legend: str
) -> stat.Panel:
    """The latest value of each series of an instant query, without a sparkline."""
    return (
        panel(stat.Panel, title, description, size, query(expr, legend=legend, instant=True))
        .reduce_options(LAST_VALUE)
        .graph_mode(cm.BigValueGraphMode.NONE)
    )


def state_count_stat(
    state: JobState, title: str, description: str, width: int, expr: str
) -> stat.Panel:
    """A number of jobs, written in ``state``'s colour."""
    return (
        counts(stat_panel(title, description, (width, 5), expr, state.label))
        .color_scheme(fixed_colour_scheme(STATE_COLOURS[state]))
        .color_mode(cm.BigValueColorMode.VALUE)
    )


def now_stat(state: JobState) -> stat.Panel:
    return state_count_stat(
        state,
        f"{state.label} now",
        f"In-scope jobs now in state {state.label}, over the selected accounts.",
        2,
        f'sum(account_state:ams_jobs:max{{{ACCOUNT}, state="{state.label}"}})',
    )


def ended_stat(state: JobState, title: str) -> stat.Panel:
    return state_count_stat(
        state,
        title,
        f"Jobs (name filter applied) that ended in {state.label} within the selected time range.",
        3,
        ended_in_range(state),
    )


def duration_histogram(title: str, description: str, expr: str, state: JobState) -> histogram.Panel:
    """A histogram of one duration over the jobs, in the colour of the jobs' state."""
    return (
        panel(histogram.Panel, title, description, (6, 8), query(expr, legend=BY_JOB, instant=True))
        .combine(True)
        .unit("s")
        .fill_opacity(80)
        .color_scheme(fixed_colour_scheme(STATE_COLOURS[state]))
    )


def organize(
    columns: Sequence[tuple[str, str | None]], hidden: Sequence[str]
) -> dm.DataTransformerConfig:
    """Grafana's "Organize fields": hides ``hidden``, then orders and renames ``columns``.

    ``columns`` are (field, title) in display order; a title of ``None`` keeps the field's name.
    """
    return dm.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": dict.fromkeys(hidden, True),
            "indexByName": {field: i for i, (field, _) in enumerate(columns)},
            "renameByName": {field: title for field, title in columns if title},
        },
    )


def sorted_by(panel: table.Panel, column: str) -> table.Panel:
    """Rows by ``column``, largest first, with column filters."""
    by = common.TableSortByFieldState().display_name(column).desc(True)
    return panel.sort_by([by]).filterable(True)


def names_link_to_detail(panel: table.Panel) -> table.Panel:
    """Each job name links to this dashboard with the job selected in the Job detail row."""
    link = dash.DashboardLink("Show this job's detail").url(
        f"/d/{UID}/ams-jobs?${{__url_time_range}}&${{datasource:queryparam}}"
        "&${account:queryparam}&var-job_id=${__data.fields.job_id}"
    )
    return panel.override_by_name("Name", props({"links": [link.build()]}))


# --- Rows ---------------------------------------------------------------------------------------


def overview() -> list[Builder[Any]]:
    up = (
        stat_panel(
            "Collection per account",
            "ams_up: 1 when the exporter's last collection of the account fully succeeded.",
            (5, 5),
            f"max by (account) (ams_up{{{ACCOUNT}}})",
            BY_ACCOUNT,
        )
        .mappings([value_map(("0", "DOWN", RED), ("1", "UP", GREEN))])
        .thresholds(thresholds((None, RED), (1, GREEN)))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
    )
    staleness = (
        stat_panel(
            "Last successful collection",
            "Seconds since the newest successful collection of each account.",
            (5, 5),
            f"account:ams_collection_staleness_seconds:max{{{ACCOUNT}}}",
            BY_ACCOUNT,
        )
        .unit("s")
        .decimals(0)
        .thresholds(thresholds((None, GREEN), (180, ORANGE), (900, RED)))
        .color_mode(cm.BigValueColorMode.VALUE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
    )
    return [
        row("Overview"),
        *(now_stat(state) for state in ACTIVE_STATES),
        ended_stat(JobState.ERROR, "Failed in range"),
        ended_stat(JobState.FINISHED, "Finished in range"),
        up,
        staleness,
    ]


def states_over_time() -> list[Builder[Any]]:
    states = panel(
        ts.Panel,
        "Jobs per state",
        "In-scope jobs per state (ams_jobs), stacked, over the selected accounts.",
        (16, 8),
        query(f"sum by (state) (account_state:ams_jobs:max{{{ACCOUNT}}})", legend=BY_STATE),
    )
    active = panel(
        ts.Panel,
        "Active jobs per account",
        "Jobs not yet final (Queued, Scheduled, Processing, Canceling) per account.",
        (8, 8),
        query(f"account:ams_jobs_active:sum{{{ACCOUNT}}}", legend=BY_ACCOUNT),
    )
    return [
        row("Jobs over time"),
        state_colour_overrides(stacked(counts(states).min(0), 40)),
        counts(active).min(0),
    ]


# The value columns of the running jobs table: query ref, per-job metric, column title.
RUNNING_COLUMNS = [
    ("B", "ams_job_progress_ratio", "Progress"),
    ("C", "ams_job_age_seconds", "Age"),
    ("D", "ams_job_queued_duration_seconds", "Queued"),
    ("E", "ams_job_running_duration_seconds", "Running"),
    ("F", "ams_job_priority", "Priority"),
]


def running_jobs_table() -> table.Panel:
    """Query A gives the jobs' labels; B to F one value column each, merged on the labels."""
    jobs = f'max by (account, job_id, job_name, state) (ams_job_state{{{JOBS}, state=~"{ACTIVE}"}}) == 1'
    values = (
        table_query(f"{per_job(metric)} and on (account, job_id) {in_state(ACTIVE)}", ref)
        for ref, metric, _ in RUNNING_COLUMNS
    )
    columns = [
        ("job_name", "Name"),
        ("account", "Account"),
        ("state", "State"),
        *((f"Value #{ref}", title) for ref, _, title in RUNNING_COLUMNS),
        ("job_id", None),
    ]
    running = (
        panel(
            table.Panel,
            "Running jobs",
            "Jobs not yet final, longest running first. Click a name for the job's detail below.",
            (24, 10),
            table_query(jobs, "A"),
            *values,
        )
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(organize(columns, hidden=["Time", "Value #A"]))
    )
    progress_gauge = {
        "unit": "percentunit",
        "min": 0,
        "max": 1,
        "decimals": 0,
        "custom.cellOptions": {"type": "gauge", "mode": "basic"},
        "color": fixed(STATE_COLOURS[JobState.PROCESSING]),
    }
    running = (
        sorted_by(running, "Running")
        .override_by_name(
            "State",
            props(
                {"mappings": [state_mapping()], "custom.cellOptions": {"type": "color-background"}}
            ),
        )
        .override_by_name("Progress", props(progress_gauge))
        .override_by_regexp("Age|Queued|Running", props({"unit": "s", "decimals": 0}))
        .override_by_name("Priority", props({"decimals": 0}))
    )
    return names_link_to_detail(running)


def running_jobs() -> list[Builder[Any]]:
    tasks = panel(
        bargauge.Panel,
        "Task progress of processing jobs",
        "ams_task_progress_ratio of every task of the jobs now Processing.",
        (24, 8),
        query(
            "max by (account, job_id, job_name, task_id, task_name) "
            f"(ams_task_progress_ratio{{{JOBS}}}) and on (account, job_id) "
            f"{in_state(JobState.PROCESSING.label)}",
            legend="{{job_name}} / {{task_name}}",
            instant=True,
        ),
    )
    tasks = (
        ratio(tasks.reduce_options(LAST_VALUE))
        .thresholds(thresholds((None, STATE_COLOURS[JobState.PROCESSING])))
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL)
    )
    return [row("Jobs in progress"), running_jobs_table(), tasks]


def failed_jobs_table() -> table.Panel:
    """One row per task error code; a job in Error without error codes still gets one row."""
    end_ms = f"{per_job('ams_job_end_timestamp_seconds')} * 1000"
    expr = (
        "max by (account, job_id, job_name, task_id, code) "
        f"(ams_job_error_info{{{JOBS}}}) * on (account, job_id) group_left () ({end_ms})"
        f" or on (account, job_id) ({end_ms} and on (account, job_id) "
        f"{in_state(JobState.ERROR.label)})"
    )
    columns = [
        ("job_name", "Name"),
        ("account", "Account"),
        ("code", "Error code"),
        ("task_id", "Task"),
        ("Value", "Ended"),
        ("job_id", None),
    ]
    failed = panel(
        table.Panel,
        "Failed jobs",
        "Jobs in Error still in the exporter's finished window: one row per task error code, "
        "with the job's end time.",
        (12, 9),
        table_query(expr, "A"),
    ).with_transformation(organize(columns, hidden=["Time"]))
    failed = (
        sorted_by(failed, "Ended")
        .override_by_name("Ended", props({"unit": "dateTimeAsIso"}))
        .override_by_name(
            "Error code",
            props(
                {
                    "color": fixed(STATE_COLOURS[JobState.ERROR]),
                    "custom.cellOptions": {"type": "color-text"},
                }
            ),
        )
    )
    return names_link_to_detail(failed)


def failures() -> list[Builder[Any]]:
    error_ratio = panel(
        ts.Panel,
        "Error ratio (1 h window)",
        "Failed ÷ ended jobs over the last hour, per account (account:ams_job_errors:ratio1h).",
        (6, 9),
        query(f"account:ams_job_errors:ratio1h{{{ACCOUNT}}}", legend=BY_ACCOUNT),
    )
    ended = panel(
        ts.Panel,
        "Jobs ended and failed (1 h window)",
        "Jobs that reached a final state, and those in Error, within the last hour.",
        (6, 9),
        query(f"account:ams_jobs_ended:count1h{{{ACCOUNT}}}", "A", f"{BY_ACCOUNT} ended"),
        query(f"account:ams_jobs_failed:count1h{{{ACCOUNT}}}", "B", f"{BY_ACCOUNT} failed"),
    )
    return [
        row("Failures"),
        failed_jobs_table(),
        threshold_lines(ratio(error_ratio, decimals=1), (None, GREEN), (0.2, RED)),
        counts(ended)
        .min(0)
        .override_by_query("B", props({"color": fixed(STATE_COLOURS[JobState.ERROR])})),
    ]


def longest_per_account(title: str, description: str, record: str) -> ts.Panel:
    """A time series of one per-account duration recording rule, in seconds."""
    longest = panel(
        ts.Panel, title, description, (6, 8), query(f"{record}{{{ACCOUNT}}}", legend=BY_ACCOUNT)
    )
    return longest.unit("s").min(0).decimals(0)


def durations() -> list[Builder[Any]]:
    return [
        row("Queue wait and durations"),
        longest_per_account(
            "Oldest queued job",
            "Longest wait among jobs now Queued or Scheduled, per account.",
            "account:ams_oldest_queued_job_age_seconds:max",
        ),
        longest_per_account(
            "Longest running job",
            "Longest running time among jobs now Processing, per account.",
            "account:ams_job_running_duration_seconds:max",
        ),
        duration_histogram(
            "Queued durations (in-scope jobs)",
            "Distribution of ams_job_queued_duration_seconds over the filtered jobs, now.",
            per_job("ams_job_queued_duration_seconds"),
            JobState.QUEUED,
        ),
        duration_histogram(
            "Running durations of finished jobs",
            "Distribution of ams_job_running_duration_seconds over the filtered Finished jobs.",
            f"{per_job('ams_job_running_duration_seconds')} and on (account, job_id) "
            f"{in_state(JobState.FINISHED.label)}",
            JobState.FINISHED,
        ),
    ]


def exporter_health() -> list[Builder[Any]]:
    collection = panel(
        ts.Panel,
        "Collection duration vs scrape timeout",
        "How long each account's collection took (ams_scrape_duration_seconds) against the "
        "Prometheus scrape timeout set in the dashboard variable.",
        (8, 8),
        query(f"max by (account) (ams_scrape_duration_seconds{{{ACCOUNT}}})", "A", BY_ACCOUNT),
        query("vector($scrape_timeout)", "B", "scrape timeout"),
    )
    timeout_line = props(
        {"color": fixed(RED), "custom.lineStyle": {"fill": "dash", "dash": [10, 10]}}
    )
    requests = panel(
        ts.Panel,
        "AMS API requests by status code",
        "Requests to AMS and Azure AD per second, by API and HTTP status.",
        (8, 8),
        query(
            f"sum by (api, code) (rate(ams_api_requests_total{{{ACCOUNT}}}[$__rate_interval]))",
            legend="{{api}} {{code}}",
        ),
    )
    dropped = panel(
        ts.Panel,
        "Dropped jobs (max_jobs)",
        "In-scope jobs left without per-job series because of the max_jobs cap.",
        (4, 8),
        query(f"max by (account) (ams_jobs_dropped{{{ACCOUNT}}})", legend=BY_ACCOUNT),
    )
    versions = stat_panel(
        "Exporter versions",
        "Exporter processes per version (ams_exporter_build_info).",
        (4, 8),
        "count by (version) (ams_exporter_build_info)",
        "{{version}}",
    )
    return [
        row("Exporter"),
        collection.unit("s").min(0).override_by_query("B", timeout_line),
        stacked(requests.unit("reqps").min(0), 30),
        threshold_lines(counts(dropped).min(0), (None, GREEN), (1, RED)),
        counts(versions)
        .color_mode(cm.BigValueColorMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME),
    ]


def job_detail() -> list[Builder[Any]]:
    one_job = 'account=~"$account", job_id="$job_id"'
    states = (
        panel(
            statetimeline.Panel,
            "Job state",
            "The selected job's state over time (pick a job in the tables above).",
            (12, 7),
            query(f"max by (state) (ams_job_state{{{one_job}}}) == 1", legend=BY_STATE),
        )
        .mappings([value_map(("1", "current", None))])
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
    )
    progress = panel(
        ts.Panel,
        "Job and task progress",
        "The selected job's progress and each of its tasks' progress over time.",
        (12, 7),
        query(f"max(ams_job_progress_ratio{{{one_job}}})", "A", "job"),
        query(f"max by (task_name) (ams_task_progress_ratio{{{one_job}}})", "B", "{{task_name}}"),
    )
    return [row("Job detail: $job_id"), state_colour_overrides(states), ratio(progress)]


ROWS = (
    overview,
    states_over_time,
    running_jobs,
    failures,
    durations,
    exporter_health,
    job_detail,
)


# --- Dashboard ----------------------------------------------------------------------------------


def variables() -> list[Builder[dm.VariableModel]]:
    return [
        dash.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(
            dm.VariableOption(selected=True, text="${DS_PROMETHEUS}", value="${DS_PROMETHEUS}")
        ),
        dash.QueryVariable("account")
        .label("Account")
        .datasource(DATASOURCE)
        .query({"query": "label_values(ams_up, account)", "refId": "account"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
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


def external_link(
    title: str, url: str, icon: str, tooltip: str | None = None
) -> dash.DashboardLink:
    """A link in the dashboard's header that opens in a new tab."""
    link = dash.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(url).icon(icon)
    if tooltip is not None:
        link = link.tooltip(tooltip)
    return link.target_blank(True)


def dashboard() -> dash.Dashboard:
    """The dashboard's settings, links, annotation and variables: everything but the panels."""
    builder = (
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
    )
    for variable in variables():
        builder = builder.with_variable(variable)
    return builder


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


def panel_docs(model: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for panel in model["panels"]:
        if panel["type"] == "row":
            lines += [f"## Row: {panel['title']}", ""]
            continue
        lines += [f"### {panel['title']} ({panel['type']})", "", panel.get("description", ""), ""]
        for target in panel["targets"]:
            kind = "instant" if target.get("instant") else "range"
            fmt = ", table" if target.get("format") == "table" else ""
            legend = target.get("legendFormat", "__auto")
            legend_note = f", legend `{legend}`" if legend != "__auto" else ""
            heading = f"Query {target['refId']} ({kind}{fmt}{legend_note}):"
            lines += [heading, "", "```promql", target["expr"], "```", ""]
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
