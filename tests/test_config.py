"""The configuration file: every accepted value, every error class and its message, no secret leaks."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ams_emulator import Emulator
from exporter.config.accounts import (
    ACCOUNT_KEYS,
    JOBS_KEYS,
    TOP_LEVEL_KEYS,
    load_config,
    parse_config,
)
from exporter.config.describe import describe_config
from exporter.config.durations import format_duration, parse_duration
from exporter.config.model import (
    CLOUDS,
    AccountConfig,
    ClientCertificate,
    ClientSecret,
    Cloud,
    Config,
    JobsConfig,
    ManagedIdentity,
    Secret,
)
from exporter.config.yamlio import MAX_CONFIG_SIZE
from exporter.errors import ConfigError
from tests.support.harness import config_for

REPO = Path(__file__).resolve().parent.parent
SECRET = "Sup3r-s3cret-value"
ENV = {"AMS_SECRET": SECRET, "AMS_HOST": "prodams.restv2.westeurope.media.azure.net"}
JOB_ID = "nb:jid:UUID:1b2c3d4e-0000-4000-8000-00000000abcd"
REMOVE = object()


def account(**changes: Any) -> dict[str, Any]:
    """A valid client-secret account; ``changes`` replace keys (``REMOVE`` deletes one)."""
    raw: dict[str, Any] = {
        "name": "prod",
        "endpoint": "https://prodams.restv2.westeurope.media.azure.net/api/",
        "tenant": "contoso.onmicrosoft.com",
        "client_id": "00000000-0000-0000-0000-000000000001",
        "client_secret": "${AMS_SECRET}",
    }
    for key, value in changes.items():
        if value is REMOVE:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def managed(**changes: Any) -> dict[str, Any]:
    """A valid managed-identity account."""
    base = {
        "tenant": REMOVE,
        "client_id": REMOVE,
        "client_secret": REMOVE,
        "managed_identity": True,
    }
    return account(**{**base, **changes})


def parse(*accounts: dict[str, Any], env: dict[str, str] = ENV, **kwargs: Any) -> Config:
    return parse_config(yaml.safe_dump({"accounts": list(accounts)}), env, **kwargs)


def first(*accounts: dict[str, Any], **kwargs: Any) -> AccountConfig:
    return parse(*accounts, **kwargs).accounts[0]


def error(*accounts: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(*accounts, **kwargs)
    return str(caught.value)


def text_error(text: str, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, ENV, **kwargs)
    return str(caught.value)


# ---------------------------------------------------------------------------------------------
# Certificates made for the tests


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


class Pems:
    """A key with its certificate, and a second, unrelated key."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.other_key = ec.generate_private_key(ec.SECP256R1())
        self.key_pem = _key_pem(self.key)
        self.cert_pem = _certificate(self.key, "ams-exporter-test")


@pytest.fixture(scope="module")
def pems() -> Pems:
    return Pems()


def write_config(folder: Path, *accounts: dict[str, Any]) -> Path:
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump({"accounts": list(accounts)}))
    return path


# ---------------------------------------------------------------------------------------------
# Valid configurations


def test_minimal_account_gets_every_default() -> None:
    got = first(account())
    assert got == AccountConfig(
        name="prod",
        endpoint="https://prodams.restv2.westeurope.media.azure.net/api/",
        cloud="AzureCloud",
        authority_host="https://login.microsoftonline.com",
        resource="https://rest.media.azure.net",
        tenant="contoso.onmicrosoft.com",
        client_id="00000000-0000-0000-0000-000000000001",
        credential=ClientSecret(Secret(SECRET)),
        ca_file=None,
        timeout=10.0,
        jobs=JobsConfig(
            ids=(), name_prefix="", filter="", finished_window=86400.0, max_jobs=2000, tasks=True
        ),
        redirect_hosts=(),
    )


def test_every_key_given_is_read(tmp_path: Path, pems: Pems) -> None:
    (tmp_path / "ca.pem").write_bytes(pems.cert_pem)
    raw = account(
        cloud="AzureChinaCloud",
        authority_host="https://login.example.cn/",
        resource="https://rest.example.cn",
        ca_file="ca.pem",
        timeout="1m30s",
        jobs={
            "ids": [JOB_ID],
            "name_prefix": "encode-",
            "filter": "Priority gt 2",
            "finished_window": "2h",
            "max_jobs": 50,
            "tasks": False,
        },
    )
    got = load_config(write_config(tmp_path, raw), ENV).accounts[0]
    assert (got.cloud, got.authority_host, got.resource) == (
        "AzureChinaCloud",
        "https://login.example.cn",
        "https://rest.example.cn",
    )
    assert got.ca_file == tmp_path / "ca.pem"
    assert got.timeout == 90.0
    assert got.jobs == JobsConfig(
        ids=(JOB_ID,),
        name_prefix="encode-",
        filter="Priority gt 2",
        finished_window=7200.0,
        max_jobs=50,
        tasks=False,
    )


def test_cloud_table_matches_the_reference() -> None:
    assert dict(CLOUDS) == {
        "AzureCloud": Cloud(
            "https://login.microsoftonline.com",
            "https://rest.media.azure.net",
            ("*.cloudapp.net", "*.media.azure.net"),
        ),
        "AzureChinaCloud": Cloud(
            "https://login.chinacloudapi.cn",
            "https://rest.media.chinacloudapi.cn",
            ("*.chinacloudapp.cn", "*.media.chinacloudapi.cn"),
        ),
        "AzureUSGovernment": Cloud(
            "https://login.microsoftonline.us",
            "https://rest.media.usgovcloudapi.net",
            ("*.usgovcloudapp.net", "*.media.usgovcloudapi.net"),
        ),
        "AzureGermanCloud": Cloud(
            "https://login.microsoftonline.de",
            "https://rest.media.cloudapi.de",
            ("*.azurecloudapp.de", "*.media.cloudapi.de"),
        ),
    }


@pytest.mark.parametrize("cloud", list(CLOUDS))
def test_cloud_sets_authority_host_and_resource(cloud: str) -> None:
    got = first(account(cloud=cloud))
    assert (got.authority_host, got.resource) == (
        CLOUDS[cloud].authority_host,
        CLOUDS[cloud].resource,
    )


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://a.restv2.westus.media.azure.net/api/", "https://a.restv2.westus.media.azure.net/api/"),
        ("https://a.restv2.westus.media.azure.net/api", "https://a.restv2.westus.media.azure.net/api/"),
        ("https://a.restv2.westcentralus.media.azure.net/API", "https://a.restv2.westcentralus.media.azure.net/API/"),
        ("https://media.windows.net/", "https://media.windows.net/"),
        ("https://media.chinacloudapi.cn", "https://media.chinacloudapi.cn/"),
        ("HTTPS://127.0.0.1:8443/api/", "https://127.0.0.1:8443/api/"),
        ("https://[::1]:8443/", "https://[::1]:8443/"),
    ],
)  # fmt: skip
def test_endpoint_is_normalized_to_end_with_a_slash(given: str, stored: str) -> None:
    assert first(account(endpoint=given)).endpoint == stored


def test_managed_identity_needs_no_tenant_and_client_id_is_optional() -> None:
    system = first(managed())
    user = first(managed(client_id="11111111-2222-3333-4444-555555555555"))
    assert system.credential == ManagedIdentity()
    assert (system.tenant, system.client_id) == (None, None)
    assert user.client_id == "11111111-2222-3333-4444-555555555555"


def test_finished_window_may_be_zero_and_max_jobs_may_be_zero() -> None:
    jobs = first(account(jobs={"finished_window": "0s", "max_jobs": 0})).jobs
    assert (jobs.finished_window, jobs.max_jobs) == (0.0, 0)


@pytest.mark.parametrize("jobs", [None, {}])
def test_empty_jobs_section_means_defaults(jobs: dict[str, Any] | None) -> None:
    assert first(account(jobs=jobs)).jobs == JobsConfig()


def test_yaml_booleans_and_merge_keys_are_read() -> None:
    # Anchors live in list items so that the only top-level key stays `accounts`.
    text = """
accounts:
  - &root
    name: one
    endpoint: https://media.windows.net/
    managed_identity: yes
    jobs: &jobs {tasks: off, max_jobs: 5}
  - &two
    <<: *root
    name: two
    jobs:
      <<: *jobs
      tasks: on
  - <<: [*two, *root]
    name: three
"""
    got = parse_config(text, ENV)
    assert [(a.name, a.jobs.tasks, a.jobs.max_jobs) for a in got.accounts] == [
        ("one", False, 5),
        ("two", True, 5),
        ("three", True, 5),
    ]


# ---------------------------------------------------------------------------------------------
# Environment variables


def test_variables_expand_anywhere_in_a_string() -> None:
    got = first(
        account(endpoint="https://${AMS_HOST}/api/", jobs={"name_prefix": "x-${AMS_HOST}-"})
    )
    assert got.endpoint == "https://prodams.restv2.westeurope.media.azure.net/api/"
    assert got.jobs.name_prefix == "x-prodams.restv2.westeurope.media.azure.net-"
    assert got.credential == ClientSecret(Secret(SECRET))


def test_missing_variable_names_key_path_and_variable() -> None:
    message = error(account(), env={"AMS_HOST": "x"})
    assert message == "accounts[0].client_secret: environment variable AMS_SECRET is not set"


def test_double_dollar_is_a_literal_dollar_and_a_lone_dollar_stays() -> None:
    got = first(account(client_secret="pa$$word${AMS_HOST}", jobs={"name_prefix": "a$b"}))
    assert got.credential == ClientSecret(
        Secret("pa$wordprodams.restv2.westeurope.media.azure.net")
    )
    assert got.jobs.name_prefix == "a$b"


def test_expanded_values_are_not_expanded_again() -> None:
    got = first(account(client_secret="${AMS_SECRET}"), env={"AMS_SECRET": "${AMS_HOST}$$"})
    assert got.credential == ClientSecret(Secret("${AMS_HOST}$$"))


@pytest.mark.parametrize("reference", ["${AMS_SECRET:-x}", "${AMS_SECRET", "${1A}", "${}"])
def test_malformed_variable_reference_is_an_error(reference: str) -> None:
    assert error(account(client_secret=reference)) == (
        "accounts[0].client_secret: invalid variable reference: write ${NAME} "
        "(letters, digits, _) and $$ for a literal $"
    )


def test_keys_are_not_expanded() -> None:
    message = text_error("accounts:\n  - ${AMS_HOST}: 1\n")
    assert (
        message == f"accounts[0]: an unknown key at line 2; known keys: {', '.join(ACCOUNT_KEYS)}"
    )


# ---------------------------------------------------------------------------------------------
# YAML and the top level


