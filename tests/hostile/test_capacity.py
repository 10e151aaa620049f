"""Encoding reserved units and media processors from a hostile AMS: any JSON in any of their fields.

``EncodingReservedUnitTypes`` and ``MediaProcessors`` are read beside the jobs, not as part of
them: whatever these sets hold, the exporter keeps serving and ``ams_up`` stays 1 (the jobs were
read). Each field of both sets, and a task's ``MediaProcessorId``, gets every JSON type; the sets
come empty, with more than one entity, and as bodies that are not JSON. Oracles are what the
hostile server served: a value that cannot be read leaves its series absent (or at its last good
value), a processor that cannot be read leaves a task's ``media_processor`` at the Id the task
names; labels never carry control characters or unbounded text; no traceback in the log.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.hostile.azure import (
    MES_ID,
    SECRET,
    Account,
    HostileAzure,
    collection,
    job,
    new_processor_id,
    odata_answer,
    processor,
    reserved_units,
    task,
)
from tests.hostile.lab import Lab
from tests.hostile.leaks import Witness
from tests.hostile.process import ExporterProcess, Scrape, assert_sane_values
from tests.hostile.wire import Answer

NAME_LIMIT = 512
ELLIPSIS = "…"
LABEL_LIMIT = NAME_LIMIT + len(ELLIPSIS)
MEGABYTE = 1024 * 1024
MES_NAME = "Media Encoder Standard"
MES_VERSION = "1.1"
UNIT_TYPES = ("S1", "S2", "S3")
# The served entity before a variant replaces one of its fields: S2, 7 units, at most 40.
BASE_TYPE, BASE_UNITS, BASE_MAX = 1, 7, 40
CONTROL = "Media\tEncoder\n\x00\x1b[31mRed\x7f\x85\r"
MISSING = object()  # a field left out of the entity

# How the exporter may read a served value: exactly as sent, either as sent or not at all (a
# number sent as a numeric string or a whole float), or not at all.
EXACT, TOLERATED, UNREADABLE = "exact", "tolerated", "unreadable"


@dataclass(frozen=True)
class Variant:
    """One JSON value given to one field."""

    name: str
    value: object
    verdict: str


def _number_variants(good: int) -> list[Variant]:
    """Every JSON type for a number field whose plausible value is ``good``."""
    return [
        Variant("int", good, EXACT),
        Variant("numeric-string", str(good), TOLERATED),
        Variant("whole-float", float(good), TOLERATED),
        Variant("null", None, UNREADABLE),
        Variant("bool", True, UNREADABLE),
        Variant("float", good + 0.5, UNREADABLE),
        Variant("negative", -1 - good, UNREADABLE),
        Variant("huge-int", 10**400, UNREADABLE),
        Variant("beyond-a-double", 2**53 + 1, UNREADABLE),
        Variant("string", "several", UNREADABLE),
        Variant("empty-string", "", UNREADABLE),
        Variant("list", [good], UNREADABLE),
        Variant("object", {"value": good}, UNREADABLE),
        Variant("missing", MISSING, UNREADABLE),
    ]


UNIT_FIELDS = {
    # 2 is S3; 3 is no documented type.
    "ReservedUnitType": [*_number_variants(2), Variant("unknown-code", 3, UNREADABLE)],
    "CurrentReservedUnits": [*_number_variants(9), Variant("zero", 0, EXACT)],
    "MaxReservableUnits": _number_variants(50),
}

# Odd values of a string field (Id, Name, Version, MediaProcessorId) that are not strings.
NOT_STRINGS = {
    "null": None,
    "bool": False,
    "float": 1.5,
    "huge-int": 10**400,
    "list": ["x"],
    "object": {"Name": "x"},
    "missing": MISSING,
}
NUMBER = 4711  # sent as an int, or as the numeric string "4711"

# Bodies of a whole set that are no collection at all.
NOT_COLLECTIONS = {
    "html": b"<html><body>Service Unavailable</body></html>",
    "empty": b"",
    "binary": b"\xff\xfe\x00\x01",
    "truncated": b'{"odata.metadata":"x","value":[{"Id":',
    "value-number": b'{"value": 5}',
    "value-of-numbers": b'{"value": [1, 2]}',
    "bare-list": b"[]",
    "null": b"null",
    "d-results-string": b'{"d": {"results": "none"}}',
}


def _entity(base: dict[str, Any], key: str, value: object) -> dict[str, Any]:
    """``base`` with ``key`` set to ``value`` (left out for :data:`MISSING`)."""
    entity = dict(base)
    if value is MISSING:
        del entity[key]
    else:
        entity[key] = value
    return entity


def _clean(text: str) -> bool:
    """Whether ``text`` holds no control character (C0, DEL or C1)."""
    return not any(unicodedata.category(char) == "Cc" for char in text)


def _cut(text: str) -> str:
    return text if len(text) <= NAME_LIMIT else text[:NAME_LIMIT] + ELLIPSIS


# ---------------------------------------------------------------------------------------------
# What an exposition holds


def _units(scrape: Scrape, account: str) -> dict[str, float]:
    """``{type: value}`` of ``ams_encoding_reserved_units{account}``."""
    return {
        s.labels["type"]: s.value
        for s in scrape.find("ams_encoding_reserved_units", account=account)
    }


def _processor_of(scrape: Scrape, account: str, task_id: str) -> list[tuple[str, str]]:
    """(media_processor, media_processor_version) of every ``ams_task_info`` of the task."""
    return [
        (s.labels["media_processor"], s.labels["media_processor_version"])
        for s in scrape.find("ams_task_info", account=account, task_id=task_id)
    ]


def _label_trouble(scrape: Scrape) -> list[str]:
    """Label values with a control character or longer than a cut name, with their series."""
    trouble = []
    for sample in scrape.samples:
        for key, value in sample.labels.items():
            if not _clean(value):
                trouble.append(f"{sample.name}{{{key}={value[:60]!r}}}: a control character")
            if len(value) > LABEL_LIMIT:
                trouble.append(f"{sample.name}{{{key}}}: {len(value)} characters")
    return trouble


def _log_trouble(exporter: ExporterProcess) -> list[str]:
    """Log lines that show a crash: ERROR lines and tracebacks."""
    lines = exporter.stderr.splitlines()
    return [line[:300] for line in lines if "Traceback" in line or " level=ERROR " in line]


def _lines_at(exporter: ExporterProcess, level: str, *fragments: str) -> list[str]:
    """Log lines at exactly ``level`` holding every fragment."""
    return [
        line
        for line in exporter.log_lines(level)
        if f" level={level} " in line and all(fragment in line for fragment in fragments)
    ]


# ---------------------------------------------------------------------------------------------
# The bench: one exporter, one account per reserved-units case, one per processor field


@dataclass
class TaskCase:
    """A task whose processor labels must be one of ``allowed``, or pass ``check``."""

    variant: str
    task_id: str
    allowed: set[tuple[str, str]] = field(default_factory=set)
    check: Callable[[str, str], bool] | None = None

    def accepts(self, found: tuple[str, str]) -> bool:
        return found in self.allowed if self.check is None else self.check(*found)


@dataclass
class Bench:
    exporter: ExporterProcess
    scrape: Scrape
    accounts: list[str]
    task_cases: dict[str, tuple[str, list[TaskCase]]]  # processor field -> (account, cases)


def _unit_account_name(field_name: str, variant: Variant) -> str:
    return f"ru-{field_name}-{variant.name}".lower()


def _unit_accounts(lab: Lab, azure: HostileAzure) -> list[Account]:
    base = reserved_units(BASE_TYPE, BASE_UNITS, BASE_MAX)
    accounts = []
    for field_name, variants in UNIT_FIELDS.items():
        for variant in variants:
            account = lab.account(azure, _unit_account_name(field_name, variant))
            account.jobs = [job(0)]
            account.reserved_units = [_entity(base, field_name, variant.value)]
            accounts.append(account)
    return accounts


def _running(account: Account, tasks: list[dict[str, Any]]) -> None:
    running = job(2)
    account.jobs = [running, job(0)]
    account.tasks = {running["Id"]: tasks}


def _id_cases(account: Account) -> list[TaskCase]:
    """Processors whose Id is of every JSON type, each named by one task."""
    cases: list[TaskCase] = []
    processors: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []

    def add(variant: str, served_id: object, named: str, allowed: set[tuple[str, str]]) -> None:
        entity = _entity(processor(f"Encoder {variant}", f"2.{len(cases)}"), "Id", served_id)
        named_task = task(processor_id=named)
        processors.append(entity)
        tasks.append(named_task)
        cases.append(TaskCase(variant, named_task["Id"], allowed))

    listed = new_processor_id()
    add("string", listed, listed, {("Encoder string", "2.0")})
    add("numeric-string", str(NUMBER), str(NUMBER), {("Encoder numeric-string", "2.1")})
    # An Id sent as a number may be read as its digits, or not at all.
    add("int", NUMBER + 1, str(NUMBER + 1), {("Encoder int", "2.2"), (str(NUMBER + 1), "")})
    for variant, value in {"empty-string": "", **NOT_STRINGS}.items():
        unlisted = new_processor_id()
        # A list or object holding the Id the task names does not list that Id.
        held = (
            [unlisted] if variant == "list" else {"Id": unlisted} if variant == "object" else value
        )
        add(variant, held, unlisted, {(unlisted, "")})
    account.processors = processors
    _running(account, tasks)
    return cases


def _name_cases(account: Account) -> list[TaskCase]:
    """Processors whose Name is of every JSON type (and odd strings), each named by one task."""
    cases: list[TaskCase] = []
    processors: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []

    def add(variant: str, name: object, **expected: Any) -> None:
        entity = _entity(processor("", f"9.{len(cases)}"), "Name", name)
        named_task = task(processor_id=entity["Id"])
        processors.append(entity)
        tasks.append(named_task)
        version = entity["Version"]
        if "check" in expected:
            cases.append(TaskCase(variant, named_task["Id"], check=expected["check"]))
        else:
            allowed = {(label, version) for label in expected["labels"](entity["Id"])}
            cases.append(TaskCase(variant, named_task["Id"], allowed))

    add("string", "Azure Media Indexer", labels=lambda _id: {"Azure Media Indexer"})
    add("numeric-string", "42", labels=lambda _id: {"42"})
    # A processor without a readable Name is shown by its Id, as one that is not listed.
    add("empty-string", "", labels=lambda pid: {pid})
    add("int", NUMBER, labels=lambda pid: {pid, str(NUMBER)})
    for variant, value in NOT_STRINGS.items():
        add(variant, value, labels=lambda pid: {pid})
    add("lone-surrogate", "\ud800Indexer", labels=lambda _id: {"\ufffdIndexer"})
    add("one-megabyte", "M" * MEGABYTE, labels=lambda _id: {_cut("M" * MEGABYTE)})
    add(
        "control-characters",
        CONTROL,
        check=lambda name, version: (
            _clean(name) and "Encoder" in name and "Red" in name and version.startswith("9.")
        ),
    )
    add(
        "the-client-secret",
        SECRET,
        check=lambda name, version: SECRET not in name and version.startswith("9."),
    )
    account.processors = processors
    _running(account, tasks)
    return cases


def _version_cases(account: Account) -> list[TaskCase]:
    """Processors whose Version is of every JSON type, each named by one task."""
    cases: list[TaskCase] = []
    processors: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []

    def add(variant: str, version: object, versions: set[str] | None, **kw: Any) -> None:
        name = f"Encoder v-{variant}"
        entity = _entity(processor(name, "0"), "Version", version)
        named_task = task(processor_id=entity["Id"])
        processors.append(entity)
        tasks.append(named_task)
        allowed = {(name, found) for found in versions or ()}
        cases.append(TaskCase(variant, named_task["Id"], allowed, kw.get("check")))

    add("string", "2.5.1", {"2.5.1"})
    add("numeric-string", "3", {"3"})
    add("empty-string", "", {""})
    add("int", 3, {"", "3"})
    add("float", 1.5, {"", "1.5"})
    for variant, value in NOT_STRINGS.items():
        if variant != "float":
            add(variant, value, {""})
    add(
        "one-megabyte",
        "7" * MEGABYTE,
        None,
        check=lambda name, version: (
            name == "Encoder v-one-megabyte" and version == _cut("7" * MEGABYTE)
        ),
    )
    add(
        "control-characters",
        CONTROL,
        None,
        check=lambda name, version: (
            name == "Encoder v-control-characters" and _clean(version) and "Red" in version
        ),
    )
    account.processors = processors
    _running(account, tasks)
    return cases


def _task_id_cases(account: Account) -> list[TaskCase]:
    """Tasks whose MediaProcessorId is of every JSON type; the account lists MES alone."""
    cases: list[TaskCase] = []
    tasks: list[dict[str, Any]] = []

    def add(variant: str, named: object, allowed: set[tuple[str, str]], **kw: Any) -> None:
        named_task = task()
        if named is not MISSING:
            named_task["MediaProcessorId"] = named
        tasks.append(named_task)
        cases.append(TaskCase(variant, named_task["Id"], allowed, kw.get("check")))

    add("string", MES_ID, {(MES_NAME, MES_VERSION)})
    add("numeric-string", str(NUMBER), {(str(NUMBER), "")})
    add("empty-string", "", {("", "")})
    add("int", NUMBER, {("", ""), (str(NUMBER), "")})
    # The Id inside a list or an object is not the task's MediaProcessorId.
    not_ids = {**NOT_STRINGS, "list": [MES_ID], "object": {"Id": MES_ID}}
    for variant, value in not_ids.items():
        add(variant, value, {("", "")})
    long_id = "nb:mpid:UUID:" + "f" * MEGABYTE
    add("one-megabyte", long_id, set(), check=lambda pid, ver: (pid, ver) == (_cut(long_id), ""))
    add(
        "control-characters",
        "nb:mpid:" + CONTROL,
        set(),
        check=lambda pid, version: _clean(pid) and "Red" in pid and version == "",
    )
    account.processors = [processor(MES_NAME, MES_VERSION, MES_ID)]
    _running(account, tasks)
    return cases


PROCESSOR_FIELDS: dict[str, Callable[[Account], list[TaskCase]]] = {
    "Id": _id_cases,
    "Name": _name_cases,
    "Version": _version_cases,
    "MediaProcessorId": _task_id_cases,
}


def _set_accounts(lab: Lab, azure: HostileAzure) -> list[Account]:
    """Empty sets, sets of more than one entity, and bodies that are no collection."""
    empty = lab.account(azure, "sets-empty")
    _running(empty, [task(processor_id=MES_ID)])
    plural = lab.account(azure, "sets-plural")
    plural.reserved_units = [reserved_units(1, 4, 30), reserved_units(2, 9, 60)]
    doubled = new_processor_id()
    listed = [processor(f"Encoder {i}", f"{i}.0") for i in range(12)]
    plural.processors = [
        *listed,
        processor("First of two", "1", doubled),
        processor("Second of two", "2", doubled),
    ]
    _running(plural, [task(processor_id=p["Id"]) for p in listed[::-1]])
    plural.tasks[plural.jobs[0]["Id"]].append(task(processor_id=doubled))
    accounts = [empty, plural]
    for name, body in NOT_COLLECTIONS.items():
        broken = lab.account(azure, f"body-{name}")
        broken.on_reserved_units = lambda _request, body=body: odata_answer(body)
        broken.on_processors = lambda _request, body=body: odata_answer(body)
        _running(broken, [task(processor_id=MES_ID)])
        accounts.append(broken)
    html = lab.account(azure, "body-html-typed")
    page = Answer(200, NOT_COLLECTIONS["html"], (("Content-Type", "text/html"),))
    html.on_reserved_units = html.on_processors = lambda _request: page
    _running(html, [task(processor_id=MES_ID)])
    accounts.append(html)
    return accounts


@pytest.fixture(scope="module")
def bench(module_lab: Lab) -> Iterator[Bench]:
    azure = module_lab.azure()
    accounts = _unit_accounts(module_lab, azure)
    task_cases = {}
    for field_name, build in PROCESSOR_FIELDS.items():
        account = module_lab.account(azure, f"mp-{field_name}".lower())
        task_cases[field_name] = (account.name, build(account))
        accounts.append(account)
    accounts += _set_accounts(module_lab, azure)
    exporter = module_lab.exporter([module_lab.entry(azure, account) for account in accounts])
    exporter.wait_ready()
    scrape = exporter.scrape(20, timeout=40)
    yield Bench(exporter, scrape, [account.name for account in accounts], task_cases)


# ---------------------------------------------------------------------------------------------
# Encoding reserved units


def _expected_units(
    field_name: str, variant: Variant
) -> tuple[set[tuple[str, float] | None], set[float | None]]:
    """The ``(type, units)`` and maximum the exporter may show for one variant (``None``: absent)."""
    base_units = (UNIT_TYPES[BASE_TYPE], float(BASE_UNITS))
    readable = {EXACT: {True}, TOLERATED: {True, False}, UNREADABLE: {False}}[variant.verdict]
    if field_name == "MaxReservableUnits":
        maxima = {float(variant.value) if ok else None for ok in readable}  # type: ignore[arg-type]
        return {base_units}, maxima
    if readable == {False}:
        units: set[tuple[str, float] | None] = {None}
    elif field_name == "ReservedUnitType":
        units = {(UNIT_TYPES[2], float(BASE_UNITS))}
    else:
        units = {(UNIT_TYPES[BASE_TYPE], float(variant.value))}  # type: ignore[arg-type]
    if readable == {True, False}:
        units.add(None)
    # An entity that cannot be read may still give its maximum, or nothing at all.
    maxima = {float(BASE_MAX)} if readable == {True} else {float(BASE_MAX), None}
    return units, maxima


@pytest.mark.parametrize("field_name", list(UNIT_FIELDS))
def test_reserved_units_of_every_json_type_are_shown_only_when_readable(
    bench: Bench, witness: Witness, field_name: str
) -> None:
    wrong = []
    for variant in UNIT_FIELDS[field_name]:
        account = _unit_account_name(field_name, variant)
        units = _units(bench.scrape, account)
        shown_units = next(iter(units.items()), None) if len(units) <= 1 else ("many", len(units))
        shown_max = bench.scrape.value("ams_encoding_reserved_units_max", account=account)
        allowed_units, allowed_max = _expected_units(field_name, variant)
        if shown_units not in allowed_units or shown_max not in allowed_max:
            wrong.append(
                f"{variant.name} ({variant.value!r:.40}): units {shown_units}, max {shown_max}; "
                f"expected units in {allowed_units}, max in {allowed_max}"
            )
        if bench.scrape.up(account) != 1:
            wrong.append(f"{variant.name}: ams_up is {bench.scrape.up(account)}")
    assert not wrong, f"{field_name}:\n" + "\n".join(wrong)
    witness.assert_clean()


def test_an_empty_set_shows_no_units_and_a_plural_one_shows_one_of_its_entities(
    bench: Bench, witness: Witness
) -> None:
    scrape = bench.scrape

    assert _units(scrape, "sets-empty") == {}
    assert scrape.value("ams_encoding_reserved_units_max", account="sets-empty") is None
    plural = _units(scrape, "sets-plural")
    shown = (plural, scrape.value("ams_encoding_reserved_units_max", account="sets-plural"))
    assert shown in (({"S2": 4.0}, 30.0), ({"S3": 9.0}, 60.0)), shown
    witness.assert_clean()


def test_bodies_that_are_no_collection_leave_capacity_absent_and_the_account_up(
    bench: Bench, witness: Witness
) -> None:
    scrape = bench.scrape
    wrong = []
    for name in [*NOT_COLLECTIONS, "html-typed"]:
        account = f"body-{name}"
        running = next(iter(scrape.find("ams_task_info", account=account)), None)
        shown = (
            scrape.up(account),
            _units(scrape, account),
            scrape.value("ams_encoding_reserved_units_max", account=account),
            None if running is None else running.labels["media_processor"],
        )
        if shown != (1, {}, None, MES_ID):
            wrong.append(f"{name}: (up, units, max, media_processor) = {shown}")
    assert not wrong, "\n".join(wrong)
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# Media processors


@pytest.mark.parametrize("field_name", list(PROCESSOR_FIELDS))
def test_a_processor_field_of_every_json_type_gives_the_task_a_true_or_fallback_label(
    bench: Bench, witness: Witness, field_name: str
) -> None:
    account, cases = bench.task_cases[field_name]
    scrape = bench.scrape
    wrong = []
    for case in cases:
        found = _processor_of(scrape, account, case.task_id)
        if len(found) != 1 or not case.accepts(found[0]):
            shown = [(name[:60], version[:60]) for name, version in found]
            allowed = [(name[:60], version[:60]) for name, version in case.allowed]
            wrong.append(f"{case.variant}: {shown}; allowed {allowed or 'a check'}")
    progress = {
        s.labels["task_id"] for s in scrape.find("ams_task_progress_ratio", account=account)
    }
    missing = {case.task_id for case in cases} - progress
    assert scrape.up(account) == 1
    assert not wrong, f"{field_name}:\n" + "\n".join(wrong)
    assert not missing, f"tasks without their progress: {missing}"
    witness.assert_clean()


def test_many_processors_are_told_apart_and_a_doubled_id_shows_one_of_its_entries(
    bench: Bench, witness: Witness
) -> None:
    scrape = bench.scrape
    shown = {
        (s.labels["media_processor"], s.labels["media_processor_version"])
        for s in scrape.find("ams_task_info", account="sets-plural")
    }
    listed = {(f"Encoder {i}", f"{i}.0") for i in range(12)}
    doubled = shown - listed

    assert listed <= shown, f"missing: {listed - shown}"
    assert len(doubled) == 1 and doubled <= {("First of two", "1"), ("Second of two", "2")}, shown
    assert _processor_of(scrape, "sets-empty", _only_task(scrape, "sets-empty")) == [(MES_ID, "")]
    witness.assert_clean()


def _only_task(scrape: Scrape, account: str) -> str:
    (sample,) = scrape.find("ams_task_info", account=account)
    return sample.labels["task_id"]


def test_whatever_the_sets_hold_the_exporter_serves_sane_labels_without_a_traceback(
    bench: Bench, witness: Witness
) -> None:
    again = bench.exporter.scrape(20, timeout=40)

    assert bench.exporter.alive()
    for scrape in (bench.scrape, again):
        assert {account: scrape.up(account) for account in bench.accounts} == dict.fromkeys(
            bench.accounts, 1.0
        )
        assert_sane_values(scrape)
        trouble = _label_trouble(scrape)
        assert not trouble, "\n".join(trouble[:20])
    assert not _log_trouble(bench.exporter), _log_trouble(bench.exporter)[:5]
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# Failed reads: the last good values stay, one warning per episode


# Answers of a failing read of the reserved units: no collection, or an entity without units.
FAILING_UNITS = [
    *(odata_answer(body) for body in NOT_COLLECTIONS.values()),
    odata_answer(collection([reserved_units(None, 8, 40)], "EncodingReservedUnitTypes")),
    odata_answer(collection([reserved_units(2, "many", 40)], "EncodingReservedUnitTypes")),
    odata_answer(collection([reserved_units(2, True, 40)], "EncodingReservedUnitTypes")),
]
FAILING_PROCESSORS = [odata_answer(body) for body in NOT_COLLECTIONS.values()]


def test_failed_reads_keep_the_last_good_values_and_are_logged_once_per_episode(
    lab: Lab, witness: Witness
) -> None:
    azure = lab.azure()
    account = lab.account(azure, "memory")
    known = processor("Encoder One", "2.0")
    first = task(processor_id=known["Id"])
    _running(account, [first])
    tasks = account.tasks[account.jobs[0]["Id"]]
    account.processors = [known]
    account.reserved_units = [reserved_units(1, 6, 30)]
    jobs = {"finished_window": "24h", "max_jobs": 2000, "tasks": True, "capacity_interval": "1ms"}
    exporter = lab.exporter([lab.entry(azure, account, jobs=jobs)])
    exporter.wait_ready()

    good = exporter.scrape()
    assert (_units(good, "memory"), good.value("ams_encoding_reserved_units_max")) == (
        {"S2": 6.0},
        30.0,
    )
    assert _processor_of(good, "memory", first["Id"]) == [("Encoder One", "2.0")]

    wrong = []
    for step, units_answer in enumerate(FAILING_UNITS):
        account.on_reserved_units = lambda _request, answer=units_answer: answer
        failing = FAILING_PROCESSORS[step % len(FAILING_PROCESSORS)]
        account.on_processors = lambda _request, answer=failing: answer
        stranger = new_processor_id()  # a processor no read listed: the processors are read
        tasks[:] = [first, task(processor_id=stranger)]
        asked = len(azure.requests_of(account, "processors"))
        scrape = exporter.scrape()
        shown = (
            scrape.up("memory"),
            _units(scrape, "memory"),
            scrape.value("ams_encoding_reserved_units_max"),
            _processor_of(scrape, "memory", first["Id"]),
            _processor_of(scrape, "memory", tasks[1]["Id"]),
            len(azure.requests_of(account, "processors")) - asked,
        )
        if shown[:3] != (1, {"S2": 6.0}, 30.0):
            wrong.append(f"step {step}: (up, units, max) = {shown[:3]}")
        if shown[3:] != ([("Encoder One", "2.0")], [(stranger, "")], 1):
            wrong.append(f"step {step}: processors (known, stranger, reads) = {shown[3:]}")
    assert not wrong, "\n".join(wrong)
    assert len(_lines_at(exporter, "WARN", "memory", "reserved units")) == 1
    assert len(_lines_at(exporter, "WARN", "memory", "media processors")) == 1
    assert not _lines_at(exporter, "INFO", "memory", "reserved units")

    account.on_reserved_units = account.on_processors = None
    account.reserved_units = [reserved_units(2, 8, 40)]
    second = processor("Encoder Two", "3.1")
    account.processors = [known, second]
    tasks[:] = [first, task(processor_id=second["Id"])]
    recovered = exporter.scrape()

    assert (_units(recovered, "memory"), recovered.value("ams_encoding_reserved_units_max")) == (
        {"S3": 8.0},
        40.0,
    )
    assert _processor_of(recovered, "memory", tasks[1]["Id"]) == [("Encoder Two", "3.1")]
    assert len(_lines_at(exporter, "INFO", "memory", "reserved units")) == 1
    assert len(_lines_at(exporter, "INFO", "memory", "media processors")) == 1

    account.on_reserved_units = lambda _request: FAILING_UNITS[0]
    exporter.scrape()
    exporter.scrape()

    assert len(_lines_at(exporter, "WARN", "memory", "reserved units")) == 2, "a new episode"
    assert not _log_trouble(exporter), _log_trouble(exporter)[:5]
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# Any JSON in any field, against one long-lived exporter that reads both sets on every scrape

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NAMED = "<<the processor the task names>>"  # replaced by a new Id in every example
# Text without control characters: those are the concern of the control-characters cases above.
printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=16)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.sampled_from([10**400, -(10**400), 2**53 + 1, -1, 0, 1, 2, 3, 100_001])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, 2.0, 7.0, -0.0, 1e308])
    | printable
    | st.sampled_from(["", "0", "2", " 1 ", "1e3", "NaN", "Infinity", "-0", "S1", "7.0"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(printable, inner, max_size=2),
    max_leaves=4,
)
unit_entities = st.fixed_dictionaries(
    {},
    optional={
        "AccountId": values,
        "ReservedUnitType": st.integers(min_value=0, max_value=2) | values,
        "CurrentReservedUnits": st.integers(min_value=0, max_value=40) | values,
        "MaxReservableUnits": st.integers(min_value=0, max_value=100) | values,
    },
)
processor_entities = st.fixed_dictionaries(
    {},
    optional={
        "Id": st.just(NAMED) | values,
        "Name": printable | values,
        "Version": printable | values,
    },
)


def _bodies(entities: st.SearchStrategy[dict[str, Any]], entity_set: str) -> Any:
    """A collection of up to three entities, any other JSON, or bytes that are not JSON."""
    return st.one_of(
        st.lists(entities, max_size=3).map(lambda served: collection(served, entity_set)),
        values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=40),
    )


@dataclass
class Served:
    """Everything the long-lived bench served so far: what the exporter may remember."""

    units: set[tuple[str, int]] = field(default_factory=set)
    maxima: set[int] = field(default_factory=set)
    processors: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class LongBench:
    exporter: ExporterProcess
    azure: HostileAzure
    account: Account
    served: Served


@pytest.fixture(scope="module")
def long_bench(module_lab: Lab) -> Iterator[LongBench]:
    azure = module_lab.azure()
    account = module_lab.account(azure, "capacity-any")
    _running(account, [task(processor_id=MES_ID)])
    jobs = {"finished_window": "24h", "max_jobs": 2000, "tasks": True, "capacity_interval": "1ms"}
    exporter = module_lab.exporter([module_lab.entry(azure, account, jobs=jobs)])
    exporter.wait_ready()
    yield LongBench(exporter, azure, account, Served())


def _whole(value: object) -> int | None:
    """A whole number however it was sent (int, integral float, numeric string); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value) if isinstance(value, (float, str)) else math.nan
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _plain(value: object, high: int) -> bool:
    """Whether ``value`` is plainly a count: a JSON integer in 0..high."""
    return type(value) is int and 0 <= value <= high


