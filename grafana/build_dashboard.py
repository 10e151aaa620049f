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
from pathlib import Path
from typing import Any

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
from exporter.web.status_page import STATE_COLOURS

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "grafana" / "dashboards" / "ams-jobs.json"
DOCS = ROOT / "docs" / "dashboard.md"
UID = "ams-jobs"
TITLE = "Azure Media Services jobs"
# Where users read the runbooks; the dashboard links there (Grafana cannot open a relative path).
REPOSITORY_URL = "https://github.com/ams-exporter/ams-exporter"
RUNBOOKS_URL = f"{REPOSITORY_URL}/blob/main/docs/runbooks.md"
GRAFANA_VERSION = "11.6.0"

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
ACCOUNT = 'account=~"$account"'
# (?s): a job name may contain newlines, which a plain "." does not match in Prometheus 2.
JOBS = 'account=~"$account", job_name=~"(?s:$job_name)"'
ACTIVE = "Queued|Scheduled|Processing|Canceling"
GREEN, ORANGE, RED = "green", "orange", "red"
# Stat and bar gauge panels show each series' latest value (the queries are instant).
LAST_VALUE = common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
# The annotation query's step; its expression compares each step with the one before.
ANNOTATION_STEP = "1m"
ERROR_ANNOTATION = "Jobs entering Error"


def in_state(states: str) -> str:
    """PromQL: the (account, job_id) pairs of the filtered jobs now in one of ``states``."""
    return f'(max by (account, job_id) (ams_job_state{{{JOBS}, state=~"{states}"}}) == 1)'


def per_job(metric: str) -> str:
    """PromQL: one series per job of ``metric``, duplicates from HA scrapes collapsed."""
    return f"max by (account, job_id) ({metric}{{{JOBS}}})"


def query(expr: str, ref: str = "A", legend: str = "__auto", *, instant: bool = False) -> Any:
    q = prom.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE).legend_format(legend)
    return q.instant() if instant else q.range()


def table_query(expr: str, ref: str) -> Any:
    return query(expr, ref, instant=True).format(pm.PromQueryFormat.TABLE)


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=colour) for value, colour in steps])
    )


def state_mapping() -> dm.ValueMap:
    """State names with the status page's colours (Error red, Finished green, Processing blue ...)."""
    return dm.ValueMap(
        options={
            state.label: dm.ValueMappingResult(
                text=state.label, color=STATE_COLOURS[state], index=i
            )
            for i, state in enumerate(JobState)
        }
    )


def state_colour_overrides(panel: Any) -> Any:
    """Colours series named after a state (legend ``{{state}}``) like the status page does."""
    for state in JobState:
        panel = panel.override_by_name(
            state.label,
            [
                dm.DynamicConfigValue(
                    id_val="color", value={"mode": "fixed", "fixedColor": STATE_COLOURS[state]}
                )
            ],
        )
    return panel


def row(title: str) -> dash.Row:
    return dash.Row(title).collapsed(False).datasource(DATASOURCE)


def state_stat(state: JobState) -> stat.Panel:
    return (
        stat.Panel()
        .reduce_options(LAST_VALUE)
        .title(f"{state.label} now")
        .description(f"In-scope jobs now in state {state.label}, over the selected accounts.")
        .datasource(DATASOURCE)
        .span(2)
        .height(5)
        .with_target(
            query(
                f'sum(account_state:ams_jobs:max{{{ACCOUNT}, state="{state.label}"}})',
                legend=state.label,
                instant=True,
            )
        )
        .unit("short")
        .decimals(0)
        .color_scheme(
            dash.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(STATE_COLOURS[state])
        )
        .color_mode(cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.NONE)
    )


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


def ended_stat(state: JobState, title: str) -> stat.Panel:
    return (
        stat.Panel()
        .reduce_options(LAST_VALUE)
        .title(title)
        .description(
            f"Jobs (name filter applied) that ended in {state.label} within the selected time range."
        )
        .datasource(DATASOURCE)
        .span(3)
        .height(5)
        .with_target(query(ended_in_range(state), legend=state.label, instant=True))
        .unit("short")
        .decimals(0)
        .color_scheme(
            dash.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(STATE_COLOURS[state])
        )
        .color_mode(cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.NONE)
    )


