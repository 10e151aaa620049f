"""The Prometheus test harness (tests/support/prom.py) against a real Prometheus and a tiny exposition."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.prom import PrometheusError, running_prometheus

pytestmark = pytest.mark.e2e

EXPOSITION = b"""# HELP harness_value A constant for the harness test.
# TYPE harness_value gauge
harness_value{account="a \\"quoted\\""} 42
"""


class ExpositionHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(EXPOSITION)))
        self.end_headers()
        self.wfile.write(EXPOSITION)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def exposition() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ExpositionHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


def rule_file(tmp_path: Path) -> Path:
    rules = {
        "groups": [
            {
                "name": "harness",
                "rules": [
                    {"record": "harness:value:doubled", "expr": "2 * harness_value"},
                    {
                        "alert": "HarnessValueHigh",
                        "expr": "harness_value > 40",
                        "labels": {"severity": "info"},
                        "annotations": {"summary": "Value {{ $value }} for {{ $labels.account }}."},
                    },
                ],
            }
        ]
    }
    path = tmp_path / "harness.rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return path


def test_prometheus_scrapes_evaluates_and_alerts(exposition: str, tmp_path: Path) -> None:
    scrape = {"job_name": "harness", "static_configs": [{"targets": [exposition]}]}
    with running_prometheus([scrape], [rule_file(tmp_path)]) as prom:
        assert prom.url.startswith("http://127.0.0.1:")

        (target,) = prom.wait_for(
            lambda: [t for t in prom.targets() if t["health"] == "up"] or None,
            what="the harness target to be scraped",
        )
        assert target["labels"] == {"instance": exposition, "job": "harness"}

        (sample,) = prom.wait_for_query("harness_value")
        assert sample["metric"] == {
            "__name__": "harness_value",
            "account": 'a "quoted"',
            "instance": exposition,
            "job": "harness",
        }
        assert float(sample["value"][1]) == 42

        recorded = prom.wait_for_query("harness:value:doubled")
        assert [float(s["value"][1]) for s in recorded] == [84]

        (group,) = prom.rule_groups()
        assert group["name"] == "harness"
        assert {rule["name"]: rule["health"] for rule in group["rules"]} == {
            "harness:value:doubled": "ok",
            "HarnessValueHigh": "ok",
        }

        (alert,) = prom.wait_for(
            lambda: [a for a in prom.alerts() if a["state"] == "firing"] or None,
            what="HarnessValueHigh to fire",
        )
        assert alert["labels"] == {
            "alertname": "HarnessValueHigh",
            "severity": "info",
            "account": 'a "quoted"',
            "instance": exposition,
            "job": "harness",
        }
        assert alert["annotations"] == {"summary": 'Value 42 for a "quoted".'}
        url = prom.url
        process = prom.process

    assert process.poll() is not None, "the block's end stops Prometheus"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/-/ready", timeout=2)


def test_an_invalid_rule_file_fails_loudly_with_the_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(
        "groups:\n  - name: broken\n    rules:\n      - record: x\n        expr: sum(\n",
        encoding="utf-8",
    )
    with pytest.raises(PrometheusError) as failure, running_prometheus([], [broken]):
        pytest.fail("Prometheus must not start with an invalid rule file")
    assert "prometheus exited" in str(failure.value)
    assert "broken.rules.yml" in str(failure.value)


def test_an_error_answer_of_the_api_is_raised(exposition: str) -> None:
    scrape = {"job_name": "harness", "static_configs": [{"targets": [exposition]}]}
    with running_prometheus([scrape]) as prom, pytest.raises(PrometheusError, match="400"):
        prom.query("sum(")
