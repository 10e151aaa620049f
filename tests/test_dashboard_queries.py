"""Every dashboard query against a real Prometheus that scrapes the exporter over the emulator.

Prometheus (tests/support/prom.py) loads the real prometheus/rules.yml and scrapes an in-process exporter
(tests/support/harness.py) every second; the exporter collects from an emulator whose living scenario is
frozen in time (speed 0), so what the panels must show can be derived from the emulator's jobs.
Each panel's PromQL is taken from the committed dashboard JSON, its Grafana variables filled in as
Grafana would, and sent to ``/api/v1/query`` (and ``/api/v1/query_range`` for range queries).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ams_emulator import Emulator
from tests.support.dashboard import DASHBOARD, queries
from tests.support.expected import ACTIVE, STATE_NAMES, ended_at, split_scope
from tests.support.harness import running_exporter
from tests.support.prom import PrometheusServer, running_prometheus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "rules.yml"
ACCOUNT = "dash"
DAY = 86400.0
# The dashboard's time range for the test: the last 12 hours of the emulator's clock.
RANGE_SECONDS = 12 * 3600


@dataclass
class Stack:
    emulator: Emulator
    prometheus: PrometheusServer
    model: dict[str, Any]
    inside: list[Any]  # the emulator's jobs the exporter exports
    now: float  # the emulator's (frozen) clock


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    model = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    with (
        Emulator(jobs=400, seed=7, speed=0) as emulator,
        running_exporter({ACCOUNT: emulator}) as exporter,
    ):
        scrape = {
            "job_name": "ams",
            "static_configs": [{"targets": [exporter.url.removeprefix("http://")]}],
        }
        with running_prometheus([scrape], [RULES]) as prometheus:
            prometheus.wait_for_query(f'ams_up{{account="{ACCOUNT}"}} == 1', timeout=45)
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
    result: dict[str, dict[str, str]] = {}
    for panel in queries.iter_panels(stack.model):
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
