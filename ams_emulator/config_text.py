"""The one producer of "an exporter configuration pointing at this emulator".

``ams-exporter --demo``, ``ams-emulator``'s start-up text, the tests and the benchmark all write
their exporter configuration here. It writes YAML text and never reads the exporter's code, so the
emulator stays independent of what it stands in front of.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Connection:
    """What an exporter needs to reach one emulated account and its Azure AD tenant."""

    endpoint: str
    authority_host: str
    resource: str
    tenant: str
    client_id: str
    ca_file: Path | str
    legacy_endpoint: str | None = None


def account_entry(
    name: str, connection: Connection, *, secret_variable: str, **settings: Any
) -> str:
    """One item of the exporter's ``accounts`` list, indented for it.

    The client secret is ``${secret_variable}``: the exporter reads it from the environment, so the
    text can be shown or written to a file. ``settings`` adds or overrides keys (``None`` removes
    one). Values are written as YAML scalars exactly as given (``timeout="5s"``), dicts as nested
    mappings, lists as flow sequences of quoted strings (or of flow mappings). With the legacy root as ``endpoint``,
    ``redirect_hosts`` lists the host its 301 leads to, unless ``settings`` gives the key.
    """
    if connection.legacy_endpoint and settings.get("endpoint") == connection.legacy_endpoint:
        settings = {"redirect_hosts": [urlsplit(connection.endpoint).hostname], **settings}
    entry: dict[str, Any] = {
        "endpoint": connection.endpoint,
        "authority_host": connection.authority_host,
        "resource": connection.resource,
        "tenant": connection.tenant,
        "client_id": connection.client_id,
        "client_secret": "${" + secret_variable + "}",
        "ca_file": str(connection.ca_file),
        **settings,
    }
    lines = [f"  - name: {name}"]
    lines += [_item(key, value, "    ") for key, value in entry.items() if value is not None]
    return "\n".join(lines) + "\n"


def exporter_config(*entries: str) -> str:
    """A whole configuration file from ``account_entry`` texts."""
    return "accounts:\n" + "".join(entries)


def _item(key: str, value: Any, indent: str) -> str:
    if isinstance(value, Mapping):
        inner = [_item(k, v, indent + "  ") for k, v in value.items() if v is not None]
        return "\n".join([f"{indent}{key}:", *inner])
    if isinstance(value, bool):
        return f"{indent}{key}: {'true' if value else 'false'}"
    if isinstance(value, (list, tuple)):
        return f"{indent}{key}: [{', '.join(_flow(v) for v in value)}]"
    return f"{indent}{key}: {value}"


def _flow(value: Any) -> str:
    """A list item: a mapping as a flow mapping of JSON strings (valid YAML, backslashes kept,
    as a ``name_regex`` needs them), anything else as a quoted string."""
    if isinstance(value, Mapping):
        pairs = ", ".join(f"{k}: {json.dumps(str(v))}" for k, v in value.items())
        return f"{{{pairs}}}"
    return repr(str(value))