def test_yaml_syntax_error_gives_file_line_and_column_without_the_line() -> None:
    text = "accounts:\n  - name: prod\n    client_secret: 'abc\"def\n  - x: [\n"
    message = text_error(text, source="/etc/ams/config.yml")
    assert re.fullmatch(r"/etc/ams/config\.yml:\d+:\d+: invalid YAML: .+", message)
    assert "abc" not in message


@pytest.mark.parametrize("line", ["client_secret: *s3cr3t", "client_secret: !s3cr3t x"])
def test_yaml_error_does_not_quote_alias_or_tag_names(line: str) -> None:
    message = text_error(f"accounts:\n  - name: a\n    {line}\n", source="c.yml")
    assert message.startswith("c.yml:3:")
    assert "s3cr3t" not in message


def test_yaml_key_given_twice_is_an_error() -> None:
    message = text_error(
        "accounts:\n  - name: a\n    timeout: 5s\n    timeout: 6s\n", source="c.yml"
    )
    assert message == "c.yml:4:5: invalid YAML: key 'timeout' appears twice (first on line 3)"


def test_impossible_date_is_an_error() -> None:
    message = text_error("accounts:\n  - name: 2024-02-30\n", source="c.yml")
    assert message == (
        "c.yml:2:11: invalid YAML: cannot read this value as a date; "
        "put it in quotes if it is meant as text"
    )


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_file_is_an_error(text: str) -> None:
    message = text_error(text, source="c.yml")
    assert message == "c.yml: the configuration is empty; it needs an 'accounts' list"


@pytest.mark.parametrize(("text", "kind"), [("- a\n", "a list"), ("prod\n", "a string")])
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    message = text_error(text)
    assert message == (
        f"configuration: expected a mapping with an 'accounts' key at the top, got {kind}"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accounts: []\n", "accounts: needs at least one account"),
        ("accounts:\n", "accounts: needs at least one account"),
        ("accounts: {name: a}\n", "accounts: expected a list of accounts, got a mapping"),
        ("accounts: [prod]\n", "accounts[0]: expected a mapping, got a string"),
        ("{}\n", "accounts: required: the configuration needs at least one account"),
    ],
)
def test_accounts_must_be_a_non_empty_list_of_mappings(text: str, expected: str) -> None:
    assert text_error(text) == expected


def test_unknown_top_level_key_suggests_the_right_one() -> None:
    assert text_error("acounts: []\n") == "acounts: unknown key; did you mean 'accounts'?"


# ---------------------------------------------------------------------------------------------
# Keys and types


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"timout": "5s"}, "accounts[0].timout: unknown key; did you mean 'timeout'?"),
        ({"clientsecret": "x"}, "accounts[0].clientsecret: unknown key; did you mean 'client_secret'?"),
        ({"jobs": {"finished": "1h"}}, "accounts[0].jobs.finished: unknown key; did you mean 'finished_window'?"),
    ],
)  # fmt: skip
def test_unknown_key_suggests_the_closest(changes: dict[str, Any], expected: str) -> None:
    assert error(account(**changes)) == expected


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    message = error(account(jobs={"zzz": 1}))
    assert message == f"accounts[0].jobs.zzz: unknown key; known keys: {', '.join(JOBS_KEYS)}"


def test_non_string_key_is_an_error() -> None:
    assert (
        text_error("accounts:\n  - 1: a\n")
        == "accounts[0]: keys must be strings, got an integer (1)"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": ["a"]}, "accounts[0].name: expected a string, got a list"),
        ({"name": False}, "accounts[0].name: expected a string, got a boolean (put it in quotes)"),
        ({"tenant": 12}, "accounts[0].tenant: expected a string, got an integer (put it in quotes)"),
        ({"endpoint": None}, "accounts[0].endpoint: expected a string, got an empty value"),
        ({"cloud": {"a": 1}}, "accounts[0].cloud: expected a string, got a mapping"),
        ({"jobs": ["x"]}, "accounts[0].jobs: expected a mapping, got a list"),
        ({"jobs": {"tasks": "true"}}, "accounts[0].jobs.tasks: expected true or false, got a string"),
        ({"jobs": {"tasks": 1}}, "accounts[0].jobs.tasks: expected true or false, got an integer"),
        ({"jobs": {"max_jobs": "10"}}, "accounts[0].jobs.max_jobs: expected a whole number, got a string"),
        ({"jobs": {"max_jobs": True}}, "accounts[0].jobs.max_jobs: expected a whole number, got a boolean"),
        ({"jobs": {"max_jobs": 1.5}}, "accounts[0].jobs.max_jobs: expected a whole number, got a number"),
        ({"jobs": {"max_jobs": -1}}, "accounts[0].jobs.max_jobs: must be 0 or more, got -1"),
        ({"jobs": {"ids": "x"}}, "accounts[0].jobs.ids: expected a list of job IDs, got a string"),
        ({"jobs": {"name_prefix": 5}}, "accounts[0].jobs.name_prefix: expected a string, got an integer"),
        ({"jobs": {"filter": ["a"]}}, "accounts[0].jobs.filter: expected a string, got a list"),
    ],
)  # fmt: skip
def test_wrong_type_is_an_error(changes: dict[str, Any], expected: str) -> None:
    assert error(account(**changes)) == expected


def test_error_in_a_later_account_names_its_index_and_the_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, account(), account(name="b", jobs={"finished_window": "24 hours"})
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    assert str(caught.value) == (
        f"{path}: accounts[1].jobs.finished_window: "
        "expected a duration such as 30s, 5m or 24h, got '24 hours'"
    )


# ---------------------------------------------------------------------------------------------
# name, endpoint, cloud, URLs


@pytest.mark.parametrize("name", ["prod", "a", "EU-west_2.ams", "9" * 63])
def test_valid_names(name: str) -> None:
    assert first(account(name=name)).name == name


@pytest.mark.parametrize("name", ["-prod", "_a", "has space", "prod/x", "ünï", "9" * 64])
def test_invalid_name_is_an_error(name: str) -> None:
    assert error(account(name=name)) == (
        f"accounts[0].name: {name!r} is not a valid name: use 1 to 63 letters, digits, '_', "
        "'.' or '-', starting with a letter or digit"
    )


def test_missing_and_empty_name_are_errors() -> None:
    assert error(account(name=REMOVE)) == "accounts[0].name: required"
    assert error(account(name="")) == "accounts[0].name: must not be empty"


def test_duplicate_name_names_both_indexes() -> None:
    message = error(account(name="a"), managed(name="b"), managed(name="a"))
    assert message == "accounts[2].name: 'a' is already used by accounts[0]"


def test_missing_endpoint_is_an_error() -> None:
    assert error(account(endpoint=REMOVE)) == "accounts[0].endpoint: required"


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("http://prodams.restv2.westeurope.media.azure.net/api/",
         "plain http:// is not accepted: the token would travel unencrypted; use https://"),
        ("ftp://media.windows.net/", "expected an https:// URL, got 'ftp://media.windows.net/'"),
        ("media.windows.net", "expected an https:// URL, got 'media.windows.net'"),
        ("https:///api/", "the URL has no host: 'https:///api/'"),
        ("https://h/api/?sig=k3y", "must not have a query (?...) or fragment (#...)"),
        ("https://h:99999/api/", "not a valid URL (Port out of range 0-65535)"),
        ("https://h:0/api/", "port 0 is not a valid port"),
        ("https://h /api/", "must not contain spaces"),
        ("https://h/foo/", "expected an account endpoint ending in /api/ such as "
         "https://<account>.restv2.<region>.media.azure.net/api/, or a legacy root such as "
         "https://media.windows.net/, got 'https://h/foo/'"),
        ("https://h/api//", "expected an account endpoint ending in /api/ such as "
         "https://<account>.restv2.<region>.media.azure.net/api/, or a legacy root such as "
         "https://media.windows.net/, got 'https://h/api//'"),
    ],
)  # fmt: skip
def test_bad_endpoint_is_an_error(endpoint: str, reason: str) -> None:
    assert error(account(endpoint=endpoint)) == f"accounts[0].endpoint: {reason}"


@pytest.mark.parametrize("endpoint", ["https://user:hunter2@h/api/", "ftp://u:hunter2@h/"])
def test_endpoint_with_credentials_is_refused_without_echoing_them(endpoint: str) -> None:
    message = error(account(endpoint=endpoint))
    assert message == "accounts[0].endpoint: must not contain a user name or password"


@pytest.mark.parametrize(("value", "kind"), [(1.5, "a number"), (-3, "an integer"), ([], "a list")])
def test_duration_of_another_type_is_an_error(value: object, kind: str) -> None:
    assert error(account(timeout=value)) == (
        f"accounts[0].timeout: expected a duration such as 30s, 5m or 24h, got {kind}"
    )


def test_unknown_cloud_lists_the_four_and_suggests() -> None:
    assert error(account(cloud="AzureUSGov")) == (
        "accounts[0].cloud: expected one of AzureCloud, AzureChinaCloud, AzureUSGovernment, "
        "AzureGermanCloud, got 'AzureUSGov'; did you mean 'AzureUSGovernment'?"
    )


@pytest.mark.parametrize("key", ["authority_host", "resource"])
def test_authority_host_and_resource_must_be_https(key: str) -> None:
    message = error(account(**{key: "http://login.example"}))
    assert message == (
        f"accounts[0].{key}: plain http:// is not accepted: the token would travel unencrypted; "
        "use https://"
    )


def test_invalid_tenant_is_an_error() -> None:
    assert error(account(tenant="contoso/../x")) == (
        "accounts[0].tenant: expected a tenant ID (GUID) or a domain such as "
        "contoso.onmicrosoft.com, got 'contoso/../x'"
    )


# ---------------------------------------------------------------------------------------------
# Credentials


def test_no_credential_lists_the_four_kinds() -> None:
    assert error(account(client_secret=REMOVE)) == (
        "accounts[0]: no credential: give one of client_secret, client_secret_file, "
        "client_certificate_file or managed_identity: true"
    )


def test_managed_identity_false_counts_as_not_given() -> None:
    message = error(account(client_secret=REMOVE, managed_identity=False))
    assert message.startswith("accounts[0]: no credential:")
    assert first(account(managed_identity=False)).credential == ClientSecret(Secret(SECRET))


def test_two_credentials_name_both() -> None:
    message = error(account(client_certificate_file="cert.pem"))
    assert message == (
        "accounts[0]: give only one credential, found client_secret and client_certificate_file"
    )


@pytest.mark.parametrize("build", [managed, account])
def test_managed_identity_must_be_a_real_boolean(build: Any) -> None:
    message = error(build(managed_identity="yes"))
    assert message == "accounts[0].managed_identity: expected true or false, got a string"


@pytest.mark.parametrize("key", ["tenant", "client_id"])
def test_client_secret_needs_tenant_and_client_id(key: str) -> None:
    assert error(account(**{key: REMOVE})) == f"accounts[0].{key}: required with client_secret"


