"""Token providers over real MSAL against the emulator's Azure AD, over HTTPS on loopback.

The emulator's authority host is not a public cloud host, so these tests also prove that msal's
instance discovery is off for it: with discovery on, msal would call login.microsoftonline.com,
which this machine cannot reach, and no token would ever come.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ams_emulator import Emulator, Fault
from ams_emulator.emulator import MANAGED_IDENTITY_CLIENT_ID
from exporter.ams.auth import (
    PUBLIC_AUTHORITY_HOSTS,
    ManagedIdentityTokenProvider,
    TokenProvider,
    certificate_credential,
    token_provider_for,
)
from exporter.ams.http import RequestCounter, UpstreamSession
from exporter.config.model import (
    AccountConfig,
    ClientCertificate,
    ClientSecret,
    ManagedIdentity,
    Secret,
)
from exporter.deadline import Deadline
from exporter.errors import AuthError, DeadlineExceeded
from tests.support.wired import ACCOUNT, USER_AGENT, account_for, settle, wire

TOKEN_PATH = r"/oauth2/v2\.0/token$"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(jobs=30, seed=5, speed=0.0) as emulator:
        yield emulator


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()


def provider(account: AccountConfig, counter: RequestCounter) -> TokenProvider:
    session = UpstreamSession(ACCOUNT, "aad", counter, account.ca_file, 5.0, USER_AGENT)
    return token_provider_for(account, session)


def deadline() -> Deadline:
    return Deadline.after(20.0)


def certificate_account(emu: Emulator) -> AccountConfig:
    pem = Path(emu.client_certificate_file).read_text()
    credential = ClientCertificate(Secret(pem), Path(emu.client_certificate_file))
    return account_for(emu, credential=credential)


def managed_identity_account(emu: Emulator, client_id: str | None) -> AccountConfig:
    account = account_for(emu, credential=ManagedIdentity())
    return AccountConfig(**{**account.__dict__, "client_id": client_id, "tenant": None})


def assert_ams_accepts(account: AccountConfig) -> None:
    """The credential's token opens AMS: the client lists jobs with it."""
    w = wire(account)
    try:
        w.client.list_jobs("State eq 3", deadline())
    finally:
        w.client.close()
    assert w.count("ams", "200") == 1
    assert w.count("ams", "401") == 0


