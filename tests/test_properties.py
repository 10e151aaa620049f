"""Property-based tests: any input gives a value or a clear error, never an unhandled exception.

These extend the properties in ``test_odata.py`` (JSON values) and ``test_config.py`` (YAML text and
structures) with raw bytes, entities with fields of every type, near-valid dates, round trips, the
header readers, the web configuration and the Authorization header check.
"""

from __future__ import annotations

import base64
import json
import math
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.ams.client import retry_after_seconds
from exporter.ams.odata import (
    ODataFormatError,
    decode_json,
    excerpt,
    job_from_entity,
    parse_datetime,
    read_entities,
    read_error,
    task_from_entity,
)
from exporter.config.accounts import load_config
from exporter.config.durations import format_duration, parse_duration
from exporter.errors import ConfigError
from exporter.web.protect import BasicAuth
from exporter.web.server import MAX_SCRAPE_TIMEOUT, collection_budget
from exporter.web.webconfig import WebConfigError, parse_web_config

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# OData bodies as bytes


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_give_entities_or_a_clear_error(body: bytes) -> None:
    try:
        entities = read_entities(body)
    except ODataFormatError as exc:
        assert str(exc)
    else:
        assert all(isinstance(entity, dict) for entity in entities)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_give_an_error_tuple(body: bytes) -> None:
    code, message = read_error(body)
    assert isinstance(code, str) and len(code) <= 100
    assert isinstance(message, str) and len(message) <= 300


@SETTINGS
@given(st.integers(min_value=1, max_value=100_000), st.sampled_from(["[", '{"a":', '[{"d":']))
def test_deep_nesting_is_a_clear_error(depth: int, opener: str) -> None:
    try:
        decode_json(opener * depth)
    except ODataFormatError as exc:
        assert str(exc)


VALID_BODY = json.dumps(
    {
        "value": [
            {
                "Id": "nb:jid:UUID:1",
                "Name": "n",
                "State": 3,
                "Created": "2015-02-11T01:46:08.897",
                "LastModified": "2015-02-11T01:46:16.58",
                "Priority": 0,
                "RunningDuration": 1000,
            }
        ]
    }
).encode()


@SETTINGS
@given(st.integers(min_value=0, max_value=len(VALID_BODY) - 1))
def test_a_truncated_body_is_a_clear_error(cut: int) -> None:
    with pytest.raises(ODataFormatError):
        read_entities(VALID_BODY[:cut])


# ---------------------------------------------------------------------------------------------
# Entities whose fields hold anything

ANY_FIELD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["1e400", "-0", "NaN", "3.5", "", " 7 ", "0x10", "/Date(1)/", "9" * 40]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["results", "Code", "x"]), st.integers(), max_size=2),
)
JOB_KEYS = ["Id", "Name", "State", "Created", "LastModified", "StartTime", "EndTime"]
JOB_KEYS += ["Priority", "RunningDuration"]
TASK_KEYS = ["Id", "Name", "State", "Progress", "RunningDuration", "StartTime", "EndTime"]
TASK_KEYS += ["ErrorDetails"]


@SETTINGS
@given(st.dictionaries(st.sampled_from(JOB_KEYS), ANY_FIELD), st.booleans())
def test_job_entities_of_any_field_types_give_a_job_or_a_clear_error(
    entity: dict[str, Any], with_id: bool
) -> None:
    if with_id:
        entity["Id"] = "nb:jid:UUID:x"
    try:
        job = job_from_entity(entity)
    except ODataFormatError as exc:
        assert str(exc)
    else:
        assert math.isfinite(job.created)
        for value in (job.priority, job.running_duration_seconds):
            assert value is None or math.isfinite(value)
        assert job.running_duration_seconds is None or job.running_duration_seconds >= 0


@SETTINGS
@given(st.dictionaries(st.sampled_from(TASK_KEYS), ANY_FIELD), st.booleans())
def test_task_entities_of_any_field_types_give_a_task_or_a_clear_error(
    entity: dict[str, Any], with_id: bool
) -> None:
    if with_id:
        entity["Id"] = "nb:tid:UUID:x"
    try:
        task = task_from_entity(entity)
    except ODataFormatError as exc:
        assert str(exc)
    else:
        assert task.progress is None or 0.0 <= task.progress <= 100.0
        duration = task.running_duration_seconds
        assert duration is None or (math.isfinite(duration) and duration >= 0)


# ---------------------------------------------------------------------------------------------
# Dates

MOMENTS = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.just(timezone.utc),
)


@SETTINGS
@given(MOMENTS)
def test_iso_dates_round_trip_in_every_documented_form(moment: datetime) -> None:
    expected = moment.timestamp()
    naive = moment.replace(tzinfo=None).isoformat(timespec="microseconds")
    for text in (naive, naive + "Z", naive + "+00:00", naive.rstrip("0").rstrip(".")):
        assert parse_datetime(text) == pytest.approx(expected, abs=1e-6)


