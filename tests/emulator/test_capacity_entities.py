"""The account's capacity and processors: EncodingReservedUnitTypes (whose CurrentReservedUnits are
the scenario's encoding slots) and MediaProcessors (which every task's MediaProcessorId names)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import pytest
import requests

from ams_emulator import EmuJob, Emulator, Fault, JobState, ReservedUnitType
from ams_emulator.clock import Clock
from ams_emulator.scenario import ScenarioConfig
from ams_emulator.store import JobStore
from tests.emulator.helpers import AmsClient

MINIMAL = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
VERBOSE = "application/json;odata=verbose;charset=utf-8"
MODELS = "Microsoft.Cloud.Media.Vod.Rest.Data.Models"
MES = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
EDM = "{http://schemas.microsoft.com/ado/2009/11/edm}"
START = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
# A scenario whose queue only grows: each job holds its slot for about ten minutes, more arrive
# than the slots can take, and none is held back, stuck or canceled (all Queued jobs are waiting
# for a slot).
SATURATED: dict[str, Any] = {
    "jobs": 0,
    "speed": 0,
    "start": START,
    "arrivals_per_hour": 40.0,
    "tasks_max": 1,
    "mean_task_seconds": 600.0,
    "failure_ratio": 0.1,
    "cancel_ratio": 0.0,
    "stuck_ratio": 0.0,
}
HOLDING = (JobState.SCHEDULED, JobState.PROCESSING, JobState.CANCELING)


def verbose(client: AmsClient) -> dict[str, str]:
    return client.headers(Accept="application/json;odata=verbose")


def ok(response: requests.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def ok_bytes(response: requests.Response) -> bytes:
    assert response.status_code == 200, response.text
    return response.content


def states(jobs: list[EmuJob]) -> Counter[int]:
    return Counter(job.state for job in jobs)


def holding(jobs: list[EmuJob]) -> set[str]:
    """The jobs holding an encoding slot: a slot is taken when a job is Scheduled and given
    back when it ends."""
    return {job.id for job in jobs if job.state in HOLDING}


@pytest.fixture
def saturated() -> Iterator[Emulator]:
    with Emulator(seed=31, slots=3, **SATURATED) as emulator:
        yield emulator


# ---- EncodingReservedUnitTypes ------------------------------------------------------------------


def test_reserved_units_in_minimal_metadata(client: AmsClient, emu: Emulator) -> None:
    response = client.get("EncodingReservedUnitTypes")
    assert response.headers["Content-Type"] == MINIMAL
    body = ok(response)
    units = emu.reserved_units()
    assert GUID.match(units.account_id)
    assert body == {
        "odata.metadata": f"{emu.account_endpoint}$metadata#EncodingReservedUnitTypes",
        "value": [
            {
                "AccountId": units.account_id,
                "ReservedUnitType": 0,
                "CurrentReservedUnits": emu.store.config.slots,
                "MaxReservableUnits": 25,
            }
        ],
    }
    assert list(body["value"][0]) == [
        "AccountId",
        "ReservedUnitType",
        "CurrentReservedUnits",
        "MaxReservableUnits",
    ]


def test_reserved_units_in_verbose_json(client: AmsClient, emu: Emulator) -> None:
    response = client.get("EncodingReservedUnitTypes", headers=verbose(client))
    assert response.headers["Content-Type"] == VERBOSE
    account = emu.reserved_units().account_id
    uri = f"{emu.account_endpoint}EncodingReservedUnitTypes(guid'{account}')"
    assert ok(response) == {
        "d": {
            "results": [
                {
                    "__metadata": {
                        "id": uri,
                        "uri": uri,
                        "type": f"{MODELS}.EncodingReservedUnitType",
                    },
                    "AccountId": account,
                    "ReservedUnitType": 0,
                    "CurrentReservedUnits": 10,
                    "MaxReservableUnits": 25,
                }
            ]
        }
    }


def test_the_account_id_is_the_same_for_a_seed_and_differs_between_seeds() -> None:
    def account(seed: int) -> str:
        store = JobStore(ScenarioConfig(seed=seed, jobs=0), Clock(START, speed=0))
        return store.reserved_units().account_id

    assert account(5) == account(5)
    assert account(5) != account(6)


def test_reserved_units_keyed_by_the_account_id(client: AmsClient, emu: Emulator) -> None:
    account = emu.reserved_units().account_id
    body = ok(client.get(f"EncodingReservedUnitTypes(guid'{account}')"))
    assert body["odata.metadata"] == (
        f"{emu.account_endpoint}$metadata#EncodingReservedUnitTypes/@Element"
    )
    assert body["AccountId"] == account
    assert body["CurrentReservedUnits"] == 10
    # A GUID is a value: upper-case hex digits name the same entity.
    upper = ok(client.get(f"EncodingReservedUnitTypes(guid'{account.upper()}')"))
    assert upper["AccountId"] == account
    single = client.get(f"EncodingReservedUnitTypes(guid'{account}')", headers=verbose(client))
    assert ok(single)["d"]["__metadata"]["type"] == f"{MODELS}.EncodingReservedUnitType"


def test_reserved_units_property_reads(client: AmsClient, emu: Emulator) -> None:
    account = emu.reserved_units().account_id
    path = f"EncodingReservedUnitTypes(guid'{account}')/CurrentReservedUnits"
    assert ok(client.get(path)) == {
        "odata.metadata": f"{emu.account_endpoint}$metadata#Edm.Int32",
        "value": 10,
    }
    assert ok(client.get(path, headers=verbose(client))) == {"d": {"CurrentReservedUnits": 10}}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("EncodingReservedUnitTypes(guid'00000000-0000-4000-8000-000000000000')", 404),
        ("EncodingReservedUnitTypes(guid'not-a-guid')", 400),
        ("EncodingReservedUnitTypes('{account}')", 400),  # a GUID key takes a GUID literal
        ("Jobs(guid'{account}')", 400),  # and a string key a string
        ("EncodingReservedUnitTypes(guid'{account}')/Nothing", 404),
    ],
)
def test_reserved_units_keyed_reads_that_fail(
    client: AmsClient, emu: Emulator, path: str, status: int
) -> None:
    response = client.get(path.format(account=emu.reserved_units().account_id))
    assert response.status_code == status
    assert set(response.json()) == {"odata.error"}


def test_reserved_units_select_and_filter(client: AmsClient, emu: Emulator) -> None:
    account = emu.reserved_units().account_id
    selected = ok(client.get("EncodingReservedUnitTypes?$select=CurrentReservedUnits"))
    assert selected["value"] == [{"CurrentReservedUnits": 10}]
    assert selected["odata.metadata"].endswith(
        "$metadata#EncodingReservedUnitTypes&$select=CurrentReservedUnits"
    )
    for query, count in [
        ("ReservedUnitType eq 0", 1),
        ("ReservedUnitType eq 1", 0),
        (f"AccountId eq guid'{account}'", 1),
        ("AccountId eq guid'00000000-0000-4000-8000-000000000000'", 0),
        ("CurrentReservedUnits lt MaxReservableUnits", 1),
    ]:
        body = ok(client.get("EncodingReservedUnitTypes", params={"$filter": query}))
        assert len(body["value"]) == count, query
    wrong = client.get("EncodingReservedUnitTypes", params={"$filter": f"AccountId eq '{account}'"})
    assert wrong.status_code == 400
    assert client.get("EncodingReservedUnitTypes?$top=0").json()["value"] == []
    assert client.get("EncodingReservedUnitTypes?$skip=1").json()["value"] == []


def test_the_scenario_chooses_the_type_and_the_maximum() -> None:
    with Emulator(
        jobs=0,
        seed=2,
        speed=0,
        slots=30,
        reserved_unit_type=ReservedUnitType.S3,
        max_reservable_units=40,
    ) as emulator:
        body = ok(AmsClient(emulator).get("EncodingReservedUnitTypes"))["value"][0]
    assert (body["ReservedUnitType"], body["CurrentReservedUnits"], body["MaxReservableUnits"]) == (
        2,
        30,
        40,
    )


def test_more_slots_than_the_default_quota_raise_the_maximum_with_them() -> None:
    units = JobStore(ScenarioConfig(jobs=0, slots=60), Clock(START, speed=0)).reserved_units()
    assert (units.current_reserved_units, units.max_reservable_units) == (60, 60)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"reserved_unit_type": 3}, "reserved_unit_type must be 0 (S1), 1 (S2) or 2 (S3), got 3"),
        ({"slots": 10, "max_reservable_units": 9}, "max_reservable_units must be within slots"),
        ({"max_reservable_units": 10_001}, "max_reservable_units must be within slots"),
        ({"other_processor_ratio": 1.5}, "other_processor_ratio must be within 0..1"),
    ],
)
def test_invalid_capacity_settings_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ScenarioConfig(**config)


# ---- CurrentReservedUnits are the slots: saturation ---------------------------------------------


def test_current_reserved_units_is_how_many_jobs_run_at_once(saturated: Emulator) -> None:
    client = AmsClient(saturated)
    units = ok(client.get("EncodingReservedUnitTypes"))["value"][0]["CurrentReservedUnits"]
    assert units == saturated.store.config.slots == 3
    saw_queue = saw_full = False
    for _ in range(180):  # three hours, a minute at a time
        saturated.clock.advance(60)
        jobs = saturated.jobs()
        count = states(jobs)
        assert count[JobState.PROCESSING] <= units
        assert len(holding(jobs)) <= units
        if count[JobState.QUEUED]:
            saw_queue = True
            # Jobs wait in Queued only while every slot is held.
            assert len(holding(jobs)) == units, count
            saw_full = saw_full or count[JobState.PROCESSING] == units
    assert saw_queue and saw_full
    assert states(saturated.jobs())[JobState.QUEUED] > 20  # the queue grew: saturation is real


def test_set_reserved_units_changes_how_many_run_from_then_on(saturated: Emulator) -> None:
    client = AmsClient(saturated)
    saturated.clock.advance(3600)
    assert states(saturated.jobs())[JobState.QUEUED] > 10
    saturated.set_reserved_units(6)
    body = ok(client.get("EncodingReservedUnitTypes"))["value"][0]
    assert (body["CurrentReservedUnits"], body["MaxReservableUnits"]) == (6, 25)
    assert saturated.store.config.slots == 6
    # Three more slots: three queued jobs leave the queue at once.
    assert len(holding(saturated.jobs())) == 6
    for _ in range(30):
        saturated.clock.advance(60)
        jobs = saturated.jobs()
        assert len(holding(jobs)) == 6
        assert states(jobs)[JobState.PROCESSING] <= 6

    # Fewer slots: the running jobs finish, and none starts until fewer than one slot is held.
    saturated.set_reserved_units(1, ReservedUnitType.S2)
    body = ok(client.get("EncodingReservedUnitTypes"))["value"][0]
    assert (body["ReservedUnitType"], body["CurrentReservedUnits"]) == (1, 1)
    previous = holding(saturated.jobs())
    for _ in range(600):  # at most ten hours
        saturated.clock.advance(60)
        now = holding(saturated.jobs())
        if len(now) <= 1:
            break
        assert now <= previous, "a job started while more slots were held than reserved"
        previous = now
    assert len(previous) >= 1
    for _ in range(60):
        saturated.clock.advance(60)
        jobs = saturated.jobs()
        assert len(holding(jobs)) == 1
        assert states(jobs)[JobState.PROCESSING] <= 1


@pytest.mark.parametrize("units", [0, 26, -1])
def test_reserved_units_stay_within_one_and_the_maximum(saturated: Emulator, units: int) -> None:
    with pytest.raises(ValueError, match=r"within 1\.\.25 \(MaxReservableUnits\)"):
        saturated.set_reserved_units(units)
    with pytest.raises(ValueError, match="reserved unit type"):
        saturated.set_reserved_units(2, 3)
    assert saturated.reserved_units().current_reserved_units == 3


# ---- MediaProcessors ----------------------------------------------------------------------------


def test_media_processors_in_minimal_metadata(client: AmsClient, emu: Emulator) -> None:
    response = client.get("MediaProcessors")
    assert response.headers["Content-Type"] == MINIMAL
    body = ok(response)
    assert body["odata.metadata"] == f"{emu.account_endpoint}$metadata#MediaProcessors"
    listed = emu.media_processors()
    assert len(listed) >= 6
    assert [entry["Id"] for entry in body["value"]] == [p.id for p in listed]
    for entry, processor in zip(body["value"], listed, strict=True):
        assert list(entry) == ["Id", "Description", "Name", "Sku", "Vendor", "Version"]
        assert entry == {
            "Id": processor.id,
            "Description": processor.description,
            "Name": processor.name,
            "Sku": processor.sku,
            "Vendor": processor.vendor,
            "Version": processor.version,
        }
        assert all(isinstance(value, str) for value in entry.values())
        assert entry["Id"].startswith("nb:mpid:UUID:")
    names = {entry["Name"] for entry in body["value"]}
    assert {
        "Media Encoder Standard",
        "Media Encoder Premium Workflow",
        "Azure Media Indexer",
        "Azure Media Indexer 2 Preview",
        "Azure Media Hyperlapse",
        "Storage Decryption",
    } <= names


def test_media_encoder_standard_is_listed_as_documented(client: AmsClient) -> None:
    query = {"$filter": "Name eq 'Media Encoder Standard'"}
    body = ok(client.get("MediaProcessors()", params=query))
    assert body["value"] == [
        {
            "Id": MES,
            "Description": "Media Encoder Standard",
            "Name": "Media Encoder Standard",
            "Sku": "",
            "Vendor": "Microsoft",
            "Version": "1.1",
        }
    ]


def test_media_processors_in_verbose_json(client: AmsClient, emu: Emulator) -> None:
    response = client.get("MediaProcessors", headers=verbose(client))
    assert response.headers["Content-Type"] == VERBOSE
    results = ok(response)["d"]["results"]
    assert len(results) == len(emu.media_processors())
    mes = next(entry for entry in results if entry["Id"] == MES)
    uri = f"{emu.account_endpoint}MediaProcessors('{quote(MES, safe='')}')"
    assert mes["__metadata"] == {"id": uri, "uri": uri, "type": f"{MODELS}.MediaProcessor"}
    assert mes["Version"] == "1.1"


def test_media_processors_select_order_and_paging(client: AmsClient, emu: Emulator) -> None:
    listed = emu.media_processors()
    selected = ok(client.get("MediaProcessors?$select=Id,Name"))
    assert selected["value"] == [{"Id": p.id, "Name": p.name} for p in listed]
    assert selected["odata.metadata"].endswith("$metadata#MediaProcessors&$select=Id,Name")
    page = ok(client.get("MediaProcessors?$skip=1&$top=2&$select=Id"))["value"]
    assert page == [{"Id": p.id} for p in listed[1:3]]
    by_name = ok(client.get("MediaProcessors?$orderby=Name desc&$select=Name"))["value"]
    assert [entry["Name"] for entry in by_name] == sorted((p.name for p in listed), reverse=True)
    indexers = ok(client.get("MediaProcessors", params={"$filter": "startswith(Name,'Azure')"}))
    assert {e["Name"] for e in indexers["value"]} == {
        p.name for p in listed if p.name.startswith("Azure")
    }
    unknown = client.get("MediaProcessors?$select=State")
    assert unknown.status_code == 400
    assert f"{MODELS}.MediaProcessor" in unknown.json()["odata.error"]["message"]["value"]


def test_a_media_processor_keyed_by_its_id(client: AmsClient, emu: Emulator) -> None:
    key = quote(MES, safe="")
    body = ok(client.get(f"MediaProcessors('{key}')"))
    assert body["odata.metadata"] == f"{emu.account_endpoint}$metadata#MediaProcessors/@Element"
    assert (body["Id"], body["Name"]) == (MES, "Media Encoder Standard")
    version = ok(client.get(f"MediaProcessors('{key}')/Version", headers=verbose(client)))
    assert version == {"d": {"Version": "1.1"}}
    missing = client.get("MediaProcessors('nb%3Ampid%3AUUID%3Anone')")
    assert missing.status_code == 404


def test_tests_add_and_remove_media_processors_at_runtime(client: AmsClient, emu: Emulator) -> None:
    before = emu.media_processors()
    added = emu.add_media_processor("Azure Media Face Detector", "1.0")
    try:
        assert added.startswith("nb:mpid:UUID:")
        ids = [entry["Id"] for entry in ok(client.get("MediaProcessors"))["value"]]
        assert added in ids
        assert len(ids) == len(before) + 1
        with pytest.raises(ValueError, match="already listed"):
            emu.add_media_processor("Another", "1.0", processor_id=added)
        emu.remove_media_processor(MES)
        try:
            ids = [entry["Id"] for entry in ok(client.get("MediaProcessors"))["value"]]
            assert MES not in ids
            assert client.get(f"MediaProcessors('{quote(MES, safe='')}')").status_code == 404
            # Tasks keep naming it: their MediaProcessorId is now one the account does not list.
            tasks = ok(client.get("Tasks?$select=MediaProcessorId"))["value"]
            assert MES in {task["MediaProcessorId"] for task in tasks}
        finally:
            emu.add_media_processor(
                "Media Encoder Standard", "1.1", processor_id=MES, vendor="Microsoft"
            )
    finally:
        emu.remove_media_processor(added)
    assert emu.media_processors() == before
    with pytest.raises(KeyError):
        emu.remove_media_processor(added)


# ---- tasks name the processors ------------------------------------------------------------------


def test_every_task_names_a_listed_processor_most_of_them_mes(client: AmsClient) -> None:
    listed = {entry["Id"] for entry in ok(client.get("MediaProcessors"))["value"]}
    tasks = ok(client.get("Tasks?$select=MediaProcessorId"))["value"]
    used = Counter(task["MediaProcessorId"] for task in tasks)
    assert set(used) <= listed
    assert used[MES] > len(tasks) / 2


def test_the_scenario_spreads_tasks_over_processors_by_seed() -> None:
    def store(seed: int, **config: Any) -> JobStore:
        return JobStore(ScenarioConfig(seed=seed, jobs=2000, **config), Clock(START, speed=0))

    tasks = [task for job in store(12).snapshot() for task in job.tasks]
    listed = {processor.id for processor in store(12).media_processors()}
    used = Counter(task.media_processor_id for task in tasks)
    assert set(used) <= listed
    assert used[MES] > 0.8 * len(tasks)
    assert len(used) >= 4  # MES and most of the others
    # A task's Name says what its processor does: no name is shared between processors.
    processors_of_name: dict[str | None, set[str]] = {}
    for task in tasks:
        processors_of_name.setdefault(task.name, set()).add(task.media_processor_id)
    assert all(len(ids) == 1 for ids in processors_of_name.values())

    again = [task.media_processor_id for job in store(12).snapshot() for task in job.tasks]
    assert again == [task.media_processor_id for task in tasks]
    other_seed = [task.media_processor_id for job in store(13).snapshot() for task in job.tasks]
    assert other_seed != again

    # The choice leaves every other draw as it was: same jobs, same task ids, same states.
    only_mes = store(12, other_processor_ratio=0.0).snapshot()
    assert {task.media_processor_id for job in only_mes for task in job.tasks} == {MES}
    mixed = store(12).snapshot()
    assert [(j.id, j.state, j.created, [t.id for t in j.tasks]) for j in only_mes] == [
        (j.id, j.state, j.created, [t.id for t in j.tasks]) for j in mixed
    ]


def test_add_job_takes_a_media_processor_for_all_tasks_or_each(
    client: AmsClient, emu: Emulator
) -> None:
    indexer = next(p.id for p in emu.media_processors() if p.name == "Azure Media Indexer")
    unlisted = "nb:mpid:UUID:00000000-0000-4000-8000-00000000abcd"
    every = emu.add_job(name="index all", tasks=2, media_processor_id=indexer)
    each = emu.add_job(name="one of each", tasks=2, media_processor_id=[MES, unlisted])
    default = emu.add_job(name="default")
    try:
        for job_id, expected in [
            (every, [indexer, indexer]),
            (each, [MES, unlisted]),
            (default, [MES]),
        ]:
            path = f"Jobs('{quote(job_id, safe='')}')/Tasks?$select=Name,MediaProcessorId"
            tasks = ok(client.get(path))["value"]
            by_name = {task["Name"]: task["MediaProcessorId"] for task in tasks}
            assert [by_name[f"Task {i + 1}"] for i in range(len(expected))] == expected
        with pytest.raises(ValueError, match="names 1 processor"):
            emu.add_job(name="short", tasks=2, media_processor_id=[MES])
        with pytest.raises(ValueError, match="non-empty string"):
            emu.add_job(name="empty", media_processor_id="")
    finally:
        for job_id in (every, each, default):
            emu.delete_job(job_id)


# ---- $metadata, the service document, faults and the log ----------------------------------------


def test_metadata_declares_both_types_and_sets(client: AmsClient) -> None:
    root = ET.fromstring(ok_bytes(client.get("$metadata")))
    types = {e.get("Name"): e for e in root.iter(f"{EDM}EntityType")}

    def props(name: str) -> dict[str | None, tuple[str | None, str | None]]:
        return {
            p.get("Name"): (p.get("Type"), p.get("Nullable"))
            for p in types[name].iter(f"{EDM}Property")
        }

    def key(name: str) -> list[str | None]:
        return [ref.get("Name") for ref in types[name].iter(f"{EDM}PropertyRef")]

    assert props("EncodingReservedUnitType") == {
        "AccountId": ("Edm.Guid", "false"),
        "ReservedUnitType": ("Edm.Int32", "false"),
        "CurrentReservedUnits": ("Edm.Int32", "false"),
        "MaxReservableUnits": ("Edm.Int32", "false"),
    }
    assert key("EncodingReservedUnitType") == ["AccountId"]
    processor = props("MediaProcessor")
    assert list(processor) == ["Id", "Description", "Name", "Sku", "Vendor", "Version"]
    assert {edm for edm, _ in processor.values()} == {"Edm.String"}
    assert key("MediaProcessor") == ["Id"]
    sets = {e.get("Name"): e.get("EntityType") for e in root.iter(f"{EDM}EntitySet")}
    assert sets["EncodingReservedUnitTypes"] == f"{MODELS}.EncodingReservedUnitType"
    assert sets["MediaProcessors"] == f"{MODELS}.MediaProcessor"


def test_service_document_lists_both_sets(client: AmsClient) -> None:
    names = [entry["name"] for entry in ok(client.get(""))["value"]]
    assert {"MediaProcessors", "EncodingReservedUnitTypes"} <= set(names)
    assert len(names) == 23
    assert {"MediaProcessors", "EncodingReservedUnitTypes"} <= set(
        ok(client.get("", headers=verbose(client)))["d"]["EntitySets"]
    )


@pytest.mark.parametrize("target", ["EncodingReservedUnitTypes", "MediaProcessors"])
def test_a_path_fault_targets_a_new_set_alone(
    client: AmsClient, emu: Emulator, target: str
) -> None:
    emu.faults.add(Fault("status", status=503, path=rf"/{target}$"))
    other = "MediaProcessors" if target == "EncodingReservedUnitTypes" else "Jobs?$top=1"
    assert client.get(other).status_code == 200
    failed = client.get(target)
    assert failed.status_code == 503
    assert failed.json()["odata.error"]["message"]["value"].startswith("Server is busy.")
    emu.faults.clear()
    assert client.get(target).status_code == 200


def test_faults_on_every_request_hit_the_new_sets(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("status", status=500, count=2))
    assert client.get("EncodingReservedUnitTypes").status_code == 500
    assert client.get("MediaProcessors?$select=Id").status_code == 500
    assert client.get("MediaProcessors").status_code == 200
    emu.faults.add(Fault("reset", count=1))
    with pytest.raises(requests.exceptions.ConnectionError):
        client.get("EncodingReservedUnitTypes")
    emu.faults.add(Fault("malformed_json", count=1))
    with pytest.raises(ValueError):
        client.get("MediaProcessors").json()


def test_the_request_log_records_the_new_sets(client: AmsClient, emu: Emulator) -> None:
    emu.faults.add(Fault("status", status=503, count=1, path="EncodingReservedUnitTypes"))
    client.get("EncodingReservedUnitTypes?$select=CurrentReservedUnits")
    client.get("EncodingReservedUnitTypes?$select=CurrentReservedUnits")
    client.get("MediaProcessors", params={"$filter": "Name eq 'Storage Decryption'"})
    records = [(r.method, r.path, r.query, r.status, r.fault) for r in emu.request_log]
    assert records == [
        (
            "GET",
            "/api/EncodingReservedUnitTypes",
            {"$select": "CurrentReservedUnits"},
            503,
            "status",
        ),
        ("GET", "/api/EncodingReservedUnitTypes", {"$select": "CurrentReservedUnits"}, 200, None),
        ("GET", "/api/MediaProcessors", {"$filter": "Name eq 'Storage Decryption'"}, 200, None),
    ]
    assert emu.request_count(api="ams", path=r"/EncodingReservedUnitTypes$") == 2
    assert emu.request_count(path=r"/MediaProcessors$", method="GET") == 1
