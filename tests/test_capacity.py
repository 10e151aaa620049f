"""An account's capacity: encoding reserved units and the media processors that run its tasks.

A real exporter (wired as ``ams-exporter`` wires it) scrapes an emulator; the oracles are the
emulator's own state (its EncodingReservedUnitTypes entity, its MediaProcessors list, its jobs
and tasks) and its request log, never the exporter's output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ams_emulator import Emulator, Fault, JobState
from tests.support.harness import RunningExporter, Scrape, running_exporter

UNIT_TYPES = ("S1", "S2", "S3")
# Every job of the emulator's 90 days is in scope, so that the oracle has no window edge.
EVERY_JOB = {"finished_window": "3000h", "max_jobs": 10000}
# The states whose tasks the exporter shows.
TASK_STATES = {JobState.PROCESSING, JobState.CANCELING, JobState.ERROR}
UNITS_PATH = r"/EncodingReservedUnitTypes$"
PROCESSORS_PATH = r"/MediaProcessors$"


def _units(scrape: Scrape, account: str = "a") -> dict[str, float]:
    """``{type: value}`` of ``ams_encoding_reserved_units{account}``."""
    return {
        s.labels["type"]: s.value
        for s in scrape.samples
        if s.name == "ams_encoding_reserved_units" and s.labels["account"] == account
    }


def _maximum(scrape: Scrape, account: str = "a") -> list[float]:
    return scrape.values("ams_encoding_reserved_units_max", account=account)


def _emulated_units(emulator: Emulator) -> tuple[dict[str, float], list[float]]:
    """What the emulator's entity says, in the shape of :func:`_units` and :func:`_maximum`."""
    entity = emulator.reserved_units()
    units = {UNIT_TYPES[entity.reserved_unit_type]: float(entity.current_reserved_units)}
    return units, [float(entity.max_reservable_units)]


def _task_info(scrape: Scrape, account: str = "a") -> dict[tuple[str, str], tuple[str, str]]:
    """``{(job_id, task_id): (media_processor, media_processor_version)}`` of ``ams_task_info``;
    fails if a task has more than one series."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for s in scrape.samples:
        if s.name != "ams_task_info" or s.labels["account"] != account:
            continue
        key = (s.labels["job_id"], s.labels["task_id"])
        assert key not in found, f"two ams_task_info series for {key}"
        assert s.value == 1
        found[key] = (s.labels["media_processor"], s.labels["media_processor_version"])
    return found


def _task_keys(scrape: Scrape, name: str, account: str = "a") -> set[tuple[str, str]]:
    return {
        (s.labels["job_id"], s.labels["task_id"])
        for s in scrape.samples
        if s.name == name and s.labels.get("account") == account
    }


def _expected_task_info(emulator: Emulator) -> dict[tuple[str, str], tuple[str, str]]:
    """The emulator's tasks of jobs whose tasks are shown, with their processor's Name and
    Version as the emulator lists it (the Id itself and "" when it does not)."""
    listed = {p.id: (p.name, p.version) for p in emulator.media_processors()}
    return {
        (job.id, task.id): listed.get(task.media_processor_id, (task.media_processor_id, ""))
        for job in emulator.jobs()
        if job.state in TASK_STATES
        for task in job.tasks
    }


def _holds_a_unit(job: Any) -> bool:
    """Whether an emulator job holds an encoding unit: from Scheduled until it ends (a job
    canceled while it waited in Queued goes through Canceling without one)."""
    if job.state == JobState.CANCELING:
        return job.start_time is not None
    return job.state in (JobState.SCHEDULED, JobState.PROCESSING)


def _requests(emulator: Emulator, path: str) -> int:
    return emulator.request_count("ams", path, "GET")


def _record(caplog: pytest.LogCaptureFixture, level: int, *fragments: str) -> list[str]:
    """Messages logged at exactly ``level`` holding every fragment."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and all(f in r.getMessage() for f in fragments)
    ]


