"""Where the exporter listens: the ``--web.listen-address`` forms, several addresses, dual-stack.

The forms are served by the exporter's own HTTP server over real sockets; a test that binds a
wildcard (``:0``, ``0.0.0.0:0``) connects to the loopback addresses only, ``::1`` and
``127.0.0.1``. Several addresses and the refusals are also checked against a real
``ams-exporter --demo``.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import logging
import os
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.web import listen
from exporter.web.httpserver import HttpServer
from exporter.web.listen import ListenError, open_listeners
from exporter.web.webconfig import parse_web_config
from tests.support.pki import Pki
from tests.support.process import Child, free_port, run

EXPORTER = [sys.executable, "-m", "exporter"]
IPV4 = "127.0.0.1"
IPV6 = "::1"


def _where(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI app that answers with the client's and the server's address as it saw them."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['REMOTE_ADDR']} {environ['SERVER_PORT']}".encode()]


@contextlib.contextmanager
def serving(addresses: Sequence[str], **kwargs: Any) -> Iterator[HttpServer]:
    server = HttpServer(_where, addresses, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def ask(host: str, port: int) -> str:
    """What the server at ``host`` (a loopback address) says about the connection."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", "/")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=10).close()
    except ConnectionRefusedError:
        return True
    return False


def port_of(server: HttpServer, index: int = 0) -> int:
    port: int = server.server_addresses[index][1]
    return port


# ---------------------------------------------------------------------------------------------
# The forms


@pytest.mark.parametrize("address", [":0", "[::]:0"])
def test_a_port_alone_or_the_ipv6_wildcard_listens_dual_stack_on_one_socket(address: str) -> None:
    with serving([address]) as server:
        (bound,) = server.server_addresses
        assert bound[0] == "::"
        port = port_of(server)
        # An IPv4 client is reported as IPv4, not as ::ffff:127.0.0.1.
        assert ask(IPV4, port) == f"{IPV4} {port}"
        assert ask(IPV6, port) == f"{IPV6} {port}"


def test_the_ipv4_wildcard_listens_on_ipv4_only() -> None:
    with serving(["0.0.0.0:0"]) as server:
        port = port_of(server)
        assert server.server_address[:2] == ("0.0.0.0", port)
        assert ask(IPV4, port) == f"{IPV4} {port}"
        assert refused(IPV6, port)


@pytest.mark.parametrize(
    ("address", "host", "other"), [("127.0.0.1:0", IPV4, IPV6), ("[::1]:0", IPV6, IPV4)]
)
def test_an_address_listens_there_only(address: str, host: str, other: str) -> None:
    with serving([address]) as server:
        port = port_of(server)
        assert server.server_address[0] == host
        assert ask(host, port) == f"{host} {port}"
        assert refused(other, port)


def test_a_name_listens_on_its_first_ipv4_address_as_go_does() -> None:
    with serving(["localhost:0"]) as server:
        port = port_of(server)
        assert server.server_address[:2] == (IPV4, port)
        assert ask(IPV4, port) == f"{IPV4} {port}"


def test_without_ipv6_a_port_alone_listens_on_ipv4_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_ipv6() -> socket.socket:
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    monkeypatch.setattr(listen, "_dual_stack_socket", no_ipv6)
    with caplog.at_level(logging.INFO, logger=listen.__name__), serving([":0"]) as server:
        port = port_of(server)
        assert server.server_address[:2] == ("0.0.0.0", port)
        assert ask(IPV4, port) == f"{IPV4} {port}"
    assert (
        "no IPv6 on this host (Address family not supported by protocol): "
        ":0 listens on IPv4 only, 0.0.0.0:0"
    ) in caplog.messages


# ---------------------------------------------------------------------------------------------
# Several addresses


def test_one_loop_serves_every_address() -> None:
    before = set(threading.enumerate())
    with serving(["127.0.0.1:0", "[::1]:0"]) as server:
        started = {thread.name for thread in threading.enumerate()} - {
            thread.name for thread in before
        }
        first, second = port_of(server, 0), port_of(server, 1)
        # Each answer names the port of the listener it came through.
        assert ask(IPV4, first) == f"{IPV4} {first}"
        assert ask(IPV6, second) == f"{IPV6} {second}"
    assert {name for name in started if not name.startswith("http-worker-")} == {"http"}


def test_shutdown_closes_every_listener() -> None:
    with serving(["127.0.0.1:0", "[::1]:0"]) as server:
        first, second = port_of(server, 0), port_of(server, 1)
        assert ask(IPV4, first) and ask(IPV6, second)
    assert refused(IPV4, first)
    assert refused(IPV6, second)


