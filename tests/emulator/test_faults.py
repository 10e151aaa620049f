"""Every fault kind, observed by a real HTTPS client, and the request log that records it."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from ams_emulator import Emulator, Fault
from tests.emulator.helpers import AmsClient, msal_app, post_token, secret_token

BUSY = re.compile(r"^Server is busy\. (Previous runs|More than \d+ requests)")


def _message(response: requests.Response) -> str:
    body = response.json()
    inner = body["odata.error"] if "odata.error" in body else body["error"]
    message: str = inner["message"]["value"]
    return message


# ---- status faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 502])
def test_status_fault_answers_the_odata_error_shape(
    client: AmsClient, emu: Emulator, status: int
) -> None:
    emu.faults.add(Fault("status", status=status, count=1))
    response = client.get("Jobs")
    assert response.status_code == status
    assert _message(response)
    assert client.get("Jobs").status_code == 200
    assert [r.fault for r in emu.request_log if r.api == "ams"] == ["status", None]


def test_503_uses_the_documented_busy_messages(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("status", status=503, count=3))
    messages = [_message(client.get("Jobs")) for _ in range(3)]
    assert all(BUSY.match(m) for m in messages), messages


def test_429_carries_retry_after(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("status", status=429, count=1))
    emu.faults.add(Fault("status", status=429, count=1, retry_after=7))
    assert client.get("Jobs").headers["Retry-After"] == "1"
    assert client.get("Jobs").headers["Retry-After"] == "7"


def test_status_fault_in_verbose_json(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(
        Fault("status", status=500, count=1, message="Quota information is unavailable.")
    )
    response = client.get("Jobs", headers=client.headers(Accept="application/json;odata=verbose"))
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "",
            "message": {"lang": "en-US", "value": "Quota information is unavailable."},
        }
    }


def test_count_limits_a_fault_to_the_next_requests(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("status", status=503, count=2))
    assert [client.get("Jobs").status_code for _ in range(3)] == [503, 503, 200]
    assert emu.faults.active() == []


def test_path_targets_a_fault(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("status", status=500, path=r"/Tasks$"))
    assert client.get("Jobs?$top=1").status_code == 200
    assert client.get("Tasks?$top=1").status_code == 500
    emu.faults.clear()
    assert client.get("Tasks?$top=1").status_code == 200


def test_ratio_faults_are_reproducible_for_a_seed() -> None:
    patterns = []
    for _ in range(2):
        with Emulator(jobs=2, seed=42, speed=0) as emulator:
            ams = AmsClient(emulator)
            ams.token()
            emulator.faults.add(Fault("status", status=503, ratio=0.5))
            patterns.append([ams.get("Jobs").status_code for _ in range(16)])
            ams.close()
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {200, 503}


def test_aad_status_fault_uses_the_azure_ad_error_shape(emu: Emulator) -> None:
    emu.faults.add(Fault("status", api="aad", status=503, path="token$", count=1))
    response = post_token(emu, {"grant_type": "client_credentials"})
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert body["error_description"].startswith("AADSTS")
    assert secret_token(emu)  # the next request is served normally


# ---- bodies that are not what they should be -----------------------------------------------------


def test_malformed_json(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("malformed_json", count=1))
    response = client.get("Jobs")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_wrong_shape_is_valid_json_without_an_envelope(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("wrong_shape", count=1))
    body = client.get("Jobs").json()
    assert isinstance(body, dict)
    assert "value" not in body and "d" not in body and "odata.metadata" not in body


def test_truncated_body_breaks_the_read(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("truncated", count=1))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        client.get("Jobs")
    assert client.get("Jobs").status_code == 200
    assert emu.request_log[0].fault == "truncated"


def test_reset_aborts_the_connection(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("reset", count=1))
    with pytest.raises(requests.exceptions.ConnectionError):
        client.get("Jobs")
    assert client.get("Jobs").status_code == 200
    first = emu.request_log[0]
    assert (first.status, first.fault) == (None, "reset")


def test_repeat_page_starts_with_the_previous_pages_last_job(
    client: AmsClient, emu: Emulator
) -> None:
    first = client.get("Jobs?$skip=0&$top=10&$select=Id").json()["value"]
    emu.faults.add(Fault("repeat_page", count=1))
    second = client.get("Jobs?$skip=10&$top=10&$select=Id").json()["value"]
    assert second[0] == first[-1]
    assert len(second) == 10
    assert [r.fault for r in emu.request_log] == [None, "repeat_page"]


def test_repeat_page_waits_for_a_page_after_the_first(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("repeat_page", count=1))
    client.get("Jobs?$top=10")
    assert emu.faults.active() != []


def test_huge_response_is_valid_and_as_large_as_asked(client: AmsClient, emu: Emulator) -> None:
    size = 3 * 1024 * 1024
    emu.faults.add(Fault("huge", size=size, count=1))
    response = client.get("Jobs")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert size - 2048 <= len(response.content) <= size
    ids = [job["Id"] for job in response.json()["value"]]
    assert len(ids) == len(set(ids)) > 1000


def test_slow_drip_delivers_the_normal_body(client: AmsClient, emu: Emulator) -> None:
    normal = client.get("Jobs?$top=2&$select=Id,State").content
    emu.faults.add(Fault("slow_drip", drip_bytes=16, drip_interval=0.002, count=1))
    dripped = client.get("Jobs?$top=2&$select=Id,State").content
    assert dripped == normal


def test_latency_delays_the_answer(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("latency", latency=0.3, count=1))
    started = time.monotonic()
    response = client.get("Jobs?$top=1")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.29
    assert emu.request_log[0].fault == "latency"


def test_latency_combines_with_another_fault(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("latency", latency=0.01, count=1))
    emu.faults.add(Fault("status", status=500, count=1))
    assert client.get("Jobs").status_code == 500
    assert emu.request_log[0].fault == "latency,status"


# ---- Azure AD down, redirect loop, datetime filters ----------------------------------------------


def test_aad_down_resets_discovery_and_token_requests(emu: Emulator) -> None:
    emu.faults.add(Fault("aad_down"))
    with pytest.raises(requests.exceptions.ConnectionError):
        msal_app(emu, emu.client_secret)
    with pytest.raises(requests.exceptions.ConnectionError):
        secret_token(emu)
    assert {r.fault for r in emu.request_log} == {"aad_down"}


def test_redirect_loop_points_the_legacy_root_at_itself(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("redirect_loop"))
    response = client.get(emu.legacy_endpoint, allow_redirects=False)
    assert response.status_code == 301
    assert response.headers["Location"] == emu.legacy_endpoint


def test_status_fault_applies_to_the_legacy_root_too(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("status", status=503, count=1))
    busy = client.get(emu.legacy_endpoint, allow_redirects=False)
    assert busy.status_code == 503
    assert BUSY.match(_message(busy))
    assert client.get(emu.legacy_endpoint, allow_redirects=False).status_code == 301


def test_reject_datetime_filter(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("reject_datetime_filter"))
    rejected = client.get(
        "Jobs", params={"$filter": "LastModified gt datetime'2024-01-01T00:00:00'"}
    )
    assert rejected.status_code == 400
    assert "datetime" in _message(rejected)
    assert client.get("Jobs", params={"$filter": "State eq 2"}).status_code == 200


# ---- the Fault value itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "explode"}, "unknown fault kind"),
        ({"kind": "status", "count": 1, "ratio": 0.5}, "either count or ratio"),
        ({"kind": "status", "count": 0}, "at least 1"),
        ({"kind": "status", "ratio": 1.5}, "ratio"),
        ({"kind": "status", "status": 42}, "HTTP status"),
        ({"kind": "status", "status": 204}, "carries a body"),
        ({"kind": "aad_down", "api": "ams"}, "aad"),
        ({"kind": "huge", "api": "aad"}, "ams"),
        ({"kind": "status", "path": "("}, "regular expression"),
        ({"kind": "latency", "latency": -1}, "latency"),
    ],
)
def test_invalid_faults_are_refused_with_a_clear_error(
    kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        Fault(**kwargs)  # type: ignore[arg-type]


def test_request_count_helper(client: AmsClient, emu: Emulator) -> None:
    client.get("Jobs?$top=1")
    client.get("Tasks?$top=1")
    client.get("Jobs?$top=1")
    assert emu.request_count(api="ams", path=r"/Jobs$") == 2
    assert emu.request_count(api="ams") == 3
    assert emu.request_count(api="aad") == 0
