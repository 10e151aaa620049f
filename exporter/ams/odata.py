"""OData v3 as AMS v2 speaks it: literals for ``$filter``, reading response bodies, dates.

AMS answers in two JSON shapes depending on the ``Accept`` header: minimal metadata
(``{"value": [...]}``) and verbose (``{"d": {"results": [...]}}``). Both are read here, as are
every documented date form and the error bodies of AMS and Azure AD. Nothing in this module
does I/O; every reader either returns a value or raises :class:`ODataFormatError`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

from exporter.ams.model import (
    ERROR_CODES,
    RESERVED_UNIT_TYPES,
    Job,
    JobState,
    MediaProcessor,
    ReservedUnits,
    Task,
)
from exporter.redact import SECRETS, redact

log = logging.getLogger(__name__)


class ODataFormatError(ValueError):
    """A body or a value does not have the shape AMS documents; the message says what is wrong."""


_KNOWN_ERROR_CODES = frozenset(ERROR_CODES)
_EXCERPT_CHARS = 160
_MESSAGE_CHARS = 300

# Zone-less ISO (the minimal JSON shape trims trailing fractional zeros), with an optional ``Z``
# or numeric offset. Up to 7 fractional digits: .NET ticks are 100 ns.
_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)
# WCF's JSON date: milliseconds since the epoch (UTC), optionally followed by an offset that
# only says which zone the value was meant for; the instant is the milliseconds alone.
_MS_DATE_RE = re.compile(r"/Date\((-?\d{1,15})([+-]\d{4})?\)/", re.ASCII)
# Upstream text longer than this is cut before it is redacted and shown (bodies are capped anyway).
_REDACT_SCAN_CHARS = 64 * 1024
_CONTROL_RE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_XML_CODE_RE = re.compile(r"<(?:\w+:)?code>([^<]{0,200})</(?:\w+:)?code>")
_XML_MESSAGE_RE = re.compile(r"<(?:\w+:)?message[^>]*>([^<]{0,2000})</(?:\w+:)?message>")
# .NET's DateTime.MinValue, which WCF writes for a DateTime that was never set.
_DOTNET_MIN_YEAR = 1
_DOTNET_MIN_TS = datetime(2, 1, 1, tzinfo=timezone.utc).timestamp()
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EXACT_INT = 2**53
# Far above any account's reserved units (25 by default; more by quota request).
_MAX_UNITS = 100_000
_JOB_STATES = tuple(JobState)


def quote(value: str) -> str:
    """An OData string literal: single quotes around ``value``, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def datetime_literal(ts: float) -> str:
    """An OData v3 ``datetime'...'`` literal for Unix time ``ts``, in UTC, whole seconds."""
    moment = datetime.fromtimestamp(math.floor(ts), tz=timezone.utc)
    return f"datetime'{moment.strftime('%Y-%m-%dT%H:%M:%S')}'"


