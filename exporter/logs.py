"""Where the exporter's log goes and what may reach it: stderr, text or JSON, never a secret.

Every record, from the exporter or any library, passes :class:`~exporter.redact.RedactingFilter`
on the one handler. Some libraries are also kept from logging at all:

- ``msal`` (with its ``oauth2cli``) logs a token response it cannot parse whole, token included,
  at ERROR with a traceback, and request details at DEBUG. Nothing it says is needed: every
  failure reaches the exporter as an exception and is reported as an ``AuthError``.
- ``urllib3`` logs each request line at DEBUG; only its warnings are kept.

What would reach stderr without logging goes through it too: Python warnings, and the tracebacks
of exceptions that escape a thread or the main program.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from types import TracebackType
from typing import Any

from exporter.redact import RedactingFilter

SILENCED = ("msal",)
WARNINGS_ONLY = ("urllib3", "requests")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """Log to stderr at ``level`` (``debug`` ... ``error``) in ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(formatter))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("WARNING" if level == "warn" else level.upper())
    for name in SILENCED:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    for name in WARNINGS_ONLY:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    sys.excepthook = _log_uncaught_exception


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    thread = args.thread.name if args.thread is not None else "a thread"
    logging.getLogger("exporter").error(
        "unhandled error in %s",
        thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def _log_uncaught_exception(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    logging.getLogger("exporter").critical("unhandled error", exc_info=(kind, error, trace))
