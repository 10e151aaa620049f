"""The encoding capacity rule and alert on a real Prometheus that scrapes the exporter over the emulator.

Prometheus (tests/support/prom.py) loads the real prometheus/rules.yml and prometheus/alerts.yml,
scrapes and evaluates every second, and scrapes the exporter twice, as the two replicas of an HA pair
would be. The exporter reads the emulator's EncodingReservedUnitTypes entity every second
(``jobs.capacity_interval: 1s``). The emulator's clock is frozen and its only jobs are the test's:
``PROCESSING`` jobs Processing, and jobs Queued behind them; the test sets the reserved units.

AMSEncodingCapacitySaturated waits 30 minutes before it fires, longer than a test can: the test sees
it pending, with its labels, and sees it go when the queue empties or the units outnumber the
Processing jobs. Every expected number is read from the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ams_emulator import Emulator
from ams_emulator.entities import ReservedUnitType
from tests.support.harness import running_exporter
from tests.support.prom import PrometheusServer, running_prometheus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "rules.yml"
ALERTS = ROOT / "prometheus" / "alerts.yml"
ACCOUNT = "capacity"
ALERT = "AMSEncodingCapacitySaturated"
RATIO = f'account:ams_encoding_saturation:ratio{{account="{ACCOUNT}"}}'
QUEUED_NOW = f'account_state:ams_jobs:max{{account="{ACCOUNT}", state="Queued"}}'
REPLICAS = ("ams", "ams-replica")
PROCESSING = 3
QUEUED = 2


@dataclass
class Stack:
    emulator: Emulator
    prometheus: PrometheusServer


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Emulator(jobs=0, arrivals_per_hour=0, seed=5, speed=0, slots=PROCESSING) as emulator:
        for index in range(PROCESSING):
            emulator.add_job(name=f"Encode feature {index:03} to Adaptive Streaming", state=2)
        per_account = {ACCOUNT: {"jobs": {"capacity_interval": "1s"}}}
        with running_exporter({ACCOUNT: emulator}, per_account) as exporter:
            target = exporter.url.removeprefix("http://")
            scrapes = [
                {"job_name": name, "static_configs": [{"targets": [target]}]} for name in REPLICAS
            ]
            with running_prometheus(scrapes, [RULES, ALERTS]) as prometheus:
                prometheus.wait_for_query(
                    f'count(ams_up{{account="{ACCOUNT}"}} == 1) == {len(REPLICAS)}', timeout=45
                )
                yield Stack(emulator, prometheus)


def jobs_in(emulator: Emulator, state: int) -> list[str]:
    return [job.id for job in emulator.jobs() if job.state == state]


def set_queue(emulator: Emulator, length: int) -> None:
    """Exactly ``length`` jobs Queued, the oldest kept."""
    queued = jobs_in(emulator, 0)
    for job_id in queued[length:]:
        emulator.delete_job(job_id)
    for index in range(len(queued), length):
        emulator.add_job(name=f"Encode trailer {index:03} to Adaptive Streaming", state=0)


def saturation(emulator: Emulator) -> float:
    """The emulator's jobs Processing ÷ its CurrentReservedUnits."""
    return len(jobs_in(emulator, 2)) / emulator.reserved_units().current_reserved_units


def recorded_ratio(stack: Stack) -> dict[str, Any]:
    """Waits until Prometheus records the emulator's saturation; that one sample."""
    expected = saturation(stack.emulator)
    (sample,) = stack.prometheus.wait_for_query(
        RATIO,
        lambda result: len(result) == 1 and float(result[0]["value"][1]) == pytest.approx(expected),
        timeout=45,
    )
    return sample


def alerts_of(prom: PrometheusServer) -> list[dict[str, Any]]:
    return [alert for alert in prom.alerts() if alert["labels"]["alertname"] == ALERT]


def alert_rule(prom: PrometheusServer) -> dict[str, Any]:
    (rule,) = [
        rule for group in prom.rule_groups() for rule in group["rules"] if rule["name"] == ALERT
    ]
    return rule


