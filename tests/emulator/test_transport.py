"""The HTTPS transport: certificates, keep-alive, concurrency, framing limits, stop, loopback only."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509

from ams_emulator import Emulator
from tests.emulator.helpers import API_HEADERS, AmsClient


def _context(emu: Emulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(emu.ca_file))


def _connection(emu: Emulator) -> http.client.HTTPSConnection:
    parts = urlsplit(emu.account_endpoint)
    assert parts.hostname is not None and parts.port is not None
    return http.client.HTTPSConnection(
        parts.hostname, parts.port, context=_context(emu), timeout=30
    )


def test_server_certificate_is_signed_by_the_published_ca(emu: Emulator) -> None:
    assert emu.ca_file.read_text() == emu.ca_pem
    ca = x509.load_pem_x509_certificate(emu.ca_pem.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    parts = urlsplit(emu.account_endpoint)
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=30) as raw,
        _context(emu).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost"}
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert cert.issuer == ca.subject


def test_legacy_host_name_verifies_too(client: AmsClient, emu: Emulator) -> None:
    assert client.get(emu.legacy_endpoint, allow_redirects=False).status_code == 301


def test_the_system_trust_store_does_not_trust_the_emulator(emu: Emulator) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(emu.account_endpoint, verify=True, timeout=30)


def test_keep_alive_serves_several_requests_on_one_connection(
    client: AmsClient, emu: Emulator
) -> None:
    connection = _connection(emu)
    headers = client.headers()
    try:
        connection.request("GET", "/api/Jobs?$top=1", headers=headers)
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        connection.request("GET", "/api/Jobs?$top=2", headers=headers)
        second = connection.getresponse()
        second.read()
        assert (first.status, second.status) == (200, 200)
        assert connection.sock is sock and sock is not None
    finally:
        connection.close()


def test_concurrent_clients_are_all_served(client: AmsClient, emu: Emulator) -> None:
    headers = client.headers()
    statuses: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        with requests.Session() as session:
            for _ in range(5):
                response = session.get(
                    emu.account_endpoint + "Jobs?$top=5",
                    headers=headers,
                    verify=str(emu.ca_file),
                    timeout=30,
                )
                with lock:
                    statuses.append(response.status_code)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 40
    assert emu.request_count(api="ams", path=r"/Jobs$") == 40


def test_a_client_that_never_handshakes_does_not_block_others(
    client: AmsClient, emu: Emulator
) -> None:
    parts = urlsplit(emu.account_endpoint)
    with socket.create_connection((parts.hostname, parts.port), timeout=30):
        assert client.get("Jobs?$top=1").status_code == 200


def test_plain_http_on_the_tls_port_fails_and_the_server_survives(
    client: AmsClient, emu: Emulator
) -> None:
    plain = emu.account_endpoint.replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(plain, timeout=30)
    assert client.get("Jobs?$top=1").status_code == 200


def test_oversized_request_body_is_413(emu: Emulator) -> None:
    connection = _connection(emu)
    try:
        connection.putrequest("POST", "/emulator.onmicrosoft.com/oauth2/v2.0/token")
        connection.putheader("Content-Length", str(5 * 1024 * 1024))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert b"limited" in response.read()
    finally:
        connection.close()


def test_chunked_request_body_is_411(emu: Emulator) -> None:
    connection = _connection(emu)
    try:
        connection.putrequest("POST", "/emulator.onmicrosoft.com/oauth2/v2.0/token")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        assert connection.getresponse().status == 411
    finally:
        connection.close()


def test_ipv6_loopback() -> None:
    with Emulator(jobs=2, seed=1, speed=0, host="::1") as emulator:
        assert emulator.account_endpoint.startswith("https://[::1]:")
        ams = AmsClient(emulator)
        assert ams.get("Jobs").status_code == 200
        ams.close()


def test_non_loopback_addresses_need_an_explicit_opt_in() -> None:
    with pytest.raises(ValueError, match="allow_non_loopback"):
        Emulator(jobs=1, host="192.0.2.10")


def test_stop_closes_open_connections_and_removes_the_files() -> None:
    emulator = Emulator(jobs=2, seed=1, speed=0).start()
    ams = AmsClient(emulator)
    connection = _connection(emulator)
    connection.request("GET", "/api/Jobs", headers=ams.headers())
    connection.getresponse().read()
    emulator.stop()
    try:
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.request("GET", "/api/Jobs", headers={**API_HEADERS})
            connection.getresponse()
    finally:
        connection.close()
        ams.close()
    assert not emulator.ca_file.exists()
    assert not emulator.client_certificate_file.exists()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(emulator.account_endpoint, verify=False, timeout=30)
    with pytest.raises(RuntimeError, match="cannot be started again"):
        emulator.start()
