"""Running a real exporter in-process against emulators, and reading what it serves.

The exporter is wired exactly as ``ams-exporter`` wires it (``exporter.wiring``) from a
YAML config generated for the emulators, and served over a real socket on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ams_emulator import Emulator, exporter_config
from exporter.ams.http import RequestCounter
from exporter.collect.poller import Poller
from exporter.config.accounts import parse_config
from exporter.config.model import Config
from exporter.wiring import serving


def account_yaml(name: str, emulator: Emulator, *, secret_var: str, **extra: Any) -> str:
    """One ``accounts`` entry pointing at ``emulator``, with the tests' ``timeout: 10s``."""
    return emulator.account_entry(name, secret_variable=secret_var, **{"timeout": "10s", **extra})


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
    return parse_config(exporter_config(*entries), env, source="<test>")


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
    poller: Poller
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
    with serving(config, telemetry_path=telemetry_path) as (exporter, server):
        host, port = server.server_address[:2]
        with requests.Session() as session:
            url = f"http://{host}:{port}"
            yield RunningExporter(url, exporter.poller, exporter.counter, session)
