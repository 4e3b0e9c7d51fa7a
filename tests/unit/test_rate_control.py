"""ARM rate control: header parsing, pacing decisions, and one shared state for all tasks of an instance."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from shared.adapters.arm.rate_control import (
    GRAPH_KEY,
    Bucket,
    OperationClass,
    RateControl,
    Target,
    parse_rate_headers,
)
from shared.errors import Deferred

SUB = "00000000-0000-0000-0000-000000000001"
VM = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"


class FakeTime:
    """A clock that only moves when slept on: waits are observable, never real."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)


def control(time: FakeTime, **options) -> RateControl:
    options.setdefault("buckets", {kind: Bucket(10, 2.0) for kind in OperationClass})
    options.setdefault("reserve", 0)
    options.setdefault("spread", lambda: 0.0)
    return RateControl(clock=time.clock, sleep=time.sleep, **options)


# -- headers -----------------------------------------------------------------------------------


def test_parses_subscription_budgets_case_insensitively() -> None:
    seen = parse_rate_headers(
        {
            "x-ms-ratelimit-remaining-subscription-reads": "249",
            "X-MS-RateLimit-Remaining-Subscription-Writes": "17",
            "x-ms-ratelimit-remaining-subscription-deletes": "199",
        }
    )
    assert seen.subscription == {OperationClass.READS: 249, OperationClass.WRITES: 17, OperationClass.DELETES: 199}


def test_parses_every_compute_policy_of_a_joined_resource_header() -> None:
    # One header per policy on the wire; the HTTP client joins repeated headers with ", ".
    seen = parse_rate_headers(
        {
            "x-ms-ratelimit-remaining-resource": (
                "Microsoft.Compute/HighCostGet3Min;159, Microsoft.Compute/HighCostGet30Min;0"
            )
        }
    )
    assert seen.resource == {"Microsoft.Compute/HighCostGet3Min": 159, "Microsoft.Compute/HighCostGet30Min": 0}


def test_parses_resource_graph_quota_and_retry_after() -> None:
    seen = parse_rate_headers(
        {"x-ms-user-quota-remaining": "3", "x-ms-user-quota-resets-after": "00:00:04", "Retry-After": "7"}
    )
    assert (seen.graph_remaining, seen.graph_resets_after, seen.retry_after) == (3, 4.0, 7.0)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ms-ratelimit-remaining-subscription-reads": "many"},
        {"x-ms-ratelimit-remaining-resource": "HighCostGet3Min=4; nonsense"},
        {"x-ms-user-quota-resets-after": "soon"},
        {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
    ],
)
def test_malformed_values_are_left_out(headers) -> None:
    seen = parse_rate_headers(headers)
    assert not seen.subscription and not seen.resource
    assert seen.graph_resets_after is None and seen.retry_after is None


def test_targets_by_subscription_and_method() -> None:
    assert Target.of("GET", VM + "?api-version=2024-07-01") == Target(
        SUB, OperationClass.READS, "GET microsoft.compute/virtualmachines"
    )
    start = Target.of("POST", VM + "/start?api-version=1")
    assert start is not None and start.kind is OperationClass.WRITES
    assert start.resource_kind == "POST microsoft.compute/virtualmachines/start"
    assert Target.of("DELETE", VM).kind is OperationClass.DELETES
    graph = Target.of("POST", "https://management.azure.com/providers/Microsoft.ResourceGraph/resources?api-version=1")
    assert graph == Target(GRAPH_KEY, OperationClass.READS)
    assert Target.of("GET", "https://management.azure.com/tenants?api-version=1") is None


# -- pacing decisions -----------------------------------------------------------------------------


def test_a_full_bucket_sends_at_once_and_an_empty_one_waits_for_the_refill() -> None:
    time = FakeTime()
    rate = control(time)
    target = Target(SUB, OperationClass.WRITES)
    assert [rate.reserve_token(target) for _ in range(10)] == [0.0] * 10
    # The 11th token comes after 1 / 2 s of refill, the 12th after another.
    assert rate.reserve_token(target) == pytest.approx(0.5)
    assert rate.reserve_token(target) == pytest.approx(1.0)


