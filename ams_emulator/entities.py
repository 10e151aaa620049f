"""The emulator's entities, holding the service's own values, and their EDM schema: jobs and
tasks, the media processors that run tasks, and the account's encoding reserved units.

These deliberately do not reuse ``exporter.ams.model``: tests compare what the exporter reports with
what the emulator holds, so the emulator must not share the exporter's conversions.
"""

from __future__ import annotations

import copy
import enum
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias, TypedDict

NAMESPACE = "Microsoft.Cloud.Media.Vod.Rest.Data.Models"
JOB_ID_PREFIX = "nb:jid:UUID:"
TASK_ID_PREFIX = "nb:tid:UUID:"
PROCESSOR_ID_PREFIX = "nb:mpid:UUID:"
MES_PROCESSOR_ID = PROCESSOR_ID_PREFIX + "ff4df607-d419-42f0-bc17-a481b1331e56"
MAX_TASKS_PER_JOB = 30
MAX_JOB_NAME_LENGTH = 256


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def canonical_guid(text: str) -> str | None:
    """A GUID as the emulator keeps it (lower case), or None when ``text`` is not one: GUIDs are
    compared as values, whatever the case of their hex digits."""
    return text.lower() if _GUID.fullmatch(text) else None


def new_guid(rng: random.Random) -> str:
    """A version-4 GUID drawn from ``rng`` (deterministic for a seeded generator)."""
    h = f"{rng.getrandbits(128):032x}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


class JobState(enum.IntEnum):
    """AMS v2 job states; tasks use the same numeric codes."""

    QUEUED = 0
    SCHEDULED = 1
    PROCESSING = 2
    FINISHED = 3
    ERROR = 4
    CANCELED = 5
    CANCELING = 6

    @property
    def is_final(self) -> bool:
        """Finished, Error and Canceled never change again."""
        return self in (JobState.FINISHED, JobState.ERROR, JobState.CANCELED)


class ReservedUnitType(enum.IntEnum):
    """The speed class of an account's encoding reserved units (``ReservedUnitType``)."""

    S1 = 0
    S2 = 1
    S3 = 2


DEFAULT_MAX_RESERVABLE_UNITS = 25
"""How many encoding units an account could reserve without asking for a higher quota."""


# The documented closed list of task ErrorDetails codes (media-services-encoding-error-codes), with a
# message in the style the service used for each.
ERROR_MESSAGES: dict[str, str] = {
    "Unknown": "An unknown error occurred while processing the task.",
    "ErrorDownloadingInputAssetMalformedContent": (
        "Error downloading input asset: the content is malformed (invalid paths or file names)."
    ),
    "ErrorDownloadingInputAssetServiceFailure": (
        "Error downloading input asset: the storage service failed on its side."
    ),
    "ErrorParsingConfiguration": "Error parsing the task configuration: the preset is not valid.",
    "ErrorExecutingTaskMalformedContent": (
        "Error executing the task: the input contains corrupted or malformed media."
    ),
    "ErrorExecutingTaskUnsupportedFormat": (
        "Error executing the task: the media processor does not support the input format."
    ),
    "ErrorProcessingTask": "An error occurred while the media processor was processing the task.",
    "ErrorUploadingOutputAsset": "Error uploading the output asset to storage.",
    "ErrorCancelingTask": "An error occurred while the task was being canceled.",
    "TransientError": "A transient error occurred; the job can be submitted again.",
}
ERROR_CODES: tuple[str, ...] = tuple(ERROR_MESSAGES)

# HistoricalEvents codes seen in captured responses.
EVENT_WAITING = "WaitingForFreeResources"
EVENT_SCHEDULED = "Scheduled"
EVENT_PROCESSING = "Processing"
EVENT_FINISHED = "Finished"
EVENT_BILLING = "TaskBillingInformationAdded"


class ErrorDetail(TypedDict):
    """One item of ``Task.ErrorDetails``."""

    Code: str
    Message: str


class HistoricalEvent(TypedDict):
    """One item of ``Task.HistoricalEvents``; ``TimeStamp`` is written without a zone."""

    Code: str
    Message: str
    TimeStamp: datetime


class JobNotificationSubscription(TypedDict):
    """One item of ``Job.JobNotificationSubscriptions`` (TargetJobState 1 FinalStatesOnly, 2 All)."""

    NotificationEndPointId: str
    TargetJobState: int


