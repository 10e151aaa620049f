"""JobMemo: reading a listing again gives the same jobs as reading every entity afresh."""

from __future__ import annotations

import pytest

from exporter.ams.odata import JobMemo, job_from_entity
from exporter.redact import SECRETS


def _entity(index: int, state: int = 3, **changes: object) -> dict[str, object]:
    entity: dict[str, object] = {
        "Id": f"nb:jid:UUID:{index:036d}",
        "Name": f"job {index}",
        "State": state,
        "Created": "2026-11-25T17:38:19.155",
        "LastModified": "2026-11-25T17:55:47.999",
        "StartTime": "2026-11-25T17:44:35.692",
        "EndTime": "2026-11-25T17:55:47.999",
        "Priority": 0,
        "RunningDuration": 595794,
    }
    entity.update(changes)
    return entity


def test_an_unchanged_entity_is_not_read_again():
    # A secret learnt meanwhile (by a thread another test left running) rightly empties the memo:
    # the identity is asserted for an attempt during which none was learnt.
    for _ in range(20):
        generation = SECRETS.generation
        memo = JobMemo()
        first = memo.read(_entity(1))
        memo.listing_done()
        again = memo.read(_entity(1))
        if SECRETS.generation == generation:
            assert again is first
            return
    pytest.fail("a secret was learnt during each of 20 attempts")


def test_any_change_of_the_entity_is_read():
    memo = JobMemo()
    memo.read(_entity(1, state=2, EndTime=None))
    memo.listing_done()
    changed = _entity(1, state=3, Name="renamed")
    assert memo.read(changed) == job_from_entity(changed)


def test_jobs_a_listing_no_longer_returns_are_forgotten():
    memo = JobMemo()
    first = memo.read(_entity(1))
    memo.listing_done()
    memo.read(_entity(2))
    memo.listing_done()
    again = memo.read(_entity(1))
    assert again == first
    assert again is not first


def test_an_unfinished_listing_keeps_the_previous_one():
    memo = JobMemo()
    first = memo.read(_entity(1))
    memo.listing_done()
    memo.read(_entity(2))  # a listing that fails before listing_done
    assert memo.read(_entity(1)) is first
