"""Azure AD tokens for AMS, through msal: client secret, client certificate, managed identity.

A provider holds one token and hands it out until shortly before it expires; ``invalidate()``
(after AMS answered 401) makes the next ``token()`` go to Azure AD for real. The msal application
is built lazily, on the first ``token()``, because building a ``ConfidentialClientApplication``
already talks to the authority (OIDC discovery), and that must happen under a deadline. All
traffic goes through the account's ``aad`` :class:`UpstreamSession`: verified against the account's
CA, bounded by the deadline, counted. Every failure, including msal's own exceptions and transport
errors, becomes an :class:`AuthError` that carries AAD's error code and the first line of its
description (the AADSTS code), never the secret or a token.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import msal
import requests

from exporter.ams.http import UpstreamSession, transport_reason
from exporter.ams.odata import excerpt
from exporter.config.model import (
    CLOUDS,
    AccountConfig,
    ClientCertificate,
    ClientSecret,
    ManagedIdentity,
)
from exporter.deadline import Deadline
from exporter.errors import AuthError, DeadlineExceeded, ExporterError
from exporter.redact import remember, remember_token

log = logging.getLogger(__name__)

# The authority hosts of the public clouds. msal knows them and skips instance discovery for them
# anyway; for any other host (a private AAD stand-in, the emulator, a proxy) instance discovery
# would ask login.microsoftonline.com to vouch for it, which leaks the host name to Microsoft,
# fails without internet, and adds nothing: the host comes from the operator's own config.
PUBLIC_AUTHORITY_HOSTS = frozenset(
    urlsplit(cloud.authority_host).hostname for cloud in CLOUDS.values()
)

# Refresh this long before expiry (msal itself treats tokens with under 5 minutes left as expired);
# for short-lived tokens, refresh at half-life instead.
_REFRESH_MARGIN_SECONDS = 300.0
_PEM_KEY_RE = re.compile(
    r"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL
)
_PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class TokenProvider(Protocol):
    """Where the AMS client gets its bearer token."""

    def token(self, deadline: Deadline) -> str:
        """A valid access token, cached until shortly before it expires."""

    def invalidate(self, rejected: str | None = None) -> None:
        """Forget the cached token: AMS refused it (401); the next ``token()`` fetches a new one."""


# Azure AD answers that a retry may cure, and how often and how fast to retry them (like AMS's).
_TRANSIENT_AAD_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_AAD_RETRIES = 2
_AAD_BACKOFF_BASE = 0.1
_AAD_BACKOFF_CAP = 1.6
_HTTP_STATUS_IN_MSAL_ERROR = re.compile(r"HTTP Error: (\d{3})")


def _http_status(message: str) -> int | None:
    """The HTTP status msal names in its errors for non-JSON answers ("HTTP Error: 503")."""
    match = _HTTP_STATUS_IN_MSAL_ERROR.search(message)
    return int(match.group(1)) if match else None


# Longest lifetime believed from ``expires_in``: an absurd value must not pin a token for ever.
_MAX_LIFETIME_SECONDS = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class _CachedToken:
    """A token and when to stop handing it out.

    ``only_for`` is set for a token that Azure AD said is already expired (``expires_in`` of 0
    or below): it serves the requests of that one collection and is never reused by the next.
    """

    value: str
    refresh_at: float  # time.monotonic()
    only_for: Deadline | None = None

    def usable(self, deadline: Deadline) -> bool:
        if self.only_for is not None:
            return self.only_for == deadline and not deadline.expired()
        return time.monotonic() < self.refresh_at


class _MsalTokenProvider(ABC):
    """Caching, single-flight fetching and error mapping shared by every msal credential."""

    def __init__(self, account: AccountConfig, session: UpstreamSession) -> None:
        self._account = account
        self._session = session
        self._lock = threading.Lock()
        self._cached: _CachedToken | None = None
        self._app: Any = None
        self._warned_expired = False

    def token(self, deadline: Deadline) -> str:
        """The cached token, or a new one from Azure AD (one fetch at a time per account)."""
        cached = self._cached
        if cached is not None and cached.usable(deadline):
            return cached.value
        if not self._lock.acquire(timeout=deadline.remaining()):
            raise DeadlineExceeded(f"account {self._account.name}: no token before the deadline")
        try:
            cached = self._cached
            if cached is not None and cached.usable(deadline):
                return cached.value
            self._cached = self._fetch_with_retries(deadline)
            return self._cached.value
        finally:
            self._lock.release()

    def invalidate(self, rejected: str | None = None) -> None:
        """Drop the cached token and make msal forget its copy too.

        With ``rejected`` (the token AMS refused), only that token is dropped: when several
        requests of a collection get 401 at once, the first one's fresh token survives the
        others' invalidations instead of costing one Azure AD request each.
        """
        with self._lock:
            cached = self._cached
            if rejected is not None and (cached is None or cached.value != rejected):
                return
            self._cached = None
            if self._app is not None:
                self._forget_tokens()

    def _fetch_with_retries(self, deadline: Deadline) -> _CachedToken:
        """``_fetch``, retried with back-off on transient Azure AD failures within the deadline."""
        attempt = 0
        while True:
            try:
                return self._fetch(deadline)
            except AuthError as error:
                pause = min(_AAD_BACKOFF_BASE * 2**attempt, _AAD_BACKOFF_CAP)
                if not error.retryable or attempt >= _AAD_RETRIES or deadline.remaining() <= pause:
                    raise
                log.debug("account %s: %s; retrying in %.1f s", self._account.name, error, pause)
                time.sleep(pause)
                attempt += 1

    def _fetch(self, deadline: Deadline) -> _CachedToken:
        started = time.monotonic()
        try:
            with self._session.bounded_by(deadline):
                if self._app is None:
                    self._app = self._build()
                result = self._acquire()
        except ExporterError:
            raise
        except requests.RequestException as exc:
            self._app = None
            raise AuthError(
                self._account.name,
                f"Azure AD could not be reached ({transport_reason(exc)})",
                retryable=True,
            ) from None
        except json.JSONDecodeError:
            # msal's own log of this case quotes the whole response, token included; its
            # loggers are silenced (see exporter.logs) and this says what happened instead.
            self._app = None
            raise AuthError(
                self._account.name, "Azure AD answered a token response that is not JSON"
            ) from None
        except Exception as exc:  # msal raises ValueError, KeyError, its own errors ...
            self._app = None
            status = _http_status(str(exc))
            raise AuthError(
                self._account.name,
                f"msal failed: {type(exc).__name__}: {excerpt(str(exc), 200)}",
                status=status,
                retryable=status in _TRANSIENT_AAD_STATUSES,
            ) from None
        return self._cached_from(result, started, deadline)

    def _cached_from(self, result: Any, started: float, deadline: Deadline) -> _CachedToken:
        if not isinstance(result, dict) or not isinstance(result.get("access_token"), str):
            # msal keeps failed answers in a per-application throttle cache (5 s for 5xx, 60 s
            # for 400); dropping the application lets the next collection really retry.
            self._app = None
            raise self._auth_error(result if isinstance(result, dict) else {})
        token: str = result["access_token"]
        remember_token(token)
        lifetime = _lifetime(result.get("expires_in"))
        if lifetime <= 0:
            if not self._warned_expired:
                log.warning(
                    "account %s: Azure AD answered a token that is already expired "
                    "(expires_in %s); it serves one collection, and each collection asks again",
                    self._account.name,
                    excerpt(str(result.get("expires_in")), 20),
                )
                self._warned_expired = True
            return _CachedToken(token, started, only_for=deadline)
        self._warned_expired = False
        margin = min(_REFRESH_MARGIN_SECONDS, lifetime / 2)
        log.debug("account %s: token acquired, valid %.0f s", self._account.name, lifetime)
        return _CachedToken(token, started + max(0.0, lifetime - margin))

    def _auth_error(self, result: dict[str, Any]) -> AuthError:
        code = result.get("error")
        code = excerpt(code, 80) if isinstance(code, str) and code else "unknown_error"
        description = result.get("error_description")
        first_line = description.strip().splitlines()[0] if isinstance(description, str) else ""
        status = result.get("status_code")
        detail = excerpt(first_line, 200) if first_line else "no description"
        status = status if isinstance(status, int) else None
        return AuthError(
            self._account.name,
            f"Azure AD refused the token request: {code}: {detail}",
            status=status,
            code=code,
            retryable=status in _TRANSIENT_AAD_STATUSES or code == "temporarily_unavailable",
        )

    @abstractmethod
    def _build(self) -> Any:
        """The msal application (may talk to the authority)."""

    @abstractmethod
    def _acquire(self) -> Any:
        """msal's token result dict."""

    @abstractmethod
    def _forget_tokens(self) -> None:
        """Make msal's own cache forget the token."""


