"""Simulator configuration: long-running operation timing, latency, resource limits, and the
throttling and fault settings gathered in one :class:`SimulatorConfig`."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .faults import FaultConfig
from .ops import WILDCARD, known
from .throttling import RequestKind, ThrottleConfig

REQUEST_CLASSES = frozenset(kind.value for kind in RequestKind)


@dataclass(frozen=True)
class LroTiming:
    """When a long-running operation finishes: at its ``polls``-th status poll, or once ``seconds``
    (by the simulator's clock) have passed, whichever comes first; ``seconds=None`` means polls only.

    The default finishes at the first poll, or at the next request of any kind, so a client that
    does not poll (``polling=False``) still sees the change on its next GET.
    """

    polls: int = 1
    seconds: float | None = 0.0
    seconds_max: float | None = None
    """When set (and above ``seconds``), each operation's duration is drawn between ``seconds`` and
    this, log-uniformly (short durations common, long ones rare), from the simulator's seed."""
    retry_after: int = 0
    """``Retry-After`` on the 202 that accepts the operation. azure-core does not wait before its
    first poll, so this only matters to clients that honour it themselves."""
    poll_retry_after_ms: int = 10
    """Sent as ``Retry-After-Ms`` on ``InProgress`` status answers. azure-core treats a zero
    ``Retry-After`` as absent and falls back to the client's ``polling_interval`` (30 s by
    default), so a small non-zero value keeps multi-poll operations fast."""

    def duration(self, rng: random.Random) -> float | None:
        """The seconds one operation takes: ``seconds``, or a draw up to ``seconds_max``."""
        low, high = self.seconds, self.seconds_max
        if low is None or high is None or high <= low:
            return low
        if low <= 0:
            return rng.uniform(0.0, high)
        return math.exp(rng.uniform(math.log(low), math.log(high)))

    def to_json(self) -> dict[str, Any]:
        return {
            "polls": self.polls,
            "seconds": self.seconds,
            "secondsMax": self.seconds_max,
            "retryAfter": self.retry_after,
            "pollRetryAfterMs": self.poll_retry_after_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LroTiming:
        return cls(
            polls=int(data.get("polls", 1)),
            seconds=None if data.get("seconds", 0.0) is None else float(data.get("seconds", 0.0)),
            seconds_max=None if data.get("secondsMax") is None else float(data["secondsMax"]),
            retry_after=int(data.get("retryAfter", 0)),
            poll_retry_after_ms=int(data.get("pollRetryAfterMs", 10)),
        )


@dataclass(frozen=True)
class LroConfig:
    """Operation timing, by operation name (``vm.start``, ``snapshots.create``...) with a default."""

    default: LroTiming = LroTiming()
    per_operation: Mapping[str, LroTiming] = field(default_factory=dict)

    def timing(self, operation: str) -> LroTiming:
        return self.per_operation.get(operation, self.default)

    def to_json(self) -> dict[str, Any]:
        return {
            "default": self.default.to_json(),
            "operations": {name: timing.to_json() for name, timing in self.per_operation.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LroConfig:
        return cls(
            default=LroTiming.from_json(data.get("default") or {}),
            per_operation={name: LroTiming.from_json(t) for name, t in (data.get("operations") or {}).items()},
        )


@dataclass(frozen=True)
class LatencyConfig:
    """Added response time in seconds, fixed (``(x, x)``) or uniform in a range, per operation
    name, per ARM request class (``reads``, ``writes``, ``deletes``: by HTTP method) or ``"*"``,
    the most precise one winning. Real time, not the simulator clock: it exists to exercise
    client timeouts and concurrency (a time-scaled profile divides it by the scale itself)."""

    per_operation: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (low, high) in self.per_operation.items():
            if not (known(name) or name in REQUEST_CLASSES) or low < 0 or high < low:
                raise ValueError(f"bad latency setting {name!r}: {(low, high)}")

    def delay(self, operation: str, rng: random.Random, method: str | None = None) -> float:
        by_class = self.per_operation.get(RequestKind.of(method).value) if method else None
        low, high = (
            self.per_operation.get(operation) or by_class or self.per_operation.get(WILDCARD) or (0.0, 0.0)
        )
        return low if high <= low else rng.uniform(low, high)

    def to_json(self) -> dict[str, Any]:
        return {"operations": {name: list(bounds) for name, bounds in self.per_operation.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyConfig:
        parsed: dict[str, tuple[float, float]] = {}
        for name, value in (data.get("operations") or {}).items():
            if isinstance(value, int | float):
                parsed[name] = (float(value), float(value))
            else:
                low, high = value
                parsed[name] = (float(low), float(high))
        return cls(parsed)


@dataclass(frozen=True)
class ResourceLimits:
    """Azure's limits the simulator enforces.

    Incremental snapshots: at most 7 per disk per 5 minutes and 500 per disk in total
    (https://learn.microsoft.com/azure/virtual-machines/disks-incremental-snapshots).
    """

    snapshots_per_window: int = 7
    snapshot_window_seconds: float = 300.0
    snapshots_per_disk: int = 500
    cancellation_cutoff_minutes: float | None = None
    """When set, cancelling a run later than this many minutes before its start answers 409
    (Update Manager documents a cut-off of 10 minutes). Off by default: seeded runs are in the past
    or future of whatever clock a test uses."""


@dataclass
class SimulatorConfig:
    """Everything configurable. All off or generous by default, and fast: operations finish on
    the first poll, no latency, no faults."""

    throttling: ThrottleConfig = field(default_factory=ThrottleConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    lro: LroConfig = field(default_factory=LroConfig)
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    request_log_limit: int = 100_000
    """The request log keeps the most recent entries; indexes keep counting."""
    seed: int = 0
    """Seeds latency draws (fault draws use ``faults.seed``)."""