def parse_datetime(value: object) -> float | None:
    """A date from an AMS body as UTC Unix seconds; ``None`` for null.

    Accepted forms: zone-less ISO with 0-7 fractional digits (read as UTC, as the Java SDK does),
    ISO with ``Z`` or an offset, ``/Date(ms)/`` with or without an offset suffix, and a bare
    JSON number of milliseconds (the REST page describes Created as "milliseconds since Jan 1
    1970"). .NET's ``DateTime.MinValue`` (year 1) means "not set" and reads as ``None``.
    """
    if type(value) is str:
        fast = _from_iso_fast(value)
        if fast is not None:
            return fast if fast > _DOTNET_MIN_TS else None
        return _from_text(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ODataFormatError(f"expected a date, got {value!r}")
    if isinstance(value, (int, float)):
        return _from_milliseconds(value)
    if isinstance(value, str):
        return _from_text(value)
    raise ODataFormatError(f"expected a date, got {type(value).__name__}")


def _from_text(value: str) -> float | None:
    text = value.strip()
    ms_match = _MS_DATE_RE.fullmatch(text)
    if ms_match:
        return _from_milliseconds(int(ms_match.group(1)))
    iso_match = _ISO_RE.fullmatch(text)
    if iso_match:
        return _from_iso(iso_match)
    raise ODataFormatError(f"not a date in any documented form: {excerpt(text)!r}")


def _from_iso_fast(value: str) -> float | None:
    """The common ISO forms through the C parser (every listed job has four dates).

    ``datetime.fromisoformat`` reads zone-less, ``Z`` and offset forms with any number of
    fractional digits from Python 3.11 on (keeping microseconds); when it refuses (Python 3.10 with
    an odd number of digits), the regular expression below takes over.
    """
    if len(value) < 19 or value[10] != "T" or value[4] != "-" or value[7] != "-":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return (moment - _EPOCH_NAIVE).total_seconds()
    return moment.timestamp()


def _from_milliseconds(ms: float) -> float:
    # Compared before any float conversion: a JSON integer may be far beyond a double.
    if abs(ms) > 253_402_300_800_000 or not math.isfinite(ms):  # beyond year 9999
        raise ODataFormatError(f"date out of range: {excerpt(repr(ms), 40)} ms")
    return ms / 1000.0


def _from_iso(match: re.Match[str]) -> float | None:
    year, month, day, hour, minute = (int(match.group(i)) for i in range(1, 6))
    if year == _DOTNET_MIN_YEAR:
        return None
    second = int(match.group(6) or 0)
    fraction = match.group(7) or ""
    zone = match.group(8)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError as exc:
        raise ODataFormatError(f"invalid date {match.group(0)!r}: {exc}") from None
    ts = moment.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        ts -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return ts


def decode_json(body: bytes | str) -> Any:
    """Parse a JSON body.

    Invalid UTF-8 becomes U+FFFD rather than failing the body: one job name with a bad byte must
    not hide every other job of the page. ``NaN`` and ``Infinity`` are read as floats for the same
    reason; the field readers refuse them where a finite number is needed.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ODataFormatError(f"the body is not valid JSON ({_json_reason(exc)})") from None


def _json_reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return excerpt(str(exc))


def read_entities(body: bytes | str) -> list[dict[str, Any]]:
    """The entities of a collection response, in either JSON shape.

    Minimal metadata: ``{"odata.metadata": ..., "value": [...]}``. Verbose:
    ``{"d": {"results": [...]}}``, or the OData v1 verbose form ``{"d": [...]}``.
    """
    document = decode_json(body)
    if not isinstance(document, dict):
        raise ODataFormatError(f"expected a JSON object, got {_json_type(document)}")
    if "value" in document:
        items, where = document["value"], "value"
    elif "d" in document:
        inner = document["d"]
        if isinstance(inner, dict) and "results" in inner:
            items, where = inner["results"], "d.results"
        elif isinstance(inner, list):
            items, where = inner, "d"
        else:
            raise ODataFormatError("'d' holds neither 'results' nor a list")
    else:
        keys = ", ".join(sorted(str(key) for key in document)[:5]) or "none"
        raise ODataFormatError(f"expected 'value' or 'd' in the body, found keys: {excerpt(keys)}")
    if not isinstance(items, list):
        raise ODataFormatError(f"'{where}' is {_json_type(items)}, expected a list")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ODataFormatError(f"'{where}[{index}]' is {_json_type(item)}, expected an object")
    return items


def read_error(body: bytes | str) -> tuple[str, str]:
    """``(code, message)`` from an error body; never raises.

    Shapes: OData v3 minimal ``{"odata.error": {"code", "message": {"lang", "value"}}}``,
    verbose ``{"error": {...same...}}``, a plain string message, Azure AD's
    ``{"error": "invalid_client", "error_description": "AADSTS...: ..."}``, and the Atom/XML
    ``<error><code/><message/></error>``. Anything else yields ``("", <short excerpt>)``. The
    message is bounded, free of control characters, and anything shaped like a token is removed.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return _error_from_text(text)
    if isinstance(document, dict):
        found = _error_from_json(document)
        if found is not None:
            return found
    return "", excerpt(text)


def _error_from_json(document: dict[str, Any]) -> tuple[str, str] | None:
    error = document.get("odata.error", document.get("error"))
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, dict):
            message = message.get("value")
        return _clean(error.get("code")), _clean_message(message)
    if isinstance(error, str):
        return _clean(error), _clean_message(_first_line(document.get("error_description")))
    return None


