"""The configuration file: YAML in, frozen dataclasses out.

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

import datetime
import difflib
import ipaddress
import json
import os
import re
import weakref
from collections.abc import Callable, Generator, Mapping
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
from exporter.redact import forget, remember

__all__ = [
    "ACCOUNT_KEYS",
    "CLOUDS",
    "CREDENTIAL_KEYS",
    "JOBS_KEYS",
    "MAX_CONFIG_SIZE",
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
    "read_file_capped",
    "read_yaml",
    "type_name",
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
JOBS_KEYS = ("ids", "name_prefix", "filter", "finished_window", "max_jobs", "tasks")

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
MAX_WINDOW = 10 * 365 * 86400.0
# Reading stops at these sizes: a configuration is a few KiB, a secret under 1 KiB, and a PEM
# bundle (a certificate chain, or a CA bundle such as the system's) well under 1 MiB.
MAX_CONFIG_SIZE = 2**20
MAX_SECRET_SIZE = 64 * 2**10
MAX_PEM_SIZE = 2**20

_UNNAMED_SOURCE = "<config>"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_GUID = r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}"
_GUID_RE = re.compile(_GUID)
_JOB_ID_RE = re.compile(f"nb:jid:UUID:{_GUID}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_VAR_RE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\})")
# A "$NAME" left after the ${NAME} and $$ are taken out: a variable written without braces.
_BARE_VAR_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_ONE_VAR_RE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# What an error may quote as a key; anything else (a pasted secret, a line of text) is only
# located by its line.
_KEY_LIKE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")

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
    seconds = _seconds(text)
    if seconds is None:
        digits = text.strip()
        hint = f" (add a unit, e.g. {digits}s)" if _is_number(digits) else ""
        raise ValueError(f"{_DURATION_HINT}, got {text!r}{hint}")
    return seconds


def _seconds(text: str) -> float | None:
    """The seconds of a duration, or ``None`` when ``text`` is not one."""
    match = _DURATION_RE.fullmatch(text)
    if text == "" or match is None:
        return None
    millis = sum(
        int(amount) * size
        for amount, (_, size) in zip(match.groups(), _DURATION_UNITS, strict=True)
        if amount is not None
    )
    return millis / 1000


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


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
    """A key given twice in one mapping; the message is ours, shown as it is."""


class _Mapping(dict[Any, Any]):
    """A YAML mapping that knows the line of each of its keys, for an error that must point at
    a key without quoting it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, int] = {}


def _looks_like_key(key: object) -> bool:
    """Whether an error may quote ``key``: short and made of the characters keys are made of."""
    return isinstance(key, (str, int)) and _KEY_LIKE_RE.fullmatch(str(key)) is not None


# How a value that a tag's constructor cannot read is named, by tag.
_TAG_KINDS = {
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:timestamp": "a date",
}


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    Plain PyYAML keeps the last value silently, which hides copy-paste mistakes such as two
    ``timeout`` lines in one account. Keys brought in by a merge (``<<: *base``) may be overridden.
    Mappings come out as :class:`_Mapping`, which remembers the line of each key.
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
                name = f"key {key!r}" if _looks_like_key(key) else "a key"
                raise _DuplicateKeyError(
                    None,
                    None,
                    f"{name} appears twice (first on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node

    def construct_yaml_map(self, node: yaml.MappingNode) -> Generator[dict[Any, Any], None, None]:
        data = _Mapping()
        yield data
        data.update(self.construct_mapping(node))
        # construct_mapping has flattened the merges into node.value, own keys last: a key's
        # line is where the value it kept was written.
        for key_node, _ in node.value:
            data.lines[self.construct_object(key_node)] = key_node.start_mark.line + 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError):
            # A scalar that its tag's constructor cannot read (2024-02-30, !!int x, !!bool x):
            # PyYAML's messages quote the value, and some are not even YAML errors.
            kind = _TAG_KINDS.get(node.tag, "a value of its tag")
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read this value as {kind}; put it in quotes if it is meant as text",
                node.start_mark,
            ) from None


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_yaml_map)

# A Python repr of a string, as PyYAML's messages quote aliases, tags and characters.
_QUOTED_RE = re.compile(r"'(?:[^'\\]|\\.)*'" r'|"(?:[^"\\]|\\.)*"')
_TOKEN_NAME_RE = re.compile(r"'<[a-z ]+>'")
_QUOTED_UNIT_RE = re.compile(r"\\.|.", re.DOTALL)


