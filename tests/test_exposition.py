"""The exposition written directly is byte for byte what prometheus_client writes for the families.

Prometheus negotiates OpenMetrics 1.0.0 or the text format 0.0.4; both are written by
``exporter.expose.writer.render`` without going through ``prometheus_client``'s encoders, which are the
reference here. Label values come from AMS (job and task names are free text), so they are hostile.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families

from exporter.ams.model import Job, JobState, MediaProcessor, ReservedUnits, Task
from exporter.collect.history import JobHistory
from exporter.collect.snapshot import AccountResult, Collection
from exporter.config.model import JobGroup, JobsConfig
from exporter.expose.contract import METRICS, ConfigStatus, Scrape
from exporter.expose.negotiation import negotiate
from exporter.expose.reference import Exposition, build_families
from exporter.expose.writer import _direct_format, _is_openmetrics, render
from exporter.version import Build

BUILD = Build("1.2.3", "0123456789abcdef0123456789abcdef01234567", "2026-12-02T01:00:00Z", "3.12.8")


def _scrape(collection: Collection, requests: dict[tuple[str, str, str], int]) -> Scrape:
    return Scrape(collection, requests, BUILD, ConfigStatus(True, NOW - 60))


NOW = 1_764_150_000.25
HOSTILE = [
    "",
    'quote " in the middle',
    "back\\slash and \\n not a newline",
    "new\nline",
    "trailing backslash \\",
    'all three \\ " \n',
    "unicode: 日本語 ü 🎬",
    "control \x00\x01\t chars",
    "{braces}=,commas",
    "a" * 300,
]
# Accept headers the direct writer answers: Prometheus 2 and 3 defaults, explicit versions, none.
DIRECT = [
    "",
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=underscores",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
    "version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;"
    "q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;"
    "escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
]
# Negotiations left to prometheus_client: they rewrite names or are formats not written directly.
DELEGATED = [
    "text/plain;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=2.0.0",
]


def _job(index: int, state: JobState, name: str, *, started: bool = True) -> Job:
    created = NOW - 3600.0 * (index + 1) - 0.125
    ended = state.is_final
    return Job(
        id=f"nb:jid:UUID:{index:08d}-{name[:8]!r}",
        name=name,
        state=state,
        created=created,
        last_modified=created + 10,
        start_time=created + 60.5 if started else None,
        end_time=created + 900.0 if ended and started else None,
        priority=index % 5 - 1,
        running_duration_seconds=(840.0 if ended else 0.0) + index / 7,
    )


def _task(index: int, name: str, progress: float, codes: tuple[str, ...] = ()) -> Task:
    return Task(
        id=f'nb:tid:UUID:"{index}"\\',
        name=name,
        state=2,
        progress=progress,
        running_duration_seconds=1.5,
        start_time=NOW - 100,
        end_time=None,
        error_codes=codes,
        # Task 1 runs on a listed processor, task 2 on one the set does not list.
        media_processor_id=f"nb:mpid:UUID:{index}-{name[:6]}",
    )


def _collection(names: list[str]) -> Collection:
    states = list(JobState)
    jobs = [
        _job(i, states[i % len(states)], name, started=states[i % len(states)] > 1)
        for i, name in enumerate(names)
    ]
    tasks = {
        job.id: (
            _task(1, names[-i % len(names)], 37.5, ("ErrorProcessingTask", "Unknown")),
            _task(2, names[i % len(names)], 100.0 / 3),
        )
        for i, job in enumerate(jobs)
        if job.state in (JobState.PROCESSING, JobState.ERROR, JobState.QUEUED, JobState.FINISHED)
    }
    counts = {state: 10**i for i, state in enumerate(JobState)}
    # Every job counted (counting started 30 days earlier): counters, buckets and exemplars whose
    # job ids carry the hostile names.
    groups = (JobGroup("odd.1", re.compile("[13579]")), JobGroup("all", re.compile("")))
    history = JobHistory(JobsConfig(groups=groups), created=NOW - 30 * 86400 + 0.5)
    history.observe(jobs, tasks)
    healthy = AccountResult(
        account='acc "one"\\',
        up=True,
        duration_seconds=0.123456789,
        last_success=NOW + 1e-6,
        jobs=tuple(jobs),
        tasks=tasks,
        state_counts=counts,
        dropped=3,
        history=history.snapshot,
        groups={job.id: history.group_of(job) for job in jobs},
        reserved_units=ReservedUnits("S2", 10, 25),
        processors={
            f"nb:mpid:UUID:1-{name[:6]}": MediaProcessor(
                f"nb:mpid:UUID:1-{name[:6]}", f"processor {name}", f'v"{name[:3]}'
            )
            for name in names
        },
    )
    failed = AccountResult(
        account="two\n",
        up=False,
        duration_seconds=10.0,
        last_success=None,
        error="boom",
        history=JobHistory(JobsConfig(), created=NOW).snapshot,
    )
    return Collection(time=NOW, accounts=(healthy, failed))


def _process_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    Gauge("process_like_gauge", "A gauge.", ["kind"], registry=registry).labels("x").set(2.5)
    Counter("process_like", "A counter.", registry=registry).inc(7)
    return registry


REQUESTS = {('acc "one"\\', "ams", "200"): 15, ('acc "one"\\', "aad", "error"): 2}


def _reference(
    collection: Collection, accept: str, process: CollectorRegistry, requests=REQUESTS
) -> bytes:
    encoder, _ = choose_encoder(accept)
    families = build_families(_scrape(collection, requests), om=_is_openmetrics(encoder))
    return encoder(Exposition(families, process))


@pytest.mark.parametrize("accept", DIRECT)
def test_direct_writing_equals_prometheus_client(accept):
    collection = _collection(HOSTILE)
    process = _process_registry()
    body, content_type = render(_scrape(collection, REQUESTS), negotiate(accept), process)
    assert _direct_format(choose_encoder(accept)[0]) is not None, "the direct path must be taken"
    assert content_type == choose_encoder(accept)[1]
    assert body == _reference(collection, accept, process)


@pytest.mark.parametrize("accept", DELEGATED)
def test_other_negotiations_are_left_to_prometheus_client(accept):
    collection = _collection(HOSTILE)
    process = _process_registry()
    assert _direct_format(choose_encoder(accept)[0]) is None
    body, content_type = render(_scrape(collection, REQUESTS), negotiate(accept), process)
    assert (body, content_type) == (
        _reference(collection, accept, process),
        choose_encoder(accept)[1],
    )


def test_an_empty_collection_still_has_every_family_header():
    collection = Collection(time=NOW, accounts=())
    for accept in ("", "application/openmetrics-text;version=1.0.0"):
        body, _ = render(_scrape(collection, {}), negotiate(accept), CollectorRegistry())
        assert body == _reference(collection, accept, CollectorRegistry(), {})
        assert body.count(b"# TYPE ams_") == len(METRICS)


def test_a_collection_larger_than_one_slice_of_jobs_gives_the_same_bytes():
    collection = _collection([f"job {i}" for i in range(4500)] + HOSTILE)
    process = CollectorRegistry()
    body, _ = render(_scrape(collection, REQUESTS), negotiate(""), process)
    assert body == _reference(collection, "", process)


_label_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(names=st.lists(_label_text, min_size=1, max_size=12))
def test_any_job_and_task_names_give_the_same_bytes(names):
    collection = _collection(names)
    process = CollectorRegistry()
    for accept in ("text/plain;version=0.0.4", "application/openmetrics-text;version=1.0.0"):
        body, _ = render(_scrape(collection, REQUESTS), negotiate(accept), process)
        assert body == _reference(collection, accept, process)


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text;version=1.0.0", *DELEGATED])
def test_a_probe_writes_its_accounts_declarations_and_samples_alone(accept):
    healthy, failed = _collection(HOSTILE).accounts
    requests = {**REQUESTS, (failed.account, "ams", "503"): 4}
    probed = Collection(time=NOW, accounts=(healthy,))
    scrape = dataclasses.replace(_scrape(probed, requests), account=healthy.account)
    body, _ = render(scrape, negotiate(accept), CollectorRegistry())
    encoder, _ = choose_encoder(accept)
    families = build_families(scrape, om=_is_openmetrics(encoder))
    assert body == encoder(Exposition(families, CollectorRegistry()))
    assert b"ams_exporter_" not in body
    assert b'api="ams",code="200"' in body
    assert b"503" not in body


def test_exemplars_and_created_are_written_in_openmetrics_only():
    scrape = _scrape(_collection(HOSTILE), REQUESTS)
    om, _ = render(scrape, negotiate("application/openmetrics-text;version=1.0.0"), REGISTRY)
    text, _ = render(scrape, negotiate("text/plain;version=0.0.4"), REGISTRY)
    assert b" # {" not in text and b"_created{" not in text
    families = {f.name: f for f in om_families(om.decode())}
    ended = [s for s in families["ams_jobs_ended"].samples if s.name.endswith("_total")]
    counted = [s for s in ended if s.value > 0]
    assert counted and all(s.exemplar is not None and s.exemplar.value == 1 for s in counted)
    assert all(s.exemplar is None for s in ended if s.value == 0)
    created = {s.value for s in families["ams_jobs_ended"].samples if s.name.endswith("_created")}
    assert created == {NOW - 30 * 86400 + 0.5, NOW}
    buckets = [
        s for s in families["ams_job_duration_seconds"].samples if s.name.endswith("_bucket")
    ]
    with_exemplar = [s for s in buckets if s.exemplar is not None]
    assert with_exemplar
    for sample in with_exemplar:  # an exemplar's value lies in its own bucket
        assert sample.exemplar.value <= float(sample.labels["le"])
        assert sample.exemplar.labels["job_id"].startswith("nb:jid:UUID:")


REGISTRY = CollectorRegistry()


def test_task_info_names_a_listed_processor_and_shows_the_id_of_an_unlisted_one():
    scrape = _scrape(_collection(["plain"] * 5), REQUESTS)
    text, _ = render(scrape, negotiate(""), REGISTRY)
    lines = [line for line in text.decode().splitlines() if line.startswith("ams_task_info{")]
    assert lines
    listed = [line for line in lines if 'media_processor="processor plain"' in line]
    unlisted = [line for line in lines if 'media_processor="nb:mpid:UUID:2-plain"' in line]
    assert listed and all('media_processor_version="v\\"pla"' in line for line in listed)
    assert unlisted and all('media_processor_version=""' in line for line in unlisted)
    assert len(listed) + len(unlisted) == len(lines)
    assert (
        'ams_encoding_reserved_units{account="acc \\"one\\"\\\\",type="S2"} 10.0' in text.decode()
    )
