"""A compressed timeline: the app, the simulator and the drill run on one scaled clock.

A maintenance window takes hours; the drill needs many of them in minutes. :class:`ScaledClock`
makes virtual time run ``scale`` times faster than real time from an origin::

    virtual(real) = origin + (real - origin) * scale

so at the origin virtual and real time agree, and every process given the same origin and
scale agrees on the virtual time (they share the machine's real clock). A real timestamp
recorded by something outside the app (an Azurite entity's ``Timestamp``) maps to virtual
time with the same formula (:meth:`ScaledClock.to_virtual`).

Delays the app asks for are virtual: :class:`ScaledDelayTransport` divides them by the scale
before the real transport turns them into a queue message's visibility timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.ports.transport import WorkTransport

__all__ = ["ScaledClock", "ScaledDelayTransport"]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class ScaledClock:
    """Virtual time running ``scale`` times faster than real time from ``origin_real``.

    Satisfies ``shared.clock.Clock`` and the simulator's clock protocol (``now()``).

    Args:
        scale: virtual seconds per real second (60: one real second is one virtual minute).
        origin_real: the real moment at which virtual and real time agree (default: now).
    """

    def __init__(self, scale: float, origin_real: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = float(scale)
        self.origin = _utc(origin_real) if origin_real is not None else datetime.now(timezone.utc)

    # -- time -------------------------------------------------------------------------------

    def real_now(self) -> datetime:
        return datetime.now(timezone.utc)

    def now(self) -> datetime:
        """The virtual time now."""
        return self.to_virtual(self.real_now())

    def to_virtual(self, real: datetime) -> datetime:
        """The virtual time of a real moment (e.g. a storage entity's ``Timestamp``)."""
        return self.origin + (_utc(real) - self.origin) * self.scale

    def to_real(self, virtual: datetime) -> datetime:
        """The real moment at which the virtual clock shows ``virtual``."""
        return self.origin + (_utc(virtual) - self.origin) / self.scale

    def real_seconds(self, virtual_delta: timedelta) -> float:
        """How many real seconds a virtual duration lasts."""
        return virtual_delta.total_seconds() / self.scale

    def virtual_delta(self, real_seconds: float) -> timedelta:
        """The virtual duration of ``real_seconds`` real seconds."""
        return timedelta(seconds=real_seconds * self.scale)

    def seconds_until(self, virtual: datetime) -> float:
        """Real seconds from now until the virtual clock shows ``virtual`` (negative if past)."""
        return (self.to_real(virtual) - self.real_now()).total_seconds()

    def wait_until(self, virtual: datetime, stop: threading.Event | None = None) -> bool:
        """Wait (really) until the virtual clock shows ``virtual``; False if ``stop`` was set first."""
        stop = stop or threading.Event()
        while True:
            remaining = self.seconds_until(virtual)
            if remaining <= 0:
                return not stop.is_set()
            if stop.wait(min(remaining, 1.0)):
                return False

    # -- passing it to another process ---------------------------------------------------

    def to_args(self) -> list[str]:
        return ["--scale", repr(self.scale), "--origin", self.origin.isoformat()]

    @classmethod
    def from_text(cls, scale: str | float, origin: str) -> ScaledClock:
        return cls(float(scale), datetime.fromisoformat(origin))

    def __repr__(self) -> str:
        return f"ScaledClock(scale={self.scale:g}, origin={self.origin.isoformat()})"


class ScaledDelayTransport(WorkTransport):
    """A work transport whose delays are virtual: each is divided by ``scale`` on the way out.

    No delay (``None``) and a zero delay stay as they are. Everything else is passed to the
    inner transport unchanged; Storage queues then round the real delay up to a whole second
    (a delay is a "not before"), which is ``scale`` virtual seconds of resolution.
    """

    def __init__(self, inner: WorkTransport, scale: float) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.inner = inner
        self.scale = float(scale)

    def scaled(self, delay: timedelta | None) -> timedelta | None:
        if delay is None or delay == timedelta(0):
            return delay
        return delay / self.scale

    def send(self, messages: Sequence[Any], *, delay: timedelta | None = None) -> None:
        self.inner.send(messages, delay=self.scaled(delay))

    def close(self) -> None:
        self.inner.close()
