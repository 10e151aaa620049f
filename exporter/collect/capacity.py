"""What an account can run and what runs it: its encoding reserved units and media processors.

Neither changes from one scrape to the next, so neither is read on every collection. The reserved
units are read once per ``jobs.capacity_interval``; the media processors once per
:data:`PROCESSORS_INTERVAL`, and sooner when a task names a processor that is not known yet. Both
are kept in memory between reads and after a failed read. A failed read is not a failed collection
(``ams_up`` is about the jobs): it is logged once, when the failures start, and once when they
end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

from exporter.ams.client import AmsClient
from exporter.ams.model import MediaProcessor, ReservedUnits
from exporter.deadline import Deadline
from exporter.errors import ExporterError

log = logging.getLogger(__name__)

PROCESSORS_INTERVAL = 3600.0
# After a failed read of the media processors: the next try (they may be missing from the labels).
PROCESSORS_RETRY = 300.0

_T = TypeVar("_T")


class _Periodic(Generic[_T]):
    """A value read at most every ``interval`` seconds, kept through failed reads."""

    def __init__(
        self, account: str, what: str, interval: float, retry: float | None = None
    ) -> None:
        self._account = account
        self._what = what
        self.interval = interval
        self._retry = retry
        self.value: _T | None = None
        self._read_at: float | None = None  # time.monotonic() of the last attempt
        self._failing = False

    def due(self, now: float) -> bool:
        if self._read_at is None:
            return True
        wait = self.interval
        if self._failing and self._retry is not None:
            wait = min(wait, self._retry)
        return now - self._read_at >= wait

    def read(self, reader: Callable[[], _T | None], now: float) -> bool:
        """Read the value now; whether the read succeeded (failures keep the old value)."""
        self._read_at = now
        try:
            value = reader()
        except ExporterError as error:
            if not self._failing:
                log.warning(
                    "account %s: reading the %s failed (the last known values are kept; "
                    "ams_up is not affected): %s",
                    self._account,
                    self._what,
                    error,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("account %s: the %s are read again", self._account, self._what)
        self._failing = False
        self.value = value
        return True


class Capacity:
    """One account's reserved units and media processors, read as often as they deserve."""

    def __init__(
        self,
        account: str,
        capacity_interval: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._units: _Periodic[ReservedUnits] = _Periodic(
            account, "encoding reserved units", capacity_interval
        )
        self._processors: _Periodic[dict[str, MediaProcessor]] = _Periodic(
            account, "media processors", PROCESSORS_INTERVAL, PROCESSORS_RETRY
        )
        self._monotonic = monotonic
        # Processor ids named by tasks that the last read of the set did not list: asking again
        # for them would not help before the next regular read.
        self._unknown_after_read: frozenset[str] = frozenset()

    @property
    def units(self) -> ReservedUnits | None:
        """The reserved units as last read; ``None`` while never read (or the set was empty)."""
        return self._units.value

    @property
    def processors(self) -> Mapping[str, MediaProcessor]:
        """The media processors by Id, as last read."""
        return self._processors.value or {}

    def refresh(
        self,
        client: AmsClient,
        named: Iterable[str],
        deadline: Deadline,
        *,
        processors: bool = True,
    ) -> None:
        """Read what is due: the units after their interval; the processors after theirs, or
        when a task names a processor id that is not known (``named``: the ids tasks name).
        ``processors`` is false when no tasks are read (``jobs.tasks: false``): nothing names
        them then."""
        now = self._monotonic()
        if self._units.due(now):
            self._units.read(lambda: client.read_reserved_units(deadline), now)
        if not processors:
            return
        known = self.processors
        unknown = frozenset(pid for pid in named if pid and pid not in known)
        if self._processors.due(now) or not unknown <= self._unknown_after_read:
            self._processors.read(lambda: client.list_media_processors(deadline), now)
            # Still unknown after the read (or the read failed): wait for the next regular one.
            self._unknown_after_read = frozenset(
                pid for pid in unknown if pid not in self.processors
            )
