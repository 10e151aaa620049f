"""The emulator's store: the job population, its indexes, queries, and test controls; and the
account's media processors and encoding reserved units (the scenario's slots).

One lock guards everything. Every call first advances the living scenario to ``clock.now()``.
Queries run over the live objects under the lock and copy only what they return (at most 1000),
so a store of 100,000 jobs is never copied to answer a request; a page of jobs is copied without
the jobs' tasks, which a Jobs answer never shows.

Paging: the ordered matches of a filtered or ordered query are remembered (a small LRU keyed by
entity set, ``$filter`` text and ``$orderby``) for as long as the store's version is unchanged;
every mutation bumps it (the scenario moving, a test control). A client reading page after page
then pays one scan for the first page and a slice for each later one, instead of walking
``$skip`` + 1000 matches per page.
"""

from __future__ import annotations

import bisect
import gc
import operator
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from ams_emulator import lifecycle
from ams_emulator.clock import Clock
from ams_emulator.entities import (
    JOB_ID_PREFIX,
    MAX_JOB_NAME_LENGTH,
    MAX_TASKS_PER_JOB,
    MEDIA_PROCESSORS,
    MES_PROCESSOR_ID,
    TASK_ID_PREFIX,
    EmuJob,
    EmuMediaProcessor,
    EmuReservedUnitType,
    EmuTask,
    JobState,
    ReservedUnitType,
    canonical_guid,
    new_guid,
    queued_job,
    queued_task,
)
from ams_emulator.filter_parser import Predicate
from ams_emulator.query import MAX_PAGE, OrderKey, QueryOptions
from ams_emulator.scenario import Scenario, ScenarioConfig

E = TypeVar("E", EmuJob, EmuTask, EmuMediaProcessor, EmuReservedUnitType)
FREEZE_THRESHOLD = 10_000
"""Populations at least this large are frozen out of the garbage collector's sight."""
MATCH_CACHE_SIZE = 8
"""Distinct (entity set, $filter, $orderby) queries whose ordered matches are remembered."""

_CacheKey = tuple[str, str | None, tuple[tuple[str, bool], ...]]


class _SortedById:
    """Entities kept in Id order (the default order of every answer), with a parallel key list."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.items: list[Any] = []

    def insert(self, item: EmuJob | EmuTask) -> None:
        pos = bisect.bisect_left(self.ids, item.id)
        self.ids.insert(pos, item.id)
        self.items.insert(pos, item)

    def remove(self, item_id: str) -> None:
        pos = bisect.bisect_left(self.ids, item_id)
        if pos < len(self.ids) and self.ids[pos] == item_id:
            del self.ids[pos]
            del self.items[pos]

    def keep(self, wanted: Mapping[str, Any]) -> None:
        """Drop every item whose Id is not in ``wanted``, keeping the order."""
        self.items = [item for item in self.items if item.id in wanted]
        self.ids = [item.id for item in self.items]

    def rebuild(self, items: Iterable[EmuJob | EmuTask]) -> None:
        self.items = sorted(items, key=lambda item: item.id)
        self.ids = [item.id for item in self.items]


class _Index:
    """The population as the scenario sees it (``scenario.Population``), with the Id-ordered
    lists that queries walk. In bulk mode (initial generation) ordering is deferred."""

    def __init__(self) -> None:
        self.jobs: dict[str, EmuJob] = {}
        self.tasks: dict[str, EmuTask] = {}
        self.job_order = _SortedById()
        self.task_order = _SortedById()
        self.bulk = False

    def add(self, job: EmuJob) -> None:
        if job.id in self.jobs:
            raise ValueError(f"a job with Id {job.id!r} already exists")
        self.jobs[job.id] = job
        for task in job.tasks:
            self.tasks[task.id] = task
        if not self.bulk:
            self.job_order.insert(job)
            for task in job.tasks:
                self.task_order.insert(task)

    def remove(self, job_id: str) -> None:
        job = self.jobs.pop(job_id)
        self.job_order.remove(job_id)
        for task in job.tasks:
            del self.tasks[task.id]
            self.task_order.remove(task.id)

    def remove_many(self, job_ids: list[str]) -> None:
        """Remove several jobs; many at once (a long clock jump) rebuild the order in one pass."""
        if len(job_ids) < 64:
            for job_id in job_ids:
                self.remove(job_id)
            return
        for job_id in job_ids:
            for task in self.jobs.pop(job_id).tasks:
                del self.tasks[task.id]
        self.job_order.keep(self.jobs)
        self.task_order.keep(self.tasks)

    def get(self, job_id: str) -> EmuJob | None:
        return self.jobs.get(job_id)

    def end_bulk(self) -> None:
        self.bulk = False
        self.job_order.rebuild(self.jobs.values())
        self.task_order.rebuild(self.tasks.values())


def _page_size(options: QueryOptions) -> int:
    return MAX_PAGE if options.top is None else min(options.top, MAX_PAGE)


def _null_first(attr: str) -> Callable[[Any], tuple[bool, Any]]:
    """A sort key putting nulls before every value (ascending), as OData orders them."""
    get = operator.attrgetter(attr)

    def key(item: Any) -> tuple[bool, Any]:
        value = get(item)
        return (value is not None, value)

    return key


def _candidates(items: Sequence[E], by_id: Mapping[str, E], options: QueryOptions) -> Sequence[E]:
    """What a query has to look at: everything, or only the Ids its filter pins."""
    keys = options.filter.keys if options.filter is not None else None
    if keys is None:
        return items
    return sorted((by_id[key] for key in keys if key in by_id), key=lambda item: item.id)


def _sorted_matches(
    items: Iterable[E], matches: Predicate | None, orderby: Sequence[OrderKey]
) -> list[E]:
    """Every match, in ``$orderby`` order; the items' own (Id) order breaks ties."""
    found = [item for item in items if matches is None or matches(item)]
    # Stable sorts from the last key to the first.
    for key in reversed(orderby):
        found.sort(key=_null_first(key.prop.attr), reverse=key.descending)
    return found