def test_empty_client_secret_is_an_error() -> None:
    assert error(account(client_secret="")) == "accounts[0].client_secret: must not be empty"
    message = error(account(), env={"AMS_SECRET": ""})
    assert message == "accounts[0].client_secret: must not be empty"


def test_secret_file_is_read_relative_to_the_config_and_newline_stripped(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ams").write_text(SECRET + "\r\n")
    path = write_config(tmp_path, account(client_secret=REMOVE, client_secret_file="secrets/ams"))
    credential = load_config(path, ENV).accounts[0].credential
    assert credential == ClientSecret(Secret(SECRET), tmp_path / "secrets" / "ams")


def test_missing_secret_file_names_key_and_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, account(client_secret=REMOVE, client_secret_file="nope"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    assert str(caught.value) == (
        f"{path}: accounts[0].client_secret_file: cannot read {tmp_path / 'nope'}: "
        "No such file or directory"
    )


@pytest.mark.parametrize("content", [b"", b"\n", b"  \n"])
def test_empty_secret_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "s").write_bytes(content)
    message = error(account(client_secret=REMOVE, client_secret_file=str(tmp_path / "s")))
    assert message == f"accounts[0].client_secret_file: {tmp_path / 's'} is empty"


def test_secret_file_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    message = error(account(client_secret=REMOVE, client_secret_file=str(tmp_path)))
    assert message == f"accounts[0].client_secret_file: {tmp_path} is not a regular file"


def test_certificate_file_is_read_and_checked(tmp_path: Path, pems: Pems) -> None:
    pem = pems.key_pem + pems.cert_pem
    (tmp_path / "cert.pem").write_bytes(pem)
    path = write_config(tmp_path, account(client_secret=REMOVE, client_certificate_file="cert.pem"))
    credential = load_config(path, ENV).accounts[0].credential
    assert credential == ClientCertificate(Secret(pem.decode()), tmp_path / "cert.pem")


def test_certificate_before_key_is_accepted(tmp_path: Path, pems: Pems) -> None:
    (tmp_path / "cert.pem").write_bytes(pems.cert_pem + pems.key_pem)
    got = first(
        account(client_secret=REMOVE, client_certificate_file="cert.pem"), base_dir=tmp_path
    )
    assert isinstance(got.credential, ClientCertificate)


def _cert_error(tmp_path: Path, content: bytes) -> str:
    (tmp_path / "c.pem").write_bytes(content)
    return error(account(client_secret=REMOVE, client_certificate_file="c.pem"), base_dir=tmp_path)


def test_encrypted_certificate_key_is_an_error_that_says_so(tmp_path: Path, pems: Pems) -> None:
    message = _cert_error(tmp_path, _key_pem(pems.key, b"pw") + pems.cert_pem)
    assert message == (
        f"accounts[0].client_certificate_file: the private key in {tmp_path / 'c.pem'} "
        "is encrypted; give an unencrypted PEM key"
    )


def test_certificate_file_without_a_key_is_an_error(tmp_path: Path, pems: Pems) -> None:
    assert _cert_error(tmp_path, pems.cert_pem) == (
        f"accounts[0].client_certificate_file: {tmp_path / 'c.pem'} has no readable PEM "
        "private key (expected key and certificate)"
    )


def test_certificate_file_without_a_certificate_is_an_error(tmp_path: Path, pems: Pems) -> None:
    message = _cert_error(tmp_path, pems.key_pem)
    assert message == (
        f"accounts[0].client_certificate_file: {tmp_path / 'c.pem'} has no PEM certificate "
        "(expected key and certificate)"
    )
    assert "PRIVATE" not in message


def test_certificate_of_another_key_is_an_error(tmp_path: Path, pems: Pems) -> None:
    assert _cert_error(tmp_path, _key_pem(pems.other_key) + pems.cert_pem) == (
        f"accounts[0].client_certificate_file: the private key in {tmp_path / 'c.pem'} "
        "does not belong to its certificate"
    )


def test_certificate_client_needs_tenant(tmp_path: Path, pems: Pems) -> None:
    (tmp_path / "c.pem").write_bytes(pems.key_pem + pems.cert_pem)
    raw = account(client_secret=REMOVE, client_certificate_file="c.pem", tenant=REMOVE)
    message = error(raw, base_dir=tmp_path)
    assert message == "accounts[0].tenant: required with a client certificate"


def test_ca_file_is_checked(tmp_path: Path, pems: Pems) -> None:
    (tmp_path / "ca.pem").write_bytes(pems.cert_pem)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    assert first(account(ca_file="ca.pem"), base_dir=tmp_path).ca_file == tmp_path / "ca.pem"
    assert error(account(ca_file="junk.pem"), base_dir=tmp_path) == (
        f"accounts[0].ca_file: {tmp_path / 'junk.pem'} contains no PEM certificate "
        "(-----BEGIN CERTIFICATE-----)"
    )
    assert error(account(ca_file="none.pem"), base_dir=tmp_path) == (
        f"accounts[0].ca_file: cannot read {tmp_path / 'none.pem'}: No such file or directory"
    )


# ---------------------------------------------------------------------------------------------
# Durations, timeout, jobs


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1y", 31536000.0),
        ("1h30m", 5400.0),
        ("1m30s250ms", 90.25),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", ""),
        ("24 hours", ""),
        ("1.5h", ""),
        ("-5m", ""),
        ("30m1h", ""),
        ("5M", ""),
        ("30", " (add a unit, e.g. 30s)"),
        ("\u0663\u0660s", ""),  # Arabic-Indic digits
        ("1234567890123s", ""),
    ],
)
def test_parse_duration_rejects(text: str, hint: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == f"expected a duration such as 30s, 5m or 24h, got {text!r}{hint}"


@pytest.mark.parametrize("seconds", [0.0, 0.5, 30.0, 90.25, 5400.0, 86400.0, 694861.0])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_bare_number_as_duration_gets_a_hint() -> None:
    assert error(account(timeout=10)) == (
        "accounts[0].timeout: expected a duration such as 30s, 5m or 24h, "
        "got the number 10 (add a unit, e.g. 10s)"
    )


@pytest.mark.parametrize(
    ("timeout", "shown"), [("0s", "0s"), ("0ms", "0s"), ("5m1s", "5m1s"), ("60m", "1h")]
)
def test_timeout_out_of_range_is_an_error(timeout: str, shown: str) -> None:
    assert error(account(timeout=timeout)) == (
        f"accounts[0].timeout: must be more than 0s and at most 5m, got {shown}"
    )


def test_finished_window_beyond_ten_years_is_an_error() -> None:
    assert first(account(jobs={"finished_window": "10y"})).jobs.finished_window == 315360000.0
    assert error(account(jobs={"finished_window": "10y1ms"})) == (
        "accounts[0].jobs.finished_window: must be at most 10y, got 10y1ms"
    )


def test_timeout_of_five_minutes_is_accepted() -> None:
    assert first(account(timeout="5m")).timeout == 300.0


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (["nb:jid:UUID:x"], "accounts[0].jobs.ids[0]: expected a job ID such as "
         "nb:jid:UUID:<guid>, got 'nb:jid:UUID:x'"),
        ([JOB_ID, "1b2c3d4e-0000-4000-8000-00000000abcd"], "accounts[0].jobs.ids[1]: expected a "
         "job ID such as nb:jid:UUID:<guid>, got '1b2c3d4e-0000-4000-8000-00000000abcd'"),
        ([JOB_ID, JOB_ID], f"accounts[0].jobs.ids[1]: {JOB_ID!r} is already listed as "
         "accounts[0].jobs.ids[0]"),
        ([3], "accounts[0].jobs.ids[0]: expected a string, got an integer (put it in quotes)"),
    ],
)  # fmt: skip
def test_bad_job_ids_are_errors(ids: list[Any], expected: str) -> None:
    assert error(account(jobs={"ids": ids})) == expected


@pytest.mark.parametrize("key", ["filter", "name_prefix"])
def test_control_characters_in_filter_and_prefix_are_errors(key: str) -> None:
    assert error(account(jobs={key: "State eq 3\nor 1 eq 1"})) == (
        f"accounts[0].jobs.{key}: must not contain control characters (newline, tab, ...)"
    )


# ---------------------------------------------------------------------------------------------
# Files, secrets, describe


def test_load_config_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yml", ENV)
    message = str(caught.value)
    assert message == f"{tmp_path / 'absent.yml'}: cannot read the configuration file: " + (
        "No such file or directory"
    )


