"""The body of a scrape: the contract's samples written in the negotiated exposition format.

For the text format 0.0.4 and OpenMetrics 1.0.0 (what Prometheus asks for) the samples are written
here directly. ``prometheus_client``'s encoders validate and escape every label name of every sample
(about 12 µs a series: seconds at 100,000 jobs); here a job's labels are escaped once and reused by
its fifteen or so series, and the lines of a job that did not change since the previous scrape are
reused (``exporter/expose/linecache.py``). Other negotiations go through the families of
``exporter/expose/reference.py``. Both paths give the same bytes (``tests/test_exposition.py``).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from operator import itemgetter
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.utils import floatToGoString

from exporter.ams.model import JobState
from exporter.collect.history import Exemplar
from exporter.collect.jobview import JobView
from exporter.expose.contract import (
    JOB_LABELS,
    AccountCounter,
    AccountHistogram,
    AccountSeries,
    Declaration,
    JobSeries,
    JobStateSet,
    JobValue,
    Metric,
    Moves,
    Sample,
    Scrape,
    ScrapeSeries,
)
from exporter.expose.linecache import JobLineCache, JobLines, written_from
from exporter.expose.negotiation import Negotiation
from exporter.expose.reference import Exposition, build_families


def render(
    scrape: Scrape,
    negotiation: Negotiation,
    process: CollectorRegistry,
    cache: JobLineCache | None = None,
) -> tuple[bytes, str]:
    """The body of a scrape in the negotiated format, and its content type.

    ``negotiation`` is what :func:`~exporter.expose.negotiation.negotiate` chose (before the
    collection, so that no Accept header can waste one). ``process`` (the client library's process
    and runtime metrics) follows the families, always through ``prometheus_client``; it also ends
    an OpenMetrics body with ``# EOF``. ``cache`` keeps the lines of unchanged jobs from one
    scrape to the next (see :mod:`exporter.expose.linecache`); without one, every line is written.
    """
    encoder, content_type = negotiation
    om = _direct_format(encoder)
    if om is None:
        families = build_families(scrape, om=_is_openmetrics(encoder))
        return encoder(Exposition(families, process)), content_type
    # One join of small pieces, most of them kept by the cache: the body is the one large
    # allocation of a scrape.
    with _GC_PAUSE:
        parts = _family_parts(scrape, om=om, cache=JobLineCache() if cache is None else cache)
    parts.append(encoder(process))
    return b"".join(parts), content_type


class _CyclicGcPause:
    """Pauses the cyclic garbage collector while any thread writes a body.

    Writing a body allocates a few containers per job (its view, its row) and frees them by
    reference counting: it makes no cycles. But the allocations trigger collections, and a full
    one walks every object of the process, the collection's jobs and the kept lines included: a
    third of a warm write at 50,000 jobs. The collector is paused from the first concurrent write
    to the last (never resumed if something else had paused it), so that one thread's resuming
    cannot cut another's pause short.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writers = 0
        self._resume = False

    def __enter__(self) -> None:
        with self._lock:
            if self._writers == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._writers += 1

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._writers -= 1
            if self._writers == 0 and self._resume:
                gc.enable()


_GC_PAUSE = _CyclicGcPause()


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


def _is_openmetrics(encoder: Callable[..., bytes]) -> bool:
    """Whether ``encoder`` writes OpenMetrics (any version or escaping)."""
    func = encoder.func if isinstance(encoder, partial) else encoder
    return func is openmetrics_exposition.generate_latest


# A number as Go (and Prometheus) prints it: 1.0, 1.7e+09, NaN, +Inf.
_go = cast(Callable[[float], str], floatToGoString)
_ONE = _go(1)
_ZERO = _go(0)

# A job's escaped common labels, its account and the job.
_Labelled = tuple[str, str, JobView]
_JobText = Callable[[_Labelled], str]
_JobMetric = JobValue | JobStateSet | JobSeries


