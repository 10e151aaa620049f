"""Numbers the docs state about the code are the code's numbers.

Every number (or duration, size, count) in the hand-written docs that restates a value defined in
the code is a row of ``FACTS``: the doc, a regular expression whose one group captures the number
as the doc writes it, in its sentence, what the number restates, and the value the code gives, in
the doc's unit. A doc that drifts fails with both values; a sentence reworded so that its row no
longer finds it fails too, so that the row is updated with the sentence, never silently dropped.

Not covered here: the tables of docs/metrics.md (generated from the contract; its prose, written in
exporter/expose/contract.py, has rows) and docs/dashboard.md (generated, checked by its own tests),
docs/architecture.md, the fault matrix's generated rows in docs/reliability.md (checked by
tests/test_fault_matrix.py) apart from the two sizes below, the alert thresholds of the table in
docs/alerting.md (tests/test_rules.py), and the benchmark's measured figures.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from ams_emulator.__main__ import build_parser as emulator_parser
from ams_emulator.scenario import RECENT_WINDOW, ScenarioConfig
from bench import baseline, processes, report
from bench.scrape import CAPACITY_READS
from bench.scrape import build_parser as bench_parser
from exporter import __version__
from exporter.ams.client import (
    API_VERSION,
    MAX_REDIRECTS,
    PAGE_SIZE,
    PAGE_WINDOW,
    TASK_CONCURRENCY,
)
from exporter.ams.http import DEFAULT_MAX_BODY_BYTES
from exporter.ams.model import (
    ENTITY_KINDS,
    ERROR_CODES,
    FINAL_STATES,
    Job,
    JobState,
    ReservedUnits,
    Task,
)
from exporter.ams.odata import _MAX_RUNNING_MS, MAX_NAME_CHARS
from exporter.ams.scope import IDS_PER_FILTER
from exporter.cli import DEFAULT_LISTEN_ADDRESS, SHUTDOWN_MARGIN, build_parser
from exporter.collect.capacity import PROCESSORS_INTERVAL, PROCESSORS_RETRY
from exporter.collect.history import ENDED_STATES, NEAR_SECONDS, JobHistory
from exporter.collect.history_file import MAX_FILE_BYTES, VERSION, HistoryFile, _decode
from exporter.collect.jobview import JobView
from exporter.collect.poller import CHANGES_OVERLAP_SECONDS
from exporter.collect.snapshot import AccountResult
from exporter.config.accounts import (
    DEFAULT_TIMEOUT,
    MAX_BUCKETS,
    MAX_GROUPS,
    MAX_TIMEOUT,
    MAX_WINDOW,
    parse_config,
)
from exporter.config.credentials import MAX_PEM_SIZE, MAX_SECRET_SIZE
from exporter.config.durations import format_duration, parse_duration
from exporter.config.model import (
    DEFAULT_DURATION_BUCKETS,
    DEFAULT_QUEUE_WAIT_BUCKETS,
    HistoryConfig,
    JobsConfig,
)
from exporter.config.yamlio import MAX_CONFIG_SIZE
from exporter.errors import ConfigError
from exporter.expose.contract import (
    METRICS,
    AccountCounter,
    AccountHistogram,
    AccountSeries,
    Group,
    JobSeries,
    JobStateSet,
    JobValue,
)
from exporter.redact import _MIN_NEEDLE
from exporter.web.httpserver import (
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_BODY_BYTES,
    MAX_CONNECTIONS,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    WORKERS,
    WRITE_TIMEOUT,
)
from exporter.web.protect import HANDSHAKE_TIMEOUT
from exporter.web.server import STATUS_PAGE_MAX_AGE
from exporter.web.status_page import render_status_page
from exporter.web.webconfig import _VERIFYING_AUTH, ALLOWED_HEADERS
from exporter.wiring import DEMO_MAX_JOBS
from tests.support import soak

ROOT = Path(__file__).resolve().parent.parent
KiB, MiB = 2**10, 2**20
MINUTE, HOUR = 60.0, 3600.0
YEAR = parse_duration("1y")
JOBS_DEFAULTS = JobsConfig()
SCENARIO = ScenarioConfig()  # the emulator's default scenario
PORT = int(DEFAULT_LISTEN_ADDRESS.rpartition(":")[2])
WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "seven": 7, "ten": 10, "sixteen": 16}


def _prose(doc: str) -> str:
    return re.sub(r"\s+", " ", (ROOT / doc).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Values that no single constant holds: read from the files that define them, or probed.


@cache
def _yaml(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))


def _alert(name: str) -> dict[str, Any]:
    rules = [rule for group in _yaml("prometheus/alerts.yml")["groups"] for rule in group["rules"]]
    return next(rule for rule in rules if rule.get("alert") == name)


def _alert_for(name: str) -> float:
    """The alert's `for:`, in minutes."""
    return parse_duration(_alert(name)["for"]) / MINUTE


def _alert_expr(name: str, pattern: str) -> float:
    """The number ``pattern`` captures in the alert's expr (its ``a * b`` multiplied out)."""
    found = re.search(pattern, " ".join(_alert(name)["expr"].split()))
    assert found, f"prometheus/alerts.yml: {name}'s expr has no {pattern!r}"
    return math.prod(float(factor) for factor in found.group(1).split("*"))


def _lookback(success: bool) -> float:
    """Minutes of the ``last_over_time`` windows of the rule files: the one that bridges failed
    collections, or (``success``) the one of ams_last_success_timestamp_seconds."""
    text = _prose("prometheus/alerts.yml") + _prose("prometheus/rules.yml")
    windows = {
        parse_duration(window) / MINUTE
        for metric, window in re.findall(r"last_over_time\((\w+)(?:\{[^}]*\})?\[(\w+)\]", text)
        if (metric == "ams_last_success_timestamp_seconds") == success
    }
    assert len(windows) == 1, f"the rule files' last_over_time windows differ: {windows}"
    return windows.pop()


def _hour_window() -> float:
    """The window of the hourly recording rules, in hours."""
    rules = [rule for group in _yaml("prometheus/rules.yml")["groups"] for rule in group["rules"]]
    count = next(rule for rule in rules if rule.get("record") == "account:ams_jobs_failed:count1h")
    found = re.search(r"<= (\d+)", count["expr"])
    assert found, "account:ams_jobs_failed:count1h has no '<= N' window"
    return int(found.group(1)) / HOUR


def _image_user() -> tuple[int, int]:
    found = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert found, "the Dockerfile has no USER uid:gid"
    return int(found.group(1)), int(found.group(2))


def _image_uid() -> int:
    return _image_user()[0]


def _image_gid() -> int:
    return _image_user()[1]


def _k8s_args() -> str:
    """The base Deployment's container arguments, as a YAML block list reads in prose."""
    deployment = _yaml("deploy/kubernetes/deployment.yaml")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return " - ".join(args)


