"""The AMS v2 REST client: endpoint resolution, headers, paging, task fetches, retries, deadline.

Every request carries the headers AMS documents (``x-ms-version``, the DataServiceVersion pair, a
fresh ``x-ms-client-request-id``), is bounded by the collection's :class:`Deadline`, and is retried
with exponential back-off on transient failures (the .NET SDK's policy: 4 retries from 100 ms to
1.6 s), honouring ``Retry-After`` and never sleeping past the deadline. A 401 drops the token and
retries once. Paging follows the documented ``$top=1000``/``$skip`` loop; once the first page is
full, later pages are fetched a few at a time so that network latency overlaps.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote as url_quote
from urllib.parse import urljoin, urlsplit

import requests

from exporter.ams import odata
from exporter.ams.auth import TokenProvider
from exporter.ams.http import BodyTooLarge, UpstreamSession, transport_reason
from exporter.ams.model import ENTITY_KINDS, Job, MediaProcessor, ReservedUnits, Task
from exporter.config.model import AccountConfig
from exporter.deadline import Deadline
from exporter.errors import (
    AmsApiError,
    AmsResponseError,
    AmsTransportError,
    DeadlineExceeded,
    ExporterError,
)

log = logging.getLogger(__name__)

API_VERSION = "2.19"
ACCEPT_MINIMAL = "application/json"
ACCEPT_VERBOSE = "application/json;odata=verbose"
PAGE_SIZE = 1000  # the service's hard limit per query
JOB_FIELDS = (
    "Id",
    "Name",
    "State",
    "Created",
    "LastModified",
    "StartTime",
    "EndTime",
    "Priority",
    "RunningDuration",
)
TASK_FIELDS = (
    "Id",
    "Name",
    "State",
    "Progress",
    "RunningDuration",
    "StartTime",
    "EndTime",
    "ErrorDetails",
    "MediaProcessorId",
)
RESERVED_UNIT_FIELDS = ("ReservedUnitType", "CurrentReservedUnits", "MaxReservableUnits")
PROCESSOR_FIELDS = ("Id", "Name", "Version")
PAGE_WINDOW = 4  # job pages in flight at most
TASK_CONCURRENCY = 16  # task requests in flight at most (one round for a typical account)
POOL_SIZE = PAGE_WINDOW + TASK_CONCURRENCY
"""Connections the AMS session keeps: one per request this client can have in flight."""
# How long past the deadline a worker's own answer is awaited: its request is cut at the deadline,
# and the worker's error (which step, which API) says more than "not read before the deadline".
CUT_GRACE = 0.1
MAX_PAGES = 1000  # a million jobs: far beyond the 90-day retention of any real account
MAX_RETRIES = 4
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 1.6
MAX_REDIRECTS = 3
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 307, 308})

_MAX_REMEMBERED_FILTERS = 256
_DATETIME_LITERAL_RE = re.compile(r"datetime'[^']*'", re.IGNORECASE)

_T = TypeVar("_T")


# Unreadable entities remembered as already logged; past this many, the memory starts afresh.
_MAX_LOGGED_UNREADABLE = 10_000


class Unreadable:
    """The entities of one collection that could not be read, each counted once, by kind.

    ``kind`` is ``"job"`` or ``"task"``; an entity without a readable ``Id`` counts once per
    distinct reason. Safe for the concurrent requests of one collection.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, set[tuple[str, str]]] = {kind: set() for kind in ENTITY_KINDS}

    def add(self, kind: str, key: str, owner: str = "") -> None:
        """Count entity ``key`` of ``kind``; ``owner`` is the job of a task."""
        with self._lock:
            self._keys[kind].add((owner, key))

    def owned_by(self, owner: str) -> list[tuple[str, str]]:
        """``(kind, key)`` of the unreadable entities of job ``owner`` (its tasks)."""
        with self._lock:
            return [
                (kind, key) for kind, keys in self._keys.items() for o, key in keys if o == owner
            ]

    def counts(self) -> dict[str, int]:
        """How many unreadable entities of each kind (every kind present, 0 included)."""
        with self._lock:
            return {kind: len(keys) for kind, keys in self._keys.items()}


