"""``ams-exporter``: flags, logging, and the process's life (the parts are wired in ``wiring``).

``--demo`` starts the built-in AMS v2 emulator on loopback and points one account, ``demo``, at it, so
that a newcomer sees live metrics without an Azure account or a config file.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from exporter import __version__
from exporter.allocator import return_large_blocks
from exporter.collect.history_file import StorageError, prepare_directory
from exporter.collect.poller import Poller
from exporter.config.accounts import load_config
from exporter.config.describe import describe_config
from exporter.config.model import Config
from exporter.deadline import Deadline
from exporter.errors import ConfigError
from exporter.lifecycle import Reloader
from exporter.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from exporter.redact import redact
from exporter.version import running
from exporter.web.httpserver import MAX_CONNECTIONS
from exporter.web.listen import ListenError, format_address
from exporter.web.webconfig import WebConfig, load_web_config
from exporter.wiring import DEMO_MAX_JOBS, Demo, build_exporter, listen, start_demo

log = logging.getLogger("exporter")

# How long the main thread waits for a signal before it looks again (see _run_until_stopped).
SIGNAL_POLL_SECONDS = 0.5

DEFAULT_LISTEN_ADDRESS = ":10267"
# Seconds a stopping exporter gives a scrape beyond the longest collection to be written.
SHUTDOWN_MARGIN = 2.0
# Paths the server answers besides the telemetry path, and those kept for routes to come
# (Prometheus-style health and reload, a multi-target probe): the telemetry path must be none.
RESERVED_PATHS = ("/", "/healthz", "/readyz", "/-/healthy", "/-/ready", "/-/reload", "/probe")


class _Parser(argparse.ArgumentParser):
    """A usage error is a log line (logging is set up before the flags are read), exit code 2."""

    def error(self, message: str) -> NoReturn:
        log.error("invalid command line, see --help", extra={"err": message})
        self.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The command line, in the Prometheus exporters' flag style."""
    parser = _Parser(
        prog="ams-exporter",
        allow_abbrev=False,  # --config.c is not --config.check
        description="Prometheus exporter for Azure Media Services v2 encoding jobs.",
        epilog="Try it without an Azure account: ams-exporter --demo",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        help="YAML configuration file (see docs/configuration.md); required unless --demo",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration, print what was understood (secrets redacted) and exit",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_addresses",
        action=_Repeatable,
        default=[DEFAULT_LISTEN_ADDRESS],
        metavar="ADDRESS",
        help="address to listen on, repeatable: host:port, [IPv6]:port, or :port for every IPv6 "
        f"and IPv4 address (dual-stack) (default {DEFAULT_LISTEN_ADDRESS})",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="exporter-toolkit web configuration (TLS, mutual TLS, basic auth) for the HTTP "
        "endpoint; see docs/security.md",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=_max_connections,
        default=MAX_CONNECTIONS,
        help="connections the HTTP endpoint holds open at once; one more is closed at once "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="answer POST /-/reload (reload the configuration, as SIGHUP does)",
    )
    parser.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        type=_telemetry_path,
        default="/metrics",
        help="path under which to expose metrics (default %(default)s)",
    )
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        type=Path,
        metavar="DIR",
        help="directory where each account's job history (ams_jobs_ended_total ...) is kept, so "
        "that after a restart the jobs that ended meanwhile are counted once; created if missing "
        "(default: none, the history counts from the process start)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default=LOG_LEVELS[1],
        choices=LOG_LEVELS,
        help="minimum level of log messages (default %(default)s)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        type=_log_format,
        default=LOG_FORMATS[0],
        choices=LOG_FORMATS,
        help="log line format, as the Prometheus exporters write it (default %(default)s)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the built-in AMS v2 emulator and export its jobs as account 'demo'",
    )
    parser.add_argument(
        "--demo.jobs",
        dest="demo_jobs",
        type=_demo_jobs,
        default=200,
        help="with --demo: number of jobs in the emulated account, 1 to 1000000 "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--version",
        action=_Version,
        help="print the version, git revision, build date and Python version, and exit",
    )
    return parser


def _log_format(text: str) -> str:
    """``--log.format``: the former ``text`` is refused with what replaced it."""
    if text == "text":
        raise argparse.ArgumentTypeError(
            "the text format was replaced by logfmt (time=... level=... source=... msg=...); "
            "choose logfmt or json"
        )
    return text


def _log_flags(argv: Sequence[str] | None) -> tuple[str, str]:
    """``--log.level`` and ``--log.format``, read before the other flags so that a usage error is
    logged as asked; a value that is not valid reads as the default (the full parse refuses it)."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    early.add_argument("--log.level", dest="log_level", default=LOG_LEVELS[1])
    early.add_argument("--log.format", dest="log_format", default=LOG_FORMATS[0])
    try:
        flags, _ = early.parse_known_args(argv)
    except argparse.ArgumentError:
        return LOG_LEVELS[1], LOG_FORMATS[0]
    level = flags.log_level if flags.log_level in LOG_LEVELS else LOG_LEVELS[1]
    return level, flags.log_format if flags.log_format in LOG_FORMATS else LOG_FORMATS[0]


class _Version(argparse.Action):
    """``--version``: several lines, as ``prometheus --version`` prints its own; exit code 0."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(running().describe())
        parser.exit()


class _Repeatable(argparse.Action):
    """A flag that may be given several times, its values kept in order; the default applies
    only when the flag is not given at all."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        given = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*([] if given is self.default else given), values])


def _max_connections(text: str) -> int:
    """``--web.max-connections``: a whole number, at least one."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {count}")
    return count