class TaskNotificationSubscription(TypedDict):
    """One item of ``Task.TaskNotificationSubscriptions``."""

    IncludeTaskProgress: bool
    NotificationEndPointId: str
    TargetTaskState: int


@dataclass(slots=True)
class EmuTask:
    """A task as the service stores it: aware UTC datetimes, ``running_duration_ms`` in ms."""

    id: str
    job_id: str
    name: str | None
    configuration: str
    media_processor_id: str
    state: int
    progress: float
    running_duration_ms: float
    start_time: datetime | None
    end_time: datetime | None
    priority: int
    perf_message: str | None = None
    error_details: list[ErrorDetail] = field(default_factory=list)
    historical_events: list[HistoricalEvent] = field(default_factory=list)
    task_body: str = ""
    options: int = 0
    encryption_key_id: str | None = None
    encryption_scheme: str | None = "None"
    encryption_version: str | None = None
    initialization_vector: str | None = None
    notification_subscriptions: list[TaskNotificationSubscription] = field(default_factory=list)

    def copy(self) -> EmuTask:
        """A deep copy, so callers can keep it while the scenario moves on."""
        dup = copy.copy(self)
        dup.error_details = [item.copy() for item in self.error_details]
        dup.historical_events = [item.copy() for item in self.historical_events]
        dup.notification_subscriptions = [item.copy() for item in self.notification_subscriptions]
        return dup


@dataclass(slots=True)
class EmuJob:
    """A job as the service stores it; ``state`` is the aggregate of its tasks' states."""

    id: str
    name: str | None
    created: datetime
    last_modified: datetime
    start_time: datetime | None
    end_time: datetime | None
    priority: int
    running_duration_ms: float
    state: int
    template_id: str | None = None
    notification_subscriptions: list[JobNotificationSubscription] = field(default_factory=list)
    tasks: list[EmuTask] = field(default_factory=list)

    def copy(self) -> EmuJob:
        """A deep copy including the tasks (datetimes and strings are immutable and shared)."""
        dup = self.copy_without_tasks()
        dup.tasks = [task.copy() for task in self.tasks]
        return dup

    def copy_without_tasks(self) -> EmuJob:
        """A deep copy of the job's own properties, ``tasks`` empty: what a Jobs answer shows.

        Copying the tasks is about four fifths of the cost of :meth:`copy` (two tasks a job on
        average, each with three lists of its own), and a Jobs answer never writes them.
        """
        dup = copy.copy(self)
        dup.notification_subscriptions = [item.copy() for item in self.notification_subscriptions]
        dup.tasks = []
        return dup


@dataclass(frozen=True, slots=True)
class EmuMediaProcessor:
    """One entry of the ``MediaProcessors`` set: what runs a task. Every property is read-only."""

    id: str
    name: str
    description: str
    sku: str
    vendor: str
    version: str


@dataclass(frozen=True, slots=True)
class EmuReservedUnitType:
    """The account's one ``EncodingReservedUnitTypes`` entity.

    ``current_reserved_units`` is how many jobs the account encodes at once: the scenario's
    slots, which a job holds from Scheduled until it ends.
    """

    account_id: str
    reserved_unit_type: int
    current_reserved_units: int
    max_reservable_units: int

    @property
    def id(self) -> str:
        """The entity's key (``AccountId``), under the name the key of every entity has here."""
        return self.account_id


Entity: TypeAlias = EmuJob | EmuTask | EmuMediaProcessor | EmuReservedUnitType

_GENERATED_PROCESSORS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ams-emulator:media-processors")


def generated_processor_id(name: str) -> str:
    """A stable Id made up for a processor whose real Id is not documented.

    A name-based (version 5) UUID in a namespace of the emulator's own: never the service's Id,
    and marked as made up by its version digit.
    """
    return PROCESSOR_ID_PREFIX + str(uuid.uuid5(_GENERATED_PROCESSORS, name))


def _listed_processor(
    name: str, version: str, processor_id: str | None = None
) -> EmuMediaProcessor:
    # Description repeats the name and Sku is empty, as in the documented entry of MES.
    return EmuMediaProcessor(
        id=processor_id or generated_processor_id(name),
        name=name,
        description=name,
        sku="",
        vendor="Microsoft",
        version=version,
    )