class TestCredentials:
    def test_client_secret(self, fresh: Emulator, counter: RequestCounter) -> None:
        token = provider(account_for(fresh), counter).token(deadline())
        assert token.count(".") == 2
        assert counter.snapshot()[(ACCOUNT, "aad", "200")] >= 2  # discovery, then the token
        assert_ams_accepts(account_for(fresh))

    def test_client_certificate(self, fresh: Emulator, counter: RequestCounter) -> None:
        account = certificate_account(fresh)
        assert provider(account, counter).token(deadline())
        settle(fresh, counter)
        assert fresh.request_count(api="aad", path=TOKEN_PATH) == 1
        assert_ams_accepts(account)

    @pytest.mark.parametrize("client_id", [None, MANAGED_IDENTITY_CLIENT_ID])
    def test_managed_identity(
        self,
        fresh: Emulator,
        counter: RequestCounter,
        monkeypatch: pytest.MonkeyPatch,
        client_id: str | None,
    ) -> None:
        monkeypatch.setenv("IDENTITY_ENDPOINT", fresh.managed_identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", fresh.managed_identity_header)
        account = managed_identity_account(fresh, client_id)
        tokens = provider(account, counter)
        assert isinstance(tokens, ManagedIdentityTokenProvider)
        assert tokens.token(deadline())
        settle(fresh, counter)
        (record,) = [r for r in fresh.request_log if r.api == "aad"]
        assert record.path == "/msi/token"
        assert record.query.get("client_id") == client_id
        assert_ams_accepts(account)

    def test_managed_identity_with_a_wrong_header(
        self, fresh: Emulator, counter: RequestCounter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("IDENTITY_ENDPOINT", fresh.managed_identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
        with pytest.raises(AuthError, match="Azure AD refused the token request") as info:
            provider(managed_identity_account(fresh, None), counter).token(deadline())
        assert "not-the-header" not in str(info.value)

    def test_certificate_credential_needs_key_and_certificate(self) -> None:
        with pytest.raises(ValueError, match="PEM private key and a PEM certificate"):
            certificate_credential("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")

    def test_public_cloud_hosts_are_known(self) -> None:
        assert "login.microsoftonline.com" in PUBLIC_AUTHORITY_HOSTS
        assert "login.chinacloudapi.cn" in PUBLIC_AUTHORITY_HOSTS


class TestCaching:
    def test_token_is_reused_until_invalidated(
        self, fresh: Emulator, counter: RequestCounter
    ) -> None:
        tokens = provider(account_for(fresh), counter)
        first = tokens.token(deadline())
        assert tokens.token(deadline()) == first
        settle(fresh, counter)
        assert fresh.request_count(api="aad", path=TOKEN_PATH) == 1
        tokens.invalidate()
        tokens.token(deadline())
        settle(fresh, counter)
        assert fresh.request_count(api="aad", path=TOKEN_PATH) == 2

    def test_concurrent_callers_share_one_token_request(
        self, fresh: Emulator, counter: RequestCounter
    ) -> None:
        tokens = provider(account_for(fresh), counter)
        results: list[str] = []
        start = threading.Barrier(8)

        def fetch() -> None:
            start.wait()
            results.append(tokens.token(deadline()))

        threads = [threading.Thread(target=fetch) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 8 and len(set(results)) == 1
        settle(fresh, counter)
        assert fresh.request_count(api="aad", path=TOKEN_PATH) == 1

    def test_short_lived_tokens_are_refreshed_before_expiry(self, counter: RequestCounter) -> None:
        with Emulator(jobs=1, seed=1, speed=0.0, token_lifetime=2.0) as short:
            tokens = provider(account_for(short), counter)
            tokens.token(deadline())
            # Half of a 2 s lifetime is the refresh point: wait for it by polling, bounded.
            for _ in range(100):
                tokens.token(deadline())
                if short.request_count(api="aad", path=TOKEN_PATH) >= 2:
                    break
                threading.Event().wait(0.05)
            assert short.request_count(api="aad", path=TOKEN_PATH) >= 2

    @pytest.mark.parametrize("announced", [0, -5])
    def test_a_token_announced_as_expired_serves_one_collection_only(
        self, fresh: Emulator, counter: RequestCounter, announced: int
    ) -> None:
        fresh.announce_expires_in(announced)
        try:
            tokens = provider(account_for(fresh), counter)
            collections = [deadline(), deadline(), deadline()]
            for each in collections:
                first = tokens.token(each)
                assert all(tokens.token(each) == first for _ in range(5)), "one per collection"
        finally:
            fresh.announce_expires_in(None)
        settle(fresh, counter)
        assert fresh.request_count(api="aad", path=TOKEN_PATH) == len(collections)

    def test_expired_token_gives_one_401_then_a_new_token(self, fresh: Emulator) -> None:
        w = wire(account_for(fresh))
        try:
            w.client.list_jobs("State eq 3", deadline())
            fresh.expire_tokens()
            w.client.list_jobs("State eq 3", deadline())
        finally:
            w.client.close()
        settle(fresh, w.counter)
        assert [r.status for r in fresh.request_log if r.path == "/api/Jobs"] == [200, 401, 200]
        assert fresh.request_count(api="aad", path=TOKEN_PATH) == 2


class TestFailures:
    def test_wrong_secret_names_aads_error_and_never_the_secret(
        self, fresh: Emulator, counter: RequestCounter
    ) -> None:
        wrong = "wrong-" + fresh.client_secret
        account = account_for(fresh, credential=ClientSecret(Secret(wrong)))
        with pytest.raises(AuthError) as info:
            provider(account, counter).token(deadline())
        assert info.value.code == "invalid_client"
        assert "AADSTS" in str(info.value)
        assert wrong not in str(info.value)
        assert fresh.client_secret not in str(info.value)
        assert info.value.account == ACCOUNT

    def test_unknown_tenant(self, fresh: Emulator, counter: RequestCounter) -> None:
        account = account_for(fresh)
        account = AccountConfig(**{**account.__dict__, "tenant": "nobody.onmicrosoft.com"})
        with pytest.raises(AuthError, match="account acme"):
            provider(account, counter).token(deadline())

    def test_aad_down_is_an_auth_error_and_recovers(
        self, fresh: Emulator, counter: RequestCounter
    ) -> None:
        tokens = provider(account_for(fresh), counter)
        fresh.faults.add(Fault("aad_down"))
        with pytest.raises(AuthError, match="Azure AD could not be reached"):
            tokens.token(deadline())
        assert counter.snapshot()[(ACCOUNT, "aad", "error")] >= 1
        fresh.faults.clear()
        assert tokens.token(deadline())

    @pytest.mark.parametrize("status", [500, 503, 400])
    def test_aad_error_status_is_an_auth_error_and_recovers(
        self, fresh: Emulator, counter: RequestCounter, status: int
    ) -> None:
        tokens = provider(account_for(fresh), counter)
        fresh.faults.add(Fault("status", api="aad", status=status, path=TOKEN_PATH))
        with pytest.raises(AuthError) as info:
            tokens.token(deadline())
        assert "account acme" in str(info.value)
        assert counter.snapshot()[(ACCOUNT, "aad", str(status))] >= 1
        # msal would replay the failure from its throttle cache for seconds; the provider starts
        # over, so the very next call reaches Azure AD again.
        fresh.faults.clear()
        assert tokens.token(deadline())

    def test_aad_slower_than_the_deadline(self, fresh: Emulator, counter: RequestCounter) -> None:
        tokens = provider(account_for(fresh), counter)
        fresh.faults.add(Fault("latency", api="aad", latency=30.0))
        with pytest.raises((AuthError, DeadlineExceeded)):
            tokens.token(Deadline.after(1.0))
        assert fresh.request_count(api="aad") <= 1
