"""The configuration file: YAML in, frozen dataclasses out.

Everything is validated once, at start-up. Every :class:`ConfigError` names the key path
(``accounts[1].jobs.finished_window: ...``) and, when the text came from a file, the file in
front. Secrets and certificate keys are read here and kept in :class:`Secret`, which never prints
its value. The rules are documented for users in ``docs/configuration.md``; keep the two in step
(a test checks that every accepted key is mentioned there).
"""

from __future__ import annotations

import datetime
import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from exporter.errors import ConfigError
from exporter.redact import remember

__all__ = [
    "ACCOUNT_KEYS",
    "CLOUDS",
    "CREDENTIAL_KEYS",
    "JOBS_KEYS",
    "TOP_LEVEL_KEYS",
    "AccountConfig",
    "Cloud",
    "Config",
    "Credential",
    "JobsConfig",
    "Secret",
    "describe_config",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]


class Secret:
    """A string that does not show itself: ``repr``, ``str`` and ``format`` give ``<redacted>``.

    Call :meth:`reveal` at the one place that needs the value (building the token request).
    Every secret is remembered by :mod:`exporter.redact`, which removes it, in any encoding, from
    whatever the exporter shows.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember(value)

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
    """The Azure AD authority host and the AMS token resource of one Azure cloud."""

    authority_host: str
    resource: str


CLOUDS: Mapping[str, Cloud] = MappingProxyType(
    {
        "AzureCloud": Cloud("https://login.microsoftonline.com", "https://rest.media.azure.net"),
        "AzureChinaCloud": Cloud(
            "https://login.chinacloudapi.cn", "https://rest.media.chinacloudapi.cn"
        ),
        "AzureUSGovernment": Cloud(
            "https://login.microsoftonline.us", "https://rest.media.usgovcloudapi.net"
        ),
        "AzureGermanCloud": Cloud(
            "https://login.microsoftonline.de", "https://rest.media.cloudapi.de"
        ),
    }
)


@dataclass(frozen=True)
class JobsConfig:
    """Which jobs of an account are exported. Durations are in seconds."""

    ids: tuple[str, ...] = ()
    name_prefix: str = ""
    filter: str = ""
    finished_window: float = 24 * 3600.0
    max_jobs: int = 2000
    tasks: bool = True


CredentialKind = Literal["client_secret", "client_certificate", "managed_identity"]


@dataclass(frozen=True)
class Credential:
    """How the account gets its Azure AD token.

    ``secret`` is set for ``client_secret`` (from the config or from ``secret_file``);
    ``certificate_pem`` (key and certificate, PEM text) and ``certificate_file`` for
    ``client_certificate``; nothing for ``managed_identity``.
    """

    kind: CredentialKind
    secret: Secret | None = None
    certificate_pem: Secret | None = None
    certificate_file: Path | None = None
    secret_file: Path | None = None


@dataclass(frozen=True)
class AccountConfig:
    """One AMS account, every value resolved (defaults filled in, files read)."""

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


@dataclass(frozen=True)
class Config:
    """The whole configuration: at least one account, names unique."""

    accounts: tuple[AccountConfig, ...]


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
JOBS_KEYS = ("ids", "name_prefix", "filter", "finished_window", "max_jobs", "tasks")

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
MAX_WINDOW = 10 * 365 * 86400.0
MAX_FILE_SIZE = 4 * 2**20

_UNNAMED_SOURCE = "<config>"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_JOB_ID_RE = re.compile(r"nb:jid:UUID:[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_VAR_RE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\})")

# ---------------------------------------------------------------------------------------------
# Durations (Prometheus syntax)

# Milliseconds per unit, largest first: the order units must be written in.
_DURATION_UNITS = (
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)
# At most 12 digits per unit keeps every duration far inside a float's exact range.
_DURATION_RE = re.compile("".join(f"(?:([0-9]{{1,12}}){unit})?" for unit, _ in _DURATION_UNITS))
_DURATION_HINT = "expected a duration such as 30s, 5m or 24h"


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration (``500ms``, ``30s``, ``1h30m``, ``1d``, ``1w``) into seconds.

    Units go from largest to smallest, each at most once, with whole numbers only; a bare number
    is refused because ``30`` could mean seconds or minutes. Raises ``ValueError`` whose message
    says what is expected (the caller adds the key path or flag name).
    """
    match = _DURATION_RE.fullmatch(text)
    if text == "" or match is None:
        digits = text.strip()
        hint = f" (add a unit, e.g. {digits}s)" if digits.isascii() and digits.isdigit() else ""
        raise ValueError(f"{_DURATION_HINT}, got {text!r}{hint}")
    millis = sum(
        int(amount) * size
        for amount, (_, size) in zip(match.groups(), _DURATION_UNITS, strict=True)
        if amount is not None
    )
    return millis / 1000


