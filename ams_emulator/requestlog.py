"""What the emulator was asked, so tests can assert how many upstream calls a scrape caused.

Nothing secret is stored: the ``Authorization`` header is reduced to its scheme, other credential
headers and credential query parameters are replaced by ``<redacted>``, and request bodies (where
Azure AD receives client secrets and assertions) are never recorded.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"x-identity-header", "cookie", "proxy-authorization", "secret"})
_SECRET_PARAMS = frozenset(
    {"client_secret", "client_assertion", "access_token", "code", "refresh_token", "password"}
)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the emulator saw it. ``fault`` names the injected fault kind, if any."""

    time: datetime
    api: str  # "ams" or "aad"
    method: str
    path: str  # decoded, without the query string
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    status: int | None = None  # None when the connection was reset or dropped
    fault: str | None = None


def safe_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case header names; credentials reduced to their scheme or redacted."""
    result: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key == "authorization":
            result[key] = value.split(" ", 1)[0] if value else ""
        elif key in _SECRET_HEADERS:
            result[key] = REDACTED
        else:
            result[key] = value
    return result


def safe_query(query: Mapping[str, str]) -> dict[str, str]:
    """The query options with any credential-carrying parameter redacted."""
    return {k: (REDACTED if k.lower() in _SECRET_PARAMS else v) for k, v in query.items()}


class RequestLog:
    """A bounded, thread-safe log of requests (oldest dropped first)."""

    def __init__(self, max_records: int = 100_000) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def count(
        self, api: str | None = None, path: str | None = None, method: str | None = None
    ) -> int:
        """How many logged requests match; ``path`` is a regular expression searched in the path."""
        pattern = re.compile(path) if path is not None else None
        return sum(
            1
            for r in self.records()
            if (api is None or r.api == api)
            and (method is None or r.method == method)
            and (pattern is None or pattern.search(r.path))
        )
