"""The history metrics through Prometheus's tooling: exemplars and ``_created`` in OpenMetrics,
promtool on the text format, and a real Prometheus that stores exemplars.

One emulated account, its clock frozen and set :data:`START_AHEAD` seconds after the wall clock,
is collected by an in-process exporter. The exporter counts the jobs that end after it started (by
the wall clock), so every job that ends once the emulator's clock moves on is counted, and none of
those that had ended before (the scenario's latest ended a minute before its start). The tests
scrape once, move the clock on by :data:`ADVANCE` so that jobs end, and read the exposition again.
Every oracle reads the emulator's jobs (``emulator.jobs()``), never the exporter's output.
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.samples import Exemplar, Sample

from ams_emulator import Emulator
from ams_emulator.entities import ERROR_CODES, EmuJob
from tests.support.harness import RunningExporter, running_exporter
from tests.support.prom import PrometheusServer, promtool_binary, running_prometheus

ACCOUNT = "history"
GROUPS = (("encode", r"^Encode "), ("ingest", r"^ingest-"))
GROUP_NAMES = ("encode", "ingest", "other")
ENDED_STATES = {3: "Finished", 4: "Error", 5: "Canceled"}
STATE_CODES = {name: code for code, name in ENDED_STATES.items()}
# Bucket bounds as the configuration writes them, and in seconds for the oracle.
DURATION_BUCKETS = {
    "1m": 60.0,
    "5m": 300.0,
    "10m": 600.0,
    "15m": 900.0,
    "30m": 1800.0,
    "1h": 3600.0,
}
QUEUE_WAIT_BUCKETS = {"5s": 5.0, "30s": 30.0, "1m": 60.0, "5m": 300.0, "15m": 900.0, "1h": 3600.0}
SETTINGS = {
    ACCOUNT: {
        "jobs": {
            "groups": [{"name": name, "name_regex": regex} for name, regex in GROUPS],
            "history": {
                "duration_buckets": list(DURATION_BUCKETS),
                "queue_wait_buckets": list(QUEUE_WAIT_BUCKETS),
            },
        }
    }
}
# A busy account with many failures. Its in-scope jobs fit in one page of a listing (1000), so a
# collection reads the emulator at one instant even while the clock is moved on.
SCENARIO: dict[str, Any] = {
    "jobs": 200,
    "seed": 23,
    "speed": 0,
    "arrivals_per_hour": 120.0,
    "failure_ratio": 0.25,
    "cancel_ratio": 0.1,
}
START_AHEAD = 20.0
ADVANCE = 1800.0
ENDED_TOTAL_NAME = "ams_jobs_ended_total"
ENDED_TOTAL = f'{ENDED_TOTAL_NAME}{{account="{ACCOUNT}"}}'
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}
TEXT = {"Accept": "text/plain; version=0.0.4"}
# A value closer than this to a bucket bound may fall on either side of it (float arithmetic).
EPSILON = 1e-6
INF = math.inf


# ---- the oracle: the emulator's jobs --------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """When the exporter started counting: between two readings of the wall clock around its
    start."""

    earliest: float
    latest: float


# A job's moment (EndTime, StartTime) or value (RunningDuration, queue wait), in seconds.
Moment = Callable[[EmuJob], float]


def group_of(job: EmuJob) -> str:
    name = job.name or ""
    return next((group for group, regex in GROUPS if re.search(regex, name)), "other")


def end_of(job: EmuJob) -> float:
    return (job.end_time or job.last_modified).timestamp()


def start_of(job: EmuJob) -> float:
    assert job.start_time is not None, job.id
    return job.start_time.timestamp()


def running_of(job: EmuJob) -> float:
    return job.running_duration_ms / 1000.0


def wait_of(job: EmuJob) -> float:
    return max(0.0, start_of(job) - job.created.timestamp())


def codes_of(job: EmuJob) -> set[str]:
    return {detail["Code"] for task in job.tasks for detail in task.error_details}


def in_series(group: str, state: int | None = None) -> Callable[[EmuJob], bool]:
    """Whether a job belongs to the series of ``group`` (and ``state``)."""
    return lambda job: group_of(job) == group and state in (None, job.state)


def with_error_code(code: str) -> Callable[[EmuJob], bool]:
    return lambda job: code in codes_of(job)


def one_of(job: EmuJob) -> float:
    """A counter's exemplar value."""
    return 1.0


