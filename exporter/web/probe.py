"""The multi-target probe's request: which account ``/probe?account=NAME`` asks for.

As blackbox_exporter's ``/probe?target=``: Prometheus has one target per account and relabels its
name into the ``account`` parameter, so each account gets its own scrape interval, timeout, ``up``
and Prometheus shard. A request that does not name exactly one configured account is refused with
the names it could have asked for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qs

from exporter.redact import redact

PROBE_PATH = "/probe"
PARAMETER = "account"
# Refused values are quoted in the answer up to this many characters.
_QUOTED_CHARS = 100
# Go's url.ParseQuery, behind the Go exporters' probes, refuses a "%" without two hex digits.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class ProbeRefused(Exception):
    """A probe request that names no configured account; ``str()`` is the answer's text."""

    def __init__(self, reason: str, names: Sequence[str]) -> None:
        self.reason = reason
        known = "".join(f"  {redact(name)}\n" for name in names) or "  (none)\n"
        super().__init__(
            f"{reason}; probe one account with {PROBE_PATH}?{PARAMETER}=NAME\n"
            f"known accounts:\n{known}"
        )


def probed_account(query: str, names: Sequence[str]) -> str:
    """The account ``query`` (a URL's query string) asks for, one of ``names``.

    Raises :class:`ProbeRefused` unless the query is valid and has exactly one ``account``
    parameter, and that is one of ``names``. Other parameters are ignored.
    """
    if _BAD_ESCAPE.search(query):
        raise ProbeRefused("the query string has a % that is not followed by two hex digits", names)
    try:
        values = parse_qs(query, keep_blank_values=True, errors="strict").get(PARAMETER, [])
    except UnicodeDecodeError:
        raise ProbeRefused("the query string's escapes are not UTF-8", names) from None
    if not values:
        raise ProbeRefused(f"no {PARAMETER} parameter", names)
    if len(values) > 1:
        raise ProbeRefused(f"{len(values)} {PARAMETER} parameters, expected one", names)
    (name,) = values
    if not name:
        raise ProbeRefused(f"the {PARAMETER} parameter is empty", names)
    if name not in names:
        raise unknown_account(name, names)
    return name


def unknown_account(name: str, names: Sequence[str]) -> ProbeRefused:
    """The refusal of a probe of ``name``, which is none of ``names``."""
    return ProbeRefused(f"unknown account {redact(name[:_QUOTED_CHARS])!r}", names)
