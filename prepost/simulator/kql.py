"""A small subset of the Kusto Query Language, enough for Resource Graph queries over one table.

Supported: ``<table> | where ... | extend ... | project ... | order by ... | distinct ... |
limit N`` with predicates ``==  =~  !=  !~  contains  !contains  startswith  in  in~  !in``
joined by ``and``; expressions are column paths (``properties.resourceId``,
``properties['resourceId']``), string or number literals, and ``tostring``/``tolower``/
``toupper`` calls. Column names and property names are case-sensitive, as in Kusto; ``=~``
compares case-insensitively. Anything else raises :class:`QueryError`, which the Resource Graph
handler answers with 400, as Resource Graph answers a query it cannot parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<op>!contains|!in~|!in|=~|==|!=|!~|in~|\||\(|\)|,|\.|\[|\]|=)
      | (?P<word>[A-Za-z_][A-Za-z0-9_\-]*)
    )""",
    re.VERBOSE,
)
_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "tostring": lambda value: "" if value is None else (value if isinstance(value, str) else str(value)),
    "tolower": lambda value: None if value is None else str(value).lower(),
    "toupper": lambda value: None if value is None else str(value).upper(),
}
_OPERATORS = {"==", "=~", "!=", "!~", "contains", "!contains", "startswith", "in", "in~", "!in", "!in~"}


