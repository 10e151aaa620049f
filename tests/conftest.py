"""Fixtures that several test modules share.

Emulators differ from module to module (size, seed, clock), so each module defines its own; the
fixtures here build on the one a module names ``emu``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ams_emulator import Emulator
from tests.support.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Throw-away CAs and certificates, made once per module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fresh(emu: Emulator) -> Iterator[Emulator]:
    """The module's ``emu`` with no faults and an empty request log, cleaned up after the test."""
    emu.faults.clear()
    emu.clear_log()
    yield emu
    emu.faults.clear()