class AmsClient:
    """Reads jobs and tasks of one AMS account. Safe to use from several threads.

    ``accept`` selects the JSON shape AMS answers in (minimal by default; verbose is read too).
    """

    def __init__(
        self,
        account: AccountConfig,
        tokens: TokenProvider,
        session: UpstreamSession,
        task_concurrency: int = TASK_CONCURRENCY,
        *,
        accept: str = ACCEPT_MINIMAL,
    ) -> None:
        self._account = account
        self._tokens = tokens
        self._session = session
        self._accept = accept
        self._name = account.name
        self._pages = ThreadPoolExecutor(PAGE_WINDOW, thread_name_prefix=f"ams-pages-{self._name}")
        self._tasks = ThreadPoolExecutor(
            max(1, task_concurrency), thread_name_prefix=f"ams-tasks-{self._name}"
        )
        self._base: str | None = None
        self._base_lock = threading.Lock()
        self._known_pages: dict[str, int] = {}
        self._memos: dict[str, odata.JobMemo] = {}
        self._logged_unreadable: set[tuple[str, str, str]] = set()
        self._logged_lock = threading.Lock()

    def close(self) -> None:
        """Stop the worker threads and close the AMS session."""
        self._pages.shutdown(wait=False, cancel_futures=True)
        self._tasks.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def list_jobs(
        self,
        filter: str | None,
        deadline: Deadline,
        unreadable: Unreadable | None = None,
        *,
        kind: str = "",
    ) -> list[Job]:
        """Every job matching ``filter`` (all pages), each Id once, in the service's order.

        AMS gives no count and no next link, so the number of pages is known only when a short
        one arrives. The client remembers how many pages the previous listing of the same filter
        took (date literals aside, as they move with every collection) and fetches that many
        concurrently, :data:`PAGE_WINDOW` at a time; beyond it, pages are read one after the
        other. The steady state thus costs exactly the pages needed, with latency overlapped; a
        first listing or a grown account pays only latency, never extra requests.

        ``kind`` tells listings of the same shape apart whose sizes differ (the poller's full
        listings and its changes listings): each kind remembers its own number of pages.

        A job entity that cannot be read (no Id, State or Created) is skipped, logged once and
        counted in ``unreadable``; the page's other jobs are kept.
        """
        key = f"{kind}\x00{_filter_shape(filter)}"
        memo = self._memos.get(key) or odata.JobMemo()
        jobs, pages = self._read_pages(
            filter, self._known_pages.get(key, 1), memo, deadline, unreadable or Unreadable()
        )
        memo.listing_done()
        if len(self._known_pages) >= _MAX_REMEMBERED_FILTERS:
            self._known_pages.clear()
            self._memos.clear()
        self._known_pages[key] = pages
        self._memos[key] = memo
        return list(jobs.values())

    def list_tasks(
        self, job_id: str, deadline: Deadline, unreadable: Unreadable | None = None
    ) -> list[Task]:
        """The tasks of one job; a job that no longer exists (404) has none.

        A task entity that cannot be read (no Id or State) is skipped, as jobs are.
        """
        path = f"Jobs({_path_quote(odata.quote(job_id))})/Tasks"
        try:
            body = self._get(path, {"$select": ",".join(TASK_FIELDS)}, deadline)
        except AmsApiError as exc:
            if exc.status == 404:
                log.debug(
                    "account %s: job %s vanished before its tasks were read", self._name, job_id
                )
                return []
            raise
        entities = self._entity_list(body, f"tasks of job {job_id}")
        tracker = unreadable or Unreadable()
        return self._readable(entities, odata.task_from_entity, "task", tracker, job_id)

    def read_reserved_units(self, deadline: Deadline) -> ReservedUnits | None:
        """The account's encoding reserved units; ``None`` when the set is empty.

        An account has one ``EncodingReservedUnitTypes`` entity; should it list more, the first
        is used and the others are logged.
        """
        body = self._get(
            "EncodingReservedUnitTypes", {"$select": ",".join(RESERVED_UNIT_FIELDS)}, deadline
        )
        entities = self._entity_list(body, "encoding reserved units")
        if not entities:
            return None
        if len(entities) > 1:
            log.debug(
                "account %s: %d reserved unit entities; using the first", self._name, len(entities)
            )
        try:
            return odata.reserved_units_from_entity(entities[0])
        except odata.ODataFormatError as exc:
            raise AmsResponseError(
                self._name, f"unreadable encoding reserved units: {exc}"
            ) from None

    def list_media_processors(self, deadline: Deadline) -> dict[str, MediaProcessor]:
        """The account's media processors by Id; entries that cannot be read are skipped."""
        body = self._get("MediaProcessors", {"$select": ",".join(PROCESSOR_FIELDS)}, deadline)
        processors: dict[str, MediaProcessor] = {}
        for entity in self._entity_list(body, "media processors"):
            try:
                processor = odata.processor_from_entity(entity)
            except odata.ODataFormatError as exc:
                log.debug("account %s: skipping a media processor: %s", self._name, exc)
                continue
            processors.setdefault(processor.id, processor)
        return processors

    def list_tasks_many(
        self, job_ids: Sequence[str], deadline: Deadline, unreadable: Unreadable | None = None
    ) -> dict[str, list[Task] | ExporterError]:
        """The tasks of many jobs, fetched ``task_concurrency`` at a time; a failure per job.

        Jobs not done by the deadline map to :class:`DeadlineExceeded`.
        """
        futures = {
            job_id: self._tasks.submit(self._tasks_or_error, job_id, deadline, unreadable)
            for job_id in dict.fromkeys(job_ids)
        }
        wait(futures.values(), timeout=deadline.remaining() + CUT_GRACE)
        results: dict[str, list[Task] | ExporterError] = {}
        for job_id, future in futures.items():
            if future.done() and not future.cancelled():
                results[job_id] = future.result()
            else:
                future.cancel()
                results[job_id] = DeadlineExceeded(
                    f"account {self._name}: tasks of job {job_id} not read before the deadline"
                )
        return results

    def _tasks_or_error(
        self, job_id: str, deadline: Deadline, unreadable: Unreadable | None
    ) -> list[Task] | ExporterError:
        try:
            return self.list_tasks(job_id, deadline, unreadable)
        except ExporterError as exc:
            return exc

    def _read_pages(
        self,
        filter: str | None,
        expected: int,
        memo: odata.JobMemo,
        deadline: Deadline,
        unreadable: Unreadable,
    ) -> tuple[dict[str, Job], int]:
        """The jobs of all pages and the number of pages read.

        Page ``n`` is requested once page ``n - 1`` came back full, or earlier when ``n`` is
        below ``expected``; at most :data:`PAGE_WINDOW` are in flight.
        """
        jobs: dict[str, Job] = {}
        in_flight: deque[tuple[int, Future[_Page]]] = deque()
        next_page = 0
        full_pages = 0
        try:
            while True:
                while len(in_flight) < PAGE_WINDOW and next_page < min(
                    MAX_PAGES, max(expected, full_pages + 1)
                ):
                    skip = next_page * PAGE_SIZE
                    future = self._pages.submit(
                        self._jobs_page, filter, skip, memo, deadline, unreadable
                    )
                    in_flight.append((skip, future))
                    next_page += 1
                if not in_flight:
                    raise AmsResponseError(
                        self._name, f"more than {MAX_PAGES} pages of jobs; not reading further"
                    )
                skip, future = in_flight.popleft()
                page = _result(future, deadline, f"account {self._name}: job page at $skip={skip}")
                self._merge_page(jobs, page.jobs, skip)
                if page.size < PAGE_SIZE:
                    return jobs, full_pages + 1
                full_pages += 1
        finally:
            for _, pending in in_flight:
                pending.cancel()

    def _merge_page(self, jobs: dict[str, Job], page: list[Job], skip: int) -> None:
        before = len(jobs)
        for job in page:
            jobs.setdefault(job.id, job)
        added = len(jobs) - before
        if added < len(page):
            log.debug(
                "account %s: %d repeated job(s) in the page at $skip=%d",
                self._name,
                len(page) - added,
                skip,
            )
        if skip > 0 and len(page) >= PAGE_SIZE and added == 0:
            raise AmsResponseError(
                self._name,
                f"the job page at $skip={skip} repeats only jobs already read; "
                "the service seems to ignore $skip",
            )

    def _jobs_page(
        self,
        filter: str | None,
        skip: int,
        memo: odata.JobMemo,
        deadline: Deadline,
        unreadable: Unreadable,
    ) -> _Page:
        params = {"$select": ",".join(JOB_FIELDS), "$top": str(PAGE_SIZE), "$skip": str(skip)}
        if filter:
            params = {"$filter": filter, **params}
        body = self._get("Jobs", params, deadline)
        entities = self._entity_list(body, f"job page at $skip={skip}")
        jobs = self._readable(entities, memo.read, "job", unreadable)
        return _Page(jobs, len(entities))

    def _entity_list(self, body: bytes, what: str) -> list[dict[str, object]]:
        """The entities of a collection body; a body that is no collection fails the request."""
        try:
            return odata.read_entities(body)
        except odata.ODataFormatError as exc:
            raise AmsResponseError(self._name, f"unreadable {what}: {exc}") from None

    def _readable(
        self,
        entities: list[dict[str, object]],
        convert: Callable[[dict[str, object]], _T],
        kind: str,
        unreadable: Unreadable,
        owner: str = "",
    ) -> list[_T]:
        """The entities that ``convert`` can read; the others counted, and logged once each."""
        read = []
        for entity in entities:
            try:
                read.append(convert(entity))
            except odata.ODataFormatError as exc:
                self._note_unreadable(kind, entity, str(exc), unreadable, owner)
        return read

    def _note_unreadable(
        self,
        kind: str,
        entity: dict[str, object],
        reason: str,
        unreadable: Unreadable,
        owner: str,
    ) -> None:
        entity_id = entity.get("Id")
        key = entity_id if isinstance(entity_id, str) and entity_id else f"without an Id: {reason}"
        unreadable.add(kind, key, owner)
        with self._logged_lock:
            memory = (kind, key, reason)
            if memory in self._logged_unreadable:
                return
            if len(self._logged_unreadable) >= _MAX_LOGGED_UNREADABLE:
                self._logged_unreadable.clear()
            self._logged_unreadable.add(memory)
        log.warning("account %s: skipping a %s that cannot be read: %s", self._name, kind, reason)

    def _get(self, path: str, params: dict[str, str], deadline: Deadline) -> bytes:
        url = self._endpoint(deadline) + path + "?" + _query(params)
        return self._request(url, deadline, path).content

    def _endpoint(self, deadline: Deadline) -> str:
        """The account's REST base URI, resolved once (see :meth:`_resolve`)."""
        if self._base is not None:
            return self._base
        if not self._base_lock.acquire(timeout=deadline.remaining()):
            raise DeadlineExceeded(
                f"account {self._name}: endpoint not resolved before the deadline"
            )
        try:
            if self._base is None:
                self._base = self._resolve(deadline)
            return self._base
        finally:
            self._base_lock.release()

    def _resolve(self, deadline: Deadline) -> str:
        """An ``.../api/`` endpoint as is; a legacy root through its redirects.

        The legacy root answers 301 with the account's cluster URI in ``Location`` (or 200 when
        it is itself the service). Redirects are never followed by requests: it would drop the
        ``Authorization`` header on the way to another host.
        """
        url = _with_slash(self._account.endpoint)
        seen = [url]
        while not _is_api_root(url):
            response = self._request(url, deadline, "the service root", redirect_ok=True)
            if response.status_code not in REDIRECT_STATUSES:
                break
            url = self._follow(response, url, seen)
        if url != seen[0]:
            log.info("account %s: endpoint %s resolved to %s", self._name, seen[0], url)
        return url

    def _follow(self, response: requests.Response, url: str, seen: list[str]) -> str:
        status = response.status_code
        location = response.headers.get("Location")
        if not location:
            raise AmsApiError(self._name, status, "", f"{url} redirects without a Location header")
        target = _with_slash(urljoin(url, location))
        chain = " -> ".join([*seen, target])
        if urlsplit(target).scheme != "https":
            # The next request carries the token: never to a plain-http address.
            raise AmsApiError(
                self._name, status, "InsecureRedirect", f"refusing a redirect to non-https: {chain}"
            )
        host = urlsplit(target).hostname or ""
        if not self._account.allows_redirect_to(host):
            # The next request carries the token: only to the account's own cloud, or to a
            # host the operator named.
            raise AmsApiError(
                self._name,
                status,
                "RedirectRefused",
                f"refusing to send the token to {odata.excerpt(host, 100)!r}, where the legacy "
                f"root redirects ({chain}): it is not a host of cloud {self._account.cloud}; "
                "if it is yours, list it in the account's redirect_hosts",
            )
        if target in seen:
            raise AmsApiError(
                self._name, status, "RedirectLoop", f"the endpoint redirects in a loop: {chain}"
            )
        if len(seen) > MAX_REDIRECTS:
            raise AmsApiError(
                self._name,
                status,
                "TooManyRedirects",
                f"more than {MAX_REDIRECTS} redirects: {chain}",
            )
        seen.append(target)
        return target

    def _request(
        self, url: str, deadline: Deadline, what: str, *, redirect_ok: bool = False
    ) -> requests.Response:
        """GET ``url`` with retries; the 2xx (or, if ``redirect_ok``, 3xx) response, body read."""
        retries = 0
        reauthenticated = False
        while True:
            try:
                response = self._send(url, deadline)
            except requests.RequestException as exc:
                error: ExporterError = self._transport_error(exc, deadline, what)
                retryable = not isinstance(exc, requests.exceptions.SSLError)
                wait_at_least = 0.0
            else:
                status = response.status_code
                if 200 <= status < 300 or (redirect_ok and status in REDIRECT_STATUSES):
                    return response
                if status == 401 and not reauthenticated:
                    log.debug("account %s: AMS answered 401 to GET %s; new token", self._name, what)
                    authorization = response.request.headers.get("Authorization", "")
                    self._tokens.invalidate(authorization.removeprefix("Bearer ") or None)
                    reauthenticated = True
                    continue
                error = self._api_error(response, what)
                retryable = status in RETRYABLE_STATUSES
                wait_at_least = retry_after_seconds(response.headers.get("Retry-After"))
            if not retryable or retries >= MAX_RETRIES:
                raise error
            delay = max(_backoff(retries), wait_at_least)
            if delay >= deadline.remaining():
                raise error
            log.debug(
                "account %s: GET %s failed (%s); retry in %.2f s", self._name, what, error, delay
            )
            time.sleep(delay)
            retries += 1

    def _send(self, url: str, deadline: Deadline) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._tokens.token(deadline)}",
            "x-ms-version": API_VERSION,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0",
            "Accept": self._accept,
            "x-ms-client-request-id": str(uuid.uuid4()),
        }
        try:
            return self._session.request("GET", url, headers=headers, deadline=deadline)
        except BodyTooLarge as exc:
            raise AmsResponseError(self._name, str(exc)) from None

    def _transport_error(
        self, exc: requests.RequestException, deadline: Deadline, what: str
    ) -> ExporterError:
        if isinstance(exc, requests.Timeout) and deadline.expired():
            return DeadlineExceeded(
                f"account {self._name}: GET {what} did not finish before the deadline"
            )
        return AmsTransportError(self._name, f"GET {what} failed: {transport_reason(exc)}")

    def _api_error(self, response: requests.Response, what: str) -> AmsApiError:
        status = response.status_code
        if status in REDIRECT_STATUSES:
            location = odata.excerpt(response.headers.get("Location", ""), 200)
            return AmsApiError(
                self._name, status, "", f"GET {what}: unexpected redirect to {location}"
            )
        code, message = odata.read_error(response.content)
        return AmsApiError(
            self._name,
            status,
            code,
            f"GET {what}: {message or response.reason or 'no message'}",
            retryable=status in RETRYABLE_STATUSES,
        )


