"""The metrics endpoint behind exporter-toolkit's web-config.yml: TLS, mutual TLS, basic auth.

Every test talks to a real exporter over a real socket with real TLS clients (``requests`` and
Python's ``ssl``), with certificates made for the test.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator
from exporter.web.webconfig import WebConfig, WebConfigError, load_web_config, parse_web_config
from exporter.wiring import serving
from tests.support.harness import config_for
from tests.support.pki import Pki
from tests.support.process import Child

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
# Low cost keeps the tests fast; the exporter accepts any bcrypt cost.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(jobs=20, seed=3, speed=0) as emulator:
        yield emulator


# ---------------------------------------------------------------------------------------------
# A protected exporter


@dataclass
class Protected:
    host: str
    port: int

    @property
    def https(self) -> str:
        return f"https://{self.host}:{self.port}"


@contextlib.contextmanager
def protected_exporter(emulator: Emulator, web_config: WebConfig) -> Iterator[Protected]:
    with serving(config_for({"main": emulator}), web_config=web_config) as (_, server):
        yield Protected("127.0.0.1", server.server_address[1])


def web(pki: Pki, tls: str = "", rest: str = "") -> WebConfig:
    """A web config with the test's server certificate and extra ``tls`` lines and sections."""
    text = (
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert.name}\n"
        f"  key_file: {pki.server_key.name}\n"
        + textwrap.indent(textwrap.dedent(tls), "  ")
        + textwrap.dedent(rest)
    )
    return parse_web_config(text, base_dir=pki.folder)


def get(url: str, pki: Pki, **kwargs: object) -> requests.Response:
    return requests.get(url, verify=str(pki.server_ca), timeout=30, **kwargs)


def ams_up(response: requests.Response) -> float:
    samples = [
        s
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "ams_up"
    ]
    assert len(samples) == 1, samples
    return samples[0].value


def tls_client(pki: Pki, **settings: object) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.server_ca))
    for name, value in settings.items():
        setattr(context, name, value)
    return context


