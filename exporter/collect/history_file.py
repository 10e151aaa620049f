"""``--storage.path``: an account's :class:`HistoryState` in a file, written atomically.

One JSON file per account, named by a hash of the account name (any name makes a safe file name).
It is written after the collections that changed the state: to a temporary file in the same
directory, flushed and fsynced, then renamed over the old one (and the directory fsynced), so that
a crash leaves the old file or the new one, never half of one. A file that cannot be read, or that
belongs to something else (another account, another program, a later format) is set aside as
``<name>.unreadable`` with a warning, and counting starts afresh: never a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from exporter.collect.history import ENDED_STATES, GroupState, HistoryState

log = logging.getLogger(__name__)

FORMAT = "ams-exporter-history"
VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024
_STATES = frozenset(state.label for state in ENDED_STATES)


class StorageError(Exception):
    """The ``--storage.path`` directory cannot be used."""


def prepare_directory(directory: Path) -> Path:
    """Create ``directory`` if needed and check that files can be written in it.

    Raises :class:`StorageError` with the reason, for the command line to report at start-up.
    """
    if directory.exists() and not directory.is_dir():
        raise StorageError(f"{directory} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(f"cannot create {directory}: {error.strerror}") from None
    try:
        descriptor, probe = tempfile.mkstemp(dir=directory, prefix=".probe-")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise StorageError(f"cannot write in {directory}: {error.strerror}") from None
    return directory


class HistoryFile:
    """The history file of one account in the storage directory."""

    def __init__(self, directory: Path, account: str) -> None:
        self.account = account
        digest = hashlib.sha256(account.encode()).hexdigest()[:16]
        self.path = directory / f"history-{digest}.json"
        self._failing = False

    def load(self, now: float) -> HistoryState | None:
        """The stored state, or ``None`` (no file yet, or one that was set aside)."""
        try:
            with self.path.open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning(
                "account %s: cannot read the history file %s (%s); counting starts afresh",
                self.account,
                self.path,
                error.strerror,
            )
            return None
        try:
            if len(data) > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
            state = _decode(data, self.account, now)
        except (ValueError, TypeError, OverflowError, RecursionError) as error:
            self._set_aside(str(error))
            return None
        return state

    def save(self, state: HistoryState, now: float | None = None) -> bool:
        """Write ``state`` atomically; a failure is logged (once until a write succeeds)."""
        text = json.dumps(_encode(state, self.account, time.time() if now is None else now))
        temporary = None
        try:
            descriptor, temporary = tempfile.mkstemp(
                dir=self.path.parent, prefix=".history-", suffix=".tmp"
            )
            with os.fdopen(descriptor, "wb") as file:
                file.write(text.encode())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            temporary = None
            _fsync_directory(self.path.parent)
        except OSError as error:
            if not self._failing:
                log.warning(
                    "account %s: cannot write the history file %s (%s); the history is kept in "
                    "memory and written again after the next collection that changes it",
                    self.account,
                    self.path,
                    error.strerror,
                )
            self._failing = True
            return False
        finally:
            if temporary is not None:
                _remove_quietly(temporary)
        if self._failing:
            log.info("account %s: the history file %s is written again", self.account, self.path)
        self._failing = False
        return True

    def _set_aside(self, reason: str) -> None:
        aside = self.path.with_name(self.path.name + ".unreadable")
        try:
            os.replace(self.path, aside)
            where = f"; it was renamed to {aside.name}"
        except OSError as error:
            where = f"; it could not be renamed ({error.strerror})"
        log.warning(
            "account %s: the history file %s cannot be used (%s)%s; counting starts afresh "
            "(jobs that ended before now are not counted)",
            self.account,
            self.path,
            reason,
            where,
        )


def _encode(state: HistoryState, account: str, now: float) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "account": account,
        "saved": now,
        "end_floor": state.end_floor,
        "start_floor": state.start_floor,
        "watermark": state.watermark,
        "ended": dict(state.ended),
        "waited": dict(state.waited),
        "last_ended": [[group, label, at] for (group, label), at in state.last_ended.items()],
    }


def _decode(data: bytes, account: str, now: float) -> HistoryState:
    """The state in ``data``; ``ValueError`` says what is wrong with it."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"not JSON: {_short(error)}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError("not an ams-exporter history file")
    version = document.get("version")
    if type(version) is not int or version != VERSION:  # True == 1, but is no version
        raise ValueError(f"format version {_shown(document.get('version'))}, expected {VERSION}")
    if document.get("account") != account:
        raise ValueError(f"it belongs to the account {_shown(document.get('account'))}")
    watermark = document.get("watermark")
    state = HistoryState(
        end_floor=_time(document.get("end_floor"), "end_floor"),
        start_floor=_time(document.get("start_floor"), "start_floor"),
        watermark=None if watermark is None else _time(watermark, "watermark"),
        ended=_times(document.get("ended"), "ended"),
        waited=_times(document.get("waited"), "waited"),
        last_ended=_last_ended(document.get("last_ended")),
    )
    if max(state.end_floor, state.start_floor, state.watermark or 0.0) > now + 86400:
        raise ValueError("its times are more than a day ahead of this machine's clock")
    # A clock that went back a little must not stop the counting until it catches up.
    return replace(
        state, end_floor=min(state.end_floor, now), start_floor=min(state.start_floor, now)
    )


def _time(value: object, key: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ValueError(f"{key}: expected a number of seconds, got {_shown(value)}")
    if not 0 <= value < 1e11:  # an int is compared as it is: float() of 400 digits overflows
        shown = value if isinstance(value, float) else _shown(value)
        raise ValueError(f"{key}: {shown} is not a Unix time")
    return float(value)


def _times(value: object, key: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError(f"{key}: expected an object of job ids, got {_shown(value)}")
    times = {}
    for job_id, at in value.items():
        times[job_id] = _time(at, f"{key}[{job_id!r}]")
    return times


def _last_ended(value: object) -> dict[GroupState, float]:
    if not isinstance(value, list):
        raise ValueError(f"last_ended: expected a list, got {_shown(value)}")
    found: dict[GroupState, float] = {}
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not isinstance(item[0], str)
            or not isinstance(item[1], str)
            or item[1] not in _STATES
        ):
            raise ValueError("last_ended: expected [group, state, time] entries")
        found[(item[0], item[1])] = _time(item[2], "last_ended")
    return found


def _shown(value: object) -> str:
    """A value from the file, short enough for a log line."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return f"a {len(str(abs(value)))}-digit number"
    text = json.dumps(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _short(error: Exception) -> str:
    return str(error)[:200]


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; not every platform can open a directory."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
