"""Where the exporter's log goes and what may reach it: stderr, as promslog writes, never a secret.

The lines are those of the Prometheus exporters written in Go (promslog, slog's keys), in ``logfmt``
or ``json``: ``time`` (RFC 3339 with milliseconds and the zone offset), ``level`` (``DEBUG``,
``INFO``, ``WARN``, ``ERROR``), ``source`` (file:line of the call), ``msg``, then the fields passed
with ``extra=``, then ``err`` (an exception's traceback) and ``stack``. A field named like one of
those is written as ``logged_NAME``, as promslog does. A record is always one line: logfmt quotes
and escapes a value as Go does (``"a \\"b\\"\\nc"``), JSON escapes every line break.

Every record, from the exporter or any library, passes :class:`~exporter.redact.RedactingFilter`
on the one handler before it is formatted. Some libraries are also kept from logging at all:

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
import re
import sys
import threading
from datetime import datetime, timedelta
from types import TracebackType

from exporter.redact import RECORD_ATTRIBUTES, RedactingFilter

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")
SILENCED = ("msal",)
WARNINGS_ONLY = ("urllib3", "requests")

# slog's level names, from the highest; critical (an exception that escaped) is an error there.
_LEVEL_NAMES = ((logging.ERROR, "ERROR"), (logging.WARNING, "WARN"), (logging.INFO, "INFO"))
_RESERVED_PREFIX = "logged_"
# A logfmt value is quoted when it is empty or holds one of these or a character not printable.
_UNSAFE = re.compile(r'[ ="]')
# Characters written as escapes inside quotes (the printable non-ASCII ones are kept as they are).
_ESCAPED = re.compile(r'[\x00-\x1f\x7f"\\]|[^\x00-\x7f]')
_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}
# Line breaks that JSON leaves unescaped but a reader splitting lines (Python's among them) obeys.
_JSON_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


class PromslogFormatter(logging.Formatter):
    """The record as promslog's keys and values, written as one logfmt line."""

    def entry(self, record: logging.LogRecord) -> dict[str, object]:
        """The keys and values of one line, in order."""
        entry: dict[str, object] = {
            "time": _timestamp(record.created),
            "level": next((name for at, name in _LEVEL_NAMES if record.levelno >= at), "DEBUG"),
            "source": f"{record.filename}:{record.lineno}",
            "msg": record.getMessage(),
        }
        trailing = {"err": record.exc_text, "stack": record.stack_info}
        for key, value in vars(record).items():
            if key not in RECORD_ATTRIBUTES:
                taken = key in entry or trailing.get(key) is not None
                entry[_RESERVED_PREFIX + key if taken else key] = value
        entry.update((key, value) for key, value in trailing.items() if value is not None)
        return entry

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{_logfmt(key)}={_logfmt(value)}" for key, value in self.entry(record).items()
        )


class JsonFormatter(PromslogFormatter):
    """The same keys and values as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        text = json.dumps(
            self.entry(record), ensure_ascii=False, separators=(",", ":"), default=str
        )
        return _JSON_LINE_BREAKS.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _timestamp(created: float) -> str:
    """``created`` in the local zone as Go's ``2006-01-02T15:04:05.000Z07:00`` writes it."""
    moment = datetime.fromtimestamp(created).astimezone()
    text = moment.isoformat(timespec="milliseconds")
    return f"{text[:-6]}Z" if moment.utcoffset() == timedelta(0) else text


def _logfmt(value: object) -> str:
    """A logfmt key or value as slog writes it: bare if it can be, else quoted as Go quotes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = "<nil>" if value is None else str(value)
    if text and text.isprintable() and not _UNSAFE.search(text):
        return text
    return f'"{_ESCAPED.sub(_go_escape, text)}"'


def _go_escape(found: re.Match[str]) -> str:
    char = found.group()
    if char in _GO_ESCAPES:
        return _GO_ESCAPES[char]
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if char.isprintable():
        return char
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def configure_logging(level: str, log_format: str) -> None:
    """Log to stderr at ``level`` (one of :data:`LOG_LEVELS`) in ``logfmt`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else PromslogFormatter()
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
