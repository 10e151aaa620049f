"""The AMS v2 + Azure AD emulator: the stand-in for the retired service in tests and ``--demo``.

See ``docs/architecture.md`` for the interface; ``python -m exporter.emulator --help`` runs it alone.
"""

from __future__ import annotations

from exporter.emulator.emulator import Emulator
from exporter.emulator.entities import EmuJob, EmuTask, JobState
from exporter.emulator.faults import Fault
from exporter.emulator.requestlog import RequestRecord

__all__ = ["EmuJob", "EmuTask", "Emulator", "Fault", "JobState", "RequestRecord"]