def _without_quotes(problem: str) -> str:
    """``problem`` with every text it quotes longer than one character replaced by ``'...'``.

    An alias or tag name is quoted from the text, and it may be the start of a secret; a single
    character and PyYAML's names of tokens ('<block end>') are kept.
    """

    def replace(match: re.Match[str]) -> str:
        quoted = match.group()
        if _TOKEN_NAME_RE.fullmatch(quoted) or len(_QUOTED_UNIT_RE.findall(quoted[1:-1])) <= 1:
            return quoted
        return "'...'"

    return _QUOTED_RE.sub(replace, problem)


def _yaml_problem(exc: yaml.MarkedYAMLError, text: str, index: int | None) -> str:
    """What an error says about a YAML mistake at ``index`` of ``text``, quoting none of it."""
    if index is not None and text[index : index + 1] == "\t":
        line_start = text.rfind("\n", 0, index) + 1
        if text[line_start:index].strip(" \t") == "":
            return "tabs cannot indent YAML; use spaces"
        return "a tab cannot separate YAML values here; use spaces"
    problem = exc.problem or exc.context or "invalid YAML"
    return problem if isinstance(exc, _DuplicateKeyError) else _without_quotes(problem)


def read_yaml(text: str, source: str) -> object:
    """Parse YAML, reporting syntax errors by line and column without quoting the text.

    PyYAML's own message includes the offending line, which may hold a secret; only its
    problem description and position are kept, and what it quotes from the text is cut out.
    Mappings come out as dicts that know the line of each key.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a yaml.SafeLoader: plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = _yaml_problem(exc, text, mark.index if mark else None)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{source}:{line}: invalid YAML: the character #x{exc.character:04x} is not "
            "allowed; write it as an escape (\\u....) in a double-quoted string"
        ) from None
    except (yaml.YAMLError, ValueError, OverflowError):
        raise ConfigError(f"{source}: invalid YAML: a value cannot be read") from None
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
    """Where the text came from, for messages, relative paths and ``${VAR}``; and the warnings.

    ``expanded`` holds, by key path, the text as written of each value that used a variable, so
    that an error names the variable instead of quoting what it held.
    """

    def __init__(self, source: str, env: Mapping[str, str], base_dir: Path | None) -> None:
        self.source = source
        self.env = env
        self.base_dir = base_dir
        self.expanded: dict[str, str] = {}
        self.warnings: list[str] = []

    def _where(self, path: str) -> str:
        prefix = [self.source] if self.source != _UNNAMED_SOURCE else []
        return ": ".join(part for part in [*prefix, path] if part) or "configuration"

    def fail(self, path: str, reason: str) -> NoReturn:
        raise ConfigError(f"{self._where(path)}: {reason}")

    def warn(self, path: str, text: str) -> None:
        self.warnings.append(f"{self._where(path)}: {text}")

    def show(self, path: str, text: str, *, quote: bool = True) -> str:
        """How a message names ``text``, the value at ``path``: quoted (or as is) when written in
        the file, by the variable it came from otherwise."""
        written = self.expanded.get(path)
        if written is None:
            return repr(text) if quote else text
        if _ONE_VAR_RE.fullmatch(written):
            return f"the value of {written}"
        return f"the expansion of {written!r}"

    def show_file(self, path: str, file: Path) -> str:
        """How a message names ``file``, given at ``path``."""
        written = self.expanded.get(path)
        if written is None:
            return str(file)
        return f"the file named by {written if _ONE_VAR_RE.fullmatch(written) else repr(written)}"

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
        if any(match.group(1) for match in _VAR_RE.finditer(value)):
            self.expanded[path] = value
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
    """Check that ``value`` is a mapping whose keys are all among ``allowed``.

    A key is quoted only when it looks like one; any other text (a secret pasted as a key, say)
    is pointed at by its line.
    """
    if not isinstance(value, dict):
        ctx.fail(path, f"expected a mapping, got {type_name(value)}")
    lines: Mapping[Any, int] = value.lines if isinstance(value, _Mapping) else {}
    for key in value:
        at_line = f" at line {lines[key]}" if key in lines else ""
        if not isinstance(key, str):
            shown = f" ({key!r})" if _looks_like_key(key) else at_line
            ctx.fail(path, f"keys must be strings, got {type_name(key)}{shown}")
        if key in allowed:
            continue
        known = f"known keys: {', '.join(allowed)}"
        if not _looks_like_key(key):
            ctx.fail(path, f"an unknown key{at_line}; {known}")
        close = difflib.get_close_matches(key, allowed, n=1)
        ctx.fail(
            _join(path, key),
            f"unknown key; did you mean {close[0]!r}?" if close else f"unknown key; {known}",
        )
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _string(ctx: _Context, path: str, value: object, *, secret: bool = False) -> str:
    """A non-empty string with ``${VAR}`` expanded; other scalars get a hint to quote them.

    In a secret, ``$NAME`` is refused: it is almost surely a variable without its braces, which
    would otherwise be sent to Azure AD as the secret.
    """
    if not isinstance(value, str):
        quote = (
            " (put it in quotes)" if isinstance(value, (bool, int, float, datetime.date)) else ""
        )
        ctx.fail(path, f"expected a string, got {type_name(value)}{quote}")
    if secret and (bare := _BARE_VAR_RE.search(_VAR_RE.sub("", value))):
        # The name is shown only when such a variable exists: then it is a reference, not
        # the start of a secret that happens to begin with $.
        name = bare.group(1)
        example = f"${{{name}}}" if name in ctx.env else "${NAME}"
        ctx.fail(
            path,
            f"a $ followed by a name is not expanded: write {example} for the environment "
            "variable, or $$ for a literal $",
        )
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
    text = ctx.expand(path, value)
    seconds = _seconds(text)
    if seconds is None:
        digits = text.strip()
        if path not in ctx.expanded:
            hint = f" (add a unit, e.g. {digits}s)" if _is_number(digits) else ""
        else:
            hint = " (a number without a unit: add one, such as s)" if _is_number(digits) else ""
        ctx.fail(path, f"{_DURATION_HINT}, got {ctx.show(path, text)}{hint}")
    return seconds


def _https_url(ctx: _Context, path: str, value: object) -> tuple[str, str]:
    """Check an https URL with a host; return (``https://netloc``, path)."""
    text = _string(ctx, path, value)
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
            f"https://media.windows.net/, got {ctx.show(path, origin + url_path)}",
        )
    return f"{origin}{trimmed}/"


