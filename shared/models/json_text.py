"""JSON as delivered: parsed strictly, with what a lenient parser hides kept visible.

Python's ``json`` (and Json.NET, which the Functions host uses) keep the last value of a key
that appears twice in one object; another parser may keep the first, so an event whose keys
repeat with different values means different things to different readers. Where the raw text
is available (the local webhook), :func:`loads` parses it into plain values, except that an
object whose keys repeat with different values becomes a :class:`DuplicateKeys`: a ``dict``
holding the last values (as the host would) that also names the repeated keys, so the intake
can reject the event with a reason. In Azure the host has parsed the body before prepost's code
runs, and repeated keys are already gone (docs/events.md, "What Azure lets through").

:func:`loads` also refuses what is not JSON by RFC 8259 but Python accepts (``NaN``,
``Infinity``, numbers beyond a double) and bodies nested deeper than :data:`MAX_DEPTH`, checked
before parsing: Python's parser recurses, and a deep enough body raises ``RecursionError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from shared.errors import MalformedPayload

MAX_DEPTH = 32
"""Arrays and objects nested in one body. A maintenance event nests three levels."""


class DuplicateKeys(dict):
    """A JSON object in whose text some keys appeared more than once, with different values.

    Holds the last value of each key, as the Functions host would; :attr:`duplicates` names
    the repeated keys in the order they were found.
    """

    def __init__(self, pairs: Mapping[str, Any], duplicates: tuple[str, ...]):
        super().__init__(pairs)
        self.duplicates = duplicates


def loads(text: str | bytes) -> Any:
    """Parse one JSON text strictly (see the module docstring).

    Raises:
        MalformedPayload: not UTF-8, not JSON, nested deeper than :data:`MAX_DEPTH`, or
            holding a number JSON cannot represent; the message says which.
    """
    if isinstance(text, bytes):
        try:
            # Event Grid sends UTF-8; a byte order mark is tolerated, other encodings are not.
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise MalformedPayload(f"body is not UTF-8: {error}") from error
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise MalformedPayload(f"body nests {depth} levels deep; at most {MAX_DEPTH} are accepted")
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=_not_a_number, parse_float=_finite_float)
    except MalformedPayload:
        raise
    except ValueError as error:  # JSONDecodeError, and int() refusing more than 4,300 digits
        raise MalformedPayload(f"body is not JSON: {error}") from error


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text``, counted without parsing (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def value_depth(value: Any) -> int:
    """How deeply lists and mappings nest in an already parsed value (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:  # deeper than that is reported as such; no need to walk on
            stack.extend((child, depth + 1) for child in children)
    return deepest


def repeated_keys(value: Any, path: str = "") -> Iterator[str]:
    """The path of every key of ``value`` that appeared twice with different values (``data.status``)."""
    stack: list[tuple[Any, str, int]] = [(value, path, 1)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            continue
        if isinstance(item, Mapping):
            if isinstance(item, DuplicateKeys):
                yield from (_join(where, key) for key in item.duplicates)
            stack.extend((child, _join(where, str(key)), depth + 1) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]", depth + 1) for index, child in enumerate(item))


def same_json(left: Any, right: Any) -> bool:
    """True when two parsed JSON values are the same JSON (``1``, ``1.0`` and ``true`` are not).

    Compared without recursion: values from the Functions worker are not depth-checked yet.
    """
    stack: list[tuple[Any, Any]] = [(left, right)]
    while stack:
        a, b = stack.pop()
        if type(a) is not type(b):
            return False
        if isinstance(a, dict):
            if a.keys() != b.keys():
                return False
            stack.extend((a[key], b[key]) for key in a)
        elif isinstance(a, list):
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b, strict=True))
        elif a != b:
            return False
    return True


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    duplicates: list[str] = []
    for key, value in pairs:
        if key in values and not same_json(values[key], value) and key not in duplicates:
            duplicates.append(key)
        values[key] = value
    return DuplicateKeys(values, tuple(duplicates)) if duplicates else values


def _not_a_number(name: str) -> Any:
    raise MalformedPayload(f"body is not JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedPayload(f"body is not JSON: the number {text[:40]} is beyond what JSON can carry")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
