"""Jobs and tasks as the exporter sees them, read from AMS v2 entities.

Everything here is plain data: timestamps are Unix seconds (float, UTC) and durations are seconds,
already converted from the service's milliseconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobState(enum.IntEnum):
    """The AMS v2 job state enum; tasks use the same numeric codes."""

    QUEUED = 0
    SCHEDULED = 1
    PROCESSING = 2
    FINISHED = 3
    ERROR = 4
    CANCELED = 5
    CANCELING = 6

    @property
    def label(self) -> str:
        """The state's name as used in metric labels (``Queued``, ``Processing`` ...)."""
        return self.name.capitalize()

    @property
    def is_final(self) -> bool:
        """Finished, Error and Canceled never change again (the SDK's ``IsFinalJobState``)."""
        return self in FINAL_STATES


# The kinds of entity the exporter reads, as the ``entity`` label of ams_unreadable_entities.
ENTITY_KINDS = ("job", "task")

FINAL_STATES = frozenset({JobState.FINISHED, JobState.ERROR, JobState.CANCELED})
ACTIVE_STATES = frozenset(set(JobState) - FINAL_STATES)

# The documented closed list of task ErrorDetails codes (media-services-encoding-error-codes).
# Any other code is reported as "Unknown" so that a label never carries free text.
ERROR_CODES = (
    "Unknown",
    "ErrorDownloadingInputAssetMalformedContent",
    "ErrorDownloadingInputAssetServiceFailure",
    "ErrorParsingConfiguration",
    "ErrorExecutingTaskMalformedContent",
    "ErrorExecutingTaskUnsupportedFormat",
    "ErrorProcessingTask",
    "ErrorUploadingOutputAsset",
    "ErrorCancelingTask",
    "TransientError",
)


@dataclass(frozen=True, slots=True)
class Task:
    """One task of a job. ``progress`` is the service's 0-100 percentage, clamped to that range.

    An optional field that AMS sent in a form that cannot be read is ``None``, so that only the
    series derived from it go missing.
    """

    id: str
    name: str
    state: int
    progress: float | None
    running_duration_seconds: float | None
    start_time: float | None
    end_time: float | None
    error_codes: tuple[str, ...] = ()
    media_processor_id: str = ""  # "" when AMS sent none that can be read


# ReservedUnitType codes of EncodingReservedUnitTypes, as the ``type`` label.
RESERVED_UNIT_TYPES = ("S1", "S2", "S3")


@dataclass(frozen=True, slots=True)
class ReservedUnits:
    """An account's encoding reserved units (its ``EncodingReservedUnitTypes`` entity): how many
    tasks run at once. ``type`` is S1, S2 or S3; ``maximum`` is ``None`` when it cannot be read."""

    type: str
    current: int
    maximum: int | None


@dataclass(frozen=True, slots=True)
class MediaProcessor:
    """One entry of the ``MediaProcessors`` set: what runs a task."""

    id: str
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Job:
    """One AMS v2 job. Timestamps are Unix seconds; ``running_duration_seconds`` came from ms.

    ``priority`` and ``running_duration_seconds`` are ``None`` when AMS sent something that cannot
    be read, or a duration outside any real one (negative, over ten years).
    """

    id: str
    name: str
    state: JobState
    created: float
    last_modified: float
    start_time: float | None
    end_time: float | None
    priority: int | None
    running_duration_seconds: float | None
