"""Secrets are removed by value, in every encoding they travel in, from everything shown.

The oracle for base64 does not use the redactor's own idea of encodings: it decodes every base64
run of the output at every alignment and looks for the secret's bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.ams.odata import excerpt, job_from_entity, read_error
from exporter.config.model import Secret
from exporter.errors import AmsApiError, AuthError
from exporter.logs import configure_logging
from exporter.redact import MAX_TOKENS, REDACTED, Redactor, redact, remember
from tests.support.logs import assert_promslog_entry, read_log
from tests.support.process import run as run_process

SECRET = "s3cr+t/v@lue=with&chars%"
_B64_RUN = re.compile(r"[A-Za-z0-9+/_=-]{4,}")


def recoverable(secret: bytes, text: str) -> bool:
    """Whether ``secret`` can be read back from any base64 run of ``text``, at any alignment."""
    for run in _B64_RUN.findall(text):
        for alphabet in (run, run.replace("-", "+").replace("_", "/")):
            for offset in range(4):
                chunk = alphabet[offset:].rstrip("=")
                chunk = chunk[: len(chunk) - 1] if len(chunk) % 4 == 1 else chunk
                chunk += "=" * (-len(chunk) % 4)
                try:
                    decoded = base64.b64decode(chunk, validate=True)
                except (binascii.Error, ValueError):
                    continue
                if secret in decoded:
                    return True
    return False


def plain_forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), quote(secret), quote_plus(secret)]


@pytest.fixture
def redactor() -> Redactor:
    fresh = Redactor()
    fresh.add(SECRET)
    return fresh


@pytest.mark.parametrize("form", [*plain_forms(SECRET), quote(SECRET, safe="").lower()])
def test_url_and_form_encodings_are_redacted(redactor: Redactor, form: str) -> None:
    shown = redactor.redact(f"error_description=AADSTS7000215: invalid secret {form} given")
    assert form not in shown and REDACTED in shown


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("prefix", [b"", b"x", b"xy", b"client_secret="])
@pytest.mark.parametrize("suffix", [b"", b"&", b"&grant_type=client_credentials"])
def test_base64_inside_a_blob_is_redacted_at_every_alignment(
    redactor: Redactor, encode: object, prefix: bytes, suffix: bytes
) -> None:
    blob = encode(prefix + SECRET.encode() + suffix).decode()  # type: ignore[operator]
    assert recoverable(SECRET.encode(), blob), "the oracle finds the secret in the raw blob"
    assert not recoverable(SECRET.encode(), redactor.redact(f"Basic {blob}"))


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(min_size=8, max_size=40).filter(lambda s: s.strip() == s and s.strip()),
    prefix=st.binary(max_size=5),
    suffix=st.binary(max_size=5),
    urlsafe=st.booleans(),
)
def test_any_secret_in_any_base64_blob_cannot_be_read_back(
    secret: str, prefix: bytes, suffix: bytes, urlsafe: bool
) -> None:
    fresh = Redactor()
    fresh.add(secret)
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    raw = secret.encode("utf-8", "surrogatepass")
    shown = fresh.redact("header: " + encode(prefix + raw + suffix).decode() + " end")
    assert not recoverable(raw, shown)
    for form in plain_forms(secret):
        assert form not in fresh.redact(f"<{form}>")


def test_opaque_tokens_are_redacted_by_value_not_by_shape(redactor: Redactor) -> None:
    token = "opaque-" + "9f" * 20
    redactor.add(token)
    assert token not in redactor.redact(f'{{"odata.error":{{"message":"bad token {token}"}}}}')


def test_shapes_are_redacted_even_when_never_seen(redactor: Redactor) -> None:
    shown = redactor.redact(
        'access_token=abc.def&x=1 Authorization: Bearer zzz {"access_token": "qqq"} '
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
    )
    for leaked in ("abc.def", "zzz", "qqq", "eyJhbGci"):
        assert leaked not in shown


def test_short_ordinary_encodings_do_not_blank_out_text() -> None:
    fresh = Redactor()
    fresh.add("abcdefgh")
    assert fresh.redact("State eq 2 and Name eq 'x'") == "State eq 2 and Name eq 'x'"


def test_every_secret_of_the_configuration_is_remembered_while_it_is_held() -> None:
    value = "config-secret-" + "7" * 12
    held = Secret(value)
    assert value not in redact(f"echoed {quote_plus(value)} and {value}")
    again = Secret(value)
    del held
    assert value not in redact(value), "still held by another Secret"
    del again
    assert redact(value) == value, "forgotten with its last holder"


def test_only_the_most_recent_tokens_are_sought() -> None:
    fresh = Redactor()
    tokens = [f"opaque-token-{index:04d}" for index in range(MAX_TOKENS + 5)]
    for token in tokens:
        fresh.add_token(token)
    assert fresh.redact(tokens[-1]) == REDACTED
    assert fresh.redact(tokens[0]) == tokens[0], "an old, long expired token is let go"


def test_error_messages_are_redacted_when_made() -> None:
    remember(SECRET)
    errors = [
        AuthError("acme", f"Azure AD refused: invalid client secret {quote_plus(SECRET)}"),
        AmsApiError("acme", 500, "InternalError", f"echo {base64.b64encode(SECRET.encode())!r}"),
    ]
    for error in errors:
        assert not any(form in str(error) for form in plain_forms(SECRET))
        assert not recoverable(SECRET.encode(), str(error))


def test_excerpts_redact_before_they_cut() -> None:
    remember(SECRET)
    text = "x" * 150 + SECRET + "y" * 100
    shown = excerpt(text, 160)
    assert SECRET[:5] not in shown.replace("x", "")
    _code, message = read_error(json.dumps({"odata.error": {"code": "C", "message": text}}))
    assert SECRET[:5] not in message.replace("x", "")


def test_a_job_named_after_a_secret_does_not_carry_it_into_labels() -> None:
    remember(SECRET)
    job = job_from_entity(
        {
            "Id": "nb:jid:UUID:1",
            "Name": f"encode {SECRET}",
            "State": 2,
            "Created": "2026-12-01T10:00:00",
        }
    )
    assert SECRET not in job.name and REDACTED in job.name


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in ("msal", "urllib3")}
    saved_hooks = threading.excepthook, sys.excepthook
    yield
    logging.captureWarnings(False)
    threading.excepthook, sys.excepthook = saved_hooks
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
@pytest.mark.usefixtures("restored_logging")
def test_no_library_logger_writes_a_secret_at_debug_level(
    capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    remember(SECRET)
    token = "opaque-token-" + "ab" * 16
    remember(token)
    configure_logging("debug", log_format)
    logging.getLogger("msal.oauth2cli.oauth2").error(
        "Token response is not in json format: %s", f"access_token={token}&expires_in=3599"
    )
    logging.getLogger("msal.application").debug("client_secret=%s", SECRET)
    logging.getLogger("urllib3.connectionpool").warning("retrying %s", quote_plus(SECRET))
    try:
        raise ValueError(f"upstream said {token}")
    except ValueError:
        logging.getLogger("exporter.test").exception("failed with %s", SECRET)
    logging.getLogger("exporter.test").info("a field", extra={"reply": f"said {token}", "n": 3})
    written = capsys.readouterr().err
    assert "retrying" in written and "failed with" in written, written
    assert "Token response" not in written, "msal is silenced"
    for form in [*plain_forms(SECRET), token]:
        assert form not in written
    entries = read_log(written)  # one line per record, the traceback's included
    for entry in entries:
        assert_promslog_entry(entry)
    (failed,) = [e for e in entries if e["msg"] == f"failed with {REDACTED}"]
    assert str(failed["err"]).endswith(f"ValueError: upstream said {REDACTED}"), "kept, redacted"
    assert (entries[-1]["reply"], str(entries[-1]["n"])) == (f"said {REDACTED}", "3")


@pytest.mark.usefixtures("restored_logging")
def test_warnings_and_thread_crashes_reach_stderr_through_the_redacting_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    remember(SECRET)
    configure_logging("info", "logfmt")

    def crash() -> None:
        raise RuntimeError(f"echoed {quote_plus(SECRET)}")

    worker = threading.Thread(target=crash, name="crashing-worker")
    worker.start()
    worker.join(timeout=10)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"insecure call with {SECRET}", UserWarning, stacklevel=1)
    written = capsys.readouterr().err
    assert "unhandled error in crashing-worker" in written and "RuntimeError" in written
    assert "insecure call with <redacted>" in written
    assert not any(form in written for form in plain_forms(SECRET))
    assert [e["level"] for e in read_log(written)] == ["ERROR", "WARN"]


# Crashes outside any handler: the hook that logging installs writes the traceback.
CRASH = """
import sys
from exporter.logs import configure_logging
from exporter.redact import remember
log_format, secret = sys.argv[1:]
remember(secret)
configure_logging("info", log_format)
raise RuntimeError(f"upstream echoed {secret}\\nand a second line")
"""


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_an_uncaught_exception_is_one_redacted_log_line(log_format: str) -> None:
    result = run_process([sys.executable, "-c", CRASH, log_format, SECRET])
    assert result.returncode == 1, result.stderr
    assert not any(form in result.stderr for form in plain_forms(SECRET))
    (entry,) = read_log(result.stderr)
    assert_promslog_entry(entry)
    assert (entry["level"], entry["msg"]) == ("ERROR", "unhandled error")
    trace = str(entry["err"])
    assert trace.startswith("Traceback (most recent call last):\n"), trace
    assert trace.endswith(f"RuntimeError: upstream echoed {REDACTED}\nand a second line"), trace
    assert result.stderr.startswith("{") == (log_format == "json")
