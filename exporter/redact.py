"""Secrets removed by value from every text the exporter shows: logs, pages, errors, labels.

Redaction by shape (a JWT, ``Bearer ...``) misses what does not look like one: an opaque access
token, a client secret echoed URL-encoded in an Azure AD error, a secret that travelled base64
encoded. So every secret the exporter is given (each :class:`~exporter.config.Secret` registers
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
from collections.abc import Iterable
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


class Redactor:
    """The remembered secrets and a compiled pattern that finds any of them. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._needles: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.generation = 0
        """Grows with every new secret: caches of redacted text compare it to stay true."""

    def add(self, value: str) -> None:
        """Remember ``value`` (a secret or a token) in every encoding it may travel in."""
        if not value.strip():
            return
        needles = encodings(value)
        if "-----BEGIN" in value:
            # The key's base64 lines, not the armour lines that every PEM text shares.
            lines = {line.strip() for line in value.splitlines()}
            needles |= {n for n in lines if len(n) >= _MIN_PEM_LINE and not n.startswith("-----")}
        with self._lock:
            if needles <= self._needles:
                return
            self._needles |= needles
            ordered = sorted(self._needles, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(needle) for needle in ordered))
            self.generation += 1

    def add_all(self, values: Iterable[str]) -> None:
        """:meth:`add` for each of ``values``."""
        for value in values:
            self.add(value)

    def redact(self, text: str) -> str:
        """``text`` with every remembered secret, and anything shaped like a token, replaced."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        for shape, replacement in _SHAPES:
            text = shape.sub(replacement, text)
        return text

    def redact_value(self, text: str) -> str:
        """``text`` with only the remembered secrets replaced: for names, where shapes are data."""
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)


SECRETS = Redactor()
"""The process's registry: :class:`~exporter.config.Secret` and the token providers fill it."""


def remember(value: str) -> None:
    """Remember a secret or a token in :data:`SECRETS`."""
    SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` as it may be shown: see :meth:`Redactor.redact`."""
    return SECRETS.redact(text)


class RedactingFilter(logging.Filter):
    """Redacts every record a handler writes, whichever library logged it, at any level.

    The message is formatted here (arguments included) and replaced by its redacted text; an
    exception or stack is formatted and redacted too, so no formatter ever sees the original.
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
        return True
