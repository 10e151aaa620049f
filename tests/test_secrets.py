"""No secret, token or Authorization header leaves the exporter, whatever goes wrong upstream.

A real ``ams-exporter`` process, logging at debug level, collects accounts that each meet another
fault of the matrix (and each kind of credential). Everything it says is gathered: its log, its
metrics, the status page, ``/readyz``, the output of ``--config.check``, and the full text of the
exceptions the AMS client raises in-process for the same faults. None may contain a client secret,
the certificate's private key, the managed identity header, an access token (recognised by the
emulator's token signing: every token it issues starts with the same JWT header), a ``Bearer``
credential or an ``Authorization`` header.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from ams_emulator import Emulator, Fault
from exporter.ams.auth import token_provider_for
from exporter.ams.client import AmsClient
from exporter.ams.http import RequestCounter, UpstreamSession
from exporter.deadline import Deadline
from exporter.errors import ExporterError
from tests.support.harness import account_yaml, config_for, running_exporter
from tests.support.pki import make_pki
from tests.support.process import Child

REPO = Path(__file__).resolve().parent.parent
TOKEN_PATH = r"/oauth2/(v2\.0/)?token$"
WRONG_SECRET = "Wr0ng-but-still-a-secret-4f9c1e"

# account name -> faults of its emulator; one emulator per account, as faults are per emulator
FAULTS: dict[str, tuple[Fault, ...]] = {
    "wrong_secret": (),
    "aad_malformed": (Fault("malformed_json", api="aad", path=TOKEN_PATH),),
    "aad_wrong_shape": (Fault("wrong_shape", api="aad", path=TOKEN_PATH),),
    "aad_down": (Fault("aad_down"),),
    "aad_503": (Fault("status", api="aad", status=503, path=TOKEN_PATH),),
    "ams_401": (Fault("status", status=401),),
    "ams_403": (Fault("status", status=403),),
    "ams_500": (Fault("status", status=500, count=2),),
    "malformed": (Fault("malformed_json"),),
    "wrong_shape": (Fault("wrong_shape"),),
    "truncated": (Fault("truncated"),),
    "reset": (Fault("reset", count=3),),
    "redirect_loop": (Fault("redirect_loop"),),
    "certificate": (Fault("status", status=403),),
    "secret_file": (Fault("status", status=503, count=1),),
    "identity": (Fault("status", status=401),),
}


def token_markers(emulator: Emulator) -> list[str]:
    """Fragments every access token of ``emulator`` contains: its JWT header, as it signs them."""
    header = {"typ": "JWT", "alg": "HS256", "kid": emulator.aad._kid}
    encoded = base64.urlsafe_b64encode(json.dumps(header, separators=(",", ":")).encode())
    return [encoded.decode().rstrip("=")[:40], "eyJ0eXAiOiJKV1Qi"]


def key_lines(pem: str) -> list[str]:
    """Base64 lines of a PEM private key (any one of them in an output would be a leak)."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


@dataclass
class World:
    emulators: dict[str, Emulator]
    folder: Path
    config_file: Path
    env: dict[str, str]

    def secrets(self) -> list[str]:
        found = [WRONG_SECRET, "Bearer ", "Authorization:", "client_secret="]
        for emulator in self.emulators.values():
            found += [emulator.client_secret, emulator.managed_identity_header]
            found += token_markers(emulator)
            found += key_lines(emulator.client_private_key_pem)
        return found


def overrides(name: str, emulator: Emulator, folder: Path) -> dict[str, object]:
    if name == "wrong_secret":
        return {"client_secret": WRONG_SECRET}
    if name == "redirect_loop":
        return {"endpoint": emulator.legacy_endpoint}
    if name == "certificate":
        return {"client_secret": None, "client_certificate_file": emulator.client_certificate_file}
    if name == "secret_file":
        secret_file = folder / "secret.txt"
        secret_file.write_text(emulator.client_secret + "\n")
        return {"client_secret": None, "client_secret_file": secret_file}
    if name == "identity":
        return {"client_secret": None, "tenant": None, "client_id": None, "managed_identity": True}
    return {}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("secrets")
    with contextlib.ExitStack() as stack:
        emulators = {
            name: stack.enter_context(Emulator(jobs=10, seed=index, speed=0))
            for index, name in enumerate(FAULTS)
        }
        env = {}
        entries = []
        for index, (name, emulator) in enumerate(emulators.items()):
            variable = f"AMS_SECRET_{index}"
            env[variable] = emulator.client_secret
            extra = {"timeout": "4s", **overrides(name, emulator, folder)}
            entries.append(account_yaml(name, emulator, secret_var=variable, **extra))
        identity = emulators["identity"]
        env["IDENTITY_ENDPOINT"] = identity.managed_identity_endpoint
        env["IDENTITY_HEADER"] = identity.managed_identity_header
        config_file = folder / "config.yml"
        config_file.write_text("accounts:\n" + "".join(entries))
        yield World(emulators, folder, config_file, env)


def arm(world: World) -> None:
    for name, emulator in world.emulators.items():
        emulator.faults.clear()
        for fault in FAULTS[name]:
            emulator.faults.add(fault)
        emulator.revoke_tokens()


@contextlib.contextmanager
def exporter_process(world: World) -> Iterator[tuple[str, Path]]:
    """A real ams-exporter at debug level; yields its URL and the file its log goes to."""
    argv = [
        *(sys.executable, "-m", "exporter", f"--config.file={world.config_file}"),
        *("--web.listen-address=127.0.0.1:0", "--log.level=debug"),
    ]
    env = {**os.environ, **world.env}
    with Child(argv, world.folder, "exporter", env=env, cwd=REPO) as exporter:
        _, port = exporter.listening_address(timeout=30)
        yield f"http://127.0.0.1:{port}", exporter.stderr_path