class QueryError(ValueError):
    """The query uses something this subset does not understand."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise QueryError(f"unexpected character at position {position}: {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        tokens.append(Token(kind, value))
        position = match.end()
    return tokens


# --------------------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Expr:
    """A column path, a literal, or a function call."""

    kind: str  # "path", "literal", "call"
    path: tuple[str, ...] = ()
    value: Any = None
    function: str = ""
    argument: Expr | None = None

    def evaluate(self, row: Mapping[str, Any]) -> Any:
        if self.kind == "literal":
            return self.value
        if self.kind == "call":
            assert self.argument is not None
            return _FUNCTIONS[self.function](self.argument.evaluate(row))
        column, *rest = self.path
        if column not in row:
            raise QueryError(f"Failed to resolve column or scalar expression named '{column}'")
        value: Any = row[column]
        for part in rest:
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    def default_name(self) -> str:
        if self.kind == "path":
            return "_".join(self.path)
        if self.kind == "call" and self.argument is not None:
            return self.argument.default_name()
        raise QueryError("a literal needs a column name: use name = value")


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise QueryError("unexpected end of query")
        self.at += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text.lower() != text:
            raise QueryError(f"expected {text!r}, found {token.text!r}")

    def done(self) -> bool:
        return self.at >= len(self.tokens)

    def word_is(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.lower() in words

    def expression(self) -> Expr:
        token = self.take()
        if token.kind == "string":
            return Expr("literal", value=_unquote(token.text))
        if token.kind == "number":
            return Expr("literal", value=float(token.text) if "." in token.text else int(token.text))
        if token.kind != "word":
            raise QueryError(f"expected an expression, found {token.text!r}")
        following = self.peek()
        if following is not None and following.text == "(":
            if token.text not in _FUNCTIONS:
                raise QueryError(f"unsupported function {token.text!r}")
            self.take()
            argument = self.expression()
            self.expect(")")
            return Expr("call", function=token.text, argument=argument)
        path = [token.text]
        while True:
            following = self.peek()
            if following is not None and following.text == ".":
                self.take()
                part = self.take()
                if part.kind != "word":
                    raise QueryError(f"expected a property name after '.', found {part.text!r}")
                path.append(part.text)
            elif following is not None and following.text == "[":
                self.take()
                part = self.take()
                if part.kind != "string":
                    raise QueryError("expected a quoted property name inside [...]")
                path.append(_unquote(part.text))
                self.expect("]")
            else:
                return Expr("path", path=tuple(path))

    def named_expressions(self) -> list[tuple[str, Expr]]:
        items: list[tuple[str, Expr]] = []
        while True:
            first, second = self.peek(), self.peek(1)
            if first is not None and first.kind == "word" and second is not None and second.text == "=":
                self.take()
                self.take()
                items.append((first.text, self.expression()))
            else:
                expr = self.expression()
                items.append((expr.default_name(), expr))
            if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.take()
                continue
            return items

    def predicate(self) -> Callable[[Mapping[str, Any]], bool]:
        left = self.expression()
        op_token = self.take()
        operator = op_token.text.lower()
        if operator not in _OPERATORS:
            raise QueryError(f"unsupported operator {op_token.text!r}")
        if operator in ("in", "in~", "!in", "!in~"):
            self.expect("(")
            values = [self._literal()]
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.take()
                values.append(self._literal())
            self.expect(")")
            return _membership(left, operator, values)
        right = self._literal()
        return _comparison(left, operator, right)

    def _literal(self) -> Any:
        expr = self.expression()
        if expr.kind != "literal":
            raise QueryError("comparisons need a literal on the right")
        return expr.value


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _comparison(left: Expr, operator: str, right: Any) -> Callable[[Mapping[str, Any]], bool]:
    tests: dict[str, Callable[[str, str], bool]] = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "=~": lambda a, b: a.lower() == b.lower(),
        "!~": lambda a, b: a.lower() != b.lower(),
        "contains": lambda a, b: b.lower() in a.lower(),
        "!contains": lambda a, b: b.lower() not in a.lower(),
        "startswith": lambda a, b: a.lower().startswith(b.lower()),
    }
    test = tests[operator]
    return lambda row: test(_text(left.evaluate(row)), _text(right))


def _membership(left: Expr, operator: str, values: list[Any]) -> Callable[[Mapping[str, Any]], bool]:
    insensitive = operator.endswith("~")
    wanted = {_text(v).lower() if insensitive else _text(v) for v in values}
    negate = operator.startswith("!")

    def test(row: Mapping[str, Any]) -> bool:
        value = _text(left.evaluate(row))
        found = (value.lower() if insensitive else value) in wanted
        return found != negate

    return test


# --------------------------------------------------------------------------- queries
Stage = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Query:
    """A parsed query: the table it reads and its stages, plus an explicit row limit if any."""

    table: str
    stages: tuple[Stage, ...]
    limit: int | None

    def run(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        result = [dict(row) for row in rows]
        for stage in self.stages:
            result = stage(result)
        return result


def parse(text: str) -> Query:
    """Parse a query; :class:`QueryError` when it is outside the subset."""
    tokens = tokenize(text)
    pipelines: list[list[Token]] = [[]]
    for token in tokens:
        if token.text == "|":
            pipelines.append([])
        else:
            pipelines[-1].append(token)
    head, *rest = pipelines
    if len(head) != 1 or head[0].kind != "word":
        raise QueryError("a query starts with a table name")
    stages: list[Stage] = []
    limit: int | None = None
    for stage_tokens in rest:
        parser = _Parser(stage_tokens)
        if parser.done():
            raise QueryError("empty pipeline stage")
        keyword = parser.take().text.lower()
        if keyword in ("where", "filter"):
            stages.append(_where(parser))
        elif keyword in ("project", "extend"):
            stages.append(_project(parser.named_expressions(), extend=keyword == "extend"))
        elif keyword in ("order", "sort"):
            parser.expect("by")
            stages.append(_order(parser))
        elif keyword == "distinct":
            names = [name for name, _ in parser.named_expressions()]
            stages.append(_distinct(names))
        elif keyword in ("limit", "take"):
            token = parser.take()
            if token.kind != "number":
                raise QueryError("limit needs a number")
            limit = int(token.text) if limit is None else min(limit, int(token.text))
            count = int(token.text)
            stages.append(lambda rows, count=count: rows[:count])
        else:
            raise QueryError(f"unsupported operator '{keyword}'")
        if not parser.done():
            raise QueryError(f"unexpected {parser.peek().text!r} in '{keyword}'")  # type: ignore[union-attr]
    return Query(table=head[0].text, stages=tuple(stages), limit=limit)


def _where(parser: _Parser) -> Stage:
    predicates = [parser.predicate()]
    while parser.word_is("and"):
        parser.take()
        predicates.append(parser.predicate())
    if parser.word_is("or"):
        raise QueryError("'or' is not supported by the simulator")
    return lambda rows: [row for row in rows if all(predicate(row) for predicate in predicates)]


def _project(items: list[tuple[str, Expr]], *, extend: bool) -> Stage:
    def stage(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result = []
        for row in rows:
            values = {name: expr.evaluate(row) for name, expr in items}
            result.append({**row, **values} if extend else values)
        return result

    return stage


def _order(parser: _Parser) -> Stage:
    keys: list[tuple[Expr, bool]] = []
    while True:
        expr = parser.expression()
        descending = True  # Kusto sorts descending unless told otherwise
        if parser.word_is("asc", "desc"):
            descending = parser.take().text.lower() == "desc"
        keys.append((expr, descending))
        if parser.peek() is not None and parser.peek().text == ",":  # type: ignore[union-attr]
            parser.take()
            continue
        break

    def stage(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ordered = list(rows)
        for expr, descending in reversed(keys):
            ordered.sort(key=lambda row, expr=expr: _text(expr.evaluate(row)), reverse=descending)
        return ordered

    return stage


def _distinct(names: list[str]) -> Stage:
    def stage(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[tuple[str, ...]] = set()
        result = []
        for row in rows:
            for name in names:
                if name not in row:
                    raise QueryError(f"Failed to resolve column or scalar expression named '{name}'")
            values = {name: row[name] for name in names}
            marker = tuple(repr(values[name]) for name in names)
            if marker not in seen:
                seen.add(marker)
                result.append(values)
        return result

    return stage
