"""The exporter's HTTP endpoints, the exposition format, and what promtool thinks of it."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests

from exporter.emulator import Emulator, Fault
from tests.harness import RunningExporter, running_exporter


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    with Emulator(jobs=200, seed=11, speed=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def exporter(emulator: Emulator) -> RunningExporter:
    with running_exporter({"main": emulator}) as running:
        yield running


def test_promtool_accepts_the_exposition_without_warnings(exporter):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus; scripts/test installs it)"
    text = exporter.scrape().text
    result = subprocess.run(
        [promtool, "check", "metrics"],
        check=False,
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", (
        result.stdout + result.stderr
    )


def test_openmetrics_is_served_when_asked_for(exporter):
    response = exporter.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_gzip_when_accepted(exporter):
    raw = requests.get(
        exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=60, stream=True
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    assert "ams_up" in raw.content.decode()  # requests decodes gzip transparently


def test_health_and_readiness(exporter):
    exporter.scrape()
    assert exporter.get("/healthz").status_code == 200
    ready = exporter.get("/readyz")
    assert ready.status_code == 200, ready.text


def test_readiness_fails_with_a_reason_until_an_account_has_succeeded():
    with Emulator(jobs=10, seed=1, speed=0) as broken:
        broken.faults.add(Fault(kind="status", status=403))
        with running_exporter({"broken": broken}) as exporter:
            response = exporter.get("/readyz")
    assert response.status_code == 503
    assert "account broken" in response.text


def test_landing_page_links_the_metrics_and_shows_accounts(exporter):
    exporter.scrape()
    page = exporter.get("/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert 'href="/metrics"' in page.text
    assert "main" in page.text


@pytest.mark.parametrize("path", ["/nope", "/metrics/extra", "/../etc/passwd"])
def test_unknown_paths_are_404(exporter, path):
    assert exporter.get(path).status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(exporter, method):
    response = requests.request(method, exporter.url + "/metrics", timeout=60)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_head_has_no_body(exporter):
    response = requests.head(exporter.url + "/healthz", timeout=60)
    assert response.status_code == 200 and response.content == b""


def test_custom_telemetry_path():
    with Emulator(jobs=10, seed=1, speed=0) as emulator:
        with running_exporter({"a": emulator}, telemetry_path="/probe") as exporter:
            assert exporter.scrape(path="/probe").value("ams_up", account="a") == 1
            assert exporter.get("/metrics").status_code == 404


def test_unreadable_scrape_timeout_header_falls_back_to_the_default(exporter):
    scrape = exporter.scrape(headers={"X-Prometheus-Scrape-Timeout-Seconds": "soon"})
    assert scrape.value("ams_up", account="main") == 1