def chain_text(exc: BaseException) -> str:
    """What a traceback says of ``exc`` and every exception behind it (the source lines aside)."""
    parts = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 20:
        parts += [*traceback.format_exception_only(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def assert_clean(what: str, text: str, world: World) -> None:
    for secret in world.secrets():
        assert secret not in text, f"{what} contains {secret[:12]}..."


def test_nothing_secret_in_logs_metrics_pages_or_config_check(world):
    arm(world)
    outputs: dict[str, str] = {}
    with exporter_process(world) as (url, log_file):
        for round_ in range(2):
            metrics = requests.get(url + "/metrics", timeout=30)
            assert metrics.status_code == 200
            outputs[f"metrics {round_}"] = metrics.text
        outputs["status page"] = requests.get(url + "/", timeout=30).text
        outputs["readyz"] = requests.get(url + "/readyz", timeout=30).text
    outputs["log"] = log_file.read_text()
    check = subprocess.run(
        [sys.executable, "-m", "exporter", f"--config.file={world.config_file}", "--config.check"],
        check=False,
        cwd=REPO,
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    outputs["config check"] = check.stdout + check.stderr

    # The faults really happened and were reported: the check is not vacuous.
    assert 'ams_up{account="ams_403"} 0.0' in outputs["metrics 1"]
    assert "invalid_client" in outputs["log"]
    assert "DEBUG" in outputs["log"]
    assert "ams_403" in outputs["status page"]
    for what, text in outputs.items():
        assert_clean(what, text, world)


@pytest.mark.parametrize("name", [n for n in FAULTS if n != "identity"])
def test_exception_texts_hold_no_secret(world, name):
    """The errors the client raises, with every exception chained behind them."""
    arm(world)
    emulator = world.emulators[name]
    config = config_for({name: emulator}, {name: overrides(name, emulator, world.folder)})
    account = config.accounts[0]
    counter = RequestCounter()

    def session(api: str) -> UpstreamSession:
        return UpstreamSession(account.name, api, counter, account.ca_file, 4.0, "test")

    client = AmsClient(account, token_provider_for(account, session("aad")), session("ams"))
    texts = []
    try:
        for _ in range(2):
            try:
                client.list_jobs(None, Deadline.after(4.0))
            except ExporterError as exc:
                texts.append(chain_text(exc))
    finally:
        client.close()
    if name not in ("ams_500", "reset", "secret_file"):  # those recover within the retries
        assert texts, f"the fault of {name} raised nothing"
    for text in texts:
        assert_clean(f"exception of {name}", text, world)


def test_the_token_markers_recognise_a_token_the_emulator_issues(world):
    """The check above would see a token: every issued token carries the markers."""
    emulator = world.emulators["ams_403"]
    response = requests.post(
        f"{emulator.authority_host}/{emulator.tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "scope": f"{emulator.resource}/.default",
        },
        verify=str(emulator.ca_file),
        timeout=30,
    )
    token = response.json()["access_token"]
    assert all(marker in token for marker in token_markers(emulator))


class _Redirector(http.server.BaseHTTPRequestHandler):
    """A legacy AMS root that sends the client to a plain-http address."""

    target = ""

    def do_GET(self) -> None:
        self.send_response(301)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_redirect_to_plain_http_is_not_followed_with_the_token(tmp_path):
    """The token must never travel unencrypted, even when an https endpoint sends it there."""
    pki = make_pki(tmp_path)
    plain = socket.create_server(("127.0.0.1", 0))
    plain.settimeout(0.1)
    received: list[bytes] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                connection, _ = plain.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                received.append(connection.recv(65536))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    _Redirector.target = f"http://127.0.0.1:{plain.getsockname()[1]}/api/"
    redirector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    redirector.socket = context.wrap_socket(redirector.socket, server_side=True)
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    try:
        with Emulator(jobs=5, seed=9, speed=0) as emulator:
            bundle = tmp_path / "bundle.pem"
            bundle.write_text(emulator.ca_pem + pki.server_ca.read_text())
            endpoint = f"https://127.0.0.1:{redirector.server_address[1]}/"
            config = config_for(
                {"legacy": emulator}, {"legacy": {"endpoint": endpoint, "ca_file": bundle}}
            )
            account = config.accounts[0]
            counter = RequestCounter()
            sessions = [
                UpstreamSession("legacy", api, counter, bundle, 5.0, "test")
                for api in ("aad", "ams")
            ]
            client = AmsClient(account, token_provider_for(account, sessions[0]), sessions[1])
            try:
                with pytest.raises(ExporterError, match="http"):
                    client.list_jobs(None, Deadline.after(5.0))
            finally:
                client.close()
    finally:
        redirector.shutdown()
        redirector.server_close()
        done.set()
        listener.join(timeout=10)
        plain.close()
    assert not any(b"authorization" in request.lower() for request in received), received
    assert received == []


def test_tls_verification_cannot_be_bypassed(tmp_path, monkeypatch):
    """An account whose ca_file does not vouch for the server fails, whatever the environment."""
    pki = make_pki(tmp_path)
    with Emulator(jobs=5, seed=10, speed=0) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_file))
        monkeypatch.setenv("CURL_CA_BUNDLE", str(emulator.ca_file))
        monkeypatch.setenv("PYTHONHTTPSVERIFY", "0")
        wrong_ca = {"ca_file": pki.server_ca}
        with running_exporter({"pinned": emulator}, {"pinned": wrong_ca}) as exporter:
            scrape = exporter.scrape()
            result = exporter.poller.latest
        assert scrape.value("ams_up", account="pinned") == 0
        assert result is not None and "SSLError" in (result.accounts[0].error or "")
        assert emulator.request_count() == 0, "no request got through the TLS handshake"
