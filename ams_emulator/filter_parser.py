"""OData v3 ``$filter`` expressions: tokenizer, parser and compiler to a Python predicate.

The parser type-checks as it goes (as WCF Data Services did) and compiles each node into a closure
over the entity's attributes, so a filter is parsed once and then evaluated cheaply per entity.
Comparisons follow OData's null semantics: ``null eq null`` is true, and an ordering comparison
with a null operand is false. Errors name the 0-based character position, like the service's.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ams_emulator.entities import EntityType, Kind, canonical_guid


class FilterError(ValueError):
    """A ``$filter`` that cannot be parsed or type-checked; ``str()`` is the message for the client."""


Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]

T_STRING = "Edm.String"
T_INT32 = "Edm.Int32"
T_INT64 = "Edm.Int64"
T_DOUBLE = "Edm.Double"
T_DECIMAL = "Edm.Decimal"
T_DATETIME = "Edm.DateTime"
T_BOOLEAN = "Edm.Boolean"
T_GUID = "Edm.Guid"
T_NULL = "null"
_NUMERIC = frozenset({T_INT32, T_INT64, T_DOUBLE, T_DECIMAL})
_KIND_TYPES = {
    Kind.STRING: T_STRING,
    Kind.INT32: T_INT32,
    Kind.DOUBLE: T_DOUBLE,
    Kind.DATETIME: T_DATETIME,
    Kind.GUID: T_GUID,
}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "ident", "string", "number", "typed", "(", ")", ",", "end"
    text: str
    pos: int
    value: Any = None


_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?([LlDdMmFf])?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,7}))?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?"
)


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """The content of the quoted literal opening at ``start`` (``''`` is a quote) and its end."""
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        if text[i] == "'":
            if text.startswith("''", i):
                chars.append("'")
                i += 2
                continue
            return "".join(chars), i + 1
        chars.append(text[i])
        i += 1
    raise FilterError(f"Unterminated string literal at position {start} in '{text}'.")


def parse_datetime_literal(body: str, pos: int) -> datetime:
    """A ``datetime'...'`` body: with or without seconds, fraction (up to 7 digits) and zone."""
    m = _DATETIME.fullmatch(body)
    if m is None:
        raise FilterError(
            f"Unrecognized 'Edm.DateTime' literal 'datetime'{body}'' at position {pos}."
        )
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m.group(6) or 0)
    fraction = (m.group(7) or "").ljust(6, "0")[:6]
    zone = m.group(8)
    try:
        tz = timezone.utc
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        value = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=tz)
        return value.astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise FilterError(
            f"Unrecognized 'Edm.DateTime' literal 'datetime'{body}'' at position {pos}: {exc}."
        ) from exc


def _number_token(text: str, m: re.Match[str], pos: int) -> Token:
    raw = m.group(0)
    suffix = (m.group(3) or "").upper()
    digits = raw[:-1] if suffix else raw
    if suffix in ("D", "F") or (not suffix and (m.group(1) or m.group(2))):
        return Token("number", raw, pos, (T_DOUBLE, float(digits)))
    if suffix == "M":
        return Token("number", raw, pos, (T_DECIMAL, float(digits)))
    if m.group(1) or m.group(2):
        raise FilterError(f"Invalid integer literal '{raw}' at position {pos} in '{text}'.")
    value = int(digits)
    if suffix == "L" or not -(2**31) <= value < 2**31:
        if not -(2**63) <= value < 2**63:
            raise FilterError(f"Integer literal '{raw}' out of range at position {pos}.")
        return Token("number", raw, pos, (T_INT64, value))
    return Token("number", raw, pos, (T_INT32, value))


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens; the list always ends with an ``end`` token."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        number = _NUMBER.match(text, i) if ch in "-0123456789" else None
        word = _IDENT.match(text, i)
        if ch.isspace():
            i += 1
        elif ch in "(),":
            tokens.append(Token(ch, ch, i))
            i += 1
        elif ch == "'":
            value, end = _read_quoted(text, i)
            tokens.append(Token("string", text[i:end], i, value))
            i = end
        elif number is not None:
            tokens.append(_number_token(text, number, i))
            i = number.end()
        elif word is not None:
            end = word.end()
            if end < len(text) and text[end] == "'":
                body, end = _read_quoted(text, end)
                tokens.append(Token("typed", text[i:end], i, (word.group(0), body)))
            else:
                tokens.append(Token("ident", word.group(0), i))
            i = end
        else:
            raise FilterError(
                f"Syntax error: unexpected character '{ch}' at position {i} in '{text}'."
            )
    tokens.append(Token("end", "", len(text)))
    return tokens


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled sub-expression: its EDM type, an evaluator, and its value if it is a constant.

    ``prop`` names the property when the expression is just a property reference. ``keys``, for a
    boolean expression, is a set of Ids outside which it cannot be true (``Id eq '...'`` and
    their disjunctions), so that a store can look those entities up instead of scanning.
    """

    type: str
    fn: Getter
    is_const: bool = False
    const: Any = None
    prop: str | None = None
    keys: frozenset[str] | None = None
    depth: int = 1  # how deeply the evaluators nest
    junction: str = ""  # "and"/"or" when ``fn`` evaluates ``terms`` with that operator
    terms: tuple[Getter, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledPredicate:
    """A type-checked filter: the predicate and, when the filter pins it, the possible Ids."""

    matches: Predicate
    keys: frozenset[str] | None


def _const(type_: str, value: Any) -> Expr:
    return Expr(type_, lambda _e: value, True, value)


def _compatible(a: str, b: str) -> bool:
    if T_NULL in (a, b):
        return True
    if a in _NUMERIC and b in _NUMERIC:
        return True
    return a == b


def _both(left: Expr, right: Expr) -> frozenset[str] | None:
    """The Ids a conjunction can match: either side's restriction narrows it."""
    if left.keys is None:
        return right.keys
    if right.keys is None:
        return left.keys
    return left.keys & right.keys


def _either(left: Expr, right: Expr) -> frozenset[str] | None:
    """The Ids a disjunction can match: known only if both sides restrict them."""
    if left.keys is None or right.keys is None:
        return None
    return left.keys | right.keys


def _any_of(terms: tuple[Getter, ...]) -> Getter:
    if len(terms) == 2:
        first, second = terms
        return lambda e: first(e) or second(e)

    def any_of(e: Any) -> bool:
        return any(term(e) for term in terms)

    return any_of


def _all_of(terms: tuple[Getter, ...]) -> Getter:
    if len(terms) == 2:
        first, second = terms
        return lambda e: first(e) and second(e)

    def all_of(e: Any) -> bool:
        return all(term(e) for term in terms)

    return all_of


def _junction(op: str, left: Expr, right: Expr) -> Expr:
    """``left and/or right``, with chains of the same operator flattened into one loop so that
    a filter of many ``or`` terms does not nest one evaluator per term."""
    terms: list[Getter] = []
    depth = 0
    for side in (left, right):
        if side.junction == op:
            terms.extend(side.terms)
            depth = max(depth, side.depth - 1)
        else:
            terms.append(side.fn)
            depth = max(depth, side.depth)
    flat = tuple(terms)
    if op == "and":
        fn, keys = _all_of(flat), _both(left, right)
    else:
        fn, keys = _any_of(flat), _either(left, right)
    return Expr(T_BOOLEAN, fn, keys=keys, depth=depth + 1, junction=op, terms=flat)


_ORDERING = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def _equality(op: str, left: Expr, right: Expr) -> Getter:
    lf, rf = left.fn, right.fn
    if right.is_const:
        rv = right.const
        if op == "eq":
            return lambda e: lf(e) == rv
        return lambda e: lf(e) != rv
    if op == "eq":
        return lambda e: lf(e) == rf(e)
    return lambda e: lf(e) != rf(e)


def _ordering(op: str, left: Expr, right: Expr) -> Getter:
    cmp = _ORDERING[op]
    lf, rf = left.fn, right.fn
    if right.is_const:
        rv = right.const
        if rv is None:
            return lambda _e: False

        def against_const(e: Any) -> bool:
            v = lf(e)
            return v is not None and cmp(v, rv)

        return against_const

    def both(e: Any) -> bool:
        a, b = lf(e), rf(e)
        return a is not None and b is not None and cmp(a, b)

    return both


def _str_fn(impl: Callable[[str, str], bool]) -> Callable[[list[Getter]], Getter]:
    """A two-string boolean function that is false when either argument is null."""

    def build(args: list[Getter]) -> Getter:
        af, bf = args

        def call(e: Any) -> bool:
            a, b = af(e), bf(e)
            return a is not None and b is not None and impl(a, b)

        return call

    return build


def _unary_str(impl: Callable[[str], Any]) -> Callable[[list[Getter]], Getter]:
    def build(args: list[Getter]) -> Getter:
        (af,) = args

        def call(e: Any) -> Any:
            a = af(e)
            return None if a is None else impl(a)

        return call

    return build


@dataclass(frozen=True, slots=True)
class _Function:
    params: tuple[str, ...]
    result: str
    build: Callable[[list[Getter]], Getter]


_FUNCTIONS: dict[str, _Function] = {
    "startswith": _Function((T_STRING, T_STRING), T_BOOLEAN, _str_fn(str.startswith)),
    "endswith": _Function((T_STRING, T_STRING), T_BOOLEAN, _str_fn(str.endswith)),
    "substringof": _Function(
        (T_STRING, T_STRING), T_BOOLEAN, _str_fn(lambda needle, hay: needle in hay)
    ),
    "tolower": _Function((T_STRING,), T_STRING, _unary_str(str.lower)),
    "toupper": _Function((T_STRING,), T_STRING, _unary_str(str.upper)),
    "trim": _Function((T_STRING,), T_STRING, _unary_str(str.strip)),
    "length": _Function((T_STRING,), T_INT32, _unary_str(len)),
}

_KEYWORD_LITERALS = {"true": (T_BOOLEAN, True), "false": (T_BOOLEAN, False), "null": (T_NULL, None)}
_BINARY_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"or"}),
    frozenset({"and"}),
    frozenset({"eq", "ne"}),
    frozenset({"gt", "ge", "lt", "le"}),
)
MAX_DEPTH = 64
"""Deepest nesting of parentheses, ``not``, calls and comparisons a filter may have (so that
neither parsing nor evaluation can exhaust the interpreter's stack)."""
_UNSUPPORTED_OPERATORS = frozenset({"add", "sub", "mul", "div", "mod", "has", "isof", "cast"})


