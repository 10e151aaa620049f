"""The body of a scrape: the contract's samples written in the negotiated exposition format.

For the text format 0.0.4 and OpenMetrics 1.0.0 (what Prometheus asks for) the samples are written
here directly. ``prometheus_client``'s encoders validate and escape every label name of every sample
(about 12 µs a series: seconds at 100,000 jobs); here a job's labels are escaped once and reused by
its fifteen or so series. Other negotiations go through the families of ``exporter/expose/reference.py``.
Both paths give the same bytes (``tests/test_exposition.py``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CONTENT_TYPE_PLAIN_1_0_0,
    generate_latest,
)
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.registry import Collector as RegistryCollector
from prometheus_client.utils import floatToGoString

from exporter.ams.model import ENTITY_KINDS, JobState
from exporter.collect.jobview import JobView
from exporter.collect.snapshot import AccountResult, Collection
from exporter.expose import contract as m
from exporter.expose.reference import STATE_LABELS, RequestCounts, build_families


@dataclass(frozen=True)
class Exposition(RegistryCollector):
    """What one scrape exposes, for ``prometheus_client``'s encoders: families, then ``process``."""

    families: Iterable[Metric]
    process: CollectorRegistry

    def collect(self) -> Iterator[Metric]:
        yield from self.families
        yield from self.process.collect()


class Negotiation(NamedTuple):
    """An exposition format: the encoder that writes it and the content type it is served as."""

    encoder: Callable[[RegistryCollector], bytes]
    content_type: str


TEXT_0_0_4 = Negotiation(generate_latest, CONTENT_TYPE_PLAIN_0_0_4)
# The OpenMetrics versions prometheus_client writes; another version cannot be promised.
_OPENMETRICS_VERSIONS = ("1.0.0", "2.0.0")
_ESCAPINGS = (
    openmetrics_exposition.ALLOWUTF8,
    openmetrics_exposition.UNDERSCORES,
    openmetrics_exposition.DOTS,
    openmetrics_exposition.VALUES,
)
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def negotiate(accept: str) -> Negotiation:
    """The exposition format an ``Accept`` header asks for; every header gets one.

    Media ranges are taken by weight (``q``), equal weights in the order given; a range with
    ``q=0``, an unreadable weight, or a type or version not written here is passed over. Written
    are OpenMetrics 1.0.0 and 2.0.0 and the text format 1.0.0 (each with the name escaping asked
    for, ``underscores`` by default) and the text format 0.0.4, which is also the answer when
    nothing else matches: ``version=abc``, an unknown version, a protobuf-only Prometheus. For
    the headers Prometheus sends this is what ``prometheus_client.exposition.choose_encoder``
    chooses, but it never raises (that one fails on a version that is not a number).
    """
    ranges: list[tuple[float, str, dict[str, str]]] = []
    for element in accept.split(","):
        media, *parameters = element.split(";")
        values: dict[str, str] = {}
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            values.setdefault(name.strip().lower(), value.strip().strip('"'))
        weight = qvalue(values.get("q", "1"))
        if weight:
            ranges.append((weight, media.strip().lower(), values))
    ranges.sort(key=lambda entry: -entry[0])  # stable: equal weights keep their order
    for _, media, values in ranges:
        found = _format(media, values.get("version", ""), values.get("escaping", ""))
        if found is not None:
            return found
    return TEXT_0_0_4


def qvalue(text: str) -> float:
    """An RFC 9110 weight (``q=``): ``0`` to ``1`` with at most three decimals; 0 if unreadable."""
    return float(text) if _QVALUE.fullmatch(text) else 0.0


def _format(media: str, version: str, escaping: str) -> Negotiation | None:
    if escaping not in _ESCAPINGS:
        escaping = openmetrics_exposition.UNDERSCORES
    if media == "application/openmetrics-text":
        if not version:
            return Negotiation(
                partial(
                    openmetrics_exposition.generate_latest,
                    escaping=openmetrics_exposition.UNDERSCORES,
                    version="1.0.0",
                ),
                openmetrics_exposition.CONTENT_TYPE_LATEST,
            )
        if version in _OPENMETRICS_VERSIONS:
            return Negotiation(
                partial(openmetrics_exposition.generate_latest, escaping=escaping, version=version),
                f"application/openmetrics-text; version={version}; charset=utf-8; "
                f"escaping={escaping}",
            )
        return None
    if media == "text/plain":
        if version in ("", "0.0.4"):
            return TEXT_0_0_4
        if version == "1.0.0":
            return Negotiation(
                partial(generate_latest, escaping=escaping),
                f"{CONTENT_TYPE_PLAIN_1_0_0}; escaping={escaping}",
            )
        return None
    if media in ("*/*", "text/*"):
        return TEXT_0_0_4
    return None