def _error_from_text(text: str) -> tuple[str, str]:
    code = _XML_CODE_RE.search(text)
    message = _XML_MESSAGE_RE.search(text)
    if code or message:
        return (
            _clean(code.group(1) if code else ""),
            _clean_message(message.group(1) if message else ""),
        )
    return "", excerpt(text)


def _first_line(value: object) -> object:
    return value.strip().splitlines()[0] if isinstance(value, str) and value.strip() else value


def _clean(value: object) -> str:
    return excerpt(value, 100) if isinstance(value, str) else ""


def _clean_message(value: object) -> str:
    return excerpt(value, _MESSAGE_CHARS) if isinstance(value, str) else ""


def excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """``text`` made safe to show: secrets and tokens redacted, control characters folded, length
    bounded. Redaction comes first, so that the cut cannot leave half a secret behind.
    """
    cleaned = _CONTROL_RE.sub(" ", redact(text[:_REDACT_SCAN_CHARS])).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


# Names are labels: a longer one is cut (with an ellipsis), the id labels stay exact.
MAX_NAME_CHARS = 512
# A RunningDuration beyond this (ten years, in ms) is not a duration any job had.
_MAX_RUNNING_MS = 10 * 365.25 * 86400 * 1000.0


def job_from_entity(d: Mapping[str, Any]) -> Job:
    """A :class:`Job` from one Jobs entity (either shape).

    ``Id``, ``State`` and ``Created`` are required: without them the entity is not a job the
    exporter can show, and :class:`ODataFormatError` says which field failed and why. Any other
    field that cannot be read is left out (``None``), so that only the series derived from it
    go missing. ``RunningDuration`` is milliseconds although the .NET IJob page says seconds: the
    REST page, the SDK's conversion and a captured job all agree on milliseconds.
    """
    job_id = _required_str(d, "Id")
    try:
        state = _job_state(d.get("State"))
        created = parse_datetime(d.get("Created"))
        if created is None:
            raise ODataFormatError("'Created' is missing")
    except ODataFormatError as exc:
        raise ODataFormatError(f"job {excerpt(job_id, 80)!r}: {exc}") from None
    last_modified = _optional(parse_datetime, d, "LastModified")
    priority = _optional(_integer, d, "Priority")
    return Job(
        id=job_id,
        name=_name(d),
        state=state,
        created=created,
        last_modified=created if last_modified is None else last_modified,
        start_time=_optional(parse_datetime, d, "StartTime"),
        end_time=_optional(parse_datetime, d, "EndTime"),
        priority=None if priority is None else int(priority),
        running_duration_seconds=_running_duration(d),
    )


class JobMemo:
    """:func:`job_from_entity` for a listing read again and again: an unchanged entity is not read twice.

    Reading a Jobs entity costs about ten times its JSON decoding (four dates, a frozen dataclass),
    and from one collection to the next almost every entity is byte for byte the same (final jobs
    never change). The memo keeps each entity with its :class:`Job` until the next listing, so
    equality of the decoded entity stands for reading it; it forgets what a listing no longer
    returns. Safe for the concurrent pages of one listing.
    """

    def __init__(self) -> None:
        self._previous: dict[str, tuple[Mapping[str, Any], Job]] = {}
        self._current: dict[str, tuple[Mapping[str, Any], Job]] = {}
        self._generation = SECRETS.generation

    def read(self, entity: Mapping[str, Any]) -> Job:
        """The job of ``entity``, as :func:`job_from_entity` reads it."""
        if self._generation != SECRETS.generation:
            # A secret was learnt since these jobs were read: their names are read again.
            self._previous, self._generation = {}, SECRETS.generation
        key = entity.get("Id")
        known = self._previous.get(key) if type(key) is str else None
        job = known[1] if known is not None and known[0] == entity else job_from_entity(entity)
        self._current[job.id] = (entity, job)
        return job

    def listing_done(self) -> None:
        """The listing is complete: from now on, remember only what it returned."""
        self._previous, self._current = self._current, {}