def test_tls_applies_to_every_address(pki: Pki) -> None:
    web_config = parse_web_config(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n",
        base_dir=pki.folder,
    )
    context = ssl.create_default_context(cafile=str(pki.server_ca))
    with serving(["127.0.0.1:0", "[::1]:0"], tls=web_config.tls) as server:
        for host, port in ((IPV4, port_of(server, 0)), (IPV6, port_of(server, 1))):
            # The test certificate names 127.0.0.1; over ::1 it is checked against that name.
            with (
                socket.create_connection((host, port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=IPV4) as secured,
            ):
                secured.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b"".join(iter(lambda: secured.recv(65536), b""))
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer.endswith(f"{host} {port}".encode())


# ---------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    ("addresses", "named"),
    [
        (["127.0.0.1:9000", "127.0.0.1:9000"], ["127.0.0.1:9000"]),
        (["127.0.0.1:0", "127.0.0.1:0"], ["127.0.0.1:0"]),
        ([":9000", "127.0.0.1:9000"], [":9000", "127.0.0.1:9000"]),
        (["[::1]:9000", ":9000"], ["[::1]:9000", ":9000"]),
        (["[::]:9000", "0.0.0.0:9000"], ["[::]:9000", "0.0.0.0:9000"]),
        (["0.0.0.0:9000", "127.0.0.1:9000"], ["0.0.0.0:9000", "127.0.0.1:9000"]),
        (["localhost:9000", "127.0.0.1:9000"], ["localhost:9000", "127.0.0.1:9000"]),
    ],
)
def test_addresses_that_overlap_are_refused_naming_both(
    addresses: list[str], named: list[str]
) -> None:
    with pytest.raises(ListenError) as refusal:
        open_listeners(addresses)
    assert refusal.value.addresses == tuple(named)
    assert str(refusal.value).startswith(f"cannot listen on {' and '.join(named)}: ")


def test_addresses_that_do_not_overlap_listen_together() -> None:
    port = free_port()
    with serving([f"127.0.0.1:{port}", f"[::1]:{port}", "127.0.0.1:0"]) as server:
        assert [address[1] for address in server.server_addresses[:2]] == [port, port]
        assert ask(IPV4, port) == f"{IPV4} {port}"
        assert ask(IPV6, port) == f"{IPV6} {port}"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("9000", "expected host:port, :port or [IPv6]:port; did you mean :9000?"),
        ("[::1", "unbalanced brackets"),
        ("[::1]", "expected host:port"),
        ("::1:9000", "an IPv6 address is written in brackets: [::1]:9000"),
        ("[localhost]:9000", "'localhost' in brackets is not an IPv6 address"),
        ("127.0.0.1:65536", "the port must be a number from 0 to 65535, not '65536'"),
        ("127.0.0.1:-1", "the port must be a number from 0 to 65535"),
        ("127.0.0.1:", "the port must be a number from 0 to 65535, not ''"),
        ("nosuch.invalid:9000", "cannot resolve nosuch.invalid"),
    ],
)
def test_an_invalid_address_is_refused_with_the_reason(address: str, reason: str) -> None:
    with pytest.raises(ListenError) as refusal:
        open_listeners(["127.0.0.1:0", address])
    assert refusal.value.addresses == (address,)
    assert reason in refusal.value.reason


def test_a_port_in_use_is_refused_and_nothing_stays_bound() -> None:
    with socket.socket() as taken:
        taken.bind((IPV4, 0))
        taken.listen()
        port = taken.getsockname()[1]
        files = len(os.listdir("/proc/self/fd"))
        with pytest.raises(ListenError) as refusal:
            open_listeners(["[::1]:0", f"127.0.0.1:{port}"])
        assert len(os.listdir("/proc/self/fd")) == files
    assert refusal.value.addresses == (f"127.0.0.1:{port}",)
    assert refusal.value.reason == "Address already in use"


# ---------------------------------------------------------------------------------------------
# ams-exporter


def test_the_exporter_serves_metrics_on_every_listen_address(tmp_path: Path) -> None:
    argv = [*EXPORTER, "--demo", "--web.listen-address=127.0.0.1:0", "--web.listen-address=[::1]:0"]
    with Child(argv, tmp_path, "exporter") as exporter:
        (ipv4, first), (ipv6, second) = exporter.listening_addresses(2, timeout=30)
        assert (ipv4, ipv6) == (IPV4, f"[{IPV6}]")
        assert exporter.listening_address() == (IPV4, first)
        for url in (f"http://{ipv4}:{first}/metrics", f"http://{ipv6}:{second}/metrics"):
            response = requests.get(url, timeout=30)
            assert response.status_code == 200
            assert 'ams_up{account="demo"}' in response.text
        assert exporter.stop() == 0


def test_the_exporter_refuses_overlapping_addresses_and_exits_1() -> None:
    port = free_port()
    first, second = f":{port}", f"127.0.0.1:{port}"
    result = run(
        [*EXPORTER, "--demo", f"--web.listen-address={first}", f"--web.listen-address={second}"]
    )
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on {first} and {second}" in result.stderr
    assert "overlap" in result.stderr
    assert "listening on" not in result.stderr