MEDIA_PROCESSORS: tuple[EmuMediaProcessor, ...] = (
    # The one processor whose entry is documented (the answer to a Name filter): as shown there.
    _listed_processor("Media Encoder Standard", "1.1", MES_PROCESSOR_ID),
    # Documented processor names; their Ids are made up (generated_processor_id), not the
    # service's, and their versions are plausible values, not ones seen in an answer.
    _listed_processor("Media Encoder Premium Workflow", "1.0"),
    _listed_processor("Azure Media Indexer", "1.2"),
    _listed_processor("Azure Media Indexer 2 Preview", "1.0"),
    _listed_processor("Azure Media Hyperlapse", "1.0"),
    _listed_processor("Storage Decryption", "1.7"),
)
"""The media processors an account lists when the emulator starts (tests add and remove some)."""


def queued_job(
    job_id: str, name: str | None, created: datetime, priority: int, template_id: str | None
) -> EmuJob:
    """A job as it is submitted: Queued, last modified when created, nothing started, no tasks."""
    return EmuJob(
        id=job_id,
        name=name,
        created=created,
        last_modified=created,
        start_time=None,
        end_time=None,
        priority=priority,
        running_duration_ms=0.0,
        state=JobState.QUEUED,
        template_id=template_id,
    )


def queued_task(
    job: EmuJob,
    task_id: str,
    name: str,
    configuration: str,
    *,
    task_body: str = "",
    media_processor_id: str = MES_PROCESSOR_ID,
) -> EmuTask:
    """A task of ``job`` as it is submitted: Queued, nothing started, the job's priority."""
    return EmuTask(
        id=task_id,
        job_id=job.id,
        name=name,
        configuration=configuration,
        media_processor_id=media_processor_id,
        state=JobState.QUEUED,
        progress=0.0,
        running_duration_ms=0.0,
        start_time=None,
        end_time=None,
        priority=job.priority,
        task_body=task_body,
    )


class Kind(enum.Enum):
    """The EDM kind of a property, which decides how it is filtered and serialized."""

    STRING = "Edm.String"
    INT32 = "Edm.Int32"
    DOUBLE = "Edm.Double"
    DATETIME = "Edm.DateTime"
    GUID = "Edm.Guid"
    COLLECTION = "Collection"
    NAVIGATION = "Navigation"

    @property
    def is_scalar(self) -> bool:
        """Scalars can be filtered and ordered on."""
        return self not in (Kind.COLLECTION, Kind.NAVIGATION)


@dataclass(frozen=True, slots=True)
class Prop:
    """One property of an entity type: its wire name, kind and the Python attribute holding it."""

    name: str
    kind: Kind
    attr: str = ""
    item_type: str = ""  # for collections: the complex type's simple name

    @property
    def collection_type(self) -> str:
        """The verbose ``__metadata.type`` of a complex collection."""
        return f"Collection({NAMESPACE}.{self.item_type})"


@dataclass(frozen=True, slots=True)
class EntityType:
    """An entity set with its type name, properties in the order the service writes them, and
    the name of its key property."""

    set_name: str
    type_name: str
    props: tuple[Prop, ...]
    key: str = "Id"

    @property
    def full_name(self) -> str:
        """The qualified type name used in ``__metadata`` and error messages."""
        return f"{NAMESPACE}.{self.type_name}"

    def prop(self, name: str) -> Prop | None:
        """The property called ``name`` (case-sensitive, as in OData), or None."""
        return _PROP_INDEX[self.set_name].get(name)

    @property
    def has_guid_key(self) -> bool:
        """Whether the key is an Edm.Guid, written ``Set(guid'...')`` in a URL."""
        return _PROP_INDEX[self.set_name][self.key].kind is Kind.GUID


