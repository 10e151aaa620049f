"""The contract's samples as ``prometheus_client`` metric families: the reference for a scrape.

Families are built fresh for every scrape: a job that left the scope is simply not in the next one,
and Prometheus marks its series stale. ``exporter/expose/writer.py`` writes the same samples faster
for the formats Prometheus asks for, and falls back to these for the others
(``tests/test_exposition.py`` holds both byte-identical).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.registry import Collector as RegistryCollector

from exporter.ams.model import JobState
from exporter.collect.jobview import JobView
from exporter.expose.contract import (
    AccountSeries,
    Declaration,
    JobSeries,
    JobStateSet,
    JobValue,
    Kind,
    Scrape,
)


def build_families(scrape: Scrape) -> Iterator[Family]:
    """The scrape's families, in contract order (empty families included)."""
    views = [
        (account.account, view)
        for account in scrape.collection.accounts
        for view in account.views(scrape.collection.time)
    ]
    for metric in scrape.declarations:
        family = _family(metric)
        for labels, value in _samples(metric, scrape, views):
            family.add_metric(list(labels), value)
        yield family


def _family(metric: Declaration) -> GaugeMetricFamily | CounterMetricFamily:
    if metric.kind is Kind.COUNTER:
        return CounterMetricFamily(metric.family_name, metric.help, labels=metric.labels)
    return GaugeMetricFamily(metric.family_name, metric.help, labels=metric.labels)


def _samples(
    metric: Declaration, scrape: Scrape, views: list[tuple[str, JobView]]
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
