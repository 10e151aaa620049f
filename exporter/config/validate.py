"""The validation vocabulary of the configuration files: values read from YAML by key path.

Both files use it, the account configuration and the web configuration. Each reader takes a
:class:`Context`, the key path of the value (``accounts[1].jobs.max_jobs``,
``tls_server_config.min_version``) and the value as YAML gave it, and returns it checked or fails
with the context's error, which names the file and the path: ``accounts[1].jobs.finished_window:
expected a duration such as 30s, 5m or 24h, got '24 hours'``. An unknown key, or a value that is
not one of a closed set, gets "did you mean" when one is close. A message names types as
:func:`type_name` does, and quotes a value only when it was written in the file, never one that
came from an environment variable.
"""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from exporter.config.durations import DURATION_HINT, duration_seconds, is_whole_number
from exporter.config.yamlio import YamlMapping, looks_like_key
from exporter.errors import ConfigError

__all__ = [
    "Context",
    "Section",
    "boolean",
    "choice",
    "duration",
    "join",
    "key_line",
    "list_of",
    "mapping",
    "optional_string",
    "required",
    "string",
    "type_name",
]

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_VAR_RE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\})")
# A "$NAME" left after the ${NAME} and $$ are taken out: a variable written without braces.
_BARE_VAR_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_ONE_VAR_RE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")

T = TypeVar("T")

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


class Context:
    """Where the text came from, for messages, relative paths and ``${VAR}``; and the warnings.

    ``source`` is the file named in front of every message (``None`` for text from elsewhere);
    ``document`` names the whole text in a message about it as a whole. Without ``env`` the file
    has no variables and ``$`` is an ordinary character. Errors are raised as ``error``.

    ``expanded`` holds, by key path, the text as written of each value that used a variable, so
    that an error names the variable instead of quoting what it held.
    """

    def __init__(
        self,
        source: str | None,
        env: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
        *,
        error: type[ConfigError] = ConfigError,
        document: str = "configuration",
    ) -> None:
        self.source = source
        self.env = env
        self.base_dir = base_dir
        self.error = error
        self.document = document
        self.expanded: dict[str, str] = {}
        self.warnings: list[str] = []

    def _where(self, path: str) -> str:
        return ": ".join(part for part in (self.source, path) if part) or self.document

    def fail(self, path: str, reason: str) -> NoReturn:
        raise self.error(f"{self._where(path)}: {reason}")

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
        """Replace ``${VAR}`` by the variable and ``$$`` by ``$``; a ``$`` otherwise stays as is.
        Without ``env``, ``value`` as it is."""
        env = self.env
        if env is None:
            return value

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "$"
            if name not in env:
                self.fail(path, f"environment variable {name} is not set")
            return env[name]

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