@dataclass(frozen=True, slots=True)
class _Page:
    """The readable jobs of one page, and how many entities it held (a full page has 1000)."""

    jobs: list[Job]
    size: int


def _result(future: Future[_T], deadline: Deadline, what: str) -> _T:
    """The future's result; past the deadline (and the moment its request is cut), an error."""
    try:
        return future.result(timeout=deadline.remaining() + CUT_GRACE)
    except FutureTimeout:
        raise DeadlineExceeded(f"{what} not read before the deadline") from None


def _backoff(retries: int) -> float:
    """Exponential back-off with a little jitter so that accounts do not retry in lockstep."""
    base: float = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0**retries)
    return base * random.uniform(0.8, 1.0)


def retry_after_seconds(value: str | None) -> float:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP date; 0 if absent."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        return 0.0
    return max(0.0, float(when.timestamp()) - time.time())


def _query(params: dict[str, str]) -> str:
    """A query string with spaces as ``%20`` (as the AMS docs show), keys' ``$`` kept."""
    return "&".join(
        f"{key}={url_quote(value, safe=chr(39) + '(),')}" for key, value in params.items()
    )


def _path_quote(literal: str) -> str:
    """A key literal in a path: ``'nb%3Ajid%3AUUID%3A...'``, as the AMS docs write it."""
    return url_quote(literal, safe="'")


def _filter_shape(filter: str | None) -> str:
    """``filter`` without its date literals: the same listing from one collection to the next."""
    return _DATETIME_LITERAL_RE.sub("datetime''", filter or "")


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _is_api_root(url: str) -> bool:
    return urlsplit(url).path.lower().endswith("/api/")
