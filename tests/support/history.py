"""The history metrics checked against the emulator: a ledger of what a run has seen, and real runs.

A :class:`Ledger` keeps the emulator's jobs as they were at each collection of one exporter run
and restates the contract on top of them, without the exporter's code: a job counts once, when a
collection first sees it final, if its EndTime is at or after the run's start (or a stored start,
for a run that resumes one); its RunningDuration is observed then; its queue wait (StartTime
minus Created) is observed once if it started at or after that start; the ErrorDetails codes of a
counted job in Error count once per job and code, codes outside the documented list as
``Unknown``.

The exporter's start is known only to lie between two wall-clock readings (before the process was
spawned, after it said it listens). A job that ends or starts inside that interval could fall on
either side of it, so :func:`step_over_start` removes such jobs from the emulator before any
collection sees them: every other job is then on one side for certain, and the oracle is exact.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator, exporter_config
from ams_emulator.entities import ERROR_CODES as DOCUMENTED_CODES
from ams_emulator.entities import EmuJob
from tests.support.harness import Scrape
from tests.support.process import Child

EXPORTER = [sys.executable, "-m", "exporter", "--web.listen-address=127.0.0.1:0"]
SECRET_VARIABLE = "AMS_HISTORY_TEST_SECRET"
FINAL_STATES = {3: "Finished", 4: "Error", 5: "Canceled"}
OTHER = "other"
ENDED = "ams_jobs_ended_total"
DURATION = "ams_job_duration_seconds"
QUEUE_WAIT = "ams_job_queue_wait_seconds"
ERRORS = "ams_job_errors_total"
LAST_ENDED = "ams_group_last_ended_timestamp_seconds"
# Beyond the start interval on either side, for the emulator's millisecond timestamps.
STEP_SECONDS = 0.01
# How far a sum of seconds may differ from the oracle's: the order of the float additions.
SUM_TOLERANCE = 1e-9


# ---------------------------------------------------------------------------------------------
# Groups, as the configuration states them


@dataclass(frozen=True)
class Groups:
    """``jobs.groups`` of an account: (name, name_regex) pairs, first match wins, else other."""

    pairs: tuple[tuple[str, str], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (*(name for name, _ in self.pairs), OTHER)

    def of(self, job_name: str | None) -> str:
        for name, regex in self.pairs:
            if re.search(regex, job_name or ""):
                return name
        return OTHER

    def setting(self) -> list[dict[str, str]]:
        """The ``groups`` value of an account's ``jobs`` section."""
        return [{"name": name, "name_regex": regex} for name, regex in self.pairs]