@pytest.fixture
def running(request: pytest.FixtureRequest) -> Iterator[tuple[Emulator, RunningExporter]]:
    """An emulator and an exporter for it; ``request.param``: (emulator kwargs, jobs config)."""
    emulator_kwargs, jobs = request.param
    with Emulator(**{"speed": 0, "seed": 11, **emulator_kwargs}) as emulator:
        with running_exporter({"a": emulator}, {"a": {"jobs": jobs}}) as exporter:
            yield emulator, exporter


# ---------------------------------------------------------------------------------------------
# Encoding reserved units


@pytest.mark.parametrize(
    ("unit_type", "slots", "maximum"), [(0, 3, None), (1, 7, 40), (2, 30, 120)]
)
def test_reserved_units_and_their_maximum_are_the_emulators_entity(
    unit_type: int, slots: int, maximum: int | None
) -> None:
    config: dict[str, Any] = {"reserved_unit_type": unit_type, "slots": slots}
    if maximum is not None:
        config["max_reservable_units"] = maximum
    with Emulator(jobs=40, seed=unit_type, speed=0, **config) as emulator:
        with running_exporter({"a": emulator}) as exporter:
            scrape = exporter.scrape()
        expected = _emulated_units(emulator)

    assert scrape.value("ams_up", account="a") == 1
    assert (_units(scrape), _maximum(scrape)) == expected
    assert expected[0] == {UNIT_TYPES[unit_type]: slots}, "the emulator holds what it was given"


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="malformed_json", path=UNITS_PATH),
        Fault(kind="status", status=403, path=UNITS_PATH),
    ],
    ids=["not-json", "403"],
)
def test_units_never_read_are_absent_with_the_account_up_and_one_warning_per_episode(
    caplog: pytest.LogCaptureFixture, fault: Fault
) -> None:
    with Emulator(jobs=60, seed=4, speed=0, slots=5) as emulator:
        emulator.faults.add(fault)
        every_time = {"jobs": {"capacity_interval": "1ms"}}
        with (
            caplog.at_level(logging.INFO),
            running_exporter({"a": emulator}, {"a": every_time}) as exporter,
        ):
            failing = [exporter.scrape() for _ in range(4)]
            failed_reads = [r for r in emulator.request_log if r.fault and "Reserved" in r.path]
            warnings = _record(caplog, logging.WARNING, "reserved units")
            emulator.faults.clear()
            recovered = exporter.scrape()
            expected = _emulated_units(emulator)
            later = [exporter.scrape() for _ in range(2)]

    assert len(failed_reads) == 4, "every collection read the units, and the fault answered"
    for scrape in failing:
        assert scrape.value("ams_up", account="a") == 1
        assert scrape.by_job("ams_job_priority", "a"), "the jobs are exported meanwhile"
        assert (_units(scrape), _maximum(scrape)) == ({}, [])
    assert len(warnings) == 1, warnings
    assert (_units(recovered), _maximum(recovered)) == expected
    assert len(_record(caplog, logging.INFO, "reserved units")) == 1
    assert len(_record(caplog, logging.WARNING, "reserved units")) == 1, "nothing failed since"
    assert all((_units(s), _maximum(s)) == expected for s in later)


def test_units_are_read_once_per_interval_and_a_change_waits_for_it() -> None:
    with Emulator(jobs=40, seed=5, speed=0, slots=4) as emulator:
        with running_exporter({"a": emulator}) as exporter:  # capacity_interval: 5m
            scrapes = [exporter.scrape() for _ in range(5)]
            emulator.set_reserved_units(9)
            after_change = [exporter.scrape() for _ in range(3)]
        reads = _requests(emulator, UNITS_PATH)
        listings = _requests(emulator, r"/Jobs$")

    assert listings >= 8, "every scrape collected"
    assert reads == 1, f"{reads} EncodingReservedUnitTypes requests in 8 collections"
    assert all(_units(s) == {"S1": 4.0} for s in scrapes + after_change)


