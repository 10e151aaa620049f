"""The exporter's HTTP endpoints, the exposition format, and what promtool thinks of it."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator, Fault
from exporter.expose.negotiation import negotiate
from exporter.web.server import gzip_accepted
from tests.support.harness import RunningExporter, running_exporter


@pytest.fixture(scope="module")
def exporter() -> Iterator[RunningExporter]:
    with Emulator(jobs=200, seed=11, speed=0) as emulator:
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


TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
TEXT_1_0_0 = "text/plain; version=1.0.0; charset=utf-8; escaping="
OPENMETRICS_1_0_0 = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_3 = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;"
    "q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;"
    "escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.25"
)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("", TEXT_0_0_4),
        ("*/*", TEXT_0_0_4),
        ("text/plain", TEXT_0_0_4),
        ("text/plain;version=0.0.4", TEXT_0_0_4),
        ("text/plain;version=1.0.0", TEXT_1_0_0 + "underscores"),
        ("TEXT/PLAIN; Version=1.0.0; escaping=allow-utf-8", TEXT_1_0_0 + "allow-utf-8"),
        ("text/plain;version=abc", TEXT_0_0_4),
        ("application/openmetrics-text", OPENMETRICS_1_0_0),
        ("application/openmetrics-text;version=1.0.0", OPENMETRICS_1_0_0 + "; escaping="),
        ("application/openmetrics-text; version=2.0.0", "application/openmetrics-text; version=2"),
        ("application/openmetrics-text; version=abc", TEXT_0_0_4),
        ("application/openmetrics-text; version=1.0.x", TEXT_0_0_4),
        ("application/openmetrics-text; version=", OPENMETRICS_1_0_0),
        ("application/openmetrics-text;version=0.0.1", TEXT_0_0_4),
        ("application/openmetrics-text;version=9.9", TEXT_0_0_4),
        ("application/openmetrics-text;version=1.0.0;escaping=nonsense", OPENMETRICS_1_0_0),
        ("application/openmetrics-text;q=0, text/plain;version=1.0.0", TEXT_1_0_0),
        ("text/plain;q=0.1, application/openmetrics-text;q=0.9", OPENMETRICS_1_0_0),
        (PROMETHEUS_3, OPENMETRICS_1_0_0 + "; escaping=allow-utf-8"),
        (PROMETHEUS_2, OPENMETRICS_1_0_0),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily", TEXT_0_0_4),
        ("application/json", TEXT_0_0_4),
        ("*/*;q=x", TEXT_0_0_4),
        (";;;,,,==;q=;", TEXT_0_0_4),
        ("\x7f", TEXT_0_0_4),
        ("text/plain;version=" + "9" * 5000, TEXT_0_0_4),
    ],
)
def test_every_accept_header_gets_a_parseable_exposition(exporter, accept, content_type):
    response = exporter.get("/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_type)
    parse = (
        openmetrics_families
        if response.headers["Content-Type"].startswith("application/openmetrics-text")
        else text_string_to_metric_families
    )
    assert "ams_up" in {family.name for family in parse(response.text)}


@given(st.text(max_size=200))
def test_negotiation_chooses_a_format_for_any_header(accept):
    """Negotiation comes before the collection and never fails, so no scrape is collected in vain."""
    _encoder, content_type = negotiate(accept)
    assert content_type.startswith(("text/plain; version=", "application/openmetrics-text; "))


@pytest.mark.parametrize(
    ("accept_encoding", "coded"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("gzip;q=0.5", True),
        ("gzip ; Q=0.001", True),
        ("*", True),
        ("*;q=0.1", True),
        ("deflate, gzip", True),
        ("gzip, deflate, br, zstd", True),
        ("*;q=0, gzip", True),
        ("identity;q=0, gzip", True),
        ("", False),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("x-notgzip", False),
        ("notgzip, gzipper", False),
        ("deflate", False),
        ("gzip;q=0, *", False),
        ("*;q=0", False),
        ("identity;q=0", False),
        ("gzip;q=x", False),
        ("gzip;q=1.5", False),
        (",,;;", False),
    ],
)
def test_gzip_is_used_exactly_when_accept_encoding_allows_it(accept_encoding, coded):
    assert gzip_accepted(accept_encoding) is coded


@pytest.mark.parametrize(
    "accept_encoding",
    ["gzip", "GZIP", "*", "deflate, gzip", "gzip;q=0", "x-notgzip", "identity;q=0"],
)
def test_the_metrics_answer_is_coded_as_negotiated(exporter, accept_encoding):
    raw = requests.get(
        exporter.url + "/metrics",
        headers={"Accept-Encoding": accept_encoding},
        timeout=60,
        stream=True,
    )
    body = raw.raw.read(decode_content=False)
    assert raw.status_code == 200
    assert "Accept-Encoding" in raw.headers["Vary"]
    if gzip_accepted(accept_encoding):
        assert raw.headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(body)
    else:
        assert "Content-Encoding" not in raw.headers
    assert b"ams_up" in body


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
