"""The request and response values passed between the HTTP transport and the API handlers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON_UTF8 = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request. ``path`` is percent-decoded, without the query string."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    repeated_options: tuple[str, ...] = ()  # query options given more than once

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    """An answer. A streamed ``body`` (an iterable of chunks) needs ``length`` set."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    length: int | None = None

    def content_length(self) -> int:
        if isinstance(self.body, bytes):
            return len(self.body)
        if self.length is None:
            raise ValueError("a streamed response needs its length")
        return self.length

    def add_header(self, name: str, value: str) -> None:
        self.headers.append((name, value))


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON, non-ASCII characters written as themselves (as the services do)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(
    status: int,
    payload: Any,
    content_type: str = JSON_UTF8,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    return Response(status, [("Content-Type", content_type), *headers], json_bytes(payload))
