"""Every dashboard query against a real Prometheus that scrapes the exporter over the emulator.

Prometheus (tests/support/prom.py) loads the real prometheus/rules.yml and scrapes an in-process exporter
(tests/support/harness.py) every second; the exporter collects from an emulator whose living scenario is
frozen in time (speed 0), so what the panels must show can be derived from the emulator's jobs.
Each panel's PromQL is taken from the committed dashboard JSON, its Grafana variables filled in as
Grafana would, and sent to ``/api/v1/query`` (and ``/api/v1/query_range`` for range queries).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ams_emulator import Emulator
from ams_emulator.entities import ReservedUnitType
from exporter.config.model import DEFAULT_DURATION_BUCKETS, DEFAULT_QUEUE_WAIT_BUCKETS
from tests.support.dashboard import DASHBOARD, queries
from tests.support.expected import ACTIVE, STATE_NAMES, ended_at, split_scope
from tests.support.harness import running_exporter
from tests.support.prom import PrometheusError, PrometheusServer, running_prometheus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "rules.yml"
ACCOUNT = "dash"
DAY = 86400.0
# The dashboard's time range for the test: the last 12 hours of the emulator's clock.
RANGE_SECONDS = 12 * 3600
# Older than any scrape or rule evaluation still being written (both run every second).
SETTLED_SECONDS = 2.5


@dataclass
class Stack:
    emulator: Emulator
    prometheus: PrometheusServer
    model: dict[str, Any]
    inside: list[Any]  # the emulator's jobs the exporter exports
    now: float  # the emulator's (frozen) clock


def load_model() -> dict[str, Any]:
    model: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return model


@contextlib.contextmanager
def scraped(
    emulator: Emulator,
    per_account: Mapping[str, Any] | None = None,
    scrape_jobs: Sequence[str] = ("ams",),
    prometheus_args: Sequence[str] = (),
) -> Iterator[PrometheusServer]:
    """A Prometheus with the real rules, scraping an exporter of ``emulator`` once per scrape
    job (two stand for the two replicas of an HA pair), until the exporter's first success."""
    with running_exporter({ACCOUNT: emulator}, {ACCOUNT: per_account or {}}) as exporter:
        target = exporter.url.removeprefix("http://")
        scrapes = [
            {"job_name": name, "static_configs": [{"targets": [target]}]} for name in scrape_jobs
        ]
        with running_prometheus(scrapes, [RULES], extra_args=prometheus_args) as prometheus:
            prometheus.wait_for_query(
                f'count(ams_up{{account="{ACCOUNT}"}} == 1) == {len(scrape_jobs)}', timeout=45
            )
            yield prometheus


# A processor Id the account does not list: the exporter names the processor by the Id itself.
UNLISTED_PROCESSOR = "nb:mpid:UUID:0d15ea5e-0000-4000-8000-00000000beef"


