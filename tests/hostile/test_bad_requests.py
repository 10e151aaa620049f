"""Bad requests to the exporter's own HTTP side (scenarios 11 and 12 of the hostile suite)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from tests.hostile.azure import job
from tests.hostile.lab import Lab
from tests.hostile.leaks import Witness
from tests.hostile.process import ExporterProcess, parse_samples


@pytest.fixture(scope="module")
def exporter(module_lab: Lab) -> Iterator[ExporterProcess]:
    azure = module_lab.azure()
    account = module_lab.account(azure, "requests")
    account.jobs = [job(0), job(2), job(3)]
    process = module_lab.exporter([module_lab.entry(azure, account, jobs={"tasks": False})])
    process.wait_ready()
    yield process


def _parses(content_type: str, text: str) -> bool:
    """Whether ``text`` holds samples in the format ``content_type`` names (fails if malformed)."""
    if content_type.startswith("application/openmetrics-text"):
        return any(family.samples for family in openmetrics_families(text))
    return bool(parse_samples(text))


# ---------------------------------------------------------------------------------------------
# 11. An Accept header nobody planned for


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=abc",
        "application/openmetrics-text; version=1.0.0; escaping=bogus",
        "application/openmetrics-text;version=0.0.1;q=abc",
        "text/plain;version=0.0.4;q=2",
        "text/plain; version=9.9.9",
        "*/*;q=",
        ";;;,,,=;",
        "application/openmetrics-text; version=" + "1" * 8000,
    ],
)
def test_an_odd_accept_header_gets_a_parseable_exposition(
    exporter: ExporterProcess, witness: Witness, accept: str
) -> None:
    before = len(exporter.stderr)
    response = exporter.get("/metrics", {"Accept": accept})

    assert response.status == 200, response.text[:300]
    content_type = response.headers.get("content-type", "")
    assert _parses(content_type, response.text), f"empty exposition as {content_type}"
    assert "ams_up" in response.text
    assert "Traceback" not in exporter.stderr[before:]
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# 12. Accept-Encoding, read as RFC 9110 says


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip;q=0", False),
        ("x-notgzip", False),
        ("gzip;q=0.000", False),
        ("identity", False),
        ("gzip", True),
        ("br, gzip;q=0.5", True),
        ("deflate, GZIP", True),
    ],
)
def test_gzip_is_used_exactly_when_the_client_accepts_it(
    exporter: ExporterProcess, witness: Witness, accept_encoding: str, gzipped: bool
) -> None:
    response = exporter.get("/metrics", {"Accept-Encoding": accept_encoding})

    assert response.status == 200
    assert (response.headers.get("content-encoding") == "gzip") is gzipped
    text = gzip.decompress(response.raw).decode() if gzipped else response.raw.decode()
    assert "ams_up" in text
    witness.assert_clean()