def _entities(body: bytes) -> list[dict[str, Any]] | None:
    """The entities of a collection body; None when the body is no collection of objects."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        return None
    entities = document["value"]
    return entities if all(isinstance(entity, dict) for entity in entities) else None


def _remember_units(served: Served, entities: list[dict[str, Any]]) -> None:
    for entity in entities:
        code = _whole(entity.get("ReservedUnitType"))
        units = _whole(entity.get("CurrentReservedUnits"))
        if code in (0, 1, 2) and units is not None and units >= 0:
            served.units.add((UNIT_TYPES[code], units))
        maximum = _whole(entity.get("MaxReservableUnits"))
        if maximum is not None and maximum >= 0:
            served.maxima.add(maximum)


def _remember_processors(served: Served, entities: list[dict[str, Any]]) -> None:
    for entity in entities:
        processor_id = entity.get("Id")
        if not isinstance(processor_id, str) or not processor_id:
            continue
        name, version = entity.get("Name"), entity.get("Version")
        label = _cut(name) if isinstance(name, str) and name else _cut(processor_id)
        shown = _cut(version) if isinstance(version, str) else ""
        served.processors.setdefault(processor_id, set()).add((label, shown))


def _with_named(entity: dict[str, Any], named: str, key: str) -> dict[str, Any]:
    return {**entity, key: named} if entity.get(key) == NAMED else entity


def _upstream(units: list[dict[str, Any]], processors: list[dict[str, Any]]) -> dict[str, Any]:
    """An example of the property: these entities, and a task naming :data:`NAMED`."""
    return {
        "units_body": collection(units, "EncodingReservedUnitTypes"),
        "processor_list": processors,
        "processors_junk": None,
        "task_processor": NAMED,
    }


@SETTINGS
@given(
    upstream=st.fixed_dictionaries(
        {
            "units_body": _bodies(unit_entities, "EncodingReservedUnitTypes"),
            "processor_list": st.lists(processor_entities, max_size=3),
            # None: the processors are served as a collection of processor_list.
            "processors_junk": st.none()
            | values.map(lambda v: json.dumps(v).encode())
            | st.binary(max_size=40),
            "task_processor": st.just(NAMED) | values,
        }
    )
)
@example(upstream=_upstream([reserved_units(1, 5, None)], [processor("Encoder", "1", NAMED)]))
@example(upstream=_upstream([reserved_units(2, 10**400, 2**53 + 1)], [processor(10**400, [1])]))
@example(upstream=_upstream([{"CurrentReservedUnits": 3}], [{"Id": NAMED, "Name": None}]))
def test_any_value_in_any_capacity_field_keeps_the_account_up_and_the_labels_true(
    long_bench: LongBench, witness: Witness, upstream: dict[str, Any]
) -> None:
    units_body, processors_junk = upstream["units_body"], upstream["processors_junk"]
    processor_list, task_processor = upstream["processor_list"], upstream["task_processor"]
    bench, served = long_bench, long_bench.served
    named = new_processor_id()
    listed = [_with_named(entity, named, "Id") for entity in processor_list]
    processors_body = (
        collection(listed, "MediaProcessors") if processors_junk is None else processors_junk
    )
    bench.account.on_reserved_units = lambda _request: odata_answer(units_body)
    bench.account.on_processors = lambda _request: odata_answer(processors_body)
    running = task()
    running["MediaProcessorId"] = named if task_processor == NAMED else task_processor
    bench.account.tasks[bench.account.jobs[0]["Id"]] = [running]
    unit_entities_served = _entities(units_body)
    processors_served = _entities(processors_body)
    _remember_units(served, unit_entities_served or [])
    _remember_processors(served, processors_served or [])
    asked = len(bench.azure.requests_of(bench.account, "processors"))

    scrape = bench.exporter.scrape(10)

    reads = len(bench.azure.requests_of(bench.account, "processors")) - asked
    assert scrape.up("capacity-any") == 1, bench.exporter.log_lines("WARN")[-1:]
    assert_sane_values(scrape)
    assert not _label_trouble(scrape), _label_trouble(scrape)[:5]
    units = _units(scrape, "capacity-any")
    maximum = scrape.value("ams_encoding_reserved_units_max", account="capacity-any")
    assert len(units) <= 1 and set(units.items()) <= served.units, (units, served.units)
    assert maximum is None or maximum in served.maxima, (maximum, served.maxima)
    first = (unit_entities_served or [{}])[0]
    if _plain(first.get("ReservedUnitType"), 2) and _plain(first.get("CurrentReservedUnits"), 40):
        assert units == {UNIT_TYPES[first["ReservedUnitType"]]: first["CurrentReservedUnits"]}
        if first.get("MaxReservableUnits", None) is None:
            assert maximum is None, (
                f"a MaxReservableUnits of {first.get('MaxReservableUnits', 'none')}"
            )
    shown = _processor_of(scrape, "capacity-any", running["Id"])
    task_id = running["MediaProcessorId"]
    if isinstance(task_id, str) and task_id:
        allowed = {(_cut(task_id), ""), *served.processors.get(task_id, ())}
    else:
        allowed = {("", "")} | ({(str(task_id), "")} if type(task_id) is int else set())
    assert len(shown) == 1 and shown[0] in allowed, (shown, allowed)
    assert reads <= 1, f"{reads} MediaProcessors requests in one collection"
    if task_id == named:
        assert reads == 1, "a task named a processor no read listed, and none was read"
    assert bench.exporter.alive() and not _log_trouble(bench.exporter)
    witness.assert_clean()
