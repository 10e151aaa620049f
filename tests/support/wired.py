"""An AMS client wired as the exporter wires it, against an emulator, for tests that drive it in-process."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ams_emulator import Emulator
from exporter import __version__
from exporter.ams.auth import token_provider_for
from exporter.ams.client import (
    AmsClient,
)
from exporter.ams.http import RequestCounter, UpstreamSession
from exporter.config.model import AccountConfig, ClientSecret, Credential, JobsConfig, Secret

ACCOUNT = "acme"


USER_AGENT = f"ams-exporter/{__version__}"


def account_for(
    emu: Emulator,
    *,
    endpoint: str | None = None,
    credential: Credential | None = None,
    redirect_hosts: tuple[str, ...] = (),
) -> AccountConfig:
    """An account pointing at ``emu``, with the client secret unless told otherwise."""
    return AccountConfig(
        name=ACCOUNT,
        endpoint=endpoint or emu.account_endpoint,
        cloud="AzureCloud",
        authority_host=emu.authority_host,
        resource=emu.resource,
        tenant=emu.tenant,
        client_id=emu.client_id,
        credential=credential or ClientSecret(Secret(emu.client_secret)),
        ca_file=emu.ca_file,
        timeout=10.0,
        jobs=JobsConfig(),
        redirect_hosts=redirect_hosts,
    )


@dataclass
class Wired:
    """A client wired as the exporter wires it, with its request counter."""

    client: AmsClient
    counter: RequestCounter

    def count(self, api: str, code: str) -> int:
        return self.counter.snapshot().get((ACCOUNT, api, code), 0)


def wire(account: AccountConfig, **client_options: str) -> Wired:
    counter = RequestCounter()
    aad = UpstreamSession(ACCOUNT, "aad", counter, account.ca_file, 5.0, USER_AGENT)
    ams = UpstreamSession(ACCOUNT, "ams", counter, account.ca_file, 5.0, USER_AGENT)
    client = AmsClient(account, token_provider_for(account, aad), ams, 8, **client_options)
    return Wired(client, counter)


def settle(emu: Emulator, *counters: RequestCounter) -> None:
    """Wait (at most 2 s) until the emulator has logged every request the counters saw.

    The emulator records a request once it has answered it, so the client can return before the
    last record exists. Each test starts with an empty log and fresh counters.
    """
    wanted = sum(sum(counter.snapshot().values()) for counter in counters)
    for _ in range(200):
        if len(emu.request_log) >= wanted:
            return
        time.sleep(0.01)
