"""Reading the PromQL out of a Grafana dashboard model, and filling in its variables.

The structural tests (metric names) and the live tests (every query against a real Prometheus)
both need the same two things: every expression of the dashboard with where it comes from, and the
expression as Grafana would send it once the variables have values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Grafana writes variables as $name, ${name} or ${name:format}.
VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z0-9_]+)(?::(?P<format>[^}]*))?\}|(?P<plain>[A-Za-z0-9_]+))"
)
LABEL_VALUES = re.compile(
    r"^label_values\(\s*(?P<selector>.+?)\s*,\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)$"
)


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard."""

    # "panel 14 'Running jobs' B", "annotation 'Jobs entering Error'", "variable account"
    where: str
    panel_id: int | None
    ref_id: str | None
    expr: str
    instant: bool


def iter_panels(model: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, with the panels nested in collapsed rows."""
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def iter_queries(model: Mapping[str, Any]) -> Iterator[Query]:
    """Every PromQL expression: panel targets, annotations and query variables."""
    for panel in iter_panels(model):
        for target in panel.get("targets", []):
            yield Query(
                where=f"panel {panel['id']} {panel.get('title')!r} {target.get('refId')}",
                panel_id=panel["id"],
                ref_id=target.get("refId"),
                expr=target["expr"],
                instant=bool(target.get("instant")),
            )
    for annotation in model.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield Query(f"annotation {annotation['name']!r}", None, None, annotation["expr"], False)
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        text = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        match = LABEL_VALUES.match(text.strip())
        # label_values(selector, label) is Grafana's, not PromQL: its selector is the PromQL part.
        expr = match.group("selector") if match else text
        yield Query(f"variable {variable['name']}", None, None, expr, True)


def variables_in(text: str) -> set[str]:
    """Names of the variables ``text`` refers to."""
    return {m.group("braced") or m.group("plain") for m in VARIABLE.finditer(text)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with every variable replaced by ``values[name]``; a missing name is a KeyError.

    Formats (``${__from:date:seconds}``) are looked up as ``name:format``, so callers give the
    already formatted value.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        fmt = match.group("format")
        return values[f"{name}:{fmt}" if fmt else name]

    return VARIABLE.sub(value, expr)