def _k8s_resources() -> dict[str, dict[str, str]]:
    deployment = _yaml("deploy/kubernetes/deployment.yaml")
    resources: dict[str, dict[str, str]] = deployment["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]
    return resources


def _longest(accepted: Callable[[int], bool]) -> int:
    """The largest n the code accepts, for a predicate that holds up to a limit (below 4096)."""
    low, high = 1, 4096
    assert accepted(low) and not accepted(high), "no limit between 1 and 4096"
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if accepted(middle) else (low, middle)
    return low


def _config_error(name: str = "a", extra: str = "") -> str | None:
    text = (
        f"accounts:\n  - name: {name}\n    endpoint: https://a.restv2.westeurope.media.azure.net/api/\n"
        "    tenant: t.onmicrosoft.com\n    client_id: 00000000-0000-0000-0000-000000000000\n"
        f"    client_secret: s\n{extra}"
    )
    try:
        parse_config(text, {})
    except ConfigError as error:
        return str(error)
    return None


def _longest_name() -> int:
    return _longest(lambda n: _config_error(name="a" * n) is None)


def _longest_quoted_key() -> int:
    return _longest(lambda n: "k" * n in (_config_error(extra=f"    {'k' * n}: 1\n") or ""))


def _fewest_wildcard_labels() -> int:
    """The fewest labels after ``*.`` that a ``redirect_hosts`` entry may have."""
    hosts = {n: "*." + "a." * (n - 1) + "net" for n in range(1, 9)}
    return next(
        n
        for n, host in hosts.items()
        if _config_error(extra=f"    redirect_hosts: ['{host}']\n") is None
    )


def _longest_group_name() -> int:
    def accepted(n: int) -> bool:
        groups = f"    jobs:\n      groups: [{{name: {'g' * n}, name_regex: x}}]\n"
        return _config_error(extra=groups) is None

    return _longest(accepted)


def _bounds(seconds: tuple[float, ...], *, day: str = "1d") -> str:
    """Bucket bounds as a doc lists them: as ``--config.check`` writes durations, or with a day
    written ``day`` (``24h`` in the example files)."""
    return ", ".join(format_duration(bound).replace("1d", day) for bound in seconds)


def _future_hours_accepted() -> int:
    """How many hours ahead of the clock a history file's times may be."""

    def accepted(hours: int) -> bool:
        ahead = 1e9 + hours * HOUR
        text = (
            f'{{"format": "ams-exporter-history", "version": {VERSION}, "account": "a", '
            f'"end_floor": {ahead}, "start_floor": {ahead}, "watermark": {ahead}, '
            '"ended": {}, "waited": {}, "last_ended": []}'
        )
        try:
            _decode(text.encode(), "a", 1e9)
        except ValueError:
            return False
        return True

    return _longest(accepted)


def _history_hash_digits() -> int:
    name = HistoryFile(ROOT, "prod").path.name
    found = re.fullmatch(r"history-([0-9a-f]+)\.json", name)
    assert found, f"the history file is named {name}"
    return len(found.group(1))


def _job_series(state: JobState, *, started: bool = True, tasks: int = 0, codes: int = 0) -> int:
    """The series of one exported job in ``state``, counted from the per-job declarations: with
    ``tasks`` tasks of ``codes`` error codes each, when the state is one whose tasks are read."""
    final = state in FINAL_STATES
    begun = started and state not in (JobState.QUEUED, JobState.SCHEDULED)
    job = Job(
        id="nb:jid:UUID:00000000-0000-0000-0000-000000000001",
        name="job",
        state=state,
        created=1000.0,
        last_modified=1100.0,
        start_time=1010.0 if begun else None,
        end_time=1100.0 if final else None,
        priority=0,
        running_duration_seconds=90.0 if final else 0.0,
    )
    read = tuple(
        Task(f"nb:tid:{i}", "task", 2, 50.0, None, None, None, ERROR_CODES[1 : 1 + codes])
        for i in range(tasks)
    )
    view = JobView(job, read or None, 1200.0)
    count = 0
    for metric in METRICS:
        if isinstance(metric, JobStateSet):
            count += len(JobState)
        elif isinstance(metric, JobValue):
            count += metric.value(view) is not None
        elif isinstance(metric, JobSeries):
            count += len(list(metric.samples(view)))
    return count


def _task_series() -> int:
    """The series one more task adds to a Processing job."""
    return _job_series(JobState.PROCESSING, tasks=2) - _job_series(JobState.PROCESSING, tasks=1)


def _account_series() -> int:
    """The series of one listed account whose reserved units were read, without its history and
    request counts."""
    result = AccountResult(
        "a",
        True,
        1.0,
        1.0,
        state_counts={JobState.QUEUED: 1},
        unreadable={"job": 0},
        reserved_units=ReservedUnits("S1", 10, 25),
    )
    return sum(
        len(list(metric.samples(result)))
        for metric in METRICS
        if isinstance(metric, AccountSeries) and metric.group is Group.ACCOUNT
    )


def _history_series(bounds: int | None = None, *, created: bool = False) -> int:
    """The history series of one group, counted from the declarations of the History section,
    after a job ended in each final state: with the default buckets or ``bounds`` bounds in both
    histograms; ``created``: only the ``_created`` lines of OpenMetrics."""
    config = HistoryConfig()
    if bounds is not None:
        config = HistoryConfig(
            tuple(map(float, range(1, bounds + 1))), tuple(map(float, range(1, bounds + 1)))
        )
    history = JobHistory(JobsConfig(history=config), created=1000.0)
    ended = [
        Job(f"nb:jid:UUID:{i}", "job", state, 1000.0, 1100.0, 1010.0, 1100.0, 0, 90.0)
        for i, state in enumerate(ENDED_STATES)
    ]
    history.observe(ended, {})
    result = AccountResult("a", True, 1.0, 1.0, history=history.snapshot)
    count = 0
    for metric in METRICS:
        if metric.group is not Group.HISTORY:
            continue
        if isinstance(metric, AccountCounter):
            count += len(list(metric.points(result)))
        elif isinstance(metric, AccountHistogram):
            points = list(metric.points(result))
            count += (
                len(points) if created else sum(len(p.distribution.buckets) + 2 for p in points)
            )
        elif isinstance(metric, AccountSeries) and not created:
            count += len(list(metric.samples(result)))
    return count


def _account_and_exporter_series() -> int:
    """docs/scaling.md's series of one account (3 request counts) and of the exporter (about 20)."""
    return _account_series() + 3 + 20


def _worked_example_series() -> int:
    """docs/scaling.md's worked example: 100 queued, 40 processing, 1,800 finished, 50 failed and
    10 canceled jobs of one task (failed ones with one error code), no groups, and the series of
    the account and the exporter."""
    return (
        100 * _job_series(JobState.QUEUED)
        + 40 * _job_series(JobState.PROCESSING, tasks=1)
        + 1800 * _job_series(JobState.FINISHED)
        + 50 * _job_series(JobState.ERROR, tasks=1, codes=1)
        + 10 * _job_series(JobState.CANCELED)
        + _history_series()
        + _account_and_exporter_series()
    )


# docs/scaling.md's account whose finished_window is shortened: the share of its in-scope jobs that
# have ended, and the window it is shortened to.
ENDED_SHARE = 0.95
SHORT_WINDOW = HOUR


def _window_facts(jobs: int) -> list[Fact]:
    """The row of docs/scaling.md's table of what the shorter window saves, for ``jobs`` in scope
    at the default finished_window."""
    ended = jobs * ENDED_SHARE
    kept = ended * SHORT_WINDOW / JOBS_DEFAULTS.finished_window
    row = rf"\| {jobs:,} \|"
    pair = r"[\d,]+ → [\d,]+ \|"
    doc, source = "docs/scaling.md", f"{jobs:,} jobs at the default finished_window"
    return [
        Fact(doc, rf"{row} ([\d,]+) → [\d,]+ \|", f"{source}: ended", round(ended)),
        Fact(doc, rf"{row} [\d,]+ → ([\d,]+) \|", f"{source}: ended at 1h", round(kept)),
        Fact(
            doc,
            rf"{row} {pair} ([\d,]+) →",
            f"{source}: their series",
            lambda: round(ended * _job_series(JobState.FINISHED)),
        ),
        Fact(
            doc,
            rf"{row} {pair} [\d,]+ → ([\d,]+) \|",
            f"{source}: their series at 1h",
            lambda: round(kept * _job_series(JobState.FINISHED)),
        ),
        Fact(
            doc,
            rf"{row} {pair} {pair} ([\d,]+) \|",
            f"{source}: series saved",
            lambda: round((ended - kept) * _job_series(JobState.FINISHED)),
        ),
        Fact(
            doc,
            rf"{row} {pair} {pair} [\d,]+ \| (\d+) →",
            f"{source}: job pages",
            jobs // PAGE_SIZE + 1,
        ),
        Fact(
            doc,
            rf"{row} {pair} {pair} [\d,]+ \| \d+ → (\d+) \|",
            f"{source}: job pages at 1h",
            int(jobs - ended + kept) // PAGE_SIZE + 1,
        ),
    ]


def _python_floor() -> str:
    found = re.search(
        r'^requires-python = ">=([\d.]+)"$', (ROOT / "pyproject.toml").read_text(), re.M
    )
    assert found, "pyproject.toml has no requires-python"
    return found.group(1)


def _status_page_refresh() -> int:
    default: int = inspect.signature(render_status_page).parameters["refresh_seconds"].default
    return default


# ---------------------------------------------------------------------------------------------
# The facts


class Fact(NamedTuple):
    doc: str
    pattern: str  # group 1 is the number as written: digits (1,000 allowed), a word, or text
    source: str  # what the number restates, for the failure message
    value: float | str | Callable[[], float | str]  # in the doc's unit; text is compared as is


# One row per number a doc states about the code. Each guards that the sentence still exists and
# that its number is the code's: a changed constant, a drifted doc or a reworded sentence fails.
# fmt: off
FACTS = [
    # -- README.md
    Fact("README.md", r"\(Python ≥ ([\d.]+)\)", "pyproject.toml requires-python", _python_floor),
    Fact("README.md", r"ams-exporter:(\d+\.\d+\.\d+)", "exporter.__version__", __version__),
    Fact("README.md", r"newTag: (\S+)", "exporter.__version__", __version__),
    Fact("README.md", r"`--web\.listen-address` \| `:(\d+)`", "cli.DEFAULT_LISTEN_ADDRESS", PORT),
    Fact("README.md", r"http://(?:localhost|127\.0\.0\.1):(\d+)/(?:metrics|healthz)?(?![\w/])", "cli.DEFAULT_LISTEN_ADDRESS", PORT),
    Fact("README.md", r'targets: \["localhost:(\d+)"\]', "cli.DEFAULT_LISTEN_ADDRESS", PORT),
    Fact("README.md", r"-p \d+:(\d+) ", "cli.DEFAULT_LISTEN_ADDRESS", PORT),
    Fact("README.md", r"`--web\.max-connections` \| `(\d+)`", "httpserver.MAX_CONNECTIONS", MAX_CONNECTIONS),
    Fact("README.md", r"`--demo\.jobs` \| `(\d+)`", "cli: --demo.jobs default", lambda: build_parser().get_default("demo_jobs")),
    Fact("README.md", r"once per `jobs\.capacity_interval` \(default (\d+)m\)", "JobsConfig.capacity_interval", JOBS_DEFAULTS.capacity_interval / MINUTE),
    Fact("README.md", r"jobs in the emulated account, 1 to ([\d,]+) \|", "wiring.DEMO_MAX_JOBS", DEMO_MAX_JOBS),
    Fact("README.md", r"`finished_window` \(default (\d+) h\)", "JobsConfig.finished_window", JOBS_DEFAULTS.finished_window / HOUR),
    Fact("README.md", r"⌊jobs in scope ÷ (\d+)⌋", "client.PAGE_SIZE", PAGE_SIZE),
    Fact("README.md", r"AMS pages hold (\d+) jobs", "client.PAGE_SIZE", PAGE_SIZE),
    Fact("README.md", r"the accounts' `timeout` \(default (\d+)s\)", "accounts.DEFAULT_TIMEOUT", DEFAULT_TIMEOUT),
    Fact("README.md", r"it refreshes itself every (\d+) s", "render_status_page(refresh_seconds)", _status_page_refresh),
    Fact("README.md", r"runs as uid/gid (\d+)", "Dockerfile USER", _image_uid),
    Fact("README.md", r"Prometheus scrapes every (\w+) in this stack", "deploy/compose/prometheus.yml scrape_interval", lambda: _yaml("deploy/compose/prometheus.yml")["global"]["scrape_interval"]),
    # -- docs/deployment.md (the README's Docker and Kubernetes sections)
    Fact("docs/deployment.md", r"ams-exporter:(\d+\.\d+\.\d+)", "exporter.__version__", __version__),
    Fact("docs/deployment.md", r"newTag: (\S+)", "exporter.__version__", __version__),
    Fact("docs/deployment.md", r"http://(?:localhost|127\.0\.0\.1):(\d+)/(?:metrics|healthz)?(?![\w/])", "cli.DEFAULT_LISTEN_ADDRESS", PORT),
    Fact("docs/deployment.md", r"-p \d+:(\d+) ", "cli.DEFAULT_LISTEN_ADDRESS", PORT),
    Fact("docs/security.md", r"The default `:(\d+)` is", "cli.DEFAULT_LISTEN_ADDRESS", PORT),
    Fact("docs/deployment.md", r"runs as uid/gid (\d+)", "Dockerfile USER", _image_uid),
    Fact("docs/deployment.md", r"Prometheus scrapes every (\w+) in this stack", "deploy/compose/prometheus.yml scrape_interval", lambda: _yaml("deploy/compose/prometheus.yml")["global"]["scrape_interval"]),
    Fact("docs/deployment.md", r"writable by the image's user, uid (\d+)", "Dockerfile USER uid", _image_uid),
    Fact("docs/deployment.md", r"sudo chown (\d+):\d+ history", "Dockerfile USER uid", _image_uid),
    Fact("docs/deployment.md", r"sudo chown \d+:(\d+) history", "Dockerfile USER gid", _image_gid),
    Fact("docs/deployment.md", r"--entrypoint chown [^`]*? (\d+):\d+ /var/lib", "Dockerfile USER uid", _image_uid),
    Fact("docs/deployment.md", r"--entrypoint chown [^`]*? \d+:(\d+) /var/lib", "Dockerfile USER gid", _image_gid),
    Fact("docs/deployment.md", r"fsGroup: (\d+)", "Dockerfile USER gid", _image_gid),
    Fact("docs/deployment.md", r"repeat the base's arguments - (.+?) - --storage\.path", "deployment.yaml args", _k8s_args),
    # -- docs/configuration.md
    Fact("docs/configuration.md", r"`name` \| yes \| \| The `account` label value\. 1 to (\d+) characters", "accounts: longest name accepted", _longest_name),
    Fact("docs/configuration.md", r"`timeout` \| no \| `(\d+)s`", "accounts.DEFAULT_TIMEOUT", DEFAULT_TIMEOUT),
    Fact("docs/configuration.md", r"more than `0s` and at most `(\d+)m`", "accounts.MAX_TIMEOUT", MAX_TIMEOUT / MINUTE),
    Fact("docs/configuration.md", r"`\*\.` and a domain of at least (\w+) labels", "accounts: fewest labels after *. in redirect_hosts", _fewest_wildcard_labels),
    Fact("docs/configuration.md", r"The limits are (\d+) KiB for `client_secret_file`", "credentials.MAX_SECRET_SIZE", MAX_SECRET_SIZE / KiB),
    Fact("docs/configuration.md", r"and (\d+) MiB for `client_certificate_file` and `ca_file`", "credentials.MAX_PEM_SIZE", MAX_PEM_SIZE / MiB),
    Fact("docs/configuration.md", r"`finished_window` \| `(\d+)h`", "JobsConfig.finished_window", JOBS_DEFAULTS.finished_window / HOUR),
    Fact("docs/configuration.md", r"`0s` exports only jobs that have not ended; at most `(\d+)y`", "accounts.MAX_WINDOW", MAX_WINDOW / YEAR),
    Fact("docs/configuration.md", r"`max_jobs` \| `(\d+)`", "JobsConfig.max_jobs", JOBS_DEFAULTS.max_jobs),
    Fact("docs/configuration.md", r"`d` \((\d+)h\)", "durations: 1d", parse_duration("1d") / HOUR),
    Fact("docs/configuration.md", r"`w` \((\d+)d\)", "durations: 1w", parse_duration("1w") / parse_duration("1d")),
    Fact("docs/configuration.md", r"`y` \((\d+)d\)", "durations: 1y", YEAR / parse_duration("1d")),
    Fact("docs/configuration.md", r"quoted only when it looks like one \(at most (\d+) letters", "yamlio: longest unknown key quoted", _longest_quoted_key),
    Fact("docs/configuration.md", r"may be at most (\d+) MiB; a larger file is refused", "yamlio.MAX_CONFIG_SIZE", MAX_CONFIG_SIZE / MiB),
    Fact("docs/configuration.md", r"over the (\d+) MiB limit`", "yamlio.MAX_CONFIG_SIZE", MAX_CONFIG_SIZE / MiB),
    Fact("docs/configuration.md", r"A list of at most (\d+) groups per account", "accounts.MAX_GROUPS", MAX_GROUPS),
    Fact("docs/configuration.md", r"The `group` label value: 1 to (\d+) characters", "accounts: longest group name accepted", _longest_group_name),
    Fact("docs/configuration.md", r"with the default buckets (\d+) series per group", "history series of one group", _history_series),
    Fact("docs/configuration.md", r"\| `duration_buckets` \| `\[([^\]]+)\]`", "model.DEFAULT_DURATION_BUCKETS", _bounds(DEFAULT_DURATION_BUCKETS)),
    Fact("docs/configuration.md", r"\| `queue_wait_buckets` \| `\[([^\]]+)\]`", "model.DEFAULT_QUEUE_WAIT_BUCKETS", _bounds(DEFAULT_QUEUE_WAIT_BUCKETS)),
    Fact("docs/configuration.md", r"Each is a list of 1 to (\d+) \[durations\]", "accounts.MAX_BUCKETS", MAX_BUCKETS),
    Fact("docs/configuration.md", r"the first (\d+) hexadecimal digits", "history_file: the hash in the file name", _history_hash_digits),
    Fact("docs/configuration.md", r"cut -c1-(\d+)`", "history_file: the hash in the file name", _history_hash_digits),
    Fact("docs/configuration.md", r"`version` \((\d+)\)", "history_file.VERSION", VERSION),
    Fact("docs/configuration.md", r"at most (\d+) minutes before the watermark", "history.NEAR_SECONDS", NEAR_SECONDS / MINUTE),
    Fact("docs/configuration.md", r"times more than (\d+) hours ahead", "history_file: times ahead of the clock accepted", _future_hours_accepted),
    Fact("docs/configuration.md", r"or larger than (\d+) MiB", "history_file.MAX_FILE_BYTES", MAX_FILE_BYTES / MiB),
    # -- docs/config.example.yml
    Fact("docs/config.example.yml", r"At most (\d+); names are label values", "accounts.MAX_GROUPS", MAX_GROUPS),
    Fact("docs/config.example.yml", r"1 to (\d+) # increasing durations", "accounts.MAX_BUCKETS", MAX_BUCKETS),
    Fact("docs/config.example.yml", r"duration_buckets: \[([^\]]+)\]", "model.DEFAULT_DURATION_BUCKETS", _bounds(DEFAULT_DURATION_BUCKETS, day="24h")),
    Fact("docs/config.example.yml", r"queue_wait_buckets: \[([^\]]+)\]", "model.DEFAULT_QUEUE_WAIT_BUCKETS", _bounds(DEFAULT_QUEUE_WAIT_BUCKETS, day="24h")),
    # -- docs/metrics.md: the prose of exporter/expose/contract.py (the tables are generated)
    Fact("docs/metrics.md", r"(\d+) minutes below", "history.NEAR_SECONDS", NEAR_SECONDS / MINUTE),
    Fact("docs/metrics.md", r"A failed read is tried again after (\d+) minutes", "capacity.PROCESSORS_RETRY", PROCESSORS_RETRY / MINUTE),
    Fact("docs/metrics.md", r"`jobs\.capacity_interval` \(default (\d+)m\) after the previous read", "JobsConfig.capacity_interval", JOBS_DEFAULTS.capacity_interval / MINUTE),
    # -- docs/scaling.md
    Fact("docs/scaling.md", r"`ams_job_state` \(one per state\) \| (\d+) \|", "len(JobState)", len(JobState)),
    Fact("docs/scaling.md", r"`ams_jobs` \((\d+)\)", "len(JobState)", len(JobState)),
    Fact("docs/scaling.md", r"`finished_window` \(default (\d+)h\)", "JobsConfig.finished_window", JOBS_DEFAULTS.finished_window / HOUR),
    Fact("docs/scaling.md", r"At most `max_jobs` \(default (\d+)\)", "JobsConfig.max_jobs", JOBS_DEFAULTS.max_jobs),
    Fact("docs/scaling.md", r"one listing per (\d+) ids", "scope.IDS_PER_FILTER", IDS_PER_FILTER),
    Fact("docs/scaling.md", r"\(⌊J / (\d+)⌋ \+ 1\)", "client.PAGE_SIZE", PAGE_SIZE),
    Fact("docs/scaling.md", r"job pages of \$top=(\d+)", "client.PAGE_SIZE", PAGE_SIZE),
    Fact("docs/scaling.md", r"\+ up to (\d+) read-ahead pages", "client.PAGE_WINDOW - 1", PAGE_WINDOW - 1),
    Fact("docs/scaling.md", r"tasks of one account are read at most (\d+) at a time", "client.TASK_CONCURRENCY", TASK_CONCURRENCY),
    Fact("docs/scaling.md", r"the job pages at most (\d+) at a time", "client.PAGE_WINDOW", PAGE_WINDOW),
    Fact("docs/scaling.md", r"EncodingReservedUnitTypes: 1 when jobs\.capacity_interval \(default (\d+)m\)", "JobsConfig.capacity_interval", JOBS_DEFAULTS.capacity_interval / MINUTE),
    Fact("docs/scaling.md", r"MediaProcessors: 1 when (\d+) hour has passed", "capacity.PROCESSORS_INTERVAL", PROCESSORS_INTERVAL / HOUR),
    Fact("docs/scaling.md", r"read \((\d+) minutes after a failed one\)", "capacity.PROCESSORS_RETRY", PROCESSORS_RETRY / MINUTE),
    Fact("docs/scaling.md", r"at a 1m scrape interval and the default (\d+)m that", "JobsConfig.capacity_interval", JOBS_DEFAULTS.capacity_interval / MINUTE),
    Fact("docs/scaling.md", r"that is every (\d+)th or \d+th collection", "capacity_interval / 1m", JOBS_DEFAULTS.capacity_interval / MINUTE),
    Fact("docs/scaling.md", r"that is every \d+th or (\d+)th collection", "capacity_interval / 1m + 1", JOBS_DEFAULTS.capacity_interval / MINUTE + 1),
    Fact("docs/scaling.md", r"changes listings: C = (\d+) at 1m", "collections an hour at a 1m interval", HOUR / MINUTE),
    Fact("docs/scaling.md", r"reserved units: (\d+) at the default \d+m", "1h / capacity_interval", HOUR / JOBS_DEFAULTS.capacity_interval),
    Fact("docs/scaling.md", r"reserved units: \d+ at the default (\d+)m", "JobsConfig.capacity_interval", JOBS_DEFAULTS.capacity_interval / MINUTE),
    Fact("docs/scaling.md", r"\+ (\d+) +media processors: more only", "1h / capacity.PROCESSORS_INTERVAL", HOUR / PROCESSORS_INTERVAL),
    Fact("docs/scaling.md", r"one per (\d+) minutes while their reads fail", "capacity.PROCESSORS_RETRY", PROCESSORS_RETRY / MINUTE),
    # The worked example: J = 2,000, 40 processing jobs, 2 new failures.
    Fact("docs/scaling.md", r"\| account and exporter \| \d+ \| 1 job page \(a changes listing\); (\d+) job pages", "2,000 // client.PAGE_SIZE + 1", 2000 // PAGE_SIZE + 1),
    Fact("docs/scaling.md", r"in a full listing, every (\d+)th collection \|", "full_listing_interval / 1m", JOBS_DEFAULTS.full_listing_interval / MINUTE),
    Fact("docs/scaling.md", r"`jobs\.full_listing_interval` \(default\n?\s*`(\d+)m`", "JobsConfig.full_listing_interval", JOBS_DEFAULTS.full_listing_interval / MINUTE),
    Fact("docs/scaling.md", r"LastModified ge datetime'<T \u2212 (\d+)m>'", "poller.CHANGES_OVERLAP_SECONDS", CHANGES_OVERLAP_SECONDS / MINUTE),
    Fact("docs/scaling.md", r"The (\d+) minutes cover a difference", "poller.CHANGES_OVERLAP_SECONDS", CHANGES_OVERLAP_SECONDS / MINUTE),
    Fact("docs/scaling.md", r"a little early\n?\s*\(every (\d+)th or \d+th at 1m", "full_listing_interval / 1m", JOBS_DEFAULTS.full_listing_interval / MINUTE),
    Fact("docs/scaling.md", r"full listings: F ≤ (\d+) at a 1m", "1h / full_listing_interval", HOUR / JOBS_DEFAULTS.full_listing_interval),
    Fact("docs/scaling.md", r"active needs (\d+) pages for a full listing", "50,000 // client.PAGE_SIZE + 1", 50_000 // PAGE_SIZE + 1),
    Fact("docs/scaling.md", r"pages for a full listing and (\d+) for a changes listing", "(2,500 + 499) // client.PAGE_SIZE + 1", (2500 + 499) // PAGE_SIZE + 1),
    Fact("docs/scaling.md", r"\| account and exporter \| (\d+) \|", "account series + 3 request counts + 20 of the exporter", _account_and_exporter_series),
    Fact("docs/scaling.md", r"\| 1 in every (\d+) or \d+ collections; 1 an hour \|", "capacity_interval / 1m", JOBS_DEFAULTS.capacity_interval / MINUTE),
    Fact("docs/scaling.md", r"\| 1 in every \d+ or (\d+) collections; 1 an hour \|", "capacity_interval / 1m + 1", JOBS_DEFAULTS.capacity_interval / MINUTE + 1),
    Fact("docs/scaling.md", r"collections; (\d+) an hour \|", "1h / capacity.PROCESSORS_INTERVAL", HOUR / PROCESSORS_INTERVAL),
    Fact("docs/scaling.md", r"on average \((\d+) \u00d7 43 \+", "changes listings an hour", HOUR / MINUTE - HOUR / JOBS_DEFAULTS.full_listing_interval),
    Fact("docs/scaling.md", r"on average \(\d+ \u00d7 (\d+) \+", "40 + 2 + 1 job page", 40 + 2 + 1),
    Fact("docs/scaling.md", r"on average \(\d+ \u00d7 \d+ \+ (\d+) \u00d7", "full listings an hour", HOUR / JOBS_DEFAULTS.full_listing_interval),
    Fact("docs/scaling.md", r"on average \(\d+ \u00d7 \d+ \+ \d+ \u00d7 (\d+) =", "40 + 2 + job pages", 40 + 2 + 2000 // PAGE_SIZE + 1),
    Fact("docs/scaling.md", r"on average \(\d+ \u00d7 \d+ \+ \d+ \u00d7 \d+ = ([\d,]+) an hour", "54 * 43 + 6 * 45", 54 * 43 + 6 * (40 + 2 + 2000 // PAGE_SIZE + 1)),
    Fact("docs/scaling.md", r"\*\*≈ (\d+)\*\*, \*\*≈", "40 + 2 + 1 job page", 40 + 2 + 1),
    Fact("docs/scaling.md", r"an hour for the collections, (\d+) for the reserved units", "1h / capacity_interval", HOUR / JOBS_DEFAULTS.capacity_interval),
    Fact("docs/scaling.md", r"for the reserved units, (\d+) for the media processors", "1h / capacity.PROCESSORS_INTERVAL", HOUR / PROCESSORS_INTERVAL),
    Fact("docs/scaling.md", r"Azure AD requests and (\d+) \+ \d+ \+ \d+ \+ 1 \+ 1 =", "2,000 // client.PAGE_SIZE + 1", 2000 // PAGE_SIZE + 1),
    Fact("docs/scaling.md", r"Azure AD requests and \d+ \+ \d+ \+ \d+ \+ 1 \+ 1 = (\d+) AMS requests", "job pages + 40 + 50 + 2 capacity reads", 2000 // PAGE_SIZE + 1 + 40 + 50 + 2),
    Fact("docs/scaling.md", r"job pages \+ ≤ (\d+) read-ahead", "client.PAGE_WINDOW - 1", PAGE_WINDOW - 1),
    Fact("docs/scaling.md", r"\*\*≈ (\d+)\u2013\d+\*\*", "40 + 2 + job pages", 40 + 2 + 2000 // PAGE_SIZE + 1),
    Fact("docs/scaling.md", r"\*\*≈ \d+\u2013(\d+)\*\*", "40 + 2 + job pages + client.PAGE_WINDOW - 1", 40 + 2 + 2000 // PAGE_SIZE + PAGE_WINDOW),
    Fact("docs/scaling.md", r"The Deployment's requests \((\w+) CPU", "deployment.yaml requests.cpu", lambda: _k8s_resources()["requests"]["cpu"]),
    Fact("docs/scaling.md", r"The Deployment's requests \(\w+ CPU, (\w+)\)", "deployment.yaml requests.memory", lambda: _k8s_resources()["requests"]["memory"]),
    Fact("docs/scaling.md", r"memory limit \((\w+)\)", "deployment.yaml limits.memory", lambda: _k8s_resources()["limits"]["memory"]),
    Fact("docs/scaling.md", r"fit one account at the default `max_jobs: (\d+)`", "JobsConfig.max_jobs", JOBS_DEFAULTS.max_jobs),
    # The series of one job, per state (T tasks, E error codes), from the contract's declarations.
    Fact("docs/scaling.md", r"\| \*\*total\*\* \| \*\*(\d+)\*\* \|", "series of a Queued job", lambda: _job_series(JobState.QUEUED)),
    Fact("docs/scaling.md", r"\| \*\*total\*\* \| \*\*\d+\*\* \| \*\*(\d+) \+ \d+T\*\*", "series of a Processing job - its task's", lambda: _job_series(JobState.PROCESSING, tasks=1) - _task_series()),
    Fact("docs/scaling.md", r"\*\*\d+ \+ (\d+)T(?: \+ E)?\*\*", "series per task", _task_series),
    Fact("docs/scaling.md", r"\+ \d+T\*\* \| \*\*(\d+)\*\* \|", "series of a Finished job", lambda: _job_series(JobState.FINISHED)),
    Fact("docs/scaling.md", r"\*\*(\d+) \+ \d+T \+ E\*\*", "series of a job in Error - its task's - E", lambda: _job_series(JobState.ERROR, tasks=1, codes=1) - _task_series() - 1),
    Fact("docs/scaling.md", r"Every task whose series are exposed has (\w+),", "series per task", _task_series),
    Fact("docs/scaling.md", r"\*\*\d+ series per job\*\* plus (\w+) per task", "series per task", _task_series),
    Fact("docs/scaling.md", r"series\(account\) ≤ max_jobs \u00d7 \((\d+) \+", "series of a Finished job", lambda: _job_series(JobState.FINISHED)),
    Fact("docs/scaling.md", r"max_jobs \u00d7 \(\d+ \+ (\d+) \u00d7 tasks per job", "series per task", _task_series),
    Fact("docs/scaling.md", r"error codes per job\) \+ (\d+) \+ history", "account series + 3 request counts", lambda: _account_series() + 3),
    Fact("docs/scaling.md", r"\*\*(\d+) or \d+\*\* \|", "series of a Canceled job that never started", lambda: _job_series(JobState.CANCELED, started=False)),
    Fact("docs/scaling.md", r"\*\*\d+ or (\d+)\*\* \|", "series of a Canceled job that started", lambda: _job_series(JobState.CANCELED)),
    Fact("docs/scaling.md", r"\*\*(\d+) series per job\*\*", "series of a Finished job", lambda: _job_series(JobState.FINISHED)),
    Fact("docs/scaling.md", r"`ams_unreadable_entities` \((\d+)\)", "len(ENTITY_KINDS)", len(ENTITY_KINDS)),
    Fact("docs/scaling.md", r"about \*\*(\d+) series per account\*\*", "account series + 3 request counts", lambda: _account_series() + 3),
    # The history of one group.
    Fact("docs/scaling.md", r"`ams_jobs_ended_total` \(one per final state\) \| (\d+) \|", "len(ENDED_STATES)", len(ENDED_STATES)),
    Fact("docs/scaling.md", r"`Unknown` included\) \| (\d+) \|", "len(ERROR_CODES)", len(ERROR_CODES)),
    Fact("docs/scaling.md", r"once a job ended in it\) \| up to (\d+) \|", "len(ENDED_STATES)", len(ENDED_STATES)),
    Fact("docs/scaling.md", r"default buckets \(B = (\d+)", "len(DEFAULT_DURATION_BUCKETS)", len(DEFAULT_DURATION_BUCKETS)),
    Fact("docs/scaling.md", r"default buckets \(B = \d+, Q = (\d+)\)", "len(DEFAULT_QUEUE_WAIT_BUCKETS)", len(DEFAULT_QUEUE_WAIT_BUCKETS)),
    Fact("docs/scaling.md", r"Q = \d+\)\*\* \| \*\*(\d+)\*\*", "history series of one group", _history_series),
    Fact("docs/scaling.md", r"An account without groups has (\d+) history series", "history series of one group", _history_series),
    Fact("docs/scaling.md", r"one with 5 groups \((\d+) with `other`\)", "5 groups and other", 5 + 1),
    Fact("docs/scaling.md", r"with `other`\) ([\d,]+);", "6 * history series of one group", lambda: 6 * _history_series()),
    Fact("docs/scaling.md", r"the most an account can have, (\d+) groups", "accounts.MAX_GROUPS", MAX_GROUPS),
    Fact("docs/scaling.md", r"groups and (\d+) bounds in each histogram", "accounts.MAX_BUCKETS", MAX_BUCKETS),
    Fact("docs/scaling.md", r"in each histogram, is (\d+) \u00d7", "accounts.MAX_GROUPS + other", MAX_GROUPS + 1),
    Fact("docs/scaling.md", r"in each histogram, is \d+ \u00d7 (\d+) =", "history series of one group at MAX_BUCKETS", lambda: _history_series(MAX_BUCKETS)),
    Fact("docs/scaling.md", r"in each histogram, is \d+ \u00d7 \d+ = ([\d,]+)\.", "the most history series of an account", lambda: (MAX_GROUPS + 1) * _history_series(MAX_BUCKETS)),
    Fact("docs/scaling.md", r"as a series of its own: (\d+) more per group", "_created lines of one group", lambda: _history_series(created=True)),
    Fact("docs/scaling.md", r"more per group, (\d+) with the default buckets", "history series and _created lines of one group", lambda: _history_series() + _history_series(created=True)),
    Fact("docs/scaling.md", r"The history costs the same at either size, (\d+) series per group", "history series of one group", _history_series),
    # The worked example's series.
    Fact("docs/scaling.md", r"\| 100 queued \u00d7 (\d+) \|", "series of a Queued job", lambda: _job_series(JobState.QUEUED)),
    Fact("docs/scaling.md", r"\| 100 queued \u00d7 \d+ \| ([\d,]+) \|", "100 * series of a Queued job", lambda: 100 * _job_series(JobState.QUEUED)),
    Fact("docs/scaling.md", r"\| 40 processing \u00d7 \((\d+) \+ \d+\)", "series of a Processing job - its task's", lambda: _job_series(JobState.PROCESSING, tasks=1) - _task_series()),
    Fact("docs/scaling.md", r"\| 40 processing \u00d7 \(\d+ \+ (\d+)\)", "series per task", _task_series),
    Fact("docs/scaling.md", r"\| 40 processing \u00d7 \(\d+ \+ \d+\) \| ([\d,]+) \|", "40 * series of a Processing job of one task", lambda: 40 * _job_series(JobState.PROCESSING, tasks=1)),
    Fact("docs/scaling.md", r"\| 1,800 finished \u00d7 (\d+) \|", "series of a Finished job", lambda: _job_series(JobState.FINISHED)),
    Fact("docs/scaling.md", r"\| 1,800 finished \u00d7 \d+ \| ([\d,]+) \|", "1,800 * series of a Finished job", lambda: 1800 * _job_series(JobState.FINISHED)),
    Fact("docs/scaling.md", r"\| 50 failed \u00d7 \((\d+) \+ \d+ \+ 1\)", "series of a job in Error - its task's - E", lambda: _job_series(JobState.ERROR, tasks=1, codes=1) - _task_series() - 1),
    Fact("docs/scaling.md", r"\| 50 failed \u00d7 \(\d+ \+ (\d+) \+ 1\)", "series per task", _task_series),
    Fact("docs/scaling.md", r"\| 50 failed \u00d7 \(\d+ \+ \d+ \+ 1\) \| ([\d,]+) \|", "50 * series of a job in Error, one task, one code", lambda: 50 * _job_series(JobState.ERROR, tasks=1, codes=1)),
    Fact("docs/scaling.md", r"\| 10 canceled \u00d7 (\d+) \|", "series of a Canceled job that started", lambda: _job_series(JobState.CANCELED)),
    Fact("docs/scaling.md", r"\| 10 canceled \u00d7 \d+ \| ([\d,]+) \|", "10 * series of a Canceled job that started", lambda: 10 * _job_series(JobState.CANCELED)),
    Fact("docs/scaling.md", r"\| history, no `groups` \(`other` only\) \| (\d+) \|", "history series of one group", _history_series),
    Fact("docs/scaling.md", r"\*\*≈ ([\d,]+)\*\* \| \*\*≈", "the worked example's series", lambda: round(_worked_example_series(), -3)),
    # The shorter finished_window.
    Fact("docs/scaling.md", r"at the default `finished_window: (\d+)h`", "JobsConfig.finished_window", JOBS_DEFAULTS.finished_window / HOUR),
    Fact("docs/scaling.md", r"of which (\d+) % have ended", "ENDED_SHARE", ENDED_SHARE * 100),
    Fact("docs/scaling.md", r"the per-job series stop at ([\d,]+) jobs", "JobsConfig.max_jobs", JOBS_DEFAULTS.max_jobs),
    Fact("docs/scaling.md", r"and (\d+) series per ended job", "series of a Finished job", lambda: _job_series(JobState.FINISHED)),
    Fact("docs/scaling.md", r"Going from (\d+)h to \d+h", "JobsConfig.finished_window", JOBS_DEFAULTS.finished_window / HOUR),
    Fact("docs/scaling.md", r"Going from \d+h to (\d+)h", "SHORT_WINDOW", SHORT_WINDOW / HOUR),
    Fact("docs/scaling.md", r"keeps one ended job in (\d+)", "finished_window / SHORT_WINDOW", JOBS_DEFAULTS.finished_window / SHORT_WINDOW),
    Fact("docs/scaling.md", r"requires `finished_window` ≥ (\d+)h \(\[alerting", "rules.yml: account:ams_jobs_failed:count1h window", _hour_window),
    *_window_facts(10_000),
    *_window_facts(50_000),
    # -- docs/operations.md
    Fact("docs/operations.md", r"only when no collection is younger than (\d+) s", "server.STATUS_PAGE_MAX_AGE", STATUS_PAGE_MAX_AGE),
    Fact("docs/operations.md", r"the longest account `timeout` plus (\d+) s", "cli.SHUTDOWN_MARGIN", SHUTDOWN_MARGIN),
    Fact("docs/operations.md", r"cut -c1-(\d+)`", "history_file: the hash in the file name", _history_hash_digits),
    Fact("docs/operations.md", r"once per `jobs\.capacity_interval` \(default (\d+)m\)", "JobsConfig.capacity_interval", JOBS_DEFAULTS.capacity_interval / MINUTE),
    Fact("docs/operations.md", r"A failed processors read is tried again after (\d+) minutes", "capacity.PROCESSORS_RETRY", PROCESSORS_RETRY / MINUTE),
    # -- docs/security.md
    Fact("docs/security.md", r"A secret under (\d+) characters is not searched for", "redact._MIN_NEEDLE", _MIN_NEEDLE),
    Fact("docs/security.md", r"quoted only when it looks like a key \(at most (\d+) characters", "yamlio: longest unknown key quoted", _longest_quoted_key),
    Fact("docs/security.md", r"web-configuration files over (\d+) MiB are refused", "yamlio.MAX_CONFIG_SIZE", MAX_CONFIG_SIZE / MiB),
    Fact("docs/security.md", r"`client_ca_file` \| yes; required by the (\w+) verifying types", "len(webconfig._VERIFYING_AUTH)", len(_VERIFYING_AUTH)),
    Fact("docs/security.md", r"the (\w+) headers exporter-toolkit allows", "len(webconfig.ALLOWED_HEADERS)", len(ALLOWED_HEADERS)),
    Fact("docs/security.md", r"a pool of (\d+) worker threads", "httpserver.WORKERS", WORKERS),
    Fact("docs/security.md", r"`--web\.max-connections`, default (\d+);", "httpserver.MAX_CONNECTIONS", MAX_CONNECTIONS),
    Fact("docs/security.md", r"TLS handshake \| (\d+) s from the accept", "protect.HANDSHAKE_TIMEOUT", HANDSHAKE_TIMEOUT),
    Fact("docs/security.md", r"request head and body \| complete within (\d+) s", "httpserver.HEADER_TIMEOUT", HEADER_TIMEOUT),
    Fact("docs/security.md", r"between requests \| (\d+) s idle", "httpserver.IDLE_TIMEOUT", IDLE_TIMEOUT),
    Fact("docs/security.md", r"writing an answer \| (\d+) s", "httpserver.WRITE_TIMEOUT", WRITE_TIMEOUT),
    Fact("docs/security.md", r"request head \| (\d+) KiB", "httpserver.MAX_HEAD_BYTES", MAX_HEAD_BYTES / KiB),
    Fact("docs/security.md", r"at most (\d+) fields \(431\)", "httpserver.MAX_HEADERS", MAX_HEADERS),
    Fact("docs/security.md", r"request body \| read up to (\d+) KiB", "httpserver.MAX_BODY_BYTES", MAX_BODY_BYTES / KiB),
    Fact("docs/security.md", r"runs as uid/gid (\d+)", "Dockerfile USER", _image_uid),
    # -- docs/reliability.md
    Fact("docs/reliability.md", r"a 64 MiB job page \(far beyond (\d+) jobs\)", "client.PAGE_SIZE", PAGE_SIZE),
    Fact("docs/reliability.md", r"reading stops at (\d+) MiB", "http.DEFAULT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES / MiB),
    Fact("docs/reliability.md", r"remembering the chain \(at most (\d+) redirects\)", "client.MAX_REDIRECTS", MAX_REDIRECTS),
    Fact("docs/reliability.md", r"Bodies are read under a (\d+) MiB cap", "http.DEFAULT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES / MiB),
    Fact("docs/reliability.md", r"names over (\d+) characters cut to", "odata.MAX_NAME_CHARS", MAX_NAME_CHARS),
    Fact("docs/reliability.md", r"characters cut to (\d+) with", "odata.MAX_NAME_CHARS", MAX_NAME_CHARS),
    Fact("docs/reliability.md", r"one over (\w+) years is derived", "odata._MAX_RUNNING_MS", _MAX_RUNNING_MS / (365.25 * 86_400_000)),
    Fact("docs/reliability.md", r"keep each account's `timeout` \(default (\d+) s\)", "accounts.DEFAULT_TIMEOUT", DEFAULT_TIMEOUT),
    Fact("docs/reliability.md", r"The suite runs a short version \(about (\d+) s\)", "tests.support.soak.SHORT_SECONDS", soak.SHORT_SECONDS),
    Fact("docs/reliability.md", r"each is active for (\d+) scrapes", "tests.support.soak.EPISODE_SCRAPES", soak.EPISODE_SCRAPES),
    Fact("docs/reliability.md", r"followed by (\d+) calm ones", "tests.support.soak.CALM_SCRAPES", soak.CALM_SCRAPES),
    Fact("docs/reliability.md", r"The scrape interval is ([\d.]+) s", "tests.support.soak.SCRAPE_INTERVAL", soak.SCRAPE_INTERVAL),
    Fact("docs/reliability.md", r"with a (\d+) s scrape timeout", "tests.support.soak.SCRAPE_TIMEOUT", soak.SCRAPE_TIMEOUT),
    # -- docs/alerting.md
    Fact("docs/alerting.md", r"Resolves (\d+) min after the job leaves", "the rules' last_over_time window", lambda: _lookback(success=False)),
    Fact("docs/alerting.md", r"`finished_window` \((\d+)h by default\)", "JobsConfig.finished_window", JOBS_DEFAULTS.finished_window / HOUR),
    Fact("docs/alerting.md", r"which requires `finished_window` ≥ (\d+)h", "rules.yml: account:ams_jobs_failed:count1h window", _hour_window),
    Fact("docs/alerting.md", r"≥ \d+h \(the default is (\d+)h\)", "JobsConfig.finished_window", JOBS_DEFAULTS.finished_window / HOUR),
    Fact("docs/alerting.md", r"through `last_over_time\(\.\.\.\[(\d+)m\]\)`", "the rules' last_over_time window", lambda: _lookback(success=False)),
    Fact("docs/alerting.md", r"the last value seen in the past (\w+) minutes", "the rules' last_over_time window", lambda: _lookback(success=False)),
    Fact("docs/alerting.md", r"a job's state set keeps all (\w+) series", "len(JobState)", len(JobState)),
    Fact("docs/alerting.md", r"stays in the rules for (\w+) more minutes", "the rules' last_over_time window", lambda: _lookback(success=False)),
    Fact("docs/alerting.md", r"`AMSJobFailed` resolves (\w+) minutes after", "the rules' last_over_time window", lambda: _lookback(success=False)),
    Fact("docs/alerting.md", r"a gap longer than (\w+) minutes", "the rules' last_over_time window", lambda: _lookback(success=False)),
    Fact("docs/alerting.md", r"`last_over_time\(ams_last_success_timestamp_seconds\[(\d+)h\]\)`", "rules.yml: the last success's window", lambda: _lookback(success=True) / MINUTE),
    Fact("docs/alerting.md", r"`ams_up` seen in the last (\w+) minutes", "the rules' last_over_time window", lambda: _lookback(success=False)),
    # -- docs/runbooks.md
    Fact("docs/runbooks.md", r"the state enum (\d [A-Za-z]+(?:, \d [A-Za-z]+)*),", "JobState", ", ".join(f"{s.value} {s.label}" for s in JobState)),
    Fact("docs/runbooks.md", r"http://<exporter>:(\d+)/", "cli.DEFAULT_LISTEN_ADDRESS", PORT),
    Fact("docs/runbooks.md", r"`x-ms-version: ([\d.]+)`", "client.API_VERSION", API_VERSION),
    Fact("docs/runbooks.md", r"state Error \((\d)\)", "JobState.ERROR", JobState.ERROR.value),
    Fact("docs/runbooks.md", r"resolves by itself (\w+) minutes after", "the rules' last_over_time window", lambda: _lookback(success=False)),
    Fact("docs/runbooks.md", r"`finished_window`, default (\d+)h, ago", "JobsConfig.finished_window", JOBS_DEFAULTS.finished_window / HOUR),
    Fact("docs/runbooks.md", r"Queued \((\d)\) or Scheduled", "JobState.QUEUED", JobState.QUEUED.value),
    Fact("docs/runbooks.md", r"or Scheduled \((\d)\) for", "JobState.SCHEDULED", JobState.SCHEDULED.value),
    Fact("docs/runbooks.md", r"Scheduled \(\d\) for longer than (\d+) minutes", "alerts.yml: AMSJobStuckQueued expr", lambda: _alert_expr("AMSJobStuckQueued", r"\) > ([\d *]+)") / MINUTE),
    Fact("docs/runbooks.md", r"Scheduled \(\d\) for longer than \d+ minutes \(confirmed for (\d+)", "alerts.yml: AMSJobStuckQueued for", lambda: _alert_for("AMSJobStuckQueued")),
    Fact("docs/runbooks.md", r"A job is Processing \((\d)\)", "JobState.PROCESSING", JobState.PROCESSING.value),
    Fact("docs/runbooks.md", r"has run for more than (\d+) minutes, and its progress", "alerts.yml: AMSJobNoProgress expr", lambda: _alert_expr("AMSJobNoProgress", r"\) > ([\d *]+)") / MINUTE),
    Fact("docs/runbooks.md", r"has not changed in the last (\d+) minutes", "alerts.yml: AMSJobNoProgress changes() window", lambda: _alert_expr("AMSJobNoProgress", r"changes\(ams_job_progress_ratio\[(\d+)m\]\)")),
    Fact("docs/runbooks.md", r"in the last \d+ minutes \(confirmed for (\d+) minutes\)", "alerts.yml: AMSJobNoProgress for", lambda: _alert_for("AMSJobNoProgress")),
    Fact("docs/runbooks.md", r"The alert needs (\d+) minutes of history", "alerts.yml: AMSJobNoProgress offset", lambda: _alert_expr("AMSJobNoProgress", r"offset (\d+)m")),
    Fact("docs/runbooks.md", r"can legitimately stall for more than (\d+) minutes", "alerts.yml: AMSJobNoProgress changes() window", lambda: _alert_expr("AMSJobNoProgress", r"changes\(ams_job_progress_ratio\[(\d+)m\]\)")),
    Fact("docs/runbooks.md", r"Processing for more than (\d+) hours", "alerts.yml: AMSJobRunningTooLong expr", lambda: _alert_expr("AMSJobRunningTooLong", r"\) > ([\d *]+)") / HOUR),
    Fact("docs/runbooks.md", r"for more than \d+ hours \(confirmed for (\d+) minutes\)", "alerts.yml: AMSJobRunningTooLong for", lambda: _alert_for("AMSJobRunningTooLong")),
    Fact("docs/runbooks.md", r"in Canceling \((\d)\) for more", "JobState.CANCELING", JobState.CANCELING.value),
    Fact("docs/runbooks.md", r"in Canceling \(\d\) for more than (\d+) minutes", "alerts.yml: AMSJobStuckCanceling for", lambda: _alert_for("AMSJobStuckCanceling")),
    Fact("docs/runbooks.md", r"move the job to Canceled \((\d)\)", "JobState.CANCELED", JobState.CANCELED.value),
    Fact("docs/runbooks.md", r"More than (\d+) % of the jobs of an account", "alerts.yml: AMSJobErrorRateHigh ratio", lambda: _alert_expr("AMSJobErrorRateHigh", r"ratio1h > ([\d.]+)") * 100),
    Fact("docs/runbooks.md", r"at least (\d+) jobs ended in that hour", "alerts.yml: AMSJobErrorRateHigh count", lambda: _alert_expr("AMSJobErrorRateHigh", r"count1h >= (\d+)")),
    Fact("docs/runbooks.md", r"ended in that hour, for (\d+) minutes", "alerts.yml: AMSJobErrorRateHigh for", lambda: _alert_for("AMSJobErrorRateHigh")),
    Fact("docs/runbooks.md", r"has failed for (\d+) minutes \(`ams_up` 0", "alerts.yml: AMSAccountDown for", lambda: _alert_for("AMSAccountDown")),
    Fact("docs/runbooks.md", r"keep the last known values for (\w+) minutes", "the rules' last_over_time window", lambda: _lookback(success=False)),
    Fact("docs/runbooks.md", r"collected the account successfully for more than (\d+) minutes", "alerts.yml: AMSAccountDataStale expr", lambda: _alert_expr("AMSAccountDataStale", r"> ([\d *]+)") / MINUTE),
    Fact("docs/runbooks.md", r"The age is also dropped (\w+) minutes after", "the rules' last_over_time window", lambda: _lookback(success=False)),
    Fact("docs/runbooks.md", r"`jobs\.max_jobs` cap \(default (\d+)\)", "JobsConfig.max_jobs", JOBS_DEFAULTS.max_jobs),
    Fact("docs/runbooks.md", r"cap \(default \d+\) for (\d+) minutes", "alerts.yml: AMSJobsDropped for", lambda: _alert_for("AMSJobsDropped")),
    Fact("docs/runbooks.md", r"about 15 series \((\w+) for the state set", "len(JobState)", len(JobState)),
    Fact("docs/runbooks.md", r"For (\d+) minutes, every collection of the account has met", "alerts.yml: AMSUnreadableEntities for", lambda: _alert_for("AMSUnreadableEntities")),
    Fact("docs/runbooks.md", r"a state code outside the (\w+) documented ones", "len(JobState)", len(JobState)),
    Fact("docs/runbooks.md", r"for the scrape job `ams`\) for (\d+) minutes", "alerts.yml: AMSExporterDown for", lambda: _alert_for("AMSExporterDown")),
    Fact("docs/runbooks.md", r"for (\d+) minutes no reload has succeeded since", "alerts.yml: AMSExporterConfigReloadFailed for", lambda: _alert_for("AMSExporterConfigReloadFailed")),
    Fact("docs/operations.md", r"none has succeeded for (\d+) minutes", "alerts.yml: AMSExporterConfigReloadFailed for", lambda: _alert_for("AMSExporterConfigReloadFailed")),
    # -- docs/multi-target.md
    Fact("docs/multi-target.md", r"ams-exporter:(\d+)", "cli.DEFAULT_LISTEN_ADDRESS", PORT),
    # -- docs/performance.md (the prose; the marked section is written by the benchmark)
    Fact("docs/performance.md", r"python -m bench\.scrape # ([\d,]+(?: / [\d,]+)*) jobs", "bench.scrape --sizes default", lambda: " / ".join(f"{n:,}" for n in bench_parser().get_default("sizes"))),
    Fact("docs/performance.md", r"jobs, (\d+ and \d+) ms", "bench.scrape --latencies default", lambda: " and ".join(map(str, bench_parser().get_default("latencies")))),
    Fact("docs/performance.md", r"the default scenario: (\d+) days of jobs", "ams-emulator --history-days default", lambda: emulator_parser().get_default("history_days")),
    Fact("docs/performance.md", r"(\d+) % of them active", "ScenarioConfig.active_fraction", SCENARIO.active_fraction * 100),
    Fact("docs/performance.md", r"active with (\d+)\u2013\d+ tasks each", "ScenarioConfig.tasks_min", SCENARIO.tasks_min),
    Fact("docs/performance.md", r"active with \d+\u2013(\d+) tasks each", "ScenarioConfig.tasks_max", SCENARIO.tasks_max),
    Fact("docs/performance.md", r"(\d+) % ended in the last", "ScenarioConfig.recent_fraction", SCENARIO.recent_fraction * 100),
    Fact("docs/performance.md", r"ended in the last (\d+) hours", "scenario.RECENT_WINDOW", RECENT_WINDOW / HOUR),
    Fact("docs/performance.md", r"the default `finished_window` of (\d+) h", "JobsConfig.finished_window", JOBS_DEFAULTS.finished_window / HOUR),
    Fact("docs/performance.md", r"`finished_window` of \d+ h: (\d+) % of the jobs", "ScenarioConfig active + recent fractions", (SCENARIO.active_fraction + SCENARIO.recent_fraction) * 100),
    Fact("docs/performance.md", r"`\$top=(\d+)`, `\$skip` until a short page", "bench.baseline.PAGE_SIZE", baseline.PAGE_SIZE),
    Fact("docs/performance.md", r"the first page with fewer than (\d+) jobs", "client.PAGE_SIZE", PAGE_SIZE),
    Fact("docs/performance.md", r"15,000 in-scope jobs therefore needs (\d+) page requests", "15,000 // client.PAGE_SIZE + 1", 15_000 // PAGE_SIZE + 1),
    Fact("docs/performance.md", r"⌈15,000 ÷ (\d+)⌉", "client.PAGE_SIZE", PAGE_SIZE),
    Fact("docs/performance.md", r"⌊in scope ÷ (\d+)⌋ \+ 1 pages plus", "client.PAGE_SIZE", PAGE_SIZE),
    Fact("docs/performance.md", r"`--repeat` sets the steady-state scrapes per row \(default (\d+)\)", "bench.scrape --repeat default", lambda: bench_parser().get_default("repeat")),
    Fact("docs/performance.md", r"`--naive-repeat` the naive peer's \(default (\d+),", "bench.scrape --naive-repeat default", lambda: bench_parser().get_default("naive_repeat")),
    Fact("docs/performance.md", r"it is run against \(default ([\d,]+);", "bench.scrape --naive-max-jobs default", lambda: bench_parser().get_default("naive_max_jobs")),
    Fact("docs/performance.md", r"reads the exporter's log every (\d+) ms", "bench.processes.LISTENING_POLL_SECONDS", processes.LISTENING_POLL_SECONDS * 1000),
    Fact("docs/performance.md", r"Judged as ratios within one run, at ([\d,]+) and", "bench.report.TARGET_SIZES[0]", report.TARGET_SIZES[0]),
    Fact("docs/performance.md", r"Judged as ratios within one run, at [\d,]+ and ([\d,]+) jobs", "bench.report.TARGET_SIZES[-1]", report.TARGET_SIZES[-1]),
    Fact("docs/performance.md", r"the ([\d,]+)-job row is a stress row", "bench.scrape --sizes default, the largest", lambda: max(bench_parser().get_default("sizes"))),
    Fact("docs/performance.md", r"makes at most (\S+) of the baseline's AMS requests", "bench.report.REQUESTS_RATIO", lambda: "⅓" if report.REQUESTS_RATIO == 1 / 3 else f"{report.REQUESTS_RATIO:g}"),
    Fact("docs/performance.md", r"the baseline's AMS requests at ([\d,]+) jobs", "bench.report.TARGETS_AT", report.TARGETS_AT),
    Fact("docs/performance.md", r"at most ([\d.]+)\u00d7 the baseline's wall time with 20 ms", "bench.report.WALL_RATIO_LATENCY", report.WALL_RATIO_LATENCY),
    Fact("docs/performance.md", r"wall time with (\d+) ms latency and at most", "bench.report.LATENCY_MS", report.LATENCY_MS),
    Fact("docs/performance.md", r"and at most ([\d.]+)\u00d7 without latency", "bench.report.WALL_RATIO_LOOPBACK", report.WALL_RATIO_LOOPBACK),
    Fact("docs/performance.md", r"at ([\d,]+) jobs without latency the naive peer", "bench.report.TARGETS_AT", report.TARGETS_AT),
    Fact("docs/performance.md", r"the naive peer takes at least (\d+)\u00d7 the exporter's wall time", "bench.report.NAIVE_WALL_RATIO", report.NAIVE_WALL_RATIO),
    Fact("docs/performance.md", r"wall time and (\d+)\u00d7 its CPU time", "bench.report.NAIVE_CPU_RATIO", report.NAIVE_CPU_RATIO),
    Fact("docs/performance.md", r"encoder at least (\d+)\u00d7 the exporter's steady render", "bench.report.ENCODER_RATIO", report.ENCODER_RATIO),
    Fact("docs/performance.md", r"peak RSS stays under (\d+) MB", "bench.report.PEAK_RSS_LIMIT", report.PEAK_RSS_LIMIT / report.MB),
    Fact("docs/performance.md", r"those that ended in the last\n?\s*(\d+) minutes", "poller.CHANGES_OVERLAP_SECONDS", CHANGES_OVERLAP_SECONDS / MINUTE),
    Fact("docs/performance.md", r"scenario's 2,500 active jobs \((\d+) % of 50,000", "ScenarioConfig.active_fraction", SCENARIO.active_fraction * 100),
    Fact("docs/performance.md", r"scenario's ([\d,]+) active jobs", "50,000 * active_fraction", 50_000 * SCENARIO.active_fraction),
    Fact("docs/performance.md", r"cuts the job pages from (\d+) to \d+", "7,500 in scope // client.PAGE_SIZE + 1", int(50_000 * (SCENARIO.active_fraction + SCENARIO.recent_fraction)) // PAGE_SIZE + 1),
    Fact("docs/performance.md", r"cuts the job pages from \d+ to (\d+)", "2,500 active // client.PAGE_SIZE + 1", int(50_000 * SCENARIO.active_fraction) // PAGE_SIZE + 1),
    Fact("docs/performance.md", r"one read of each of the (\w+) capacity sets", "bench.scrape.CAPACITY_READS", CAPACITY_READS),
]
# fmt: on


def _stated(text: str) -> float:
    return WORDS.get(text) or float(text.replace(",", ""))


def problems(fact: Fact, prose: str) -> list[str]:
    """What is wrong with ``fact`` in ``prose``: its sentence is gone, or states another value."""
    expected = fact.value() if callable(fact.value) else fact.value
    shown = f"{expected:g}" if isinstance(expected, float) else expected
    matches = list(re.finditer(fact.pattern, prose))
    if not matches:
        return [
            f"{fact.doc} no longer has a sentence matching {fact.pattern!r}, which stated "
            f"{fact.source} = {shown}: if it was reworded, update its row in FACTS"
        ]
    found = []
    for match in matches:
        text = match.group(1)
        if isinstance(expected, str):
            same = text == expected
        else:
            try:
                same = math.isclose(_stated(text), expected)
            except ValueError:
                same = False
        if not same:
            found.append(
                f"{fact.doc} states {text!r} in {match.group(0)!r}, but {fact.source} is {shown}"
            )
    return found


@pytest.mark.parametrize("fact", FACTS, ids=[f"{fact.doc}:{fact.source}" for fact in FACTS])
def test_the_doc_states_the_number_of_the_code(fact: Fact) -> None:
    found = problems(fact, _prose(fact.doc))
    assert not found, "\n".join(found)


def test_a_drifted_number_fails_every_row() -> None:
    """Each row compares what it captures: the doc with that number changed fails it."""
    for fact in FACTS:
        prose = _prose(fact.doc)
        match = re.search(fact.pattern, prose)
        if match is None:
            continue  # a missing sentence fails the test above
        # Every digit one up (0.1.0 becomes 1.2.1, 15s 26s), so that the text keeps its form.
        number = re.sub(r"\d", lambda digit: str((int(digit[0]) + 1) % 10), match.group(1))
        drifted = (
            prose[: match.start(1)]
            + (number if number != match.group(1) else "99")
            + prose[match.end(1) :]
        )
        assert problems(fact, drifted), f"{fact.doc}: the row for {fact.source} cannot fail"