def _ordered_matches(
    items: Sequence[E], by_id: Mapping[str, E], options: QueryOptions
) -> Sequence[E]:
    """Every item of ``items`` (in Id order, indexed by ``by_id``) matching the filter, in the
    query's order."""
    items = _candidates(items, by_id, options)
    matches = options.filter.matches if options.filter is not None else None
    if options.orderby:
        return _sorted_matches(items, matches, options.orderby)
    if matches is None:
        return items
    return [item for item in items if matches(item)]


def _page(found: Sequence[E], options: QueryOptions, copy: Callable[[E], E]) -> list[E]:
    """Copies of the page ``$skip``/``$top`` asks for (at most 1000) out of ordered matches."""
    size = _page_size(options)
    return [copy(item) for item in found[options.skip : options.skip + size]]


def _select(items: Sequence[E], options: QueryOptions, copy: Callable[[E], E]) -> list[E]:
    """Filter, order, skip and take over ``items`` (in Id order), without the cache: a job's own
    tasks, the few media processors, the one reserved units entity."""
    if _page_size(options) == 0:
        return []
    by_id = {item.id: item for item in items}
    return _page(_ordered_matches(items, by_id, options), options, copy)


def _same(item: E) -> E:
    """The "copy" of an immutable entity."""
    return item


def _processor_ids(given: str | Sequence[str] | None, tasks: int) -> list[str]:
    """The MediaProcessorId of each of a new job's ``tasks`` tasks (MES when none is given)."""
    if given is None:
        return [MES_PROCESSOR_ID] * tasks
    ids = [given] * tasks if isinstance(given, str) else list(given)
    if len(ids) != tasks:
        raise ValueError(f"media_processor_id names {len(ids)} processor(s) for {tasks} task(s)")
    for processor_id in ids:
        if not isinstance(processor_id, str) or not processor_id:
            raise ValueError(f"a MediaProcessorId is a non-empty string, not {processor_id!r}")
    return ids