@dataclass(frozen=True)
class Observed:
    """The jobs the exporter must have observed somewhere (``surely``) and those it may have
    (``maybe``, a superset). They differ only by jobs whose moment lies between the two readings
    of :class:`Floor`, or whose value lies within :data:`EPSILON` of a bucket bound."""

    surely: tuple[EmuJob, ...]
    maybe: tuple[EmuJob, ...]

    @classmethod
    def since(cls, jobs: Iterable[EmuJob], floor: Floor, moment: Moment) -> Observed:
        jobs = list(jobs)
        return cls(
            tuple(job for job in jobs if moment(job) >= floor.latest),
            tuple(job for job in jobs if moment(job) >= floor.earliest),
        )

    def where(self, keep: Callable[[EmuJob], bool]) -> Observed:
        return Observed(
            tuple(job for job in self.surely if keep(job)),
            tuple(job for job in self.maybe if keep(job)),
        )

    def within(self, value: Moment, low: float, high: float) -> Observed:
        """The jobs whose value lies in the bucket (``low``, ``high``]."""
        return Observed(
            tuple(job for job in self.surely if low + EPSILON < value(job) <= high - EPSILON),
            tuple(job for job in self.maybe if low - EPSILON < value(job) <= high + EPSILON),
        )

    def exact(self) -> tuple[EmuJob, ...]:
        """The observed jobs, when no job is uncertain."""
        assert self.surely == self.maybe, (
            "a job's moment lies between the clock readings around the exporter's start: "
            f"{sorted({job.id for job in self.maybe} - {job.id for job in self.surely})}"
        )
        return self.surely


def counted_ends(jobs: Iterable[EmuJob], floor: Floor) -> Observed:
    """The jobs ``ams_jobs_ended_total`` counts: final, ended at or after the exporter's start."""
    return Observed.since((job for job in jobs if job.state in ENDED_STATES), floor, end_of)


def observed_waits(jobs: Iterable[EmuJob], floor: Floor) -> Observed:
    """The jobs ``ams_job_queue_wait_seconds`` observes: started at or after the exporter's
    start."""
    return Observed.since((job for job in jobs if job.start_time is not None), floor, start_of)


@dataclass(frozen=True)
class Example:
    """An exemplar, as the exposition or Prometheus's API shows it."""

    labels: Mapping[str, str]
    value: float
    timestamp: float

    @classmethod
    def of(cls, exemplar: Exemplar | None) -> Example | None:
        if exemplar is None:
            return None
        assert exemplar.timestamp is not None, f"an exemplar without a timestamp: {exemplar}"
        return cls(exemplar.labels, exemplar.value, float(exemplar.timestamp))


def assert_latest(
    example: Example | None,
    observed: Observed,
    moment: Moment,
    value: Moment,
    where: str,
) -> None:
    """``example`` names the latest job (by ``moment``, then Id) observed there, with the job's
    value and moment; no exemplar where no job was observed."""
    if example is None:
        assert not observed.surely, f"{where}: no exemplar, though {len(observed.surely)} jobs"
        return
    assert set(example.labels) == {"job_id"}, f"{where}: exemplar labels {example.labels}"
    job_id = example.labels["job_id"]
    job = {job.id: job for job in observed.maybe}.get(job_id)
    assert job is not None, f"{where}: the exemplar names {job_id}, not a job observed there"
    assert example.timestamp == pytest.approx(moment(job), abs=EPSILON), where
    assert example.value == pytest.approx(value(job), abs=EPSILON), where
    latest = max(((moment(other), other.id) for other in observed.surely), default=None)
    assert latest is None or (moment(job), job.id) >= latest, (
        f"{where}: the exemplar names {job_id}, but {latest[1]} is later"
    )


def bucket_bounds(bounds: Iterable[float]) -> list[tuple[float, float]]:
    """(previous bound, bound) of every bucket, ``+Inf`` last."""
    uppers = [*bounds, INF]
    return list(zip([-INF, *uppers[:-1]], uppers, strict=True))


def prometheus_quantile(q: float, values: list[float], bounds: Iterable[float]) -> float:
    """What ``histogram_quantile`` computes from buckets filled with ``values`` (linear
    interpolation within the bucket holding the rank; the highest finite bound for ``+Inf``)."""
    uppers = [*bounds, INF]
    counts = [sum(1 for value in values if value <= upper) for upper in uppers]
    rank = q * counts[-1]
    index = next((i for i, count in enumerate(counts[:-1]) if count >= rank), len(uppers) - 1)
    if index == len(uppers) - 1:
        return uppers[-2]
    lower = 0.0 if index == 0 else uppers[index - 1]
    below = 0 if index == 0 else counts[index - 1]
    return lower + (uppers[index] - lower) * (rank - below) / (counts[index] - below)