def seconds(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def ended_at(job: EmuJob) -> float:
    end = job.end_time or job.last_modified
    return end.timestamp()


def error_codes(job: EmuJob) -> set[str]:
    """The distinct ErrorDetails codes of a job's tasks, undocumented ones as ``Unknown``."""
    return {
        detail["Code"] if detail["Code"] in DOCUMENTED_CODES else "Unknown"
        for task in job.tasks
        for detail in task.error_details
    }


# ---------------------------------------------------------------------------------------------
# The oracle


@dataclass
class Ledger:
    """The jobs one exporter run has seen, and what its history must say about them.

    ``since`` is a wall-clock time from which the run counts (no job ends or starts between it
    and the run's real start: see :func:`step_over_start`). ``counted_before`` and
    ``waited_before`` are the jobs an earlier run whose stored state this run resumes already
    counted: see :meth:`resumed`.
    """

    since: float
    groups: Groups = Groups()
    counted_before: frozenset[str] = frozenset()
    waited_before: frozenset[str] = frozenset()
    seen: dict[str, EmuJob] = field(default_factory=dict)

    def see(self, jobs: Iterable[EmuJob]) -> None:
        """The emulator's jobs at one collection (take them while the clock stands still)."""
        for job in jobs:
            self.seen[job.id] = job

    def resumed(self) -> Ledger:
        """The ledger of a run that goes on from this run's stored state."""
        return Ledger(
            self.since,
            self.groups,
            frozenset(job.id for job in self.counted()),
            frozenset(job.id for job in self.waited()),
        )

    def counted(self) -> list[EmuJob]:
        return [
            job
            for job in self.seen.values()
            if job.state in FINAL_STATES
            and ended_at(job) >= self.since
            and job.id not in self.counted_before
        ]

    def waited(self) -> list[EmuJob]:
        return [
            job
            for job in self.seen.values()
            if job.start_time is not None
            and job.start_time.timestamp() >= self.since
            and job.id not in self.waited_before
        ]

    def durations(self) -> dict[tuple[str, str], list[float]]:
        """RunningDuration in seconds of the counted jobs, by (group, state)."""
        found: dict[tuple[str, str], list[float]] = {
            (group, state): [] for group in self.groups.names for state in FINAL_STATES.values()
        }
        for job in self.counted():
            key = (self.groups.of(job.name), FINAL_STATES[job.state])
            found[key].append(job.running_duration_ms / 1000.0)
        return found

    def queue_waits(self) -> dict[str, list[float]]:
        """StartTime minus Created of the jobs observed started, by group."""
        found: dict[str, list[float]] = {group: [] for group in self.groups.names}
        for job in self.waited():
            assert job.start_time is not None
            wait = job.start_time.timestamp() - job.created.timestamp()
            found[self.groups.of(job.name)].append(wait)
        return found

    def errors(self) -> Counter[tuple[str, str]]:
        """Error codes of the counted jobs in Error, once per job and code, by (group, code)."""
        found: Counter[tuple[str, str]] = Counter()
        for job in self.counted():
            if job.state == 4:
                for code in error_codes(job):
                    found[(self.groups.of(job.name), code)] += 1
        return found


# ---------------------------------------------------------------------------------------------
# Comparing a scrape with the oracle


def history_mismatches(found: Scrape, account: str, ledger: Ledger) -> list[str]:
    """Every history series of ``account`` that differs from what ``ledger`` says."""
    problems: list[str] = []

    def check(name: str, expected: float, labels: dict[str, str]) -> None:
        values = found.values(name, account=account, **labels)
        if len(values) != 1:
            problems.append(f"{name}{labels}: expected one sample, found {values}")
            return
        tolerance = SUM_TOLERANCE * max(1.0, abs(expected))
        if not math.isclose(values[0], expected, rel_tol=0.0, abs_tol=tolerance):
            problems.append(f"{name}{labels}: {values[0]}, expected {expected}")

    def check_histogram(name: str, values: list[float], labels: dict[str, str]) -> None:
        check(f"{name}_count", len(values), labels)
        check(f"{name}_sum", math.fsum(values), labels)
        buckets = [
            s
            for s in found.samples
            if s.name == f"{name}_bucket" and _has(s.labels, account, labels)
        ]
        if not buckets:
            problems.append(f"{name}_bucket{labels}: no buckets")
        for bucket in buckets:
            bound = float(bucket.labels["le"])
            within = sum(1 for value in values if value <= bound)
            if bucket.value != within:
                problems.append(f"{name}_bucket{bucket.labels}: {bucket.value}, expected {within}")

    for (group, state), values in ledger.durations().items():
        check(ENDED, len(values), {"group": group, "state": state})
        check_histogram(DURATION, values, {"group": group, "state": state})
    for group, values in ledger.queue_waits().items():
        check_histogram(QUEUE_WAIT, values, {"group": group})
    errors = ledger.errors()
    for group in ledger.groups.names:
        for code in DOCUMENTED_CODES:
            check(ERRORS, errors[(group, code)], {"group": group, "code": code})
    return problems


def _has(labels: Mapping[str, str], account: str, wanted: Mapping[str, str]) -> bool:
    return labels.get("account") == account and all(labels.get(k) == v for k, v in wanted.items())


def assert_history(found: Scrape, account: str, ledger: Ledger, when: str = "") -> None:
    """``account``'s history series in ``found`` are exactly what ``ledger`` says."""
    problems = history_mismatches(found, account, ledger)
    assert not problems, f"history of account {account} {when}:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# The emulator's clock around an exporter's start


def step_over_start(emulator: Emulator, started: tuple[float, float]) -> list[str]:
    """Move the clock just past the start interval ``started`` and delete the jobs that ended or
    started inside it (see the module docstring); returns their ids.

    Call it after the run's first collection and before the next one: the clock must not have
    reached the interval before (:func:`start_exporter` checks that).
    """
    low, high = started[0] - STEP_SECONDS, started[1] + STEP_SECONDS
    if emulator.clock.now().timestamp() < high:
        emulator.clock.set(datetime.fromtimestamp(high, timezone.utc))
    doubtful = [
        job.id
        for job in emulator.jobs()
        if any(
            at is not None and low <= at <= high
            for at in (seconds(job.start_time), seconds(job.end_time))
        )
    ]
    for job_id in doubtful:
        emulator.delete_job(job_id)
    return doubtful


def catch_up(emulator: Emulator) -> float:
    """Set the emulator's clock to the wall clock (it only moves forward); returns that time."""
    now = time.time()
    assert emulator.clock.now().timestamp() <= now, "the emulator's clock is ahead of the wall"
    emulator.clock.set(datetime.fromtimestamp(now, timezone.utc))
    return now


# ---------------------------------------------------------------------------------------------
# Real exporter processes


def write_config(
    path: Path, emulator: Emulator, accounts: Sequence[str] = ("a",), **settings: Any
) -> dict[str, str]:
    """A config file with ``accounts`` pointing at ``emulator``; returns the environment (with the
    client secret) the exporter needs to read it."""
    entries = [
        emulator.account_entry(
            name, secret_variable=SECRET_VARIABLE, **{"timeout": "10s", **settings}
        )
        for name in accounts
    ]
    path.write_text(exporter_config(*entries), encoding="utf-8")
    return {**os.environ, SECRET_VARIABLE: emulator.client_secret}


def scrape(url: str) -> Scrape:
    """GET ``url``/metrics and parse it."""
    response = requests.get(url + "/metrics", timeout=60)
    assert response.status_code == 200, response.text[:2000]
    samples = [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]
    return Scrape(response.status_code, response.text, samples)


@dataclass
class ExporterRun:
    """An ``ams-exporter`` process that has made its start-up collection.

    ``started`` bounds its start in wall-clock time: before it was spawned, after it listened;
    ``first`` is its first scrape, which shares or follows the start-up collection.
    """

    child: Child
    url: str
    started: tuple[float, float]
    first: Scrape

    def scrape(self) -> Scrape:
        return scrape(self.url)

    def stop(self) -> int:
        """SIGTERM to its PID; the exit code (0 for a clean stop)."""
        return self.child.stop()

    def log(self) -> str:
        return self.child.output("stderr")

    def __enter__(self) -> ExporterRun:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.child.stop()


def start_exporter(
    folder: Path,
    name: str,
    config: Path,
    env: Mapping[str, str],
    emulator: Emulator,
    *flags: str,
) -> ExporterRun:
    """Start ``ams-exporter``, wait until its start-up collection succeeded (``/-/ready``), and
    scrape it once: that scrape shares the start-up collection if it is still finishing, so that
    no collection runs behind the test's back afterwards. Leave the emulator alone meanwhile."""
    spawned = time.time()
    assert emulator.clock.now().timestamp() <= spawned, (
        "the emulator's clock is ahead of the wall: jobs would end inside the exporter's start"
    )
    child = Child([*EXPORTER, f"--config.file={config}", *flags], folder, name, env=env)
    try:
        host, port = child.listening_address()
        listening = time.time()
        url = f"http://{host}:{port}"
        child.wait_until(lambda: _ready(url), what="its start-up collection")
        first = scrape(url)
    except BaseException:
        child.stop()
        raise
    return ExporterRun(child, url, (spawned, listening), first)


def _ready(url: str) -> bool:
    return requests.get(url + "/-/ready", timeout=30).status_code == 200
