"""Hostile clients of the exporter's own HTTP server, and the limits that keep it serving.

Idle and slowloris connections, TLS handshakes that stall, clients that never read their answer,
more connections than allowed: each is a raw socket on 127.0.0.1 driven by the test in bounded
loops. Where a server timeout is the subject, the exporter runs in-process with timeouts of about
a second; the defaults the command line serves with are checked against a real ``ams-exporter``.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator
from exporter.cli import build_parser
from exporter.web.httpserver import (
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_BODY_BYTES,
    MAX_CONNECTIONS,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    WORKERS,
    WRITE_TIMEOUT,
)
from exporter.web.protect import HANDSHAKE_TIMEOUT
from exporter.web.webconfig import WebConfig, parse_web_config
from exporter.wiring import serving as wired_exporter
from tests.support.harness import config_for
from tests.support.process import Child

# Generous bounds for "answers" and "is closed": the server's own timeouts here are 1 s.
ANSWER_SECONDS = 5.0
# Threads a collection may start and end on its own; a thread per connection would be hundreds.
COLLECTION_THREADS = 10


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    # Enough jobs for an exposition of a few hundred kilobytes: more than socket buffers take.
    with Emulator(jobs=600, seed=41, speed=0) as emulator:
        yield emulator


@contextlib.contextmanager
def serving(
    emulator: Emulator, web_config: WebConfig | None = None, **limits: Any
) -> Iterator[tuple[str, int]]:
    """An in-process exporter for ``emulator`` with the given server limits; yields its address."""
    with wired_exporter(config_for({"main": emulator}), web_config=web_config, **limits) as wired:
        yield "127.0.0.1", wired[1].server_address[1]


def request(path: str, method: str = "GET", *, close: bool = False) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return f"{method} {path} HTTP/1.1\r\nHost: exporter\r\n{connection}\r\n".encode()


class Reader:
    """Reads HTTP/1.1 answers framed by Content-Length off one socket, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    def answer(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (what it sent is dropped)."""
    give_up = time.monotonic() + within
    while (left := give_up - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except (TimeoutError, ssl.SSLError):
            return False
    return False


def still_open(sock: socket.socket) -> bool:
    """The server has not closed ``sock`` (and has sent nothing on it)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def scrape(url: str, **kwargs: Any) -> requests.Response:
    started = time.monotonic()
    response = requests.get(url + "/metrics", timeout=ANSWER_SECONDS, **kwargs)
    assert time.monotonic() - started < ANSWER_SECONDS
    assert response.status_code == 200
    assert "ams_up" in {f.name for f in text_string_to_metric_families(response.text)}
    return response


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for process {pid}")


# ---------------------------------------------------------------------------------------------
# The command line's defaults, against a real process


def test_the_command_line_serves_with_a_10_s_header_timeout_and_1024_connections():
    assert HEADER_TIMEOUT == 10.0
    assert build_parser().parse_args([]).max_connections == MAX_CONNECTIONS == 1024


def test_the_documented_limits_are_the_servers():
    repo = Path(__file__).resolve().parent.parent
    security = (repo / "docs" / "security.md").read_text()
    section = security.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    for figure in (
        f"pool of {WORKERS} worker threads",
        f"`--web.max-connections`, default {MAX_CONNECTIONS}",
        f"TLS handshake | {HANDSHAKE_TIMEOUT:g} s from the accept",
        f"complete within {HEADER_TIMEOUT:g} s of the accept",
        f"{IDLE_TIMEOUT:g} s idle",
        f"writing an answer | {WRITE_TIMEOUT:g} s",
        f"{MAX_HEAD_BYTES // 1024} KiB (431",
        f"at most {MAX_HEADERS} fields",
        f"read up to {MAX_BODY_BYTES // 1024} KiB",
    ):
        assert figure in section, figure
    readme = (repo / "README.md").read_text()
    assert f"| `--web.max-connections` | `{MAX_CONNECTIONS}` |" in readme


def test_500_idle_and_100_slowloris_connections_cost_no_threads_and_are_closed_after_10_s(
    tmp_path,
):
    args = [sys.executable, "-m", "exporter", "--demo", "--demo.jobs=50"]
    args += ["--web.listen-address=127.0.0.1:0"]
    child = Child(args, tmp_path, "exporter")
    clients: list[socket.socket] = []
    try:
        _, port = child.listening_address()
        url = f"http://127.0.0.1:{port}"
        scrape(url)
        threads_before = threads_of(child.pid)
        opened = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(500)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        clients = idle + slow
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\nX-Drip: ")
        drips = 0
        while time.monotonic() < opened + 7.0:  # well inside the 10 s
            for sock in slow:
                sock.sendall(b"a")
            drips += 1
            if drips == 2:
                scrape(url)  # within ANSWER_SECONDS, with all 600 open
                assert threads_of(child.pid) < min(100, threads_before + COLLECTION_THREADS)
            time.sleep(0.5)
        assert drips >= 10
        assert all(still_open(sock) for sock in clients), "nothing is closed before 10 s"
        for sock in slow:  # closed at 10 s although still dripping
            with contextlib.suppress(OSError):
                sock.sendall(b"a")
        assert all(
            closed_by_server(sock, within=opened + 25.0 - time.monotonic()) for sock in clients
        )
        scrape(url)
        assert threads_of(child.pid) < threads_before + COLLECTION_THREADS
    finally:
        for sock in clients:
            sock.close()
        child.stop()
    assert "Traceback" not in child.output("stderr")


# ---------------------------------------------------------------------------------------------
# Timeouts


def test_a_slowloris_client_is_closed_after_the_header_timeout(emulator, capfd):
    with serving(emulator, header_timeout=1.0) as address:
        with socket.create_connection(address) as slow:
            slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n")
            slow.settimeout(0.25)
            closed = False
            for _ in range(40):  # a byte every 0.25 s, for 10 s at most
                try:
                    slow.sendall(b"X")
                    if slow.recv(1024) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    closed = True
                    break
            assert closed, "the connection was not closed while the head never completed"
        scrape(f"http://{address[0]}:{address[1]}")
    assert "Traceback" not in capfd.readouterr().err


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(emulator):
    with serving(emulator, header_timeout=1.0) as address:
        with socket.create_connection(address) as silent:
            assert closed_by_server(silent, within=ANSWER_SECONDS)


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(emulator):
    with serving(emulator, idle_timeout=1.0) as address:
        with socket.create_connection(address) as sock:
            reader = Reader(sock)
            sock.sendall(request("/healthz"))
            status, headers, _ = reader.answer()
            assert status == 200 and headers.get("connection") != "close"
            sock.sendall(request("/healthz"))  # still open: kept alive
            assert reader.answer()[0] == 200
            assert closed_by_server(sock, within=ANSWER_SECONDS)


# ---------------------------------------------------------------------------------------------
# Connections


def test_keep_alive_serves_sequential_requests_on_one_connection(emulator):
    with serving(emulator) as (host, port):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            local = None
            for path in ("/healthz", "/metrics", "/", "/nope", "/metrics"):
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                assert response.status in (200, 404)
                assert connection.sock is not None, "the server closed the connection"
                local = local or connection.sock.getsockname()
                assert connection.sock.getsockname() == local
        finally:
            connection.close()
        with requests.Session() as session:
            answers = [session.get(f"http://{host}:{port}/healthz", timeout=30) for _ in range(20)]
        assert [answer.status_code for answer in answers] == [200] * 20


def test_head_answers_headers_only_and_the_connection_stays_usable(emulator):
    with serving(emulator) as address:
        with socket.create_connection(address, timeout=30) as sock:
            reader = Reader(sock)
            sock.sendall(request("/metrics", "HEAD"))
            status, headers, body = reader.answer(head_only=True)
            assert status == 200 and int(headers["content-length"]) > 0 and body == b""
            sock.sendall(request("/healthz"))
            status, _, body = reader.answer()
            assert (status, body) == (200, b"ok\n")


def test_pipelined_requests_are_answered_in_order(emulator):
    with serving(emulator) as address:
        with socket.create_connection(address, timeout=30) as sock:
            sock.sendall(
                request("/healthz")
                + request("/nope")
                + request("/healthz", "HEAD")
                + request("/healthz", close=True)
            )
            reader = Reader(sock)
            statuses = [reader.answer()[0], reader.answer()[0], reader.answer(head_only=True)[0]]
            status, headers, body = reader.answer()
            assert [*statuses, status] == [200, 404, 200, 200]
            assert headers["connection"] == "close" and body == b"ok\n"
            assert sock.recv(1024) == b"", "closed after the request that asked for it"


def test_more_connections_than_allowed_are_closed_at_once_and_serving_resumes(emulator):
    with serving(emulator, max_connections=5) as address:
        url = f"http://{address[0]}:{address[1]}"
        held = [socket.create_connection(address, timeout=30) for _ in range(5)]
        try:
            for sock in held:  # each is served, so each is counted
                sock.sendall(request("/healthz"))
                assert Reader(sock).answer()[0] == 200
            with socket.create_connection(address, timeout=30) as extra:
                with contextlib.suppress(OSError):
                    extra.sendall(request("/healthz"))
                assert closed_by_server(extra, within=ANSWER_SECONDS)
        finally:
            for sock in held:
                sock.close()
        for _ in range(50):  # the server notices the closes on its next turn
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + "/healthz", timeout=ANSWER_SECONDS).status_code == 200:
                    break
            time.sleep(0.1)
        scrape(url)