# ---- the stack -------------------------------------------------------------------------------


def history_emulator() -> Emulator:
    start = datetime.fromtimestamp(time.time() + START_AHEAD, tz=timezone.utc)
    return Emulator(start=start, **SCENARIO)


@contextlib.contextmanager
def counting_exporter(emulator: Emulator) -> Iterator[tuple[RunningExporter, Floor]]:
    """An exporter for the emulator, and when it started counting."""
    earliest = time.time()
    with running_exporter({ACCOUNT: emulator}, SETTINGS) as exporter:
        floor = Floor(earliest, time.time())
        assert floor.latest < emulator.clock.now().timestamp() - 1.0, (
            "the emulator's clock must start after the exporter did"
        )
        yield exporter, floor


@dataclass(frozen=True)
class Counting:
    """An exporter that has collected once before the emulator's clock moved on."""

    emulator: Emulator
    exporter: RunningExporter
    floor: Floor
    before: str  # the OpenMetrics body of that first collection


@pytest.fixture(scope="module")
def counting() -> Iterator[Counting]:
    with history_emulator() as emulator, counting_exporter(emulator) as (exporter, floor):
        before = exporter.get("/metrics", headers=OPENMETRICS)
        assert before.status_code == 200, before.text
        emulator.clock.advance(ADVANCE)
        yield Counting(emulator, exporter, floor, before.text)


def scrape_openmetrics(exporter: RunningExporter) -> list[Sample]:
    response = exporter.get("/metrics", headers=OPENMETRICS)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    return [sample for family in om_families(response.text) for sample in family.samples]


def find(samples: list[Sample], name: str, **labels: str) -> Sample:
    """The one sample ``name`` of the account with exactly ``labels`` besides ``account``."""
    wanted = {"account": ACCOUNT, **labels}
    found = [s for s in samples if s.name == name and s.labels == wanted]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def buckets(samples: list[Sample], name: str, **labels: str) -> dict[float, Sample]:
    """The ``_bucket`` samples of one histogram series, by their ``le``."""
    found = {
        float(s.labels["le"]): s
        for s in samples
        if s.name == f"{name}_bucket"
        and {k: v for k, v in s.labels.items() if k != "le"} == {"account": ACCOUNT, **labels}
    }
    assert found, f"{name}{labels}: no buckets"
    return found


# ---- OpenMetrics, parsed by prometheus_client -----------------------------------------------


def test_before_the_clock_moves_the_counters_are_zero_without_exemplars(counting: Counting) -> None:
    samples = [s for family in om_families(counting.before) for s in family.samples]
    ended = [s for s in samples if s.name == "ams_jobs_ended_total"]
    assert {(s.labels["group"], s.labels["state"]) for s in ended} == {
        (group, state) for group in GROUP_NAMES for state in ENDED_STATES.values()
    }
    assert [(s.value, s.exemplar) for s in ended] == [(0.0, None)] * len(ended)
    durations = [s for s in samples if s.name == "ams_job_duration_seconds_bucket"]
    assert durations and {(s.value, s.exemplar) for s in durations} == {(0.0, None)}


