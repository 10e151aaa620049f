"""Reading configuration files: capped in size, and YAML that is strict and quotes nothing.

Both files the exporter reads (the account configuration and the web configuration) may hold a
secret, so nothing here puts text of the file into a message: a YAML mistake is told by its line,
column and PyYAML's description of the problem, with what that quotes cut out.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import yaml

from exporter.errors import ConfigError

__all__ = [
    "MAX_CONFIG_SIZE",
    "FileTooLargeError",
    "YamlMapping",
    "looks_like_key",
    "read_at_most",
    "read_file_capped",
    "read_yaml",
]

# Reading stops at this size: a configuration is a few KiB.
MAX_CONFIG_SIZE = 2**20
# What an error may quote as a key; anything else (a pasted secret, a line of text) is only
# located by its line.
_KEY_LIKE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# ---------------------------------------------------------------------------------------------
# YAML


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping; the message is ours, shown as it is."""


class YamlMapping(dict[Any, Any]):
    """A YAML mapping that knows the line of each of its keys, for an error that must point at
    a key without quoting it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, int] = {}


def looks_like_key(key: object) -> bool:
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
    Mappings come out as :class:`YamlMapping`, which remembers the line of each key.
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
                name = f"key {key!r}" if looks_like_key(key) else "a key"
                raise _DuplicateKeyError(
                    None,
                    None,
                    f"{name} appears twice (first on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node

    def construct_yaml_map(self, node: yaml.MappingNode) -> Generator[dict[Any, Any], None, None]:
        data = YamlMapping()
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


def read_yaml(text: str, source: str, error: type[ConfigError] = ConfigError) -> object:
    """Parse YAML, reporting syntax errors by line and column without quoting the text.

    PyYAML's own message includes the offending line, which may hold a secret; only its
    problem description and position are kept, and what it quotes from the text is cut out.
    Mappings come out as dicts that know the line of each key. Errors are raised as ``error``.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a yaml.SafeLoader: plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = _yaml_problem(exc, text, mark.index if mark else None)
        raise error(f"{where}: invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise error(
            f"{source}:{line}: invalid YAML: the character #x{exc.character:04x} is not "
            "allowed; write it as an escape (\\u....) in a double-quoted string"
        ) from None
    except (yaml.YAMLError, ValueError, OverflowError):
        raise error(f"{source}: invalid YAML: a value cannot be read") from None
    except RecursionError:
        raise error(f"{source}: invalid YAML: nested too deeply") from None


# ---------------------------------------------------------------------------------------------
# Files


class FileTooLargeError(Exception):
    """A file holds more bytes than it may; the message says how many and the limit."""


def _format_size(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.{0 if size % scale == 0 else 1}f} {unit}"
    return f"{size} bytes"


def read_at_most(file: Path, limit: int) -> bytes:
    """The content of ``file``, or ``FileTooLargeError`` when it has more than ``limit`` bytes.

    The size is checked before reading, and at most ``limit + 1`` bytes are read, so a huge file
    (or a pipe that never ends) costs no more than the limit. ``OSError`` passes through.
    """
    size = file.stat().st_size
    if size > limit:
        raise FileTooLargeError(
            f"{_format_size(size)} ({size:,} bytes), over the {_format_size(limit)} limit"
        )
    with file.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:  # it grew since, or it is a pipe
        raise FileTooLargeError(f"over the {_format_size(limit)} limit")
    return data


def read_file_capped(
    file: Path, what: str, error: type[ConfigError] = ConfigError, limit: int = MAX_CONFIG_SIZE
) -> bytes:
    """The bytes of a configuration file; a file over ``limit`` is an ``error`` naming the file,
    its size and the limit, found before the file is read. ``OSError`` passes through."""
    try:
        return read_at_most(file, limit)
    except FileTooLargeError as exc:
        raise error(f"{file}: the {what} is {exc}") from None
