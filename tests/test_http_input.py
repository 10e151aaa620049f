"""Bad HTTP input to the exporter: clean 4xx answers, and the exporter keeps serving.

Requests are written byte for byte on raw sockets where a client library would refuse to send
them (malformed request lines, oversized headers).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator
from exporter.wiring import serving
from tests.support.harness import RunningExporter, config_for, running_exporter


@pytest.fixture(scope="module")
def exporter() -> Iterator[RunningExporter]:
    with Emulator(jobs=20, seed=31, speed=0) as emulator:
        with running_exporter({"main": emulator}) as running:
            yield running


def address(exporter: RunningExporter) -> tuple[str, int]:
    host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def raw_exchange(exporter: RunningExporter, data: bytes) -> bytes:
    """Send ``data``, shut down the sending side and read the whole answer until the server closes."""
    with socket.create_connection(address(exporter), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    first = answer.split(b"\r\n", 1)[0].split()
    assert len(first) >= 2 and first[0].startswith(b"HTTP/"), answer[:200]
    return int(first[1])


def still_serving(exporter: RunningExporter) -> None:
    assert exporter.get("/healthz").status_code == 200
    metrics = exporter.get("/metrics")
    assert metrics.status_code == 200
    names = {family.name for family in text_string_to_metric_families(metrics.text)}
    assert "ams_up" in names


@pytest.mark.parametrize(
    "path",
    [
        "/metricsx",
        "/metrics/",
        "/METRICS",
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%00",
        "/" + "a" * 8000,
        "/中文",
    ],
)
def test_unknown_paths_get_404(exporter, path):
    response = exporter.get(path)
    assert response.status_code == 404
    assert "root:" not in response.text
    still_serving(exporter)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
@pytest.mark.parametrize("path", ["/metrics", "/", "/healthz"])
def test_other_methods_get_405_with_allow(exporter, method, path):
    response = exporter.session.request(method, exporter.url + path, data=b"x" * 100, timeout=30)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    still_serving(exporter)


def test_head_gives_headers_without_a_body(exporter):
    response = exporter.session.head(exporter.url + "/metrics", timeout=60)
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.parametrize(
    "query",
    ["%", "%zz", "%ff%fe", "a=" + "b" * 20000, "&&&==&", "collect[]=x&collect[]=y", "%00=%00"],
)
def test_bad_query_strings_are_ignored(exporter, query):
    """The exporter takes no query parameters: any query string is ignored, not an error."""
    response = exporter.get("/metrics?" + query)
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["ams_up"].samples[0].value == 1


@pytest.mark.parametrize("value", ["abc", "-1", "0", "1e309", "nan", "inf", "99999999", "5" * 400])
def test_unusable_scrape_timeout_headers_fall_back_to_the_default(exporter, value):
    response = exporter.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": value})
    assert response.status_code == 200
    assert "ams_up" in response.text


@pytest.mark.parametrize("accept", ["*/*;q=x", "application/openmetrics-text; version=9.9", "\x7f"])
def test_odd_accept_headers_still_get_an_exposition(exporter, accept):
    response = exporter.get("/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    assert "ams_up" in response.text


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /metrics HTTP/9.9\r\n\r\n", 505),
        (b"GET /metrics HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /metrics FTP/1.0\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (
            b"GET /metrics HTTP/1.1\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
            + b"\r\n",
            431,
        ),
        (b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nNo-Colon\r\n\r\n", 400),
        (b"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n", 413),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            411,
        ),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nhello",
            400,
        ),
    ],
    ids=[
        "garbage",
        "http-9.9",
        "extra-word",
        "not-http",
        "tls-hello",
        "request-line-70k",
        "header-70k",
        "200-headers",
        "http-2.0",
        "http-1.1-without-host",
        "two-hosts",
        "folded-header",
        "nul-in-header",
        "header-without-colon",
        "target-not-a-path",
        "body-70k",
        "unreadable-content-length",
        "two-content-lengths",
        "chunked-body",
        "unknown-transfer-coding",
        "content-length-and-chunked",
    ],
)
def test_malformed_requests_get_a_clean_4xx_or_505(exporter, request_bytes, expected):
    answer = raw_exchange(exporter, request_bytes)
    assert status_of(answer) == expected
    assert b"Traceback" not in answer
    still_serving(exporter)


def test_a_client_that_sends_half_a_request_does_not_block_the_others(exporter):
    with socket.create_connection(address(exporter), timeout=30) as stalled:
        stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            still_serving(exporter)


def test_a_client_that_disconnects_mid_response_does_not_break_the_server(exporter):
    for _ in range(5):
        with socket.create_connection(address(exporter), timeout=30) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            sock.recv(10)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    still_serving(exporter)


def test_many_requests_on_one_client_session_are_answered(exporter):
    with requests.Session() as session:
        statuses = [
            session.get(exporter.url + "/healthz", timeout=30).status_code for _ in range(20)
        ]
    assert statuses == [200] * 20


def test_a_small_request_body_is_read_and_the_connection_kept(exporter):
    with socket.create_connection(address(exporter), timeout=30) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answers = b""
        while chunk := sock.recv(65536):
            answers += chunk
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 2, answers


def test_a_stalled_client_is_disconnected_and_nothing_is_printed(capfd):
    """A client that never finishes its request (slowloris) loses its connection, not a thread."""
    with Emulator(jobs=5, seed=32, speed=0) as emulator:
        with serving(config_for({"main": emulator}), header_timeout=0.5) as (_, server):
            threads = threading.active_count()
            with socket.create_connection(server.server_address[:2], timeout=30) as stalled:
                stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                assert threading.active_count() <= threads
                assert stalled.recv(1024) == b"", "the server closes the stalled connection"
            assert threading.active_count() <= threads
    assert "Traceback" not in capfd.readouterr().err