def _is_legacy_root(endpoint: str) -> bool:
    """Whether a stored endpoint is a legacy root (no path), which must answer with a 301."""
    return urlsplit(endpoint).path == "/"


def _base_url(ctx: _Context, path: str, value: object) -> str:
    """``authority_host`` / ``resource``: an https URL, stored without a trailing slash."""
    origin, url_path = _https_url(ctx, path, value)
    return f"{origin}{url_path}".rstrip("/")


# ---------------------------------------------------------------------------------------------
# Files


class _TooLargeError(Exception):
    """A file holds more bytes than it may; the message says how many and the limit."""


def _format_size(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.{0 if size % scale == 0 else 1}f} {unit}"
    return f"{size} bytes"


def _read_at_most(file: Path, limit: int) -> bytes:
    """The content of ``file``, or ``_TooLargeError`` when it has more than ``limit`` bytes.

    The size is checked before reading, and at most ``limit + 1`` bytes are read, so a huge file
    (or a pipe that never ends) costs no more than the limit. ``OSError`` passes through.
    """
    size = file.stat().st_size
    if size > limit:
        raise _TooLargeError(
            f"{_format_size(size)} ({size:,} bytes), over the {_format_size(limit)} limit"
        )
    with file.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:  # it grew since, or it is a pipe
        raise _TooLargeError(f"over the {_format_size(limit)} limit")
    return data


def read_file_capped(
    file: Path, what: str, error: type[ConfigError] = ConfigError, limit: int = MAX_CONFIG_SIZE
) -> bytes:
    """The bytes of a configuration file; a file over ``limit`` is an ``error`` naming the file,
    its size and the limit, found before the file is read. ``OSError`` passes through."""
    try:
        return _read_at_most(file, limit)
    except _TooLargeError as exc:
        raise error(f"{file}: the {what} is {exc}") from None


