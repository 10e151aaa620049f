"""Property tests: any JSON in any field of any entity, against one long-lived exporter.

Each example serves its generated entities for the next scrape. Invariants: ``/metrics`` answers 200
and parses; ``ams_up`` is 1 whenever the body is a JSON document with a ``value`` list of objects;
every exported value is finite, ratios stay in 0..1, durations are not negative; and no job is
exported that AMS did not list.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.hostile.azure import (
    Account,
    HostileAzure,
    collection,
    iso,
    new_job_id,
    new_task_id,
    odata_answer,
)
from tests.hostile.lab import Lab
from tests.hostile.leaks import Witness
from tests.hostile.process import ExporterProcess, assert_sane_values
from tests.hostile.wire import Reply, Request

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,  # the same examples on every run: a failure here is never a fluke
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
ERROR_CODES = ["ErrorProcessingTask", "TransientError", "Unknown", "NotACode", ""]

odd_strings = st.sampled_from(
    [
        "",
        " ",
        "x" * 5000,
        "\ud800",
        "\udfff\ud800",
        "\x00",
        "\u202e\u200b\ufeff",
        "💥" * 10,
        "NaN",
        "Infinity",
        "-0",
        "1e308",
        "-5000",
        "/Date(1764583200000)/",
        "/Date(-99999999999999999)/",
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59.9999999Z",
        "2026-02-30T00:00:00",
        "2026-12-01T10:00:00+99:99",
        "nb:jid:UUID:",
        'a"b\\c\n}{',
    ]
)
strings = st.text(max_size=30) | odd_strings
numbers = (
    st.integers(min_value=-(2**63), max_value=2**63)
    | st.sampled_from([10**400, -(10**400), 2**53 + 1, 0, -1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([-0.0, 1e308, -1e308, 5e-324, 1e-300])
)
scalars = st.none() | st.booleans() | numbers | strings
any_json = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
dates = st.floats(min_value=-7200, max_value=7200).map(lambda ago: iso(time.time() - ago))
job_ids = st.builds(new_job_id) | st.sampled_from(
    [f"nb:jid:UUID:0000000{i}-0000-0000-0000-000000000000" for i in range(3)]
)


def _field(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(plausible, any_json)


JOB_FIELDS = {
    "Name": st.text(max_size=40),
    "LastModified": dates,
    "StartTime": dates | st.none(),
    "EndTime": dates | st.none(),
    "Priority": st.integers(min_value=0, max_value=10),
    "RunningDuration": st.floats(min_value=0, max_value=1e7),
}
TASK_FIELDS = {
    "Name": st.text(max_size=40),
    "Progress": st.floats(min_value=0, max_value=100),
    "RunningDuration": st.floats(min_value=0, max_value=1e7),
    "StartTime": dates | st.none(),
    "EndTime": dates | st.none(),
    "ErrorDetails": st.lists(
        st.fixed_dictionaries(
            {"Code": st.sampled_from(ERROR_CODES), "Message": st.text(max_size=20)}
        ),
        max_size=2,
    ),
}
jobs = st.fixed_dictionaries(
    {
        "Id": _field(job_ids),
        "State": _field(st.integers(min_value=0, max_value=6)),
        "Created": _field(dates),
    },
    optional={name: _field(value) for name, value in JOB_FIELDS.items()},
)
tasks = st.fixed_dictionaries(
    {
        "Id": _field(st.builds(new_task_id)),
        "State": _field(st.integers(min_value=0, max_value=6)),
    },
    optional={name: _field(value) for name, value in TASK_FIELDS.items()},
)
# Whole bodies: well-shaped, odd shapes, or not JSON at all.
documents = st.one_of(
    st.builds(lambda value: {"odata.metadata": "x", "value": value}, st.lists(jobs, max_size=4)),
    st.builds(lambda value: {"value": value}, any_json),
    st.builds(lambda inner: {"d": inner}, any_json),
    any_json,
)
bodies = st.one_of(documents.map(lambda doc: json.dumps(doc).encode()), st.binary(max_size=200))

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Bench:
    exporter: ExporterProcess
    azure: HostileAzure
    account: Account
    served_tasks: list[bytes]


@pytest.fixture(scope="module")
def bench(module_lab: Lab) -> Iterator[Bench]:
    azure = module_lab.azure()
    account = module_lab.account(azure, "prop")
    served_tasks = [collection([], "Tasks")]

    def tasks_answer(_request: Request) -> Reply:
        return odata_answer(served_tasks[0])

    account.on_tasks = tasks_answer
    exporter = module_lab.exporter([module_lab.entry(azure, account)])
    exporter.wait_ready()
    yield Bench(exporter, azure, account, served_tasks)


def _serve(bench: Bench, body: bytes) -> None:
    bench.account.on_jobs = lambda _request: odata_answer(body)


def _exported_ids_are_listed(bench: Bench, served: list[dict[str, Any]], scrape: Any) -> None:
    listed = {
        _LONE_SURROGATE.sub("\ufffd", entity["Id"])
        for entity in served
        if isinstance(entity.get("Id"), str)
    }
    invented = scrape.job_ids("prop") - listed
    assert not invented, f"exported jobs AMS never listed: {invented}"


_HUGE = 10**400


def _job_with(**fields: Any) -> dict[str, Any]:
    return {"Id": new_job_id(), "State": 2, "Created": iso(time.time() - 60), **fields}


@SETTINGS
@given(served_jobs=st.lists(jobs, max_size=8), served_tasks=st.lists(tasks, max_size=4))
@example(served_jobs=[_job_with(Created=_HUGE)], served_tasks=[])
@example(served_jobs=[_job_with(StartTime=-_HUGE, EndTime=_HUGE)], served_tasks=[])
@example(served_jobs=[_job_with(RunningDuration=_HUGE, Priority=-_HUGE)], served_tasks=[])
@example(
    served_jobs=[_job_with()],
    served_tasks=[{"Id": new_task_id(), "State": 2, "Progress": _HUGE, "RunningDuration": -_HUGE}],
)
def test_any_value_in_any_field_keeps_the_account_up_and_the_exposition_sane(
    bench: Bench,
    witness: Witness,
    served_jobs: list[dict[str, Any]],
    served_tasks: list[dict[str, Any]],
) -> None:
    _serve(bench, collection(served_jobs))
    bench.served_tasks[0] = collection(served_tasks, "Tasks")

    scrape = bench.exporter.scrape(10)

    assert scrape.up("prop") == 1, bench.exporter.log_lines("WARN")[-1:]
    assert_sane_values(scrape)
    _exported_ids_are_listed(bench, served_jobs, scrape)
    witness.assert_clean()


@SETTINGS
@given(body=bodies)
def test_any_body_gets_a_sane_exposition(bench: Bench, witness: Witness, body: bytes) -> None:
    _serve(bench, body)
    bench.served_tasks[0] = collection([], "Tasks")

    scrape = bench.exporter.scrape(10)

    assert_sane_values(scrape)
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    well_shaped = (
        isinstance(document, dict)
        and isinstance(document.get("value"), list)
        and all(isinstance(item, dict) for item in document["value"])
    )
    if well_shaped:
        assert scrape.up("prop") == 1, bench.exporter.log_lines("WARN")[-1:]
    witness.assert_clean()
