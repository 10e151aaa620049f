"""A point in monotonic time that bounds every blocking call of a collection."""

from __future__ import annotations

import time
from dataclasses import dataclass

from exporter.errors import DeadlineExceeded


@dataclass(frozen=True, slots=True)
class Deadline:
    """The moment (``time.monotonic()``) by which a collection must be done."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return time.monotonic() >= self.at

    def timeout(self, cap: float) -> float:
        """The timeout for one blocking call: ``min(cap, remaining())``.

        Raises ``DeadlineExceeded`` when no time is left, so that no call starts with a zero timeout.
        """
        left = self.remaining()
        if left <= 0.0:
            raise DeadlineExceeded("the collection deadline has passed")
        return min(cap, left)