def test_a_wait_longer_than_max_wait_is_deferred_without_spending_a_token() -> None:
    time = FakeTime()
    rate = control(time, max_wait=1.0)
    target = Target(SUB, OperationClass.WRITES)
    for _ in range(12):
        rate.reserve_token(target)
    with pytest.raises(Deferred) as raised:
        rate.reserve_token(target)
    assert raised.value.retry_after == timedelta(seconds=2)  # 1.5 s, rounded up
    time.now += 0.5  # one token refilled: the wait is back under max_wait
    assert rate.reserve_token(target) == pytest.approx(1.0)


def test_classes_and_subscriptions_have_separate_budgets() -> None:
    time = FakeTime()
    rate = control(time, max_wait=0.0)
    for _ in range(10):
        rate.reserve_token(Target(SUB, OperationClass.WRITES))
    with pytest.raises(Deferred):
        rate.reserve_token(Target(SUB, OperationClass.WRITES))
    assert rate.reserve_token(Target(SUB, OperationClass.READS)) == 0.0
    assert rate.reserve_token(Target(SUB, OperationClass.DELETES)) == 0.0
    assert rate.reserve_token(Target("other", OperationClass.WRITES)) == 0.0


def test_arms_remaining_count_lowers_the_model_and_its_share_of_the_refill() -> None:
    """Another instance (or client) spent most of the bucket: the answer says so, and this one
    both drops to that count and counts on less of the refill from then on."""
    time = FakeTime()
    rate = control(time)
    target = Target(SUB, OperationClass.WRITES)
    rate.reserve_token(target)
    rate.observe(target, 200, {"x-ms-ratelimit-remaining-subscription-writes": "1"})
    assert rate.reserve_token(target) == 0.0
    assert rate.reserve_token(target) == pytest.approx(1 / (2.0 * 0.7))


def test_the_share_comes_back_slowly_while_arms_count_agrees() -> None:
    time = FakeTime()
    rate = control(time, max_wait=100.0)
    target = Target(SUB, OperationClass.WRITES)
    rate.observe(target, 429, {"Retry-After": "1", "x-ms-ratelimit-remaining-subscription-writes": "0"})
    levels = []
    for _ in range(5):  # answers a second apart, each with more left than the model holds
        time.now += 1
        rate.observe(target, 200, {"x-ms-ratelimit-remaining-subscription-writes": "200"})
        levels.append(rate.snapshot()[f"{SUB}/writes"])
    refilled = [later - earlier for earlier, later in zip(levels, levels[1:], strict=False)]
    # Cut to 0.7 x 0.5 of the 2 tokens/s by the 429, then 0.05 more of it every second.
    assert refilled == pytest.approx([0.8, 0.9, 1.0, 1.1])


def test_work_put_off_together_is_told_to_come_back_spread_out() -> None:
    time = FakeTime()
    rate = control(time, max_wait=1.0, spread=iter([0.0, 0.5, 1.0]).__next__)
    target = Target(SUB, OperationClass.WRITES)
    for _ in range(12):
        rate.reserve_token(target)
    waits = []
    for _ in range(3):
        with pytest.raises(Deferred) as raised:
            rate.reserve_token(target)
        waits.append(raised.value.retry_after.total_seconds())
    assert waits == [2, 3, 3]  # 1.5 s stretched by 0, a half and all of it, rounded up


def test_a_higher_remaining_count_never_raises_the_model() -> None:
    time = FakeTime()
    rate = control(time)
    target = Target(SUB, OperationClass.WRITES)
    for _ in range(10):
        rate.reserve_token(target)
    rate.observe(target, 200, {"x-ms-ratelimit-remaining-subscription-writes": "200"})
    assert rate.reserve_token(target) == pytest.approx(0.5)


def test_a_429_closes_the_budget_until_retry_after() -> None:
    time = FakeTime()
    rate = control(time, max_wait=3.0)
    target = Target(SUB, OperationClass.READS)
    rate.observe(target, 429, {"Retry-After": "5", "x-ms-ratelimit-remaining-subscription-reads": "0"})
    with pytest.raises(Deferred) as raised:
        rate.reserve_token(target)
    assert raised.value.retry_after == timedelta(seconds=5)
    time.now += 5
    assert rate.reserve_token(target) == 0.0
    assert rate.reserve_token(Target(SUB, OperationClass.WRITES)) == 0.0  # other classes stay open