def test_load_config_rejects_non_utf8(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_bytes(b"accounts:\n  - name: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "c.yml", ENV)
    assert str(caught.value) == f"{tmp_path / 'c.yml'}: not UTF-8 text (byte 20)"


def test_load_config_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = write_config(tmp_path, managed())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_config(path, ENV).accounts[0].name == "prod"


def test_secret_never_shows_itself() -> None:
    secret = Secret(SECRET)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>20}", repr([secret])]
    assert all(SECRET not in text for text in shown)
    assert str(secret) == "<redacted>"
    assert secret.reveal() == SECRET
    assert secret == Secret(SECRET) and secret != Secret("other")
    assert SECRET not in repr(ClientSecret(secret))


def test_describe_shows_every_resolved_value_and_no_secret(tmp_path: Path, pems: Pems) -> None:
    (tmp_path / "c.pem").write_bytes(pems.key_pem + pems.cert_pem)
    (tmp_path / "ca.pem").write_bytes(pems.cert_pem)
    (tmp_path / "s.txt").write_text("file-secret-xyz\n")
    path = write_config(
        tmp_path,
        account(ca_file="ca.pem", jobs={"ids": [JOB_ID], "filter": "Name eq 'a\"b'"}),
        account(name="cert", client_secret=REMOVE, client_certificate_file="c.pem", timeout="2m"),
        account(name="file", client_secret=REMOVE, client_secret_file="s.txt"),
        managed(name="mi", cloud="AzureGermanCloud", jobs={"tasks": False, "max_jobs": 7}),
    )
    text = describe_config(load_config(path, ENV))
    key_body = pems.key_pem.decode().splitlines()[1]
    for leaked in (SECRET, "file-secret-xyz", key_body, "PRIVATE KEY"):
        assert leaked not in text
    accounts = text.split("\n  - ")
    assert accounts[0] == "accounts:"
    assert (
        accounts[1]
        == f"""\
name: prod
    endpoint: https://prodams.restv2.westeurope.media.azure.net/api/
    redirect_hosts: []
    cloud: AzureCloud
    authority_host: https://login.microsoftonline.com
    resource: https://rest.media.azure.net
    tenant: contoso.onmicrosoft.com
    client_id: 00000000-0000-0000-0000-000000000001
    credential: client_secret
    client_secret: <redacted>
    ca_file: {tmp_path / "ca.pem"}
    timeout: 10s
    jobs:
      ids:
        - {JOB_ID}
      name_prefix: ""
      filter: Name eq 'a"b'
      finished_window: 1d
      max_jobs: 2000
      tasks: true
      capacity_interval: 5m
      full_listing_interval: 10m
      groups: []  # every job in other
      history:
        duration_buckets: [10s, 30s, 1m, 2m, 5m, 10m, 20m, 30m, 1h, 2h, 4h, 8h, 1d]
        queue_wait_buckets: [1s, 5s, 15s, 30s, 1m, 2m, 5m, 10m, 30m, 1h, 4h, 1d]"""
    )
    assert "    credential: client_certificate\n" in accounts[2]
    assert f"    client_certificate_file: {tmp_path / 'c.pem'}  # key <redacted>\n" in accounts[2]
    assert "    timeout: 2m\n" in accounts[2]
    assert "    credential: client_secret\n" in accounts[3]
    assert f"    client_secret_file: {tmp_path / 's.txt'}  # contents <redacted>\n" in accounts[3]
    assert (
        accounts[4]
        == """\
name: mi
    endpoint: https://prodams.restv2.westeurope.media.azure.net/api/
    redirect_hosts: []
    cloud: AzureGermanCloud
    authority_host: https://login.microsoftonline.de
    resource: https://rest.media.cloudapi.de
    tenant: null
    client_id: null  # system-assigned identity
    credential: managed_identity
    managed_identity: true
    ca_file: null  # system trust store
    timeout: 10s
    jobs:
      ids: []
      name_prefix: ""
      filter: ""
      finished_window: 1d
      max_jobs: 7
      tasks: false
      capacity_interval: 5m
      full_listing_interval: 10m
      groups: []  # every job in other
      history:
        duration_buckets: [10s, 30s, 1m, 2m, 5m, 10m, 20m, 30m, 1h, 2h, 4h, 8h, 1d]
        queue_wait_buckets: [1s, 5s, 15s, 30s, 1m, 2m, 5m, 10m, 30m, 1h, 4h, 1d]
"""
    )


@pytest.mark.parametrize(
    "text",
    ["yes", "a: b", "x #c", "@at", "- dash", "1.10", "2024-01-01", "~", "*ref", " lead", "中文"],
)
def test_describe_output_is_yaml_that_reads_back_the_values(text: str) -> None:
    config = parse(account(jobs={"name_prefix": text, "filter": text}))
    described = yaml.safe_load(describe_config(config))["accounts"][0]
    assert (described["jobs"]["name_prefix"], described["jobs"]["filter"]) == (text, text)
    assert described["client_secret"] == "<redacted>"


# ---------------------------------------------------------------------------------------------
# The example file and the user documentation


def test_example_config_loads() -> None:
    env = {"AMS_PROD_SECRET": "example-secret"}
    config = load_config(REPO / "docs" / "config.example.yml", env)
    assert [type(a.credential) for a in config.accounts] == [ClientSecret, ManagedIdentity]
    assert config.accounts[0].credential == ClientSecret(Secret("example-secret"))


def test_documentation_mentions_every_accepted_key() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    missing = [key for key in (*TOP_LEVEL_KEYS, *ACCOUNT_KEYS, *JOBS_KEYS) if f"`{key}`" not in doc]
    assert missing == []


def _doc_block(doc: str, heading: str, language: str) -> str:
    match = re.search(f"{re.escape(heading)}\n\n```{language}\n(.*?)```", doc, re.DOTALL)
    assert match is not None, heading
    return match.group(1)


def test_documented_check_output_is_what_the_documented_layout_gives() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    layout = _doc_block(doc, "## Layout", "yaml")
    # The layout's ca_file names a file that exists only on the reader's machine.
    layout = "".join(line for line in layout.splitlines(keepends=True) if "ca_file" not in line)
    config = parse_config(layout, {"AMS_PROD_SECRET": "layout-secret"})
    assert describe_config(config) == _doc_block(doc, "## `--config.check` output", "text")


def test_documentation_names_every_cloud() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert [cloud for cloud in CLOUDS if f"`{cloud}`" not in doc] == []


# ---------------------------------------------------------------------------------------------
# Values from variables and files are never quoted in an error

# Never given to a Secret, so the exporter's redaction of remembered secrets cannot hide a leak.
PLANTED = "Pl4nted~v4lue/Zq9+x"
PLANTED_ENV = {**ENV, "PLANTED": PLANTED}
GUID_HINT = "(8-4-4-4-12 hexadecimal digits, such as 11111111-2222-3333-4444-555555555555)"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"client_id": "${PLANTED}"}, f"accounts[0].client_id: the value of ${{PLANTED}} is not a GUID {GUID_HINT}"),
        ({"name": "${PLANTED}"}, "accounts[0].name: the value of ${PLANTED} is not a valid name: use 1 to 63 "
         "letters, digits, '_', '.' or '-', starting with a letter or digit"),
        ({"endpoint": "${PLANTED}"}, "accounts[0].endpoint: expected an https:// URL, got the value of ${PLANTED}"),
        ({"endpoint": "https://h:${PLANTED}/api/"}, "accounts[0].endpoint: not a valid URL (the port is not a number)"),
        ({"endpoint": "https://h/${PLANTED}"}, "accounts[0].endpoint: expected an account endpoint ending in /api/ "
         "such as https://<account>.restv2.<region>.media.azure.net/api/, or a legacy root such as "
         "https://media.windows.net/, got the expansion of 'https://h/${PLANTED}'"),
        ({"authority_host": "ftp://${PLANTED}"}, "accounts[0].authority_host: expected an https:// URL, got the "
         "expansion of 'ftp://${PLANTED}'"),
        ({"cloud": "${PLANTED}"}, "accounts[0].cloud: expected one of AzureCloud, AzureChinaCloud, "
         "AzureUSGovernment, AzureGermanCloud, got the value of ${PLANTED}"),
        ({"tenant": "${PLANTED}"}, "accounts[0].tenant: expected a tenant ID (GUID) or a domain such as "
         "contoso.onmicrosoft.com, got the value of ${PLANTED}"),
        ({"timeout": "${PLANTED}"}, "accounts[0].timeout: expected a duration such as 30s, 5m or 24h, got the "
         "value of ${PLANTED}"),
        ({"jobs": {"finished_window": "1${PLANTED}"}}, "accounts[0].jobs.finished_window: expected a duration "
         "such as 30s, 5m or 24h, got the expansion of '1${PLANTED}'"),
        ({"jobs": {"ids": ["${PLANTED}"]}}, "accounts[0].jobs.ids[0]: expected a job ID such as "
         "nb:jid:UUID:<guid>, got the value of ${PLANTED}"),
        ({"redirect_hosts": ["${PLANTED}"]}, "accounts[0].redirect_hosts[0]: expected a host name without "
         "scheme or path, got the value of ${PLANTED}"),
        ({"ca_file": "${PLANTED}"}, "accounts[0].ca_file: cannot read the file named by ${PLANTED}: No such "
         "file or directory"),
        ({"client_secret": REMOVE, "client_secret_file": "/x/${PLANTED}"}, "accounts[0].client_secret_file: "
         "cannot read the file named by '/x/${PLANTED}': No such file or directory"),
    ],
)  # fmt: skip
def test_an_error_names_the_variable_not_its_value(changes: dict[str, Any], expected: str) -> None:
    assert error(account(**changes), env=PLANTED_ENV) == expected


def test_a_value_written_in_the_file_is_quoted() -> None:
    assert error(account(client_id="not-a-guid")) == (
        f"accounts[0].client_id: 'not-a-guid' is not a GUID {GUID_HINT}"
    )


def test_a_duplicate_name_from_a_variable_is_named_by_it() -> None:
    env = {**ENV, "NAME": "prod"}
    assert error(account(), account(name="${NAME}"), env=env) == (
        "accounts[1].name: the value of ${NAME} is already used by accounts[0]"
    )


def test_a_timeout_from_a_variable_out_of_range_is_named_by_it() -> None:
    assert error(account(timeout="${T}"), env={**ENV, "T": "1h"}) == (
        "accounts[0].timeout: must be more than 0s and at most 5m, got the value of ${T}"
    )


# Each change puts ${PLANTED} (or the planted text itself, where a key cannot use a variable)
# where it provokes an error: wrong type, no GUID, bad URL, bad duration, unknown key ...
_PLANTED_CHANGES: list[dict[str, Any]] = [
    {"name": "${PLANTED}"},
    {"endpoint": "${PLANTED}"},
    {"endpoint": "https://${PLANTED}.example/"},
    {"endpoint": "https://h:${PLANTED}/api/"},
    {"endpoint": "https://[${PLANTED}]/api/"},
    {"endpoint": "https://h/api/?${PLANTED}"},
    {"endpoint": "https://h/${PLANTED}/"},
    {"endpoint": "http://${PLANTED}/api/"},
    {"authority_host": "${PLANTED}"},
    {"resource": "ftp://${PLANTED}"},
    {"cloud": "${PLANTED}"},
    {"tenant": "${PLANTED}"},
    {"client_id": "${PLANTED}"},
    {"client_id": "x${PLANTED}"},
    {
        "managed_identity": True,
        "client_secret": REMOVE,
        "tenant": REMOVE,
        "client_id": "${PLANTED}",
    },
    {"managed_identity": "${PLANTED}"},
    {"timeout": "${PLANTED}"},
    {"timeout": "${PLANTED}s"},
    {"jobs": {"finished_window": "${PLANTED}"}},
    {"jobs": {"ids": ["${PLANTED}"]}},
    {"jobs": {"ids": "${PLANTED}"}},
    {"jobs": {"max_jobs": "${PLANTED}"}},
    {"jobs": {"tasks": "${PLANTED}"}},
    {"jobs": "${PLANTED}"},
    {"redirect_hosts": "${PLANTED}"},
    {"redirect_hosts": ["${PLANTED}"]},
    {"redirect_hosts": ["*.${PLANTED}"]},
    {"ca_file": "${PLANTED}"},
    {"client_secret": REMOVE, "client_secret_file": "${PLANTED}"},
    {"client_secret": REMOVE, "client_certificate_file": "${PLANTED}"},
    {PLANTED: 1},
    {"jobs": {PLANTED: 1}},
]


@pytest.mark.parametrize("changes", _PLANTED_CHANGES)
def test_a_planted_variable_value_appears_in_no_error(changes: dict[str, Any]) -> None:
    message = error(account(**changes), env=PLANTED_ENV)
    for part in PLANTED.split("/"):
        assert part not in message


def test_a_planted_value_as_a_top_level_key_appears_in_no_error() -> None:
    message = text_error(f"{PLANTED}: 1\naccounts: []\n", source="c.yml")
    assert message == "c.yml: an unknown key at line 1; known keys: accounts"


