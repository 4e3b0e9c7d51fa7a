"""The one retry policy: how many attempts a message gets and how long to wait before the next.

The task runner (a throttled or transient failure it handled) and the Service Bus settlement (an
error that escaped a handler) both use it, so a message is retried the same way whatever the
transport and whoever noticed the failure. Waits are never slept inside a function: the caller
schedules the next attempt with this delay.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded attempts, and Azure's ``Retry-After`` honoured.

    Each delay is ``base``, 2 x ``base``, ... up to ``cap``, scaled by a factor between
    1 - ``jitter`` and 1 derived from the message's key: messages failing together (one
    throttled subscription) spread out instead of coming back in lockstep, and the same message
    always gets the same delay.
    """

    max_attempts: int = 8
    """Attempts at one message, the first included (``PREPOST_MAX_TASK_ATTEMPTS``)."""
    base: timedelta = timedelta(seconds=10)
    cap: timedelta = timedelta(minutes=5)
    jitter: float = 0.5
    max_retry_after: timedelta = timedelta(minutes=20)
    """Upper bound for a ``Retry-After`` Azure asked for (Compute can ask for up to 1,200 s)."""
    min_delay: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def is_last(self, attempt: int) -> bool:
        """No attempt follows ``attempt`` if it fails."""
        return attempt >= self.max_attempts

    def delay(self, attempt: int, *, key: str = "", retry_after: timedelta | None = None) -> timedelta:
        """The wait before attempt ``attempt + 1``; ``retry_after`` (from Azure) wins if given."""
        if retry_after is not None:
            return min(max(retry_after, self.min_delay), self.max_retry_after)
        exponent = min(max(attempt, 1) - 1, 30)
        raw = min(self.base * (2**exponent), self.cap)
        fraction = int.from_bytes(hashlib.sha256(f"{key}:{attempt}".encode()).digest()[:8], "big") / 2**64
        return max(raw * (1 - self.jitter * fraction), self.min_delay)


DEFAULT_RETRY = RetryPolicy()
"""10 s, 20 s, 40 s ... capped at 5 min: eight attempts span about 15 minutes, inside the 20
minutes the pre-event leaves for all pre-work."""
