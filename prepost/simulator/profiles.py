"""A realistic ARM for benches: answer latency per request class, VM and snapshot operations that
take seconds to a minute, Azure's token buckets, all on a clock running ``scale`` times faster.

What is Azure's and what is assumed:
- token buckets per subscription: reads 250 refilling 25/s, writes 200 refilling 10/s, deletes
  200 refilling 10/s (Azure's published sizes, the :class:`ThrottleConfig` defaults); Resource
  Graph 15 queries per 5 s. They read the simulator's clock, so on a scaled clock they refill
  ``scale`` times faster in real time and every ratio to virtual time stays the same;
- answer latency (assumed, typical of ARM from inside Azure): reads 50-200 ms, writes 100-500 ms,
  deletes 100-400 ms, Resource Graph 300 ms-1 s of virtual time, divided by ``scale`` because
  latency is slept in real time;
- operation durations (assumed; Azure publishes none): VM start and deallocation 15-60 s,
  incremental snapshot 5-60 s, snapshot deletion 5-30 s of virtual time, drawn log-uniformly
  per operation from the simulator's seed. An operation ends by time only, however often it is
  polled; its status answers ask pollers to wait 10 s (assumed) between looks.
"""

from __future__ import annotations

from .config import LatencyConfig, LroConfig, LroTiming, SimulatorConfig
from .ops import Operation
from .throttling import ThrottleConfig

NEVER_BY_POLLS = 1_000_000_000

VIRTUAL_LATENCY: dict[str, tuple[float, float]] = {
    "reads": (0.05, 0.2),
    "writes": (0.1, 0.5),
    "deletes": (0.1, 0.4),
    Operation.RESOURCE_GRAPH_QUERY.value: (0.3, 1.0),
}
"""Seconds of virtual time per answer, by request class or operation."""

VIRTUAL_DURATIONS: dict[str, tuple[float, float]] = {
    Operation.VM_START.value: (15.0, 60.0),
    Operation.VM_DEALLOCATE.value: (15.0, 60.0),
    Operation.SNAPSHOT_CREATE.value: (5.0, 60.0),
    Operation.SNAPSHOT_DELETE.value: (5.0, 30.0),
}
"""Seconds of virtual time a long-running operation takes: the range of the draw."""

POLL_RETRY_AFTER = 10.0
"""Seconds of virtual time an operation's status answer asks a poller to wait (assumed)."""


def realistic(scale: float = 1.0, *, seed: int = 0, throttling: bool = True) -> SimulatorConfig:
    """The simulator configured as described in this module, for a clock ``scale`` times faster.

    Pass the same scale to the simulator's clock (e.g. ``prepost.chaos.timescale.ScaledClock``).
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    latency = LatencyConfig({name: (low / scale, high / scale) for name, (low, high) in VIRTUAL_LATENCY.items()})
    lro = LroConfig(
        default=LroTiming(),
        per_operation={
            name: LroTiming(
                polls=NEVER_BY_POLLS,
                seconds=low,
                seconds_max=high,
                poll_retry_after_ms=max(1, int(POLL_RETRY_AFTER * 1000 / scale)),
            )
            for name, (low, high) in VIRTUAL_DURATIONS.items()
        },
    )
    return SimulatorConfig(
        throttling=ThrottleConfig(enabled=throttling),
        latency=latency,
        lro=lro,
        seed=seed,
    )


def describe(scale: float) -> str:
    """One line saying what :func:`realistic` simulates, for a bench's output."""
    durations = ", ".join(f"{name} {low:g}-{high:g} s" for name, (low, high) in VIRTUAL_DURATIONS.items())
    latency = ", ".join(f"{name} {low * 1000:g}-{high * 1000:g} ms" for name, (low, high) in VIRTUAL_LATENCY.items())
    return (
        f"time scale {scale:g} (1 real s = {scale:g} virtual s); ARM buckets 250+25/s reads, 200+10/s writes, "
        f"200+10/s deletes per subscription; latency {latency}; durations {durations} (virtual)"
    )
