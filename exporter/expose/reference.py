"""The contract's samples as ``prometheus_client`` metric families: the reference for a scrape.

Families are built fresh for every scrape: a job that left the scope is simply not in the next one,
and Prometheus marks its series stale. ``exporter/expose/writer.py`` writes the same samples faster
for the formats Prometheus asks for, and falls back to these for the others
(``tests/test_exposition.py`` holds both byte-identical).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.registry import Collector as RegistryCollector
from prometheus_client.samples import Exemplar as ClientExemplar
from prometheus_client.samples import Sample as ClientSample
from prometheus_client.utils import floatToGoString

from exporter.ams.model import JobState
from exporter.collect.history import Exemplar
from exporter.collect.jobview import JobView
from exporter.expose.contract import (
    AccountCounter,
    AccountHistogram,
    AccountSeries,
    JobSeries,
    JobStateSet,
    JobValue,
    Kind,
    Metric,
    Scrape,
    ScrapeSeries,
)

# A number as Go (and Prometheus) prints it, as in a bucket's le label: 10.0, 1e+06, +Inf.
_go = cast(Callable[[float], str], floatToGoString)


def build_families(scrape: Scrape, *, om: bool = False) -> Iterator[Family]:
    """The scrape's families, in contract order (empty families included).

    ``om``: for OpenMetrics, with the exemplars and ``_created`` of counters and histograms;
    the text format 0.0.4 has neither (``prometheus_client`` would write ``_created`` there as
    gauges of their own).
    """
    views = [
        (account.account, view)
        for account in scrape.collection.accounts
        for view in account.views(scrape.collection.time)
    ]
    for metric in scrape.declarations:
        if isinstance(metric, AccountCounter):
            yield _counter_family(metric, scrape, om)
        elif isinstance(metric, AccountHistogram):
            yield _histogram_family(metric, scrape, om)
        else:
            family = _family(metric)
            for labels, value in _samples(metric, scrape, views):
                family.add_metric(list(labels), value)
            yield family


def _client_exemplar(exemplar: Exemplar | None, om: bool) -> ClientExemplar | None:
    if exemplar is None or not om:
        return None
    return ClientExemplar({"job_id": exemplar.job_id}, exemplar.value, exemplar.timestamp)


def _counter_family(metric: AccountCounter, scrape: Scrape, om: bool) -> CounterMetricFamily:
    family = CounterMetricFamily(metric.family_name, metric.help, labels=metric.labels)
    for result in scrape.collection.accounts:
        for point in metric.points(result):
            family.add_metric(
                [result.account, *point.labels],
                point.count.value,
                created=point.created if om else None,
                exemplar=_client_exemplar(point.count.exemplar, om),
            )
    return family


def _histogram_family(metric: AccountHistogram, scrape: Scrape, om: bool) -> HistogramMetricFamily:
    family = HistogramMetricFamily(metric.family_name, metric.help, labels=metric.labels)
    for result in scrape.collection.accounts:
        for point in metric.points(result):
            values = point.distribution
            bounds = [_go(bound) for bound in values.bounds] + ["+Inf"]
            buckets = [
                (bound, count, exemplar) if exemplar is not None else (bound, count)
                for bound, count, exemplar in zip(
                    bounds,
                    values.buckets,
                    (_client_exemplar(one, om) for one in values.exemplars),
                    strict=True,
                )
            ]
            labels = [result.account, *point.labels]
            family.add_metric(labels, buckets, values.sum)
            if om:
                named = dict(zip(metric.labels, labels, strict=True))
                family.samples.append(
                    ClientSample(f"{family.name}_created", named, point.created, None)
                )
    return family


def _family(metric: Metric) -> GaugeMetricFamily | CounterMetricFamily:
    if metric.kind is Kind.COUNTER:
        return CounterMetricFamily(metric.family_name, metric.help, labels=metric.labels)
    return GaugeMetricFamily(metric.family_name, metric.help, labels=metric.labels)


def _samples(
    metric: JobValue | JobStateSet | JobSeries | AccountSeries | ScrapeSeries,
    scrape: Scrape,
    views: list[tuple[str, JobView]],
) -> Iterator[tuple[tuple[str, ...], float]]:
    """``metric``'s samples with all their label values, in the order the writer writes them."""
    if isinstance(metric, JobValue):
        for account, view in views:
            value = metric.value(view)
            if value is not None:
                yield (account, view.job.id, view.job.name), value
    elif isinstance(metric, JobStateSet):
        for account, view in views:
            current = metric.state(view)
            for state in JobState:
                yield (
                    (account, view.job.id, view.job.name, state.label),
                    1 if state is current else 0,
                )
    elif isinstance(metric, JobSeries):
        for account, view in views:
            common = (account, view.job.id, view.job.name)
            for own, value in metric.samples(view):
                yield (*common, *own), value
    elif isinstance(metric, AccountSeries):
        for result in scrape.collection.accounts:
            for own, value in metric.samples(result):
                yield (result.account, *own), value
    else:
        yield from scrape.samples_of(metric)


@dataclass(frozen=True)
class Exposition(RegistryCollector):
    """What one scrape exposes, for ``prometheus_client``'s encoders: families, then ``process``."""

    families: Iterable[Family]
    process: CollectorRegistry

    def collect(self) -> Iterator[Family]:
        yield from self.families
        yield from self.process.collect()
