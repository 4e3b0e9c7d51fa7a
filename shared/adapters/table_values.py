"""Values as Azure Table storage stores them: UTC datetimes, keys it accepts, strings that fit.

Shared by the table adapters (:mod:`shared.adapters.table_codecs`,
:mod:`shared.adapters.table_idempotency`) so that every table reads and writes datetimes the
same way and no property exceeds what the service (and Azurite) accepts: 64 KiB per string
property, counted as 32,768 UTF-16 code units.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, overload

from shared.errors import PermanentError

__all__ = [
    "MAX_PROPERTY_UNITS",
    "check_key",
    "fit_json_list",
    "fit_text",
    "from_table_datetime",
    "json_property",
    "required_datetime",
    "to_utc",
    "without_none",
]

MAX_PROPERTY_UNITS = 32 * 1024
"""64 KiB per string property, counted in UTF-16 code units (2 bytes each)."""

# Characters Azure Tables forbid in PartitionKey and RowKey.
_FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_MAX_KEY_LENGTH = 512  # 1 KiB in UTF-16


@overload
def to_utc(value: datetime) -> datetime: ...
@overload
def to_utc(value: None) -> None: ...
def to_utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; a naive datetime is taken to be UTC already.

    (The SDK would take a naive datetime as local time, which differs between a developer's
    machine and Azure.)
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def from_table_datetime(value: Any) -> datetime | None:
    """A plain, timezone-aware UTC ``datetime`` from what the SDK returns for ``Edm.DateTime``.

    The SDK returns a ``datetime`` subclass that remembers the service's string and writes
    that string back instead of the value; a plain datetime keeps records comparable and
    copyable like any other.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    value = to_utc(value)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        timezone.utc,
    )


def required_datetime(entity: Mapping[str, Any], name: str) -> datetime:
    value = from_table_datetime(entity.get(name))
    if value is None:
        raise PermanentError(f"stored entity {entity.get('PartitionKey')}/{entity.get('RowKey')} has no {name}")
    return value


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@overload
def fit_text(value: str, *, what: str, limit: int = ...) -> str: ...
@overload
def fit_text(value: None, *, what: str, limit: int = ...) -> None: ...
def fit_text(value: str | None, *, what: str, limit: int = MAX_PROPERTY_UNITS) -> str | None:
    """``value`` cut to fit one Table string property, ending with a note saying so.

    The note says how much was kept, so nobody mistakes a cut payload for the whole event.
    """
    if value is None:
        return None
    if len(value) * 2 <= limit or _utf16_units(value) <= limit:
        return value
    total = len(value)
    note = f"\n[{what} truncated by prepost: first {{kept}} of {total} characters kept; a table property holds 64 KiB]"
    budget = limit - _utf16_units(note.format(kept=total))
    # Cut on the UTF-16 encoding; "ignore" drops half a surrogate pair left at the cut.
    kept_text = value.encode("utf-16-le")[: 2 * budget].decode("utf-16-le", errors="ignore")
    return kept_text + note.format(kept=len(kept_text))


def fit_json_list(items: Sequence[str], *, what: str) -> str:
    """A JSON list that fits one property: the last items give way to a note counting them."""
    encoded = json.dumps(list(items))
    if _utf16_units(encoded) <= MAX_PROPERTY_UNITS:
        return encoded
    kept: list[str] = []
    size = 2  # the brackets
    reserve = 200  # room for the note
    for item in items:
        item = fit_text(item, what=what[:-1] if what.endswith("s") else what, limit=MAX_PROPERTY_UNITS // 4) or ""
        item_size = _utf16_units(json.dumps(item)) + 2
        if size + item_size > MAX_PROPERTY_UNITS - reserve:
            break
        kept.append(item)
        size += item_size
    dropped = len(items) - len(kept)
    kept.append(f"[{dropped} more {what} not stored by prepost: a table property holds 64 KiB]")
    return json.dumps(kept)


def json_property(value: Any, *, what: str) -> str:
    """``value`` as JSON for one property; structured data cannot be cut, so it must fit."""
    encoded = json.dumps(value, default=str, separators=(",", ":"))
    if _utf16_units(encoded) > MAX_PROPERTY_UNITS:
        raise PermanentError(
            f"{what} is {_utf16_units(encoded) * 2:,} bytes as JSON; a table property holds at most 65,536"
        )
    return encoded


def check_key(value: str, what: str) -> str:
    """``value`` if Azure Tables accept it as a PartitionKey or RowKey, else a precise error."""
    if not value:
        raise PermanentError(f"{what} must not be empty")
    if len(value) > _MAX_KEY_LENGTH:
        raise PermanentError(f"{what} is {len(value)} characters; table keys hold at most {_MAX_KEY_LENGTH}")
    bad = _FORBIDDEN_KEY_CHARS.search(value)
    if bad:
        raise PermanentError(f"{what} {value!r} contains {bad.group()!r}, which table keys may not contain")
    return value


def without_none(entity: dict[str, Any]) -> dict[str, Any]:
    # Tables have no null: an absent property reads back as None.
    return {name: value for name, value in entity.items() if value is not None}