def add_jobs_on_several_processors(emulator: Emulator) -> None:
    """A Processing job and a job in Error whose tasks run on several media processors, one of
    them unlisted: the scenario draws few such jobs, and the tables must join their names."""
    listed = {processor.name: processor.id for processor in emulator.media_processors()}
    encoder, indexer = listed["Media Encoder Standard"], listed["Azure Media Indexer"]
    emulator.add_job(
        name="Encode and index trailer 0007",
        state=2,
        tasks=2,
        media_processor_id=[encoder, indexer],
    )
    emulator.add_job(
        name="Index, then encode trailer 0008",
        state=4,
        tasks=3,
        media_processor_id=[indexer, UNLISTED_PROCESSOR, encoder],
        error_code="ErrorProcessingTask",
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    model = load_model()
    with Emulator(jobs=400, seed=7, speed=0) as emulator:
        add_jobs_on_several_processors(emulator)
        with scraped(emulator) as prometheus:
            # Recording rules run after the first scrapes; rate() needs two samples in its window.
            prometheus.wait_for_query(f'account:ams_jobs_active:sum{{account="{ACCOUNT}"}}')
            prometheus.wait_for_query(
                f'rate(ams_api_requests_total{{account="{ACCOUNT}"}}[5s]) > 0', timeout=30
            )
            now = emulator.clock.now().timestamp()
            inside, outside = split_scope(emulator.jobs(), now, DAY)
            assert len(inside) + len(outside) == len(emulator.jobs()), "a job on the window's edge"
            yield Stack(emulator, prometheus, model, inside, now)


def range_start(stack: Stack) -> int:
    """``$__from`` in seconds: 12 hours back, moved off any job's end so no count is ambiguous."""
    start = int(stack.now) - RANGE_SECONDS
    ends = [ended_at(job) for job in stack.inside if job.state not in ACTIVE]
    for _ in range(100):
        if all(abs(end - start) > 60 for end in ends):
            return start
        start -= 61
    pytest.fail("no range start clear of job end times")


def variable_values(stack: Stack, *, account: str, job_id: str) -> dict[str, str]:
    """What Grafana would put in the queries, for a dashboard range of the last 12 hours."""
    start = range_start(stack)
    return {
        "account": account,
        "group": ".*",
        "job_name": ".*",
        "job_id": job_id,
        "scrape_timeout": "15",
        "__range": f"{int(stack.now) - start}s",
        "__rate_interval": "5s",
        "__from:date:seconds": str(start),
    }


def jobs_in(stack: Stack, *states: int) -> list[Any]:
    return [job for job in stack.inside if job.state in states]


def processing_job_id(stack: Stack) -> str:
    processing = jobs_in(stack, 2)
    assert processing, "the scenario has no Processing job"
    return str(sorted(processing, key=lambda job: job.id)[0].id)


def panel_exprs(stack: Stack, values: dict[str, str]) -> dict[str, dict[str, str]]:
    """Panel title → refId → the expression with variables filled in."""
    return exprs_of(stack.model, values)


def exprs_of(model: dict[str, Any], values: dict[str, str]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for panel in queries.iter_panels(model):
        for target in panel.get("targets", []):
            result.setdefault(panel["title"], {})[target["refId"]] = queries.substitute(
                target["expr"], values
            )
    return result


@pytest.mark.parametrize("account", [ACCOUNT, ".*"], ids=["one-account", "all-accounts"])
def test_every_query_evaluates_without_error(stack: Stack, account: str) -> None:
    values = variable_values(stack, account=account, job_id=processing_job_id(stack))
    every = list(queries.iter_queries(stack.model))
    assert len(every) > 25
    end = time.time()
    for query in every:
        expr = queries.substitute(query.expr, values)
        # PrometheusServer.api raises with Prometheus's error message on a bad query.
        stack.prometheus.api("query", query=expr)
        if not query.instant:
            data = stack.prometheus.api(
                "query_range", query=expr, start=str(end - 60), end=str(end), step="5"
            )
            assert data["resultType"] == "matrix", query.where


def test_account_variable_lists_the_account(stack: Stack) -> None:
    (variable,) = [q for q in queries.iter_queries(stack.model) if q.where == "variable account"]
    accounts = stack.prometheus.api("label/account/values", **{"match[]": variable.expr})
    assert accounts == [ACCOUNT]


def value(samples: list[dict[str, Any]]) -> float:
    (sample,) = samples
    return float(sample["value"][1])


def test_overview_stats_show_the_emulator_s_numbers(stack: Stack) -> None:
    prom = stack.prometheus
    exprs = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))
    for state in (0, 1, 2, 6):
        title = f"{STATE_NAMES[state]} now"
        assert value(prom.query(exprs[title]["A"])) == len(jobs_in(stack, state)), title
    start = range_start(stack)
    for state, title in ((4, "Failed in range"), (3, "Finished in range")):
        expected = [job for job in jobs_in(stack, state) if ended_at(job) > start]
        assert expected, f"the scenario has no {STATE_NAMES[state]} job in the last 12 hours"
        assert value(prom.query(exprs[title]["A"])) == len(expected), title
    up = prom.query(exprs["Collection per account"]["A"])
    assert [(s["metric"], float(s["value"][1])) for s in up] == [({"account": ACCOUNT}, 1.0)]
    staleness = value(prom.query(exprs["Last successful collection"]["A"]))
    assert -5 < staleness < 60


def test_states_over_time_have_a_series_per_state(stack: Stack) -> None:
    exprs = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))
    end = time.time()
    data = stack.prometheus.api(
        "query_range",
        query=exprs["Jobs per state"]["A"],
        start=str(end - 30),
        end=str(end),
        step="1",
    )
    states = {series["metric"]["state"] for series in data["result"]}
    assert states == set(STATE_NAMES)
    latest = {s["metric"]["state"]: float(s["values"][-1][1]) for s in data["result"]}
    assert latest == {name: float(len(jobs_in(stack, i))) for i, name in enumerate(STATE_NAMES)}
    active = stack.prometheus.query(exprs["Active jobs per account"]["A"])
    assert value(active) == len(jobs_in(stack, *ACTIVE))