@pytest.mark.parametrize(
    "changes",
    [
        {"timeout": "x"},
        {"client_id": "x"},
        {"endpoint": "https://h/foo/"},
        {"jobs": {"zzz": 1}},
    ],
)
def test_a_secret_file_in_use_appears_in_no_error(tmp_path: Path, changes: dict[str, Any]) -> None:
    (tmp_path / "secret").write_text("F1le~planted/Secret+v\n")
    raw = account(client_secret=REMOVE, client_secret_file="secret", **changes)
    message = error(raw, base_dir=tmp_path)
    assert "F1le~planted" not in message and "Secret+v" not in message


@pytest.mark.parametrize(
    ("key", "content", "problem"),
    [
        ("client_certificate_file", PLANTED.encode(), "has no readable PEM private key (expected key and certificate)"),
        ("ca_file", PLANTED.encode(), "contains no PEM certificate (-----BEGIN CERTIFICATE-----)"),
        ("client_secret_file", PLANTED.encode() + b"\xff", "is not UTF-8 text"),
        ("client_secret_file", (PLANTED.encode() * 5000)[:80000], "is 78.1 KiB (80,000 bytes), over the 64 KiB limit for a secret file"),
    ],
)  # fmt: skip
def test_a_file_that_is_refused_is_not_quoted(
    tmp_path: Path, key: str, content: bytes, problem: str
) -> None:
    (tmp_path / "f").write_bytes(content)
    changes = {key: "f"} if key == "ca_file" else {"client_secret": REMOVE, key: "f"}
    message = error(account(**changes), base_dir=tmp_path)
    assert message == f"accounts[0].{key}: {tmp_path / 'f'} {problem}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(
        [
            "name", "endpoint", "cloud", "authority_host", "resource", "tenant", "client_id",
            "ca_file", "timeout", "jobs.ids", "jobs.name_prefix", "jobs.finished_window",
            "jobs.max_jobs", "redirect_hosts", "client_secret_file", "client_certificate_file",
        ]
    ),
    template=st.sampled_from(
        ["${P}", "https://${P}/api/", "https://h:${P}/api/", "https://h/${P}/", "nb:jid:UUID:${P}",
         "${P}s", "1${P}", "*.${P}", "[${P}]", "${P}.example.net"]
    ),
    middle=st.text(max_size=20),
)  # fmt: skip
def test_any_value_from_a_variable_in_any_key_appears_in_no_error(
    key: str, template: str, middle: str
) -> None:
    value = f"Qz7~{middle}~7zQ"
    written: Any = [template] if key in ("jobs.ids", "redirect_hosts") else template
    section, _, inner = key.partition(".")
    changes = {section: {inner: written}} if inner else {section: written}
    if section in ("client_secret_file", "client_certificate_file"):
        changes["client_secret"] = REMOVE
    try:
        parse(account(**changes), env={**ENV, "P": value}, base_dir=Path("/nonexistent"))
    except ConfigError as exc:
        assert "Qz7~" not in str(exc) and "~7zQ" not in str(exc)


KEY_LIKE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NOT_KEY_LIKE = st.text(min_size=1, max_size=80).filter(lambda key: not KEY_LIKE.fullmatch(key))


def quoted(key: str) -> str:
    """``key`` as a YAML double-quoted string on one line, every character escaped."""
    return '"' + "".join(f"\\U{ord(char):08x}" for char in key) + '"'


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1, max_size=80) | st.from_regex(KEY_LIKE, fullmatch=True),
    nested=st.booleans(),
)
def test_an_unknown_key_is_quoted_only_if_it_looks_like_a_key(key: str, nested: bool) -> None:
    assume(key not in ACCOUNT_KEYS and key not in JOBS_KEYS)
    text = "accounts:\n  - name: a\n    endpoint: https://media.windows.net/\n"
    text += "    managed_identity: true\n"
    text += f"    jobs:\n      {quoted(key)}: 1\n" if nested else f"    {quoted(key)}: 1\n"
    message = text_error(text)
    path, allowed, line = (
        ("accounts[0].jobs", JOBS_KEYS, 6) if nested else ("accounts[0]", ACCOUNT_KEYS, 5)
    )
    if KEY_LIKE.fullmatch(key):
        assert message.startswith(f"{path}.{key}: unknown key; ")
    else:
        assert message == f"{path}: an unknown key at line {line}; known keys: {', '.join(allowed)}"


@settings(max_examples=100, deadline=None)
@given(key=_NOT_KEY_LIKE)
def test_a_key_given_twice_is_quoted_only_if_it_looks_like_a_key(key: str) -> None:
    written = quoted(key)
    message = text_error(f"accounts:\n  - {written}: 1\n    {written}: 2\n", source="c.yml")
    assert message == "c.yml:3:5: invalid YAML: a key appears twice (first on line 2)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accounts:\n  - name: !!int Pl4nted\n", "c.yml:2:11: invalid YAML: cannot read this value as an integer; put it in quotes if it is meant as text"),
        ("accounts:\n  - name: !!float Pl4nted\n", "c.yml:2:11: invalid YAML: cannot read this value as a number; put it in quotes if it is meant as text"),
        ("accounts:\n  - name: !!bool Pl4nted\n", "c.yml:2:11: invalid YAML: cannot read this value as a boolean; put it in quotes if it is meant as text"),
        ("accounts:\n  - name: !!timestamp Pl4nted\n", "c.yml:2:11: invalid YAML: cannot read this value as a date; put it in quotes if it is meant as text"),
        ("accounts:\n  - name: !Pl4n'ted x\n", "c.yml:2:11: invalid YAML: could not determine a constructor for the tag '...'"),
        ("accounts:\n  - name: a\n  - x: [\n", "c.yml:4:1: invalid YAML: expected the node content, but found '<stream end>'"),
        ("accounts:\n  - name: a\x01Pl4nted\n", "c.yml:2: invalid YAML: the character #x0001 is not allowed; write it as an escape (\\u....) in a double-quoted string"),
    ],
)  # fmt: skip
def test_yaml_errors_quote_no_value_and_keep_token_names(text: str, expected: str) -> None:
    assert text_error(text, source="c.yml") == expected


# ---------------------------------------------------------------------------------------------
# Size caps


def test_a_config_file_over_1_mib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    with path.open("wb") as file:
        file.truncate(50 * 2**20)  # sparse: reading it would take a while, stat does not
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    assert time.monotonic() - started < 1
    assert str(caught.value) == (
        f"{path}: the configuration file is 50 MiB (52,428,800 bytes), over the 1 MiB limit"
    )


def test_a_config_file_of_exactly_1_mib_is_read_and_one_byte_more_is_not(tmp_path: Path) -> None:
    path = write_config(tmp_path, managed())
    body = path.read_bytes()
    path.write_bytes(body + b"#" * (MAX_CONFIG_SIZE - len(body) - 1) + b"\n")
    assert load_config(path, ENV).accounts[0].name == "prod"
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    assert str(caught.value) == (
        f"{path}: the configuration file is 1.0 MiB (1,048,577 bytes), over the 1 MiB limit"
    )


def test_a_config_from_an_endless_pipe_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), pipe.open("wb") as stream:
            for _ in range(64):  # 4 MiB, far more than is read
                stream.write(b"#" * 65536)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with pytest.raises(ConfigError) as caught:
        load_config(pipe, ENV)
    assert str(caught.value) == f"{pipe}: the configuration file is over the 1 MiB limit"


@pytest.mark.parametrize(
    ("key", "size", "expected"),
    [
        ("client_secret_file", 64 * 2**10 + 1, "is 64.0 KiB (65,537 bytes), over the 64 KiB limit for a secret file"),
        ("client_certificate_file", 2**20 + 1, "is 1.0 MiB (1,048,577 bytes), over the 1 MiB limit for a PEM file"),
        ("ca_file", 2**20 + 1, "is 1.0 MiB (1,048,577 bytes), over the 1 MiB limit for a PEM file"),
    ],
)  # fmt: skip
def test_secret_and_pem_files_have_caps(tmp_path: Path, key: str, size: int, expected: str) -> None:
    (tmp_path / "big").write_bytes(b"x" * size)
    changes = {key: "big"} if key == "ca_file" else {"client_secret": REMOVE, key: "big"}
    message = error(account(**changes), base_dir=tmp_path)
    assert message == f"accounts[0].{key}: {tmp_path / 'big'} {expected}"


# ---------------------------------------------------------------------------------------------
# Actionable messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accounts:\n  - name: a\n\tendpoint: x\n", "c.yml:3:1: invalid YAML: tabs cannot indent YAML; use spaces"),
        ("accounts:\n  - name: a\n  \t endpoint: x\n", "c.yml:3:3: invalid YAML: tabs cannot indent YAML; use spaces"),
        ("accounts:\n\t- name: a\n", "c.yml:2:1: invalid YAML: tabs cannot indent YAML; use spaces"),
        ("accounts:\n  - name:\ta\n", "c.yml:2:10: invalid YAML: a tab cannot separate YAML values here; use spaces"),
    ],
)  # fmt: skip
def test_a_tab_is_named_as_a_tab(text: str, expected: str) -> None:
    assert text_error(text, source="c.yml") == expected


def test_a_legacy_root_is_accepted_with_a_warning() -> None:
    config = parse(
        account(endpoint="https://media.windows.net/"),
        account(name="cn", endpoint="https://media.chinacloudapi.cn", cloud="AzureChinaCloud"),
        account(name="aad"),
        source="c.yml",
    )
    assert [a.endpoint for a in config.accounts[:2]] == [
        "https://media.windows.net/",
        "https://media.chinacloudapi.cn/",
    ]
    assert config.warnings == (
        "c.yml: accounts[0].endpoint: has no /api/ path, so it is treated as a legacy root that "
        "must answer 301 with the account's endpoint, on its own host, a host of AzureCloud "
        "(*.cloudapp.net, *.media.azure.net) or one in redirect_hosts",
        "c.yml: accounts[1].endpoint: has no /api/ path, so it is treated as a legacy root that "
        "must answer 301 with the account's endpoint, on its own host, a host of AzureChinaCloud "
        "(*.chinacloudapp.cn, *.media.chinacloudapi.cn) or one in redirect_hosts",
    )


def test_an_account_endpoint_gives_no_warning() -> None:
    assert parse(account()).warnings == ()


SECRET_DOLLAR = (
    "accounts[0].client_secret: a $ followed by a name is not expanded: write ${NAME} for the "
    "environment variable, or $$ for a literal $"
)


@pytest.mark.parametrize(
    "written", ["$NO_SUCH_VARIABLE", "pa$word", "${AMS_HOST}$x", "$$$_a", "a$Z"]
)
def test_a_variable_without_braces_in_a_secret_is_an_error(written: str) -> None:
    assert error(account(client_secret=written)) == SECRET_DOLLAR


def test_a_variable_without_braces_that_exists_is_suggested_by_name() -> None:
    assert error(account(client_secret="$AMS_SECRET")) == SECRET_DOLLAR.replace(
        "${NAME}", "${AMS_SECRET}"
    )