def render(
    collection: Collection,
    requests: RequestCounts,
    version: str,
    negotiation: Negotiation,
    process: CollectorRegistry,
) -> tuple[bytes, str]:
    """The body of a scrape in the negotiated format, and its content type.

    ``negotiation`` is what :func:`negotiate` chose (before the collection, so that no Accept
    header can waste one).
    ``process`` (the client library's process and runtime metrics) follows the families, always
    through ``prometheus_client``; it also ends an OpenMetrics body with ``# EOF``.
    """
    encoder, content_type = negotiation
    om = _direct_format(encoder)
    if om is None:
        families = build_families(collection, requests, version)
        return encoder(Exposition(families, process)), content_type
    body = io.BytesIO()  # its getvalue() hands over the buffer: no second copy of a large body
    for text in _family_texts(collection, requests, version, om=om):
        body.write(text.encode())
    body.write(encoder(process))
    return body.getvalue(), content_type


# Escapings under which the contract's names (all in the legacy character set) are written as they
# are; "dots" and "values" rewrite them, so those go through prometheus_client.
_PLAIN_ESCAPINGS = frozenset({openmetrics_exposition.UNDERSCORES, openmetrics_exposition.ALLOWUTF8})


def _direct_format(encoder: Callable[..., bytes]) -> bool | None:
    """``False`` for the text format, ``True`` for OpenMetrics 1.0.0, ``None``: not written here."""
    if encoder is generate_latest:
        return False
    if not isinstance(encoder, partial) or encoder.args:
        return None
    if encoder.keywords.get("escaping") not in _PLAIN_ESCAPINGS:
        return None
    if encoder.func is generate_latest and set(encoder.keywords) == {"escaping"}:
        return False
    if encoder.func is openmetrics_exposition.generate_latest and encoder.keywords.get(
        "version"
    ) in ("1.0.0", "1.0"):
        return True
    return None


# A number as Go (and Prometheus) prints it: 1.0, 1.7e+09, NaN, +Inf.
_go = cast(Callable[[float], str], floatToGoString)
_ONE = _go(1)
_ZERO = _go(0)
# One job's seven ams_job_state lines per current state, "\x00" standing for its common labels.
_STATE_BLOCKS = {
    current: "".join(
        f'{m.JOB_STATE.name}{{\x00,state="{label}"}} {_ONE if state is current else _ZERO}\n'
        for state, label in STATE_LABELS
    )
    for current in JobState
}
_JOB_VALUES: tuple[tuple[m.Metric, Callable[[JobView], float | None]], ...] = (
    (m.JOB_CREATED, lambda view: view.job.created),
    (m.JOB_START, lambda view: view.job.start_time),
    (m.JOB_END, lambda view: view.job.end_time),
    (m.JOB_AGE, lambda view: view.age_seconds),
    (m.JOB_RUNNING, lambda view: view.running_seconds),
    (m.JOB_QUEUED, lambda view: view.queued_seconds),
    (m.JOB_PROGRESS, lambda view: view.progress_ratio),
    (m.JOB_PRIORITY, lambda view: view.job.priority),
)

# A job's escaped common labels, its account and the job; the per-job families are written
# for so many jobs at a time, which bounds the text in memory besides the body itself.
_Labelled = tuple[str, str, JobView]
_JOBS_PER_SLICE = 2000


