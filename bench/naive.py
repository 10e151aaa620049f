"""``python -m bench.naive``: the exporter a user would write with prometheus_client, as a peer.

A custom collector whose ``collect()`` lists the account on every scrape and yields freshly built
``GaugeMetricFamily`` objects; ``prometheus_client.start_http_server`` serves them. The listing is
the documented loop: pages of ``$top=1000`` jobs with ``$skip`` until a page comes back short, then
the tasks of every Processing or Canceling job, one request after the other. The per-job families,
``ams_up`` and ``ams_jobs`` have the exporter's names and labels (``docs/metrics.md``); the tasks
of jobs in Error are not read, so their progress is absent.

It is written from the AMS v2 REST documentation alone and imports nothing from the exporter, the
emulator or the rest of the bench, so that none of their work can leak into it. The connection
comes from the command line; the client secret from the environment variable named by
``--secret-variable``, never from the command line. It also exposes ``naive_ams_requests_total``,
the AMS requests it has made, which the bench reads to count the requests per scrape.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import requests
from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PAGE = 1000
FINISHED_WINDOW = timedelta(hours=24)
STATES = ("Queued", "Scheduled", "Processing", "Finished", "Error", "Canceled", "Canceling")
QUEUED, SCHEDULED, PROCESSING, FINISHED, ERROR, CANCELED, CANCELING = range(7)
JOB_FIELDS = "Id,Name,State,Created,LastModified,StartTime,EndTime,Priority,RunningDuration"
TASK_FIELDS = "Id,Name,State,Progress"
HEADERS = {
    "x-ms-version": "2.19",
    "DataServiceVersion": "3.0",
    "MaxDataServiceVersion": "3.0",
    "Accept": "application/json",
}
JOB_LABELS = ["account", "job_id", "job_name"]


def timestamp(value: str | None) -> float | None:
    """An AMS date as Unix seconds: ``2026-12-02T05:57:41.94``, UTC, 0 to 7 fractional digits.

    Python 3.10's ``fromisoformat`` reads only 3 or 6 of them, hence the padding.
    """
    if not value:
        return None
    seconds, _, fraction = value.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(seconds).replace(tzinfo=timezone.utc)
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


class AmsClient:
    """A client-credentials token and GET requests on one session."""

    def __init__(self, args: argparse.Namespace, secret: str) -> None:
        self.args = args
        self.secret = secret
        self.session = requests.Session()
        self.session.trust_env = False
        self.token = ""
        self.token_expires = 0.0
        self.requests = 0

    def get(self, url: str) -> Any:
        if time.time() > self.token_expires - 300:
            self.refresh_token()
        headers = {**HEADERS, "Authorization": f"Bearer {self.token}"}
        self.requests += 1
        response = self.session.get(
            url, headers=headers, verify=self.args.ca_file, timeout=self.args.timeout
        )
        response.raise_for_status()
        return response.json()

    def refresh_token(self) -> None:
        url = f"{self.args.authority_host}/{self.args.tenant}/oauth2/v2.0/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": self.args.client_id,
            "client_secret": self.secret,
            "scope": f"{self.args.resource}/.default",
        }
        response = self.session.post(
            url, data=form, verify=self.args.ca_file, timeout=self.args.timeout
        )
        response.raise_for_status()
        answer = response.json()
        self.token = answer["access_token"]
        self.token_expires = time.time() + float(answer.get("expires_in", 3600))

    def jobs(self) -> list[dict[str, Any]]:
        """Every job not yet final, and those that ended within the finished window."""
        since = (datetime.now(timezone.utc) - FINISHED_WINDOW).strftime("%Y-%m-%dT%H:%M:%S")
        wanted = (
            f"(State eq 0 or State eq 1 or State eq 2 or State eq 6 "
            f"or LastModified ge datetime'{since}')"
        )
        found: list[dict[str, Any]] = []
        skip = 0
        while True:
            query = f"$filter={quote(wanted)}&$select={JOB_FIELDS}&$top={PAGE}&$skip={skip}"
            page = self.get(f"{self.args.endpoint}Jobs?{query}")["value"]
            found += page
            if len(page) < PAGE:
                return found
            skip += PAGE

    def tasks(self, job_id: str) -> list[dict[str, Any]]:
        key = quote("'" + job_id.replace("'", "''") + "'")
        tasks: list[dict[str, Any]] = self.get(
            f"{self.args.endpoint}Jobs({key})/Tasks?$select={TASK_FIELDS}"
        )["value"]
        return tasks


class AmsCollector(Collector):
    """Lists the account on every scrape and turns each job into its samples."""

    def __init__(self, client: AmsClient, account: str) -> None:
        self.client = client
        self.account = account

    def describe(self) -> list[Metric]:
        return []  # registering must not list the account

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ams_up", "1 if the last listing succeeded.", labels=["account"])
        try:
            yield from self.job_families(time.time())
            up.add_metric([self.account], 1)
        except (requests.RequestException, ValueError, KeyError) as error:
            print(f"collection failed: {error}", file=sys.stderr, flush=True)
            up.add_metric([self.account], 0)
        yield up
        made = CounterMetricFamily(
            "naive_ams_requests", "AMS requests made since start.", labels=["account"]
        )
        made.add_metric([self.account], self.client.requests)
        yield made

    def job_families(self, now: float) -> Iterator[Metric]:
        jobs = self.client.jobs()
        tasks = {
            job["Id"]: self.client.tasks(job["Id"])
            for job in jobs
            if job["State"] in (PROCESSING, CANCELING)
        }
        gauge = GaugeMetricFamily
        state = gauge("ams_job_state", "Job state.", labels=[*JOB_LABELS, "state"])
        created = gauge("ams_job_created_timestamp_seconds", "Created.", labels=JOB_LABELS)
        started = gauge("ams_job_start_timestamp_seconds", "StartTime.", labels=JOB_LABELS)
        ended = gauge("ams_job_end_timestamp_seconds", "EndTime.", labels=JOB_LABELS)
        age = gauge("ams_job_age_seconds", "Seconds since Created.", labels=JOB_LABELS)
        running = gauge("ams_job_running_duration_seconds", "Running time.", labels=JOB_LABELS)
        queued = gauge("ams_job_queued_duration_seconds", "Time queued.", labels=JOB_LABELS)
        progress = gauge("ams_job_progress_ratio", "Mean task progress.", labels=JOB_LABELS)
        priority = gauge("ams_job_priority", "Priority.", labels=JOB_LABELS)
        task_progress = gauge(
            "ams_task_progress_ratio",
            "Task progress.",
            labels=[*JOB_LABELS, "task_id", "task_name"],
        )
        counts = dict.fromkeys(STATES, 0)
        for job in jobs:
            labels = [self.account, job["Id"], job["Name"] or ""]
            code = job["State"]
            counts[STATES[code]] += 1
            for number, name in enumerate(STATES):
                state.add_metric([*labels, name], 1 if number == code else 0)
            born = timestamp(job["Created"]) or now
            start = timestamp(job["StartTime"])
            end = timestamp(job["EndTime"])
            created.add_metric(labels, born)
            if start is not None:
                started.add_metric(labels, start)
            if end is not None:
                ended.add_metric(labels, end)
            age.add_metric(labels, max(0.0, now - born))
            duration = (job["RunningDuration"] or 0) / 1000
            if code == PROCESSING and duration == 0 and start is not None:
                duration = now - start
            running.add_metric(labels, duration)
            waited_until = start or (end if code in (FINISHED, ERROR, CANCELED) else None) or now
            queued.add_metric(labels, max(0.0, waited_until - born))
            priority.add_metric(labels, job["Priority"] or 0)
            own = tasks.get(job["Id"])
            if own:
                progress.add_metric(labels, sum(t["Progress"] for t in own) / (100 * len(own)))
                for task in own:
                    task_progress.add_metric(
                        [*labels, task["Id"], task["Name"] or ""], task["Progress"] / 100
                    )
            elif code in (QUEUED, SCHEDULED):
                progress.add_metric(labels, 0)
            elif code == FINISHED:
                progress.add_metric(labels, 1)
        yield from (state, created, started, ended, age, running, queued, progress, priority)
        yield task_progress
        jobs_by_state = gauge("ams_jobs", "Jobs per state.", labels=["account", "state"])
        for name, count in counts.items():
            jobs_by_state.add_metric([self.account, name], count)
        yield jobs_by_state


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--endpoint", required=True, help="the account's REST endpoint (…/api/)")
    parser.add_argument("--authority-host", required=True, help="Azure AD authority, https://…")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--resource", required=True, help="https://rest.media.azure.net")
    parser.add_argument("--ca-file", required=True, help="CA bundle that verifies both hosts")
    parser.add_argument(
        "--secret-variable",
        default="AMS_NAIVE_CLIENT_SECRET",
        help="environment variable holding the client secret (default AMS_NAIVE_CLIENT_SECRET)",
    )
    parser.add_argument("--account", default="bench", help="the account label (default bench)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    secret = os.environ.get(args.secret_variable)
    if not secret:
        print(f"set the client secret in ${args.secret_variable}", file=sys.stderr)
        return 2
    client = AmsClient(args, secret)
    client.refresh_token()
    REGISTRY.register(AmsCollector(client, args.account))
    server, _thread = start_http_server(args.port, addr="127.0.0.1")
    print(f"listening on 127.0.0.1:{server.server_port}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