def test_clients_that_never_read_their_answers_block_no_one_and_are_dropped(emulator):
    pipelined = request("/metrics") * 19 + request("/metrics", close=True)
    with serving(emulator, write_timeout=1.0) as address:
        url = f"http://{address[0]}:{address[1]}"
        size = len(scrape(url).content)
        stuck = []
        try:
            for _ in range(12):  # more than the workers
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(address)
                sock.sendall(pipelined)  # megabytes of answers, more than the buffers hold
                stuck.append(sock)
            for _ in range(3):
                scrape(url)
            time.sleep(2.0)  # past the write timeout, still not reading
            for sock in stuck:
                received = 0
                sock.settimeout(30)
                with contextlib.suppress(ConnectionResetError):
                    while chunk := sock.recv(1 << 20):
                        received += len(chunk)
                assert received < 20 * size, "the server gave up on the client that did not read"
        finally:
            for sock in stuck:
                sock.close()


# ---------------------------------------------------------------------------------------------
# TLS


def test_tls_clients_that_stall_in_the_handshake_block_no_one_and_are_closed(emulator, pki):
    web_config = parse_web_config(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n",
        base_dir=pki.folder,
    )
    with serving(emulator, web_config, header_timeout=1.0) as (host, port):
        silent = [socket.create_connection((host, port), timeout=30) for _ in range(20)]
        # A TLS record header announcing a ClientHello that never comes.
        partial = [socket.create_connection((host, port), timeout=30) for _ in range(20)]
        try:
            for sock in partial:
                sock.sendall(b"\x16\x03\x01\x02\x00")
            response = requests.get(
                f"https://{host}:{port}/healthz", verify=str(pki.server_ca), timeout=ANSWER_SECONDS
            )
            assert response.status_code == 200
            assert all(closed_by_server(sock, within=ANSWER_SECONDS) for sock in silent + partial)
        finally:
            for sock in silent + partial:
                sock.close()
        scrape(f"https://{host}:{port}", verify=str(pki.server_ca))


