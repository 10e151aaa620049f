"""Security: no token or secret leaves the exporter, and no one can switch an account off.

Scenarios 1-5 of the hostile suite (see README.md).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from tests.hostile.azure import SECRET, SECRET_VARIABLE, Verbatim, job, json_answer
from tests.hostile.lab import Lab
from tests.hostile.leaks import Witness, secret_forms
from tests.hostile.process import ExporterProcess, Scrape
from tests.hostile.wire import Answer, Reply, Request

# ---------------------------------------------------------------------------------------------
# 1. A token response that is not JSON


def _form_encoded(token: str) -> Reply:
    body = f"access_token={token}&token_type=Bearer&expires_in=3600"
    return Answer(200, body.encode(), (("Content-Type", "application/x-www-form-urlencoded"),))


def _truncated_json(token: str) -> Reply:
    body = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3599})
    return Answer(
        200,
        body[: body.index('"expires_in"') + 6].encode(),
        (("Content-Type", "application/json"),),
    )


def _html(token: str) -> Reply:
    body = (
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head>"
        f"<body><form><input type='hidden' name='access_token' value='{token}'></form></body></html>"
    )
    return Answer(200, body.encode(), (("Content-Type", "text/html; charset=utf-8"),))


@pytest.mark.parametrize(
    "answer", [_form_encoded, _truncated_json, _html], ids=["form-encoded", "truncated", "html"]
)
def test_a_token_response_that_is_not_json_is_reported_once_and_never_shown(
    lab: Lab, witness: Witness, answer: Callable[[str], Reply]
) -> None:
    azure = lab.azure()
    account = lab.account(azure, "aad-not-json", on_token=lambda _request, token: answer(token))
    account.jobs = [job(2)]
    exporter = lab.exporter([lab.entry(azure, account)])
    scrapes = [exporter.scrape(5) for _ in range(3)]
    exporter.get("/")
    exporter.get("/readyz")

    assert account.minted, "the exporter never asked the hostile Azure AD for a token"
    assert [s.up("aad-not-json") for s in scrapes] == [0, 0, 0]
    assert exporter.log_lines("DEBUG", "not JSON"), "no log line says the answer is not JSON"
    warnings = exporter.log_lines("WARN", "not JSON")
    assert len(warnings) == 1, f"expected one warning for the episode, got {warnings}"
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# 2. Redaction by value, whatever the upstream echoes

# The encodings an upstream plausibly echoes (the grep looks for more: JSON escapes, base64 cores).
_ECHOED_FORMS = {
    name: form
    for name, form in secret_forms(SECRET).items()
    if "core" not in name and name != "JSON-escaped"
}


def _echo_secret(form: str) -> Callable[[Request, str], Reply]:
    def answer(_request: Request, _token: str) -> Reply:
        return json_answer(
            {
                "error": "invalid_client",
                "error_description": f"AADSTS7000215: Invalid client secret provided: {form}\r\n"
                f"Trace ID: 0000 Correlation ID: {form}",
                "error_codes": [7000215],
                "error_uri": f"https://login.hostile.test/error?code=7000215&secret={form}",
            },
            status=401,
            content_type="application/json; charset=utf-8",
        )

    return answer


def _outputs_of_every_kind(lab: Lab, exporter: ExporterProcess) -> list[Scrape]:
    scrapes = [exporter.scrape(5) for _ in range(2)]
    exporter.get("/")
    exporter.get("/readyz")
    lab.config_check(exporter.config)
    return scrapes


def test_azure_ad_errors_echoing_the_secret_in_any_encoding_do_not_reveal_it(
    lab: Lab, witness: Witness
) -> None:
    azure = lab.azure()
    accounts = [
        lab.account(azure, f"echo-{index}", on_token=_echo_secret(form))
        for index, form in enumerate(_ECHOED_FORMS.values())
    ]
    exporter = lab.exporter([lab.entry(azure, account) for account in accounts])
    scrapes = _outputs_of_every_kind(lab, exporter)

    assert all(account.minted for account in accounts), "some account never asked for a token"
    assert {scrapes[-1].up(account.name) for account in accounts} == {0}
    witness.assert_clean()


def _ams_500_echoing_the_token(request: Request) -> Reply:
    message = f"Request with Authorization: Bearer {request.bearer} failed; token={request.bearer}"
    return json_answer(
        {"odata.error": {"code": "InternalError", "message": {"lang": "en-US", "value": message}}},
        status=500,
    )


def _ams_401_echoing_the_token(request: Request) -> Reply:
    header = f'Bearer error="invalid_token", error_description="the token {request.bearer} expired"'
    body = {
        "odata.error": {
            "code": "InvalidToken",
            "message": {"lang": "en-US", "value": f"{request.bearer} is not valid"},
        }
    }
    return json_answer(body, status=401, headers=(("WWW-Authenticate", header),))


def _ams_403_xml_echoing_the_token(request: Request) -> Reply:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><error xmlns="http://schemas.microsoft.com/ado/'
        f'2007/08/dataservices/metadata"><code>AccessDenied</code><message xml:lang="en-US">'
        f"token {request.bearer} has no role</message></error>"
    )
    return Answer(403, body.encode(), (("Content-Type", "application/xml"),))


def _ams_redirect_carrying_the_token(request: Request) -> Reply:
    location = f"https://127.0.0.1:1/api/Jobs?access_token={request.bearer}"
    return Answer(302, b"", (("Location", location),))


def test_ams_errors_echoing_an_opaque_token_do_not_reveal_it(lab: Lab, witness: Witness) -> None:
    azure = lab.azure()
    handlers = {
        "echo-500": _ams_500_echoing_the_token,
        "echo-401": _ams_401_echoing_the_token,
        "echo-403-xml": _ams_403_xml_echoing_the_token,
        "echo-302-location": _ams_redirect_carrying_the_token,
    }
    accounts = [
        lab.account(azure, name, opaque_tokens=True, on_jobs=handler)
        for name, handler in handlers.items()
    ]
    exporter = lab.exporter([lab.entry(azure, account) for account in accounts])
    scrapes = _outputs_of_every_kind(lab, exporter)

    for account in accounts:
        assert azure.requests_of(account, "jobs"), f"{account.name}: AMS was never asked"
        assert scrapes[-1].up(account.name) == 0
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# 3. Configuration errors never echo the secret

_VARIABLE = "${" + SECRET_VARIABLE + "}"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"client_id": _VARIABLE}, ["client_id", SECRET_VARIABLE]),
        ({"timeout": _VARIABLE}, ["timeout", SECRET_VARIABLE]),
        ({"endpoint": _VARIABLE}, ["endpoint", SECRET_VARIABLE]),
        ({"endpoint": "https://" + _VARIABLE + "/api/"}, ["endpoint", SECRET_VARIABLE]),
        ({"pass word!": _VARIABLE}, ["accounts[0]"]),
        ({SECRET: "pasted by mistake"}, ["accounts[0]"]),
    ],
    ids=[
        "client_id",
        "timeout",
        "endpoint",
        "endpoint-host",
        "unknown-odd-key",
        "secret-as-key",
    ],
)
def test_a_configuration_error_names_the_key_and_variable_but_never_the_secret(
    lab: Lab, witness: Witness, overrides: dict[str, str], named: list[str]
) -> None:
    azure = lab.azure()
    account = lab.account(azure, "config")
    result = lab.config_check(lab.config([lab.entry(azure, account, **overrides)]))

    assert not result.timed_out
    assert result.returncode != 0, f"--config.check accepted it:\n{result.output}"
    for name in named:
        assert name in result.output, f"the error does not name {name}: {result.output}"
    assert "Traceback" not in result.output
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# 4. The token follows a redirect only to allowed hosts


def _legacy_root_to(location: str) -> Callable[[Request], Reply]:
    body = f'<html><head><title>Object moved</title></head><body><a href="{location}">here</a>'
    return lambda _request: Answer(
        301, body.encode(), (("Location", location), ("Content-Type", "text/html; charset=utf-8"))
    )


def test_a_redirect_to_a_host_outside_redirect_hosts_is_refused_before_the_token_goes_there(
    lab: Lab, witness: Witness
) -> None:
    legacy, cluster = lab.azure("legacy"), lab.azure("cluster")
    account = lab.account(legacy, "legacy")
    cluster.add(account, ams_prefix="")
    account.jobs = [job(2)]
    legacy.root = _legacy_root_to(cluster.endpoint(account, host="localhost"))
    exporter = lab.exporter([lab.entry(legacy, account, endpoint=legacy.base() + "/")])
    scrape = exporter.scrape(5)

    assert [r for r in legacy.server.requests if r.path == "/"], "the legacy root was not asked"
    carrying = [r.target for r in cluster.server.requests if "authorization" in r.headers]
    assert not carrying, f"the token went to the other host: {carrying}"
    assert scrape.up("legacy") == 0
    explained = [
        line
        for line in exporter.log_lines("DEBUG")
        if "localhost" in line and "redirect_hosts" in line
    ]
    assert explained, "no log line names the host and redirect_hosts"
    witness.assert_clean()


def test_a_redirect_to_a_host_in_redirect_hosts_is_followed(lab: Lab, witness: Witness) -> None:
    legacy, cluster = lab.azure("legacy"), lab.azure("cluster")
    account = lab.account(legacy, "legacy")
    cluster.add(account, ams_prefix="")
    account.jobs = [job(2), job(3)]
    legacy.root = _legacy_root_to(cluster.endpoint(account, host="localhost"))
    entry = lab.entry(legacy, account, endpoint=legacy.base() + "/", redirect_hosts=["localhost"])
    exporter = lab.exporter([entry])
    scrape = exporter.scrape(5)

    assert scrape.up("legacy") == 1
    assert scrape.job_ids("legacy") == account.job_ids()
    assert cluster.requests_of(account, "jobs"), "the jobs were not read from the cluster host"
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# 5. A scrape with a tiny timeout cannot turn ams_up to 0 for the others


def test_a_scrape_with_a_tiny_timeout_does_not_fail_a_concurrent_patient_scrape(
    lab: Lab, witness: Witness
) -> None:
    azure = lab.azure()
    account = lab.account(azure, "slow")
    account.jobs = [job(0), job(2), job(3)]
    exporter = lab.exporter([lab.entry(azure, account, jobs={"tasks": False})])
    exporter.wait_ready()
    azure.delay = 0.3

    # The patient scrape comes 50 ms after the hasty one (and, so that it surely meets the
    # collection the hasty one started, also 10 and 30 ms after).
    for offset in (0.05, 0.01, 0.03):
        results: dict[str, Scrape] = {}

        def scrape(name: str, timeout: float, into: dict[str, Scrape] = results) -> None:
            into[name] = exporter.scrape(timeout)

        hasty = threading.Thread(target=scrape, args=("hasty", 0.06))
        patient = threading.Thread(target=scrape, args=("patient", 10))
        hasty.start()
        time.sleep(offset)
        patient.start()
        hasty.join(20)
        patient.join(20)

        assert "patient" in results, f"the patient scrape {offset} s later did not answer"
        assert results["patient"].up("slow") == 1, f"ams_up 0 for the scrape {offset} s later"
        assert results["patient"].job_ids("slow") == account.job_ids()
    witness.assert_clean()


def test_the_secret_is_shown_redacted_by_config_check(lab: Lab, witness: Witness) -> None:
    azure = lab.azure()
    account = lab.account(azure, "check")
    result = lab.config_check(
        lab.config([lab.entry(azure, account, client_secret=Verbatim(f'"{_VARIABLE}"'))])
    )

    assert result.returncode == 0, result.output
    assert "<redacted>" in result.output
    witness.assert_clean()