def test_running_jobs_table_lists_the_active_jobs(stack: Stack) -> None:
    exprs = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))["Running jobs"]
    prom = stack.prometheus
    active = {job.id: job for job in jobs_in(stack, *ACTIVE)}
    assert active, "the scenario has no active job"
    rows = prom.query(exprs["A"])
    assert {s["metric"]["job_id"]: s["metric"]["state"] for s in rows} == {
        job_id: STATE_NAMES[job.state] for job_id, job in active.items()
    }
    assert {s["metric"]["job_id"]: s["metric"]["job_name"] for s in rows} == {
        job_id: job.name or "" for job_id, job in active.items()
    }
    for ref in "CDEF":  # age, queued, running, priority: every active job has them
        assert {s["metric"]["job_id"] for s in prom.query(exprs[ref])} == set(active), ref
    priorities = {s["metric"]["job_id"]: float(s["value"][1]) for s in prom.query(exprs["F"])}
    assert priorities == {job_id: float(job.priority) for job_id, job in active.items()}
    progress = {s["metric"]["job_id"] for s in prom.query(exprs["B"])}
    assert {job.id for job in jobs_in(stack, 2)} <= progress <= set(active)


def test_task_progress_shows_every_task_of_processing_jobs(stack: Stack) -> None:
    exprs = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))
    result = stack.prometheus.query(exprs["Task progress of processing jobs"]["A"])
    expected = {
        (job.id, task.id): task.progress / 100.0 for job in jobs_in(stack, 2) for task in job.tasks
    }
    assert expected
    assert {
        (s["metric"]["job_id"], s["metric"]["task_id"]): float(s["value"][1]) for s in result
    } == (expected)


def test_failed_jobs_table_lists_errors_with_codes_and_end_times(stack: Stack) -> None:
    exprs = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))
    failed = jobs_in(stack, 4)
    assert failed, "the scenario has no job in Error"
    rows = stack.prometheus.query(exprs["Failed jobs"]["A"])
    assert {s["metric"]["job_id"] for s in rows} == {job.id for job in failed}
    expected_codes = {
        (job.id, task.id, detail["Code"])
        for job in failed
        for task in job.tasks
        for detail in task.error_details
    }
    shown_codes = {
        (s["metric"]["job_id"], s["metric"]["task_id"], s["metric"]["code"])
        for s in rows
        if "code" in s["metric"]
    }
    assert shown_codes == expected_codes
    ends = {job.id: job.end_time.timestamp() * 1000 for job in failed}
    for sample in rows:
        assert float(sample["value"][1]) == pytest.approx(ends[sample["metric"]["job_id"]], abs=1)


def test_failure_and_duration_panels_have_data(stack: Stack) -> None:
    exprs = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))
    prom = stack.prometheus
    ended = exprs["Jobs ended and failed (1 h window)"]
    assert len(prom.query(ended["A"])) == 1 and len(prom.query(ended["B"])) == 1
    if jobs_in(stack, 0, 1):
        assert value(prom.query(exprs["Oldest queued job"]["A"])) > 0
    assert value(prom.query(exprs["Longest running job"]["A"])) > 0
    # The job name filter ($job_name = .*) must keep names with newlines, which "." alone skips.
    assert any("\n" in (job.name or "") for job in stack.inside), "no multi-line name in scenario"
    queued = prom.query(exprs["Queued durations (in-scope jobs)"]["A"])
    assert {s["metric"]["job_id"] for s in queued} == {job.id for job in stack.inside}
    finished = prom.query(exprs["Running durations of finished jobs"]["A"])
    assert {s["metric"]["job_id"] for s in finished} == {job.id for job in jobs_in(stack, 3)}


def test_exporter_panels_have_data(stack: Stack) -> None:
    exprs = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))
    prom = stack.prometheus
    collection = exprs["Collection duration vs scrape timeout"]
    assert 0 < value(prom.query(collection["A"])) < 15
    assert value(prom.query(collection["B"])) == 15
    requests = prom.query(exprs["AMS API requests by status code"]["A"])
    assert {(s["metric"]["api"], s["metric"]["code"]) for s in requests} >= {("ams", "200")}
    assert value(prom.query(exprs["Dropped jobs (max_jobs)"]["A"])) == 0
    versions = prom.query(exprs["Exporter versions"]["A"])
    assert [float(s["value"][1]) for s in versions] == [1.0]


