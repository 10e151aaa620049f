"""The emulator's clock: real time scaled by a speed factor, which tests can freeze, set and advance."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone


def _require_aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"the clock needs an aware datetime, got the naive {when.isoformat()}")
    return when.astimezone(timezone.utc)


def _require_speed(speed: float) -> float:
    if not speed >= 0.0 or speed == float("inf"):
        raise ValueError(f"clock speed must be a finite number >= 0, got {speed!r}")
    return float(speed)


class Clock:
    """Simulated UTC time: ``start + (monotonic elapsed) * speed``.

    ``speed`` 1.0 runs in real time, 60.0 makes a minute pass every second and 0 freezes the clock
    (what tests want: only ``set``/``advance`` move it). Thread-safe.
    """

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._anchor_sim = (
            _require_aware(start) if start is not None else datetime.now(timezone.utc)
        )
        self._anchor_real = time.monotonic()
        self._speed = _require_speed(speed)

    def _now_locked(self) -> datetime:
        elapsed = (time.monotonic() - self._anchor_real) * self._speed
        return self._anchor_sim + timedelta(seconds=elapsed)

    def _rebase_locked(self, when: datetime) -> None:
        self._anchor_sim = when
        self._anchor_real = time.monotonic()

    def now(self) -> datetime:
        """The current simulated time (aware, UTC)."""
        with self._lock:
            return self._now_locked()

    def set(self, when: datetime) -> None:
        """Jump to ``when``; the clock keeps running from there at its speed."""
        aware = _require_aware(when)
        with self._lock:
            self._rebase_locked(aware)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` of simulated time (negative values are refused)."""
        if not seconds >= 0.0 or seconds == float("inf"):
            raise ValueError(f"the clock only moves forward by a finite amount, got {seconds!r}")
        with self._lock:
            self._rebase_locked(self._now_locked() + timedelta(seconds=seconds))

    @property
    def speed(self) -> float:
        """Simulated seconds per real second (0 = frozen)."""
        with self._lock:
            return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        checked = _require_speed(value)
        with self._lock:
            self._rebase_locked(self._now_locked())
            self._speed = checked
