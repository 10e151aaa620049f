"""Numbers the docs state about the code are the code's numbers."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.ams.client import PAGE_WINDOW, TASK_CONCURRENCY

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _prose(name: str) -> str:
    return re.sub(r"\s+", " ", (DOCS / name).read_text(encoding="utf-8"))


def test_scaling_states_how_many_requests_are_in_flight() -> None:
    stated = re.search(
        r"read at most (\d+) at a time, the job pages at most (\d+) at a time", _prose("scaling.md")
    )
    assert stated is not None, "docs/scaling.md no longer states the request concurrency"
    assert (int(stated.group(1)), int(stated.group(2))) == (TASK_CONCURRENCY, PAGE_WINDOW)