class _MatchCache:
    """Ordered matches of the latest queries, valid for one version of the store.

    Holds references to the live entities, not copies: a version says that no entity changed
    since, and a new version empties the cache. Not thread-safe: used under the store's lock.
    """

    def __init__(self, size: int = MATCH_CACHE_SIZE) -> None:
        self._size = size
        self._version = -1
        self._entries: OrderedDict[_CacheKey, Sequence[Any]] = OrderedDict()

    def get(self, key: _CacheKey, version: int) -> Sequence[Any] | None:
        if version != self._version:
            self._entries.clear()
            self._version = version
            return None
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: _CacheKey, version: int, found: Sequence[Any]) -> None:
        if version != self._version:
            self._entries.clear()
            self._version = version
        self._entries[key] = found
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _cache_key(entity_set: str, options: QueryOptions) -> _CacheKey | None:
    """The key of a query's ordered matches, or None when there is nothing worth remembering:
    no filter and no order (the page is a slice of the Id-ordered list), or a filter pinning Ids
    (a handful of candidates)."""
    flt = options.filter
    if flt is None and not options.orderby:
        return None
    if flt is not None and flt.keys is not None:
        return None
    order = tuple((key.prop.attr, key.descending) for key in options.orderby)
    return (entity_set, flt.text if flt is not None else None, order)