def mapping(
    ctx: Context,
    path: str,
    value: object,
    allowed: Sequence[str] | None,
    *,
    unknown: str = "unknown key",
) -> dict[str, Any]:
    """Check that ``value`` is a mapping whose keys are strings, all among ``allowed`` unless
    that is ``None``; ``unknown`` says what a key that is not allowed is.

    A key is quoted only when it looks like one; any other text (a secret pasted as a key, say)
    is pointed at by its line.
    """
    if not isinstance(value, dict):
        ctx.fail(path, f"expected a mapping, got {type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            shown = f" ({key!r})" if looks_like_key(key) else key_line(value, key)
            ctx.fail(path, f"keys must be strings, got {type_name(key)}{shown}")
        if allowed is None or key in allowed:
            continue
        known = f"known keys: {', '.join(allowed)}"
        if not looks_like_key(key):
            ctx.fail(path, f"an unknown key{key_line(value, key)}; {known}")
        close = difflib.get_close_matches(key, allowed, n=1)
        ctx.fail(
            join(path, key),
            f"{unknown}; did you mean {close[0]!r}?" if close else f"{unknown}; {known}",
        )
    return value


def key_line(value: Mapping[Any, Any], key: object) -> str:
    """`` at line N`` for a key of a mapping read from YAML, to point at a key that must not be
    quoted; empty when the line is not known."""
    lines: Mapping[Any, int] = value.lines if isinstance(value, YamlMapping) else {}
    return f" at line {lines[key]}" if key in lines else ""


def join(path: str, key: str) -> str:
    """The key path of ``key`` in the mapping at ``path``."""
    return f"{path}.{key}" if path else key


def string(ctx: Context, path: str, value: object, *, secret: bool = False) -> str:
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
        example = f"${{{name}}}" if ctx.env is not None and name in ctx.env else "${NAME}"
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


def optional_string(ctx: Context, path: str, value: object) -> str:
    """A string that may be empty (``name_prefix``, ``filter``); no control characters."""
    if value == "":
        return ""
    if not isinstance(value, str):
        ctx.fail(path, f"expected a string, got {type_name(value)}")
    text = ctx.expand(path, value)
    if _CONTROL_RE.search(text):
        ctx.fail(path, "must not contain control characters (newline, tab, ...)")
    return text


def list_of(
    ctx: Context, path: str, value: object, read: Callable[[Context, str, object], T]
) -> tuple[T, ...]:
    """A list whose items are each read by ``read``, at ``path[0]``, ``path[1]`` ..."""
    if not isinstance(value, list):
        ctx.fail(path, f"expected a list, got {type_name(value)}")
    return tuple(read(ctx, f"{path}[{index}]", item) for index, item in enumerate(value))


def choice(
    ctx: Context,
    path: str,
    value: object,
    choices: Sequence[str],
    *,
    kind: str = "",
    cutoff: float = 0.6,
) -> str:
    """One of ``choices``, exactly as written; ``kind`` (``"a supported cipher suite"``) leads
    the list in a message. A near miss (by ``difflib``'s ratio, at least ``cutoff``) is named in
    a "did you mean"."""
    expected = f"expected {kind}, one of" if kind else "expected one of"
    listed = ", ".join(choices)
    if not isinstance(value, str):
        ctx.fail(path, f"{expected} {listed}, got {type_name(value)}")
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1, cutoff=cutoff)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        ctx.fail(path, f"{expected} {listed}, got {ctx.show(path, value)}{hint}")
    return value


def boolean(ctx: Context, path: str, value: object) -> bool:
    """``true`` or ``false``, nothing that YAML 1.1 or a human might take for one."""
    if not isinstance(value, bool):
        ctx.fail(path, f"expected true or false, got {type_name(value)}")
    return value


def duration(ctx: Context, path: str, value: object) -> float:
    """A Prometheus duration in seconds; a bare number is refused with a hint to add a unit."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        ctx.fail(path, f"{DURATION_HINT}, got the number {value} (add a unit, e.g. {value}s)")
    if not isinstance(value, str):
        ctx.fail(path, f"{DURATION_HINT}, got {type_name(value)}")
    text = ctx.expand(path, value)
    seconds = duration_seconds(text)
    if seconds is None:
        digits = text.strip()
        if path not in ctx.expanded:
            hint = f" (add a unit, e.g. {digits}s)" if is_whole_number(digits) else ""
        else:
            hint = (
                " (a number without a unit: add one, such as s)" if is_whole_number(digits) else ""
            )
        ctx.fail(path, f"{DURATION_HINT}, got {ctx.show(path, text)}{hint}")
    return seconds


@dataclass(frozen=True)
class Section:
    """A validated mapping (an account or its ``jobs``) and its key path."""

    ctx: Context
    path: str
    raw: Mapping[str, Any]

    def get(self, key: str, read: Callable[[Context, str, object], T], default: T) -> T:
        """Read an optional key with ``read``, or return ``default`` when the key is absent."""
        if key not in self.raw:
            return default
        return read(self.ctx, join(self.path, key), self.raw[key])


def required(ctx: Context, path: str, raw: Mapping[str, Any], key: str) -> object:
    """The value of ``key`` in the mapping at ``path``; its absence is an error."""
    if key not in raw:
        ctx.fail(join(path, key), "required")
    return raw[key]
