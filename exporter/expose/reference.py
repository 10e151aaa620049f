"""Turning a collection into ``prometheus_client`` metric families, as the contract says.

Families are built fresh for every scrape: a job that left the scope is simply not in the next one,
and Prometheus marks its series stale. These families are the reference for what a scrape exposes:
``exporter/expose/writer.py`` writes the same samples faster for the formats Prometheus asks for, and
falls back to these for the others (``tests/test_exposition.py`` holds both byte-identical).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.ams.model import ENTITY_KINDS, JobState
from exporter.collect.jobview import JobView
from exporter.collect.snapshot import AccountResult, Collection
from exporter.expose import contract as m

STATE_LABELS = tuple((state, state.label) for state in JobState)

RequestCounts = Mapping[tuple[str, str, str], int]


def _family(metric: m.Metric) -> GaugeMetricFamily | CounterMetricFamily:
    if metric.kind is m.Kind.COUNTER:
        return CounterMetricFamily(metric.family_name, metric.help, labels=metric.labels)
    return GaugeMetricFamily(metric.family_name, metric.help, labels=metric.labels)


def build_families(
    collection: Collection, requests: RequestCounts, version: str
) -> Iterator[Metric]:
    """Every family of the contract for this collection (empty families included)."""
    families = {metric.name: _family(metric) for metric in m.METRICS}
    for account in collection.accounts:
        _add_account(families, account)
        for view in account.views(collection.time):
            _add_job(families, account.account, view)
    for (account_name, api, code), count in sorted(requests.items()):
        families[m.API_REQUESTS.name].add_metric([account_name, api, code], count)
    families[m.BUILD_INFO.name].add_metric([version], 1)
    return iter(families.values())


def _add_account(
    families: dict[str, GaugeMetricFamily | CounterMetricFamily], result: AccountResult
) -> None:
    name = result.account
    families[m.UP.name].add_metric([name], 1 if result.up else 0)
    families[m.SCRAPE_DURATION.name].add_metric([name], result.duration_seconds)
    if result.last_success is not None:
        families[m.LAST_SUCCESS.name].add_metric([name], result.last_success)
    if result.state_counts:
        # Counts exist only when the job listing succeeded; zeros after a failed listing would lie.
        for state, label in STATE_LABELS:
            families[m.JOBS.name].add_metric([name, label], result.state_counts.get(state, 0))
        families[m.JOBS_DROPPED.name].add_metric([name], result.dropped)
        for entity in ENTITY_KINDS:
            families[m.UNREADABLE_ENTITIES.name].add_metric(
                [name, entity], result.unreadable.get(entity, 0)
            )


def _add_job(
    families: dict[str, GaugeMetricFamily | CounterMetricFamily], account: str, view: JobView
) -> None:
    job = view.job
    labels = [account, job.id, job.name]
    for state, label in STATE_LABELS:
        families[m.JOB_STATE.name].add_metric([*labels, label], 1 if job.state is state else 0)
    families[m.JOB_CREATED.name].add_metric(labels, job.created)
    if job.start_time is not None:
        families[m.JOB_START.name].add_metric(labels, job.start_time)
    if job.end_time is not None:
        families[m.JOB_END.name].add_metric(labels, job.end_time)
    families[m.JOB_AGE.name].add_metric(labels, view.age_seconds)
    running = view.running_seconds
    if running is not None:
        families[m.JOB_RUNNING.name].add_metric(labels, running)
    families[m.JOB_QUEUED.name].add_metric(labels, view.queued_seconds)
    progress = view.progress_ratio
    if progress is not None:
        families[m.JOB_PROGRESS.name].add_metric(labels, progress)
    if job.priority is not None:
        families[m.JOB_PRIORITY.name].add_metric(labels, job.priority)
    for task_id, code in view.error_codes:
        families[m.JOB_ERROR_INFO.name].add_metric([*labels, task_id, code], 1)
    if view.tasks and job.state not in (JobState.QUEUED, JobState.SCHEDULED):
        for task in view.tasks:
            if task.progress is not None:
                families[m.TASK_PROGRESS.name].add_metric(
                    [*labels, task.id, task.name], task.progress / 100.0
                )