def test_job_detail_row_follows_the_job_id_variable(stack: Stack) -> None:
    job_id = processing_job_id(stack)
    (job,) = [j for j in stack.inside if j.id == job_id]
    exprs = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=job_id))
    prom = stack.prometheus
    state = prom.query(exprs["Job state"]["A"])
    assert [s["metric"]["state"] for s in state] == ["Processing"]
    progress = exprs["Job and task progress"]
    assert value(prom.query(progress["A"])) == pytest.approx(
        sum(t.progress for t in job.tasks) / (100.0 * len(job.tasks))
    )
    assert {s["metric"]["task_name"] for s in prom.query(progress["B"])} == {
        t.name or "" for t in job.tasks
    }
    # Before a job is picked, the detail row is empty rather than showing every job.
    empty = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))
    assert prom.query(empty["Job state"]["A"]) == []


# --- Encoding capacity and media processors -------------------------------------------------------
# The exporter reads the account's EncodingReservedUnitTypes entity and MediaProcessors set; the
# oracles read the emulator's: its reserved units, its processor list and the processor Ids of the
# jobs' tasks.


def processor_names(emulator: Emulator) -> dict[str, str]:
    """The name of each processor the account lists, by Id (its Id when it has no Name)."""
    return {
        processor.id: processor.name or processor.id for processor in emulator.media_processors()
    }


def processor_of(task: Any, names: Mapping[str, str]) -> str:
    """What ``media_processor`` says of a task: its processor's Name, or the Id if unlisted."""
    return names.get(task.media_processor_id, task.media_processor_id)


def latest_over_time(stack: Stack, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
    """A range query over the last 30 s, as a graph draws it: each series' latest value, by its
    labels other than the name (that of a recorded series)."""
    end = time.time()
    data = stack.prometheus.api(
        "query_range", query=expr, start=str(end - 30), end=str(end), step="1"
    )
    return {
        tuple(sorted((k, v) for k, v in series["metric"].items() if k != "__name__")): float(
            series["values"][-1][1]
        )
        for series in data["result"]
    }


def test_capacity_panels_show_the_emulator_s_reserved_units_and_saturation(stack: Stack) -> None:
    exprs = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))
    prom = stack.prometheus
    units = stack.emulator.reserved_units()
    by_type = {
        (("account", ACCOUNT), ("type", ReservedUnitType(units.reserved_unit_type).name)): float(
            units.current_reserved_units
        )
    }
    most = {(("account", ACCOUNT),): float(units.max_reservable_units)}
    reserved = exprs["Encoding reserved units"]
    assert prom.values(reserved["A"]) == latest_over_time(stack, reserved["A"]) == by_type
    assert prom.values(reserved["B"]) == latest_over_time(stack, reserved["B"]) == most
    processing = len(jobs_in(stack, 2))
    assert processing > 0, "the scenario has no Processing job"
    saturation = exprs["Encoding saturation"]["A"]
    expected = processing / units.current_reserved_units
    assert value(prom.wait_for_query(saturation)) == pytest.approx(expected)
    assert latest_over_time(stack, saturation) == pytest.approx({(("account", ACCOUNT),): expected})


def processors_by_job(samples: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for sample in samples:
        found.setdefault(sample["metric"]["job_id"], set()).add(sample["metric"]["media_processor"])
    return found


@pytest.mark.parametrize(
    ("title", "states"),
    [("Running jobs", (2, 6)), ("Failed jobs", (4,))],
    ids=["running", "failed"],
)
def test_job_tables_list_the_media_processors_of_each_job(
    stack: Stack, title: str, states: tuple[int, ...]
) -> None:
    """The table's processors query (its last) has each of the table's jobs whose tasks are read
    (Processing, Canceling, Error) with the processors of all its tasks, and no other job."""
    (table,) = [p for p in queries.iter_panels(stack.model) if p["title"] == title]
    ref = table["targets"][-1]["refId"]
    expr = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))[title][ref]
    names = processor_names(stack.emulator)
    expected = {
        job.id: {processor_of(task, names) for task in job.tasks} for job in jobs_in(stack, *states)
    }
    assert processors_by_job(stack.prometheus.query(expr)) == expected
    assert any(len(processors) > 1 for processors in expected.values()), "no job on two processors"
    if title == "Failed jobs":
        assert any(UNLISTED_PROCESSOR in processors for processors in expected.values())


def test_a_group_left_join_of_the_processors_fails_on_a_job_with_two(stack: Stack) -> None:
    """Why the tables group the processors in Grafana: joining them to the jobs in PromQL with
    group_left errors as soon as one job's tasks run on two processors."""
    running = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))["Running jobs"]
    processors = f'max by (account, job_id, media_processor) (ams_task_info{{account="{ACCOUNT}"}})'
    joined = f"({running['A']}) * on (account, job_id) group_left (media_processor) {processors}"
    with pytest.raises(PrometheusError, match=r"many-to-many|duplicate series"):
        stack.prometheus.query(joined)