def overview() -> list[Builder[Any]]:
    up = (
        stat.Panel()
        .reduce_options(LAST_VALUE)
        .title("Collection per account")
        .description(
            "ams_up: 1 when the exporter's last collection of the account fully succeeded."
        )
        .datasource(DATASOURCE)
        .span(5)
        .height(5)
        .with_target(
            query(f"max by (account) (ams_up{{{ACCOUNT}}})", legend="{{account}}", instant=True)
        )
        .mappings(
            [
                dm.ValueMap(
                    options={
                        "0": dm.ValueMappingResult(text="DOWN", color=RED, index=0),
                        "1": dm.ValueMappingResult(text="UP", color=GREEN, index=1),
                    }
                )
            ]
        )
        .thresholds(thresholds((None, RED), (1, GREEN)))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
    )
    staleness = (
        stat.Panel()
        .reduce_options(LAST_VALUE)
        .title("Last successful collection")
        .description("Seconds since the newest successful collection of each account.")
        .datasource(DATASOURCE)
        .span(5)
        .height(5)
        .with_target(
            query(
                f"account:ams_collection_staleness_seconds:max{{{ACCOUNT}}}",
                legend="{{account}}",
                instant=True,
            )
        )
        .unit("s")
        .decimals(0)
        .thresholds(thresholds((None, GREEN), (180, ORANGE), (900, RED)))
        .color_mode(cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
    )
    return [
        row("Overview"),
        *(
            state_stat(s)
            for s in (JobState.QUEUED, JobState.SCHEDULED, JobState.PROCESSING, JobState.CANCELING)
        ),
        ended_stat(JobState.ERROR, "Failed in range"),
        ended_stat(JobState.FINISHED, "Finished in range"),
        up,
        staleness,
    ]


def states_over_time() -> list[Builder[Any]]:
    states = (
        ts.Panel()
        .title("Jobs per state")
        .description("In-scope jobs per state (ams_jobs), stacked, over the selected accounts.")
        .datasource(DATASOURCE)
        .span(16)
        .height(8)
        .with_target(
            query(f"sum by (state) (account_state:ams_jobs:max{{{ACCOUNT}}})", legend="{{state}}")
        )
        .unit("short")
        .decimals(0)
        .min(0)
        .fill_opacity(40)
        .stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL))
    )
    active = (
        ts.Panel()
        .title("Active jobs per account")
        .description("Jobs not yet final (Queued, Scheduled, Processing, Canceling) per account.")
        .datasource(DATASOURCE)
        .span(8)
        .height(8)
        .with_target(query(f"account:ams_jobs_active:sum{{{ACCOUNT}}}", legend="{{account}}"))
        .unit("short")
        .decimals(0)
        .min(0)
    )
    return [row("Jobs over time"), state_colour_overrides(states), active]


def detail_link() -> dash.DashboardLink:
    return dash.DashboardLink("Show this job's detail").url(
        f"/d/{UID}/ams-jobs?${{__url_time_range}}&${{datasource:queryparam}}"
        "&${account:queryparam}&var-job_id=${__data.fields.job_id}"
    )