def task_from_entity(d: Mapping[str, Any]) -> Task:
    """A :class:`Task` from one Tasks entity; ``RunningDuration`` ms becomes seconds.

    ``Id`` and ``State`` are required, the rest optional as for jobs. Progress is clamped to
    0..100. Error codes outside the documented closed list become ``Unknown`` so that they can
    be labels.
    """
    task_id = _required_str(d, "Id")
    try:
        state = _job_state(d.get("State"), what="task")
    except ODataFormatError as exc:
        raise ODataFormatError(f"task {excerpt(task_id, 80)!r}: {exc}") from None
    progress = _optional(_number, d, "Progress")
    return Task(
        id=task_id,
        name=_name(d),
        state=int(state),
        progress=None if progress is None else min(100.0, max(0.0, progress)),
        running_duration_seconds=_running_duration(d),
        start_time=_optional(parse_datetime, d, "StartTime"),
        end_time=_optional(parse_datetime, d, "EndTime"),
        error_codes=_optional(_error_codes, d, "ErrorDetails") or (),
        media_processor_id=_short(_optional(_string, d, "MediaProcessorId") or ""),
    )


def reserved_units_from_entity(d: Mapping[str, Any]) -> ReservedUnits:
    """The account's reserved units from its ``EncodingReservedUnitTypes`` entity.

    ``ReservedUnitType`` (0, 1, 2 for S1, S2, S3) and ``CurrentReservedUnits`` are required;
    ``MaxReservableUnits`` is read when it can be.
    """
    code = d.get("ReservedUnitType")
    try:
        kind = int(_integer(code))
    except ODataFormatError as exc:
        raise ODataFormatError(f"'ReservedUnitType' {exc}") from None
    if code is None or not 0 <= kind < len(RESERVED_UNIT_TYPES):
        raise ODataFormatError(f"'ReservedUnitType' {excerpt(str(code), 40)} is not 0, 1 or 2")
    if d.get("CurrentReservedUnits") is None:
        raise ODataFormatError("'CurrentReservedUnits' is missing")
    try:
        current = _unit_count(d.get("CurrentReservedUnits"))
    except ODataFormatError as exc:
        raise ODataFormatError(f"'CurrentReservedUnits' {exc}") from None
    # Null reads as 0 for the counts AMS documents as not nullable; a null maximum is unknown.
    maximum = (
        None
        if d.get("MaxReservableUnits") is None
        else _optional(_unit_count, d, "MaxReservableUnits")
    )
    return ReservedUnits(RESERVED_UNIT_TYPES[kind], current, maximum)


def _unit_count(value: object) -> int:
    count = _integer(value)
    if not 0 <= count <= _MAX_UNITS:
        raise ODataFormatError(f"is not a count of reserved units: {excerpt(str(value), 40)!r}")
    return int(count)


def processor_from_entity(d: Mapping[str, Any]) -> MediaProcessor:
    """One ``MediaProcessors`` entity; ``Id`` is required, ``Name`` and ``Version`` optional."""
    return MediaProcessor(
        id=_short(_required_str(d, "Id")),
        name=_short(_optional(_string, d, "Name") or ""),
        version=_short(_optional(_string, d, "Version") or ""),
    )


def _short(text: str) -> str:
    """A label value from a small closed set (processor ids, names, versions): control
    characters folded to spaces (no real processor has one), cut like a name."""
    text = _CONTROL_RE.sub(" ", text)
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS] + "…"


_T = TypeVar("_T")


