"""Secrets removed by value from every text the exporter shows: logs, pages, errors, labels.

Redaction by shape (a JWT, ``Bearer ...``) misses what does not look like one: an opaque access
token, a client secret echoed URL-encoded in an Azure AD error, a secret that travelled base64
encoded. So every secret the exporter is given (each :class:`~exporter.config.model.Secret` registers
itself) and every access token it receives is remembered here, with each encoding it can travel
in, and :func:`redact` replaces any of them wherever it appears. Shapes are redacted as well, as
a second line of defence for secrets the exporter never saw (a token in a response it could not
read).

The registry is process-wide on purpose: the logging filter of :class:`RedactingFilter` sees
records of every library, and those cannot be handed an object.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections import Counter, deque
from urllib.parse import quote, quote_plus

REDACTED = "<redacted>"
# Texts shorter than this are not searched for: they would match ordinary text. A secret this
# short (Azure AD client secrets are 40 characters) is not redacted by value, only by shape.
_MIN_NEEDLE = 6
# Lines of a PEM key at least this long are remembered one by one (a log may wrap the key).
_MIN_PEM_LINE = 16

_TOKEN_KEYS = r"access_token|refresh_token|id_token|client_secret|client_assertion"
_SHAPES = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}"), REDACTED),  # a JWT
    (re.compile(r"(\bBearer\s+)[^\s\"',;]+", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    (re.compile(rf"(\b(?:{_TOKEN_KEYS})=)[^&\s\"']+", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    (
        re.compile(rf"(\"(?:{_TOKEN_KEYS})\"\s*:\s*\")[^\"]*", re.IGNORECASE),
        rf"\g<1>{REDACTED}",
    ),
)


def encodings(value: str) -> set[str]:
    """``value`` as it may appear in text: raw, URL- and form-encoded, base64 (any alignment).

    A base64 encoding of a longer text holds ``value`` at one of three bit alignments; for each,
    the characters that depend on ``value`` alone are kept (those shared with neighbouring bytes
    are dropped), so the secret is found inside a base64 blob as well as on its own.
    """
    raw = value.encode("utf-8", "surrogatepass")
    found = {value, quote(value, safe=""), quote(value), quote_plus(value), quote_plus(value, "/")}
    found |= {text.lower() for text in list(found) if "%" in text}
    escaped = json.dumps(value)[1:-1]  # inside a JSON string, with \\/ where a writer escapes /
    found |= {escaped, escaped.replace("/", "\\/"), json.dumps(value, ensure_ascii=False)[1:-1]}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        found |= {whole, whole.rstrip("=")}
        for offset in range(3):
            shifted = encode(b"\0" * offset + raw).decode("ascii")
            start = -(-8 * offset // 6)
            end = (8 * (offset + len(raw))) // 6
            found.add(shifted[start:end])
    return {text for text in found if len(text) >= _MIN_NEEDLE}


# Access tokens remembered at once: a few per account (one an hour is renewed). A token that
# dropped out long expired; an ever-growing list would make every redaction slower.
MAX_TOKENS = 64


class Redactor:
    """The remembered secrets and tokens, and a pattern that finds any of them. Thread-safe.

    Secrets are counted (several ``Secret`` objects may hold one value) and forgotten when the
    last holder is gone; tokens are the :data:`MAX_TOKENS` most recent. The pattern is compiled
    when text is first redacted after a change.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: Counter[str] = Counter()
        self._tokens: deque[str] = deque(maxlen=MAX_TOKENS)
        self._forgotten: deque[str] = deque()
        self._pattern: re.Pattern[str] | None = None
        self._stale = False
        self.generation = 0
        """Grows with every change: caches of redacted text compare it to stay true."""

    def add(self, value: str) -> None:
        """Remember secret ``value`` (until :meth:`forget`) in every encoding it may travel in."""
        if not value.strip():
            return
        with self._lock:
            self._settle_forgotten()
            self._secrets[value] += 1
            if self._secrets[value] == 1:
                self._changed()

    def forget(self, value: str) -> None:
        """One holder of secret ``value`` is gone; with the last, the value is no longer sought.

        Called from a finalizer, which the garbage collector may run in any thread at any moment,
        also while this thread holds the lock: so it only queues the value (``deque.append`` is
        atomic), and the next change or redaction settles it under the lock.
        """
        if value.strip():
            self._forgotten.append(value)
            self._stale = True

    def _settle_forgotten(self) -> None:
        """Apply the queued :meth:`forget` calls (lock held)."""
        while self._forgotten:
            value = self._forgotten.popleft()
            if self._secrets[value] <= 1:
                if self._secrets.pop(value, 0):
                    self._changed()
            else:
                self._secrets[value] -= 1

    def add_token(self, value: str) -> None:
        """Remember access token ``value`` among the most recent ones."""
        if not value.strip():
            return
        with self._lock:
            if value not in self._tokens:
                self._tokens.append(value)
                self._changed()

    def redact(self, text: str) -> str:
        """``text`` with every remembered secret, and anything shaped like a token, replaced."""
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        for shape, replacement in _SHAPES:
            text = shape.sub(replacement, text)
        return text

    def redact_value(self, text: str) -> str:
        """``text`` with only the remembered secrets replaced: for names, where shapes are data."""
        pattern = self._compiled()
        return text if pattern is None else pattern.sub(REDACTED, text)

    def _changed(self) -> None:
        self._stale = True
        self.generation += 1

    def _compiled(self) -> re.Pattern[str] | None:
        if not self._stale:
            return self._pattern
        with self._lock:
            self._settle_forgotten()
            if self._stale:
                needles: set[str] = set()
                for value in (*self._secrets, *self._tokens):
                    needles |= _needles(value)
                ordered = sorted(needles, key=len, reverse=True)
                joined = "|".join(re.escape(needle) for needle in ordered)
                self._pattern = re.compile(joined) if joined else None
                self._stale = False
            return self._pattern


