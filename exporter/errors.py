"""The exporter's error types. Messages are written for the person running the exporter.

No message ever carries a token, a secret or an Authorization header: upstream bodies are reduced to
their error code and a bounded message before they reach one of these, and every message is
redacted by value (:mod:`exporter.redact`) when the error is made, so that an upstream that echoes
the client secret or a token back cannot smuggle it into a log line, a page or a traceback.
"""

from __future__ import annotations

from exporter.redact import redact


class ExporterError(Exception):
    """Base of every error the exporter raises on purpose."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigError(ExporterError):
    """The configuration is invalid; the message starts with the key path (``accounts[1].name``)."""


class DeadlineExceeded(ExporterError):
    """The collection's time budget ran out before the work was done."""


class AccountError(ExporterError):
    """An error tied to one AMS account; ``account`` is its configured name."""

    def __init__(self, account: str, message: str) -> None:
        super().__init__(f"account {account}: {message}")
        self.account = account


class AuthError(AccountError):
    """Azure AD did not give a token (wrong credentials, unknown tenant, AAD down ...)."""

    def __init__(
        self,
        account: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(account, message)
        self.status = status
        self.code = code
        self.retryable = retryable


class AmsApiError(AccountError):
    """AMS answered with an HTTP error status."""

    def __init__(
        self, account: str, status: int, code: str, message: str, *, retryable: bool = False
    ) -> None:
        detail = f"{code}: {message}" if code else message
        super().__init__(account, f"AMS answered HTTP {status}: {detail}")
        self.status = status
        self.code = code
        self.upstream_message = redact(message)
        self.retryable = retryable


class AmsTransportError(AccountError):
    """The request did not complete: connection refused or reset, TLS failure, timeout."""


class AmsResponseError(AccountError):
    """AMS answered 2xx with a body the exporter cannot read (malformed JSON, wrong shape)."""