def _family_texts(
    collection: Collection, requests: RequestCounts, version: str, *, om: bool
) -> Iterator[str]:
    """The families of the contract as text, in :data:`metrics.METRICS` order, in pieces.

    The common labels of a per-job series (account, job_id, job_name) sort before its own ones
    (state; task_id, task_name), so a job's escaped labels are one string that every line reuses;
    ams_job_error_info's ``code`` sorts between them, and its few lines are written label by label.
    """
    jobs: list[_Labelled] = [
        (_job_labels(account.account, view.job.id, view.job.name), account.account, view)
        for account in collection.accounts
        for view in account.views(collection.time)
    ]
    per_job: dict[str, Callable[[Sequence[_Labelled]], list[str]]] = {
        m.JOB_STATE.name: _state_lines,
        m.JOB_ERROR_INFO.name: _error_lines,
        m.TASK_PROGRESS.name: _task_lines,
    }
    for metric, value_of in _JOB_VALUES:
        per_job[metric.name] = partial(_job_value_lines, metric.name, value_of)
    others: dict[str, Callable[[], list[str]]] = {
        m.API_REQUESTS.name: lambda: [
            _line(m.API_REQUESTS, key, count) for key, count in sorted(requests.items())
        ],
        m.BUILD_INFO.name: lambda: [_line(m.BUILD_INFO, [version], 1)],
    }
    for metric in (
        m.JOBS,
        m.UP,
        m.SCRAPE_DURATION,
        m.LAST_SUCCESS,
        m.JOBS_DROPPED,
        m.UNREADABLE_ENTITIES,
    ):
        others[metric.name] = partial(_account_lines, metric, collection.accounts)
    for metric in m.METRICS:
        yield _header(metric, om)
        lines_of = per_job.get(metric.name)
        if lines_of is None:
            yield "".join(others[metric.name]())
            continue
        for start in range(0, len(jobs), _JOBS_PER_SLICE):
            yield "".join(lines_of(jobs[start : start + _JOBS_PER_SLICE]))


def _header(metric: m.Metric, om: bool) -> str:
    if om:
        name, escaped = metric.family_name, _escape(metric.help)
    else:  # the text format names a counter with its _total and leaves quotes in HELP alone
        name, escaped = metric.name, metric.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} {metric.kind.value}\n"


def _escape(value: str) -> str:
    """A label value as both formats write it: backslash, newline and double quote escaped."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _job_labels(account: str, job_id: str, job_name: str) -> str:
    return f'account="{_escape(account)}",job_id="{_escape(job_id)}",job_name="{_escape(job_name)}"'


def _line(metric: m.Metric, values: Sequence[str], value: float) -> str:
    """One sample, labels sorted by name as ``prometheus_client`` writes them."""
    pairs = ",".join(
        f'{k}="{_escape(v)}"' for k, v in sorted(zip(metric.labels, values, strict=True))
    )
    labels = f"{{{pairs}}}" if pairs else ""
    return f"{metric.name}{labels} {_go(value)}\n"


def _state_lines(jobs: Sequence[_Labelled]) -> list[str]:
    return [_STATE_BLOCKS[view.job.state].replace("\x00", labels) for labels, _, view in jobs]


def _job_value_lines(
    name: str, value_of: Callable[[JobView], float | None], jobs: Sequence[_Labelled]
) -> list[str]:
    return [
        f"{name}{{{labels}}} {_go(value)}\n"
        for labels, _, view in jobs
        if (value := value_of(view)) is not None
    ]


def _task_lines(jobs: Sequence[_Labelled]) -> list[str]:
    name = m.TASK_PROGRESS.name
    return [
        f'{name}{{{labels},task_id="{_escape(task.id)}",task_name="{_escape(task.name)}"}} '
        f"{_go(task.progress / 100.0)}\n"
        for labels, _, view in jobs
        if view.tasks and view.job.state not in (JobState.QUEUED, JobState.SCHEDULED)
        for task in view.tasks
        if task.progress is not None
    ]


def _error_lines(jobs: Sequence[_Labelled]) -> list[str]:
    return [
        _line(m.JOB_ERROR_INFO, [account, view.job.id, view.job.name, task_id, code], 1)
        for _, account, view in jobs
        if view.job.state is JobState.ERROR
        for task_id, code in view.error_codes
    ]


def _account_lines(metric: m.Metric, accounts: Sequence[AccountResult]) -> list[str]:
    """The account-level samples of ``metric``, as :func:`_add_account` adds them."""
    lines = []
    for result in accounts:
        name = result.account
        if metric is m.UP:
            lines.append(_line(metric, [name], 1 if result.up else 0))
        elif metric is m.SCRAPE_DURATION:
            lines.append(_line(metric, [name], result.duration_seconds))
        elif metric is m.LAST_SUCCESS and result.last_success is not None:
            lines.append(_line(metric, [name], result.last_success))
        elif metric is m.JOBS and result.state_counts:
            for state, label in STATE_LABELS:
                lines.append(_line(metric, [name, label], result.state_counts.get(state, 0)))
        elif metric is m.JOBS_DROPPED and result.state_counts:
            lines.append(_line(metric, [name], result.dropped))
        elif metric is m.UNREADABLE_ENTITIES and result.state_counts:
            for entity in ENTITY_KINDS:
                lines.append(_line(metric, [name, entity], result.unreadable.get(entity, 0)))
    return lines