def test_openmetrics_exemplars_name_the_latest_counted_job_of_their_series(
    counting: Counting,
) -> None:
    samples = scrape_openmetrics(counting.exporter)
    jobs = counting.emulator.jobs()
    ends = counted_ends(jobs, counting.floor)
    assert len(ends.surely) >= 20, "the scenario should end many jobs while the clock moves"
    assert {job.state for job in ends.surely} == set(ENDED_STATES)
    checked: dict[str, int] = {}

    def check(
        family: str, sample: Sample, observed: Observed, moment: Moment, value: Moment
    ) -> None:
        where = f"{sample.name}{sample.labels}"
        assert_latest(Example.of(sample.exemplar), observed, moment, value, where)
        checked[family] = checked.get(family, 0) + (sample.exemplar is not None)

    for group in GROUP_NAMES:
        for state_code, state in ENDED_STATES.items():
            key = ends.where(in_series(group, state_code))
            total = find(samples, "ams_jobs_ended_total", group=group, state=state)
            assert len(key.surely) <= total.value <= len(key.maybe), total
            check("ended", total, key, end_of, one_of)
            series = buckets(samples, "ams_job_duration_seconds", group=group, state=state)
            assert sorted(series) == [*DURATION_BUCKETS.values(), INF]
            for low, high in bucket_bounds(DURATION_BUCKETS.values()):
                bucket = series[high]
                below = key.within(running_of, -INF, high)
                assert len(below.surely) <= bucket.value <= len(below.maybe), bucket
                check("duration", bucket, key.within(running_of, low, high), end_of, running_of)
            count = find(samples, "ams_job_duration_seconds_count", group=group, state=state)
            assert len(key.surely) <= count.value <= len(key.maybe), count
            total_seconds = find(samples, "ams_job_duration_seconds_sum", group=group, state=state)
            low, high = sum(map(running_of, key.surely)), sum(map(running_of, key.maybe))
            assert low - EPSILON <= total_seconds.value <= high + EPSILON, total_seconds

        errors = ends.where(in_series(group, 4))
        for error_code in ERROR_CODES:
            with_code = errors.where(with_error_code(error_code))
            total = find(samples, "ams_job_errors_total", group=group, code=error_code)
            assert len(with_code.surely) <= total.value <= len(with_code.maybe), total
            check("errors", total, with_code, end_of, one_of)

        waits = observed_waits(jobs, counting.floor).where(in_series(group))
        series = buckets(samples, "ams_job_queue_wait_seconds", group=group)
        assert sorted(series) == [*QUEUE_WAIT_BUCKETS.values(), INF]
        for low, high in bucket_bounds(QUEUE_WAIT_BUCKETS.values()):
            bucket = series[high]
            below = waits.within(wait_of, -INF, high)
            assert len(below.surely) <= bucket.value <= len(below.maybe), bucket
            check("queue wait", bucket, waits.within(wait_of, low, high), start_of, wait_of)

    assert checked["ended"] >= 5 and checked["errors"] >= 3, checked
    assert checked["duration"] >= 10 and checked["queue wait"] >= 6, checked


def test_a_job_is_counted_once_however_often_it_is_collected(counting: Counting) -> None:
    ended = counted_ends(counting.emulator.jobs(), counting.floor).exact()
    totals = [
        sum(s.value for s in scrape_openmetrics(counting.exporter) if s.name == ENDED_TOTAL_NAME)
        for _ in range(3)
    ]
    assert totals == [len(ended)] * 3


def test_openmetrics_counters_and_histograms_carry_created_at_the_exporters_start(
    counting: Counting,
) -> None:
    samples = scrape_openmetrics(counting.exporter)
    floor = counting.floor
    # One sample per series of each family: counters' _total, histograms' _count.
    for family, series in (
        ("ams_jobs_ended", "ams_jobs_ended_total"),
        ("ams_job_errors", "ams_job_errors_total"),
        ("ams_job_duration_seconds", "ams_job_duration_seconds_count"),
        ("ams_job_queue_wait_seconds", "ams_job_queue_wait_seconds_count"),
    ):
        labels = {frozenset(s.labels.items()) for s in samples if s.name == series}
        created = {
            frozenset(s.labels.items()): s.value for s in samples if s.name == f"{family}_created"
        }
        assert labels and set(created) == labels, family
        for key, value in created.items():
            assert floor.earliest - 1e-3 <= value <= floor.latest + 1e-3, (family, dict(key), value)


def test_job_info_and_last_ended_follow_the_emulator(counting: Counting) -> None:
    samples = scrape_openmetrics(counting.exporter)
    jobs = counting.emulator.jobs()
    info = {
        s.labels["job_id"]: (s.labels["group"], s.labels["job_name"], s.value)
        for s in samples
        if s.name == "ams_job_info"
    }
    active = [job for job in jobs if job.state not in ENDED_STATES]
    ended = counted_ends(jobs, counting.floor).exact()
    assert active and ended
    for job in [*active, *ended]:
        assert info.get(job.id) == (group_of(job), job.name or "", 1.0), job.id
    assert {group for group, _, _ in info.values()} == set(GROUP_NAMES)
    for group in GROUP_NAMES:
        for state_code, state in ENDED_STATES.items():
            same = [end_of(job) for job in ended if in_series(group, state_code)(job)]
            if same:
                last = find(
                    samples, "ams_group_last_ended_timestamp_seconds", group=group, state=state
                )
                assert last.value == pytest.approx(max(same), abs=EPSILON), (group, state)


# ---- the text format, linted by promtool ----------------------------------------------------