def running_jobs() -> list[Builder[Any]]:
    active = in_state(ACTIVE)
    columns = [
        ("B", "ams_job_progress_ratio", "Progress"),
        ("C", "ams_job_age_seconds", "Age"),
        ("D", "ams_job_queued_duration_seconds", "Queued"),
        ("E", "ams_job_running_duration_seconds", "Running"),
        ("F", "ams_job_priority", "Priority"),
    ]
    jobs_table = (
        table.Panel()
        .title("Running jobs")
        .description(
            "Jobs not yet final, longest running first. Click a name for the job's detail below."
        )
        .datasource(DATASOURCE)
        .span(24)
        .height(10)
        .with_target(
            table_query(
                f'max by (account, job_id, job_name, state) (ams_job_state{{{JOBS}, state=~"{ACTIVE}"}}) == 1',
                "A",
            )
        )
    )
    for ref, metric, _ in columns:
        jobs_table = jobs_table.with_target(
            table_query(f"{per_job(metric)} and on (account, job_id) {active}", ref)
        )
    jobs_table = (
        jobs_table.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "Value #A": True},
                    "indexByName": {
                        "job_name": 0,
                        "account": 1,
                        "state": 2,
                        **{f"Value #{ref}": 3 + i for i, (ref, _, _) in enumerate(columns)},
                        "job_id": 3 + len(columns),
                    },
                    "renameByName": {
                        "job_name": "Name",
                        "account": "Account",
                        "state": "State",
                        **{f"Value #{ref}": title for ref, _, title in columns},
                    },
                },
            )
        )
        .sort_by([common.TableSortByFieldState().display_name("Running").desc(True)])
        .filterable(True)
        .override_by_name(
            "State",
            [
                dm.DynamicConfigValue(id_val="mappings", value=[state_mapping()]),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        )
        .override_by_name(
            "Progress",
            [
                dm.DynamicConfigValue(id_val="unit", value="percentunit"),
                dm.DynamicConfigValue(id_val="min", value=0),
                dm.DynamicConfigValue(id_val="max", value=1),
                dm.DynamicConfigValue(id_val="decimals", value=0),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "gauge", "mode": "basic"}
                ),
                dm.DynamicConfigValue(
                    id_val="color",
                    value={"mode": "fixed", "fixedColor": STATE_COLOURS[JobState.PROCESSING]},
                ),
            ],
        )
        .override_by_regexp(
            "Age|Queued|Running",
            [
                dm.DynamicConfigValue(id_val="unit", value="s"),
                dm.DynamicConfigValue(id_val="decimals", value=0),
            ],
        )
        .override_by_name("Priority", [dm.DynamicConfigValue(id_val="decimals", value=0)])
        .override_by_name(
            "Name",
            [dm.DynamicConfigValue(id_val="links", value=[detail_link().build()])],
        )
    )
    tasks = (
        bargauge.Panel()
        .reduce_options(LAST_VALUE)
        .title("Task progress of processing jobs")
        .description("ams_task_progress_ratio of every task of the jobs now Processing.")
        .datasource(DATASOURCE)
        .span(24)
        .height(8)
        .with_target(
            query(
                "max by (account, job_id, job_name, task_id, task_name) "
                f"(ams_task_progress_ratio{{{JOBS}}}) and on (account, job_id) "
                f"{in_state(JobState.PROCESSING.label)}",
                legend="{{job_name}} / {{task_name}}",
                instant=True,
            )
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .decimals(0)
        .thresholds(thresholds((None, STATE_COLOURS[JobState.PROCESSING])))
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL)
    )
    return [row("Jobs in progress"), jobs_table, tasks]


def failures() -> list[Builder[Any]]:
    end_ms = f"{per_job('ams_job_end_timestamp_seconds')} * 1000"
    failed = (
        table.Panel()
        .title("Failed jobs")
        .description(
            "Jobs in Error still in the exporter's finished window: one row per task error code, "
            "with the job's end time."
        )
        .datasource(DATASOURCE)
        .span(12)
        .height(9)
        .with_target(
            table_query(
                "max by (account, job_id, job_name, task_id, code) "
                f"(ams_job_error_info{{{JOBS}}}) * on (account, job_id) group_left () ({end_ms})"
                f" or on (account, job_id) ({end_ms} and on (account, job_id) "
                f"{in_state(JobState.ERROR.label)})",
                "A",
            )
        )
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "indexByName": {
                        "job_name": 0,
                        "account": 1,
                        "code": 2,
                        "task_id": 3,
                        "Value": 4,
                        "job_id": 5,
                    },
                    "renameByName": {
                        "job_name": "Name",
                        "account": "Account",
                        "code": "Error code",
                        "task_id": "Task",
                        "Value": "Ended",
                    },
                },
            )
        )
        .sort_by([common.TableSortByFieldState().display_name("Ended").desc(True)])
        .filterable(True)
        .override_by_name("Ended", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
        .override_by_name(
            "Error code",
            [
                dm.DynamicConfigValue(
                    id_val="color",
                    value={"mode": "fixed", "fixedColor": STATE_COLOURS[JobState.ERROR]},
                ),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            ],
        )
        .override_by_name(
            "Name",
            [dm.DynamicConfigValue(id_val="links", value=[detail_link().build()])],
        )
    )
    ratio = (
        ts.Panel()
        .title("Error ratio (1 h window)")
        .description(
            "Failed ÷ ended jobs over the last hour, per account (account:ams_job_errors:ratio1h)."
        )
        .datasource(DATASOURCE)
        .span(6)
        .height(9)
        .with_target(query(f"account:ams_job_errors:ratio1h{{{ACCOUNT}}}", legend="{{account}}"))
        .unit("percentunit")
        .min(0)
        .max(1)
        .decimals(1)
        .thresholds(thresholds((None, GREEN), (0.2, RED)))
        .thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
        )
    )
    ended = (
        ts.Panel()
        .title("Jobs ended and failed (1 h window)")
        .description("Jobs that reached a final state, and those in Error, within the last hour.")
        .datasource(DATASOURCE)
        .span(6)
        .height(9)
        .with_target(
            query(f"account:ams_jobs_ended:count1h{{{ACCOUNT}}}", "A", "{{account}} ended")
        )
        .with_target(
            query(f"account:ams_jobs_failed:count1h{{{ACCOUNT}}}", "B", "{{account}} failed")
        )
        .unit("short")
        .decimals(0)
        .min(0)
        .override_by_query(
            "B",
            [
                dm.DynamicConfigValue(
                    id_val="color",
                    value={"mode": "fixed", "fixedColor": STATE_COLOURS[JobState.ERROR]},
                )
            ],
        )
    )
    return [row("Failures"), failed, ratio, ended]


