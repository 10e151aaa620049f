"""The composition root: from a :class:`Config` to a poller, an app and a listening server.

``ams-exporter``, the tests and the benchmarks all wire the exporter here, so what they run is what
users run. ``--demo`` is wired here too: it is the only place the exporter uses the emulator.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.ams.auth import token_provider_for
from exporter.ams.client import POOL_SIZE, TASK_CONCURRENCY, AmsClient
from exporter.ams.http import RequestCounter, UpstreamSession
from exporter.collect.history import JobHistory, resumed
from exporter.collect.history_file import HistoryFile
from exporter.collect.poller import AccountPoller, Poller
from exporter.config.accounts import parse_config
from exporter.config.model import AccountConfig, Config
from exporter.version import running
from exporter.web.httpserver import HttpServer
from exporter.web.server import ExporterApp, start_server
from exporter.web.webconfig import WebConfig

USER_AGENT = f"ams-exporter/{__version__}"
DEMO_SECRET_VARIABLE = "AMS_DEMO_CLIENT_SECRET"
# A new job every minute and two-minute tasks: progress visibly moves between two scrapes.
DEMO_ARRIVALS_PER_HOUR = 60.0
DEMO_MEAN_TASK_SECONDS = 120.0
DEMO_MAX_JOBS = 1_000_000
# The demo's history groups, by the kinds of name the emulator gives its jobs.
DEMO_GROUPS = (
    {"name": "uhd", "name_regex": "2160p"},
    {"name": "news", "name_regex": "newscast|interview"},
    {"name": "events", "name_regex": "keynote|webinar|concert|town-hall"},
)


def build_poller(config: Config, counter: RequestCounter, storage: Path | None = None) -> Poller:
    """One :class:`AccountPoller` per configured account, each with its own sessions and tokens;
    with ``storage`` (``--storage.path``, prepared), each keeps its history in a file there."""
    return Poller([_account_poller(account, counter, storage) for account in config.accounts])


def _account_poller(
    account: AccountConfig,
    counter: RequestCounter,
    storage: Path | None,
    previous: JobHistory | None = None,
) -> AccountPoller:
    aad = UpstreamSession(
        account.name, "aad", counter, account.ca_file, account.timeout, USER_AGENT
    )
    # As many pooled AMS connections as the client has requests in flight: pages and tasks.
    ams = UpstreamSession(
        account.name, "ams", counter, account.ca_file, account.timeout, USER_AGENT, POOL_SIZE
    )
    client = AmsClient(account, token_provider_for(account, aad), ams, TASK_CONCURRENCY)
    history_file = None if storage is None else HistoryFile(storage, account.name)
    history = _history(account, history_file, previous)
    return AccountPoller(account, client, history=history, history_file=history_file)


def _history(
    account: AccountConfig, history_file: HistoryFile | None, previous: JobHistory | None
) -> JobHistory:
    """The account's history: the running one when only other keys changed on a reload; one
    that goes on from the running one's state (counters at zero) when its groups or buckets
    changed; else one from the history file, or a fresh one that counts from now."""
    now = time.time()
    jobs = account.jobs
    if previous is not None:
        with previous.lock:
            old = previous.jobs
            if (old.groups, old.history) == (jobs.groups, jobs.history):
                previous.jobs = jobs
                return previous
            return resumed(jobs, now, previous.state, account.name)
    state = None if history_file is None else history_file.load(now)
    if state is None:
        return JobHistory(jobs, now)
    return resumed(jobs, now, state, account.name)


@dataclass
class Exporter:
    """A wired exporter that does not listen yet: its poller, request counter and WSGI app."""

    config: Config
    poller: Poller
    counter: RequestCounter
    app: ExporterApp = field(repr=False)
    storage: Path | None = None

    @property
    def default_timeout(self) -> float:
        return _default_timeout(self.config)

    def apply(self, config: Config) -> Changes:
        """Poll ``config``'s accounts from now on, keeping what did not change.

        An account whose configuration is equal to the running one keeps its poller, with its
        token cache and its memory (tasks of failed jobs, the date-filter fallback), and its next
        listing is a full one; an added or
        changed account gets a new one; the pollers of removed and changed accounts are closed,
        and the request counts of removed accounts are dropped with their series. A changed
        account keeps its history (see :func:`_history`); a removed one's history goes with it.
        """
        running = {poller.config.name: poller for poller in self.poller.pollers}
        pollers, changes = [], Changes()
        for account in config.accounts:
            current = running.get(account.name)
            if current is not None and current.config == account:
                current.list_everything_next()
                pollers.append(current)
                changes.kept.append(account.name)
                continue
            previous = None if current is None else current.history
            pollers.append(_account_poller(account, self.counter, self.storage, previous))
            (changes.changed if current is not None else changes.added).append(account.name)
        self.poller.replace(pollers)  # it closes the dropped pollers
        wanted = {account.name for account in config.accounts}
        changes.removed = [name for name in running if name not in wanted]
        self.counter.count_only(wanted)
        self.config = config
        self.app.default_timeout = _default_timeout(config)
        return changes

    def close(self) -> None:
        self.poller.close()


@dataclass
class Changes:
    """What applying a configuration did to the accounts, by name."""

    kept: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{len(names)} {what}" for what, names in vars(self).items()]
        return ", ".join(parts)


def build_exporter(
    config: Config, *, telemetry_path: str = "/metrics", storage: Path | None = None
) -> Exporter:
    """The poller and the app for ``config``, as ``ams-exporter`` runs them; ``storage`` is the
    ``--storage.path`` directory, already prepared (see
    :func:`~exporter.collect.history_file.prepare_directory`)."""
    counter = RequestCounter()
    poller = build_poller(config, counter, storage)
    app = ExporterApp(
        poller,
        counter,
        build=running(),
        telemetry_path=telemetry_path,
        default_timeout=_default_timeout(config),
    )
    return Exporter(config, poller, counter, app, storage)


def _default_timeout(config: Config) -> float:
    """The scrape budget when Prometheus sends none: the longest account ``timeout``."""
    return max(account.timeout for account in config.accounts)


def listen(
    exporter: Exporter,
    address: str | Sequence[str],
    web_config: WebConfig | None = None,
    **limits: Any,
) -> HttpServer:
    """Serve ``exporter`` on ``address``, or on each of several, in background threads.

    Raises ``OSError`` or ``ValueError``; a :class:`~exporter.web.listen.ListenError` names the
    address. ``limits`` are :func:`~exporter.web.server.start_server`'s: ``max_connections`` and
    timeouts.
    """
    addresses = [address] if isinstance(address, str) else list(address)
    return start_server(exporter.app, addresses, web_config, **limits)


@contextlib.contextmanager
def serving(
    config: Config,
    address: str | Sequence[str] = "127.0.0.1:0",
    web_config: WebConfig | None = None,
    *,
    telemetry_path: str = "/metrics",
    storage: Path | None = None,
    **limits: Any,
) -> Iterator[tuple[Exporter, HttpServer]]:
    """Wire and serve ``config`` until the block ends; then stop the server and the poller."""
    exporter = build_exporter(config, telemetry_path=telemetry_path, storage=storage)
    try:
        server = listen(exporter, address, web_config, **limits)
        try:
            yield exporter, server
        finally:
            server.shutdown()
            server.server_close()
    finally:
        exporter.close()


@dataclass(frozen=True)
class Demo:
    """The running ``--demo`` emulator, seen from the exporter: its config, endpoint and stop."""

    config: Config
    endpoint: str
    stop: Callable[[], None]


def start_demo(jobs: int) -> Demo:
    """Start the emulator and a config with one account, ``demo``, pointed at it.

    The emulator's clock runs at real speed, because the exporter measures ages and durations on
    the wall clock; the demo is kept lively by frequent arrivals and short tasks instead.
    """
    from ams_emulator import Emulator, exporter_config

    emulator = Emulator(
        jobs=jobs,
        speed=1.0,
        arrivals_per_hour=DEMO_ARRIVALS_PER_HOUR,
        mean_task_seconds=DEMO_MEAN_TASK_SECONDS,
    )
    emulator.start()
    try:
        entry = emulator.account_entry(
            "demo", secret_variable=DEMO_SECRET_VARIABLE, jobs={"groups": list(DEMO_GROUPS)}
        )
        text = exporter_config(entry)
        config = parse_config(text, {DEMO_SECRET_VARIABLE: emulator.client_secret}, source="--demo")
    except BaseException:
        emulator.stop()
        raise
    return Demo(config, emulator.account_endpoint, emulator.stop)