def handshake(server: Protected, context: ssl.SSLContext) -> tuple[str, str]:
    """Connect, send one request, return (TLS version, cipher); raises when refused."""
    with socket.create_connection((server.host, server.port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=server.host) as secured:
            secured.sendall(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
            answer = secured.recv(1024)
            assert answer.startswith(b"HTTP/1.0 200"), answer
            version, cipher = secured.version(), secured.cipher()
            assert version is not None and cipher is not None
            return version, cipher[0]


# ---------------------------------------------------------------------------------------------
# TLS


def test_tls_serves_metrics_to_a_client_that_trusts_the_server(pki, emulator):
    with protected_exporter(emulator, web(pki)) as server:
        response = get(server.https + "/metrics", pki)
        assert response.status_code == 200
        assert ams_up(response) == 1
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.https + "/healthz", verify=str(emulator.ca_file), timeout=30)


def test_plain_http_to_the_tls_port_fails_cleanly_and_the_server_keeps_serving(pki, emulator):
    with protected_exporter(emulator, web(pki)) as server:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://{server.host}:{server.port}/metrics", timeout=30)
        # A client that connects and never starts the handshake does not block the others.
        with socket.create_connection((server.host, server.port), timeout=30):
            for _ in range(3):
                assert get(server.https + "/healthz", pki).status_code == 200


def test_min_version_tls13_refuses_a_tls12_client(pki, emulator):
    with protected_exporter(emulator, web(pki, "min_version: TLS13\n")) as server:
        old = tls_client(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLError):
            handshake(server, old)
        assert handshake(server, tls_client(pki))[0] == "TLSv1.3"


def test_tls12_is_accepted_by_default(pki, emulator):
    with protected_exporter(emulator, web(pki)) as server:
        version, _ = handshake(server, tls_client(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
        assert version == "TLSv1.2"


def test_cipher_suites_are_honoured_for_tls12(pki, emulator):
    config = web(
        pki,
        """\
        max_version: TLS12
        cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
        """,
    )
    with protected_exporter(emulator, config) as server:
        _, cipher = handshake(server, tls_client(pki))
        assert cipher == "ECDHE-ECDSA-AES256-GCM-SHA384"
        other = tls_client(pki)
        other.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with pytest.raises(ssl.SSLError):
            handshake(server, other)


# ---------------------------------------------------------------------------------------------
# Mutual TLS


def test_require_and_verify_refuses_clients_without_a_trusted_certificate(pki, emulator):
    config = web(
        pki,
        f"""\
        client_auth_type: RequireAndVerifyClientCert
        client_ca_file: {pki.client_ca}
        """,
    )
    with protected_exporter(emulator, config) as server:
        for client_cert in (None, pki.stranger):
            with pytest.raises(requests.exceptions.ConnectionError):
                get(server.https + "/metrics", pki, cert=client_cert)
        response = get(server.https + "/metrics", pki, cert=pki.client)
        assert response.status_code == 200
        assert ams_up(response) == 1


def test_verify_if_given_admits_no_certificate_but_not_an_untrusted_one(pki, emulator):
    config = web(
        pki,
        f"""\
        client_auth_type: VerifyClientCertIfGiven
        client_ca_file: {pki.client_ca}
        """,
    )
    with protected_exporter(emulator, config) as server:
        assert get(server.https + "/healthz", pki).status_code == 200
        assert get(server.https + "/healthz", pki, cert=pki.client).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            get(server.https + "/healthz", pki, cert=pki.stranger)


def test_client_allowed_sans_refuses_a_trusted_client_with_another_name(pki, emulator):
    config = web(
        pki,
        f"""\
        client_auth_type: RequireAndVerifyClientCert
        client_ca_file: {pki.client_ca}
        client_allowed_sans: [prometheus.test]
        """,
    )
    with protected_exporter(emulator, config) as server:
        assert get(server.https + "/healthz", pki, cert=pki.client).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            get(server.https + "/healthz", pki, cert=pki.other_client)


# ---------------------------------------------------------------------------------------------
# Basic auth


def test_basic_auth_admits_the_right_password_only(pki, emulator):
    config = web(pki, rest=f"basic_auth_users:\n  prometheus: {HASH}\n")
    with protected_exporter(emulator, config) as server:
        good = get(server.https + "/metrics", pki, auth=("prometheus", PASSWORD))
        assert good.status_code == 200 and ams_up(good) == 1
        for auth in (("prometheus", "wrong"), ("nobody", PASSWORD), None):
            refused = get(server.https + "/metrics", pki, auth=auth)
            assert refused.status_code == 401
            assert refused.headers["WWW-Authenticate"].startswith("Basic realm=")
            assert "ams_up" not in refused.text
        # The cached success does not admit another password.
        assert get(server.https + "/metrics", pki, auth=("prometheus", "x")).status_code == 401
        assert get(server.https + "/", pki, auth=("prometheus", PASSWORD)).status_code == 200


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/metrics", "/no-such-path"])
def test_basic_auth_protects_every_path_as_exporter_toolkit_does(pki, emulator, path):
    config = web(pki, rest=f"basic_auth_users:\n  prometheus: {HASH}\n")
    with protected_exporter(emulator, config) as server:
        assert get(server.https + path, pki).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic cHJvbWV0aGV1cw==",  # "prometheus", no colon
        "Bearer eyJhbGciOiJub25lIn0.e30.",
        "Basic " + "QQ==" * 2000,
    ],
)
def test_malformed_authorization_headers_get_401(pki, emulator, header):
    config = web(pki, rest=f"basic_auth_users:\n  prometheus: {HASH}\n")
    with protected_exporter(emulator, config) as server:
        response = get(server.https + "/metrics", pki, headers={"Authorization": header})
        assert response.status_code == 401


def test_basic_auth_without_tls_and_configured_headers(pki, emulator):
    config = parse_web_config(
        f"""\
http_server_config:
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
basic_auth_users:
  prometheus: {HASH}
""",
        base_dir=pki.folder,
    )
    with protected_exporter(emulator, config) as server:
        url = f"http://{server.host}:{server.port}/metrics"
        refused = requests.get(url, timeout=30)
        good = requests.get(url, auth=("prometheus", PASSWORD), timeout=30)
    for response in (refused, good):
        assert response.headers["X-Frame-Options"] == "deny"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert refused.status_code == 401 and good.status_code == 200


# ---------------------------------------------------------------------------------------------
# Configuration errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_confg: {}\n", "tls_server_confg: unknown key"),
        ("tls_server_config: {cert_file: server.crt}\n", "tls_server_config.key_file: required"),
        (
            "tls_server_config: {cert_file: nope.crt, key_file: server.key}\n",
            "tls_server_config.cert_file: ",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.crt}\n",
            "tls_server_config.cert_file: cannot be used",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, "
            "client_auth_type: Sometimes}\n",
            "tls_server_config.client_auth_type: expected one of NoClientCert, RequestClientCert, "
            "RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert, "
            "got 'Sometimes'",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, "
            "client_auth_type: RequireAnyClientCert}\n",
            "RequireAnyClientCert (a certificate demanded but not verified) is not possible",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, "
            "client_auth_type: RequireAndVerifyClientCert}\n",
            "tls_server_config.client_ca_file: required with",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, "
            "client_ca_file: client-ca.crt}\n",
            "without a client auth policy",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, "
            "min_version: TLS13, max_version: TLS12}\n",
            "tls_server_config.min_version: TLS13 is above max_version TLS12",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, min_version: 1.2}\n",
            "tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13, got a number",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, "
            "cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]}\n",
            "tls_server_config.cipher_suites[0]: expected a supported cipher suite, one of "
            "TLS_RSA_WITH_AES_128_CBC_SHA, ",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, "
            "curve_preferences: [CurveP128]}\n",
            "tls_server_config.curve_preferences[0]: expected one of CurveP256, CurveP384, "
            "CurveP521, X25519, got 'CurveP128'",
        ),
        (
            "http_server_config: {headers: {Server: nginx}}\n",
            "http_server_config.headers.Server: not a header that may be set",
        ),
        ("http_server_config: {http2: maybe}\n", "http_server_config.http2: expected true"),
        ("basic_auth_users: [alice]\n", "basic_auth_users: expected a mapping"),
        ("basic_auth_users: {alice: hunter2}\n", "basic_auth_users.alice: expected a bcrypt hash"),
        ("basic_auth_users:\n  alice: x\n  alice: y\n", "key 'alice' appears twice"),
        ("- a list\n", "expected a mapping, got a list"),
        ("tls_server_config: {cert_file: [a\n", "invalid YAML"),
    ],
)
def test_configuration_errors_name_the_key(pki, text, message):
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(text, base_dir=pki.folder)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tls_server_config: {cert_fle: server.crt, key_file: server.key}\n",
            "tls_server_config.cert_fle: unknown key; did you mean 'cert_file'?",
        ),
        (
            "basic_auth_user:\n  alice: x\n",
            "basic_auth_user: unknown key; did you mean 'basic_auth_users'?",
        ),
        (
            "http_server_config:\n  header: {X-Frame-Options: deny}\n",
            "http_server_config.header: unknown key; did you mean 'headers'?",
        ),
        (
            "http_server_config:\n  headers: {X-Frame-Option: deny}\n",
            "http_server_config.headers.X-Frame-Option: not a header that may be set; "
            "did you mean 'X-Frame-Options'?",
        ),
        (
            TLS + "  client_auth_type: RequireAndVerifyClientCrt\n",
            "tls_server_config.client_auth_type: expected one of NoClientCert, RequestClientCert, "
            "RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert, "
            "got 'RequireAndVerifyClientCrt'; did you mean 'RequireAndVerifyClientCert'?",
        ),
        (
            TLS + "  min_version: TLS1.2\n",
            "tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13, "
            "got 'TLS1.2'; did you mean 'TLS12'?",
        ),
        (
            TLS + "  curve_preferences: [CurveP256, P384]\n",
            "tls_server_config.curve_preferences[1]: expected one of CurveP256, CurveP384, "
            "CurveP521, X25519, got 'P384'; did you mean 'CurveP384'?",
        ),
    ],
)
def test_misspelt_keys_and_names_get_did_you_mean(pki, text, message):
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(text, base_dir=pki.folder)
    assert str(caught.value) == message