def format_duration(seconds: float) -> str:
    """Write seconds in the duration syntax ``parse_duration`` reads (``86400`` → ``1d``)."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS:
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Loading YAML


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping; its message names the key, which is not secret."""


_QUOTED_RE = re.compile(r"'[^']{2,}'")


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    Plain PyYAML keeps the last value silently, which hides copy-paste mistakes such as two
    ``timeout`` lines in one account. Keys brought in by a merge (``<<: *base``) may be overridden.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # PyYAML flattens a mapping in place, also when it is the target of another mapping's
        # merge; check each mapping once, before its merged keys are mixed into its own.
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._refuse_duplicates(node)
        super().flatten_mapping(node)

    def _refuse_duplicates(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise _DuplicateKeyError(
                    None,
                    None,
                    f"key {key!r} appears twice (first on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node


def read_yaml(text: str, source: str) -> object:
    """Parse YAML, reporting syntax errors by line and column without quoting the line.

    PyYAML's own message includes the offending line, which may hold a secret; only its
    problem description and position are kept.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a yaml.SafeLoader: plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if not isinstance(exc, _DuplicateKeyError):
            # An alias or tag name is quoted from the text: it may be the start of a secret.
            problem = _QUOTED_RE.sub("'...'", problem)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        # ValueError: an unquoted value that looks like a date but is not one (2024-02-30).
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None


# ---------------------------------------------------------------------------------------------
# Validation helpers


_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
    (datetime.datetime, "a date and time"),
    (datetime.date, "a date"),
    (bytes, "binary data"),
    (set, "a set"),
    (type(None), "an empty value"),
)


def type_name(value: object) -> str:
    """How an error message names the type of a YAML value ("a string", "a list" ...)."""
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


class _Context:
    """Where the text came from, for error messages, relative paths and ``${VAR}``."""

    def __init__(self, source: str, env: Mapping[str, str], base_dir: Path | None) -> None:
        self.source = source
        self.env = env
        self.base_dir = base_dir

    def fail(self, path: str, reason: str) -> NoReturn:
        prefix = [self.source] if self.source != _UNNAMED_SOURCE else []
        where = ": ".join(part for part in [*prefix, path] if part) or "configuration"
        raise ConfigError(f"{where}: {reason}")

    def expand(self, path: str, value: str) -> str:
        """Replace ``${VAR}`` by the variable and ``$$`` by ``$``; a ``$`` otherwise stays as is."""

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "$"
            if name not in self.env:
                self.fail(path, f"environment variable {name} is not set")
            return self.env[name]

        self._check_references(path, value)
        return _VAR_RE.sub(replace, value)

    def _check_references(self, path: str, value: str) -> None:
        """Refuse a ``${`` that does not start a complete ``${NAME}`` (``${A:-b}``, no ``}``)."""
        rest = _VAR_RE.sub("", value)
        if "${" in rest:
            self.fail(
                path,
                "invalid variable reference: write ${NAME} (letters, digits, _) "
                "and $$ for a literal $",
            )

    def resolve(self, path: str, value: str) -> Path:
        """A path from the config: ``~`` expanded, relative to the config file's folder."""
        if "\x00" in value:
            self.fail(path, "the file name contains a NUL character")
        file = Path(value).expanduser()
        if not file.is_absolute() and self.base_dir is not None:
            file = self.base_dir / file
        return file


def _mapping(ctx: _Context, path: str, value: object, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Check that ``value`` is a mapping whose keys are all among ``allowed``."""
    if not isinstance(value, dict):
        ctx.fail(path, f"expected a mapping, got {type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            ctx.fail(path, f"keys must be strings, got {type_name(key)} ({key!r})")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(allowed)}"
            )
            ctx.fail(_join(path, key), f"unknown key{hint}")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _string(ctx: _Context, path: str, value: object, *, secret: bool = False) -> str:
    """A non-empty string with ``${VAR}`` expanded; other scalars get a hint to quote them."""
    if not isinstance(value, str):
        quote = (
            " (put it in quotes)" if isinstance(value, (bool, int, float, datetime.date)) else ""
        )
        ctx.fail(path, f"expected a string, got {type_name(value)}{quote}")
    text = ctx.expand(path, value)
    if text == "":
        ctx.fail(path, "must not be empty")
    if not secret and _CONTROL_RE.search(text):
        ctx.fail(path, "must not contain control characters (newline, tab, ...)")
    return text


def _optional_string(ctx: _Context, path: str, value: object) -> str:
    """A string that may be empty (``name_prefix``, ``filter``); no control characters."""
    if value == "":
        return ""
    if not isinstance(value, str):
        ctx.fail(path, f"expected a string, got {type_name(value)}")
    text = ctx.expand(path, value)
    if _CONTROL_RE.search(text):
        ctx.fail(path, "must not contain control characters (newline, tab, ...)")
    return text


def _boolean(ctx: _Context, path: str, value: object) -> bool:
    if not isinstance(value, bool):
        ctx.fail(path, f"expected true or false, got {type_name(value)}")
    return value


def _duration(ctx: _Context, path: str, value: object) -> float:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        ctx.fail(path, f"{_DURATION_HINT}, got the number {value} (add a unit, e.g. {value}s)")
    if not isinstance(value, str):
        ctx.fail(path, f"{_DURATION_HINT}, got {type_name(value)}")
    try:
        return parse_duration(ctx.expand(path, value))
    except ValueError as exc:
        ctx.fail(path, str(exc))


def _https_url(ctx: _Context, path: str, value: object) -> tuple[str, str]:
    """Check an https URL with a host; return (``https://netloc``, path)."""
    text = _string(ctx, path, value)
    if "@" in text:
        # Checked first, and the URL not quoted, because it may carry a password.
        ctx.fail(path, "must not contain a user name or password")
    if any(char.isspace() for char in text):
        ctx.fail(path, "must not contain spaces")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        ctx.fail(path, f"not a valid URL ({exc})")
    if port == 0:
        ctx.fail(path, "port 0 is not a valid port")
    scheme = parts.scheme.lower()
    if scheme == "http":
        ctx.fail(
            path, "plain http:// is not accepted: the token would travel unencrypted; use https://"
        )
    if scheme != "https":
        ctx.fail(path, f"expected an https:// URL, got {text!r}")
    if not parts.hostname:
        ctx.fail(path, f"the URL has no host: {text!r}")
    if parts.query or parts.fragment:
        ctx.fail(path, "must not have a query (?...) or fragment (#...)")
    return f"https://{parts.netloc}", parts.path


def _endpoint(ctx: _Context, path: str, value: object) -> str:
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
            f"https://media.windows.net/, got {origin + url_path!r}",
        )
    return f"{origin}{trimmed}/"


def _base_url(ctx: _Context, path: str, value: object) -> str:
    """``authority_host`` / ``resource``: an https URL, stored without a trailing slash."""
    origin, url_path = _https_url(ctx, path, value)
    return f"{origin}{url_path}".rstrip("/")


def _read_file(ctx: _Context, path: str, file: Path) -> bytes:
    """Read a small regular file; a FIFO or device (``/dev/stdin``) would block start-up."""
    try:
        if file.exists() and not file.is_file():
            ctx.fail(path, f"{file} is not a regular file")
        with file.open("rb") as stream:
            data = stream.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        ctx.fail(path, f"cannot read {file}: {exc.strerror or type(exc).__name__}")
    if len(data) > MAX_FILE_SIZE:
        ctx.fail(path, f"{file} is larger than {MAX_FILE_SIZE // 2**20} MiB")
    if not data.strip():
        ctx.fail(path, f"{file} is empty")
    return data


def _decode(ctx: _Context, path: str, file: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        ctx.fail(path, f"{file} is not UTF-8 text")


T = TypeVar("T")


@dataclass(frozen=True)
class _Section:
    """A validated mapping (an account or its ``jobs``) and its key path."""

    ctx: _Context
    path: str
    raw: Mapping[str, Any]

    def get(self, key: str, read: Callable[[_Context, str, object], T], default: T) -> T:
        """Read an optional key with ``read``, or return ``default`` when the key is absent."""
        if key not in self.raw:
            return default
        return read(self.ctx, _join(self.path, key), self.raw[key])


# ---------------------------------------------------------------------------------------------
# Credentials


def _credential(ctx: _Context, path: str, raw: Mapping[str, Any]) -> Credential:
    if "managed_identity" in raw:
        _boolean(ctx, _join(path, "managed_identity"), raw["managed_identity"])
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
    key_path = _join(path, key)
    if key == "managed_identity":
        return Credential(kind="managed_identity")
    if key == "client_secret":
        return Credential(
            kind="client_secret", secret=Secret(_string(ctx, key_path, raw[key], secret=True))
        )
    file = ctx.resolve(key_path, _string(ctx, key_path, raw[key]))
    if key == "client_secret_file":
        return Credential(
            kind="client_secret", secret=_secret_file(ctx, key_path, file), secret_file=file
        )
    return Credential(
        kind="client_certificate",
        certificate_pem=_certificate_file(ctx, key_path, file),
        certificate_file=file,
    )


def _secret_file(ctx: _Context, path: str, file: Path) -> Secret:
    """The whole file is the secret, minus the line ending most editors add."""
    text = _decode(ctx, path, file, _read_file(ctx, path, file)).rstrip("\r\n")
    if text == "":
        ctx.fail(path, f"{file} is empty")
    return Secret(text)


def _certificate_file(ctx: _Context, path: str, file: Path) -> Secret:
    """A PEM file with an unencrypted private key and the certificate that belongs to it."""
    data = _read_file(ctx, path, file)
    text = _decode(ctx, path, file, data)
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        ctx.fail(path, f"the private key in {file} is encrypted; give an unencrypted PEM key")
    except ValueError:
        ctx.fail(path, f"{file} has no readable PEM private key (expected key and certificate)")
    except UnsupportedAlgorithm:
        ctx.fail(path, f"{file} has a private key of an unsupported kind")
    certificates = _pem_certificates(data)
    if not certificates:
        ctx.fail(path, f"{file} has no PEM certificate (expected key and certificate)")
    public = _public_der(key.public_key())
    if not any(_public_der(cert.public_key()) == public for cert in certificates):
        ctx.fail(path, f"the private key in {file} does not belong to its certificate")
    return Secret(text)


def _public_der(key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _pem_certificates(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def _ca_file(ctx: _Context, path: str, value: object) -> Path:
    file = ctx.resolve(path, _string(ctx, path, value))
    if not _pem_certificates(_read_file(ctx, path, file)):
        ctx.fail(path, f"{file} contains no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return file


# ---------------------------------------------------------------------------------------------
# Accounts


def _name(ctx: _Context, path: str, value: object) -> str:
    name = _string(ctx, path, value)
    if not _NAME_RE.fullmatch(name):
        ctx.fail(
            path,
            f"{name!r} is not a valid name: use 1 to 63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        )
    return name


def _cloud(ctx: _Context, path: str, value: object) -> str:
    cloud = _string(ctx, path, value)
    if cloud not in CLOUDS:
        close = difflib.get_close_matches(cloud, list(CLOUDS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        ctx.fail(path, f"unknown cloud {cloud!r}{hint}; expected one of {', '.join(CLOUDS)}")
    return cloud


def _tenant(ctx: _Context, path: str, value: object) -> str:
    tenant = _string(ctx, path, value)
    if not _TENANT_RE.fullmatch(tenant):
        ctx.fail(
            path,
            "expected a tenant ID (GUID) or a domain such as contoso.onmicrosoft.com, "
            f"got {tenant!r}",
        )
    return tenant


def _client_id(ctx: _Context, path: str, value: object) -> str:
    client_id = _string(ctx, path, value)
    if any(char.isspace() for char in client_id):
        ctx.fail(path, "must not contain spaces")
    return client_id


def _timeout(ctx: _Context, path: str, value: object) -> float:
    seconds = _duration(ctx, path, value)
    if not 0 < seconds <= MAX_TIMEOUT:
        ctx.fail(path, f"must be more than 0s and at most 5m, got {format_duration(seconds)}")
    return seconds


def _window(ctx: _Context, path: str, value: object) -> float:
    """``finished_window``: 0 or more; capped so that "now minus the window" stays a real date."""
    seconds = _duration(ctx, path, value)
    if seconds > MAX_WINDOW:
        ctx.fail(path, f"must be at most 10y, got {format_duration(seconds)}")
    return seconds


def _required(ctx: _Context, path: str, raw: Mapping[str, Any], key: str) -> object:
    if key not in raw:
        ctx.fail(_join(path, key), "required")
    return raw[key]


def _account(ctx: _Context, path: str, value: object) -> AccountConfig:
    raw = _mapping(ctx, path, value, ACCOUNT_KEYS)
    section = _Section(ctx, path, raw)
    name = _name(ctx, _join(path, "name"), _required(ctx, path, raw, "name"))
    endpoint = _endpoint(ctx, _join(path, "endpoint"), _required(ctx, path, raw, "endpoint"))
    cloud_name = section.get("cloud", _cloud, "AzureCloud")
    cloud = CLOUDS[cloud_name]
    credential = _credential(ctx, path, raw)
    tenant = section.get("tenant", _tenant, None)
    client_id = section.get("client_id", _client_id, None)
    if credential.kind != "managed_identity":
        used = "client_secret" if credential.kind == "client_secret" else "a client certificate"
        for key, got in (("tenant", tenant), ("client_id", client_id)):
            if got is None:
                ctx.fail(_join(path, key), f"required with {used}")
    return AccountConfig(
        name=name,
        endpoint=endpoint,
        cloud=cloud_name,
        authority_host=section.get("authority_host", _base_url, cloud.authority_host),
        resource=section.get("resource", _base_url, cloud.resource),
        tenant=tenant,
        client_id=client_id,
        credential=credential,
        ca_file=section.get("ca_file", _ca_file, None),
        timeout=section.get("timeout", _timeout, DEFAULT_TIMEOUT),
        jobs=_jobs(ctx, _join(path, "jobs"), raw.get("jobs")),
    )


def _jobs(ctx: _Context, path: str, value: object) -> JobsConfig:
    """The ``jobs`` section; absent or empty means every default."""
    if value is None:
        return JobsConfig()
    section = _Section(ctx, path, _mapping(ctx, path, value, JOBS_KEYS))
    defaults = JobsConfig()
    return JobsConfig(
        ids=section.get("ids", _job_ids, defaults.ids),
        name_prefix=section.get("name_prefix", _optional_string, defaults.name_prefix),
        filter=section.get("filter", _optional_string, defaults.filter),
        finished_window=section.get("finished_window", _window, defaults.finished_window),
        max_jobs=section.get("max_jobs", _max_jobs, defaults.max_jobs),
        tasks=section.get("tasks", _boolean, defaults.tasks),
    )


def _job_ids(ctx: _Context, path: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        ctx.fail(path, f"expected a list of job IDs, got {type_name(value)}")
    ids: list[str] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        job_id = _string(ctx, item_path, item)
        if not _JOB_ID_RE.fullmatch(job_id):
            ctx.fail(item_path, f"expected a job ID such as nb:jid:UUID:<guid>, got {job_id!r}")
        if job_id in ids:
            ctx.fail(item_path, f"{job_id!r} is already listed as {path}[{ids.index(job_id)}]")
        ids.append(job_id)
    return tuple(ids)


def _max_jobs(ctx: _Context, path: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        ctx.fail(path, f"expected a whole number, got {type_name(value)}")
    if value < 0:
        ctx.fail(path, f"must be 0 or more, got {value}")
    return value


def _accounts(ctx: _Context, value: object) -> tuple[AccountConfig, ...]:
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
                ctx.fail(f"{path}.name", f"{account.name!r} is already used by accounts[{other}]")
        accounts.append(account)
    return tuple(accounts)


# ---------------------------------------------------------------------------------------------
# Entry points


def parse_config(
    text: str,
    env: Mapping[str, str],
    source: str = _UNNAMED_SOURCE,
    base_dir: Path | None = None,
) -> Config:
    """Parse configuration text. ``source`` names the file in messages; ``base_dir`` anchors
    relative file names (the current directory when ``None``)."""
    ctx = _Context(source, env, base_dir)
    document = read_yaml(text, source)
    if document is None:
        ctx.fail("", "the configuration is empty; it needs an 'accounts' list")
    if not isinstance(document, dict):
        ctx.fail(
            "", f"expected a mapping with an 'accounts' key at the top, got {type_name(document)}"
        )
    raw = _mapping(ctx, "", document, TOP_LEVEL_KEYS)
    if "accounts" not in raw:
        ctx.fail("accounts", "required: the configuration needs at least one account")
    return Config(accounts=_accounts(ctx, raw["accounts"]))


def load_config(path: Path, env: Mapping[str, str] = os.environ) -> Config:
    """Read and validate the configuration file; relative file names in it are relative to it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, env, source=str(path), base_dir=path.parent)


# ---------------------------------------------------------------------------------------------
# Describing


def _scalar(value: object) -> str:
    """A value as YAML would show it: plain when YAML reads it back unchanged, else double-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text.isprintable() and text == text.strip() and _reads_back(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _reads_back(text: str) -> bool:
    """Whether ``key: text`` means the string ``text`` to YAML (not ``no``, ``1.0``, ``a #b``)."""
    try:
        return bool(yaml.safe_load(f"key: {text}") == {"key": text})
    except yaml.YAMLError:
        return False


def _describe_credential(credential: Credential) -> list[str]:
    lines = [f"credential: {credential.kind}"]
    if credential.secret_file is not None:
        lines.append(
            f"client_secret_file: {_scalar(credential.secret_file)}  # contents <redacted>"
        )
    elif credential.secret is not None:
        lines.append("client_secret: <redacted>")
    if credential.certificate_file is not None:
        lines.append(
            f"client_certificate_file: {_scalar(credential.certificate_file)}  # key <redacted>"
        )
    if credential.kind == "managed_identity":
        lines.append("managed_identity: true")
    return lines


def _describe_account(account: AccountConfig) -> list[str]:
    jobs = account.jobs
    ca_file = _scalar(account.ca_file) if account.ca_file else "null  # system trust store"
    client_id = _scalar(account.client_id)
    if account.client_id is None and account.credential.kind == "managed_identity":
        client_id += "  # system-assigned identity"
    return [
        f"name: {_scalar(account.name)}",
        f"endpoint: {_scalar(account.endpoint)}",
        f"cloud: {account.cloud}",
        f"authority_host: {_scalar(account.authority_host)}",
        f"resource: {_scalar(account.resource)}",
        f"tenant: {_scalar(account.tenant)}",
        f"client_id: {client_id}",
        *_describe_credential(account.credential),
        f"ca_file: {ca_file}",
        f"timeout: {format_duration(account.timeout)}",
        "jobs:",
        f"  ids: {'[]' if not jobs.ids else ''}".rstrip(),
        *(f"    - {_scalar(job_id)}" for job_id in jobs.ids),
        f"  name_prefix: {_scalar(jobs.name_prefix)}",
        f"  filter: {_scalar(jobs.filter)}",
        f"  finished_window: {format_duration(jobs.finished_window)}",
        f"  max_jobs: {jobs.max_jobs}",
        f"  tasks: {_scalar(jobs.tasks)}",
    ]


def describe_config(config: Config) -> str:
    """Every resolved value of every account, defaults included, as YAML-like text.

    This is what ``--config.check`` prints. Secrets and certificate keys appear as
    ``<redacted>``; the files they came from are shown.
    """
    lines = ["accounts:"]
    for account in config.accounts:
        body = _describe_account(account)
        lines.append(f"  - {body[0]}")
        lines.extend(f"    {line}" for line in body[1:])
    return "\n".join(lines) + "\n"
