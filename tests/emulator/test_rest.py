"""The AMS v2 REST API over real HTTPS: routes, both JSON shapes, headers, errors, paging, the 301."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
import requests

from ams_emulator import Emulator
from tests.emulator.helpers import API_HEADERS, AmsClient

MINIMAL = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
VERBOSE = "application/json;odata=verbose;charset=utf-8"
JOB_TYPE = "Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job"


def _verbose(client: AmsClient) -> dict[str, str]:
    return client.headers(Accept="application/json;odata=verbose")


def _odata_error(response: requests.Response) -> str:
    """The message of a minimal-metadata error body, checking its documented shape."""
    body = response.json()
    assert set(body) == {"odata.error"}
    error = body["odata.error"]
    assert error["code"] == ""
    assert error["message"]["lang"] == "en-US"
    message: str = error["message"]["value"]
    return message


# ---- service document and $metadata ------------------------------------------------------------


def test_service_document_lists_the_23_entity_sets(client: AmsClient, emu: Emulator) -> None:
    response = client.get("")
    assert response.status_code == 200
    body = response.json()
    assert body["odata.metadata"] == f"{emu.account_endpoint}$metadata"
    names = [entry["name"] for entry in body["value"]]
    assert len(names) == 23
    assert {
        "Jobs",
        "Tasks",
        "NotificationEndPoints",
        "MediaProcessors",
        "Assets",
        "Operations",
    } <= set(names)
    assert all(entry["url"] == entry["name"] for entry in body["value"])


def test_service_document_in_verbose_json(client: AmsClient) -> None:
    body = client.get("", headers=_verbose(client)).json()
    assert len(body["d"]["EntitySets"]) == 23


def test_metadata_is_well_formed_edmx_for_the_modelled_types(client: AmsClient) -> None:
    response = client.get("$metadata")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    edm = "{http://schemas.microsoft.com/ado/2009/11/edm}"
    types = {e.get("Name"): e for e in root.iter(f"{edm}EntityType")}
    assert set(types) == {"Job", "Task", "MediaProcessor", "EncodingReservedUnitType"}
    job_props = {p.get("Name"): p.get("Type") for p in types["Job"].iter(f"{edm}Property")}
    assert job_props["RunningDuration"] == "Edm.Double"
    assert job_props["State"] == "Edm.Int32"
    assert job_props["Created"] == "Edm.DateTime"
    sets = {e.get("Name") for e in root.iter(f"{edm}EntitySet")}
    assert sets == {"Jobs", "Tasks", "MediaProcessors", "EncodingReservedUnitTypes"}


def test_metadata_accepts_api_version_instead_of_the_header(client: AmsClient) -> None:
    headers = client.headers()
    del headers["x-ms-version"]
    assert client.get("$metadata?api-version=2.15", headers=headers).status_code == 200
    assert client.get("$metadata", headers=headers).status_code == 400
    assert client.get("Jobs?api-version=2.15", headers=headers).status_code == 400


# ---- collections and entities -------------------------------------------------------------------


def test_jobs_in_minimal_metadata_match_the_store(client: AmsClient, emu: Emulator) -> None:
    response = client.get("Jobs")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == MINIMAL
    body = response.json()
    assert body["odata.metadata"] == f"{emu.account_endpoint}$metadata#Jobs"
    expected = {job.id: job for job in emu.jobs()}
    assert [j["Id"] for j in body["value"]] == sorted(expected)
    first = body["value"][0]
    job = expected[first["Id"]]
    assert first["State"] == job.state
    assert first["Priority"] == job.priority
    assert first["RunningDuration"] == job.running_duration_ms
    assert not first["Created"].endswith("Z")
    assert "Tasks" not in first  # minimal metadata leaves navigation links out


def test_jobs_in_verbose_json_carry_metadata_and_deferred_tasks(
    client: AmsClient, emu: Emulator
) -> None:
    response = client.get("Jobs?$top=3", headers=_verbose(client))
    assert response.headers["Content-Type"] == VERBOSE
    results = response.json()["d"]["results"]
    assert len(results) == 3
    job = results[0]
    uri = f"{emu.account_endpoint}Jobs('{quote(job['Id'], safe='')}')"
    assert job["__metadata"] == {"id": uri, "uri": uri, "type": JOB_TYPE}
    assert job["Tasks"] == {"__deferred": {"uri": f"{uri}/Tasks"}}
    assert job["JobNotificationSubscriptions"]["results"] == []
    assert job["Created"].endswith("Z")


def test_verbose_dates_can_use_the_ms_date_form() -> None:
    with Emulator(jobs=5, seed=3, speed=0, verbose_date_format="msdate") as emulator:
        ams = AmsClient(emulator)
        response = ams.get("Jobs?$top=1&$select=Created", headers=_verbose(ams))
        ams.close()
        assert b'"Created":"\\/Date(' in response.content
        created_ms = int(response.json()["d"]["results"][0]["Created"][6:-2])
        assert created_ms == int(emulator.jobs()[0].created.timestamp() * 1000)


@pytest.mark.parametrize("encode", [True, False], ids=["url-encoded-id", "plain-id"])
def test_single_job_by_id(client: AmsClient, emu: Emulator, encode: bool) -> None:
    job = emu.jobs()[5]
    key = quote(job.id, safe="") if encode else job.id
    minimal = client.get(f"Jobs('{key}')").json()
    assert minimal["odata.metadata"] == f"{emu.account_endpoint}$metadata#Jobs/@Element"
    assert minimal["Id"] == job.id and minimal["State"] == job.state
    verbose = client.get(f"Jobs('{key}')", headers=_verbose(client)).json()
    assert verbose["d"]["Id"] == job.id
    assert verbose["d"]["__metadata"]["type"] == JOB_TYPE


def test_job_state_property(client: AmsClient, emu: Emulator) -> None:
    job = emu.jobs()[2]
    path = f"Jobs('{quote(job.id, safe='')}')/State"
    assert client.get(path, headers=_verbose(client)).json() == {"d": {"State": job.state}}
    minimal = client.get(path).json()
    assert minimal["value"] == job.state
    assert minimal["odata.metadata"].endswith("$metadata#Edm.Int32")


def test_tasks_of_a_job_and_a_task_by_id(client: AmsClient, emu: Emulator) -> None:
    job = next(j for j in emu.jobs() if len(j.tasks) > 1)
    body = client.get(f"Jobs('{quote(job.id, safe='')}')/Tasks").json()
    assert body["odata.metadata"].endswith("$metadata#Tasks")
    assert sorted(t["Id"] for t in body["value"]) == sorted(t.id for t in job.tasks)
    task = job.tasks[0]
    one = client.get(f"Tasks('{quote(task.id, safe='')}')").json()
    assert one["Id"] == task.id and one["Progress"] == task.progress
    assert one["odata.metadata"].endswith("$metadata#Tasks/@Element")


def test_tasks_collection_lists_every_task(client: AmsClient, emu: Emulator) -> None:
    body = client.get("Tasks?$select=Id").json()
    assert len(body["value"]) == sum(len(j.tasks) for j in emu.jobs())


def test_select_returns_only_the_named_properties(client: AmsClient, emu: Emulator) -> None:
    body = client.get("Jobs?$select=Id,State&$top=4").json()
    assert body["odata.metadata"] == f"{emu.account_endpoint}$metadata#Jobs&$select=Id,State"
    assert all(set(job) == {"Id", "State"} for job in body["value"])


def test_documented_progress_check_filter_by_id(client: AmsClient, emu: Emulator) -> None:
    job = emu.jobs()[10]
    response = client.get("Jobs", params={"$filter": f"Id eq '{job.id}'", "$top": "1"})
    assert [j["Id"] for j in response.json()["value"]] == [job.id]


def test_other_entity_sets_answer_an_empty_collection(client: AmsClient, emu: Emulator) -> None:
    body = client.get("Assets").json()
    assert body == {"odata.metadata": f"{emu.account_endpoint}$metadata#Assets", "value": []}


# ---- errors --------------------------------------------------------------------------------------


def test_missing_job_is_404_in_both_shapes(client: AmsClient) -> None:
    missing = quote(f"nb:jid:UUID:{uuid.uuid4()}", safe="")
    response = client.get(f"Jobs('{missing}')")
    assert response.status_code == 404
    assert "Jobs" in _odata_error(response)
    verbose = client.get(f"Jobs('{missing}')", headers=_verbose(client))
    assert verbose.status_code == 404
    assert verbose.headers["Content-Type"] == VERBOSE
    assert set(verbose.json()) == {"error"}


def test_unknown_paths_are_404_in_the_error_shape(client: AmsClient, emu: Emulator) -> None:
    assert client.get("Widgets").status_code == 404
    outside = client.get(f"{emu.authority_host}/nothing/here")
    assert outside.status_code == 404
    assert "nothing" in _odata_error(outside)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("$expand=Tasks", "not supported"),
        ("$filter=Colour eq 'red'", "Colour"),
        ("$top=-1", "$top"),
        ("$top=5&$top=6", "more than once"),
        ("$orderby=Name sideways", "$orderby"),
    ],
)
def test_bad_query_options_are_400_with_the_odata_error(
    client: AmsClient, query: str, fragment: str
) -> None:
    response = client.get(f"Jobs?{query}")
    assert response.status_code == 400
    assert fragment in _odata_error(response)


def test_collection_options_on_a_single_entity_are_400(client: AmsClient, emu: Emulator) -> None:
    key = quote(emu.jobs()[0].id, safe="")
    assert client.get(f"Jobs('{key}')?$top=1").status_code == 400


def test_only_get_is_allowed(client: AmsClient) -> None:
    response = client.session.post(
        client.emulator.account_endpoint + "Jobs",
        headers=client.headers(),
        json={},
        verify=str(client.emulator.ca_file),
        timeout=30,
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"


def test_atom_is_refused_with_415(client: AmsClient) -> None:
    response = client.get(
        "Jobs", headers=client.headers(Accept="application/atom+xml,application/xml")
    )
    assert response.status_code == 415
    assert "application/json" in _odata_error(response)


# ---- request and response headers ---------------------------------------------------------------


def test_response_headers_are_the_documented_ones(client: AmsClient) -> None:
    client_request_id = str(uuid.uuid4())
    response = client.get(
        "Jobs?$top=1", headers=client.headers(**{"x-ms-client-request-id": client_request_id})
    )
    headers = response.headers
    uuid.UUID(headers["request-id"])
    assert headers["request-id"] == headers["x-ms-request-id"]
    assert headers["x-ms-client-request-id"] == client_request_id
    assert headers["DataServiceVersion"] == "3.0;"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize("version", ["2.0", "2.2", "2.11", "2.19"])
def test_supported_api_versions(client: AmsClient, version: str) -> None:
    assert (
        client.get("Jobs?$top=1", headers=client.headers(**{"x-ms-version": version})).status_code
        == 200
    )


@pytest.mark.parametrize("version", ["2.20", "1.0", "3.0", "latest"])
def test_unsupported_api_versions_are_400(client: AmsClient, version: str) -> None:
    response = client.get("Jobs?$top=1", headers=client.headers(**{"x-ms-version": version}))
    assert response.status_code == 400
    assert "2.0 to 2.19" in _odata_error(response)


def test_missing_api_version_is_400(client: AmsClient) -> None:
    headers = client.headers()
    del headers["x-ms-version"]
    response = client.get("Jobs", headers=headers)
    assert response.status_code == 400
    assert "x-ms-version" in _odata_error(response)


@pytest.mark.parametrize("value", ["3.0", "3.0;NetFx", "1.0;NetFx"])
def test_data_service_version_forms_are_accepted(client: AmsClient, value: str) -> None:
    headers = client.headers(DataServiceVersion=value)
    assert client.get("Jobs?$top=1", headers=headers).status_code == 200


def test_data_service_version_headers_may_be_absent(client: AmsClient) -> None:
    headers = {"Authorization": client.headers()["Authorization"], "x-ms-version": "2.19"}
    assert client.get("Jobs?$top=1", headers=headers).status_code == 200


def test_unsupported_data_service_version_is_400(client: AmsClient) -> None:
    assert client.get("Jobs", headers=client.headers(DataServiceVersion="4.0")).status_code == 400


# ---- authorization ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        (None, "missing"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer not-a-jwt", "malformed"),
    ],
)
def test_requests_without_a_valid_bearer_token_are_401(
    client: AmsClient, authorization: str | None, fragment: str
) -> None:
    headers = dict(API_HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization
    response = client.get("Jobs", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert fragment in _odata_error(response)


def test_tampered_token_is_401(client: AmsClient) -> None:
    header, claims, signature = client.token().split(".")
    forged = f"{header}.{claims}.{signature[:-4]}AAAA"
    response = client.get("Jobs", headers=client.headers(Authorization=f"Bearer {forged}"))
    assert response.status_code == 401
    assert "signature" in _odata_error(response)


@pytest.mark.parametrize("reason", ["expired", "revoked"])
def test_expired_and_revoked_tokens_are_401_and_a_new_token_works(reason: str) -> None:
    with Emulator(jobs=3, seed=1, speed=0) as emulator:
        ams = AmsClient(emulator)
        assert ams.get("Jobs").status_code == 200
        {"expired": emulator.expire_tokens, "revoked": emulator.revoke_tokens}[reason]()
        refused = ams.get("Jobs")
        assert refused.status_code == 401
        assert reason in _odata_error(refused)
        fresh = AmsClient(emulator)
        assert fresh.get("Jobs").status_code == 200
        ams.close()
        fresh.close()


# ---- paging --------------------------------------------------------------------------------------


def test_paging_at_exactly_1000_jobs() -> None:
    with Emulator(jobs=1000, seed=2, speed=0) as emulator:
        ams = AmsClient(emulator)
        assert len(emulator.jobs()) == 1000
        first = ams.get("Jobs()?$skip=0&$top=1000&$select=Id").json()["value"]
        second = ams.get("Jobs()?$skip=1000&$top=1000&$select=Id").json()["value"]
        assert (len(first), len(second)) == (1000, 0)
        emulator.add_job(name="one more")
        first = ams.get("Jobs()?$skip=0&$top=1000&$select=Id").json()
        second = ams.get("Jobs()?$skip=1000&$top=1000&$select=Id").json()
        assert (len(first["value"]), len(second["value"])) == (1000, 1)
        assert "odata.nextLink" not in first and "__next" not in first
        ids = [j["Id"] for j in first["value"] + second["value"]]
        assert sorted(ids) == [job.id for job in emulator.jobs()]
        capped = ams.get("Jobs?$top=5000&$select=Id").json()["value"]
        assert len(capped) == 1000
        ams.close()


# ---- the legacy root and its 301 ---------------------------------------------------------------


def test_legacy_root_redirects_to_another_host_name(client: AmsClient, emu: Emulator) -> None:
    response = client.get(emu.legacy_endpoint, allow_redirects=False)
    assert response.status_code == 301
    assert response.headers["Location"] == emu.account_endpoint
    assert response.headers["Location"].split("/")[2] != emu.legacy_endpoint.split("/")[2]
    assert response.headers["Content-Type"].startswith("text/html")
    assert emu.account_endpoint in response.text


def test_following_the_301_blindly_loses_the_token_and_gets_401(
    client: AmsClient, emu: Emulator
) -> None:
    followed = client.get(emu.legacy_endpoint, allow_redirects=True)
    assert followed.status_code == 401
    api_request = emu.request_log[-1]
    assert api_request.path == "/api/"
    assert "authorization" not in api_request.headers
    resent = client.get(followed.url)
    assert resent.status_code == 200


# ---- the facade's controls are what the API serves ------------------------------------------------


def test_jobs_added_and_moved_by_tests_are_served() -> None:
    with Emulator(jobs=3, seed=5, speed=0) as emulator:
        ams = AmsClient(emulator)
        job_id = emulator.add_job(name="名前 'quoted' \\ job", state=2, tasks=2, progress=40.0)
        key = quote(job_id, safe="")
        served = ams.get(f"Jobs('{key}')").json()
        assert (served["Name"], served["State"]) == ("名前 'quoted' \\ job", 2)
        emulator.set_task_progress(job_id, 1, 75.0)
        tasks = ams.get(f"Jobs('{key}')/Tasks?$orderby=Name").json()["value"]
        assert [t["Progress"] for t in tasks] == [40, 75]
        emulator.set_job_state(job_id, 4, error_code="ErrorProcessingTask")
        assert ams.get(f"Jobs('{key}')/State").json()["value"] == 4
        codes = {
            d["Code"]
            for t in ams.get(f"Jobs('{key}')/Tasks").json()["value"]
            for d in t["ErrorDetails"]
        }
        assert codes == {"ErrorProcessingTask"}
        emulator.delete_job(job_id)
        assert ams.get(f"Jobs('{key}')").status_code == 404
        ams.close()