def _longest_per_account(title: str, description: str, record: str) -> ts.Panel:
    """A time series of one per-account duration recording rule, in seconds."""
    return (
        ts.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(6)
        .height(8)
        .with_target(query(f"{record}{{{ACCOUNT}}}", legend="{{account}}"))
        .unit("s")
        .min(0)
        .decimals(0)
    )


def durations() -> list[Builder[Any]]:
    oldest = _longest_per_account(
        "Oldest queued job",
        "Longest wait among jobs now Queued or Scheduled, per account.",
        "account:ams_oldest_queued_job_age_seconds:max",
    )
    longest = _longest_per_account(
        "Longest running job",
        "Longest running time among jobs now Processing, per account.",
        "account:ams_job_running_duration_seconds:max",
    )
    queued = (
        histogram.Panel()
        .title("Queued durations (in-scope jobs)")
        .description("Distribution of ams_job_queued_duration_seconds over the filtered jobs, now.")
        .datasource(DATASOURCE)
        .span(6)
        .height(8)
        .with_target(
            query(per_job("ams_job_queued_duration_seconds"), legend="{{job_id}}", instant=True)
        )
        .combine(True)
        .unit("s")
        .fill_opacity(80)
        .color_scheme(
            dash.FieldColor()
            .mode(dm.FieldColorModeId.FIXED)
            .fixed_color(STATE_COLOURS[JobState.QUEUED])
        )
    )
    running = (
        histogram.Panel()
        .title("Running durations of finished jobs")
        .description(
            "Distribution of ams_job_running_duration_seconds over the filtered Finished jobs."
        )
        .datasource(DATASOURCE)
        .span(6)
        .height(8)
        .with_target(
            query(
                f"{per_job('ams_job_running_duration_seconds')} and on (account, job_id) "
                f"{in_state(JobState.FINISHED.label)}",
                legend="{{job_id}}",
                instant=True,
            )
        )
        .combine(True)
        .unit("s")
        .fill_opacity(80)
        .color_scheme(
            dash.FieldColor()
            .mode(dm.FieldColorModeId.FIXED)
            .fixed_color(STATE_COLOURS[JobState.FINISHED])
        )
    )
    return [row("Queue wait and durations"), oldest, longest, queued, running]


def exporter_health() -> list[Builder[Any]]:
    collection = (
        ts.Panel()
        .title("Collection duration vs scrape timeout")
        .description(
            "How long each account's collection took (ams_scrape_duration_seconds) against the "
            "Prometheus scrape timeout set in the dashboard variable."
        )
        .datasource(DATASOURCE)
        .span(8)
        .height(8)
        .with_target(
            query(
                f"max by (account) (ams_scrape_duration_seconds{{{ACCOUNT}}})", "A", "{{account}}"
            )
        )
        .with_target(query("vector($scrape_timeout)", "B", "scrape timeout"))
        .unit("s")
        .min(0)
        .override_by_query(
            "B",
            [
                dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": RED}),
                dm.DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                ),
            ],
        )
    )
    requests = (
        ts.Panel()
        .title("AMS API requests by status code")
        .description("Requests to AMS and Azure AD per second, by API and HTTP status.")
        .datasource(DATASOURCE)
        .span(8)
        .height(8)
        .with_target(
            query(
                f"sum by (api, code) (rate(ams_api_requests_total{{{ACCOUNT}}}[$__rate_interval]))",
                legend="{{api}} {{code}}",
            )
        )
        .unit("reqps")
        .min(0)
        .fill_opacity(30)
        .stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL))
    )
    dropped = (
        ts.Panel()
        .title("Dropped jobs (max_jobs)")
        .description("In-scope jobs left without per-job series because of the max_jobs cap.")
        .datasource(DATASOURCE)
        .span(4)
        .height(8)
        .with_target(
            query(f"max by (account) (ams_jobs_dropped{{{ACCOUNT}}})", legend="{{account}}")
        )
        .unit("short")
        .decimals(0)
        .min(0)
        .thresholds(thresholds((None, GREEN), (1, RED)))
        .thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
        )
    )
    version = (
        stat.Panel()
        .reduce_options(LAST_VALUE)
        .title("Exporter versions")
        .description("Exporter processes per version (ams_exporter_build_info).")
        .datasource(DATASOURCE)
        .span(4)
        .height(8)
        .with_target(
            query(
                "count by (version) (ams_exporter_build_info)", legend="{{version}}", instant=True
            )
        )
        .unit("short")
        .decimals(0)
        .color_mode(cm.BigValueColorMode.NONE)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
    )
    return [row("Exporter"), collection, requests, dropped, version]