class JobStore:
    """Thread-safe job store over a living scenario."""

    def __init__(self, config: ScenarioConfig, clock: Clock) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._config = config
        self._index = _Index()
        self._scenario = Scenario(config, self._index, clock.now())
        self._populate()
        self._version = 0  # bumped by every change to the population (see _changed)
        self._matches = _MatchCache()
        self._manual_rng = random.Random(f"{config.seed}/manual")
        self._account_id = new_guid(random.Random(f"{config.seed}/account"))
        self._processors = {processor.id: processor for processor in MEDIA_PROCESSORS}

    def _populate(self) -> None:
        """Generate the starting population.

        The cyclic garbage collector is paused meanwhile: a large population creates about a
        million objects and none of them is garbage, so collections would only cost time (a
        third of the generation time of 100,000 jobs). A large population is then moved out of
        the collector's sight (``gc.freeze``): otherwise the next three collections would walk
        it all again, and every full collection after them. The entities hold no reference
        cycles, so reference counting still frees them when retention deletes them.
        """
        self._index.bulk = True
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._scenario.populate()
            self._index.end_bulk()
            if self._config.jobs >= FREEZE_THRESHOLD:
                gc.freeze()
        finally:
            if was_enabled:
                gc.enable()

    @property
    def config(self) -> ScenarioConfig:
        """The scenario as it runs now: the one generated from, with the slots (reserved units)
        :meth:`set_reserved_units` gave since."""
        with self._lock:
            return self._scenario.config

    def _advance(self) -> datetime:
        now = self._clock.now()
        if self._scenario.advance(now):
            self._changed()
        return now

    def _changed(self) -> None:
        """Something in the population changed: remembered query matches no longer hold."""
        self._version += 1

    def _query(
        self,
        entity_set: str,
        items: Sequence[E],
        by_id: Mapping[str, E],
        options: QueryOptions,
        copy: Callable[[E], E],
    ) -> list[E]:
        """A page of ``items`` (Id order) through the match cache, each item ``copy``-ed; under
        the lock."""
        if _page_size(options) == 0:
            return []
        key = _cache_key(entity_set, options)
        if key is None:
            return _page(_ordered_matches(items, by_id, options), options, copy)
        found = self._matches.get(key, self._version)
        if found is None:
            found = _ordered_matches(items, by_id, options)
            self._matches.put(key, self._version, found)
        return _page(found, options, copy)

    # -- queries --------------------------------------------------------------------------------

    def list_jobs(self, options: QueryOptions) -> list[EmuJob]:
        """Jobs matching ``options``: filtered, ordered (default by Id), skip/top, at most 1000.

        The copies have no tasks (``tasks`` is empty), as a Jobs answer shows none: ask
        :meth:`list_tasks`, :meth:`get_job` or :meth:`snapshot` for them.
        """
        with self._lock:
            self._advance()
            index = self._index
            return self._query(
                "Jobs", index.job_order.items, index.jobs, options, EmuJob.copy_without_tasks
            )

    def get_job(self, job_id: str) -> EmuJob | None:
        """A copy of one job, or None."""
        with self._lock:
            self._advance()
            job = self._index.jobs.get(job_id)
            return job.copy() if job is not None else None

    def list_tasks(self, options: QueryOptions, job_id: str | None = None) -> list[EmuTask]:
        """Tasks matching ``options``, of one job or of all jobs.

        Raises ``KeyError`` when ``job_id`` names no job (the service answers 404).
        """
        with self._lock:
            self._advance()
            if job_id is None:
                return self._query(
                    "Tasks", self._index.task_order.items, self._index.tasks, options, EmuTask.copy
                )
            job = self._index.jobs.get(job_id)
            if job is None:
                raise KeyError(f"no job with Id {job_id!r}")
            return _select(sorted(job.tasks, key=lambda task: task.id), options, EmuTask.copy)

    def get_task(self, task_id: str) -> EmuTask | None:
        """A copy of one task, or None."""
        with self._lock:
            self._advance()
            task = self._index.tasks.get(task_id)
            return task.copy() if task is not None else None

    def snapshot(self) -> list[EmuJob]:
        """Deep copies of every job, in Id order (for tests)."""
        with self._lock:
            self._advance()
            return [job.copy() for job in self._index.job_order.items]

    def count(self) -> int:
        """How many jobs the account holds now."""
        with self._lock:
            self._advance()
            return len(self._index.jobs)

    def _reserved_units(self) -> EmuReservedUnitType:
        config = self._scenario.config
        return EmuReservedUnitType(
            account_id=self._account_id,
            reserved_unit_type=int(config.reserved_unit_type),
            current_reserved_units=config.slots,
            max_reservable_units=config.reservable_units,
        )

    def reserved_units(self) -> EmuReservedUnitType:
        """The account's ``EncodingReservedUnitTypes`` entity as it is now."""
        with self._lock:
            self._advance()
            return self._reserved_units()

    def list_reserved_unit_types(self, options: QueryOptions) -> list[EmuReservedUnitType]:
        """The ``EncodingReservedUnitTypes`` set (the account's one entity) through ``options``."""
        with self._lock:
            self._advance()
            return _select([self._reserved_units()], options, _same)

    def get_reserved_unit_type(self, account_id: str) -> EmuReservedUnitType | None:
        """The entity keyed ``account_id`` (a GUID, in any case), or None."""
        with self._lock:
            self._advance()
            found = self._reserved_units()
            return found if canonical_guid(account_id) == found.account_id else None

    def _processors_by_id(self) -> list[EmuMediaProcessor]:
        return sorted(self._processors.values(), key=lambda processor: processor.id)

    def media_processors(self) -> list[EmuMediaProcessor]:
        """Every media processor the account lists now, in Id order."""
        with self._lock:
            self._advance()
            return self._processors_by_id()

    def list_media_processors(self, options: QueryOptions) -> list[EmuMediaProcessor]:
        """The ``MediaProcessors`` set through ``options`` (default order: by Id)."""
        with self._lock:
            self._advance()
            return _select(self._processors_by_id(), options, _same)

    def get_media_processor(self, processor_id: str) -> EmuMediaProcessor | None:
        with self._lock:
            self._advance()
            return self._processors.get(processor_id)

    # -- test controls --------------------------------------------------------------------------

    def _job(self, job_id: str) -> EmuJob:
        job = self._index.jobs.get(job_id)
        if job is None:
            raise KeyError(f"no job with Id {job_id!r}")
        return job

    def add_job(
        self,
        *,
        name: str | None,
        state: JobState | int = JobState.QUEUED,
        created: datetime | None = None,
        priority: int = 0,
        tasks: int = 1,
        progress: float | None = None,
        error_code: str | None = None,
        template_id: str | None = None,
        job_id: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        running_duration_ms: float | None = None,
        media_processor_id: str | Sequence[str] | None = None,
    ) -> str:
        """Add a job that only tests move (the scenario leaves it alone); returns its Id.

        ``progress`` sets the running task's Progress of a Processing job; ``error_code`` the
        ErrorDetails code of an Error job (default ErrorProcessingTask). ``start_time``,
        ``end_time`` and ``running_duration_ms`` replace what the state would set (the clock's
        time, and 90 % of the wall time), so that a test knows every value exactly; given
        datetimes keep their microseconds. ``media_processor_id`` is the MediaProcessorId of every
        task, or a sequence of one per task (default MES); it need not be listed, as a task can
        name a processor the account no longer lists.
        """
        target = _checked_state(state)
        _check_new_job(name, created, tasks, progress, target)
        processor_ids = _processor_ids(media_processor_id, tasks)
        times = _Times(created, start_time, end_time, running_duration_ms)
        times.check(target)
        lifecycle.check_error_code(target, error_code)
        with self._lock:
            now = self._advance()
            new_id = job_id or JOB_ID_PREFIX + new_guid(self._manual_rng)
            if not new_id.startswith(JOB_ID_PREFIX) or new_id in self._index.jobs:
                raise ValueError(f"job Id {new_id!r} must start {JOB_ID_PREFIX!r} and be unique")
            when = times.created_or(now)
            job = queued_job(new_id, name, when, priority, template_id)
            job.tasks = [self._new_task(job, i, pid) for i, pid in enumerate(processor_ids)]
            lifecycle.force_state(job, target, max(when, now).timestamp(), error_code)
            if progress is not None:
                job.tasks[0].progress = float(progress)
            times.apply(job)
            self._scenario.adopt(job)
            self._changed()
            return new_id

    def _new_task(self, job: EmuJob, index: int, processor_id: str) -> EmuTask:
        task_id = TASK_ID_PREFIX + new_guid(self._manual_rng)
        name, configuration = f"Task {index + 1}", "Adaptive Streaming"
        return queued_task(job, task_id, name, configuration, media_processor_id=processor_id)

    def set_job_state(
        self, job_id: str, state: JobState | int, error_code: str | None = None
    ) -> None:
        """Force a job (and its tasks) into ``state``; the scenario stops driving it.

        Error fails the first unfinished task with ``error_code`` (a documented code).
        """
        target = _checked_state(state)
        lifecycle.check_error_code(target, error_code)
        with self._lock:
            now = self._advance()
            job = self._job(job_id)
            self._scenario.release(job_id)
            lifecycle.force_state(job, target, now.timestamp(), error_code)
            self._changed()

    def set_task_progress(self, job_id: str, task_index: int, progress: float) -> None:
        """Set one task's Progress (0-100); the scenario stops driving the job."""
        if not 0.0 <= progress <= 100.0:
            raise ValueError(f"progress must be within 0..100, got {progress!r}")
        with self._lock:
            self._advance()
            job = self._job(job_id)
            if not 0 <= task_index < len(job.tasks):
                raise IndexError(
                    f"job {job_id!r} has {len(job.tasks)} task(s); no task index {task_index}"
                )
            self._scenario.release(job_id)
            job.tasks[task_index].progress = float(progress)
            self._changed()

    def delete_job(self, job_id: str) -> None:
        """Remove a job and its tasks."""
        with self._lock:
            self._advance()
            self._job(job_id)
            self._scenario.release(job_id)
            self._index.remove(job_id)
            self._changed()

    def set_reserved_units(
        self, units: int, reserved_unit_type: ReservedUnitType | int | None = None
    ) -> None:
        """Reserve ``units`` encoding units (``CurrentReservedUnits``), of ``reserved_unit_type``
        if given: from now on that many jobs hold a slot at once (see
        :meth:`Scenario.reserve_units`). At most ``MaxReservableUnits``, at least 1."""
        with self._lock:
            self._advance()
            config = self._scenario.config
            unit_type = (
                config.reserved_unit_type if reserved_unit_type is None else reserved_unit_type
            )
            if unit_type not in tuple(ReservedUnitType):
                raise ValueError(
                    f"reserved unit type must be 0 (S1), 1 (S2) or 2 (S3), got {unit_type!r}"
                )
            if not isinstance(units, int) or not 1 <= units <= config.reservable_units:
                raise ValueError(
                    f"reserved units must be within 1..{config.reservable_units} "
                    f"(MaxReservableUnits), got {units!r}"
                )
            self._scenario.reserve_units(units, int(unit_type))
            self._changed()

    def add_media_processor(self, processor: EmuMediaProcessor) -> None:
        """List one more media processor; its Id must be new."""
        if not processor.id:
            raise ValueError("a media processor needs an Id")
        with self._lock:
            self._advance()
            if processor.id in self._processors:
                raise ValueError(f"a media processor with Id {processor.id!r} is already listed")
            self._processors[processor.id] = processor
            self._changed()

    def remove_media_processor(self, processor_id: str) -> None:
        """Stop listing a media processor; tasks that name it keep its Id."""
        with self._lock:
            self._advance()
            if self._processors.pop(processor_id, None) is None:
                raise KeyError(f"no media processor with Id {processor_id!r}")
            self._changed()