@SETTINGS
@given(MOMENTS, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_offsets_are_applied(moment: datetime, minutes: int) -> None:
    zone = timezone(timedelta(minutes=minutes))
    text = moment.astimezone(zone).isoformat(timespec="seconds")
    assert parse_datetime(text) == pytest.approx(
        moment.replace(microsecond=0).timestamp(), abs=1e-6
    )


@SETTINGS
@given(st.integers(min_value=-(10**16), max_value=10**16), st.sampled_from(["", "+0100", "-0530"]))
def test_wcf_dates_are_milliseconds_or_out_of_range(ms: int, offset: str) -> None:
    text = f"/Date({ms}{offset})/"
    try:
        value = parse_datetime(text)
    except ODataFormatError as exc:
        assert "out of range" in str(exc) or "not a date" in str(exc)
    else:
        assert value == ms / 1000


@SETTINGS
@given(
    st.text(alphabet="0123456789-:T.Z+ ", min_size=1, max_size=32)
    | st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?")
)
def test_near_valid_date_text_gives_a_date_or_a_clear_error(text: str) -> None:
    try:
        value = parse_datetime(text)
    except ODataFormatError as exc:
        assert str(exc)
    else:
        assert value is None or math.isfinite(value)


# ---------------------------------------------------------------------------------------------
# Texts shown to people


@SETTINGS
@given(st.text(max_size=2000), st.integers(min_value=2, max_value=400))
def test_excerpt_is_bounded_and_has_no_control_characters(text: str, limit: int) -> None:
    shown = excerpt(text, limit)
    assert len(shown) <= limit
    assert not any(ord(char) < 32 or 0x7F <= ord(char) <= 0x9F for char in shown)


TOKEN_PART = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=10, max_size=60)


@SETTINGS
@given(TOKEN_PART, TOKEN_PART, st.text(max_size=40), st.sampled_from(["json", "text", "xml"]))
def test_tokens_in_error_bodies_never_come_back(
    payload: str, signature: str, around: str, shape: str
) -> None:
    token = f"eyJ0eXAiOiJKV1Qi{payload}.{payload}.{signature}"
    message = f"{around} Bearer {token} {around}"
    body = {
        "json": json.dumps({"odata.error": {"code": "x", "message": {"value": message}}}),
        "text": message,
        "xml": f"<error><code>c</code><message>{message}</message></error>",
    }[shape]
    code, shown = read_error(body)
    assert token not in shown and token not in code
    assert "eyJ0eXAiOiJKV1Qi" not in shown


# ---------------------------------------------------------------------------------------------
# Header readers


@SETTINGS
@given(
    st.text(max_size=60)
    | st.from_regex(r"\s*\d{1,30}\s*")
    | st.just("Fri, 31 Dec 1999 23:59:59 GMT")
)
def test_retry_after_is_a_non_negative_number_of_seconds(value: str) -> None:
    seconds = retry_after_seconds(value)
    assert seconds >= 0 and not math.isnan(seconds)


@SETTINGS
@given(
    st.none() | st.text(max_size=40) | st.floats().map(repr),
    st.floats(min_value=0.1, max_value=MAX_SCRAPE_TIMEOUT),
)
def test_collection_budget_is_positive_and_below_the_timeout(
    header: str | None, default: float
) -> None:
    budget = collection_budget(header, default)
    assert 0 < budget <= max(default, MAX_SCRAPE_TIMEOUT)
    assert math.isfinite(budget)


# ---------------------------------------------------------------------------------------------
# Configuration


@SETTINGS
@given(st.text(max_size=20) | st.from_regex(r"(\d{1,25}(ms|s|m|h|d|w|y)){1,4}"))
def test_durations_parse_to_seconds_or_a_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert seconds >= 0 and math.isfinite(seconds)


@SETTINGS
@given(st.integers(min_value=0, max_value=10**12))
def test_formatted_milliseconds_round_trip(millis: int) -> None:
    assert parse_duration(format_duration(millis / 1000)) == pytest.approx(millis / 1000)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300) | st.just(b"\xef\xbb\xbfaccounts: []\n"))
def test_a_config_file_of_any_bytes_gives_config_or_config_error(
    tmp_path: Path, content: bytes
) -> None:
    file = tmp_path / "config.yml"
    file.write_bytes(content)
    try:
        load_config(file, env={})
    except ConfigError as exc:
        assert str(exc).startswith(str(file))


# ---------------------------------------------------------------------------------------------
# Web configuration and basic auth

WEB_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=12),
    st.sampled_from(
        ["server.crt", "TLS12", "TLS13", "RequireAndVerifyClientCert", "NoClientCert", "$2b$04$x"]
    ),
)
WEB_KEYS = st.sampled_from(
    [
        "tls_server_config",
        "http_server_config",
        "basic_auth_users",
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "min_version",
        "cipher_suites",
        "headers",
        "X-Frame-Options",
        "alice",
    ]
)
WEB_VALUES = st.recursive(
    WEB_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WEB_KEYS, inner, max_size=4),
    max_leaves=10,
)


@SETTINGS
@given(st.dictionaries(WEB_KEYS, WEB_VALUES, max_size=4) | WEB_VALUES)
def test_any_web_config_structure_gives_a_config_or_a_clear_error(document: Any) -> None:
    try:
        parse_web_config(yaml.safe_dump(document), base_dir=Path("/nonexistent"))
    except WebConfigError as exc:
        assert str(exc)


@SETTINGS
@given(st.text(max_size=300))
def test_any_web_config_text_gives_a_config_or_a_clear_error(text: str) -> None:
    try:
        parse_web_config(text, base_dir=Path("/nonexistent"))
    except WebConfigError as exc:
        assert str(exc)


CHECKER = BasicAuth({"prometheus": bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4))})


@settings(max_examples=100, deadline=None)
@given(
    st.none()
    | st.text(max_size=80)
    | st.binary(max_size=60).map(lambda raw: "Basic " + base64.b64encode(raw).decode())
    | st.text(max_size=20).map(
        lambda user: "Basic " + base64.b64encode(f"{user}:secret".encode()).decode()
    )
)
def test_any_authorization_header_is_refused_unless_it_is_the_right_one(header: str | None) -> None:
    right = "Basic " + base64.b64encode(b"prometheus:secret").decode()
    assert CHECKER.check(header) is (header is not None and header.strip() == right)
