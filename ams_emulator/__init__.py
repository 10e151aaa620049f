"""The AMS v2 + Azure AD emulator: the stand-in for the retired service in tests and ``--demo``.

See ``docs/architecture.md`` for the interface; ``python -m ams_emulator --help`` runs it alone.
"""

from __future__ import annotations

from ams_emulator.config_text import Connection, account_entry, exporter_config
from ams_emulator.emulator import Emulator
from ams_emulator.entities import (
    EmuJob,
    EmuMediaProcessor,
    EmuReservedUnitType,
    EmuTask,
    JobState,
    ReservedUnitType,
)
from ams_emulator.faults import Fault
from ams_emulator.requestlog import RequestRecord

__all__ = [
    "Connection",
    "EmuJob",
    "EmuMediaProcessor",
    "EmuReservedUnitType",
    "EmuTask",
    "Emulator",
    "Fault",
    "JobState",
    "RequestRecord",
    "ReservedUnitType",
    "account_entry",
    "exporter_config",
]
