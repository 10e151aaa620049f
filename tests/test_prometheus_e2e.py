"""End to end: a real Prometheus scrapes a real exporter that collects from the AMS emulator.

Prometheus (tests/support/prom.py) loads the real prometheus/rules.yml and prometheus/alerts.yml, scrapes
and evaluates every second; the exporter is served in-process on loopback (tests/support/harness.py) and
collects over HTTPS from an emulator whose clock is frozen, so what Prometheus stores is what the
emulator's state implies. Everything is read back through Prometheus's HTTP API.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ams_emulator import Emulator, Fault
from tests.support.expected import ACTIVE, STATE_NAMES, ExpectedJob, split_scope
from tests.support.harness import RunningExporter, running_exporter
from tests.support.prom import PrometheusServer, running_prometheus

pytestmark = pytest.mark.e2e

ACCOUNT = "e2e"
ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "rules.yml"
ALERTS = ROOT / "prometheus" / "alerts.yml"
DAY = 86400.0
# Older than any scrape still being written (scrape interval and timeout are 1s).
SETTLED_SECONDS = 2.5


@dataclass
class Stack:
    emulator: Emulator
    exporter: RunningExporter
    prometheus: PrometheusServer
    target: str


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with (
        Emulator(jobs=60, seed=11, speed=0) as emulator,
        running_exporter({ACCOUNT: emulator}) as exporter,
    ):
        target = exporter.url.removeprefix("http://")
        scrape = {"job_name": "ams", "static_configs": [{"targets": [target]}]}
        with running_prometheus([scrape], [RULES, ALERTS]) as prometheus:
            prometheus.wait_for_query(f'ams_up{{account="{ACCOUNT}"}} == 1', timeout=45)
            yield Stack(emulator, exporter, prometheus, target)


def by_label(samples: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {sample["metric"][label]: float(sample["value"][1]) for sample in samples}


def in_scope_now(emulator: Emulator) -> list[Any]:
    """The emulator's jobs the exporter must export; fails if one sits on the window's edge."""
    jobs = emulator.jobs()
    inside, outside = split_scope(jobs, emulator.clock.now().timestamp(), DAY)
    assert len(inside) + len(outside) == len(jobs), "a job ends on the edge of the window"
    return inside


def test_series_arrive_with_the_values_the_emulator_implies(stack: Stack) -> None:
    prom, emulator = stack.prometheus, stack.emulator
    inside = in_scope_now(emulator)
    states = {job.id: STATE_NAMES[job.state] for job in inside}
    assert len(set(states.values())) >= 5, "the scenario should cover most states"

    # Every query below reads one instant whose latest scrape carried a successful collection, so
    # all series come from that one collection of the frozen emulator. The instant lies a couple of
    # scrape intervals in the past: every scrape up to it is stored by then.
    def settled_success() -> float | None:
        at = time.time() - SETTLED_SECONDS
        return at if prom.query(f'ams_up{{account="{ACCOUNT}"}} == 1', at) else None

    at = prom.wait_for(settled_success, what="an instant after a successful collection")

    current = prom.query(f'ams_job_state{{account="{ACCOUNT}"}} == 1', at)
    assert {s["metric"]["job_id"]: s["metric"]["state"] for s in current} == states
    names = {s["metric"]["job_id"]: s["metric"]["job_name"] for s in current}
    assert names == {job.id: job.name or "" for job in inside}
    assert {s["metric"]["job"] for s in current} == {"ams"}

    counts = Counter(states.values())
    per_state = by_label(prom.query(f'ams_jobs{{account="{ACCOUNT}"}}', at), "state")
    assert per_state == {state: float(counts[state]) for state in STATE_NAMES}

    now = emulator.clock.now().timestamp()
    expected = {job.id: ExpectedJob(job, now) for job in inside}
    created = by_label(prom.query("ams_job_created_timestamp_seconds", at), "job_id")
    assert created == pytest.approx({i: e.created() for i, e in expected.items()}, abs=1e-3)
    priority = by_label(prom.query("ams_job_priority", at), "job_id")
    assert priority == {job.id: float(job.priority) for job in inside}
    processing = [e for e in expected.values() if e.job.state == 2]
    assert processing, "the scenario should have jobs processing"
    progress = by_label(prom.query("ams_job_progress_ratio", at), "job_id")
    for job in processing:
        assert progress[job.job.id] == pytest.approx(job.progress(), abs=1e-9)

    (up,) = prom.query('up{job="ams"}', at)
    assert up["metric"]["instance"] == stack.target
    assert float(up["value"][1]) == 1


def test_recording_rules_load_without_errors_and_record(stack: Stack) -> None:
    prom = stack.prometheus
    files = {
        rule.get("record") or rule["alert"]
        for path in (RULES, ALERTS)
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    }

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in prom.rule_groups() for rule in group["rules"]]
        return rules if all(rule["health"] != "unknown" for rule in rules) else None

    rules = prom.wait_for(evaluated, what="every rule to be evaluated once")
    assert {rule["name"] for rule in rules} == files
    assert {rule["name"]: (rule["health"], rule.get("lastError", "")) for rule in rules} == {
        name: ("ok", "") for name in files
    }
    assert {group["name"] for group in prom.rule_groups()} == {
        "AMSRecordingRules",
        "AMSJobAlerts",
        "AMSAccountAlerts",
    }

    active = sum(1 for job in in_scope_now(stack.emulator) if job.state in ACTIVE)
    recorded = prom.wait_for_query(
        "account:ams_jobs_active:sum",
        lambda result: [float(s["value"][1]) for s in result] == [float(active)],
    )
    assert recorded[0]["metric"] == {"__name__": "account:ams_jobs_active:sum", "account": ACCOUNT}


def failed_alerts(prom: PrometheusServer) -> dict[str, dict[str, Any]]:
    return {
        alert["labels"]["job_id"]: alert
        for alert in prom.alerts()
        if alert["labels"]["alertname"] == "AMSJobFailed" and alert["state"] == "firing"
    }


def test_a_job_driven_into_error_raises_the_failed_job_alert(stack: Stack) -> None:
    prom, emulator = stack.prometheus, stack.emulator
    failed = {job.id: job for job in in_scope_now(emulator) if job.state == 4}
    failed_before = set(failed)
    existing = prom.wait_for(
        lambda: failed_alerts(prom) if set(failed_alerts(prom)) == failed_before else None,
        what="AMSJobFailed for exactly the jobs already in Error",
    )
    hard = [job for job in failed.values() if any(c in (job.name or "") for c in "\"'\\\n")]
    assert hard, "the scenario should have a failed job whose name needs escaping"
    now = emulator.clock.now().timestamp()
    for job_id, alert in existing.items():
        name = failed[job_id].name or ""
        codes = sorted({code for _, code in ExpectedJob(failed[job_id], now).error_codes()})
        assert alert["labels"]["job_name"] == name
        assert alert["annotations"]["description"] == (
            f'Job "{name}" ({job_id}) in account {ACCOUNT} ended in Error. '
            f"Error codes: {', '.join(codes) or 'none reported'}."
        )
    victim = next(job for job in in_scope_now(emulator) if job.state == 2)

    emulator.set_job_state(victim.id, 4, error_code="ErrorUploadingOutputAsset")

    alerts = prom.wait_for(
        lambda: failed_alerts(prom) if victim.id in failed_alerts(prom) else None,
        what=f"AMSJobFailed for {victim.id}",
    )
    assert set(alerts) == failed_before | {victim.id}
    alert = alerts[victim.id]
    assert alert["labels"] == {
        "alertname": "AMSJobFailed",
        "severity": "warning",
        "account": ACCOUNT,
        "job_id": victim.id,
        "job_name": victim.name or "",
    }
    assert alert["annotations"]["summary"] == "An AMS encoding job failed."
    assert alert["annotations"]["description"].startswith(
        f'Job "{victim.name or ""}" ({victim.id}) in account {ACCOUNT} ended in Error.'
    )
    assert "ErrorUploadingOutputAsset" in alert["annotations"]["description"]
    # That a failed job never raises a "stuck" alert at the same time is shown by the promtool
    # cases in tests/prometheus/job_alerts_test.yml: here the stuck alerts' thresholds (30 min and
    # more) cannot elapse, so an assertion about them could not fail.


def test_ams_up_drops_when_azure_ad_is_down_while_the_scrape_stays_up(stack: Stack) -> None:
    prom, emulator = stack.prometheus, stack.emulator
    prom.wait_for_query(f'ams_up{{account="{ACCOUNT}"}} == 1')
    emulator.faults.add(Fault("aad_down"))
    emulator.revoke_tokens()
    try:
        down = prom.wait_for_query(f'ams_up{{account="{ACCOUNT}"}} == 0')
        assert down[0]["metric"]["instance"] == stack.target
        failures_at = float(down[0]["value"][0])
        # Prometheus's own view of the same target at the same instant: the scrape succeeded.
        (up,) = prom.query('up{job="ams"}', failures_at)
        assert float(up["value"][1]) == 1
        aad_errors = prom.wait_for_query(
            f'ams_api_requests_total{{account="{ACCOUNT}", api="aad", code="error"}} > 0'
        )
        assert len(aad_errors) == 1
    finally:
        emulator.faults.clear()
    prom.wait_for_query(f'ams_up{{account="{ACCOUNT}"}} == 1')
    (up,) = prom.query('up{job="ams"}')
    assert float(up["value"][1]) == 1
