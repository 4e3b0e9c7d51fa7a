"""Bounds on what one task may put in a message or a record, whatever the work was.

A task's outcome travels in a Storage queue message (64 KiB after base64, about 48 KiB of JSON)
and ends up in a table property (64 KiB). Work can be arbitrarily large (a prune may delete
hundreds of snapshots), so what an outcome carries is cut to a size that always fits, and says
so: the counts stay exact, only the lists are shortened.
"""

from __future__ import annotations

import json
from typing import Any

DETAIL_LIMIT = 2_000
"""Characters of a task's detail text."""
DATA_LIMIT = 8 * 1024
"""Bytes of a task's data as JSON."""
LIST_LIMIT = 20
"""Items kept of any list in a task's data; ``<name>_total`` keeps the full count."""


def cut_text(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and a note of the full length."""
    if len(text) <= limit:
        return text
    note = f" ... [{len(text):,} characters, cut]"
    return text[: max(limit - len(note), 0)] + note


def bounded_data(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` cut to at most :data:`DATA_LIMIT` bytes of JSON.

    Long lists keep their first :data:`LIST_LIMIT` items plus ``<name>_total``; long strings
    are cut; if that is still too large, only the scalar values are kept, with ``omitted``
    naming the keys that were dropped.
    """
    if _size(data) <= DATA_LIMIT:
        return data
    shortened: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, list) and len(value) > LIST_LIMIT:
            shortened[key] = value[:LIST_LIMIT]
            shortened[f"{key}_total"] = len(value)
        elif isinstance(value, str):
            shortened[key] = cut_text(value, DETAIL_LIMIT)
        else:
            shortened[key] = value
    if _size(shortened) <= DATA_LIMIT:
        return shortened
    scalars = {k: v for k, v in shortened.items() if isinstance(v, bool | int | float) or v is None}
    scalars.update({k: v for k, v in shortened.items() if isinstance(v, str) and len(v) <= 200})
    scalars["omitted"] = sorted(set(data) - set(scalars))
    return scalars


def _size(value: Any) -> int:
    return len(json.dumps(value, default=str, separators=(",", ":")).encode("utf-8"))
