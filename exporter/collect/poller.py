"""Collecting the configured accounts, shared by the callers that arrive while a collection runs.

``AccountPoller`` collects one account: it lists the in-scope jobs, fetches the tasks of the jobs that
need them and remembers what never changes (tasks of jobs in Error, final jobs). Between two full
listings (``jobs.full_listing_interval``) it lists only what can have changed since the previous
listing: the active jobs, and the jobs modified since then (:meth:`AccountPoller._list_changes`).
``Poller`` runs the accounts concurrently; each account's collection in flight is shared by every
caller meanwhile (several
Prometheus replicas, a probe of that account, a status-page refresh) instead of multiplying upstream
load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from exporter.ams.client import AmsClient, Unreadable
from exporter.ams.model import ACTIVE_STATES, Job, JobState, Task
from exporter.ams.scope import in_scope, server_filters
from exporter.collect.capacity import Capacity
from exporter.collect.history import JobHistory
from exporter.collect.history_file import HistoryFile
from exporter.collect.jobview import TASKS_READ_IN
from exporter.collect.snapshot import AccountResult, Collection
from exporter.config.model import AccountConfig
from exporter.deadline import Deadline
from exporter.errors import AmsApiError, ExporterError
from exporter.redact import redact

log = logging.getLogger(__name__)

# Jobs whose tasks are fetched on every collection: the only states in which tasks move.
# Queued and Scheduled jobs have not started (Progress 0); final jobs never change.

# Time a collection may overrun its own deadline before its callers stop waiting for it (never
# past a caller's deadline).
GRACE_SECONDS = 0.25

# How far before the previous listing a changes listing reaches back by LastModified: the clocks of
# AMS and of this host may differ by this much, and a job modified while the previous listing was
# paging is listed again.
CHANGES_OVERLAP_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class _Listing:
    """The in-scope jobs of one account and those of them that get per-job series."""

    in_scope: list[Job]
    exported: list[Job]
    counts: dict[JobState, int]
    dropped: int


class AccountPoller:
    """Collects one account; keeps the per-account memory between collections."""

    def __init__(
        self,
        config: AccountConfig,
        client: AmsClient,
        wall_clock: Callable[[], float] = time.time,
        *,
        history: JobHistory | None = None,
        history_file: HistoryFile | None = None,
    ) -> None:
        self.config = config
        self._client = client
        self.history = history or JobHistory(config.jobs, wall_clock())
        self.history_file = history_file
        self.capacity = Capacity(config.name, config.jobs.capacity_interval)
        self._wall_clock = wall_clock
        self._dates_in_filter = True
        self._selection_refused = False
        # The in-scope jobs of the last complete listing, by Id, and when (this host's clock) that
        # listing and the last full one started; None: the next listing is a full one.
        self._listed: dict[str, Job] | None = None
        self._listed_at = 0.0
        self._full_listed_at = 0.0
        self._full_wanted = threading.Event()
        self._final_tasks: dict[str, tuple[Task, ...]] = {}
        # The unreadable tasks of those jobs: counted again in every collection that reuses them.
        self._final_unreadable: dict[str, list[tuple[str, str]]] = {}
        self._last_success: float | None = None
        self._last_error: str | None = None
        self._failures_since_success = 0
        self._running_since = 0.0
        self._lock = threading.Lock()

    @property
    def last_success(self) -> float | None:
        """Wall-clock end of the last fully successful collection."""
        return self._last_success

    @property
    def failures_since_success(self) -> int:
        """Collections that failed since the last success (or since start)."""
        return self._failures_since_success

    def collect(self, deadline: Deadline) -> AccountResult:
        """Collect the account once; never raises (upstream trouble is ``up == 0``)."""
        if not self._lock.acquire(blocking=False):
            running = time.monotonic() - self._running_since
            return self._failure(
                running,
                f"the previous collection of this account is still running ({running:.1f} s)",
            )
        self._running_since = time.monotonic()
        try:
            return self._collect(deadline)
        except Exception as error:
            # A bug must cost this account one collection, not the exporter its /metrics.
            log.exception("collection of account %s failed unexpectedly", self.config.name)
            return self._failure(
                time.monotonic() - self._running_since, f"internal error: {type(error).__name__}"
            )
        finally:
            self._lock.release()

    def close(self) -> None:
        """Release the account's connections."""
        self._client.close()

    def list_everything_next(self) -> None:
        """Make the next collection list every in-scope job (after a reload, for one).

        A collection that has already started its listing is not affected: the one after it is.
        """
        self._full_wanted.set()

    def _collect(self, deadline: Deadline) -> AccountResult:
        started = time.monotonic()
        now = self._wall_clock()
        unreadable = Unreadable()
        try:
            listing = self._list(now, deadline, unreadable)
        except ExporterError as error:
            return self._failure(time.monotonic() - started, str(error))
        tasks, task_error = self._tasks(listing.exported, deadline, unreadable)
        self._count_history(listing.in_scope, tasks, deadline, now)
        named = {task.media_processor_id for owned in tasks.values() for task in owned}
        self.capacity.refresh(self._client, named, deadline, processors=self.config.jobs.tasks)
        duration = time.monotonic() - started
        if task_error is None:
            self._last_success = self._wall_clock()
        self._note_outcome(task_error)
        return AccountResult(
            account=self.config.name,
            up=task_error is None,
            duration_seconds=duration,
            last_success=self._last_success,
            error=task_error,
            jobs=tuple(listing.exported),
            tasks=tasks,
            state_counts=listing.counts,
            dropped=listing.dropped,
            unreadable=unreadable.counts(),
            history=self.history.snapshot,
            groups={job.id: self.history.group_of(job) for job in listing.exported},
            reserved_units=self.capacity.units,
            processors=self.capacity.processors,
        )

    def _count_history(
        self,
        jobs: Sequence[Job],
        tasks: dict[str, tuple[Task, ...]],
        deadline: Deadline,
        now: float,
    ) -> None:
        """Count what the listing shows for the first time, and keep it in the history file.

        Jobs in Error beyond ``max_jobs`` have no tasks read for their series; theirs are read
        here, once, for ``ams_job_errors_total``. A failure to read them only defers their codes.
        """
        history = self.history
        with history.lock:
            seen: dict[str, Sequence[Task]] = dict(tasks)
            wanted = []
            if self.config.jobs.tasks:  # else no codes: nothing to scan the listing for
                wanted = [job_id for job_id in history.codes_wanted(jobs) if job_id not in tasks]
            if wanted:
                fetched = self._client.list_tasks_many(wanted, deadline, Unreadable())
                for job_id, outcome in fetched.items():
                    if not isinstance(outcome, ExporterError):
                        seen[job_id] = tuple(outcome)
            changed = history.observe(jobs, seen, now)
            if changed and self.history_file is not None:
                self.history_file.save(history.state)

    def _failure(self, duration: float, message: str) -> AccountResult:
        self._note_outcome(message)
        return AccountResult(
            account=self.config.name,
            up=False,
            duration_seconds=duration,
            last_success=self._last_success,
            error=message,
            history=self.history.snapshot,
            reserved_units=self.capacity.units,
        )

    def _note_outcome(self, error: str | None) -> None:
        """Log the first error of an episode, and the recovery that ends it.

        Within an episode the text may change (AMS words its 503s in several ways, the deadline
        strikes at another step): such changes go to the debug log, not a warning per scrape.
        """
        failures = self._failures_since_success
        self._failures_since_success = 0 if error is None else failures + 1
        if error is not None and self._last_error is None:
            log.warning("collection of account %s failed: %s", self.config.name, error)
        elif error is not None and error != self._last_error:
            log.debug("collection of account %s still failing: %s", self.config.name, error)
        elif error is None and self._last_error is not None:
            log.info(
                "collection of account %s succeeded again after %d failed collection(s)",
                self.config.name,
                failures,
            )
        self._last_error = error

    def _list(self, now: float, deadline: Deadline, unreadable: Unreadable) -> _Listing:
        jobs_config = self.config.jobs
        previous, self._listed = self._listed, None  # None until this listing is complete
        if self._full_wanted.is_set():
            self._full_wanted.clear()
            previous = None
        since = None if previous is None else self._changes_since(now)
        jobs = None
        if previous is not None and since is not None:
            try:
                jobs = self._list_changes(previous, now, since, deadline, unreadable)
            except AmsApiError as error:
                if error.status != 400:
                    raise
                # The date literal may be refused from now on: the full listing finds out.
                since = None
        if jobs is None:
            jobs = self._list_jobs(now, deadline, unreadable)
        in_scope_jobs = [job for job in jobs if in_scope(job, jobs_config, now)]
        log.debug(
            "account %s: %s listing, %d jobs in scope",
            self.config.name,
            "full" if since is None else "changes",
            len(in_scope_jobs),
        )
        if self._dates_in_filter and unreadable.counts()["job"] == 0:
            # Complete: the next listing may ask only for what changed since this one.
            self._listed = {job.id: job for job in in_scope_jobs}
            self._listed_at = now
            if since is None:
                self._full_listed_at = now
        counts = dict.fromkeys(JobState, 0)
        for job in in_scope_jobs:
            counts[job.state] += 1
        exported = _most_relevant(in_scope_jobs, jobs_config.max_jobs)
        return _Listing(in_scope_jobs, exported, counts, len(in_scope_jobs) - len(exported))

    def _changes_since(self, now: float) -> float | None:
        """Where a changes listing would start, or ``None`` when this listing must be a full one.

        Besides when there is no complete previous listing (the first collection, after a
        failed or partial listing, after a reload), it is full when ``full_listing_interval`` has
        passed since the last full one, when AMS refused the date literal (every listing then
        lists everything anyway) and when this host's clock went back.
        """
        jobs = self.config.jobs
        if not self._dates_in_filter or jobs.finished_window <= 0:
            return None
        if not self._full_listed_at <= self._listed_at <= now:
            return None
        if now - self._full_listed_at >= jobs.full_listing_interval:
            return None
        return self._listed_at - CHANGES_OVERLAP_SECONDS

    def _list_changes(
        self,
        previous: dict[str, Job],
        now: float,
        since: float,
        deadline: Deadline,
        unreadable: Unreadable,
    ) -> list[Job]:
        """The jobs of the previous listing, updated by what changed since ``since``.

        Listed again: every active job, and every job modified at or after ``since`` (a job is
        modified when it ends, and created jobs are new). A final job of the previous listing
        that is not listed again cannot have changed: it is kept until it leaves
        ``finished_window`` by this host's clock (or, deleted upstream, until the next full
        listing). An active job that is not listed again no longer exists.
        """
        filters = server_filters(self.config.jobs, now, since=since)
        fresh = self._list_filtered(filters, deadline, unreadable, "changes")
        merged: dict[str, Job] = {}
        for job_id, job in previous.items():
            listed = fresh.pop(job_id, None)
            if listed is not None:
                merged[job_id] = listed
            elif job.state.is_final:
                merged[job_id] = job
        merged.update(fresh)
        return list(merged.values())

    def _list_jobs(self, now: float, deadline: Deadline, unreadable: Unreadable) -> list[Job]:
        jobs_config = self.config.jobs
        if not self._dates_in_filter:
            filters = server_filters(jobs_config, now, with_dates=False)
            return list(self._list_filtered(filters, deadline, unreadable).values())
        try:
            filters = server_filters(jobs_config, now)
            return list(self._list_filtered(filters, deadline, unreadable).values())
        except AmsApiError as error:
            if error.status != 400 or self._selection_refused:
                raise
            return self._list_without_dates(now, deadline, error, unreadable)

    def _list_without_dates(
        self, now: float, deadline: Deadline, refusal: AmsApiError, unreadable: Unreadable
    ) -> list[Job]:
        """After a 400: try without the date part, to learn which part AMS refused."""
        try:
            jobs = self._list_filtered(
                server_filters(self.config.jobs, now, with_dates=False), deadline, unreadable
            )
        except AmsApiError as error:
            if error.status == 400:
                # The account's own ids/name_prefix/filter are refused; they never change, so
                # later collections do not ask twice.
                self._selection_refused = True
            raise
        self._dates_in_filter = False
        log.warning(
            "account %s: AMS refused a datetime literal in $filter (%s); finished jobs are "
            "now selected by the exporter instead, which lists more jobs per collection",
            self.config.name,
            refusal.upstream_message,
        )
        return list(jobs.values())

    def _list_filtered(
        self,
        filters: Sequence[str | None],
        deadline: Deadline,
        unreadable: Unreadable,
        kind: str = "full",
    ) -> dict[str, Job]:
        """The jobs of the listings of ``filters``, by Id (the first listing that returns one)."""
        seen: dict[str, Job] = {}
        for odata_filter in filters:
            for job in self._client.list_jobs(odata_filter, deadline, unreadable, kind=kind):
                seen.setdefault(job.id, job)
        return seen

    def _tasks(
        self, jobs: Sequence[Job], deadline: Deadline, unreadable: Unreadable
    ) -> tuple[dict[str, tuple[Task, ...]], str | None]:
        """Tasks of the exported jobs that need them, and the first error met fetching them."""
        if not self.config.jobs.tasks:
            return {}, None
        known = {job.id: self._final_tasks[job.id] for job in jobs if job.id in self._final_tasks}
        for job_id in known:
            for kind, key in self._final_unreadable.get(job_id, ()):
                unreadable.add(kind, key, job_id)
        wanted = [job.id for job in jobs if job.state in TASKS_READ_IN and job.id not in known]
        fetched = self._client.list_tasks_many(wanted, deadline, unreadable) if wanted else {}
        first_error: str | None = None
        tasks = dict(known)
        for job_id, outcome in fetched.items():
            if isinstance(outcome, ExporterError):
                first_error = first_error or f"tasks of job {job_id}: {outcome}"
                continue
            tasks[job_id] = tuple(outcome)
        self._remember_final_tasks(jobs, tasks, unreadable)
        return tasks, first_error

    def _remember_final_tasks(
        self, jobs: Sequence[Job], tasks: dict[str, tuple[Task, ...]], unreadable: Unreadable
    ) -> None:
        """Keep the tasks of exported jobs in Error; forget jobs that left the scope."""
        self._final_tasks = {
            job.id: tasks[job.id] for job in jobs if job.state is JobState.ERROR and job.id in tasks
        }
        self._final_unreadable = {
            job_id: owned for job_id in self._final_tasks if (owned := unreadable.owned_by(job_id))
        }