def job_detail() -> list[Builder[Any]]:
    one_job = 'account=~"$account", job_id="$job_id"'
    states = (
        statetimeline.Panel()
        .title("Job state")
        .description("The selected job's state over time (pick a job in the tables above).")
        .datasource(DATASOURCE)
        .span(12)
        .height(7)
        .with_target(query(f"max by (state) (ams_job_state{{{one_job}}}) == 1", legend="{{state}}"))
        .mappings([dm.ValueMap(options={"1": dm.ValueMappingResult(text="current", index=0)})])
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
    )
    progress = (
        ts.Panel()
        .title("Job and task progress")
        .description("The selected job's progress and each of its tasks' progress over time.")
        .datasource(DATASOURCE)
        .span(12)
        .height(7)
        .with_target(query(f"max(ams_job_progress_ratio{{{one_job}}})", "A", "job"))
        .with_target(
            query(
                f"max by (task_name) (ams_task_progress_ratio{{{one_job}}})", "B", "{{task_name}}"
            )
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .decimals(0)
    )
    return [row("Job detail: $job_id"), state_colour_overrides(states), progress]


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
    was not 1 at its last sample in the hour up to the previous step (ANNOTATION_STEP before). Looking back over the hour rather than at the single previous step keeps the mark from
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


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
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
            dash.DashboardLink("Runbooks")
            .type(dm.DashboardLinkType.LINK)
            .url(RUNBOOKS_URL)
            .icon("doc")
            .tooltip("What each alert means and what to do")
            .target_blank(True)
        )
        .link(
            dash.DashboardLink("Metric reference")
            .type(dm.DashboardLinkType.LINK)
            .url(f"{REPOSITORY_URL}/blob/main/docs/metrics.md")
            .icon("info")
            .target_blank(True)
        )
        .annotation(error_annotation())
    )
    for variable in variables():
        builder = builder.with_variable(variable)
    panel_id = 0
    for section in (
        overview,
        states_over_time,
        running_jobs,
        failures,
        durations,
        exporter_health,
        job_detail,
    ):
        for item in section():
            panel_id += 1
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
            *(
                {"type": "panel", "id": kind, "name": kind, "version": ""}
                for kind in sorted({p["type"] for p in model["panels"] if p["type"] != "row"})
            ),
        ],
        "id": None,
        **model,
    }


def render() -> str:
    """The JSON text as committed: stable key order, two-space indent, final newline."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


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
        "## Variables",
        "",
        "| variable | kind | meaning |",
        "|---|---|---|",
    ]
    for variable in model["templating"]["list"]:
        meaning = variable.get("description") or variable.get("label", "")
        if variable["type"] == "query":
            meaning = (
                f"{variable['label']}: values of `{variable['query']['query']}`, multi, All = `.*`"
            )
        elif variable["type"] == "datasource":
            meaning = "Prometheus datasource; the import dialog fills it in (`DS_PROMETHEUS`)"
        lines.append(f"| `${variable['name']}` | {variable['type']} | {meaning} |")
    lines += ["", "## Annotations", ""]
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
            lines += [
                f"Query {target['refId']} ({kind}{fmt}{legend_note}):",
                "",
                "```promql",
                target["expr"],
                "```",
                "",
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
