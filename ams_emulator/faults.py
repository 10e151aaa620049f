"""Fault injection: which of the next requests the emulator answers badly, and how.

A :class:`Fault` targets one API (``ams`` or ``aad``), optionally a path regular expression, and
applies to the next ``count`` matching requests, to a ``ratio`` of them (drawn from the emulator's
seeded random generator), or, with neither, to every matching request until cleared. The server
decides how each kind is delivered; this module only decides *whether* a fault fires.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

KINDS = (
    "latency",  # wait ``latency`` seconds, then answer normally (combines with one other fault)
    "status",  # answer ``status`` with the documented error body
    "malformed_json",  # 200 with a body that is not JSON
    "truncated",  # Content-Length larger than the body, then close
    "reset",  # TCP RST instead of an answer
    "wrong_shape",  # 200 with valid JSON that is not an OData envelope
    "repeat_page",  # a Jobs page ($skip > 0) that starts with the previous page's last job
    "huge",  # a valid but enormous Jobs collection of ``size`` bytes, streamed
    "slow_drip",  # the normal answer, ``drip_bytes`` bytes every ``drip_interval`` seconds
    "slow_headers",  # like slow_drip from the status line on: headers arrive a drip at a time
    "aad_down",  # Azure AD resets every connection
    "redirect_loop",  # the legacy root redirects to itself
    "reject_datetime_filter",  # 400 for any $filter with a datetime'...' literal
)
APIS = ("ams", "aad")
AMS_ONLY = frozenset({"repeat_page", "huge", "redirect_loop", "reject_datetime_filter"})
MAX_LATENCY = 600.0
MAX_HUGE_SIZE = 8 * 1024**3

# The documented AMS v2 503 messages (media-services-error-codes); {0} and {1} are filled in.
BUSY_MESSAGES = (
    "Server is busy. Previous runs of this type of request took more than {0} seconds.",
    "Server is busy. More than {0} requests per second can be throttled.",
    "Server is busy. More than {0} requests within {1} seconds can be throttled.",
)
DEFAULT_MESSAGES = {
    400: "Bad Request - Error in query syntax.",
    401: "The access token is missing, invalid or expired.",
    403: "The account is disabled or the resource is not accessible.",
    404: "Resource not found for the segment 'Jobs'.",
    429: "Too many requests. Retry after the interval given in the Retry-After header.",
    500: "An error occurred while processing this request.",
    502: "Bad Gateway.",
}


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour. ``api`` defaults to ``aad`` for ``aad_down``, else ``ams``."""

    kind: str
    api: str | None = None
    path: str | None = None  # regular expression searched in the decoded request path
    count: int | None = None
    ratio: float | None = None
    status: int = 503  # kind "status"
    message: str | None = None  # kind "status": the error message; default by status
    retry_after: int | None = None  # kind "status": Retry-After seconds (429 defaults to 1)
    latency: float = 0.0  # kind "latency": seconds
    size: int = 64 * 1024 * 1024  # kind "huge": body size in bytes
    drip_bytes: int = 8  # kinds "slow_drip" and "slow_headers"
    drip_interval: float = 0.05  # kinds "slow_drip" and "slow_headers": seconds between writes

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {', '.join(KINDS)}"
            )
        api = self.api or ("aad" if self.kind == "aad_down" else "ams")
        object.__setattr__(self, "api", api)
        if api not in APIS:
            raise ValueError(f"fault api must be 'ams' or 'aad', not {api!r}")
        if self.kind == "aad_down" and api != "aad":
            raise ValueError("fault kind 'aad_down' applies to api 'aad' only")
        if self.kind in AMS_ONLY and api != "ams":
            raise ValueError(f"fault kind {self.kind!r} applies to api 'ams' only")
        self._check_scope()
        self._check_parameters()

    def _check_scope(self) -> None:
        if self.count is not None and self.ratio is not None:
            raise ValueError("give a fault either count or ratio, not both")
        if self.count is not None and self.count < 1:
            raise ValueError(f"fault count must be at least 1, not {self.count}")
        if self.ratio is not None and not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"fault ratio must be in (0, 1], not {self.ratio}")
        if self.path is not None:
            try:
                re.compile(self.path)
            except re.error as exc:
                raise ValueError(f"fault path is not a valid regular expression: {exc}") from None

    def _check_parameters(self) -> None:
        if not 200 <= self.status <= 599 or self.status in (204, 304):
            raise ValueError(
                f"fault status must be an HTTP status code in 200..599 that carries a body, "
                f"not {self.status}"
            )
        if not 0.0 <= self.latency <= MAX_LATENCY:
            raise ValueError(f"fault latency must be between 0 and {MAX_LATENCY:g} seconds")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("fault retry_after must not be negative")
        if not 1 <= self.size <= MAX_HUGE_SIZE:
            raise ValueError(f"fault size must be between 1 and {MAX_HUGE_SIZE} bytes")
        if self.drip_bytes < 1 or not 0.0 <= self.drip_interval <= 10.0:
            raise ValueError(
                "slow_drip and slow_headers need drip_bytes >= 1 and drip_interval in [0, 10] seconds"
            )

    def applies_to(self, api: str, path: str, query: Mapping[str, str]) -> bool:
        """Whether this fault concerns the request (before count/ratio are considered)."""
        if api != self.api or (self.path is not None and not re.search(self.path, path)):
            return False
        if self.kind == "reject_datetime_filter":
            return "datetime'" in query.get("$filter", "").lower()
        if self.kind == "repeat_page":
            return _positive_int(query.get("$skip"))
        if self.kind == "redirect_loop":
            return path == "/"
        return True


