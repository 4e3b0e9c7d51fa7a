"""Reading one field of a delivered event: its type, its size and its form, or a reason why not.

Every value an event brings is checked here before anything is stored: a table property holds
64 KiB, an Azure Table ``Edm.DateTime`` starts in 1601, Python's ``datetime`` ends in 9999, and
a value quoted in a reason must not be the 40,000 characters it was sent as. The bounds are
listed in docs/events.md ("Bounds").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from shared.models.ids import ascii_fold
from shared.models.json_text import same_json

TEXT_LIMIT = 1_024
"""Characters of an envelope string (``id``, ``subject``, ``topic``/``source``, versions). A run id,
the longest value a maintenance event carries there, is a few hundred."""
STATUS_LIMIT = 64
"""Characters of a post-event's ``status`` (``Succeeded``, ``PartialSuccess``, ...)."""
SHOWN_LIMIT = 120
"""Characters of a value quoted in a reason."""

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(3000, 1, 1, tzinfo=timezone.utc)
"""Times outside these are refused outright, so that no later arithmetic on them can overflow
(``datetime`` ends in 9999) and Table storage can store them (``Edm.DateTime`` starts in 1601).
The intake then narrows this to the neighbourhood of now (:mod:`shared.models.events`)."""

# RFC 3339 date-time (the profile of ISO 8601 Event Grid and CloudEvents use), ASCII digits
# only; the offset may be left out (taken as UTC), the fraction has at most 9 digits.
_TIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt](?P<clock>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,9}))?(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?",
    re.ASCII,
)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class Fields:
    """Read-only view of a JSON object whose keys are matched ignoring ASCII case.

    Two keys that differ only in case and carry different values (``status`` and ``Status``)
    are a conflict: which one a reader takes is arbitrary, so :attr:`conflicts` names them.
    """

    def __init__(self, mapping: Mapping[str, Any], where: str = ""):
        self._items: dict[str, Any] = {}
        self._names: dict[str, str] = {}
        self.conflicts: list[str] = []
        for key, value in mapping.items():
            folded = ascii_fold(str(key))
            if folded in self._items and not same_json(self._items[folded], value):
                self.conflicts.append(
                    f"{where}keys {shown(self._names[folded])} and {shown(key)} name the same field "
                    "with different values"
                )
            self._items[folded] = value
            self._names[folded] = str(key)

    def has(self, key: str) -> bool:
        return ascii_fold(key) in self._items

    def get(self, key: str) -> Any:
        return self._items.get(ascii_fold(key))


def shown(value: Any) -> str:
    """``value`` quoted for a reason: its repr, cut to :data:`SHOWN_LIMIT` characters."""
    if isinstance(value, str) and len(value) > SHOWN_LIMIT:
        return f"{value[:SHOWN_LIMIT]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= SHOWN_LIMIT else f"{text[:SHOWN_LIMIT]}... ({type(value).__name__})"


def displayable(value: Any, limit: int = TEXT_LIMIT) -> str:
    """``value`` as text safe to log and store: control characters and lone surrogates escaped, cut."""
    text = value if isinstance(value, str) else ("" if value is None else repr(value))
    cut = len(text) > limit
    text = _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text[:limit])
    return f"{text}... ({len(value):,} characters)" if cut and isinstance(value, str) else text


def unsafe_character(text: str) -> str | None:
    """The first control character or lone surrogate in ``text``, described, or None."""
    match = _UNSAFE.search(text)
    return f"U+{ord(match.group()):04X}" if match else None


def text_problem(value: Any, what: str, *, limit: int = TEXT_LIMIT, required: bool = False) -> str | None:
    """Why ``value`` is not an acceptable string for ``what``, or None when it is (or is absent and optional)."""
    if value is None:
        return f"{what} is missing" if required else None
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if required and not value.strip():
        return f"{what} is empty"
    if len(value) > limit:
        return f"{what} is {len(value):,} characters; at most {limit:,} are accepted"
    bad = unsafe_character(value)
    if bad:
        return f"{what} contains the control character or lone surrogate {bad}"
    return None


def non_ascii(text: str) -> str:
    """`` (its character U+017F is not ASCII)`` for a text with a non-ASCII character, else ``""``."""
    for char in text:
        if ord(char) > 0x7F:
            return f" (its character U+{ord(char):04X} is not ASCII: ids are checked as ASCII)"
    return ""


def parse_time_field(value: Any, what: str, reasons: list[str]) -> datetime | None:
    """An RFC 3339 date-time as a UTC ``datetime``, or None with the reason appended to ``reasons``.

    Accepts Azure's seven-digit fractions and ``Z``; a time without an offset is taken as UTC.
    Refuses anything else ISO 8601 or ``datetime.fromisoformat`` would take (dates alone, week
    dates, Unicode digits) and times outside :data:`EARLIEST` .. :data:`LATEST`.
    """
    if not isinstance(value, str):
        reasons.append(
            f"{what} is missing" if value is None else f"{what} must be a string, got {type(value).__name__}"
        )
        return None
    match = _TIME.fullmatch(value.strip()) if len(value) <= 64 else None
    if match is None:
        reasons.append(f"{what} {shown(value)} is not an ISO 8601 date and time (yyyy-mm-ddThh:mm:ss[.f][Z|+hh:mm])")
        return None
    fraction = (match.group("fraction") or "")[:6].ljust(6, "0")
    offset = match.group("offset") or "Z"
    text = f"{match.group('date')}T{match.group('clock')}.{fraction}{'+00:00' if offset in 'Zz' else offset}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:  # month 13, hour 25, February 30
        reasons.append(f"{what} {shown(value)} is not a valid date and time")
        return None
    try:
        parsed = parsed.astimezone(timezone.utc)
    except OverflowError:  # the offset moves it before year 1 or after 9999
        parsed = None
    if parsed is None or not EARLIEST <= parsed < LATEST:
        reasons.append(f"{what} {shown(value)} is outside the years {EARLIEST.year}-{LATEST.year - 1} prepost accepts")
        return None
    return parsed
