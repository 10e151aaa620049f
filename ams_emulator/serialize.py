"""Entities (jobs, tasks, media processors, reserved units) as the service wrote them in its two
JSON shapes.

Minimal metadata (``Accept: application/json``): plain properties, complex collections as arrays,
dates as zone-less ISO with trailing fractional zeros trimmed (``2015-02-11T01:46:08.897``).
Verbose (``odata=verbose``): ``__metadata``, ``__deferred`` navigation links, complex collections
wrapped in ``results``, and dates either as ISO with ``Z`` or as ``/Date(ms)/`` - both were captured.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import quote

from ams_emulator.entities import Entity, EntityType, Kind, Prop, entity_type_of

DateFormat = Literal["iso", "msdate"]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MSDATE_STRING = re.compile(r'"/Date\((-?\d+)\)/"')


def iso_trimmed(value: datetime) -> str:
    """Zone-less ISO 8601 in UTC, fraction trimmed of trailing zeros and dropped when zero."""
    # isoformat() of a UTC datetime ends in "+00:00" and writes the fraction only when there is
    # one, as six digits: half the time of strftime, on every date of every answer.
    utc = value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)
    text = utc.isoformat()[:-6]
    return text.rstrip("0") if utc.microsecond else text


def ms_date(value: datetime) -> str:
    """The ``/Date(ms)/`` form: milliseconds since the Unix epoch (JSON writers escape the slashes)."""
    delta = value.astimezone(timezone.utc) - _EPOCH
    millis = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return f"/Date({millis})/"


def format_date(value: datetime | None, shape: Literal["minimal", "iso", "msdate"]) -> str | None:
    """A date property in one of the three wire forms; null stays null."""
    if value is None:
        return None
    if shape == "minimal":
        return iso_trimmed(value)
    if shape == "iso":
        return iso_trimmed(value) + "Z"
    return ms_date(value)


def _number(value: float | int) -> float | int:
    """Doubles that hold a whole number are written without a fraction (``"Progress":100``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _complex_items(
    prop: Prop, items: list[Any], shape: Literal["minimal", "iso", "msdate"]
) -> list[Any]:
    out: list[Any] = []
    for item in items:
        converted = dict(item)
        if "TimeStamp" in converted:
            # HistoricalEvents time stamps were captured without a zone even in verbose payloads.
            stamp = converted["TimeStamp"]
            converted["TimeStamp"] = format_date(
                stamp, "msdate" if shape == "msdate" else "minimal"
            )
        out.append(converted)
    return out


def entity_path(entity: Entity) -> str:
    """The entity's address relative to the service root: ``Jobs('nb%3Ajid%3AUUID%3A...')``, or
    ``EncodingReservedUnitTypes(guid'...')`` for a GUID key."""
    entity_type = entity_type_of(entity)
    if entity_type.has_guid_key:
        return f"{entity_type.set_name}(guid'{entity.id}')"
    return f"{entity_type.set_name}('{quote(entity.id, safe='')}')"


def _selected(entity_type: EntityType, select: Iterable[str] | None) -> list[Prop]:
    if select is None:
        return list(entity_type.props)
    wanted = set(select)
    return [p for p in entity_type.props if p.name in wanted]


def _value(entity: Entity, prop: Prop, shape: Literal["minimal", "iso", "msdate"]) -> Any:
    raw = getattr(entity, prop.attr)
    if prop.kind is Kind.DATETIME:
        return format_date(raw, shape)
    if prop.kind is Kind.DOUBLE:
        return _number(raw)
    if prop.kind is Kind.COLLECTION:
        return _complex_items(prop, raw, shape)
    if prop.kind is Kind.INT32:
        return int(raw)  # states are IntEnum members in the store; the wire has plain numbers
    return raw


def _base(base_url: str) -> str:
    return base_url if base_url.endswith("/") else base_url + "/"


def to_minimal(entity: Entity, base_url: str, select: Iterable[str] | None) -> dict[str, Any]:
    """One entity of a minimal-metadata collection (``value`` item).

    Navigation properties are left out: minimal metadata derives their links by convention.
    ``base_url`` is unused in this shape and accepted for symmetry with ``to_verbose``.
    """
    del base_url
    return {
        prop.name: _value(entity, prop, "minimal")
        for prop in _selected(entity_type_of(entity), select)
        if prop.kind is not Kind.NAVIGATION
    }


def to_verbose(
    entity: Entity,
    base_url: str,
    select: Iterable[str] | None,
    date_format: DateFormat = "iso",
) -> dict[str, Any]:
    """One entity in verbose JSON (a ``d.results`` item, or the ``d`` of a single entity)."""
    entity_type = entity_type_of(entity)
    uri = _base(base_url) + entity_path(entity)
    body: dict[str, Any] = {
        "__metadata": {"id": uri, "uri": uri, "type": entity_type.full_name},
    }
    for prop in _selected(entity_type, select):
        if prop.kind is Kind.NAVIGATION:
            body[prop.name] = {"__deferred": {"uri": f"{uri}/{prop.name}"}}
        elif prop.kind is Kind.COLLECTION:
            body[prop.name] = {
                "__metadata": {"type": prop.collection_type},
                "results": _value(entity, prop, date_format),
            }
        else:
            body[prop.name] = _value(entity, prop, date_format)
    return body


def dumps_verbose(payload: Any) -> str:
    """JSON text for a verbose payload, writing ``/Date(ms)/`` strings as ``\\/Date(ms)\\/``.

    That escaping is how the service's serializer marked dates; ``\\/`` is a legal JSON escape
    for ``/``, so any parser reads the same string either way.
    """
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return _MSDATE_STRING.sub(r'"\\/Date(\1)\\/"', text)