class ConfidentialClientTokenProvider(_MsalTokenProvider):
    """A service principal with a client secret or a client certificate."""

    def __init__(
        self,
        account: AccountConfig,
        session: UpstreamSession,
        credential: ClientSecret | ClientCertificate,
    ) -> None:
        super().__init__(account, session)
        self._credential = credential

    def _build(self) -> Any:
        account = self._account
        host = urlsplit(account.authority_host).hostname
        return msal.ConfidentialClientApplication(
            account.client_id,
            client_credential=self._client_credential(),
            authority=f"{account.authority_host}/{account.tenant}",
            instance_discovery=host in PUBLIC_AUTHORITY_HOSTS,
            http_client=self._session,
        )

    def _client_credential(self) -> str | dict[str, str]:
        """The secret, or the key and certificate, as msal takes them."""
        if isinstance(self._credential, ClientCertificate):
            return certificate_credential(self._credential.pem.reveal())
        return self._credential.secret.reveal()

    def _acquire(self) -> Any:
        return self._app.acquire_token_for_client(scopes=[f"{self._account.resource}/.default"])

    def _forget_tokens(self) -> None:
        self._app.remove_tokens_for_client()


class ManagedIdentityTokenProvider(_MsalTokenProvider):
    """The managed identity of the host: system-assigned, or user-assigned when ``client_id``
    is set. msal finds the endpoint from the environment (``IDENTITY_ENDPOINT`` and
    ``IDENTITY_HEADER`` on App Service and Container Apps, else the VM's IMDS).
    """

    def _build(self) -> Any:
        # The endpoint's secret header (App Service, Container Apps), which msal sends.
        for variable in ("IDENTITY_HEADER", "MSI_SECRET"):
            if os.environ.get(variable):
                remember(os.environ[variable])
        client_id = self._account.client_id
        identity = (
            msal.UserAssignedManagedIdentity(client_id=client_id)
            if client_id
            else msal.SystemAssignedManagedIdentity()
        )
        return msal.ManagedIdentityClient(identity, http_client=self._session)

    def _acquire(self) -> Any:
        return self._app.acquire_token_for_client(resource=self._account.resource)

    def _forget_tokens(self) -> None:
        # ManagedIdentityClient has no way to drop a token: a new client starts with an empty cache.
        self._app = None