class _Parser:
    """Recursive descent over the token list, compiling while it parses."""

    def __init__(self, text: str, entity: EntityType) -> None:
        self.text = text
        self.entity = entity
        self.tokens = tokenize(text)
        self.i = 0
        self.nesting = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            raise FilterError(f"'{kind}' expected at position {self.tok.pos} in '{self.text}'.")
        return self.take()

    def parse(self) -> CompiledPredicate:
        if self.tok.kind == "end":
            raise FilterError(f"Expression expected at position 0 in '{self.text}'.")
        expr = self.binary(0)
        if self.tok.kind != "end":
            self.fail_operator_expected()
        if expr.type != T_BOOLEAN:
            raise FilterError(
                f"Expression of type '{expr.type}' cannot be used as a filter; "
                f"expected 'Edm.Boolean' in '{self.text}'."
            )
        fn = expr.fn
        return CompiledPredicate(lambda e: bool(fn(e)), expr.keys)

    def fail_operator_expected(self) -> None:
        tok = self.tok
        if tok.kind == "ident" and tok.text in _UNSUPPORTED_OPERATORS:
            raise FilterError(
                f"Operator '{tok.text}' at position {tok.pos} is not supported by this service."
            )
        raise FilterError(f"Syntax error at position {tok.pos} in '{self.text}'.")

    def binary(self, level: int) -> Expr:
        if level == len(_BINARY_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.tok.kind == "ident" and self.tok.text in _BINARY_LEVELS[level]:
            op_tok = self.take()
            right = self.binary(level + 1)
            left = self.combine(op_tok, left, right)
        return left

    def combine(self, op_tok: Token, left: Expr, right: Expr) -> Expr:
        op = op_tok.text
        if op in ("and", "or"):
            if left.type != T_BOOLEAN or right.type != T_BOOLEAN:
                self.incompatible(op_tok, left, right)
            return self.checked(_junction(op, left, right), op_tok)
        if not _compatible(left.type, right.type):
            self.incompatible(op_tok, left, right)
        if left.is_const and not right.is_const:
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        depth = max(left.depth, right.depth) + 1
        if op in ("eq", "ne"):
            keys = None
            if op == "eq" and left.prop == "Id" and isinstance(right.const, str):
                keys = frozenset({right.const})
            expr = Expr(T_BOOLEAN, _equality(op, left, right), keys=keys, depth=depth)
        else:
            expr = Expr(T_BOOLEAN, _ordering(op, left, right), depth=depth)
        return self.checked(expr, op_tok)

    def checked(self, expr: Expr, tok: Token) -> Expr:
        """Refuse expressions whose evaluation would nest deeper than ``MAX_DEPTH``."""
        if expr.depth > MAX_DEPTH:
            raise FilterError(
                f"The expression is nested too deeply (more than {MAX_DEPTH} levels) "
                f"at position {tok.pos}."
            )
        return expr

    def enter(self, tok: Token) -> None:
        """Count one level of parentheses, ``not`` or function call being parsed."""
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise FilterError(
                f"The expression is nested too deeply (more than {MAX_DEPTH} levels) "
                f"at position {tok.pos}."
            )

    def incompatible(self, op_tok: Token, left: Expr, right: Expr) -> None:
        raise FilterError(
            f"Operator '{op_tok.text}' incompatible with operand types '{left.type}' and "
            f"'{right.type}' at position {op_tok.pos}."
        )

    def unary(self) -> Expr:
        if self.tok.kind == "ident" and self.tok.text == "not":
            op_tok = self.take()
            self.enter(op_tok)
            inner = self.unary()
            self.nesting -= 1
            if inner.type != T_BOOLEAN:
                raise FilterError(
                    f"Operator 'not' incompatible with operand type '{inner.type}' "
                    f"at position {op_tok.pos}."
                )
            fn = inner.fn
            return self.checked(Expr(T_BOOLEAN, lambda e: not fn(e), depth=inner.depth + 1), op_tok)
        return self.primary()

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind == "(":
            self.take()
            self.enter(tok)
            inner = self.binary(0)
            self.nesting -= 1
            if self.tok.kind != ")":
                raise FilterError(
                    f"')' or operator expected at position {self.tok.pos} in '{self.text}'."
                )
            self.take()
            return inner
        if tok.kind == "string":
            self.take()
            return _const(T_STRING, tok.value)
        if tok.kind == "number":
            self.take()
            type_, value = tok.value
            return _const(type_, value)
        if tok.kind == "typed":
            self.take()
            return self.typed_literal(tok)
        if tok.kind == "ident":
            return self.identifier()
        raise FilterError(f"Expression expected at position {tok.pos} in '{self.text}'.")

    def typed_literal(self, tok: Token) -> Expr:
        prefix, body = tok.value
        if prefix in ("datetime", "datetimeoffset"):
            return _const(T_DATETIME, parse_datetime_literal(body, tok.pos))
        if prefix == "guid":
            guid = canonical_guid(body)
            if guid is None:
                raise FilterError(
                    f"Unrecognized 'Edm.Guid' literal '{tok.text}' at position {tok.pos}."
                )
            return _const(T_GUID, guid)
        raise FilterError(f"Unrecognized literal '{tok.text}' at position {tok.pos}.")

    def identifier(self) -> Expr:
        tok = self.take()
        if tok.text in _KEYWORD_LITERALS:
            type_, value = _KEYWORD_LITERALS[tok.text]
            return _const(type_, value)
        if self.tok.kind == "(":
            return self.call(tok)
        prop = self.entity.prop(tok.text)
        if prop is None:
            raise FilterError(
                f"No property '{tok.text}' exists in type '{self.entity.full_name}' "
                f"at position {tok.pos}."
            )
        if not prop.kind.is_scalar:
            raise FilterError(
                f"Property '{tok.text}' at position {tok.pos} is not a primitive property and "
                "cannot be used in $filter."
            )
        return Expr(_KIND_TYPES[prop.kind], operator.attrgetter(prop.attr), prop=prop.name)

    def call(self, name_tok: Token) -> Expr:
        func = _FUNCTIONS.get(name_tok.text)
        if func is None:
            raise FilterError(f"Unknown function '{name_tok.text}' at position {name_tok.pos}.")
        self.enter(self.expect("("))
        args: list[Expr] = []
        while True:
            args.append(self.binary(0))
            if self.tok.kind != ",":
                break
            self.take()
        self.nesting -= 1
        if self.tok.kind != ")":
            raise FilterError(f"')' or ',' expected at position {self.tok.pos} in '{self.text}'.")
        self.take()
        self.check_args(name_tok, func, args)
        depth = max(a.depth for a in args) + 1
        return self.checked(
            Expr(func.result, func.build([a.fn for a in args]), depth=depth), name_tok
        )

    def check_args(self, name_tok: Token, func: _Function, args: list[Expr]) -> None:
        if len(args) != len(func.params):
            raise FilterError(
                f"Function '{name_tok.text}' at position {name_tok.pos} takes "
                f"{len(func.params)} argument(s), not {len(args)}."
            )
        for arg, want in zip(args, func.params, strict=True):
            if arg.type not in (want, T_NULL):
                raise FilterError(
                    f"No applicable function found for '{name_tok.text}' at position "
                    f"{name_tok.pos} with the argument types '{arg.type}'; expected '{want}'."
                )


def compile_filter(text: str, entity: EntityType) -> CompiledPredicate:
    """Parse and type-check ``text`` against ``entity``; the predicate takes its objects."""
    return _Parser(text, entity).parse()