def test_failed_reads_and_failed_collections_keep_the_units_last_read() -> None:
    every_time = {"jobs": {"capacity_interval": "1ms"}}
    with Emulator(jobs=40, seed=7, speed=0, slots=5, reserved_unit_type=1) as emulator:
        with running_exporter({"a": emulator}, {"a": every_time}) as exporter:
            good = exporter.scrape()
            emulator.faults.add(Fault(kind="malformed_json", path=UNITS_PATH))
            failed_reads = [exporter.scrape() for _ in range(3)]
            emulator.faults.add(Fault(kind="status", status=403, path=r"/Jobs$"))
            failed_collection = exporter.scrape()
        expected = _emulated_units(emulator)

    assert (_units(good), _maximum(good)) == expected == ({"S2": 5.0}, [25.0])
    for scrape in failed_reads:
        assert scrape.value("ams_up", account="a") == 1
        assert (_units(scrape), _maximum(scrape)) == expected
    assert failed_collection.value("ams_up", account="a") == 0
    assert (_units(failed_collection), _maximum(failed_collection)) == expected


INTERVAL = 1.5


def test_a_change_of_reserved_units_shows_after_the_interval_and_not_before() -> None:
    short = {"jobs": {"capacity_interval": f"{int(INTERVAL * 1000)}ms"}}
    with Emulator(jobs=40, seed=6, speed=0, slots=4) as emulator:
        with running_exporter({"a": emulator}, {"a": short}) as exporter:
            assert _units(exporter.scrape()) == {"S1": 4.0}
            (first_read,) = [
                r.time.timestamp() for r in emulator.request_log if "Reserved" in r.path
            ]
            emulator.set_reserved_units(6, 2)
            seen: list[tuple[float, dict[str, float]]] = []
            for _ in range(200):  # about INTERVAL + 10 s at most
                scrape = exporter.scrape()
                seen.append((time.time(), _units(scrape)))
                if seen[-1][1] != {"S1": 4.0}:
                    break
                time.sleep(0.05)
        reads = [r.time.timestamp() for r in emulator.request_log if "Reserved" in r.path]

    before = [units for ended, units in seen if ended < first_read + INTERVAL]
    assert before, "no scrape happened within the interval: the machine is too slow to tell"
    assert all(units == {"S1": 4.0} for units in before), before
    assert seen[-1][1] == {"S3": 6.0}, f"the change never showed: {seen[-3:]}"
    assert len(reads) == 2, "one read for the first scrape, one after the interval"
    assert reads[1] - reads[0] >= INTERVAL


# ---------------------------------------------------------------------------------------------
# Tasks and their media processors


@pytest.mark.parametrize(
    "running", [({"jobs": 400, "other_processor_ratio": 0.5}, EVERY_JOB)], indirect=True
)
def test_task_info_names_each_shown_task_with_its_processors_name_and_version(
    running: tuple[Emulator, RunningExporter],
) -> None:
    emulator, exporter = running
    scrape = exporter.scrape()
    expected = _expected_task_info(emulator)
    shown = _task_info(scrape)

    assert scrape.value("ams_up", account="a") == 1
    assert shown == expected
    progress = _task_keys(scrape, "ams_task_progress_ratio")
    errors = _task_keys(scrape, "ams_job_error_info")
    assert set(shown) == progress | errors
    assert len(set(expected.values())) >= 3, "the scenario runs several processors"
    assert any(job.state == JobState.ERROR for job in emulator.jobs())

    moving = [job.id for job in emulator.jobs() if job.state == JobState.PROCESSING][:3]
    assert len(moving) == 3
    final = (JobState.FINISHED, JobState.CANCELED, JobState.ERROR)
    for job_id, state in zip(moving, final, strict=True):
        emulator.set_job_state(job_id, state)
    later = _task_info(exporter.scrape())
    assert later == _expected_task_info(emulator)
    assert {key[0] for key in later} & set(moving) == {moving[2]}, "only the failed one stays"


