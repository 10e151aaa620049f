"""The exporter's log read back: one entry per line, from logfmt (Go's quoting) or JSON.

Written from the formats, not from the exporter's formatter, so that a wrong idea of the format
cannot hide in both: a logfmt line is ``key=value`` pairs separated by one space, a value bare or
double-quoted with Go's escapes (``\\n``, ``\\"``, ``\\xNN``, ``\\uNNNN``, ...).
"""

from __future__ import annotations

import json
import re

# The keys promslog writes first, in this order, on every line.
PROMSLOG_KEYS = ("time", "level", "source", "msg")
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
# Go's "2006-01-02T15:04:05.000Z07:00": RFC 3339 with milliseconds, Z or the zone's offset.
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)")
SOURCE = re.compile(r"[\w.-]+\.py:\d+")

_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s="]+)(?: |$)')
_ESCAPE = re.compile(r'\\(?:([abfnrtv\\"])|x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8}))')
_QUOTED = re.compile(r'(?:[^"\\]|\\(?:[abfnrtv\\"]|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}))*')
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class NotALogLine(AssertionError):
    """A line that is neither logfmt nor a JSON object."""


def parse_logfmt(line: str) -> dict[str, str]:
    """The keys and values of one logfmt line, in order; fails unless the whole line is pairs."""
    entry: dict[str, str] = {}
    position = 0
    while position < len(line):
        found = _PAIR.match(line, position)
        if found is None:
            raise NotALogLine(f"not logfmt at column {position}: {line!r}")
        key, value = found.groups()
        if key in entry:
            raise NotALogLine(f"key {key} twice: {line!r}")
        entry[key] = _unquote(value) if value.startswith('"') else value
        position = found.end()
    return entry


def _unquote(quoted: str) -> str:
    inner = quoted[1:-1]
    if not _QUOTED.fullmatch(inner):
        raise NotALogLine(f"not a Go escape in {quoted!r}")
    return _ESCAPE.sub(_decode, inner)


def _decode(found: re.Match[str]) -> str:
    simple, byte, short, long = found.groups()
    if simple:
        return _SIMPLE.get(simple, simple)
    return chr(int(byte or short or long, 16))


def parse_line(line: str) -> dict[str, object]:
    """One log line, JSON if it is an object, logfmt otherwise."""
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError as error:
            raise NotALogLine(f"not JSON ({error}): {line!r}") from None
        if not isinstance(entry, dict):
            raise NotALogLine(f"not a JSON object: {line!r}")
        return entry
    return dict(parse_logfmt(line))


def read_log(text: str) -> list[dict[str, object]]:
    """Every line of ``text`` as an entry; fails on a line that is not a log entry."""
    return [parse_line(line) for line in text.splitlines()]


def assert_promslog_entry(entry: dict[str, object]) -> None:
    """``entry`` starts with promslog's keys and their values have promslog's forms."""
    assert tuple(entry)[:4] == PROMSLOG_KEYS, entry
    assert TIME.fullmatch(str(entry["time"])), entry
    assert entry["level"] in LEVELS, entry
    assert SOURCE.fullmatch(str(entry["source"])), entry
