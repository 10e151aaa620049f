"""Reliability of reading entities: one unreadable job or task costs itself, never the account.

Scenarios 6 (unreadable entities) and 7 (domain clamps) of the hostile suite, against one exporter
with two accounts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.hostile.azure import Account, HostileAzure, collection_of_raw, job, odata_answer, task
from tests.hostile.lab import Lab
from tests.hostile.leaks import Witness
from tests.hostile.process import ExporterProcess, Scrape, assert_sane_values

NAME_LIMIT = 512
ELLIPSIS = "…"
LONG_NAME = "long-" + "n" * 600
# A job that ran from 180 s ago to 60 s ago: 120 s from its StartTime and EndTime.
RAN_SECONDS = 120.0


def _raw(entity: dict[str, Any], **literals: bytes) -> bytes:
    """``entity`` as JSON text, with ``"<<KEY>>"`` placeholders swapped for raw bytes."""
    text = json.dumps(entity).encode()
    for key, literal in literals.items():
        text = text.replace(json.dumps(f"<<{key}>>").encode(), literal)
    return text


def _finished(**fields: Any) -> dict[str, Any]:
    return job(3, started=RAN_SECONDS + 60, ended=60, **fields)


@dataclass
class Unreadable:
    """The account serving unreadable and odd entities, and its oracle."""

    account: Account
    readable: set[str]
    unreadable: set[str]
    text_duration: str
    nan_duration: str
    bad_utf8: str
    good_task: str
    odd_progress_task: str


@dataclass
class Clamped:
    """The account serving out-of-domain values, and its oracle."""

    account: Account
    running: str
    progress_250: str
    progress_minus_40: str
    long_task: str
    negative_duration: str
    huge_duration: str
    long_name: str


def _unreadable(lab: Lab, azure: HostileAzure) -> Unreadable:
    account = lab.account(azure, "unreadable")
    processing, queued, finished, failed, canceled = job(2), job(0), job(3), job(4), job(5)
    state_7, state_minus_1, no_id = job(7), job(-1), job(2)
    del no_id["Id"]
    text_duration = _finished(running_ms="abc")
    nan_duration = _finished(running_ms="<<NAN>>")
    bad_utf8 = job(0, name="<<NAME>>")
    entities = [processing, queued, finished, failed, canceled, state_7, state_minus_1, no_id]
    entities += [text_duration, nan_duration, bad_utf8]
    account.jobs = entities
    body = [_raw(entity) for entity in entities[:-2]]
    body.append(_raw(nan_duration, NAN=b"NaN"))
    body.append(_raw(bad_utf8, NAME=b'"bad-\xff\xfe-name"'))
    jobs_body = collection_of_raw(body)
    account.on_jobs = lambda _request: odata_answer(jobs_body)
    good_task, no_id_task, odd_progress = task(progress=50), task(), task(progress="abc")
    del no_id_task["Id"]
    account.tasks[processing["Id"]] = [good_task, no_id_task, odd_progress]
    account.tasks[failed["Id"]] = [task(state=4, progress=100)]
    readable = {e["Id"] for e in [processing, queued, finished, failed, canceled]}
    readable |= {text_duration["Id"], nan_duration["Id"], bad_utf8["Id"]}
    return Unreadable(
        account,
        readable,
        {state_7["Id"], state_minus_1["Id"]},
        text_duration["Id"],
        nan_duration["Id"],
        bad_utf8["Id"],
        good_task["Id"],
        odd_progress["Id"],
    )


def _clamped(lab: Lab, azure: HostileAzure) -> Clamped:
    account = lab.account(azure, "clamped")
    running = job(2)
    negative = _finished(running_ms=-5000)
    huge = _finished(running_ms=1e308)
    long_name = job(2, name=LONG_NAME)
    account.jobs = [running, negative, huge, long_name]
    over, under, long_task = task(progress=250), task(progress=-40), task(name=LONG_NAME)
    account.tasks[running["Id"]] = [over, under, long_task]
    account.tasks[long_name["Id"]] = [task(progress=10)]
    return Clamped(
        account,
        running["Id"],
        over["Id"],
        under["Id"],
        long_task["Id"],
        negative["Id"],
        huge["Id"],
        long_name["Id"],
    )


def _overflowing(lab: Lab, azure: HostileAzure) -> tuple[Account, str]:
    """An account whose one job has a RunningDuration that overflows a double (``1e999``)."""
    account = lab.account(azure, "overflow")
    infinite = _finished(running_ms="<<INF>>")
    account.jobs = [infinite, job(0)]
    jobs_body = collection_of_raw([_raw(infinite, INF=b"1e999"), _raw(account.jobs[1])])
    account.on_jobs = lambda _request: odata_answer(jobs_body)
    return account, infinite["Id"]


@dataclass
class Bench:
    exporter: ExporterProcess
    unreadable: Unreadable
    clamped: Clamped
    infinite_duration: str


@pytest.fixture(scope="module")
def bench(module_lab: Lab) -> Iterator[Bench]:
    azure = module_lab.azure()
    unreadable = _unreadable(module_lab, azure)
    clamped = _clamped(module_lab, azure)
    overflow, infinite = _overflowing(module_lab, azure)
    exporter = module_lab.exporter(
        [
            module_lab.entry(azure, account)
            for account in (unreadable.account, clamped.account, overflow)
        ]
    )
    yield Bench(exporter, unreadable, clamped, infinite)


def _durations(scrape: Scrape, account: str, job_id: str) -> list[float]:
    return [
        s.value
        for s in scrape.find("ams_job_running_duration_seconds", account=account, job_id=job_id)
    ]


def _assert_duration_absent_or_derived(scrape: Scrape, account: str, job_id: str) -> None:
    assert scrape.find("ams_job_state", account=account, job_id=job_id), f"{job_id} not exported"
    for value in _durations(scrape, account, job_id):
        assert abs(value - RAN_SECONDS) < 2.0, f"{job_id}: running duration {value}"


# ---------------------------------------------------------------------------------------------
# 6. One unreadable job does not blind the account


def test_one_unreadable_job_does_not_blind_the_account(bench: Bench, witness: Witness) -> None:
    scrape = bench.exporter.scrape()
    served = bench.unreadable

    assert scrape.up("unreadable") == 1
    exported = scrape.job_ids("unreadable")
    assert served.readable <= exported, f"missing: {served.readable - exported}"
    assert not served.unreadable & exported, "a job whose State cannot be read was exported"
    assert_sane_values(scrape)
    witness.assert_clean()


def test_skipped_entities_are_counted_per_kind(bench: Bench, witness: Witness) -> None:
    scrape = bench.exporter.scrape()

    assert scrape.value("ams_unreadable_entities", account="unreadable", entity="job") == 3
    assert scrape.value("ams_unreadable_entities", account="unreadable", entity="task") == 1
    assert scrape.value("ams_unreadable_entities", account="clamped", entity="job") == 0
    witness.assert_clean()


def test_a_bad_optional_field_drops_only_the_series_that_depend_on_it(
    bench: Bench, witness: Witness
) -> None:
    scrape = bench.exporter.scrape()
    served = bench.unreadable

    for job_id in (served.text_duration, served.nan_duration):
        _assert_duration_absent_or_derived(scrape, "unreadable", job_id)
        assert scrape.find("ams_job_created_timestamp_seconds", job_id=job_id)
    progress = {
        s.labels["task_id"]: s.value
        for s in scrape.find("ams_task_progress_ratio", account="unreadable")
    }
    assert progress.get(served.good_task) == 0.5
    assert served.odd_progress_task not in progress, "a Progress of 'abc' was exported"
    witness.assert_clean()


def test_a_job_name_with_invalid_utf8_is_exported_with_replacement_characters(
    bench: Bench, witness: Witness
) -> None:
    scrape = bench.exporter.scrape()

    states = scrape.find("ams_job_state", account="unreadable", job_id=bench.unreadable.bad_utf8)
    assert states, "the job with an invalid UTF-8 name was not exported"
    name = states[0].labels["job_name"]
    assert name.startswith("bad-") and name.endswith("-name") and "\ufffd" in name, name
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# 7. Domain clamps


def test_task_progress_outside_0_100_is_clamped(bench: Bench, witness: Witness) -> None:
    scrape = bench.exporter.scrape()
    served = bench.clamped

    assert scrape.up("clamped") == 1
    assert scrape.value("ams_task_progress_ratio", task_id=served.progress_250) == 1.0
    assert scrape.value("ams_task_progress_ratio", task_id=served.progress_minus_40) == 0.0
    assert_sane_values(scrape)
    witness.assert_clean()


@pytest.mark.parametrize("which", ["negative_duration", "huge_duration"])
def test_an_impossible_running_duration_is_never_exported_as_is(
    bench: Bench, witness: Witness, which: str
) -> None:
    scrape = bench.exporter.scrape()

    _assert_duration_absent_or_derived(scrape, "clamped", getattr(bench.clamped, which))
    witness.assert_clean()


def test_a_running_duration_beyond_a_double_costs_only_its_series(
    bench: Bench, witness: Witness
) -> None:
    scrape = bench.exporter.scrape()

    assert scrape.up("overflow") == 1
    _assert_duration_absent_or_derived(scrape, "overflow", bench.infinite_duration)
    assert_sane_values(scrape)
    witness.assert_clean()


def test_names_over_512_characters_are_cut_with_an_ellipsis(bench: Bench, witness: Witness) -> None:
    scrape = bench.exporter.scrape()
    served = bench.clamped
    cut = LONG_NAME[:NAME_LIMIT] + ELLIPSIS

    states = scrape.find("ams_job_state", account="clamped", job_id=served.long_name)
    assert states, "the job with a long name was not exported"
    assert {s.labels["job_name"] for s in states} == {cut}
    tasks = scrape.find("ams_task_progress_ratio", task_id=served.long_task)
    assert tasks, "the task with a long name was not exported"
    assert tasks[0].labels["task_name"] == cut
    assert tasks[0].labels["job_id"] == served.running
    witness.assert_clean()