def certificate_credential(pem: str) -> dict[str, str]:
    """msal's certificate credential from one PEM text holding the private key and certificate.

    Given ``public_certificate`` and no SHA-1 ``thumbprint``, msal (>= 1.35) signs the client
    assertion with PS256 and an ``x5t#S256`` thumbprint, and sends the chain as ``x5c``.
    """
    key = _PEM_KEY_RE.search(pem)
    certificates = _PEM_CERT_RE.findall(pem)
    if key is None or not certificates:
        raise ValueError("the certificate file must hold a PEM private key and a PEM certificate")
    return {"private_key": key.group(0), "public_certificate": "\n".join(certificates)}


def token_provider_for(account: AccountConfig, session: UpstreamSession) -> TokenProvider:
    """The token provider for the account's credential (nothing is fetched yet)."""
    credential = account.credential
    if isinstance(credential, ManagedIdentity):
        return ManagedIdentityTokenProvider(account, session)
    return ConfidentialClientTokenProvider(account, session, credential)


def _lifetime(expires_in: object, default: float = 3600.0) -> float:
    """Seconds a token is valid by ``expires_in`` (a number or, from the v1 endpoint, a string).

    Missing or unreadable means the usual hour (a 401 still replaces the token); 0 or below
    means already expired; more than a day is taken as a day.
    """
    if isinstance(expires_in, bool):
        return default
    try:
        seconds = float(expires_in)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default
    if math.isnan(seconds):
        return default
    return min(seconds, _MAX_LIFETIME_SECONDS)