def test_a_misspelt_cipher_suite_gets_did_you_mean_and_an_unsupported_one_does_not(pki):
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(
            TLS + "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA265]\n", base_dir=pki.folder
        )
    assert str(caught.value).startswith(
        "tls_server_config.cipher_suites[0]: expected a supported cipher suite, one of "
        "TLS_RSA_WITH_AES_128_CBC_SHA, "
    )
    assert str(caught.value).endswith(
        "got 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA265'; "
        "did you mean 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'?"
    )
    # Go knows RC4 suites; a suggestion of a suite that merely looks alike would mislead.
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", base_dir=pki.folder)
    assert str(caught.value).endswith(
        "TLS_CHACHA20_POLY1305_SHA256, got 'TLS_RSA_WITH_RC4_128_SHA'"
    )


def test_a_user_name_with_a_colon_is_refused_without_quoting_it(pki):
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(f"basic_auth_users:\n  'alice:hunter2': '{HASH}'\n", base_dir=pki.folder)
    assert str(caught.value) == (
        "basic_auth_users: the user name at line 2 contains ':', which basic auth cannot carry "
        "in a user name"
    )


def test_errors_in_a_loaded_file_name_the_file_once(tmp_path):
    file = tmp_path / "web.yml"
    file.write_text("tls_server_confg: {}\n")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(file)
    assert str(caught.value) == (
        f"{file}: tls_server_confg: unknown key; did you mean 'tls_server_config'?"
    )
    file.write_text("tls_server_config: {cert_file: [a\n")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(file)
    assert str(caught.value).startswith(f"{file}:2:1: invalid YAML: ")
    assert str(caught.value).count(str(file)) == 1