def test_failures_by_media_processor_count_the_tasks_of_jobs_in_error(stack: Stack) -> None:
    expr = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))[
        "Failures by media processor"
    ]["A"]
    names = processor_names(stack.emulator)
    expected = Counter(processor_of(task, names) for job in jobs_in(stack, 4) for task in job.tasks)
    assert UNLISTED_PROCESSOR in expected and len(expected) > 1
    result = stack.prometheus.query(expr)
    assert by_label(result, "media_processor") == {name: float(n) for name, n in expected.items()}
    shown = [float(sample["value"][1]) for sample in result]
    assert shown == sorted(shown, reverse=True)


def clear_of_ends(ends: Sequence[float], window: float) -> float:
    """A Unix time, now or a little later, that is not within 5 s of ``window`` after any end."""
    at = time.time()
    for _ in range(100):
        if all(abs(at - window - end) > 5 for end in ends):
            return at
        at += 11
    pytest.fail("no evaluation time clear of the jobs' end times")


def test_failed_tasks_per_processor_count_the_last_hour_s_failed_tasks(stack: Stack) -> None:
    """The recorded count (1 h window) at a time clear of the window's edge: the tasks with error
    details of the jobs in Error that ended in the hour before, per processor."""
    expr = panel_exprs(stack, variable_values(stack, account=ACCOUNT, job_id=""))[
        "Failed tasks per media processor (1 h window)"
    ]["A"]
    failed = jobs_in(stack, 4)
    at = clear_of_ends([ended_at(job) for job in failed], 3600)
    stack.prometheus.wait_for(
        lambda: time.time() > at + SETTLED_SECONDS or None, what="the evaluation time to pass"
    )
    names = processor_names(stack.emulator)
    expected = Counter(
        processor_of(task, names)
        for job in failed
        if at - 3600 <= ended_at(job)
        for task in job.tasks
        if task.error_details
    )
    assert expected, "no job in Error ended in the last hour"
    shown = stack.prometheus.query(expr, at)
    assert by_label(shown, "media_processor") == {name: float(n) for name, n in expected.items()}
    assert {s["metric"]["account"] for s in shown} == {ACCOUNT}
    assert set(latest_over_time(stack, expr))


# --- The History row ------------------------------------------------------------------------------
# Its counters and histograms count the jobs that end (or start) after the exporter started, so the
# History row gets an emulator of its own: no scenario jobs, nothing arriving, a frozen clock; the
# test adds jobs with chosen durations once Prometheus holds the counters at zero. Two scrape jobs
# of the same exporter stand for an HA pair: every panel must count each job once.

HISTORY_GROUPS = {"ingest": "^ingest-", "encode": "^Encode "}
OTHER_GROUP = "other"
REPLICAS = ("ams", "ams-replica")
# Prometheus keeps the exemplars of OpenMetrics scrapes only with this flag.
EXEMPLAR_STORAGE = "--enable-feature=exemplar-storage"
# Seconds of samples (one a second) Prometheus holds before the jobs end. rate() and increase()
# extrapolate past the last sample by up to 1.1 scrape intervals, here under 3 %: a count read
# through them is off by less than half a job for up to 15 jobs, so rounding gives it exactly.
SAMPLES_BEFORE = 40
# The heatmaps' $__rate_interval in this test: a window over the whole test, so that the rates
# count every job (60 * rate per minute over 10 minutes is ten times the count).
HEATMAP_WINDOW_MINUTES = 10


@dataclass(frozen=True)
class HistoryJob:
    """A job the History test adds: Created ``wait`` before its StartTime, ended (if final) at
    the same moment with a RunningDuration of ``running`` seconds."""

    name: str
    state: int
    running: float | None
    wait: float
    error_code: str | None = None


