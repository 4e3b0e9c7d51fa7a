"""Time, in one place, so use cases take ``now`` as an argument and tests pass it.

Adapters and trigger glue read :func:`utcnow`. It asks the process-wide :class:`Clock`, which
is the system clock unless a harness installed another with :func:`set_clock` (the chaos
drill runs the whole pipeline on a compressed timeline; see ``prepost.chaos``).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    """A source of the current time, timezone-aware in UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class OffsetClock:
    """The real time, moved to start at ``start``: it runs at real speed from that moment.

    For rehearsing a window whose times are fixed (sample events of a past date) as if it were
    happening now.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("OffsetClock needs a timezone-aware start")
        self._offset = start - datetime.now(timezone.utc)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self._offset


_clock: Clock = SystemClock()
_lock = threading.Lock()


def utcnow() -> datetime:
    """The current time in UTC, from the process-wide clock."""
    return _clock.now()


def set_clock(clock: Clock | None) -> None:
    """Install ``clock`` for this process (None restores the system clock)."""
    global _clock
    with _lock:
        _clock = clock or SystemClock()


def time_scale() -> float:
    """How many of the process clock's seconds pass per real second (1 unless a harness installed
    a faster clock, like the chaos drill's)."""
    return float(getattr(_clock, "scale", 1.0) or 1.0)


def sleep(seconds: float) -> None:
    """Sleep ``seconds`` of the process clock's time: less real time on a clock that runs faster
    (one with a ``scale``, like the chaos drill's), so waits keep their meaning on it."""
    if seconds > 0:
        time.sleep(seconds / time_scale())