def test_a_429_that_names_no_spent_budget_holds_only_requests_of_its_kind() -> None:
    """Compute asked for ten minutes on a VM start while the subscription's writes are plentiful:
    snapshots of the same subscription go on."""
    time = FakeTime()
    rate = control(time, max_wait=3.0)
    start = Target.of("POST", VM + "/start")
    snapshot = Target.of("PUT", VM.replace("virtualMachines/vm1", "snapshots/s1"))
    rate.observe(start, 429, {"Retry-After": "600", "x-ms-ratelimit-remaining-subscription-writes": "150"})
    with pytest.raises(Deferred) as raised:
        rate.reserve_token(start)
    assert raised.value.retry_after == timedelta(seconds=600)
    assert rate.reserve_token(snapshot) == 0.0


def test_a_spent_compute_policy_holds_only_the_requests_it_covers() -> None:
    time = FakeTime()
    rate = control(time, max_wait=3.0)
    get_vm = Target.of("GET", VM)
    get_disk = Target.of("GET", VM.replace("virtualMachines/vm1", "disks/d1"))
    rate.observe(
        get_vm,
        429,
        {
            "Retry-After": "30",
            "x-ms-ratelimit-remaining-subscription-reads": "240",
            "x-ms-ratelimit-remaining-resource": "Microsoft.Compute/LowCostGet3Min;0",
        },
    )
    with pytest.raises(Deferred) as raised:
        rate.reserve_token(get_vm)
    assert raised.value.retry_after == timedelta(seconds=30)
    assert rate.reserve_token(get_disk) == 0.0


def test_a_compute_policy_low_on_calls_spaces_its_requests() -> None:
    time = FakeTime()
    rate = control(time, resource_reserve=5, resource_spacing=1.0)
    get_vm = Target.of("GET", VM)
    rate.observe(get_vm, 200, {"x-ms-ratelimit-remaining-resource": "Microsoft.Compute/LowCostGet3Min;3"})
    assert rate.reserve_token(get_vm) == 0.0
    assert rate.reserve_token(get_vm) == pytest.approx(1.0)
    rate.observe(get_vm, 200, {"x-ms-ratelimit-remaining-resource": "Microsoft.Compute/LowCostGet3Min;300"})
    assert rate.reserve_token(get_vm) == 0.0


def test_resource_graph_follows_its_quota_reset() -> None:
    time = FakeTime()
    rate = control(time, graph=Bucket(15, 3.0), max_wait=2.0)
    graph = Target(GRAPH_KEY, OperationClass.READS)
    rate.observe(graph, 429, {"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": "00:00:04"})
    with pytest.raises(Deferred) as raised:
        rate.reserve_token(graph)
    assert raised.value.retry_after == timedelta(seconds=4)


# -- sharing between tasks ------------------------------------------------------------------------


def test_concurrent_tasks_share_one_budget() -> None:
    """Twenty threads of one instance take one token each: the first ten go at once, the rest are
    spread along the refill, and no token is handed out twice."""
    time = FakeTime()
    rate = control(time, max_wait=100.0)
    target = Target(SUB, OperationClass.WRITES)
    waits: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def task() -> None:
        barrier.wait()
        wait = rate.admit(target)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=task) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([0.0] * 10 + [0.5 * n for n in range(1, 11)])
    assert sorted(time.slept) == pytest.approx([0.5 * n for n in range(1, 11)])


def test_in_flight_requests_are_bounded_per_subscription() -> None:
    time = FakeTime()
    rate = control(time, max_in_flight=2)
    target = Target(SUB, OperationClass.READS)
    with rate.slot(target, timeout=0), rate.slot(target, timeout=0):
        with pytest.raises(Deferred), rate.slot(target, timeout=0):
            pass
        with rate.slot(Target("other", OperationClass.READS), timeout=0):
            pass
    with rate.slot(target, timeout=0):  # released on exit
        pass