def _most_relevant(jobs: list[Job], limit: int) -> list[Job]:
    """At most ``limit`` jobs: active ones first (oldest first), then final ones, newest end first."""
    if len(jobs) <= limit:
        return jobs
    active = sorted((job for job in jobs if job.state in ACTIVE_STATES), key=lambda j: j.created)
    final = sorted(
        (job for job in jobs if job.state not in ACTIVE_STATES),
        key=lambda j: (j.state is not JobState.ERROR, -(j.end_time or j.last_modified)),
    )
    return (active + final)[:limit]


@dataclass(frozen=True)
class _Flight:
    """One account's collection: started once, joined by every caller while it runs."""

    poller: AccountPoller
    time: float  # the wall clock when it started: the "now" its job ages are measured at
    started: float  # time.monotonic() when it started
    own: Deadline  # the account's own timeout, whoever started the collection
    future: Future[AccountResult]


@dataclass(frozen=True)
class _Landed:
    """An account's latest finished collection."""

    flight: _Flight
    result: AccountResult
    at: float  # time.monotonic() when it finished


class Poller:
    """Collects accounts concurrently; callers share each account's collection in flight.

    A caller waits for each account no longer than its own deadline allows: accounts that
    finished are reported as they are, only the unfinished ones as late. An account's collection
    runs to its configured ``timeout``, whoever started it, and is shared per account: a scrape
    of every account and a probe of one join the same collection of that account.
    """

    def __init__(
        self, accounts: Sequence[AccountPoller], wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._wall_clock = wall_clock
        # Reentrant: a future that is already done runs its done-callback in the thread that
        # registers it, which holds this lock.
        self._lock = threading.RLock()
        self._accounts: dict[str, AccountPoller] = {}
        self._pool = _worker_pool(len(accounts))
        self._flights: dict[str, _Flight] = {}
        self._landed: dict[str, _Landed] = {}
        # The flights one collection of every account started, while any of them runs: a caller
        # that arrives meanwhile shares all of them, the finished ones too.
        self._round: dict[str, _Flight] = {}
        self.replace(accounts)

    @property
    def names(self) -> tuple[str, ...]:
        """The accounts' names, in configuration order."""
        return tuple(self._accounts)

    @property
    def pollers(self) -> tuple[AccountPoller, ...]:
        """The account pollers, in configuration order."""
        return tuple(self._accounts.values())

    def replace(self, accounts: Sequence[AccountPoller]) -> list[AccountPoller]:
        """Poll ``accounts`` from now on; returns the pollers dropped.

        A poller that stays (the same object) keeps its collection in flight and its latest
        result; a dropped account's latest result goes with it, and so do its series. A dropped
        poller is closed here: at once, or when its collection in flight ends (its result is not
        used), so that no collection runs on closed sessions.
        """
        with self._lock:
            wanted = {account.config.name: account for account in accounts}
            dropped = [old for name, old in self._accounts.items() if wanted.get(name) is not old]
            for old in dropped:
                flight = self._flights.pop(old.config.name, None)
                self._landed.pop(old.config.name, None)
                self._round.pop(old.config.name, None)
                if flight is None:
                    old.close()
                else:
                    flight.future.add_done_callback(_closer(old))
            if len(wanted) > len(self._accounts):
                old_pool, self._pool = self._pool, _worker_pool(len(wanted))
                old_pool.shutdown(wait=False)  # what it runs still finishes
            self._accounts = wanted
        return dropped

    @property
    def latest(self) -> Collection | None:
        """Every account's latest finished collection (for the status page); ``None`` before."""
        with self._lock:
            landed = [self._landed.get(name) for name in self._accounts]
        if not landed or any(one is None for one in landed):
            return None
        done = [one for one in landed if one is not None]
        return Collection(min(one.flight.time for one in done), tuple(one.result for one in done))

    def age_of_latest(self) -> float:
        """Seconds since the oldest of the accounts' latest collections finished (∞ before)."""
        with self._lock:
            landed = [self._landed.get(name) for name in self._accounts]
        if not landed or any(one is None for one in landed):
            return float("inf")
        return time.monotonic() - min(one.at for one in landed if one is not None)

    def unready_reason(self, max_failures: int = 3, max_age: float = 300.0) -> str | None:
        """Why the exporter is not ready, or ``None`` when it is.

        Ready means every account had a successful collection, and that success is either recent
        (``max_age`` seconds) or followed by no more than ``max_failures`` failed collections.
        """
        now = self._wall_clock()
        reasons = []
        for name, account in list(self._accounts.items()):
            last = account.last_success
            if last is None:
                reasons.append(f"account {name}: no successful collection yet")
            elif now - last > max_age and account.failures_since_success > max_failures:
                reasons.append(
                    f"account {name}: {account.failures_since_success} failed collections "
                    f"since the last success {now - last:.0f} s ago"
                )
        return redact("; ".join(reasons)) or None

    def collect(self, deadline: Deadline, arrived: float | None = None) -> Collection:
        """A fresh collection of every account; joins the ones in flight.

        ``arrived`` (``time.monotonic()``) is when the caller's request came in: a collection that
        finished after that was in flight for this caller as much as one it could have joined
        (it waited for a server worker meanwhile), so it is the answer, not a second collection.
        """
        with self._lock:
            if not self._round_running():
                self._round = {}
            flights = [self._join(name, arrived) for name in self._accounts]
            if not self._round:
                self._round = {flight.poller.config.name: flight for flight in flights}
        return self._gather(flights, deadline)

    def collect_account(
        self, name: str, deadline: Deadline, arrived: float | None = None
    ) -> Collection:
        """A fresh collection of the account ``name`` alone (see :meth:`collect`).

        Raises ``KeyError`` for a name that is not configured (see :attr:`names`).
        """
        with self._lock:
            flight = self._join(name, arrived)
        return self._gather([flight], deadline)

    def close(self) -> None:
        """Stop the worker threads and release connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for account in self._accounts.values():
            account.close()

    def _join(self, name: str, arrived: float | None) -> _Flight:
        """With the lock held: the account's collection in flight, or one that answers ``arrived``.

        A new collection runs to the account's own ``timeout``: it is shared by every caller that
        arrives meanwhile, so no caller's budget may shorten it (a scrape with a tiny
        ``X-Prometheus-Scrape-Timeout-Seconds`` would otherwise doom the collection that a patient
        caller joins). A caller's deadline bounds only how long that caller waits.
        """
        flight = self._flights.get(name) or self._round.get(name)
        if flight is not None and (name in self._flights or self._round_running()):
            return flight
        landed = self._landed.get(name)
        if landed is not None and arrived is not None and landed.at >= arrived:
            return landed.flight
        account = self._accounts[name]
        own = Deadline.after(account.config.timeout)
        future = self._pool.submit(account.collect, own)
        flight = _Flight(account, self._wall_clock(), time.monotonic(), own, future)
        self._flights[name] = flight
        future.add_done_callback(lambda _: self._land(name, flight))
        return flight

    def _round_running(self) -> bool:
        return any(not flight.future.done() for flight in self._round.values())

    def _land(self, name: str, flight: _Flight) -> None:
        with self._lock:
            if self._flights.get(name) is flight:
                del self._flights[name]
            if flight.future.cancelled() or self._accounts.get(name) is not flight.poller:
                return
            self._landed[name] = _Landed(flight, flight.future.result(), time.monotonic())

    def _gather(self, flights: Sequence[_Flight], deadline: Deadline) -> Collection:
        """The flights' results, waiting for each as long as both deadlines allow.

        The collection's time, the "now" of its job ages, is when the oldest of them started.
        """
        results = []
        for flight in flights:
            wait = min(flight.own.remaining() + GRACE_SECONDS, deadline.remaining())
            try:
                results.append(flight.future.result(timeout=wait))
            except (FutureTimeout, CancelledError):
                results.append(_late(flight.poller, time.monotonic() - flight.started))
        started = min((flight.time for flight in flights), default=self._wall_clock())
        return Collection(time=started, accounts=tuple(results))


def _closer(poller: AccountPoller) -> Callable[[Future[AccountResult]], None]:
    """A done-callback that closes ``poller`` once its last collection has ended."""

    def close(_future: Future[AccountResult]) -> None:
        poller.close()

    return close


def _worker_pool(accounts: int) -> ThreadPoolExecutor:
    # Twice the accounts: an account still busy from an overrun collection must not delay the
    # others' next collection by holding the only worker.
    return ThreadPoolExecutor(max_workers=2 * max(1, accounts), thread_name_prefix="account")


def _late(account: AccountPoller, waited: float) -> AccountResult:
    return AccountResult(
        account=account.config.name,
        up=False,
        duration_seconds=waited,
        last_success=account.last_success,
        error=f"the collection did not finish within {waited:.1f} s",
        history=account.history.snapshot,
        reserved_units=account.capacity.units,
    )