def _positive_int(text: str | None) -> bool:
    return text is not None and text.strip().isdigit() and int(text) > 0


@dataclass(frozen=True)
class Fired:
    """The faults that fire for one request: total added latency and at most one other fault."""

    latency: float = 0.0
    fault: Fault | None = None
    message: str = ""  # for kind "status": the error message to send
    kinds: tuple[str, ...] = ()

    @property
    def label(self) -> str | None:
        """What the request log records, e.g. ``"latency,status"``."""
        return ",".join(self.kinds) or None


@dataclass
class _Active:
    fault: Fault
    remaining: int | None = field(default=None)


class FaultSet:
    """The emulator's active faults. Thread-safe; ``seed`` makes ratio faults reproducible."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._active: list[_Active] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._active.append(_Active(fault, fault.count))
        return fault

    def clear(self) -> None:
        with self._lock:
            self._active.clear()

    def active(self) -> list[Fault]:
        """The faults still armed (count-limited faults disappear once used up)."""
        with self._lock:
            return [a.fault for a in self._active]

    def take(self, api: str, path: str, query: Mapping[str, str]) -> Fired:
        """Decide which faults fire for this request and use up their counts."""
        latency, chosen, kinds = 0.0, None, []
        with self._lock:
            for entry in list(self._active):
                fault = entry.fault
                if fault.kind != "latency" and chosen is not None:
                    continue
                if not fault.applies_to(api, path, query) or not self._fires(entry):
                    continue
                kinds.append(fault.kind)
                if fault.kind == "latency":
                    latency += fault.latency
                else:
                    chosen = fault
            message = self._message(chosen) if chosen is not None else ""
        return Fired(latency, chosen, message, tuple(kinds))

    def _fires(self, entry: _Active) -> bool:
        if entry.fault.ratio is not None:
            return self._rng.random() < entry.fault.ratio
        if entry.remaining is not None:
            entry.remaining -= 1
            if entry.remaining == 0:
                self._active.remove(entry)
        return True

    def _message(self, fault: Fault) -> str:
        if fault.kind == "reject_datetime_filter":
            return (
                "Invalid filter expression: datetime literals are not supported "
                "in $filter by this service."
            )
        if fault.kind != "status":
            return ""
        if fault.message is not None:
            return fault.message
        if fault.status == 503:
            template = self._rng.choice(BUSY_MESSAGES)
            return template.format(self._rng.choice((10, 20, 60)), self._rng.choice((10, 30)))
        return DEFAULT_MESSAGES.get(fault.status, f"The request failed with status {fault.status}.")
