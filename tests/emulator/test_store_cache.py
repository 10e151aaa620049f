"""The store's match cache: pages read through it are the pages a full scan gives, and every kind
of change to the population (test controls, the scenario moving, retention) is seen by the next
page read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import pytest

from ams_emulator import store as store_module
from ams_emulator.clock import Clock
from ams_emulator.entities import EmuJob, EmuTask, JobState
from ams_emulator.query import QueryOptions, parse_query
from ams_emulator.scenario import ScenarioConfig
from ams_emulator.store import MATCH_CACHE_SIZE, JobStore

UTC = timezone.utc
START = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
PROCESSING = "State eq 2"


def jobs_query(**params: str) -> QueryOptions:
    return parse_query({f"${name}": value for name, value in params.items()}, "Jobs")


def ids(items: Sequence[EmuJob | EmuTask]) -> list[str]:
    return [item.id for item in items]


def every_page(store: JobStore, top: int = 1000, **params: str) -> list[str]:
    """Every page of a query, ``$skip`` after ``$skip``, until a short page."""
    found: list[str] = []
    for page in range(1000):
        got = store.list_jobs(jobs_query(top=str(top), skip=str(page * top), **params))
        found += ids(got)
        if len(got) < top:
            return found
    raise AssertionError("the listing did not end")


def scanned(store: JobStore, text: str) -> list[str]:
    """What a filter matches in Id order, computed from a snapshot without the store's queries."""
    matches = jobs_query(filter=text).filter
    assert matches is not None
    return [job.id for job in store.snapshot() if matches.matches(job)]


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Counts the full scans the store makes (one per cache miss)."""
    made: list[str] = []
    real = store_module._ordered_matches

    def counting(items: Any, by_id: Any, options: QueryOptions) -> Any:
        made.append(options.filter.text if options.filter is not None else "")
        return real(items, by_id, options)

    monkeypatch.setattr(store_module, "_ordered_matches", counting)
    yield made


@pytest.fixture
def frozen() -> tuple[JobStore, Clock]:
    clock = Clock(START, speed=0)
    return JobStore(ScenarioConfig(seed=31, jobs=3000), clock), clock


# --- same answers, warm or cold -----------------------------------------------------------------

QUERIES: list[dict[str, str]] = [
    {"filter": "State eq 3"},
    {"filter": "State eq 3 or State eq 4", "orderby": "Created desc"},
    {"orderby": "Priority desc,EndTime"},
    {"filter": "LastModified ge datetime'2024-05-31T08:00:00'", "select": "Id,State"},
]


@pytest.mark.parametrize("params", QUERIES, ids=[str(q) for q in QUERIES])
def test_pages_are_the_same_with_a_warm_cache_and_a_cold_one(
    frozen: tuple[JobStore, Clock], params: dict[str, str]
) -> None:
    store, _ = frozen
    cold_store = JobStore(ScenarioConfig(seed=31, jobs=3000), Clock(START, speed=0))
    warm = every_page(store, top=200, **params)
    again = every_page(store, top=200, **params)  # every page from the cache
    cold: list[str] = []
    for skip in range(0, len(warm) + 200, 200):
        cold_store._matches = store_module._MatchCache()  # forget, so every page is a scan
        cold += ids(cold_store.list_jobs(jobs_query(top="200", skip=str(skip), **params)))
    assert warm == again == cold
    assert len(warm) > 400, "the query should span several pages"
    if "orderby" not in params:
        assert warm == scanned(store, params["filter"])


def test_pages_read_backwards_match_pages_read_forwards(frozen: tuple[JobStore, Clock]) -> None:
    store, _ = frozen
    forwards = every_page(store, filter="State eq 3")
    pages = [
        ids(store.list_jobs(jobs_query(filter="State eq 3", skip=str(skip))))
        for skip in (2000, 1000, 0)
    ]
    assert [job_id for page in reversed(pages) for job_id in page] == forwards


def test_a_frozen_store_scans_once_per_query(
    frozen: tuple[JobStore, Clock], scans: list[str]
) -> None:
    store, _ = frozen
    every_page(store, filter="State eq 3")
    every_page(store, filter="State eq 3")
    assert scans == ["State eq 3"]
    every_page(store, filter="State eq 4")
    assert scans == ["State eq 3", "State eq 4"]
    # Unfiltered, unordered pages and Id filters are slices or lookups: never remembered.
    pinned = f"Id eq '{store.snapshot()[5].id}'"
    for _ in range(2):
        store.list_jobs(QueryOptions(skip=1000))
        store.list_jobs(jobs_query(filter=pinned))
    assert scans[2:] == ["", pinned, "", pinned]


def test_the_cache_keeps_only_the_latest_queries(
    frozen: tuple[JobStore, Clock], scans: list[str]
) -> None:
    store, _ = frozen
    texts = [f"Priority ge {n}" for n in range(MATCH_CACHE_SIZE + 1)]
    for text in texts:
        store.list_jobs(jobs_query(filter=text))
    store.list_jobs(jobs_query(filter=texts[-1]))  # still remembered
    store.list_jobs(jobs_query(filter=texts[0]))  # the oldest, pushed out
    assert scans == [*texts, texts[0]]


# --- every change is seen -----------------------------------------------------------------------


def test_set_job_state_is_seen_by_the_next_page(
    frozen: tuple[JobStore, Clock], scans: list[str]
) -> None:
    store, _ = frozen
    before = every_page(store, filter=PROCESSING)
    assert before
    store.set_job_state(before[0], JobState.FINISHED)
    after = every_page(store, filter=PROCESSING)
    assert after == before[1:] == scanned(store, PROCESSING)
    assert before[0] in every_page(store, filter="State eq 3")
    assert scans.count(PROCESSING) == 2


def test_add_job_is_seen_by_the_next_page(frozen: tuple[JobStore, Clock]) -> None:
    store, _ = frozen
    before = every_page(store, filter=PROCESSING)
    added = store.add_job(name="cache-added", state=JobState.PROCESSING)
    after = every_page(store, filter=PROCESSING)
    assert added in after and added not in before
    assert after == sorted([*before, added]) == scanned(store, PROCESSING)
    named = store.list_jobs(jobs_query(filter="Name eq 'cache-added'", orderby="Created desc"))
    assert ids(named) == [added]


def test_delete_job_is_seen_by_the_next_page(frozen: tuple[JobStore, Clock]) -> None:
    store, _ = frozen
    before = every_page(store, filter="State eq 3", orderby="Created desc")
    store.delete_job(before[1500])
    after = every_page(store, filter="State eq 3", orderby="Created desc")
    assert after == before[:1500] + before[1501:]


def test_set_task_progress_is_seen_by_the_next_task_page(frozen: tuple[JobStore, Clock]) -> None:
    store, _ = frozen
    job = next(job for job in store.snapshot() if job.state == JobState.PROCESSING)
    tasks = parse_query({"$filter": "Progress eq 12.5"}, "Tasks")
    assert store.list_tasks(tasks) == []
    store.set_task_progress(job.id, 0, 12.5)
    assert ids(store.list_tasks(tasks)) == [job.tasks[0].id]


def test_the_clock_moving_the_scenario_is_seen_by_the_next_page() -> None:
    clock = Clock(START, speed=0)
    store = JobStore(ScenarioConfig(seed=32, jobs=3000), clock)
    before = every_page(store, filter=PROCESSING)
    finished = every_page(store, filter="State eq 3", orderby="EndTime desc")
    clock.advance(6 * 3600)  # jobs end, start and arrive
    after = every_page(store, filter=PROCESSING)
    assert after != before
    assert after == scanned(store, PROCESSING)
    newly = every_page(store, filter="State eq 3", orderby="EndTime desc")
    assert len(newly) > len(finished)
    assert set(finished) <= set(newly)


def test_retention_is_seen_by_the_next_page() -> None:
    clock = Clock(START, speed=0)
    store = JobStore(ScenarioConfig(seed=33, jobs=3000, arrivals_per_hour=0), clock)
    oldest = every_page(store, filter="State eq 3", orderby="Created")
    clock.advance(5 * 86400)  # the oldest jobs pass the 90-day retention
    kept = every_page(store, filter="State eq 3", orderby="Created")
    gone = [job_id for job_id in oldest if store.get_job(job_id) is None]
    assert gone and gone == oldest[: len(gone)]
    assert [job_id for job_id in kept if job_id in set(oldest)] == oldest[len(gone) :]
    assert not set(gone) & set(kept)


def test_a_clock_that_does_not_move_keeps_the_cache(scans: list[str]) -> None:
    clock = Clock(START, speed=0)
    store = JobStore(ScenarioConfig(seed=34, jobs=500), clock)
    store.list_jobs(jobs_query(filter=PROCESSING))
    clock.set(START)  # the same moment again
    store.list_jobs(jobs_query(filter=PROCESSING))
    assert scans == [PROCESSING]
    clock.advance(60)  # Processing jobs' progress moves
    store.list_jobs(jobs_query(filter=PROCESSING))
    assert scans == [PROCESSING, PROCESSING]