def _family_parts(scrape: Scrape, *, om: bool, cache: JobLineCache) -> list[bytes]:
    """The scrape's families, encoded, in contract order, in pieces: a per-job family in one piece
    per job."""
    declarations = scrape.declarations
    job_metrics = [metric for metric in declarations if isinstance(metric, _JobMetric)]
    kept = tuple(metric for metric in job_metrics if _moves(metric) is not Moves.ALWAYS)
    writers = {metric.name: _job_text_writer(metric) for metric in job_metrics}
    rows = _job_rows(scrape, kept, writers, cache)
    texts = [lines.texts for lines, _ in rows]
    slots = {metric.name: index for index, metric in enumerate(kept)}
    parts: list[bytes] = []
    for metric in declarations:
        parts.append(_header(metric, om).encode())
        if isinstance(metric, _JobMetric):
            slot, write = slots.get(metric.name), writers[metric.name]
            parts.extend(_job_family(_moves(metric), slot, write, rows, texts))
        elif isinstance(metric, AccountCounter):
            parts.append("".join(_counter_lines(metric, scrape, om)).encode())
        elif isinstance(metric, AccountHistogram):
            parts.append("".join(_histogram_lines(metric, scrape, om)).encode())
        else:
            parts.append("".join(_other_lines(metric, scrape)).encode())
    return parts


def _moves(metric: _JobMetric) -> Moves:
    return metric.moves if isinstance(metric, JobValue) else Moves.NEVER


def _job_family(
    moves: Moves,
    slot: int | None,
    write: _JobText,
    rows: list[tuple[JobLines, _Labelled]],
    texts: list[tuple[bytes, ...]],
) -> Iterable[bytes]:
    """One per-job family, a piece per job: kept, written, or kept once the job ended."""
    if slot is None:
        return [write(labelled).encode() for _, labelled in rows]
    if moves is Moves.NEVER:
        return map(itemgetter(slot), texts)
    return [
        lines.texts[slot] if lines.ended else write(labelled).encode() for lines, labelled in rows
    ]


def _job_rows(
    scrape: Scrape,
    kept: tuple[_JobMetric, ...],
    writers: dict[str, _JobText],
    cache: JobLineCache,
) -> list[tuple[JobLines, _Labelled]]:
    """Every exported job's lines of the ``kept`` metrics, reused from ``cache`` where unchanged,
    with the job as the metrics written by every scrape need it; the cache then holds exactly
    these jobs."""
    rows: list[tuple[JobLines, _Labelled]] = []
    collection = scrape.collection
    ended_writers = [writers[metric.name] for metric in kept]
    # Until a job has ended, the metrics that move until then are written by every scrape.
    live_writers = [
        _nothing if _moves(metric) is Moves.UNTIL_ENDED else writers[metric.name] for metric in kept
    ]
    for account in collection.accounts:
        name = account.account
        before = cache.lines_of(name, kept)
        after: dict[str, JobLines] = {}
        for view in account.views(collection.time):
            job, key = view.job, written_from(view)
            lines = before.get(job.id)
            if lines is not None and lines.key == key:
                labelled = (lines.labels, name, view)
            else:
                labelled = (_job_labels(name, job.id, job.name), name, view)
                ended = view.ended
                writing = ended_writers if ended else live_writers
                texts = tuple([write(labelled).encode() for write in writing])
                lines = JobLines(key, labelled[0], ended, texts)
            after[job.id] = lines
            rows.append((lines, labelled))
        cache.store(name, kept, after)
    if scrape.account is None:
        cache.keep_only({account.account for account in collection.accounts})
    return rows


def _nothing(_labelled: _Labelled) -> str:
    return ""


def _header(metric: Metric, om: bool) -> str:
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


def _line(metric: Metric, values: Sequence[str], value: float) -> str:
    """One sample, labels sorted by name as ``prometheus_client`` writes them."""
    return f"{metric.name}{_labels(metric.labels, values)} {_go(value)}\n"


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    """``{name="value",...}`` sorted by name; empty without labels."""
    pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(zip(names, values, strict=True)))
    return f"{{{pairs}}}" if pairs else ""


def _exemplar(exemplar: Exemplar | None, om: bool) -> str:
    """An OpenMetrics exemplar after a sample's value; nothing in the text format."""
    if exemplar is None or not om:
        return ""
    labels = f'{{job_id="{_escape(exemplar.job_id)}"}}'
    return f" # {labels} {_go(exemplar.value)} {exemplar.timestamp}"


def _counter_lines(metric: AccountCounter, scrape: Scrape, om: bool) -> Iterator[str]:
    created_name = f"{metric.family_name}_created"
    for result in scrape.collection.accounts:
        for point in metric.points(result):
            labels = _labels(metric.labels, (result.account, *point.labels))
            count = point.count
            yield f"{metric.name}{labels} {_go(count.value)}{_exemplar(count.exemplar, om)}\n"
            if om:
                yield f"{created_name}{labels} {_go(point.created)}\n"