JOB_TYPE = EntityType(
    set_name="Jobs",
    type_name="Job",
    props=(
        Prop("Id", Kind.STRING, "id"),
        Prop("Name", Kind.STRING, "name"),
        Prop("Created", Kind.DATETIME, "created"),
        Prop("LastModified", Kind.DATETIME, "last_modified"),
        Prop("EndTime", Kind.DATETIME, "end_time"),
        Prop("Priority", Kind.INT32, "priority"),
        Prop("RunningDuration", Kind.DOUBLE, "running_duration_ms"),
        Prop("StartTime", Kind.DATETIME, "start_time"),
        Prop("State", Kind.INT32, "state"),
        Prop("TemplateId", Kind.STRING, "template_id"),
        Prop(
            "JobNotificationSubscriptions",
            Kind.COLLECTION,
            "notification_subscriptions",
            "JobNotificationSubscription",
        ),
        Prop("InputMediaAssets", Kind.NAVIGATION),
        Prop("OutputMediaAssets", Kind.NAVIGATION),
        Prop("Tasks", Kind.NAVIGATION),
    ),
)

TASK_TYPE = EntityType(
    set_name="Tasks",
    type_name="Task",
    props=(
        Prop("Id", Kind.STRING, "id"),
        Prop("Configuration", Kind.STRING, "configuration"),
        Prop("EndTime", Kind.DATETIME, "end_time"),
        Prop("ErrorDetails", Kind.COLLECTION, "error_details", "ErrorDetail"),
        Prop("HistoricalEvents", Kind.COLLECTION, "historical_events", "TaskHistoricalEvent"),
        Prop("MediaProcessorId", Kind.STRING, "media_processor_id"),
        Prop("Name", Kind.STRING, "name"),
        Prop("PerfMessage", Kind.STRING, "perf_message"),
        Prop("Priority", Kind.INT32, "priority"),
        Prop("Progress", Kind.DOUBLE, "progress"),
        Prop("RunningDuration", Kind.DOUBLE, "running_duration_ms"),
        Prop("StartTime", Kind.DATETIME, "start_time"),
        Prop("State", Kind.INT32, "state"),
        Prop("TaskBody", Kind.STRING, "task_body"),
        Prop("Options", Kind.INT32, "options"),
        Prop("EncryptionKeyId", Kind.STRING, "encryption_key_id"),
        Prop("EncryptionScheme", Kind.STRING, "encryption_scheme"),
        Prop("EncryptionVersion", Kind.STRING, "encryption_version"),
        Prop("InitializationVector", Kind.STRING, "initialization_vector"),
        Prop(
            "TaskNotificationSubscriptions",
            Kind.COLLECTION,
            "notification_subscriptions",
            "TaskNotificationSubscription",
        ),
        Prop("InputMediaAssets", Kind.NAVIGATION),
        Prop("OutputMediaAssets", Kind.NAVIGATION),
    ),
)

MEDIA_PROCESSOR_TYPE = EntityType(
    set_name="MediaProcessors",
    type_name="MediaProcessor",
    props=(
        Prop("Id", Kind.STRING, "id"),
        Prop("Description", Kind.STRING, "description"),
        Prop("Name", Kind.STRING, "name"),
        Prop("Sku", Kind.STRING, "sku"),
        Prop("Vendor", Kind.STRING, "vendor"),
        Prop("Version", Kind.STRING, "version"),
    ),
)

RESERVED_UNIT_TYPE = EntityType(
    set_name="EncodingReservedUnitTypes",
    type_name="EncodingReservedUnitType",
    props=(
        Prop("AccountId", Kind.GUID, "account_id"),
        Prop("ReservedUnitType", Kind.INT32, "reserved_unit_type"),
        Prop("CurrentReservedUnits", Kind.INT32, "current_reserved_units"),
        Prop("MaxReservableUnits", Kind.INT32, "max_reservable_units"),
    ),
    key="AccountId",
)

ENTITY_TYPES: dict[str, EntityType] = {
    t.set_name: t for t in (JOB_TYPE, TASK_TYPE, MEDIA_PROCESSOR_TYPE, RESERVED_UNIT_TYPE)
}
_PROP_INDEX: dict[str, dict[str, Prop]] = {
    t.set_name: {p.name: p for p in t.props} for t in ENTITY_TYPES.values()
}
_TYPE_OF_CLASS: dict[type, EntityType] = {
    EmuJob: JOB_TYPE,
    EmuTask: TASK_TYPE,
    EmuMediaProcessor: MEDIA_PROCESSOR_TYPE,
    EmuReservedUnitType: RESERVED_UNIT_TYPE,
}


def entity_type_of(entity: Entity) -> EntityType:
    """The schema of an entity."""
    return _TYPE_OF_CLASS[type(entity)]
