"""Helpers for the emulator's own tests: an HTTPS client for the AMS API, token requests and real
MSAL apps."""

from __future__ import annotations

from typing import Any

import msal
import requests

from ams_emulator import Emulator

API_HEADERS = {
    "x-ms-version": "2.19",
    "DataServiceVersion": "3.0",
    "MaxDataServiceVersion": "3.0;NetFx",
    "Accept": "application/json",
}


class AmsClient:
    """A thin HTTPS client for one emulator: trusts its CA, adds the AMS headers and a token."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.session = requests.Session()
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            self._token = secret_token(self.emulator, self.session)
        return self._token

    def headers(self, **extra: str) -> dict[str, str]:
        return {**API_HEADERS, "Authorization": f"Bearer {self.token()}", **extra}

    def get(
        self, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        """GET ``path`` (relative to the account endpoint, or absolute) with the AMS headers."""
        url = path if path.startswith("https://") else self.emulator.account_endpoint + path
        kwargs.setdefault("timeout", 30)
        return self.session.get(
            url,
            headers=headers if headers is not None else self.headers(),
            verify=str(self.emulator.ca_file),
            **kwargs,
        )

    def close(self) -> None:
        self.session.close()


def secret_token(emulator: Emulator, session: requests.Session | None = None) -> str:
    """An access token from the v2.0 endpoint with the client secret, without MSAL."""
    http = session or requests.Session()
    response = http.post(
        f"{emulator.authority_host}/{emulator.tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "scope": f"{emulator.resource}/.default",
        },
        verify=str(emulator.ca_file),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def post_token(
    emulator: Emulator,
    data: dict[str, str],
    path: str = "oauth2/v2.0/token",
    tenant: str | None = None,
    **kwargs: Any,
) -> requests.Response:
    """POST ``data`` to a token endpoint of the emulator's Azure AD (default: its tenant's v2.0)."""
    return requests.post(
        f"{emulator.authority_host}/{tenant or emulator.tenant}/{path}",
        data=data,
        verify=str(emulator.ca_file),
        timeout=30,
        **kwargs,
    )


class VerifyingSession(requests.Session):
    """MSAL's http_client: REQUESTS_CA_BUNDLE overrides Session.verify, so pass it per request."""

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.ca_file = ca_file

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = self.ca_file
        kwargs.setdefault("timeout", 30)
        return super().request(method, url, *args, **kwargs)


def msal_app(
    emulator: Emulator, credential: Any, tenant: str | None = None
) -> msal.ConfidentialClientApplication:
    """A real MSAL confidential client pointed at the emulator's tenant."""
    return msal.ConfidentialClientApplication(
        emulator.client_id,
        client_credential=credential,
        authority=f"{emulator.authority_host}/{tenant or emulator.tenant}",
        instance_discovery=False,
        http_client=VerifyingSession(str(emulator.ca_file)),
    )
