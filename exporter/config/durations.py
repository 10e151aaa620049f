"""Durations in Prometheus syntax (``500ms``, ``30s``, ``1h30m``, ``1d``), read and written."""

from __future__ import annotations

import re

__all__ = [
    "DURATION_HINT",
    "duration_seconds",
    "format_duration",
    "is_whole_number",
    "parse_duration",
]

# Milliseconds per unit, largest first: the order units must be written in.
_DURATION_UNITS = (
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)
# At most 12 digits per unit keeps every duration far inside a float's exact range.
_DURATION_RE = re.compile("".join(f"(?:([0-9]{{1,12}}){unit})?" for unit, _ in _DURATION_UNITS))
DURATION_HINT = "expected a duration such as 30s, 5m or 24h"


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration (``500ms``, ``30s``, ``1h30m``, ``1d``, ``1w``) into seconds.

    Units go from largest to smallest, each at most once, with whole numbers only; a bare number
    is refused because ``30`` could mean seconds or minutes. Raises ``ValueError`` whose message
    says what is expected (the caller adds the key path or flag name).
    """
    seconds = duration_seconds(text)
    if seconds is None:
        digits = text.strip()
        hint = f" (add a unit, e.g. {digits}s)" if is_whole_number(digits) else ""
        raise ValueError(f"{DURATION_HINT}, got {text!r}{hint}")
    return seconds


def duration_seconds(text: str) -> float | None:
    """The seconds of a duration, or ``None`` when ``text`` is not one."""
    match = _DURATION_RE.fullmatch(text)
    if text == "" or match is None:
        return None
    millis = sum(
        int(amount) * size
        for amount, (_, size) in zip(match.groups(), _DURATION_UNITS, strict=True)
        if amount is not None
    )
    return millis / 1000


def is_whole_number(text: str) -> bool:
    """Whether ``text`` is ASCII digits only: a duration whose unit was forgotten."""
    return text.isascii() and text.isdigit()


def format_duration(seconds: float) -> str:
    """Write seconds in the duration syntax ``parse_duration`` reads (``86400`` → ``1d``)."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS:
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