def _histogram_lines(metric: AccountHistogram, scrape: Scrape, om: bool) -> Iterator[str]:
    name = metric.name
    names = (*metric.labels, "le")
    for result in scrape.collection.accounts:
        for point in metric.points(result):
            values = (result.account, *point.labels)
            histogram = point.distribution
            bounds = [_go(bound) for bound in histogram.bounds] + ["+Inf"]
            for bound, count, exemplar in zip(
                bounds, histogram.buckets, histogram.exemplars, strict=True
            ):
                labels = _labels(names, (*values, bound))
                yield f"{name}_bucket{labels} {_go(count)}{_exemplar(exemplar, om)}\n"
            labels = _labels(metric.labels, values)
            yield f"{name}_count{labels} {_go(histogram.count)}\n"
            yield f"{name}_sum{labels} {_go(histogram.sum)}\n"
            if om:
                yield f"{name}_created{labels} {_go(point.created)}\n"


def _job_text_writer(metric: _JobMetric) -> _JobText:
    """The function that writes one job's lines of ``metric`` (nothing when it has none)."""
    if isinstance(metric, JobValue):
        return partial(_value_text, metric.name, metric.value)
    if isinstance(metric, JobStateSet):
        return partial(_state_set_text, metric.state, _state_blocks(metric))
    own = metric.labels[len(JOB_LABELS) :]
    if list(metric.labels) == sorted(metric.labels):
        return partial(_series_text, metric, own)
    if list(own) == sorted(own) and all("account" < label < "job_id" for label in own):
        # ams_job_info's group sorts between account and job_id: written between them.
        return partial(_between_text, metric, own, {})
    # An own label sorts elsewhere among the common ones (ams_job_error_info's code): label by label.
    return partial(_sorted_text, metric)


def _value_text(name: str, value_of: Callable[[JobView], float | None], labelled: _Labelled) -> str:
    value = value_of(labelled[2])
    return "" if value is None else f"{name}{{{labelled[0]}}} {_number(value)}\n"


def _number(value: float) -> str:
    """``_go(value)``, faster for the ages and durations of most jobs: below a million, Go and
    Python print a float alike (NaN fails both comparisons)."""
    return repr(value) if type(value) is float and -1e6 < value < 1e6 else _go(value)


def _state_blocks(metric: JobStateSet) -> dict[JobState, str]:
    """A job's lines of a state set, one block per current state; "\x00" stands for its labels."""
    return {
        current: "".join(
            f'{metric.name}{{\x00,state="{state.label}"}} {_ONE if state is current else _ZERO}\n'
            for state in JobState
        )
        for current in JobState
    }


def _state_set_text(
    state_of: Callable[[JobView], JobState], blocks: dict[JobState, str], labelled: _Labelled
) -> str:
    return blocks[state_of(labelled[2])].replace("\x00", labelled[0])


def _series_text(metric: JobSeries, own: Sequence[str], labelled: _Labelled) -> str:
    labels, _, view = labelled
    return "".join(
        f"{metric.name}{{{labels}{_own_pairs(own, values)}}} {_go(value)}\n"
        for values, value in metric.samples(view)
    )


def _between_text(
    metric: JobSeries,
    own: Sequence[str],
    written: dict[Sample, tuple[str, str]],
    labelled: _Labelled,
) -> str:
    """``written`` holds a sample's own labels and value as text: few distinct ones (a group per
    job), shared by the jobs of one scrape."""
    labels, _, view = labelled
    # An escaped value never holds an unescaped quote, so the first ',job_id="' is the label.
    account, _, rest = labels.partition(',job_id="')
    lines = []
    for sample in metric.samples(view):
        text = written.get(sample)
        if text is None:
            text = written[sample] = (_own_pairs(own, sample[0]), _go(sample[1]))
        lines.append(f'{metric.name}{{{account}{text[0]},job_id="{rest}}} {text[1]}\n')
    return "".join(lines)


def _own_pairs(names: Sequence[str], values: Sequence[str]) -> str:
    return "".join(f',{name}="{_escape(text)}"' for name, text in zip(names, values, strict=True))


def _sorted_text(metric: JobSeries, labelled: _Labelled) -> str:
    _, account, view = labelled
    return "".join(
        _line(metric, (account, view.job.id, view.job.name, *own), value)
        for own, value in metric.samples(view)
    )


def _other_lines(metric: Declaration, scrape: Scrape) -> Iterator[str]:
    if isinstance(metric, AccountSeries):
        for result in scrape.collection.accounts:
            for own, value in metric.samples(result):
                yield _line(metric, (result.account, *own), value)
    elif isinstance(metric, ScrapeSeries):
        for labels, value in scrape.samples_of(metric):
            yield _line(metric, labels, value)