def _telemetry_path(text: str) -> str:
    """``--web.telemetry-path``: an absolute path that no other route answers."""
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with /, got {text!r}")
    if not text.isprintable() or any(char.isspace() or char in "?#" for char in text):
        raise argparse.ArgumentTypeError(
            f"must be a plain path, without spaces, control characters, ? or #, got {text!r}"
        )
    if text in RESERVED_PATHS:
        raise argparse.ArgumentTypeError(
            f"{text} is taken by another route; the paths {', '.join(RESERVED_PATHS)} are reserved"
        )
    return text


def _demo_jobs(text: str) -> int:
    """``--demo.jobs``: a whole number of jobs, at least one and at most ``DEMO_MAX_JOBS``."""
    try:
        jobs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= jobs <= DEMO_MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {DEMO_MAX_JOBS}, got {jobs}")
    return jobs


def _load(args: argparse.Namespace) -> tuple[Config, Demo | None]:
    if args.demo:
        if args.config_file is not None:
            raise ConfigError("--demo runs without a config file; drop --config.file or --demo")
        demo = start_demo(args.demo_jobs)
        return demo.config, demo
    if args.config_file is None:
        raise ConfigError("no configuration: pass --config.file FILE, or try --demo")
    return load_config(args.config_file), None


def _warm_up(poller: Poller, budget: float) -> None:
    """Collect once at start-up so that /readyz and the status page have something to show."""
    threading.Thread(
        target=lambda: poller.collect(Deadline.after(budget)), name="warm-up", daemon=True
    ).start()


def _note_signals() -> queue.SimpleQueue[int]:
    """Queue SIGTERM, SIGINT and SIGHUP from now on, for :func:`_run_until_stopped`.

    Installed before "listening on" is logged: a SIGHUP sent by whoever waited for that line must
    reload, not kill the process by its default action.
    """
    received: queue.SimpleQueue[int] = queue.SimpleQueue()

    def note(signum: int, _frame: FrameType | None) -> None:
        received.put(signum)

    for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(handled, note)
    return received


def _run_until_stopped(reloader: Reloader, received: queue.SimpleQueue[int]) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads the configuration (in this thread)."""
    while True:
        try:
            # A short wait: the kernel may deliver a signal to any thread, and Python runs its
            # handler only when the main thread next runs bytecode, which a long wait would put
            # off until it ends.
            signum = received.get(timeout=SIGNAL_POLL_SECONDS)
        except queue.Empty:
            continue
        name = signal.Signals(signum).name
        if signum != signal.SIGHUP:
            log.info("received %s, shutting down", name)
            return
        log.info("received %s, reloading the configuration", name)
        reloader.reload()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter; the exit code is 0 on a clean stop, 2 on a configuration error."""
    configure_logging(*_log_flags(argv))
    return_large_blocks()  # before any thread starts
    args = build_parser().parse_args(argv)
    demo: Demo | None = None
    try:
        if args.demo and args.config_check:
            raise ConfigError("--config.check checks a --config.file; it does not apply to --demo")
        config, demo = _load(args)
        web_config = load_web_config(args.web_config_file) if args.web_config_file else None
        # Logged on stderr, so that the stdout of --config.check stays the YAML it understood.
        for warning in config.warnings:
            log.warning("configuration: %s", warning)
        if args.config_check:
            # Secrets print as <redacted> already; this also catches one put in a plain key.
            sys.stdout.write(redact(describe_config(config)))
            return 0
        return _serve(args, config, demo, web_config)
    except ConfigError as error:
        log.error("configuration error", extra={"err": str(error)})
        return 2
    finally:
        if demo is not None:
            demo.stop()


def _serve(
    args: argparse.Namespace,
    config: Config,
    demo: Demo | None,
    web_config: WebConfig | None,
) -> int:
    try:
        storage = None if args.storage_path is None else prepare_directory(args.storage_path)
    except StorageError as error:
        log.error("cannot use --storage.path", extra={"err": str(error)})
        return 2
    exporter = build_exporter(config, telemetry_path=args.telemetry_path, storage=storage)
    try:
        server = listen(
            exporter, args.listen_addresses, web_config, max_connections=args.max_connections
        )
    except (OSError, ValueError) as error:
        # A ListenError names the addresses at fault; another error (TLS files) concerns them all.
        failed = error.addresses if isinstance(error, ListenError) else args.listen_addresses
        reason = error.reason if isinstance(error, ListenError) else str(error)
        log.error("cannot listen on %s", " and ".join(failed), extra={"err": reason})
        exporter.close()
        return 1
    log.info(
        "ams-exporter %s serving metrics at %s for %d account(s)%s",
        __version__,
        args.telemetry_path,
        len(config.accounts),
        f"; demo emulator at {demo.endpoint}" if demo else "",
    )
    received = _note_signals()
    # Last: whoever reads "listening on" in the log has read the rest of the start-up.
    for address in server.server_addresses:
        log.info("listening on %s", format_address(address))
    reloader = Reloader(exporter, server, args.config_file, args.web_config_file)
    if args.enable_lifecycle:
        exporter.app.reload = reloader.reload
    _warm_up(exporter.poller, exporter.default_timeout)
    started = time.monotonic()
    try:
        _run_until_stopped(reloader, received)
    finally:
        # Scrapes being answered finish: as long as a collection may take, and a little more.
        server.shutdown(grace=exporter.default_timeout + SHUTDOWN_MARGIN)
        server.server_close()
        exporter.close()
        log.info("stopped after %.0f s", time.monotonic() - started)
    return 0
