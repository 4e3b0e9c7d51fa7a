"""Time, in one place, so use cases take ``now`` as an argument and tests pass it."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