@pytest.mark.parametrize(
    ("written", "secret"),
    [
        ("pa$$word", "pa$word"),
        ("$$AMS_SECRET", "$AMS_SECRET"),
        ("$${AMS_SECRET}", "${AMS_SECRET}"),
        ("cost$5", "cost$5"),
        ("end$", "end$"),
        ("a$-b", "a$-b"),
        ("$$${AMS_SECRET}", "$" + SECRET),
    ],
)
def test_double_dollar_writes_a_literal_dollar_in_a_secret(written: str, secret: str) -> None:
    assert first(account(client_secret=written)).credential == ClientSecret(Secret(secret))


def test_a_lone_dollar_before_a_name_stays_in_other_values() -> None:
    assert first(account(jobs={"name_prefix": "a$b"})).jobs.name_prefix == "a$b"


@pytest.mark.parametrize(
    "client_id",
    ["11111111-2222-3333-4444-555555555555", "ABCDEF01-abcd-4EF0-8abc-0123456789AB"],
)
def test_client_id_is_a_guid_in_any_case(client_id: str) -> None:
    assert first(account(client_id=client_id)).client_id == client_id
    assert first(managed(client_id=client_id)).client_id == client_id


@pytest.mark.parametrize(
    "client_id",
    [
        "my-app",
        "{11111111-2222-3333-4444-555555555555}",
        "11111111222233334444555555555555",
        "11111111-2222-3333-4444-55555555555",
        "11111111-2222-3333-4444-55555555555g",
        " 11111111-2222-3333-4444-555555555555",
    ],
)
@pytest.mark.parametrize("build", [account, managed])
def test_client_id_that_is_not_a_guid_is_an_error(client_id: str, build: Any) -> None:
    assert error(build(client_id=client_id)) == (
        f"accounts[0].client_id: {client_id!r} is not a GUID {GUID_HINT}"
    )


# ---------------------------------------------------------------------------------------------
# redirect_hosts


def legacy(**changes: Any) -> dict[str, Any]:
    """A valid account whose endpoint is the public cloud's legacy root."""
    return account(endpoint="https://media.windows.net/", **changes)


def test_redirect_hosts_are_read_in_lower_case() -> None:
    got = first(
        legacy(redirect_hosts=["AMS.Example.NET", "*.Proxy.Example.org", "[::1]", "10.0.0.7"])
    )
    assert got.redirect_hosts == ("ams.example.net", "*.proxy.example.org", "::1", "10.0.0.7")
    assert first(legacy()).redirect_hosts == ()
    assert first(legacy(redirect_hosts=[])).redirect_hosts == ()


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        ("a.example.net", "accounts[0].redirect_hosts: expected a list of host names or *.<domain> "
         "patterns, such as [wamsbayclus001rest-hs.cloudapp.net], got a string"),
        (["a.example.net", 5], "accounts[0].redirect_hosts[1]: expected a string, got an integer (put it in quotes)"),
        ([""], "accounts[0].redirect_hosts[0]: must not be empty"),
        (["https://a.example.net"], "accounts[0].redirect_hosts[0]: expected a host name without scheme or "
         "path, got 'https://a.example.net'"),
        (["a.example.net/api/"], "accounts[0].redirect_hosts[0]: expected a host name without scheme or path, "
         "got 'a.example.net/api/'"),
        (["a.example.net:443"], "accounts[0].redirect_hosts[0]: expected a host name without port, got "
         "'a.example.net:443'"),
        (["[::1]:443"], "accounts[0].redirect_hosts[0]: expected a host name without port, got '[::1]:443'"),
        (["[::g]"], "accounts[0].redirect_hosts[0]: '[::g]' is not an IPv6 address"),
        (["u:p@a.example.net"], "accounts[0].redirect_hosts[0]: must not contain a user name or password"),
        (["*"], "accounts[0].redirect_hosts[0]: a bare * would allow any host; write *.<domain>, such as "
         "*.cloudapp.net"),
        (["*."], "accounts[0].redirect_hosts[0]: a bare * would allow any host; write *.<domain>, such as "
         "*.cloudapp.net"),
        (["*.net"], "accounts[0].redirect_hosts[0]: '*.net' would allow a whole top-level domain; give at "
         "least two labels after *."),
        (["a.*.example.net"], "accounts[0].redirect_hosts[0]: * may only start a pattern, as in "
         "*.cloudapp.net, got 'a.*.example.net'"),
        (["*.*.example.net"], "accounts[0].redirect_hosts[0]: * may only start a pattern, as in "
         "*.cloudapp.net, got '*.*.example.net'"),
        (["*example.net"], "accounts[0].redirect_hosts[0]: * may only start a pattern, as in "
         "*.cloudapp.net, got '*example.net'"),
        (["a..example.net"], "accounts[0].redirect_hosts[0]: 'a..example.net' is not a host name (labels of "
         "letters, digits and '-', joined by '.')"),
        (["-a.example.net"], "accounts[0].redirect_hosts[0]: '-a.example.net' is not a host name (labels of "
         "letters, digits and '-', joined by '.')"),
        (["a_b.example.net"], "accounts[0].redirect_hosts[0]: 'a_b.example.net' is not a host name (labels of "
         "letters, digits and '-', joined by '.')"),
        (["a.example.net", "A.Example.net"], "accounts[0].redirect_hosts[1]: 'a.example.net' is already "
         "listed as accounts[0].redirect_hosts[0]"),
    ],
)  # fmt: skip
def test_bad_redirect_hosts_are_errors(hosts: object, expected: str) -> None:
    assert error(legacy(redirect_hosts=hosts)) == expected


@pytest.mark.parametrize(
    ("cloud", "allowed", "refused"),
    [
        ("AzureCloud",
         ["wamsbayclus001rest-hs.cloudapp.net", "WAMSBAYCLUS001REST-HS.CLOUDAPP.NET", "a.b.cloudapp.net",
          "prodams.restv2.westeurope.media.azure.net", "media.windows.net", "MEDIA.windows.net",
          "x.cloudapp.net."],
         ["cloudapp.net", "media.azure.net", ".cloudapp.net", "evilcloudapp.net", "cloudapp.net.evil.com",
          "x.chinacloudapp.cn", "evil.example", "", "x..cloudapp.net", "x.cloudapp.net:443",
          "x\\.cloudapp.net", "x.cloudapp.net/"]),
        ("AzureChinaCloud",
         ["wamsshaclus001rest-hs.chinacloudapp.cn", "a.restv2.chinanorth.media.chinacloudapi.cn"],
         ["x.cloudapp.net", "chinacloudapp.cn", "media.chinacloudapi.cn"]),
        ("AzureUSGovernment",
         ["c.usgovcloudapp.net", "a.restv2.usgovvirginia.media.usgovcloudapi.net"],
         ["x.cloudapp.net", "usgovcloudapp.net"]),
        ("AzureGermanCloud",
         ["c.azurecloudapp.de", "a.restv2.germanycentral.media.cloudapi.de"],
         ["x.cloudapp.net", "media.cloudapi.de"]),
    ],
)  # fmt: skip
def test_legacy_redirects_may_lead_to_the_clouds_hosts_and_the_own_host(
    cloud: str, allowed: list[str], refused: list[str]
) -> None:
    got = first(legacy(cloud=cloud))
    assert [host for host in allowed if not got.allows_redirect_to(host)] == []
    assert [host for host in refused if got.allows_redirect_to(host)] == []


def test_redirect_hosts_add_names_and_patterns() -> None:
    got = first(legacy(redirect_hosts=["ams.example.net", "*.proxy.example.org", "::1"]))
    assert got.allows_redirect_to("AMS.example.net")
    assert not got.allows_redirect_to("x.ams.example.net")
    assert got.allows_redirect_to("a.proxy.example.org")
    assert got.allows_redirect_to("a.b.proxy.example.org")
    assert not got.allows_redirect_to("proxy.example.org")
    assert not got.allows_redirect_to("aproxy.example.org")
    assert got.allows_redirect_to("::1") and got.allows_redirect_to("[0:0::1]")
    assert not got.allows_redirect_to("127.0.0.1")


def test_the_own_host_of_an_ip_endpoint_is_allowed() -> None:
    got = first(account(endpoint="https://[::1]:8443/"))
    assert got.allows_redirect_to("::1")
    assert not got.allows_redirect_to("127.0.0.1")


def test_describe_shows_redirect_hosts_and_what_else_a_legacy_root_may_reach() -> None:
    config = parse(
        legacy(redirect_hosts=["ams.example.net", "*.proxy.example.org"]), legacy(name="b")
    )
    text = describe_config(config)
    assert (
        "    redirect_hosts:  # and the endpoint's host, *.cloudapp.net, *.media.azure.net\n"
        "      - ams.example.net\n"
        '      - "*.proxy.example.org"\n'
    ) in text
    assert (
        "    redirect_hosts: []  # and the endpoint's host, *.cloudapp.net, *.media.azure.net\n"
    ) in text
    described = yaml.safe_load(text)["accounts"]
    assert [a["redirect_hosts"] for a in described] == [
        ["ams.example.net", "*.proxy.example.org"],
        [],
    ]


def test_the_emulators_legacy_root_redirects_where_the_test_config_allows() -> None:
    with Emulator(jobs=1, seed=1, speed=0) as emulator:
        config = config_for(
            {"legacy": emulator}, {"legacy": {"endpoint": emulator.legacy_endpoint}}
        )
        response = requests.get(
            emulator.legacy_endpoint,
            allow_redirects=False,
            verify=str(emulator.ca_file),
            timeout=30,
        )
    target = urlsplit(response.headers["Location"]).hostname
    assert response.status_code == 301
    assert target != urlsplit(emulator.legacy_endpoint).hostname  # so the key is needed
    assert config.accounts[0].allows_redirect_to(target or "")
    assert not replace(config.accounts[0], redirect_hosts=()).allows_redirect_to(target or "")


# ---------------------------------------------------------------------------------------------
# Robustness: any input gives a Config or a ConfigError


def _outcome(text: str) -> None:
    """Parsing ends in a Config or a ConfigError; neither the error nor the summary shows the
    secret (the strategies put ``${AMS_SECRET}`` only into ``client_secret``)."""
    try:
        result = parse_config(text, ENV, source="fuzz.yml", base_dir=REPO / "no-such-folder")
    except ConfigError as exc:
        assert SECRET not in str(exc)
    else:
        assert isinstance(result, Config)
        assert SECRET not in describe_config(result)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "30s", "1h30m", "10", "${AMS_HOST}", "${NOPE}", "$$", "${", "https://h/api/",
            "http://h/api/", "https://media.windows.net/", "AzureCloud", JOB_ID, "prod", "",
        ]
    ),
)  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from([*JOBS_KEYS, "x"]) | st.text(max_size=5), inner, max_size=4
        )
    ),
    max_leaves=8,
)
_accounts = st.tuples(
    st.dictionaries(st.sampled_from([*ACCOUNT_KEYS, "nam"]), _values, max_size=10), st.booleans()
).map(lambda pair: {**pair[0], "client_secret": "${AMS_SECRET}"} if pair[1] else pair[0])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_text_gives_config_or_config_error(text: str) -> None:
    _outcome(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(_accounts, max_size=3), _values))
