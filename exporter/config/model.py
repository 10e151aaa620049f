"""The configuration as values: frozen types that the rest of the exporter reads.

Nothing here knows YAML or files: :mod:`exporter.config.accounts` builds these values from the
configuration file, every one checked, defaults filled in and secret files read.
"""

from __future__ import annotations

import ipaddress
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TypeAlias
from urllib.parse import urlsplit

from exporter.redact import forget, remember

__all__ = [
    "CLOUDS",
    "DEFAULT_DURATION_BUCKETS",
    "DEFAULT_QUEUE_WAIT_BUCKETS",
    "OTHER_GROUP",
    "AccountConfig",
    "ClientCertificate",
    "ClientSecret",
    "Cloud",
    "Config",
    "Credential",
    "HistoryConfig",
    "JobGroup",
    "JobsConfig",
    "ManagedIdentity",
    "Secret",
    "is_host_name",
    "is_legacy_root",
]


class Secret:
    """A string that does not show itself: ``repr``, ``str`` and ``format`` give ``<redacted>``.

    Call :meth:`reveal` at the one place that needs the value (building the token request).
    Every secret is remembered by :mod:`exporter.redact`, which removes it, in any encoding, from
    whatever the exporter shows.
    """

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        remember(value)
        weakref.finalize(self, forget, value)

    def reveal(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    def __str__(self) -> str:
        return "<redacted>"

    def __format__(self, format_spec: str) -> str:
        return format("<redacted>", format_spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Cloud:
    """The Azure AD authority host and the AMS token resource of one Azure cloud, and the hosts
    a legacy root of that cloud may redirect to."""

    authority_host: str
    resource: str
    # Host patterns (see AccountConfig.allows_redirect_to) of the cloud's AMS cluster hosts
    # (wamsbayclus001rest-hs.cloudapp.net) and account endpoints. Only the public cloud's are
    # documented; the sovereign clouds' follow the same two services' DNS suffixes there.
    redirect_hosts: tuple[str, ...]


CLOUDS: Mapping[str, Cloud] = MappingProxyType(
    {
        "AzureCloud": Cloud(
            "https://login.microsoftonline.com",
            "https://rest.media.azure.net",
            ("*.cloudapp.net", "*.media.azure.net"),
        ),
        "AzureChinaCloud": Cloud(
            "https://login.chinacloudapi.cn",
            "https://rest.media.chinacloudapi.cn",
            ("*.chinacloudapp.cn", "*.media.chinacloudapi.cn"),
        ),
        "AzureUSGovernment": Cloud(
            "https://login.microsoftonline.us",
            "https://rest.media.usgovcloudapi.net",
            ("*.usgovcloudapp.net", "*.media.usgovcloudapi.net"),
        ),
        "AzureGermanCloud": Cloud(
            "https://login.microsoftonline.de",
            "https://rest.media.cloudapi.de",
            ("*.azurecloudapp.de", "*.media.cloudapi.de"),
        ),
    }
)


# The group of the jobs that no configured group's name_regex matches.
OTHER_GROUP = "other"

# Histogram bucket bounds in seconds (the defaults: 10s ... 24h and 1s ... 24h).
DEFAULT_DURATION_BUCKETS = (
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    86400.0,
)  # fmt: skip
DEFAULT_QUEUE_WAIT_BUCKETS = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, 86400.0,
)  # fmt: skip


@dataclass(frozen=True)
class JobGroup:
    """A kind of job for the history metrics: the jobs whose Name ``name_regex`` matches
    (``re.search``), labelled ``group=name``."""

    name: str
    name_regex: re.Pattern[str]


@dataclass(frozen=True)
class HistoryConfig:
    """The bucket bounds, in seconds, of the duration and queue-wait histograms."""

    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS
    queue_wait_buckets: tuple[float, ...] = DEFAULT_QUEUE_WAIT_BUCKETS


@dataclass(frozen=True)
class JobsConfig:
    """Which jobs of an account are exported, and how their history is grouped. Durations are in
    seconds."""

    ids: tuple[str, ...] = ()
    name_prefix: str = ""
    filter: str = ""
    finished_window: float = 24 * 3600.0
    max_jobs: int = 2000
    tasks: bool = True
    groups: tuple[JobGroup, ...] = ()
    history: HistoryConfig = HistoryConfig()
    # How often the encoding reserved units are read (not on every collection).
    capacity_interval: float = 300.0
    # How often a collection lists every in-scope job; in between, only what can have changed.
    full_listing_interval: float = 600.0

    @property
    def group_names(self) -> tuple[str, ...]:
        """Every ``group`` label value of the account: the configured groups, then ``other``."""
        return (*(group.name for group in self.groups), OTHER_GROUP)

    def group_of(self, job_name: str) -> str:
        """The group of a job: the first whose ``name_regex`` matches its Name, else ``other``."""
        for group in self.groups:
            if group.name_regex.search(job_name):
                return group.name
        return OTHER_GROUP


@dataclass(frozen=True)
class ClientSecret:
    """A service principal's client secret: written in the configuration, or the whole of
    ``file`` (``client_secret_file``)."""

    secret: Secret
    file: Path | None = None


@dataclass(frozen=True)
class ClientCertificate:
    """A service principal's certificate: ``pem`` is the private key and the certificate that
    belongs to it, PEM text read from ``file``."""

    pem: Secret
    file: Path


@dataclass(frozen=True)
class ManagedIdentity:
    """The managed identity of the host the exporter runs on: system-assigned, or user-assigned
    when the account has a ``client_id``."""


Credential: TypeAlias = ClientSecret | ClientCertificate | ManagedIdentity
"""How an account gets its Azure AD token."""


@dataclass(frozen=True)
class AccountConfig:
    """One AMS account, every value resolved (defaults filled in, files read).

    ``redirect_hosts`` are the host names and ``*.suffix`` patterns, lower case, that a legacy
    root may redirect to besides the endpoint's own host and its cloud's hosts.
    """

    name: str
    endpoint: str
    cloud: str
    authority_host: str
    resource: str
    tenant: str | None
    client_id: str | None
    credential: Credential
    ca_file: Path | None
    timeout: float
    jobs: JobsConfig
    redirect_hosts: tuple[str, ...] = ()

    def allows_redirect_to(self, host: str) -> bool:
        """Whether a legacy root's 301 may lead to ``host``, a host name without port (as
        ``urlsplit(location).hostname`` gives it).

        Allowed are the endpoint's own host, the hosts of the account's cloud and those in
        ``redirect_hosts``, in any letter case: a name matches itself only, ``*.suffix`` any host
        with at least one more label in front of ``suffix``, never ``suffix`` itself.
        """
        name = _normal_host(host)
        if name is None:
            return False
        if name == _normal_host(urlsplit(self.endpoint).hostname or ""):
            return True
        cloud = CLOUDS.get(self.cloud)
        patterns = (*(cloud.redirect_hosts if cloud else ()), *self.redirect_hosts)
        return any(_host_matches(pattern, name) for pattern in patterns)


@dataclass(frozen=True)
class Config:
    """The whole configuration: at least one account, names unique; and the warnings about
    accepted but doubtful values, each led by its key path like an error."""

    accounts: tuple[AccountConfig, ...]
    warnings: tuple[str, ...] = ()


def is_legacy_root(endpoint: str) -> bool:
    """Whether an account's endpoint is a legacy root (no path), which must answer with a 301."""
    return urlsplit(endpoint).path == "/"


_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")


def is_host_name(name: str) -> bool:
    """Whether ``name`` (lower case) is a DNS host name: labels of letters, digits and ``-``."""
    return len(name) <= 253 and _HOST_NAME_RE.fullmatch(name) is not None


def _normal_host(host: str) -> str | None:
    """``host`` in lower case, IPv6 addresses without brackets and compressed, a final ``.``
    dropped; ``None`` when it is not a host name or IP address."""
    name = host.lower().removesuffix(".")
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).compressed
    except ValueError:
        pass
    return name if is_host_name(name) else None


def _host_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` (from :func:`_normal_host`) matches a ``redirect_hosts`` pattern."""
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return name == pattern
