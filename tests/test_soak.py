"""A bounded soak of a real exporter process against the living scenario with periodic faults.

The soak itself is ``tests/support/soak.py``, which ``bench/soak.py`` runs for longer.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.support.soak import SHORT_SECONDS, run_soak


@pytest.mark.soak
def test_short_soak_stays_flat_and_quiet():
    seconds = float(os.environ.get("AMS_SOAK_SECONDS", SHORT_SECONDS))
    report = run_soak(seconds)
    print(json.dumps(report.figures(), indent=2))
    assert report.episodes >= 4
    assert report.problems == []