# At most 15 jobs (see SAMPLES_BEFORE). Each group has an odd number of ended and of started jobs:
# no quantile over a group ranks a whole number of jobs, where the sum of the rates of its states
# (each extrapolated) could tip a tie into either bucket.
HISTORY_JOBS = (
    HistoryJob("ingest-2026-12-01-harbour-1080p.mp4", 3, 45, 3),
    HistoryJob("ingest-2026-12-01-orbit-720p.mov", 4, 250, 20, "ErrorProcessingTask"),
    HistoryJob(
        "ingest-2026-12-01-quartz-480p.ts", 4, 20, 100, "ErrorDownloadingInputAssetServiceFailure"
    ),
    HistoryJob("Encode harbour 001 to Adaptive Streaming", 3, 900, 400),
    HistoryJob("Encode orbit 002 to Adaptive Streaming", 4, 100, 2, "ErrorProcessingTask"),
    HistoryJob("Encode quartz 003 to Adaptive Streaming", 5, 500, 50),
    HistoryJob("Encode meadow 004 to Adaptive Streaming", 2, None, 8),
    HistoryJob("Encode meadow 005 to Adaptive Streaming", 2, None, 1000),
    HistoryJob("promo-0042-2160p", 3, 5000, 7000),
    HistoryJob("promo-0043-1080p", 3, 15000, 60),
    HistoryJob("promo-0044-720p", 5, 5, 0.5),
)


@dataclass
class HistoryStack:
    emulator: Emulator
    prometheus: PrometheusServer
    model: dict[str, Any]
    jobs: list[Any]  # the emulator's copies of the jobs added, as it serves them


def group_yaml() -> str:
    """``jobs.groups`` as a YAML flow sequence (the config text writes a string as it is)."""
    items = (f"{{name: {name}, name_regex: '{regex}'}}" for name, regex in HISTORY_GROUPS.items())
    return f"[{', '.join(items)}]"


def group_of(job: Any) -> str:
    """The group a job's Name puts it in, by the configuration's rule (the first match)."""
    for name, regex in HISTORY_GROUPS.items():
        if re.search(regex, job.name or ""):
            return name
    return OTHER_GROUP


@pytest.fixture(scope="module")
def history() -> Iterator[HistoryStack]:
    with (
        Emulator(jobs=0, arrivals_per_hour=0, seed=3, speed=0) as emulator,
        scraped(
            emulator, {"jobs": {"groups": group_yaml()}}, REPLICAS, [EXEMPLAR_STORAGE]
        ) as prometheus,
    ):
        series = len(REPLICAS) * (len(HISTORY_GROUPS) + 1) * 3
        prometheus.wait_for_query(
            f'count(ams_jobs_ended_total{{account="{ACCOUNT}"}} == 0) == {series}'
        )
        prometheus.wait_for_query(
            f'count_over_time(ams_up{{account="{ACCOUNT}", job="{REPLICAS[0]}"}}[1m])'
            f" >= {SAMPLES_BEFORE}",
            timeout=SAMPLES_BEFORE + 30,
        )
        # The exporter counts the jobs that end after it started: move the frozen clock to now.
        emulator.clock.set(datetime.now(timezone.utc))
        now = emulator.clock.now()
        added = [
            emulator.add_job(
                name=job.name,
                state=job.state,
                created=now - timedelta(seconds=job.wait),
                start_time=now,
                end_time=now if job.running is not None else None,
                running_duration_ms=None if job.running is None else job.running * 1000,
                error_code=job.error_code,
            )
            for job in HISTORY_JOBS
        ]
        jobs = [job for job in emulator.jobs() if job.id in set(added)]
        assert len(jobs) == len(HISTORY_JOBS) <= 15
        final = [job for job in jobs if job.state in (3, 4, 5)]
        codes = sum(len(error_codes(job)) for job in final)
        for name, total in (
            ("ams_jobs_ended_total", len(final)),
            ("ams_job_errors_total", codes),
            ("ams_job_queue_wait_seconds_count", len(jobs)),
        ):
            prometheus.wait_for_query(
                f'count(sum by (job) ({name}{{account="{ACCOUNT}"}}) == {total}) == {len(REPLICAS)}'
            )
        # Most panels read recording rules: wait for an evaluation over the complete counts.
        complete = time.time()
        prometheus.wait_for_query(
            "min(timestamp(account_group_state:ams_jobs_ended:increase1h"
            f'{{account="{ACCOUNT}"}})) > {complete}'
        )
        yield HistoryStack(emulator, prometheus, load_model(), jobs)


def error_codes(job: Any) -> set[str]:
    """The ErrorDetails codes of a job's tasks (a job counts each of its codes once)."""
    return {detail["Code"] for task in job.tasks for detail in task.error_details}


def ended(stack: HistoryStack) -> list[Any]:
    return [job for job in stack.jobs if job.state in (3, 4, 5)]


def duration(job: Any) -> float:
    return float(job.running_duration_ms) / 1000.0


def queue_wait(job: Any) -> float:
    return float((job.start_time - job.created).total_seconds())