def _optional(read: Callable[[Any], _T], d: Mapping[str, Any], key: str) -> _T | None:
    """``read(d[key])``, or ``None`` when the value cannot be read (logged at debug level)."""
    try:
        return read(d.get(key))
    except ODataFormatError as exc:
        log.debug("entity %s: '%s' %s; left out", _id_of(d), key, exc)
        return None


def _id_of(d: Mapping[str, Any]) -> str:
    value = d.get("Id")
    return repr(excerpt(value, 80)) if isinstance(value, str) else "without an Id"


def _running_duration(d: Mapping[str, Any]) -> float | None:
    """``RunningDuration`` in seconds; ``None`` when unreadable, negative or over ten years."""
    ms = _optional(_number, d, "RunningDuration")
    if ms is None:
        return None
    if not 0.0 <= ms <= _MAX_RUNNING_MS:
        log.debug("entity %s: RunningDuration %r ms is no real duration", _id_of(d), ms)
        return None
    return ms / 1000.0


def _name(d: Mapping[str, Any]) -> str:
    """``Name``, or ``""`` when absent or not a string; cut to :data:`MAX_NAME_CHARS`."""
    name = _optional(_string, d, "Name") or ""
    return name if len(name) <= MAX_NAME_CHARS else name[:MAX_NAME_CHARS] + "…"


def _required_str(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        kind = "an empty string" if value == "" else _json_type(value)
        raise ODataFormatError(f"'{key}' is {kind}, expected a non-empty string")
    return _encodable(value)


def _string(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ODataFormatError(f"is {_json_type(value)}, expected a string")
    return _encodable(value)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(value: str) -> str:
    """``value`` with lone surrogates replaced by U+FFFD and remembered secrets redacted.

    JSON may carry an unpaired ``\\ud800`` escape; such a string cannot be written as UTF-8, and
    one job name holding it would otherwise break the whole exposition. An upstream that names a
    job after the client secret or a token it issued must not get it into a label.
    """
    if not value.isascii():
        value = _LONE_SURROGATE.sub("\ufffd", value)
    return SECRETS.redact_value(value)


def _number(value: object, *, integral: bool = False) -> float:
    """A number sent as a JSON number or a numeric string (verbose JSON quotes some Edm types).

    Missing or null reads as 0: AMS documents these fields as not nullable, with default 0.
    """
    if type(value) is int and -_EXACT_INT < value < _EXACT_INT:  # the common case, first
        return float(value)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ODataFormatError(f"is {_json_type(value)}, expected a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ODataFormatError(f"is not a number: {excerpt(str(value), 40)!r}") from None
    if not math.isfinite(number) or (integral and not number.is_integer()):
        kind = "an integer" if integral else "a finite number"
        raise ODataFormatError(f"is not {kind}: {excerpt(str(value), 40)!r}")
    return number


def _integer(value: object) -> float:
    return _number(value, integral=True)


def _job_state(value: object, what: str = "job") -> JobState:
    """A state code; required, and one of the seven documented ones (tasks share the codes)."""
    if type(value) is int and 0 <= value < len(_JOB_STATES):
        return _JOB_STATES[value]
    if value is None:
        raise ODataFormatError("'State' is missing")
    try:
        state = _integer(value)
    except ODataFormatError as exc:
        raise ODataFormatError(f"'State' {exc}") from None
    try:
        return JobState(int(state))
    except ValueError:
        raise ODataFormatError(f"'State' {int(state)} is not a documented {what} state") from None


def _error_codes(value: object) -> tuple[str, ...]:
    """Codes of an ``ErrorDetails`` collection: a plain array or verbose ``{"results": [...]}``."""
    if value is None:
        return ()
    if isinstance(value, dict):
        value = value.get("results")
    if not isinstance(value, list):
        raise ODataFormatError(f"is {_json_type(value)}, expected a list")
    codes = []
    for item in value:
        code = item.get("Code") if isinstance(item, dict) else None
        codes.append(code if isinstance(code, str) and code in _KNOWN_ERROR_CODES else "Unknown")
    return tuple(codes)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