def test_any_structure_gives_config_or_config_error(accounts: Any) -> None:
    _outcome(yaml.safe_dump({"accounts": accounts}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.builds(
        account,
        name=st.text(max_size=8) | st.just("prod"),
        endpoint=st.text(max_size=30) | _scalars,
        timeout=st.text(max_size=6) | _scalars,
        jobs=_values,
    )
)
def test_near_valid_accounts_give_config_or_config_error(raw: dict[str, Any]) -> None:
    _outcome(yaml.safe_dump({"accounts": [raw]}))


# ---------------------------------------------------------------------------------------------
# jobs.groups and jobs.history

# The defaults the history metrics were specified with, in seconds.
SPECIFIED_DURATION_BUCKETS = (
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
)  # fmt: skip  (10s, 30s, 1m, 2m, 5m, 10m, 20m, 30m, 1h, 2h, 4h, 8h, 24h)
SPECIFIED_QUEUE_WAIT_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    14400.0,
    86400.0,
)  # fmt: skip  (1s, 5s, 15s, 30s, 1m, 2m, 5m, 10m, 30m, 1h, 4h, 24h)
GROUPS = "accounts[0].jobs.groups"
HISTORY = "accounts[0].jobs.history"


def jobs_of(jobs: object, **kwargs: Any) -> JobsConfig:
    return first(account(jobs=jobs), **kwargs).jobs


def group(name: object = "news", name_regex: object = "^news_") -> dict[str, object]:
    return {"name": name, "name_regex": name_regex}


def patterns(jobs: JobsConfig) -> list[tuple[str, str]]:
    return [(g.name, g.name_regex.pattern) for g in jobs.groups]


def test_groups_are_read_in_order_and_a_job_is_in_the_first_that_matches() -> None:
    jobs = jobs_of(
        {
            "groups": [
                group("news", r"^news_\d+$"),
                group("vod", "vod"),
                group("vod-late", "^vod-late"),
            ]
        }
    )
    assert patterns(jobs) == [("news", r"^news_\d+$"), ("vod", "vod"), ("vod-late", "^vod-late")]
    assert jobs.group_names == ("news", "vod", "vod-late", "other")
    assert jobs.group_of("news_12") == "news"
    assert jobs.group_of("news_12x") == "other"  # the $ anchor holds
    assert jobs.group_of("my-vod-1") == "vod"  # searched, not matched from the start
    assert jobs.group_of("vod-late-1") == "vod"  # the first match wins
    assert jobs.group_of("") == "other"


@pytest.mark.parametrize("groups", [None, {"ids": []}])
def test_without_groups_every_job_is_in_other(groups: dict[str, Any] | None) -> None:
    jobs = jobs_of(groups)
    assert jobs.groups == ()
    assert jobs.group_names == ("other",)
    assert jobs.group_of("news_1") == "other"
    assert jobs_of({"groups": []}).groups == ()


@pytest.mark.parametrize(
    "name", ["a", "news", "EU-west_2.live", "-x", "_", "1.2", "9" * 64, "other-news", "Other"]
)
def test_valid_group_names(name: str) -> None:
    assert patterns(jobs_of({"groups": [group(name, "x")]})) == [(name, "x")]


def test_fifty_groups_are_accepted() -> None:
    groups = [group(f"g{index}", f"^g{index}-") for index in range(50)]
    assert len(jobs_of({"groups": groups}).groups) == 50


# Regexes as they would be written in a file, in each YAML quoting style.
@pytest.mark.parametrize(
    ("written", "pattern"),
    [
        (r"'^news_\d+$'", r"^news_\d+$"),
        (r'"^news_\\d+$"', r"^news_\d+$"),
        (r"^news_\d+$", r"^news_\d+$"),
        (r"'^a\.b\\c$'", r"^a\.b\\c$"),
        (r"'(?i)^live-(eu|us)$'", r"(?i)^live-(eu|us)$"),
        (r"'a$|b$'", r"a$|b$"),
        (r"'(x$)'", r"(x$)"),
        (r"'$'", r"$"),
        (r"'^\$\{x\}$'", r"^\$\{x\}$"),
        (r"'a{2,3}$'", r"a{2,3}$"),
    ],
)
def test_a_regex_is_read_exactly_as_written(written: str, pattern: str) -> None:
    text = (
        "accounts:\n  - name: a\n    endpoint: https://media.windows.net/api/\n"
        "    managed_identity: true\n    jobs:\n      groups:\n"
        f"        - name: g\n          name_regex: {written}\n"
    )
    # With variables on (as in any real run) and off, a $ that starts no ${NAME} stays.
    for env in (ENV, {}):
        (got,) = parse_config(text, env).accounts[0].jobs.groups
        assert got.name_regex.pattern == pattern


def test_a_variable_in_a_regex_is_expanded_and_the_anchor_after_it_stays() -> None:
    jobs = jobs_of({"groups": [group("g", "^${AMS_HOST}$")]})
    assert patterns(jobs) == [("g", "^prodams.restv2.westeurope.media.azure.net$")]


def test_double_dollar_in_a_regex_is_one_literal_dollar_as_in_every_string() -> None:
    # The one place where a regex is not read as written: "$$" is "$" in every string value,
    # so a literal $ before the end anchor (\$$) is written \$$$.
    jobs = jobs_of({"groups": [group("a", r"price\$$"), group("b", r"price\$$$")]})
    assert patterns(jobs) == [("a", r"price\$"), ("b", r"price\$$")]


def test_history_buckets_default_to_the_specified_bounds() -> None:
    for jobs in (None, {}, {"history": None}, {"history": {}}):
        history = jobs_of(jobs).history
        assert history.duration_buckets == SPECIFIED_DURATION_BUCKETS
        assert history.queue_wait_buckets == SPECIFIED_QUEUE_WAIT_BUCKETS
    assert JobsConfig().history.duration_buckets == SPECIFIED_DURATION_BUCKETS
    assert JobsConfig().history.queue_wait_buckets == SPECIFIED_QUEUE_WAIT_BUCKETS


def test_history_buckets_are_read_and_the_other_list_keeps_its_default() -> None:
    durations = jobs_of({"history": {"duration_buckets": ["500ms", "1m30s", "2h", "1d"]}}).history
    assert durations.duration_buckets == (0.5, 90.0, 7200.0, 86400.0)
    assert durations.queue_wait_buckets == SPECIFIED_QUEUE_WAIT_BUCKETS
    waits = jobs_of({"history": {"queue_wait_buckets": ["1ms"]}}).history
    assert waits.queue_wait_buckets == (0.001,)
    assert waits.duration_buckets == SPECIFIED_DURATION_BUCKETS


def test_forty_buckets_are_accepted() -> None:
    bounds = [f"{index}s" for index in range(1, 41)]
    history = jobs_of(
        {"history": {"duration_buckets": bounds, "queue_wait_buckets": bounds}}
    ).history
    assert history.duration_buckets == tuple(float(index) for index in range(1, 41))
    assert history.queue_wait_buckets == history.duration_buckets