def test_tls_keeps_connections_alive(emulator, pki):
    web_config = parse_web_config(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n",
        base_dir=pki.folder,
    )
    with serving(emulator, web_config) as (host, port):
        context = ssl.create_default_context(cafile=str(pki.server_ca))
        connection = http.client.HTTPSConnection(host, port, timeout=30, context=context)
        try:
            for _ in range(3):
                connection.request("GET", "/metrics")
                response = connection.getresponse()
                assert response.status == 200 and b"ams_up" in response.read()
                assert connection.sock is not None
        finally:
            connection.close()


# ---------------------------------------------------------------------------------------------
# What is logged


def test_debug_logs_name_method_and_path_but_nothing_else_of_a_request(emulator, caplog, capfd):
    secret = "s3cr3t-value-of-a-header"
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        with serving(emulator) as address:
            with socket.create_connection(address, timeout=30) as sock:
                sock.sendall(
                    f"GET /metrics?token={secret} HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Basic {secret}\r\nX-Other: {secret}\r\n"
                    f"X-Prometheus-Scrape-Timeout-Seconds: {secret}\r\n\r\n".encode()
                )
                assert Reader(sock).answer()[0] == 200
            with socket.create_connection(address, timeout=30) as sock:
                sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nBad\x01: {secret}\r\n\r\n".encode())
                assert Reader(sock).answer()[0] == 400
    assert re.search(r"GET /metrics 200", caplog.text)
    assert secret not in caplog.text
    assert "Traceback" not in capfd.readouterr().err


def test_many_clients_at_once_do_not_grow_the_thread_count(emulator):
    with serving(emulator) as address:
        url = f"http://{address[0]}:{address[1]}"
        scrape(url)
        before = threading.active_count()
        clients = [socket.create_connection(address, timeout=30) for _ in range(200)]
        try:
            scrape(url)
            assert threading.active_count() < before + COLLECTION_THREADS
        finally:
            for sock in clients:
                sock.close()