def test_a_task_naming_an_unlisted_processor_shows_its_id_until_the_processor_is_listed() -> None:
    unlisted = "nb:mpid:UUID:0b9c3e62-5d1f-4c61-9f0a-3e4d5c6b7a81"
    with Emulator(jobs=200, seed=8, speed=0, other_processor_ratio=0.5) as emulator:
        used = {
            t.media_processor_id for j in emulator.jobs() if j.state in TASK_STATES for t in j.tasks
        }
        removed = next(p for p in emulator.media_processors() if p.id in used)
        emulator.remove_media_processor(removed.id)
        stranger = emulator.add_job(
            name="names-an-unlisted-processor", state=2, tasks=2, media_processor_id=unlisted
        )
        with running_exporter({"a": emulator}, {"a": {"jobs": EVERY_JOB}}) as exporter:
            first = exporter.scrape()
            unknown_reads = _requests(emulator, PROCESSORS_PATH)
            quiet = [exporter.scrape() for _ in range(3)]
            quiet_reads = _requests(emulator, PROCESSORS_PATH) - unknown_reads
            late = emulator.add_media_processor("Late Encoder", "3.0")
            exporter.scrape()
            steady_reads = _requests(emulator, PROCESSORS_PATH) - unknown_reads - quiet_reads
            named = emulator.add_job(
                name="names-the-late-processor", state=2, tasks=1, media_processor_id=late
            )
            picked = [exporter.scrape() for _ in range(4)]
            picked_reads = _requests(emulator, PROCESSORS_PATH) - unknown_reads - quiet_reads
            expected = _expected_task_info(emulator)

    for scrape in (first, *quiet):
        info = _task_info(scrape)
        assert {info[key] for key in info if key[0] == stranger} == {(unlisted, "")}
        assert {pair for key, pair in info.items() if pair[0] == removed.id} == {(removed.id, "")}
        assert all(name != removed.name for name, _ in info.values())
    assert unknown_reads == 1
    assert quiet_reads == 0, "an Id still unlisted after a read is not asked again every scrape"
    assert steady_reads == 0, "a processor nobody names is not a reason to read"
    assert picked_reads == 1, f"{picked_reads} MediaProcessors requests for one new processor"
    for scrape in picked:
        info = _task_info(scrape)
        assert {info[key] for key in info if key[0] == named} == {("Late Encoder", "3.0")}
        assert info == expected


@pytest.mark.parametrize("running", [({"jobs": 200}, {"tasks": False})], indirect=True)
def test_without_tasks_no_processor_is_read_and_no_task_info_shown(
    running: tuple[Emulator, RunningExporter],
) -> None:
    emulator, exporter = running
    scrapes = [exporter.scrape() for _ in range(3)]

    assert _requests(emulator, PROCESSORS_PATH) == 0
    assert _requests(emulator, UNITS_PATH) == 1
    for scrape in scrapes:
        assert scrape.value("ams_up", account="a") == 1
        assert not _task_info(scrape)
        assert (_units(scrape), _maximum(scrape)) == _emulated_units(emulator)


# ---------------------------------------------------------------------------------------------
# The emulator as a fixture: saturation is real


def test_with_jobs_queued_the_emulator_holds_exactly_its_reserved_units() -> None:
    with Emulator(jobs=300, seed=12, speed=0, slots=6, arrivals_per_hour=240) as emulator:
        checked = 0
        for step in range(40):
            jobs = emulator.jobs()
            queued = sum(1 for job in jobs if job.state == JobState.QUEUED)
            holding = sum(1 for job in jobs if _holds_a_unit(job))
            processing = sum(1 for job in jobs if job.state == JobState.PROCESSING)
            units = emulator.reserved_units().current_reserved_units
            assert processing <= holding <= units, (step, processing, holding, units)
            if queued > 1:  # one job may be held back from the queue on purpose
                assert holding == units, (step, queued, holding, units)
                checked += 1
            if step == 20:
                emulator.set_reserved_units(units + 3)
            emulator.clock.advance(90.0)
        assert emulator.reserved_units().current_reserved_units == 9
    assert checked >= 30, f"jobs waited in Queued at only {checked} of 40 moments"