def _needles(value: str) -> set[str]:
    """What to search for to find ``value``: its encodings, and a PEM key's lines one by one."""
    needles = encodings(value)
    if "-----BEGIN" in value:
        # The key's base64 lines, not the armour lines that every PEM text shares.
        lines = {line.strip() for line in value.splitlines()}
        needles |= {n for n in lines if len(n) >= _MIN_PEM_LINE and not n.startswith("-----")}
    return needles


SECRETS = Redactor()
"""The process's registry: :class:`~exporter.config.model.Secret` and the token providers fill it."""


def remember(value: str) -> None:
    """Remember a secret in :data:`SECRETS` (see :meth:`Redactor.add`)."""
    SECRETS.add(value)


def forget(value: str) -> None:
    """See :meth:`Redactor.forget`."""
    SECRETS.forget(value)


def remember_token(value: str) -> None:
    """Remember an access token in :data:`SECRETS` (see :meth:`Redactor.add_token`)."""
    SECRETS.add_token(value)


def redact(text: str) -> str:
    """``text`` as it may be shown: see :meth:`Redactor.redact`."""
    return SECRETS.redact(text)


RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
"""The attributes every log record has; any other was passed with ``extra=``: a field of the line."""


class RedactingFilter(logging.Filter):
    """Redacts every record a handler writes, whichever library logged it, at any level.

    The message is formatted here (arguments included) and replaced by its redacted text; an
    exception or stack is formatted and redacted too, and so is every field (``extra=``) other than
    a number, so no formatter ever sees the original.
    """

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self._formatter = formatter or logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's broken format string: say so rather than lose it
            message = f"unformattable log message from {record.name}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in RECORD_ATTRIBUTES and not isinstance(
                value, (bool, int, float, type(None))
            ):
                setattr(record, key, redact(str(value)))
        return True
