"""The bench profile: operation durations drawn from a range, latency by request class, scaled."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from prepost.simulator.config import LatencyConfig, LroTiming
from prepost.simulator.lro import OperationBook
from prepost.simulator.ops import Operation
from prepost.simulator.profiles import VIRTUAL_DURATIONS, realistic

T0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def test_durations_are_drawn_within_the_range_and_spread() -> None:
    timing = LroTiming(polls=10**9, seconds=5.0, seconds_max=60.0)
    rng = random.Random(1)
    draws = [timing.duration(rng) for _ in range(500)]
    assert all(5.0 <= d <= 60.0 for d in draws)
    assert min(draws) < 8 and max(draws) > 45  # seconds to a minute, not one value
    assert sorted(draws)[250] < 32.5  # log-uniform: the median sits below the middle


def test_a_fixed_timing_keeps_its_one_duration() -> None:
    assert LroTiming(seconds=3.0).duration(random.Random(0)) == 3.0
    assert LroTiming(seconds=None).duration(random.Random(0)) is None


def test_an_operation_of_the_profile_ends_by_time_not_by_polls() -> None:
    config = realistic(scale=60, seed=4)
    book = OperationBook(seed=4)
    record = book.add(
        operation=Operation.SNAPSHOT_CREATE.value,
        target_id="/s",
        subscription_id="sub",
        location="westeurope",
        now=T0,
        timing=config.lro.timing(Operation.SNAPSHOT_CREATE.value),
    )
    low, high = VIRTUAL_DURATIONS[Operation.SNAPSHOT_CREATE.value]
    assert record.duration is not None and low <= record.duration <= high
    for _ in range(100):
        book.poll(record, T0)
    assert not record.done
    book.settle(T0 + timedelta(seconds=record.duration + 0.001))
    assert record.done


def test_latency_by_request_class_divided_by_the_scale() -> None:
    config = realistic(scale=10)
    rng = random.Random(0)
    read = config.latency.delay(Operation.VM_GET.value, rng, "GET")
    write = config.latency.delay(Operation.SNAPSHOT_CREATE.value, rng, "PUT")
    graph = config.latency.delay(Operation.RESOURCE_GRAPH_QUERY.value, rng, "POST")
    assert 0.005 <= read <= 0.02 and 0.01 <= write <= 0.05 and 0.03 <= graph <= 0.1


def test_an_operation_setting_beats_its_class_and_the_wildcard() -> None:
    latency = LatencyConfig({"*": (1.0, 1.0), "reads": (2.0, 2.0), Operation.VM_GET.value: (3.0, 3.0)})
    rng = random.Random(0)
    assert latency.delay(Operation.VM_GET.value, rng, "GET") == 3.0
    assert latency.delay(Operation.SNAPSHOT_GET.value, rng, "GET") == 2.0
    assert latency.delay(Operation.SNAPSHOT_CREATE.value, rng, "PUT") == 1.0
