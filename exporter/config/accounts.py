"""The account configuration file: YAML in, a :class:`Config` out.

Everything is validated once, at start-up. Every :class:`ConfigError` names the key path
(``accounts[1].jobs.finished_window: ...``) and, when the text came from a file, the file in
front. Secrets and certificate keys are read here and kept in :class:`Secret`, which never prints
its value. An error may quote a value written in the file, but never one that came from an
environment variable or a file: it names the variable instead, for any key, since a secret may
sit in the wrong variable. Doubtful but accepted values give warnings (:attr:`Config.warnings`).
The rules are documented for users in ``docs/configuration.md``; keep the two in step (a test
checks that every accepted key is mentioned there).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exporter.config.credentials import ca_file, certificate_file, secret_file
from exporter.config.durations import format_duration
from exporter.config.model import (
    CLOUDS,
    OTHER_GROUP,
    AccountConfig,
    ClientCertificate,
    ClientSecret,
    Config,
    Credential,
    HistoryConfig,
    JobGroup,
    JobsConfig,
    ManagedIdentity,
    Secret,
    is_host_name,
    is_legacy_root,
)
from exporter.config.validate import (
    Context,
    Section,
    boolean,
    choice,
    duration,
    join,
    mapping,
    optional_string,
    required,
    string,
    type_name,
)
from exporter.config.yamlio import read_file_capped, read_yaml
from exporter.errors import ConfigError

__all__ = [
    "ACCOUNT_KEYS",
    "CREDENTIAL_KEYS",
    "GROUP_KEYS",
    "HISTORY_KEYS",
    "JOBS_KEYS",
    "MAX_GROUPS",
    "TOP_LEVEL_KEYS",
    "load_config",
    "parse_config",
]

TOP_LEVEL_KEYS = ("accounts",)
CREDENTIAL_KEYS = (
    "client_secret",
    "client_secret_file",
    "client_certificate_file",
    "managed_identity",
)
ACCOUNT_KEYS = (
    "name",
    "endpoint",
    "redirect_hosts",
    "cloud",
    "authority_host",
    "resource",
    "tenant",
    "client_id",
    *CREDENTIAL_KEYS,
    "ca_file",
    "timeout",
    "jobs",
)
JOBS_KEYS = (
    "ids",
    "name_prefix",
    "filter",
    "finished_window",
    "max_jobs",
    "tasks",
    "groups",
    "history",
    "capacity_interval",
    "full_listing_interval",
)
GROUP_KEYS = ("name", "name_regex")
HISTORY_KEYS = ("duration_buckets", "queue_wait_buckets")
MAX_GROUPS = 50
MAX_BUCKETS = 40
MAX_CAPACITY_INTERVAL = 86400.0
MAX_FULL_LISTING_INTERVAL = 86400.0
# A finished_window below this loses ends between collections (the history's overlap, 10 min).
MIN_HISTORY_WINDOW = 600.0

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
MAX_WINDOW = 10 * 365 * 86400.0

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_GUID = r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}"
_GUID_RE = re.compile(_GUID)
_JOB_ID_RE = re.compile(f"nb:jid:UUID:{_GUID}")
# How a message names text that did not come from a file.
UNNAMED_SOURCE = "<config>"

# ---------------------------------------------------------------------------------------------
# URLs


def _https_url(ctx: Context, path: str, value: object) -> tuple[str, str]:
    """Check an https URL with a host; return (``https://netloc``, path)."""
    text = string(ctx, path, value)
    if "@" in text:
        # Checked first, and the URL not quoted, because it may carry a password.
        origin = f" ({ctx.show(path, text)})" if path in ctx.expanded else ""
        ctx.fail(path, f"must not contain a user name or password{origin}")
    if any(char.isspace() for char in text):
        ctx.fail(path, "must not contain spaces")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        ctx.fail(path, f"not a valid URL ({_url_problem(exc)})")
    if port == 0:
        ctx.fail(path, "port 0 is not a valid port")
    scheme = parts.scheme.lower()
    if scheme == "http":
        ctx.fail(
            path, "plain http:// is not accepted: the token would travel unencrypted; use https://"
        )
    if scheme != "https":
        ctx.fail(path, f"expected an https:// URL, got {ctx.show(path, text)}")
    if not parts.hostname:
        ctx.fail(path, f"the URL has no host: {ctx.show(path, text)}")
    if parts.query or parts.fragment:
        ctx.fail(path, "must not have a query (?...) or fragment (#...)")
    return f"https://{parts.netloc}", parts.path


def _url_problem(error: ValueError) -> str:
    """What ``urlsplit`` found wrong, without the part of the URL its message quotes."""
    message = str(error)
    if "out of range" in message:
        return "Port out of range 0-65535"
    if "Port" in message:
        return "the port is not a number"
    return "the host is malformed"


def _endpoint(ctx: Context, path: str, value: object) -> str:
    """An account endpoint (``.../api/``) or a legacy root (empty path); always ends with ``/``."""
    origin, url_path = _https_url(ctx, path, value)
    if url_path in ("", "/"):
        return f"{origin}/"
    trimmed = url_path.removesuffix("/")
    if "//" in url_path or not trimmed.lower().endswith("/api"):
        ctx.fail(
            path,
            "expected an account endpoint ending in /api/ such as "
            "https://<account>.restv2.<region>.media.azure.net/api/, or a legacy root such as "
            f"https://media.windows.net/, got {ctx.show(path, origin + url_path)}",
        )
    return f"{origin}{trimmed}/"


def _base_url(ctx: Context, path: str, value: object) -> str:
    """``authority_host`` / ``resource``: an https URL, stored without a trailing slash."""
    origin, url_path = _https_url(ctx, path, value)
    return f"{origin}{url_path}".rstrip("/")


# ---------------------------------------------------------------------------------------------
# Credentials


def _credential(ctx: Context, path: str, raw: Mapping[str, Any]) -> Credential:
    if "managed_identity" in raw:
        boolean(ctx, join(path, "managed_identity"), raw["managed_identity"])
    given = [
        key
        for key in CREDENTIAL_KEYS
        if key in raw and not (key == "managed_identity" and raw[key] is False)
    ]
    if not given:
        ctx.fail(
            path,
            "no credential: give one of client_secret, client_secret_file, "
            "client_certificate_file or managed_identity: true",
        )
    if len(given) > 1:
        ctx.fail(path, f"give only one credential, found {' and '.join(given)}")
    key = given[0]
    key_path = join(path, key)
    if key == "managed_identity":
        return ManagedIdentity()
    if key == "client_secret":
        return ClientSecret(Secret(string(ctx, key_path, raw[key], secret=True)))
    file = ctx.resolve(key_path, string(ctx, key_path, raw[key]))
    if key == "client_secret_file":
        return ClientSecret(secret_file(ctx, key_path, file), file)
    return ClientCertificate(certificate_file(ctx, key_path, file), file)


# ---------------------------------------------------------------------------------------------
# Account values


def _matching(
    ctx: Context, path: str, value: object, pattern: re.Pattern[str], problem: str
) -> str:
    """A string that ``pattern`` matches whole; ``problem`` says why not, ``{got}`` the value."""
    text = string(ctx, path, value)
    if not pattern.fullmatch(text):
        ctx.fail(path, problem.format(got=ctx.show(path, text)))
    return text


def _name(ctx: Context, path: str, value: object) -> str:
    return _matching(
        ctx,
        path,
        value,
        _NAME_RE,
        "{got} is not a valid name: use 1 to 63 letters, digits, '_', '.' or '-', starting with "
        "a letter or digit",
    )


def _cloud(ctx: Context, path: str, value: object) -> str:
    return choice(ctx, path, string(ctx, path, value), list(CLOUDS), cutoff=0.5)


def _tenant(ctx: Context, path: str, value: object) -> str:
    return _matching(
        ctx,
        path,
        value,
        _TENANT_RE,
        "expected a tenant ID (GUID) or a domain such as contoso.onmicrosoft.com, got {got}",
    )


def _client_id(ctx: Context, path: str, value: object) -> str:
    """An application (client) ID: a GUID, in any letter case, kept as written."""
    return _matching(
        ctx,
        path,
        value,
        _GUID_RE,
        "{got} is not a GUID (8-4-4-4-12 hexadecimal digits, such as "
        "11111111-2222-3333-4444-555555555555)",
    )


def _positive_duration(limit: float) -> Callable[[Context, str, object], float]:
    """A reader of durations more than 0s and at most ``limit`` seconds."""

    def read(ctx: Context, path: str, value: object) -> float:
        seconds = duration(ctx, path, value)
        if not 0 < seconds <= limit:
            shown = ctx.show(path, format_duration(seconds), quote=False)
            ctx.fail(
                path, f"must be more than 0s and at most {format_duration(limit)}, got {shown}"
            )
        return seconds

    return read


_timeout = _positive_duration(MAX_TIMEOUT)


def _full_listing_interval(ctx: Context, path: str, value: object) -> float:
    """``full_listing_interval``: 0s (every listing is full) to 1d."""
    seconds = duration(ctx, path, value)
    if seconds > MAX_FULL_LISTING_INTERVAL:
        shown = ctx.show(path, format_duration(seconds), quote=False)
        ctx.fail(
            path,
            f"must be at most {format_duration(MAX_FULL_LISTING_INTERVAL)} (0s lists every "
            f"in-scope job on every collection), got {shown}",
        )
    return seconds


def _window(ctx: Context, path: str, value: object) -> float:
    """``finished_window``: 0 or more; capped so that "now minus the window" stays a real date."""
    seconds = duration(ctx, path, value)
    if seconds > MAX_WINDOW:
        shown = ctx.show(path, format_duration(seconds), quote=False)
        ctx.fail(path, f"must be at most 10y, got {shown}")
    return seconds


# ---------------------------------------------------------------------------------------------
# Redirect hosts


def _redirect_hosts(ctx: Context, path: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        ctx.fail(
            path,
            "expected a list of host names or *.<domain> patterns, such as "
            f"[wamsbayclus001rest-hs.cloudapp.net], got {type_name(value)}",
        )
    hosts: list[str] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        host = _redirect_host(ctx, item_path, string(ctx, item_path, item))
        if host in hosts:
            shown = ctx.show(item_path, host)
            ctx.fail(item_path, f"{shown} is already listed as {path}[{hosts.index(host)}]")
        hosts.append(host)
    return tuple(hosts)


def _redirect_host(ctx: Context, path: str, text: str) -> str:
    """A host name, an IP address or ``*.`` and a domain of at least two labels; lower case."""
    shown = ctx.show(path, text)
    host = text.lower()
    if "@" in host:
        ctx.fail(path, "must not contain a user name or password")
    if "://" in host or "/" in host:
        ctx.fail(path, f"expected a host name without scheme or path, got {shown}")
    if host.startswith("[") or host.count(":") > 1:
        address, _, port = host.removeprefix("[").partition("]")
        if port:
            ctx.fail(path, f"expected a host name without port, got {shown}")
        try:
            return ipaddress.IPv6Address(address).compressed
        except ValueError:
            ctx.fail(path, f"{shown} is not an IPv6 address")
    if ":" in host:
        ctx.fail(path, f"expected a host name without port, got {shown}")
    try:
        return ipaddress.IPv4Address(host).compressed
    except ValueError:
        pass
    if host in ("*", "*."):
        ctx.fail(path, "a bare * would allow any host; write *.<domain>, such as *.cloudapp.net")
    suffix = host.removeprefix("*.")
    if "*" in suffix:
        ctx.fail(path, f"* may only start a pattern, as in *.cloudapp.net, got {shown}")
    if not is_host_name(suffix):
        ctx.fail(
            path,
            f"{shown} is not a host name (labels of letters, digits and '-', joined by '.')",
        )
    if suffix != host and suffix.count(".") < 1:
        ctx.fail(
            path,
            f"{shown} would allow a whole top-level domain; give at least two labels after *.",
        )
    return host


# ---------------------------------------------------------------------------------------------
# Accounts and their jobs


def _account(ctx: Context, path: str, value: object) -> AccountConfig:
    raw = mapping(ctx, path, value, ACCOUNT_KEYS)
    section = Section(ctx, path, raw)
    name = _name(ctx, join(path, "name"), required(ctx, path, raw, "name"))
    endpoint = _endpoint(ctx, join(path, "endpoint"), required(ctx, path, raw, "endpoint"))
    no_hosts: tuple[str, ...] = ()
    redirect_hosts = section.get("redirect_hosts", _redirect_hosts, no_hosts)
    cloud_name = section.get("cloud", _cloud, "AzureCloud")
    cloud = CLOUDS[cloud_name]
    if is_legacy_root(endpoint):
        ctx.warn(
            join(path, "endpoint"),
            "has no /api/ path, so it is treated as a legacy root that must answer 301 with "
            "the account's endpoint, on its own host, a host of "
            f"{cloud_name} ({', '.join(cloud.redirect_hosts)}) or one in redirect_hosts",
        )
    credential = _credential(ctx, path, raw)
    tenant = section.get("tenant", _tenant, None)
    client_id = section.get("client_id", _client_id, None)
    if not isinstance(credential, ManagedIdentity):
        used = "client_secret" if isinstance(credential, ClientSecret) else "a client certificate"
        for key, got in (("tenant", tenant), ("client_id", client_id)):
            if got is None:
                ctx.fail(join(path, key), f"required with {used}")
    return AccountConfig(
        name=name,
        endpoint=endpoint,
        cloud=cloud_name,
        authority_host=section.get("authority_host", _base_url, cloud.authority_host),
        resource=section.get("resource", _base_url, cloud.resource),
        tenant=tenant,
        client_id=client_id,
        credential=credential,
        ca_file=section.get("ca_file", ca_file, None),
        timeout=section.get("timeout", _timeout, DEFAULT_TIMEOUT),
        jobs=_jobs(ctx, join(path, "jobs"), raw.get("jobs")),
        redirect_hosts=redirect_hosts,
    )


def _jobs(ctx: Context, path: str, value: object) -> JobsConfig:
    """The ``jobs`` section; absent or empty means every default."""
    if value is None:
        return JobsConfig()
    section = Section(ctx, path, mapping(ctx, path, value, JOBS_KEYS))
    defaults = JobsConfig()
    window = section.get("finished_window", _window, defaults.finished_window)
    if window < MIN_HISTORY_WINDOW:
        ctx.warn(
            join(path, "finished_window"),
            f"{format_duration(window)} keeps ended jobs in the listing for less than "
            f"{format_duration(MIN_HISTORY_WINDOW)}: a job that ends between two collections "
            "further apart may never be seen ended, and is then missing from the history "
            "(ams_jobs_ended_total ...)",
        )
    return JobsConfig(
        ids=section.get("ids", _job_ids, defaults.ids),
        name_prefix=section.get("name_prefix", optional_string, defaults.name_prefix),
        filter=section.get("filter", optional_string, defaults.filter),
        finished_window=window,
        max_jobs=section.get("max_jobs", _max_jobs, defaults.max_jobs),
        tasks=section.get("tasks", boolean, defaults.tasks),
        groups=section.get("groups", _groups, defaults.groups),
        history=section.get("history", _history, defaults.history),
        capacity_interval=section.get(
            "capacity_interval",
            _positive_duration(MAX_CAPACITY_INTERVAL),
            defaults.capacity_interval,
        ),
        full_listing_interval=section.get(
            "full_listing_interval", _full_listing_interval, defaults.full_listing_interval
        ),
    )


_GROUP_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _groups(ctx: Context, path: str, value: object) -> tuple[JobGroup, ...]:
    """``jobs.groups``: at most :data:`MAX_GROUPS`, names unique and never ``other``."""
    if not isinstance(value, list):
        ctx.fail(path, f"expected a list of groups (name and name_regex), got {type_name(value)}")
    if len(value) > MAX_GROUPS:
        ctx.fail(path, f"at most {MAX_GROUPS} groups per account, got {len(value)}")
    groups: list[JobGroup] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        group = _group(ctx, item_path, item)
        for other, earlier in enumerate(groups):
            if earlier.name == group.name:
                shown = ctx.show(join(item_path, "name"), group.name)
                ctx.fail(join(item_path, "name"), f"{shown} is already used by {path}[{other}]")
        groups.append(group)
    return tuple(groups)


def _group(ctx: Context, path: str, value: object) -> JobGroup:
    raw = mapping(ctx, path, value, GROUP_KEYS)
    name_path = join(path, "name")
    name = string(ctx, name_path, required(ctx, path, raw, "name"))
    shown = ctx.show(name_path, name)
    if not _GROUP_NAME_RE.fullmatch(name):
        ctx.fail(
            name_path,
            f"a group name is 1 to 64 letters, digits, '_', '.' or '-' (it is a label value), "
            f"got {shown}",
        )
    if name == OTHER_GROUP:
        ctx.fail(name_path, f"{shown} is the group of the jobs that no group matches; pick another")
    regex_path = join(path, "name_regex")
    text = string(ctx, regex_path, required(ctx, path, raw, "name_regex"))
    try:
        pattern = re.compile(text)
    except re.error as error:
        where = "" if error.pos is None else f" at position {error.pos}"
        if regex_path in ctx.expanded:  # the reason may quote the text: name the variable
            shown = ctx.show(regex_path, text)
            ctx.fail(regex_path, f"{shown} is not a valid Python regular expression{where}")
        ctx.fail(regex_path, f"not a valid Python regular expression: {error.msg}{where}")
    return JobGroup(name, pattern)


def _history(ctx: Context, path: str, value: object) -> HistoryConfig:
    """``jobs.history``: the bucket bounds of the two histograms."""
    if value is None:
        return HistoryConfig()
    section = Section(ctx, path, mapping(ctx, path, value, HISTORY_KEYS))
    defaults = HistoryConfig()
    return HistoryConfig(
        duration_buckets=section.get("duration_buckets", _buckets, defaults.duration_buckets),
        queue_wait_buckets=section.get("queue_wait_buckets", _buckets, defaults.queue_wait_buckets),
    )


def _buckets(ctx: Context, path: str, value: object) -> tuple[float, ...]:
    """Bucket bounds: 1 to :data:`MAX_BUCKETS` durations above 0, each longer than the one
    before (``+Inf`` is always added)."""
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else type_name(value)
        ctx.fail(path, f"expected a list of durations such as [30s, 5m, 1h], got {got}")
    if len(value) > MAX_BUCKETS:
        ctx.fail(path, f"at most {MAX_BUCKETS} buckets, got {len(value)}")
    bounds: list[float] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        seconds = duration(ctx, item_path, item)
        shown = ctx.show(item_path, format_duration(seconds), quote=False)
        if seconds <= 0:
            ctx.fail(item_path, "a bucket bound must be more than 0s")
        if bounds and seconds <= bounds[-1]:
            before = f"{path}[{index - 1}]"
            ctx.fail(
                item_path,
                f"bounds must increase: {shown} is not longer than {before} "
                f"({ctx.show(before, format_duration(bounds[-1]), quote=False)})",
            )
        bounds.append(seconds)
    return tuple(bounds)


def _job_ids(ctx: Context, path: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        ctx.fail(path, f"expected a list of job IDs, got {type_name(value)}")
    ids: list[str] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        job_id = string(ctx, item_path, item)
        shown = ctx.show(item_path, job_id)
        if not _JOB_ID_RE.fullmatch(job_id):
            ctx.fail(item_path, f"expected a job ID such as nb:jid:UUID:<guid>, got {shown}")
        if job_id in ids:
            ctx.fail(item_path, f"{shown} is already listed as {path}[{ids.index(job_id)}]")
        ids.append(job_id)
    return tuple(ids)


def _max_jobs(ctx: Context, path: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        ctx.fail(path, f"expected a whole number, got {type_name(value)}")
    if value < 0:
        ctx.fail(path, f"must be 0 or more, got {value}")
    return value


def _accounts(ctx: Context, value: object) -> tuple[AccountConfig, ...]:
    if value is None or value == []:
        ctx.fail("accounts", "needs at least one account")
    if not isinstance(value, list):
        ctx.fail("accounts", f"expected a list of accounts, got {type_name(value)}")
    accounts: list[AccountConfig] = []
    for index, item in enumerate(value):
        path = f"accounts[{index}]"
        account = _account(ctx, path, item)
        for other, earlier in enumerate(accounts):
            if earlier.name == account.name:
                shown = ctx.show(f"{path}.name", account.name)
                ctx.fail(f"{path}.name", f"{shown} is already used by accounts[{other}]")
        accounts.append(account)
    return tuple(accounts)


# ---------------------------------------------------------------------------------------------
# Entry points


def parse_config(
    text: str,
    env: Mapping[str, str],
    source: str = UNNAMED_SOURCE,
    base_dir: Path | None = None,
) -> Config:
    """Parse configuration text. ``source`` names the file in messages; ``base_dir`` anchors
    relative file names (the current directory when ``None``)."""
    ctx = Context(None if source == UNNAMED_SOURCE else source, env, base_dir)
    document = read_yaml(text, source)
    if document is None:
        ctx.fail("", "the configuration is empty; it needs an 'accounts' list")
    if not isinstance(document, dict):
        ctx.fail(
            "", f"expected a mapping with an 'accounts' key at the top, got {type_name(document)}"
        )
    raw = mapping(ctx, "", document, TOP_LEVEL_KEYS)
    if "accounts" not in raw:
        ctx.fail("accounts", "required: the configuration needs at least one account")
    accounts = _accounts(ctx, raw["accounts"])
    return Config(accounts=accounts, warnings=tuple(ctx.warnings))


def load_config(path: Path, env: Mapping[str, str] = os.environ) -> Config:
    """Read and validate the configuration file; relative file names in it are relative to it."""
    try:
        data = read_file_capped(path, "configuration file")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, env, source=str(path), base_dir=path.parent)