def history_exprs(stack: HistoryStack, **values: str) -> dict[str, dict[str, str]]:
    """Every panel's expressions for the last hour, all groups unless ``values`` say otherwise."""
    defaults = {
        "account": ACCOUNT,
        "group": ".*",
        "job_name": ".*",
        "job_id": "",
        "scrape_timeout": "15",
        "__range": "1h",
        "__rate_interval": f"{HEATMAP_WINDOW_MINUTES}m",
        "__from:date:seconds": str(int(time.time()) - 3600),
    }
    return exprs_of(stack.model, {**defaults, **values})


def by_label(samples: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {s["metric"][label]: float(s["value"][1]) for s in samples}


def whole(values: Mapping[str, float]) -> dict[str, int]:
    """Counts read through increase(), which extrapolates a little past the last sample."""
    return {key: round(value) for key, value in values.items()}


def test_group_variable_lists_the_configured_groups_and_other(history: HistoryStack) -> None:
    (variable,) = [q for q in queries.iter_queries(history.model) if q.where == "variable group"]
    selector = queries.substitute(variable.expr, {"account": ACCOUNT})
    groups = history.prometheus.api("label/group/values", **{"match[]": selector})
    assert groups == sorted([*HISTORY_GROUPS, OTHER_GROUP])


def test_jobs_ended_per_hour_counts_each_job_once_per_state(history: HistoryStack) -> None:
    panel = history_exprs(history)["Jobs ended per hour by state"]
    shown = whole(by_label(history.prometheus.query(panel["A"]), "state"))
    expected = Counter(STATE_NAMES[job.state] for job in ended(history))
    assert shown == {state: expected[state] for state in ("Finished", "Error", "Canceled")}
    # One group alone, through the group variable.
    alone = history_exprs(history, group="ingest")["Jobs ended per hour by state"]["A"]
    in_group = Counter(STATE_NAMES[j.state] for j in ended(history) if group_of(j) == "ingest")
    shown_alone = whole(by_label(history.prometheus.query(alone), "state"))
    assert {k: v for k, v in shown_alone.items() if v} == dict(in_group)


def test_error_ratio_by_group_is_failed_over_ended(history: HistoryStack) -> None:
    panel = history_exprs(history)["Error ratio by group (1 h window)"]
    shown = by_label(history.prometheus.query(panel["A"]), "group")
    groups = {group_of(job) for job in ended(history)}
    expected = {
        group: sum(1 for j in ended(history) if group_of(j) == group and j.state == 4)
        / sum(1 for j in ended(history) if group_of(j) == group)
        for group in groups
    }
    assert shown == pytest.approx(expected, abs=0.02)
    assert 0 in expected.values() and max(expected.values()) > 0.5


def test_top_error_codes_rank_the_codes_of_failed_jobs(history: HistoryStack) -> None:
    panel = history_exprs(history)["Top error codes"]
    result = history.prometheus.query(panel["A"])
    expected = Counter(code for job in ended(history) for code in error_codes(job))
    assert len(expected) > 1
    assert whole(by_label(result, "code")) == dict(expected)
    assert [s["metric"]["code"] for s in result] == [code for code, _ in expected.most_common()]


def cumulative(values: Sequence[float], bounds: Sequence[float]) -> dict[float, int]:
    """Cumulative bucket counts by upper bound, +Inf included."""
    return {bound: sum(1 for v in values if v <= bound) for bound in (*bounds, math.inf)}


@pytest.mark.parametrize(
    ("title", "bounds", "observed"),
    [
        ("Job duration heatmap", DEFAULT_DURATION_BUCKETS, "ended"),
        ("Queue wait heatmap", DEFAULT_QUEUE_WAIT_BUCKETS, "started"),
    ],
)
def test_heatmaps_count_the_jobs_per_bucket(
    history: HistoryStack, title: str, bounds: tuple[float, ...], observed: str
) -> None:
    expr = history_exprs(history)[title]["A"]
    per_minute = by_label(history.prometheus.query(expr), "le")
    counts = {float(le): round(value * HEATMAP_WINDOW_MINUTES) for le, value in per_minute.items()}
    values = (
        [duration(job) for job in ended(history)]
        if observed == "ended"
        else [queue_wait(job) for job in history.jobs]
    )
    assert counts == cumulative(values, bounds)
    # Over time too, one series per bucket, as the heatmap draws them.
    end = time.time()
    data = history.prometheus.api(
        "query_range", query=expr, start=str(end - 30), end=str(end), step="5"
    )
    assert {float(s["metric"]["le"]) for s in data["result"]} == set(counts)


def bucket_of(value: float, bounds: Sequence[float]) -> float:
    """The upper bound of the bucket ``value`` falls in (``le``: a bound holds its own value)."""
    return next((bound for bound in bounds if value <= bound), math.inf)


@pytest.mark.parametrize(
    ("title", "bounds", "observed", "labels"),
    [
        ("Job duration heatmap", DEFAULT_DURATION_BUCKETS, "ended", ("group", "state")),
        ("Queue wait heatmap", DEFAULT_QUEUE_WAIT_BUCKETS, "started", ("group",)),
    ],
    ids=["duration", "queue-wait"],
)
def test_heatmap_exemplars_name_a_job_of_each_bucket(
    history: HistoryStack,
    title: str,
    bounds: tuple[float, ...],
    observed: str,
    labels: tuple[str, ...],
) -> None:
    """What Grafana asks for a heatmap's exemplars: its query, sent to /api/v1/query_exemplars.
    Each exemplar is a job of that series and bucket, with its value; every bucket of a series
    that holds jobs has one (the latest of them)."""
    expr = history_exprs(history)[title]["A"]
    jobs = ended(history) if observed == "ended" else history.jobs
    measure = duration if observed == "ended" else queue_wait
    by_id = {job.id: job for job in jobs}
    end = time.time()
    found = history.prometheus.api(
        "query_exemplars", query=expr, start=str(end - 3600), end=str(end)
    )
    cells = set()
    for series in found:
        cell = (*(series["seriesLabels"][label] for label in labels), series["seriesLabels"]["le"])
        for exemplar in series["exemplars"]:
            job = by_id[exemplar["labels"]["job_id"]]
            value = measure(job)
            assert float(exemplar["value"]) == pytest.approx(value), exemplar
            assert float(cell[-1]) == bucket_of(value, bounds), (cell, value)
            assert cell[:-1] == tuple(history_labels(job)[label] for label in labels)
            cells.add((*cell[:-1], bucket_of(value, bounds)))
    assert cells == {
        (*(history_labels(job)[label] for label in labels), bucket_of(measure(job), bounds))
        for job in jobs
    }


def quantile_bucket(
    values: Sequence[float], bounds: Sequence[float], q: float
) -> tuple[float, float]:
    """The bucket histogram_quantile interpolates in: the first whose cumulative count reaches
    ``q`` of the observations (a quantile in +Inf is the highest finite bound)."""
    rank = q * len(values)
    lower = 0.0
    for bound in bounds:
        if sum(1 for v in values if v <= bound) >= rank:
            return lower, bound
        lower = bound
    return bounds[-1], bounds[-1]


def history_labels(job: Any) -> dict[str, str]:
    """The labels a job's history series carry, by the configuration's rules."""
    return {"group": group_of(job), "state": STATE_NAMES[job.state]}


@pytest.mark.parametrize(
    ("title", "bounds", "observed", "labels"),
    [
        (
            "Job duration p50 / p95 by group (1 h window)",
            DEFAULT_DURATION_BUCKETS,
            "ended",
            ("group",),
        ),
        (
            "Job duration p50 / p95 by final state (1 h window)",
            DEFAULT_DURATION_BUCKETS,
            "ended",
            ("group", "state"),
        ),
        (
            "Queue wait p50 / p95 by group (1 h window)",
            DEFAULT_QUEUE_WAIT_BUCKETS,
            "started",
            ("group",),
        ),
    ],
    ids=["duration", "duration-per-state", "queue-wait"],
)
def test_quantiles_fall_in_the_buckets_of_the_jobs_values(
    history: HistoryStack,
    title: str,
    bounds: tuple[float, ...],
    observed: str,
    labels: tuple[str, ...],
) -> None:
    panel = history_exprs(history)[title]
    jobs = ended(history) if observed == "ended" else history.jobs
    measure = duration if observed == "ended" else queue_wait

    def key(job: Any) -> tuple[str, ...]:
        return tuple(history_labels(job)[label] for label in labels)

    for ref, q in (("A", 0.5), ("B", 0.95)):
        shown = {
            tuple(s["metric"][label] for label in labels): float(s["value"][1])
            for s in history.prometheus.query(panel[ref])
        }
        assert set(shown) == {key(job) for job in jobs}, ref
        for series, value in shown.items():
            values = [measure(job) for job in jobs if key(job) == series]
            lower, upper = quantile_bucket(values, bounds, q)
            assert lower <= value <= upper, (ref, series, values)
