"""Times a user types for a maintenance window: ``now``, ``in 30m``, ``2h ago``, ``-15m``,
``2026-12-01T02:00Z``, ``2026-12-01 02:00``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_AMOUNT = re.compile(r"(\d+)\s*([smhd])")
_RELATIVE = re.compile(r"^(?:in\s+|\+)?((?:\d+\s*[smhd]\s*)+)(ago)?$|^-\s*((?:\d+\s*[smhd]\s*)+)$")

EXAMPLES = "now, in 30m, in 1h30m, 2h ago, -15m, 2026-12-01T02:00Z, 2026-12-01 02:00"


class WhenError(ValueError):
    """Not a time this parser reads; the message gives examples."""


def parse_duration(text: str) -> timedelta:
    """``30m``, ``1h30m``, ``2d``. Raises WhenError."""
    cleaned = text.strip().lower()
    if not cleaned or _AMOUNT.sub("", cleaned).strip():
        raise WhenError(f"{text!r} is not a duration (e.g. 30m, 2h, 1h30m, 1d)")
    return sum((timedelta(**{_UNITS[unit]: int(amount)}) for amount, unit in _AMOUNT.findall(cleaned)), timedelta())


def parse_when(text: str, now: datetime) -> datetime:
    """The moment ``text`` names, relative to ``now`` or absolute (UTC when no offset), on a whole
    minute, as Update Manager schedules runs. Raises WhenError."""
    cleaned = text.strip().lower()
    if cleaned == "now":
        moment = now
    else:
        relative = _RELATIVE.match(cleaned)
        if relative:
            ahead, ago, behind = relative.groups()
            amount = parse_duration(ahead or behind)
            moment = now - amount if (ago or behind) else now + amount
        else:
            moment = _absolute(text)
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _absolute(text: str) -> datetime:
    candidate = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?", candidate):
        candidate = candidate.replace(" ", "T")
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError as error:
        raise WhenError(f"{text!r} is not a time; say e.g. {EXAMPLES}") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
