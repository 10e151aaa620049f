"""The baseline: the least a correct collection can cost, written as straight-line code.

It makes exactly the requests one collection needs, one after the other: the pages of in-scope jobs
(``$top=1000``/``$skip``, the documented loop, until a short page) and the tasks of the jobs whose
tasks move (Processing, Canceling). It only decodes the JSON: no model objects, no metrics. Tasks of
jobs in Error are left out: the exporter reads them once and remembers them, so they are not part of a
steady-state scrape.

Nothing from ``exporter`` is used, so that the baseline cannot inherit the exporter's overheads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import requests

from bench.processes import EmulatorInfo

PAGE_SIZE = 1000
MAX_PAGES = 1000
FINISHED_WINDOW = timedelta(hours=24)  # the exporter's default finished_window
LIVE_STATES = (2, 6)  # Processing, Canceling
ERROR_STATE = 4
JOB_SELECT = "Id,Name,State,Created,LastModified,StartTime,EndTime,Priority,RunningDuration"
TASK_SELECT = "Id,Name,State,Progress,RunningDuration,StartTime,EndTime,ErrorDetails"
REQUEST_TIMEOUT = 120.0


@dataclass(frozen=True)
class BaselineRun:
    """One straight-line collection."""

    wall_seconds: float
    cpu_seconds: float
    requests: int
    page_requests: int
    task_requests: int
    jobs: int
    error_jobs: int  # in scope and in Error: a first collection of the exporter reads their tasks
    body_bytes: int
    pages_wall_seconds: (
        float  # of wall_seconds: waiting for job pages (the service's work and latency)
    )


class BaselineClient:
    """A token, a keep-alive session and the two request kinds; nothing else."""

    def __init__(self, info: EmulatorInfo) -> None:
        self._info = info
        self._session = requests.Session()
        self._session.trust_env = False
        self._headers = {
            "Authorization": f"Bearer {self._token()}",
            "x-ms-version": "2.19",
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0",
            "Accept": "application/json",
        }

    def close(self) -> None:
        self._session.close()

    def _token(self) -> str:
        url = f"{self._info.authority_host}/{self._info.tenant}/oauth2/v2.0/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": self._info.client_id,
            "client_secret": self._info.client_secret,
            "scope": f"{self._info.resource}/.default",
        }
        response = self._session.post(
            url, data=form, verify=self._info.ca_file, timeout=REQUEST_TIMEOUT
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def _get(self, url: str) -> bytes:
        response = self._session.get(
            url, headers=self._headers, verify=self._info.ca_file, timeout=REQUEST_TIMEOUT
        )
        response.raise_for_status()
        return response.content

    def collect(self) -> BaselineRun:
        """One collection: every page, then the tasks of the live jobs, sequentially."""
        wall, cpu = time.perf_counter(), time.process_time()
        cutoff = (datetime.now(timezone.utc) - FINISHED_WINDOW).strftime("%Y-%m-%dT%H:%M:%S")
        odata_filter = (
            "(State eq 0 or State eq 1 or State eq 2 or State eq 6 "
            f"or LastModified ge datetime'{cutoff}')"
        )
        jobs: list[dict[str, Any]] = []
        size = pages = 0
        waited = 0.0
        for page in range(MAX_PAGES):
            asked = time.perf_counter()
            body = self._get(self._jobs_url(odata_filter, page * PAGE_SIZE))
            waited += time.perf_counter() - asked
            size += len(body)
            pages += 1
            entities = json.loads(body)["value"]
            jobs.extend(entities)
            if len(entities) < PAGE_SIZE:
                break
        live = [job["Id"] for job in jobs if job["State"] in LIVE_STATES]
        for job_id in live:
            tasks = self._get(self._tasks_url(job_id))
            size += len(tasks)
            json.loads(tasks)
        return BaselineRun(
            wall_seconds=time.perf_counter() - wall,
            cpu_seconds=time.process_time() - cpu,
            requests=pages + len(live),
            page_requests=pages,
            task_requests=len(live),
            jobs=len(jobs),
            error_jobs=sum(1 for job in jobs if job["State"] == ERROR_STATE),
            body_bytes=size,
            pages_wall_seconds=waited,
        )

    def _jobs_url(self, odata_filter: str, skip: int) -> str:
        query = (
            f"$filter={quote(odata_filter, safe=chr(39) + '(),')}&$select={JOB_SELECT}"
            f"&$top={PAGE_SIZE}&$skip={skip}"
        )
        return f"{self._info.endpoint}Jobs?{query}"

    def _tasks_url(self, job_id: str) -> str:
        key = quote("'" + job_id.replace("'", "''") + "'", safe="'")
        return f"{self._info.endpoint}Jobs({key})/Tasks?$select={TASK_SELECT}"