def test_empty_file_means_no_protection(pki):
    assert parse_web_config("", base_dir=pki.folder) == WebConfig()


def test_missing_bcrypt_is_a_clear_error(tmp_path):
    file = tmp_path / "web.yml"
    file.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    code = (
        "import sys; sys.modules['bcrypt'] = None\n"
        "from pathlib import Path\n"
        "from exporter.web.webconfig import load_web_config, WebConfigError\n"
        "try:\n"
        f"    load_web_config(Path({str(file)!r}))\n"
        "except WebConfigError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "needs the bcrypt package" in result.stdout
    assert "ams-exporter[bcrypt]" in result.stdout


def test_documented_example_is_valid(tmp_path, pki):
    example = (REPO / "docs" / "web-config.example.yml").read_text()
    referenced = set(re.findall(r"(?m)^\s+\w+_file: (\S+)$", example))
    assert referenced, "the example should show the certificate files"
    sources = {
        "server.crt": pki.server_cert,
        "server.key": pki.server_key,
        "clients-ca.crt": pki.client_ca,
    }
    for name in referenced:
        shutil.copy(sources[name], tmp_path / name)
    (tmp_path / "web.yml").write_text(example)
    config = load_web_config(tmp_path / "web.yml")
    assert config.tls is not None and config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert config.basic_auth_users


# ---------------------------------------------------------------------------------------------
# The flag


def test_cli_serves_the_demo_behind_tls_and_basic_auth(tmp_path, pki):
    file = tmp_path / "web.yml"
    file.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert}\n"
        f"  key_file: {pki.server_key}\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n"
    )
    argv = [
        *(sys.executable, "-m", "exporter", "--demo", "--demo.jobs=20"),
        *("--web.listen-address=127.0.0.1:0", f"--web.config.file={file}"),
    ]
    with Child(argv, tmp_path, "exporter", cwd=REPO) as exporter:
        _, port = exporter.listening_address()
        url = f"https://127.0.0.1:{port}/metrics"
        assert get(url, pki).status_code == 401
        response = get(url, pki, auth=("prometheus", PASSWORD))
        assert response.status_code == 200 and "ams_up" in response.text


def test_cli_refuses_an_invalid_web_config(tmp_path):
    file = tmp_path / "web.yml"
    file.write_text("basic_auth_users:\n  alice: hunter2\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--demo", f"--web.config.file={file}"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{file}: basic_auth_users.alice: expected a bcrypt hash" in result.stderr
    assert "hunter2" not in result.stderr


def test_config_check_also_checks_the_web_config(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(
        "accounts:\n"
        "  - name: prod\n"
        "    endpoint: https://prodams.restv2.westeurope.media.azure.net/api/\n"
        "    tenant: contoso.onmicrosoft.com\n"
        "    client_id: 00000000-0000-0000-0000-000000000000\n"
        "    client_secret: not-checked-here\n"
    )
    web_file = tmp_path / "web.yml"
    web_file.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "exporter", f"--config.file={config}"),
            *(f"--web.config.file={web_file}", "--config.check"),
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "tls_server_config.cert_file:" in result.stderr
    assert "missing.crt is not a readable file" in result.stderr
