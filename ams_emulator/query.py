"""OData system query options for the modelled entity sets: parsed and validated once per request.

``$filter`` compiles to a predicate (see ``filter_parser``); ``$select`` and ``$orderby`` are checked
against the entity type; ``$top``/``$skip`` must be non-negative integers. ``$expand`` is refused, as
Media Services documented. Parameters without a ``$`` (``api-version`` and the like) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ams_emulator.entities import ENTITY_TYPES, EntityType, Prop
from ams_emulator.filter_parser import FilterError, Predicate, compile_filter

MAX_PAGE = 1000
"""The service returns at most this many entities per query, without a next link."""

_SUPPORTED = frozenset({"$filter", "$select", "$orderby", "$top", "$skip"})
_NOT_SUPPORTED = frozenset({"$expand", "$inlinecount", "$count", "$format", "$skiptoken"})


class ODataQueryError(Exception):
    """A query option the service would reject with 400; ``str()`` is the error message."""


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """A ``$filter`` text and the predicate it compiled to.

    ``keys``, when not None, holds every Id the filter can match (it pins ``Id eq '...'``), so
    the documented progress check ``$filter=Id eq '...'`` needs no scan of the whole set.
    """

    text: str
    matches: Predicate
    keys: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ``$orderby`` item."""

    prop: Prop
    descending: bool = False


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """Validated query options. ``select`` None means every property; ``top`` None means no limit
    (the store still caps each answer at ``MAX_PAGE``)."""

    filter: CompiledFilter | None = None
    select: tuple[str, ...] | None = None
    orderby: tuple[OrderKey, ...] = ()
    top: int | None = None
    skip: int = 0


def _entity(entity_set: str) -> EntityType:
    try:
        return ENTITY_TYPES[entity_set]
    except KeyError:
        known = list(ENTITY_TYPES)
        raise ValueError(f"unknown entity set {entity_set!r}; expected one of {known}") from None


def _non_negative(name: str, raw: str) -> int:
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):
        raise ODataQueryError(
            f"Invalid value '{raw}' for the query option '{name}': "
            "a non-negative integer is required."
        )
    return int(text)


def _parse_select(raw: str, entity: EntityType) -> tuple[str, ...] | None:
    names = [part.strip() for part in raw.split(",")]
    if "*" in names:
        return None
    for pos_name in names:
        if not pos_name:
            raise ODataQueryError(f"Syntax error in '$select={raw}': empty property name.")
        if entity.prop(pos_name) is None:
            raise ODataQueryError(
                f"No property '{pos_name}' exists in type '{entity.full_name}' "
                f"(in '$select={raw}')."
            )
    return tuple(dict.fromkeys(names))


def _parse_orderby(raw: str, entity: EntityType) -> tuple[OrderKey, ...]:
    keys: list[OrderKey] = []
    for item in raw.split(","):
        words = item.split()
        if not words or len(words) > 2:
            raise ODataQueryError(f"Syntax error in '$orderby={raw}' near '{item.strip()}'.")
        prop = entity.prop(words[0])
        if prop is None:
            raise ODataQueryError(
                f"No property '{words[0]}' exists in type '{entity.full_name}' "
                f"(in '$orderby={raw}')."
            )
        if not prop.kind.is_scalar:
            raise ODataQueryError(
                f"Property '{words[0]}' is not a primitive property and cannot be used in $orderby."
            )
        direction = words[1] if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise ODataQueryError(
                f"Syntax error in '$orderby={raw}': expected 'asc' or 'desc', got '{direction}'."
            )
        keys.append(OrderKey(prop, direction == "desc"))
    return tuple(keys)


def _check_names(params: Mapping[str, str]) -> None:
    for name in params:
        if not name.startswith("$"):
            continue
        if name in _NOT_SUPPORTED:
            raise ODataQueryError(f"The query option '{name}' is not supported by Media Services.")
        if name not in _SUPPORTED:
            raise ODataQueryError(
                f"The query parameter '{name}' begins with a system-reserved '$' character "
                "but is not recognized."
            )


def parse_query(params: Mapping[str, str], entity_set: str) -> QueryOptions:
    """Validate the query options of a request on ``entity_set`` (``"Jobs"``, ``"Tasks"`` ...).

    Raises ``ODataQueryError`` for anything the service would answer with 400.
    """
    entity = _entity(entity_set)
    _check_names(params)
    compiled: CompiledFilter | None = None
    raw_filter = params.get("$filter", "").strip()
    if raw_filter:
        try:
            predicate = compile_filter(raw_filter, entity)
            compiled = CompiledFilter(raw_filter, predicate.matches, predicate.keys)
        except FilterError as exc:
            raise ODataQueryError(str(exc)) from exc
    raw_select = params.get("$select", "").strip()
    raw_orderby = params.get("$orderby", "").strip()
    return QueryOptions(
        filter=compiled,
        select=_parse_select(raw_select, entity) if raw_select else None,
        orderby=_parse_orderby(raw_orderby, entity) if raw_orderby else (),
        top=_non_negative("$top", params["$top"]) if "$top" in params else None,
        skip=_non_negative("$skip", params["$skip"]) if "$skip" in params else 0,
    )