def saturate(stack: Stack, units: int) -> dict[str, Any]:
    """``units`` reserved units and QUEUED jobs waiting; the pending alert once Prometheus has it
    with the ratio the emulator implies (an alert still pending from before keeps its old value
    until its rule is evaluated again)."""
    stack.emulator.set_reserved_units(units)
    set_queue(stack.emulator, QUEUED)
    expected = float(recorded_ratio(stack)["value"][1])

    def pending() -> list[dict[str, Any]] | None:
        found = alerts_of(stack.prometheus)
        return found if [float(a["value"]) for a in found] == [expected] else None

    (alert,) = stack.prometheus.wait_for(pending, what=f"{ALERT} pending at {expected}", timeout=45)
    return alert


def absent_after_evaluation(stack: Stack) -> None:
    """The alert is gone, and still gone at an evaluation of its rule that began after now."""
    prom = stack.prometheus
    prom.wait_for(lambda: not alerts_of(prom) or None, what=f"{ALERT} to go", timeout=45)
    before = alert_rule(prom)["lastEvaluation"]
    prom.wait_for(
        lambda: alert_rule(prom)["lastEvaluation"] != before or None,
        what=f"an evaluation of {ALERT} after its rule was read",
    )
    assert alerts_of(prom) == []
    assert alert_rule(prom)["state"] == "inactive"


@pytest.mark.parametrize("units", [PROCESSING, PROCESSING - 1], ids=["all-busy", "over-busy"])
def test_a_saturated_account_records_its_ratio_and_the_alert_is_pending(
    stack: Stack, units: int
) -> None:
    alert = saturate(stack, units)
    expected = PROCESSING / units
    assert saturation(stack.emulator) == expected >= 1
    sample = recorded_ratio(stack)
    # The two replicas' series are one account: one sample, the ratio not halved.
    assert sample["metric"] == {
        "__name__": "account:ams_encoding_saturation:ratio",
        "account": ACCOUNT,
    }
    assert float(sample["value"][1]) == pytest.approx(expected)

    assert alert["labels"] == {"alertname": ALERT, "account": ACCOUNT, "severity": "warning"}
    assert alert["state"] == "pending"
    assert float(alert["value"]) == pytest.approx(expected)
    # Every query of the description found its series on this Prometheus.
    description = alert["annotations"]["description"]
    assert "unknown" not in description, description
    unit_type = ReservedUnitType(stack.emulator.reserved_units().reserved_unit_type).name
    assert f"type {unit_type}" in description, description
    assert alert["annotations"]["runbook_url"].endswith("#amsencodingcapacitysaturated")
    rule = alert_rule(stack.prometheus)
    # Pending, not firing: the rule waits 30 minutes.
    assert (rule["state"], rule["health"], rule["duration"]) == ("pending", "ok", 1800)


def test_the_alert_goes_when_no_job_is_queued(stack: Stack) -> None:
    saturate(stack, PROCESSING)

    set_queue(stack.emulator, 0)

    stack.prometheus.wait_for_query(
        QUEUED_NOW, lambda result: [float(s["value"][1]) for s in result] == [0.0]
    )
    absent_after_evaluation(stack)
    # Every unit is still busy: only the empty queue ended it.
    assert float(recorded_ratio(stack)["value"][1]) == 1


def test_the_alert_goes_when_the_units_outnumber_the_processing_jobs(stack: Stack) -> None:
    saturate(stack, PROCESSING)

    stack.emulator.set_reserved_units(PROCESSING + 2)

    assert float(recorded_ratio(stack)["value"][1]) == pytest.approx(PROCESSING / (PROCESSING + 2))
    absent_after_evaluation(stack)
    # Jobs still wait: only the free units ended it.
    (queued,) = stack.prometheus.query(QUEUED_NOW)
    assert float(queued["value"][1]) == QUEUED == len(jobs_in(stack.emulator, 0))
