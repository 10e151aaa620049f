"""Running a real exporter in-process against emulators, and reading what it serves.

The exporter is wired exactly as ``ams-exporter`` wires it (``exporter.cli.build_collector``) from a
YAML config generated for the emulators, and served over a real socket on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ams_emulator import Emulator
from exporter import __version__
from exporter.ams.http import RequestCounter
from exporter.cli import build_collector
from exporter.collect.poller import Collector
from exporter.config.accounts import Config, parse_config
from exporter.web.server import ExporterApp, start_server


def account_yaml(name: str, emulator: Emulator, *, secret_var: str, **extra: Any) -> str:
    """One ``accounts`` entry pointing at ``emulator``; ``extra`` adds or overrides keys.

    With the emulator's legacy root as ``endpoint``, ``redirect_hosts`` lists the host its 301
    leads to (the legacy root is ``localhost``, the account endpoint an IP address), unless
    ``extra`` gives the key itself.
    """
    if extra.get("endpoint") == emulator.legacy_endpoint:
        extra = {"redirect_hosts": [urlsplit(emulator.account_endpoint).hostname], **extra}
    entry: dict[str, Any] = {
        "name": name,
        "endpoint": emulator.account_endpoint,
        "authority_host": emulator.authority_host,
        "resource": emulator.resource,
        "tenant": emulator.tenant,
        "client_id": emulator.client_id,
        "client_secret": "${" + secret_var + "}",
        "ca_file": str(emulator.ca_file),
        "timeout": "10s",
    }
    entry.update(extra)
    for key, value in list(entry.items()):
        if value is None:
            del entry[key]
    lines = [f"  - name: {entry.pop('name')}"]
    for key, value in entry.items():
        lines.append(textwrap.indent(_yaml_item(key, value), "    "))
    return "\n".join(lines) + "\n"


def _yaml_item(key: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "\n".join(_yaml_item(k, v) for k, v in value.items())
        return f"{key}:\n" + textwrap.indent(inner, "  ")
    if isinstance(value, bool):
        return f"{key}: {'true' if value else 'false'}"
    if isinstance(value, (list, tuple)):
        return f"{key}: [{', '.join(repr(str(v)) for v in value)}]"
    return f"{key}: {value}"


def config_for(
    emulators: Mapping[str, Emulator], per_account: Mapping[str, Mapping[str, Any]] | None = None
) -> Config:
    """A parsed config with one account per emulator (secrets through environment variables)."""
    env = {}
    entries = []
    for index, (name, emulator) in enumerate(emulators.items()):
        variable = f"AMS_TEST_SECRET_{index}"
        env[variable] = emulator.client_secret
        extra = dict((per_account or {}).get(name, {}))
        entries.append(account_yaml(name, emulator, secret_var=variable, **extra))
    return parse_config("accounts:\n" + "".join(entries), env, source="<test>")


@dataclass
class Scrape:
    """One response of the metrics path, parsed."""

    status: int
    text: str
    samples: list[Sample]

    def values(self, name: str, **labels: str) -> list[float]:
        """Values of the samples named ``name`` whose labels include ``labels``."""
        return [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The single value matching; fails when there is not exactly one."""
        found = self.values(name, **labels)
        assert len(found) == 1, f"{name}{labels}: expected one sample, found {found}"
        return found[0]

    def by_job(self, name: str, account: str) -> dict[str, float]:
        """``{job_id: value}`` of a per-job metric for one account."""
        return {
            s.labels["job_id"]: s.value
            for s in self.samples
            if s.name == name and s.labels.get("account") == account
        }


@dataclass
class RunningExporter:
    """An exporter serving on 127.0.0.1."""

    url: str
    collector: Collector
    counter: RequestCounter
    session: requests.Session

    def scrape(self, headers: Mapping[str, str] | None = None, path: str = "/metrics") -> Scrape:
        """GET the metrics path and parse the exposition."""
        response = self.session.get(self.url + path, headers=dict(headers or {}), timeout=60)
        samples = [
            sample
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        ]
        return Scrape(response.status_code, response.text, samples)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """A plain GET of another path (``/``, ``/healthz``, ``/readyz`` ...)."""
        return self.session.get(self.url + path, timeout=60, **kwargs)


@contextlib.contextmanager
def running_exporter(
    emulators: Mapping[str, Emulator],
    per_account: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    telemetry_path: str = "/metrics",
    extra_accounts: Sequence[Any] = (),
) -> Iterator[RunningExporter]:
    """Serve an exporter for ``emulators`` (name → emulator) until the block ends."""
    config = config_for(emulators, per_account)
    counter = RequestCounter()
    collector = build_collector(config, counter)
    app = ExporterApp(
        collector,
        counter,
        version=__version__,
        telemetry_path=telemetry_path,
        default_timeout=max(a.timeout for a in config.accounts),
    )
    server = start_server(app, "127.0.0.1:0")
    host, port = server.server_address[:2]
    session = requests.Session()
    try:
        yield RunningExporter(f"http://{host}:{port}", collector, counter, session)
    finally:
        session.close()
        server.shutdown()
        server.server_close()
        collector.close()
