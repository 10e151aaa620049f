"""Which exposition format a scrape's ``Accept`` header asks for, and how it is encoded."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CONTENT_TYPE_PLAIN_1_0_0,
    generate_latest,
)
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.registry import Collector as RegistryCollector


class Negotiation(NamedTuple):
    """An exposition format: the encoder that writes it and the content type it is served as."""

    encoder: Callable[[RegistryCollector], bytes]
    content_type: str


TEXT_0_0_4 = Negotiation(generate_latest, CONTENT_TYPE_PLAIN_0_0_4)
# The OpenMetrics versions prometheus_client writes; another version cannot be promised.
_OPENMETRICS_VERSIONS = ("1.0.0", "2.0.0")
_ESCAPINGS = (
    openmetrics_exposition.ALLOWUTF8,
    openmetrics_exposition.UNDERSCORES,
    openmetrics_exposition.DOTS,
    openmetrics_exposition.VALUES,
)
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def negotiate(accept: str) -> Negotiation:
    """The exposition format an ``Accept`` header asks for; every header gets one.

    Media ranges are taken by weight (``q``), equal weights in the order given; a range with
    ``q=0``, an unreadable weight, or a type or version not written here is passed over. Written
    are OpenMetrics 1.0.0 and 2.0.0 and the text format 1.0.0 (each with the name escaping asked
    for, ``underscores`` by default) and the text format 0.0.4, which is also the answer when
    nothing else matches: ``version=abc``, an unknown version, a protobuf-only Prometheus. For
    the headers Prometheus sends this is what ``prometheus_client.exposition.choose_encoder``
    chooses, but it never raises (that one fails on a version that is not a number).
    """
    ranges: list[tuple[float, str, dict[str, str]]] = []
    for element in accept.split(","):
        media, *parameters = element.split(";")
        values: dict[str, str] = {}
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            values.setdefault(name.strip().lower(), value.strip().strip('"'))
        weight = qvalue(values.get("q", "1"))
        if weight:
            ranges.append((weight, media.strip().lower(), values))
    ranges.sort(key=lambda entry: -entry[0])  # stable: equal weights keep their order
    for _, media, values in ranges:
        found = _format(media, values.get("version", ""), values.get("escaping", ""))
        if found is not None:
            return found
    return TEXT_0_0_4


def qvalue(text: str) -> float:
    """An RFC 9110 weight (``q=``): ``0`` to ``1`` with at most three decimals; 0 if unreadable."""
    return float(text) if _QVALUE.fullmatch(text) else 0.0


def _format(media: str, version: str, escaping: str) -> Negotiation | None:
    if escaping not in _ESCAPINGS:
        escaping = openmetrics_exposition.UNDERSCORES
    if media == "application/openmetrics-text":
        if not version:
            return Negotiation(
                partial(
                    openmetrics_exposition.generate_latest,
                    escaping=openmetrics_exposition.UNDERSCORES,
                    version="1.0.0",
                ),
                openmetrics_exposition.CONTENT_TYPE_LATEST,
            )
        if version in _OPENMETRICS_VERSIONS:
            return Negotiation(
                partial(openmetrics_exposition.generate_latest, escaping=escaping, version=version),
                f"application/openmetrics-text; version={version}; charset=utf-8; "
                f"escaping={escaping}",
            )
        return None
    if media == "text/plain":
        if version in ("", "0.0.4"):
            return TEXT_0_0_4
        if version == "1.0.0":
            return Negotiation(
                partial(generate_latest, escaping=escaping),
                f"{CONTENT_TYPE_PLAIN_1_0_0}; escaping={escaping}",
            )
        return None
    if media in ("*/*", "text/*"):
        return TEXT_0_0_4
    return None