def _read_file(ctx: _Context, path: str, file: Path, limit: int, what: str) -> bytes:
    """Read a small regular file; a FIFO or device (``/dev/stdin``) would block start-up."""
    shown = ctx.show_file(path, file)
    try:
        if file.exists() and not file.is_file():
            ctx.fail(path, f"{shown} is not a regular file")
        data = _read_at_most(file, limit)
    except _TooLargeError as exc:
        ctx.fail(path, f"{shown} is {exc} for {what}")
    except OSError as exc:
        ctx.fail(path, f"cannot read {shown}: {exc.strerror or type(exc).__name__}")
    if not data.strip():
        ctx.fail(path, f"{shown} is empty")
    return data


def _decode(ctx: _Context, path: str, file: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        ctx.fail(path, f"{ctx.show_file(path, file)} is not UTF-8 text")


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
    data = _read_file(ctx, path, file, MAX_SECRET_SIZE, "a secret file")
    text = _decode(ctx, path, file, data).rstrip("\r\n")
    if text == "":
        ctx.fail(path, f"{ctx.show_file(path, file)} is empty")
    return Secret(text)


def _certificate_file(ctx: _Context, path: str, file: Path) -> Secret:
    """A PEM file with an unencrypted private key and the certificate that belongs to it."""
    data = _read_file(ctx, path, file, MAX_PEM_SIZE, "a PEM file")
    text = _decode(ctx, path, file, data)
    shown = ctx.show_file(path, file)
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        ctx.fail(path, f"the private key in {shown} is encrypted; give an unencrypted PEM key")
    except ValueError:
        ctx.fail(path, f"{shown} has no readable PEM private key (expected key and certificate)")
    except UnsupportedAlgorithm:
        ctx.fail(path, f"{shown} has a private key of an unsupported kind")
    certificates = _pem_certificates(data)
    if not certificates:
        ctx.fail(path, f"{shown} has no PEM certificate (expected key and certificate)")
    public = _public_der(key.public_key())
    if not any(_public_der(cert.public_key()) == public for cert in certificates):
        ctx.fail(path, f"the private key in {shown} does not belong to its certificate")
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
    if not _pem_certificates(_read_file(ctx, path, file, MAX_PEM_SIZE, "a PEM file")):
        shown = ctx.show_file(path, file)
        ctx.fail(path, f"{shown} contains no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return file


# ---------------------------------------------------------------------------------------------
# Accounts


def _name(ctx: _Context, path: str, value: object) -> str:
    name = _string(ctx, path, value)
    if not _NAME_RE.fullmatch(name):
        ctx.fail(
            path,
            f"{ctx.show(path, name)} is not a valid name: use 1 to 63 letters, digits, '_', "
            "'.' or '-', starting with a letter or digit",
        )
    return name


def _cloud(ctx: _Context, path: str, value: object) -> str:
    cloud = _string(ctx, path, value)
    if cloud not in CLOUDS:
        close = difflib.get_close_matches(cloud, list(CLOUDS), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        ctx.fail(path, f"expected one of {', '.join(CLOUDS)}, got {ctx.show(path, cloud)}{hint}")
    return cloud


def _tenant(ctx: _Context, path: str, value: object) -> str:
    tenant = _string(ctx, path, value)
    if not _TENANT_RE.fullmatch(tenant):
        ctx.fail(
            path,
            "expected a tenant ID (GUID) or a domain such as contoso.onmicrosoft.com, "
            f"got {ctx.show(path, tenant)}",
        )
    return tenant


def _client_id(ctx: _Context, path: str, value: object) -> str:
    """An application (client) ID: a GUID, in any letter case, kept as written."""
    client_id = _string(ctx, path, value)
    if not _GUID_RE.fullmatch(client_id):
        ctx.fail(
            path,
            f"{ctx.show(path, client_id)} is not a GUID (8-4-4-4-12 hexadecimal digits, such as "
            "11111111-2222-3333-4444-555555555555)",
        )
    return client_id


def _timeout(ctx: _Context, path: str, value: object) -> float:
    seconds = _duration(ctx, path, value)
    if not 0 < seconds <= MAX_TIMEOUT:
        shown = ctx.show(path, format_duration(seconds), quote=False)
        ctx.fail(path, f"must be more than 0s and at most 5m, got {shown}")
    return seconds


def _window(ctx: _Context, path: str, value: object) -> float:
    """``finished_window``: 0 or more; capped so that "now minus the window" stays a real date."""
    seconds = _duration(ctx, path, value)
    if seconds > MAX_WINDOW:
        shown = ctx.show(path, format_duration(seconds), quote=False)
        ctx.fail(path, f"must be at most 10y, got {shown}")
    return seconds


# ---------------------------------------------------------------------------------------------
# Redirect hosts


def _redirect_hosts(ctx: _Context, path: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        ctx.fail(
            path,
            "expected a list of host names or *.<domain> patterns, such as "
            f"[wamsbayclus001rest-hs.cloudapp.net], got {type_name(value)}",
        )
    hosts: list[str] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        host = _redirect_host(ctx, item_path, _string(ctx, item_path, item))
        if host in hosts:
            shown = ctx.show(item_path, host)
            ctx.fail(item_path, f"{shown} is already listed as {path}[{hosts.index(host)}]")
        hosts.append(host)
    return tuple(hosts)


def _redirect_host(ctx: _Context, path: str, text: str) -> str:
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
    if not _HOST_NAME_RE.fullmatch(suffix) or len(suffix) > 253:
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


def _normal_host(host: str) -> str | None:
    """``host`` in lower case, IPv6 addresses without brackets and compressed, a final ``.``
    dropped; ``None`` when it is not a host name or IP address."""
    name = host.lower().removesuffix(".")
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).compressed
    except ValueError:
        pass
    return name if len(name) <= 253 and _HOST_NAME_RE.fullmatch(name) else None


def _host_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` (from :func:`_normal_host`) matches a ``redirect_hosts`` pattern."""
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return name == pattern


def _required(ctx: _Context, path: str, raw: Mapping[str, Any], key: str) -> object:
    if key not in raw:
        ctx.fail(_join(path, key), "required")
    return raw[key]


def _account(ctx: _Context, path: str, value: object) -> AccountConfig:
    raw = _mapping(ctx, path, value, ACCOUNT_KEYS)
    section = _Section(ctx, path, raw)
    name = _name(ctx, _join(path, "name"), _required(ctx, path, raw, "name"))
    endpoint = _endpoint(ctx, _join(path, "endpoint"), _required(ctx, path, raw, "endpoint"))
    no_hosts: tuple[str, ...] = ()
    redirect_hosts = section.get("redirect_hosts", _redirect_hosts, no_hosts)
    cloud_name = section.get("cloud", _cloud, "AzureCloud")
    cloud = CLOUDS[cloud_name]
    if _is_legacy_root(endpoint):
        ctx.warn(
            _join(path, "endpoint"),
            "has no /api/ path, so it is treated as a legacy root that must answer 301 with "
            "the account's endpoint, on its own host, a host of "
            f"{cloud_name} ({', '.join(cloud.redirect_hosts)}) or one in redirect_hosts",
        )
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
        redirect_hosts=redirect_hosts,
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
        shown = ctx.show(item_path, job_id)
        if not _JOB_ID_RE.fullmatch(job_id):
            ctx.fail(item_path, f"expected a job ID such as nb:jid:UUID:<guid>, got {shown}")
        if job_id in ids:
            ctx.fail(item_path, f"{shown} is already listed as {path}[{ids.index(job_id)}]")
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
                shown = ctx.show(f"{path}.name", account.name)
                ctx.fail(f"{path}.name", f"{shown} is already used by accounts[{other}]")
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


def _describe_redirect_hosts(account: AccountConfig) -> list[str]:
    """The key, and for a legacy root what else its 301 may lead to."""
    note = ""
    if _is_legacy_root(account.endpoint):
        cloud = CLOUDS[account.cloud]
        note = f"  # and the endpoint's host, {', '.join(cloud.redirect_hosts)}"
    if not account.redirect_hosts:
        return [f"redirect_hosts: []{note}"]
    return [f"redirect_hosts:{note}", *(f"  - {_scalar(host)}" for host in account.redirect_hosts)]


def _describe_account(account: AccountConfig) -> list[str]:
    jobs = account.jobs
    ca_file = _scalar(account.ca_file) if account.ca_file else "null  # system trust store"
    client_id = _scalar(account.client_id)
    if account.client_id is None and account.credential.kind == "managed_identity":
        client_id += "  # system-assigned identity"
    return [
        f"name: {_scalar(account.name)}",
        f"endpoint: {_scalar(account.endpoint)}",
        *_describe_redirect_hosts(account),
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