_GROUP_NAME_RULE = "a group name is 1 to 64 letters, digits, '_', '.' or '-' (it is a label value)"
_BUCKETS_HINT = "expected a list of durations such as [30s, 5m, 1h]"


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ({"groups": "news"}, f"{GROUPS}: expected a list of groups (name and name_regex), got a string"),
        ({"groups": {"name": "a"}}, f"{GROUPS}: expected a list of groups (name and name_regex), got a mapping"),
        ({"groups": None}, f"{GROUPS}: expected a list of groups (name and name_regex), got an empty value"),
        ({"groups": 3}, f"{GROUPS}: expected a list of groups (name and name_regex), got an integer"),
        ({"groups": ["news"]}, f"{GROUPS}[0]: expected a mapping, got a string"),
        ({"groups": [group(), ["x"]]}, f"{GROUPS}[1]: expected a mapping, got a list"),
        ({"groups": [None]}, f"{GROUPS}[0]: expected a mapping, got an empty value"),
        ({"groups": [{**group(), "nam": "x"}]}, f"{GROUPS}[0].nam: unknown key; did you mean 'name'?"),
        ({"groups": [{**group(), "name_regexp": "x"}]}, f"{GROUPS}[0].name_regexp: unknown key; did you mean 'name_regex'?"),
        ({"groups": [{**group(), "zzz": 1}]}, f"{GROUPS}[0].zzz: unknown key; known keys: name, name_regex"),
        ({"groups": [{"name_regex": "x"}]}, f"{GROUPS}[0].name: required"),
        ({"groups": [{"name": "a"}]}, f"{GROUPS}[0].name_regex: required"),
        ({"groups": [{}]}, f"{GROUPS}[0].name: required"),
        ({"groups": [group(name="")]}, f"{GROUPS}[0].name: must not be empty"),
        ({"groups": [group(name=5)]}, f"{GROUPS}[0].name: expected a string, got an integer (put it in quotes)"),
        ({"groups": [group(name="has space")]}, f"{GROUPS}[0].name: {_GROUP_NAME_RULE}, got 'has space'"),
        ({"groups": [group(name="a/b")]}, f"{GROUPS}[0].name: {_GROUP_NAME_RULE}, got 'a/b'"),
        ({"groups": [group(name="nëws")]}, f"{GROUPS}[0].name: {_GROUP_NAME_RULE}, got 'nëws'"),
        ({"groups": [group(name="a" * 65)]}, f"{GROUPS}[0].name: {_GROUP_NAME_RULE}, got '{'a' * 65}'"),
        ({"groups": [group(name="other")]}, f"{GROUPS}[0].name: 'other' is the group of the jobs that no group matches; pick another"),
        ({"groups": [group("a", "x"), group("b", "y"), group("a", "z")]}, f"{GROUPS}[2].name: 'a' is already used by {GROUPS}[0]"),
        ({"groups": [group("a", "x"), group("b", "y"), group("b", "z")]}, f"{GROUPS}[2].name: 'b' is already used by {GROUPS}[1]"),
        ({"groups": [group(f"g{i}", "x") for i in range(51)]}, f"{GROUPS}: at most 50 groups per account, got 51"),
        ({"groups": [group(name_regex="")]}, f"{GROUPS}[0].name_regex: must not be empty"),
        ({"groups": [group(name_regex=7)]}, f"{GROUPS}[0].name_regex: expected a string, got an integer (put it in quotes)"),
        ({"groups": [group(name_regex=["a"])]}, f"{GROUPS}[0].name_regex: expected a string, got a list"),
        ({"groups": [group(name_regex="(")]}, f"{GROUPS}[0].name_regex: not a valid Python regular expression: missing ), unterminated subpattern at position 0"),
        ({"groups": [group(name_regex="news_[")]}, f"{GROUPS}[0].name_regex: not a valid Python regular expression: unterminated character set at position 5"),
        ({"groups": [group(name_regex="*news")]}, f"{GROUPS}[0].name_regex: not a valid Python regular expression: nothing to repeat at position 0"),
        ({"groups": [group(name_regex="a)")]}, f"{GROUPS}[0].name_regex: not a valid Python regular expression: unbalanced parenthesis at position 1"),
        ({"groups": [group(name_regex="x${1}")]}, f"{GROUPS}[0].name_regex: invalid variable reference: write ${{NAME}} (letters, digits, _) and $$ for a literal $"),
        ({"groups": [group(name_regex="a\nb")]}, f"{GROUPS}[0].name_regex: must not contain control characters (newline, tab, ...)"),
        ({"history": []}, f"{HISTORY}: expected a mapping, got a list"),
        ({"history": "1s"}, f"{HISTORY}: expected a mapping, got a string"),
        ({"history": {"duration_bucket": ["1s"]}}, f"{HISTORY}.duration_bucket: unknown key; did you mean 'duration_buckets'?"),
        ({"history": {"queue_buckets": ["1s"]}}, f"{HISTORY}.queue_buckets: unknown key; did you mean 'queue_wait_buckets'?"),
        ({"history": {"zzz": 1}}, f"{HISTORY}.zzz: unknown key; known keys: duration_buckets, queue_wait_buckets"),
        ({"history": {"duration_buckets": []}}, f"{HISTORY}.duration_buckets: {_BUCKETS_HINT}, got an empty list"),
        ({"history": {"queue_wait_buckets": []}}, f"{HISTORY}.queue_wait_buckets: {_BUCKETS_HINT}, got an empty list"),
        ({"history": {"duration_buckets": None}}, f"{HISTORY}.duration_buckets: {_BUCKETS_HINT}, got an empty value"),
        ({"history": {"duration_buckets": "1s"}}, f"{HISTORY}.duration_buckets: {_BUCKETS_HINT}, got a string"),
        ({"history": {"duration_buckets": 30}}, f"{HISTORY}.duration_buckets: {_BUCKETS_HINT}, got an integer"),
        ({"history": {"duration_buckets": {"a": "1s"}}}, f"{HISTORY}.duration_buckets: {_BUCKETS_HINT}, got a mapping"),
        ({"history": {"duration_buckets": ["1s", 30]}}, f"{HISTORY}.duration_buckets[1]: expected a duration such as 30s, 5m or 24h, got the number 30 (add a unit, e.g. 30s)"),
        ({"history": {"duration_buckets": ["30"]}}, f"{HISTORY}.duration_buckets[0]: expected a duration such as 30s, 5m or 24h, got '30' (add a unit, e.g. 30s)"),
        ({"history": {"duration_buckets": [1.5]}}, f"{HISTORY}.duration_buckets[0]: expected a duration such as 30s, 5m or 24h, got a number"),
        ({"history": {"duration_buckets": ["-1s"]}}, f"{HISTORY}.duration_buckets[0]: expected a duration such as 30s, 5m or 24h, got '-1s'"),
        ({"history": {"duration_buckets": ["0s"]}}, f"{HISTORY}.duration_buckets[0]: a bucket bound must be more than 0s"),
        ({"history": {"queue_wait_buckets": ["1s", "0ms"]}}, f"{HISTORY}.queue_wait_buckets[1]: a bucket bound must be more than 0s"),
        ({"history": {"duration_buckets": ["1m", "30s"]}}, f"{HISTORY}.duration_buckets[1]: bounds must increase: 30s is not longer than {HISTORY}.duration_buckets[0] (1m)"),
        ({"history": {"duration_buckets": ["10s", "1m", "60s"]}}, f"{HISTORY}.duration_buckets[2]: bounds must increase: 1m is not longer than {HISTORY}.duration_buckets[1] (1m)"),
        ({"history": {"queue_wait_buckets": ["5s", "1h", "2m"]}}, f"{HISTORY}.queue_wait_buckets[2]: bounds must increase: 2m is not longer than {HISTORY}.queue_wait_buckets[1] (1h)"),
        ({"history": {"duration_buckets": [f"{i}s" for i in range(1, 42)]}}, f"{HISTORY}.duration_buckets: at most 40 buckets, got 41"),
        ({"history": {"queue_wait_buckets": ["1s"] * 41}}, f"{HISTORY}.queue_wait_buckets: at most 40 buckets, got 41"),
    ],
)  # fmt: skip
def test_bad_groups_and_history_are_errors(jobs: dict[str, Any], expected: str) -> None:
    assert error(account(jobs=jobs)) == expected


def test_a_group_name_from_a_variable_is_named_by_it() -> None:
    env = {**ENV, "G": "a b", "N": "news"}
    assert error(account(jobs={"groups": [group(name="${G}")]}), env=env) == (
        f"{GROUPS}[0].name: {_GROUP_NAME_RULE}, got the value of ${{G}}"
    )
    assert error(account(jobs={"groups": [group(), group(name="${N}")]}), env=env) == (
        f"{GROUPS}[1].name: the value of ${{N}} is already used by {GROUPS}[0]"
    )


# An invalid regex or a misplaced bound that came from a variable: the message must name the
# variable, not quote what it held (Python's regex messages quote group names and escapes).
@pytest.mark.parametrize(
    "jobs",
    [
        {"groups": [group(name="${PLANTED}")]},
        {"groups": [group(name_regex="(?P=${PLANTED})")]},
        {"groups": [group(name_regex="(?P<${PLANTED}>x)")]},
        {"groups": [group(name_regex="${PLANTED}[")]},
        {"groups": [group(name_regex="\\${PLANTED}")]},
        {"groups": "${PLANTED}"},
        {"groups": [{**group(), PLANTED: 1}]},
        {"history": {"duration_buckets": ["${PLANTED}"]}},
        {"history": {"duration_buckets": "${PLANTED}"}},
        {"history": {PLANTED: ["1s"]}},
    ],
)
def test_a_planted_variable_value_in_groups_or_history_appears_in_no_error(
    jobs: dict[str, Any],
) -> None:
    message = error(account(jobs=jobs), env=PLANTED_ENV)
    for part in PLANTED.split("/"):
        assert part not in message


@pytest.mark.parametrize(("bounds", "variable"), [(["1m", "${B}"], "30s"), (["${B}", "30s"], "1m")])
def test_bounds_out_of_order_from_a_variable_are_named_by_it(
    bounds: list[str], variable: str
) -> None:
    message = error(
        account(jobs={"history": {"duration_buckets": bounds}}), env={**ENV, "B": variable}
    )
    assert message.startswith(f"{HISTORY}.duration_buckets[1]: bounds must increase: ")
    assert "${B}" in message
    assert variable not in message


def test_describe_shows_groups_in_matching_order_and_both_bucket_lists() -> None:
    config = parse(
        account(
            jobs={
                "groups": [group("news", r"^news_\d+$"), group("odd", "a #b: c")],
                "history": {"duration_buckets": ["90s", "1h"]},
            }
        ),
        account(name="b"),
    )
    text = describe_config(config)
    assert (
        "      groups:  # first match wins; the other jobs are in other\n"
        "        - name: news\n"
        "          name_regex: ^news_\\d+$\n"
        "        - name: odd\n"
        '          name_regex: "a #b: c"\n'
        "      history:\n"
        "        duration_buckets: [1m30s, 1h]\n"
        "        queue_wait_buckets: [1s, 5s, 15s, 30s, 1m, 2m, 5m, 10m, 30m, 1h, 4h, 1d]\n"
    ) in text
    described = [a["jobs"] for a in yaml.safe_load(text)["accounts"]]
    assert described[0]["groups"] == [
        {"name": "news", "name_regex": r"^news_\d+$"},
        {"name": "odd", "name_regex": "a #b: c"},
    ]
    assert described[1]["groups"] == []
    assert [parse_duration(b) for b in described[1]["history"]["duration_buckets"]] == list(
        SPECIFIED_DURATION_BUCKETS
    )
    assert [parse_duration(b) for b in described[1]["history"]["queue_wait_buckets"]] == list(
        SPECIFIED_QUEUE_WAIT_BUCKETS
    )


@pytest.mark.parametrize(("window", "warned"), [("0s", True), ("9m59s", True), ("10m", False)])
def test_a_finished_window_too_short_for_the_history_is_warned_about(window, warned) -> None:
    config = parse(account(jobs={"finished_window": window}))
    expected = (
        f"accounts[0].jobs.finished_window: {window} keeps ended jobs in the listing for less "
        "than 10m: a job that ends between two collections further apart may never be seen "
        "ended, and is then missing from the history (ams_jobs_ended_total ...)"
    )
    assert config.warnings == ((expected,) if warned else ())


def test_capacity_interval_defaults_to_five_minutes_and_reads_a_duration() -> None:
    assert first(account()).jobs.capacity_interval == 300.0
    assert first(account(jobs={"capacity_interval": "1h30m"})).jobs.capacity_interval == 5400.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0s", "must be more than 0s and at most 1d, got 0s"),
        ("2d", "must be more than 0s and at most 1d, got 2d"),
        (300, "expected a duration such as 30s, 5m or 24h, got the number 300 (add a unit, e.g. 300s)"),
        ("often", "expected a duration such as 30s, 5m or 24h, got 'often'"),
    ],
)  # fmt: skip
def test_capacity_interval_errors_name_the_key(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(account(jobs={"capacity_interval": value}))
    assert str(caught.value) == f"accounts[0].jobs.capacity_interval: {message}"


def test_full_listing_interval_defaults_to_ten_minutes_and_takes_0s_and_1d() -> None:
    assert first(account()).jobs.full_listing_interval == 600.0
    assert first(account(jobs={"full_listing_interval": "0s"})).jobs.full_listing_interval == 0.0
    assert first(account(jobs={"full_listing_interval": "1d"})).jobs.full_listing_interval == 86400


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1d1ms", "must be at most 1d (0s lists every in-scope job on every collection), got 1d1ms"),
        ("2d", "must be at most 1d (0s lists every in-scope job on every collection), got 2d"),
        (600, "expected a duration such as 30s, 5m or 24h, got the number 600 (add a unit, e.g. 600s)"),
        ("-5m", "expected a duration such as 30s, 5m or 24h, got '-5m'"),
        (None, "expected a duration such as 30s, 5m or 24h, got an empty value"),
        ([], "expected a duration such as 30s, 5m or 24h, got a list"),
    ],
)  # fmt: skip
def test_full_listing_interval_errors_name_the_key(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(account(jobs={"full_listing_interval": value}))
    assert str(caught.value) == f"accounts[0].jobs.full_listing_interval: {message}"
