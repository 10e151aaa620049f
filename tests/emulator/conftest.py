"""Fixtures for the emulator's own tests: one shared emulator per module and an HTTPS client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ams_emulator import Emulator
from tests.emulator.helpers import AmsClient


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """A frozen-clock emulator shared by a module; faults and the log are reset after each test."""
    with Emulator(jobs=60, seed=7, speed=0) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean_emulator(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "emu" in request.fixturenames:
        emulator: Emulator = request.getfixturevalue("emu")
        emulator.faults.clear()
        emulator.clear_log()


@pytest.fixture(scope="module")
def client(emu: Emulator) -> Iterator[AmsClient]:
    ams = AmsClient(emu)
    ams.token()  # fetched up front, so tests see only their own requests in the log
    emu.clear_log()
    yield ams
    ams.close()