@dataclass(frozen=True, slots=True)
class _Times:
    """The times a test gives ``add_job``: checked against the state, then applied."""

    created: datetime | None
    start: datetime | None
    end: datetime | None
    running_duration_ms: float | None

    def check(self, state: JobState) -> None:
        for label, value in (("start_time", self.start), ("end_time", self.end)):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{label} must be an aware datetime")
        if self.start is not None and state in (JobState.QUEUED, JobState.SCHEDULED):
            raise ValueError(f"a {state.name} job has not started; it takes no start_time")
        if (self.end is not None or self.running_duration_ms is not None) and not state.is_final:
            raise ValueError(
                f"end_time and running_duration_ms are set when a job ends, not for {state.name}"
            )
        if self.running_duration_ms is not None and not self.running_duration_ms >= 0:
            raise ValueError(f"running_duration_ms must be >= 0, got {self.running_duration_ms}")
        stamps = [t for t in (self.created, self.start, self.end) if t is not None]
        if stamps != sorted(stamps):
            raise ValueError("need created <= start_time <= end_time")

    def created_or(self, now: datetime) -> datetime:
        """``created``, or the clock's time - but not after a given start or end time."""
        if self.created is not None:
            return self.created.astimezone(timezone.utc)
        given = [t.astimezone(timezone.utc) for t in (self.start, self.end) if t is not None]
        return min([lifecycle.at_ms(now.timestamp()), *given])

    def apply(self, job: EmuJob) -> None:
        if self.start is not None:
            job.start_time = self.start.astimezone(timezone.utc)
            for task in job.tasks:
                if task.start_time is not None:
                    task.start_time = job.start_time
        if self.end is not None:
            job.end_time = job.last_modified = self.end.astimezone(timezone.utc)
            for task in job.tasks:
                if task.end_time is not None:
                    task.end_time = job.end_time
        if self.running_duration_ms is not None:
            job.running_duration_ms = float(self.running_duration_ms)
        elif job.start_time is not None and job.end_time is not None:
            wall = (job.end_time - job.start_time).total_seconds()
            job.running_duration_ms = lifecycle.running_ms(wall, lifecycle.DEFAULT_FACTOR)


def _checked_state(state: JobState | int) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        raise ValueError(f"job state must be 0-6 (JobState), got {state!r}") from None


def _check_new_job(
    name: str | None,
    created: datetime | None,
    tasks: int,
    progress: float | None,
    state: JobState,
) -> None:
    if name is not None and len(name) > MAX_JOB_NAME_LENGTH:
        raise ValueError(
            f"a job name has at most {MAX_JOB_NAME_LENGTH} characters, got {len(name)}"
        )
    if created is not None and created.tzinfo is None:
        raise ValueError("created must be an aware datetime")
    if not 1 <= tasks <= MAX_TASKS_PER_JOB:
        raise ValueError(f"a job has 1 to {MAX_TASKS_PER_JOB} tasks, got {tasks}")
    if progress is not None:
        if state != JobState.PROCESSING:
            raise ValueError(f"progress only goes with state PROCESSING, not {state.name}")
        if not 0.0 <= progress <= 100.0:
            raise ValueError(f"progress must be within 0..100, got {progress!r}")