def test_the_text_format_passes_promtool_and_has_neither_exemplars_nor_created(
    counting: Counting,
) -> None:
    response = counting.exporter.get("/metrics", headers=TEXT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = [s for family in text_families(response.text) for s in family.samples]
    ended = counted_ends(counting.emulator.jobs(), counting.floor).exact()
    counted = sum(s.value for s in samples if s.name == "ams_jobs_ended_total")
    assert counted == len(ended) > 0
    assert [s.name for s in samples if s.name.endswith("_created")] == []
    assert [s for s in samples if s.exemplar is not None] == []

    # promtool 2.42's `check metrics` reads the text format only: fed the OpenMetrics body it
    # stops at the first exemplar ("text format parsing error ... expected integer as timestamp,
    # got "#"") and exits 1. That body is checked instead by prometheus_client's OpenMetrics
    # parser (the tests above) and by a real Prometheus scraping it without error (below).
    result = subprocess.run(
        [promtool_binary(), "check", "metrics"],
        input=response.text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# ---- a real Prometheus storing exemplars ----------------------------------------------------


@dataclass(frozen=True)
class Scraped:
    """A Prometheus (exemplar storage on) scraping an exporter: it scraped at least once before
    the emulator's clock moved on."""

    emulator: Emulator
    floor: Floor
    prometheus: PrometheusServer
    target: str


@pytest.fixture(scope="module")
def scraped() -> Iterator[Scraped]:
    with history_emulator() as emulator, counting_exporter(emulator) as (exporter, floor):
        target = exporter.url.removeprefix("http://")
        scrape = {"job_name": "ams", "static_configs": [{"targets": [target]}]}
        flags = ("--enable-feature=exemplar-storage",)
        with running_prometheus([scrape], extra_args=flags) as prometheus:
            prometheus.wait_for_query('up{job="ams"}', timeout=45)
            emulator.clock.advance(ADVANCE)
            yield Scraped(emulator, floor, prometheus, target)


def raw_samples(
    prom: PrometheusServer, selector: str
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """The samples Prometheus stored in the last 10 minutes for ``selector``, whose series are
    labelled ``group`` and ``state``: by (group, state), oldest first."""
    data = prom.api("query", query=f"{selector}[10m]")
    assert data["resultType"] == "matrix"
    return {
        (series["metric"]["group"], series["metric"]["state"]): [
            (float(at), float(value)) for at, value in series["values"]
        ]
        for series in data["result"]
    }


def scrape_times(prom: PrometheusServer) -> list[float]:
    """When Prometheus scraped the exporter, oldest first."""
    data = prom.api("query", query='up{job="ams"}[10m]')
    (series,) = data["result"]
    return [float(at) for at, _ in series["values"]]


def first_scrape(prom: PrometheusServer) -> float:
    return scrape_times(prom)[0]


def wait_until_all_counted(scraped: Scraped) -> dict[tuple[str, str], int]:
    """Per (group, state), how many jobs the emulator ended that count; once Prometheus holds a
    scrape that counted them all."""
    ended = counted_ends(scraped.emulator.jobs(), scraped.floor).exact()
    expected = {
        (group, state): sum(1 for job in ended if in_series(group, state_code)(job))
        for group in GROUP_NAMES
        for state_code, state in ENDED_STATES.items()
    }
    scraped.prometheus.wait_for_query(
        f"sum({ENDED_TOTAL})",
        lambda result: [float(s["value"][1]) for s in result] == [float(len(ended))],
    )
    return expected


@pytest.mark.e2e
def test_prometheus_scrapes_the_openmetrics_body_without_error(scraped: Scraped) -> None:
    prom = scraped.prometheus
    wait_until_all_counted(scraped)
    (target,) = prom.targets()
    assert (target["health"], target["lastError"]) == ("up", "")
    assert prom.values('min_over_time(up{job="ams"}[10m])') == {
        (("instance", scraped.target), ("job", "ams")): 1.0
    }
    # _created is written in OpenMetrics only: Prometheus asked for it, and got it.
    created = prom.query(f'ams_jobs_ended_created{{account="{ACCOUNT}"}}')
    assert len(created) == len(GROUP_NAMES) * len(ENDED_STATES)


@pytest.mark.e2e
def test_the_ended_counters_exist_at_zero_from_the_first_scrape(scraped: Scraped) -> None:
    prom = scraped.prometheus
    expected = wait_until_all_counted(scraped)
    first = first_scrape(prom)
    at_first = prom.query(ENDED_TOTAL, first)
    assert {(s["metric"]["group"], s["metric"]["state"]): s["value"][1] for s in at_first} == {
        key: "0" for key in expected
    }
    stored = raw_samples(prom, ENDED_TOTAL)
    assert {key: values[0] for key, values in stored.items()} == {
        key: (first, 0.0) for key in expected
    }
    assert {key: values[-1][1] for key, values in stored.items()} == {
        key: float(count) for key, count in expected.items()
    }
    assert sum(expected.values()) > 0


@pytest.mark.e2e
def test_rate_and_increase_count_every_job_from_the_first_scrape(scraped: Scraped) -> None:
    prom = scraped.prometheus
    expected = wait_until_all_counted(scraped)
    stored = raw_samples(prom, ENDED_TOTAL)
    # The first scrape whose values stay: a sample instant, so that nothing is extrapolated past
    # the last sample; the zero samples before it stop extrapolation before the first.
    settled = max(
        next(at for at, value in values if value == values[-1][1]) for values in stored.values()
    )
    assert settled - first_scrape(prom) < 50, "the clock should move right after the first scrape"

    def by_key(expr: str) -> dict[tuple[str, str], float]:
        return {
            (s["metric"]["group"], s["metric"]["state"]): float(s["value"][1])
            for s in prom.query(expr, settled)
        }

    assert by_key(f"increase({ENDED_TOTAL}[1m])") == {k: float(v) for k, v in expected.items()}
    rates = by_key(f"rate({ENDED_TOTAL}[1m])")
    assert rates == pytest.approx({key: count / 60.0 for key, count in expected.items()})


@pytest.mark.e2e
def test_later_scrapes_count_no_job_again(scraped: Scraped) -> None:
    prom = scraped.prometheus
    expected = wait_until_all_counted(scraped)
    later = len(scrape_times(prom)) + 2
    prom.wait_for(lambda: len(scrape_times(prom)) >= later, what="two more scrapes")
    stored = raw_samples(prom, ENDED_TOTAL)
    assert {key: [value for _, value in values[-3:]] for key, values in stored.items()} == {
        key: [float(count)] * 3 for key, count in expected.items()
    }


@pytest.mark.e2e
def test_prometheus_stores_exemplars_that_name_counted_jobs(scraped: Scraped) -> None:
    prom = scraped.prometheus
    wait_until_all_counted(scraped)
    ends = counted_ends(scraped.emulator.jobs(), scraped.floor)
    moments = [end_of(job) for job in ends.maybe]
    window = {"start": f"{min(moments) - 1:.3f}", "end": f"{max(moments) + 1:.3f}"}
    lows = {high: low for low, high in bucket_bounds(DURATION_BUCKETS.values())}
    for query, value in (
        ("ams_job_duration_seconds_bucket", running_of),
        ("ams_jobs_ended_total", one_of),
    ):

        def stored_exemplars(query: str = query) -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = prom.api("query_exemplars", query=query, **window)
            return found or None

        found = prom.wait_for(stored_exemplars, what=f"exemplars of {query}")
        for series in found:
            labels = series["seriesLabels"]
            where = f"{query}{labels}"
            key = ends.where(in_series(labels["group"], STATE_CODES[labels["state"]]))
            if query.endswith("_bucket"):
                high = float(labels["le"])
                key = key.within(running_of, lows[high], high)
            # The emulator's clock stands still after it moved: each series keeps one exemplar.
            (stored,) = series["exemplars"]
            example = Example(stored["labels"], float(stored["value"]), float(stored["timestamp"]))
            assert_latest(example, key, end_of, value, where)
        assert len(found) >= 4, f"{query}: exemplars on {len(found)} series"


@pytest.mark.e2e
def test_histogram_quantile_over_the_duration_buckets_is_the_emulators(scraped: Scraped) -> None:
    prom = scraped.prometheus
    wait_until_all_counted(scraped)
    durations = [
        running_of(job) for job in counted_ends(scraped.emulator.jobs(), scraped.floor).exact()
    ]
    bounds = list(DURATION_BUCKETS.values())
    assert all(abs(d - b) > EPSILON for d in durations for b in bounds), "a duration on a bound"
    buckets = f'ams_job_duration_seconds_bucket{{account="{ACCOUNT}"}}'
    (result,) = prom.query(f"histogram_quantile(0.95, sum by (le) ({buckets}))")
    value = float(result["value"][1])
    assert math.isfinite(value)
    assert value == pytest.approx(prometheus_quantile(0.95, durations, bounds), rel=1e-9)
