"""Request budgets: ARM token buckets, Compute policies, headers, Retry-After and refill by clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import HttpResponseError

from prepost.simulator import (
    BucketConfig,
    ComputePolicy,
    Estate,
    ManualClock,
    SimulatorServer,
    ThrottleConfig,
)
from prepost.simulator.throttling import TokenBucket


def test_token_bucket_refills_with_time() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    bucket = TokenBucket(BucketConfig(capacity=2, refill_per_second=0.5), 2.0, start)

    assert [bucket.take(start), bucket.take(start), bucket.take(start)] == [True, True, False]
    assert bucket.seconds_until_token(start) == 2
    assert bucket.take(start + timedelta(seconds=2))
    assert bucket.remaining(start + timedelta(hours=1)) == 2


def test_every_answer_reports_the_remaining_budget(compute, estate: Estate) -> None:
    vm = estate.vms[0]
    headers: list[dict[str, str]] = []

    compute(vm.subscription_id).virtual_machines.get(
        vm.resource_group, vm.name, raw_response_hook=lambda r: headers.append(dict(r.http_response.headers))
    )

    assert headers[0]["x-ms-ratelimit-remaining-subscription-reads"] == "249"
    assert headers[0]["x-ms-ratelimit-remaining-resource"].startswith("Microsoft.Compute/LowCostGet3Min;")
    assert headers[0]["x-ms-request-id"]


def test_reads_over_budget_get_429_until_the_bucket_refills(
    compute, server: SimulatorServer, estate: Estate, clock: ManualClock
) -> None:
    server.configure_throttling(ThrottleConfig(reads=BucketConfig(capacity=3, refill_per_second=0.5)))
    vm = estate.vms[0]
    client = compute(vm.subscription_id).virtual_machines
    for _ in range(3):
        client.get(vm.resource_group, vm.name)

    with pytest.raises(HttpResponseError) as raised:
        client.get(vm.resource_group, vm.name)
    clock.advance(2)
    recovered = client.get(vm.resource_group, vm.name)

    assert raised.value.status_code == 429
    assert raised.value.error.code == "TooManyRequests"
    assert raised.value.response.headers["Retry-After"] == "2"
    assert raised.value.response.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    assert recovered.name == vm.name
    assert [r.fault for r in server.state.requests() if r.status == 429] == ["quota"]


def test_budgets_are_per_subscription(compute, server: SimulatorServer, estate: Estate) -> None:
    server.configure_throttling(ThrottleConfig(reads=BucketConfig(capacity=1, refill_per_second=0.01)))
    first, second = (next(vm for vm in estate.vms if vm.subscription_id == sub) for sub in estate.subscription_ids)
    compute(first.subscription_id).virtual_machines.get(first.resource_group, first.name)

    other = compute(second.subscription_id).virtual_machines.get(second.resource_group, second.name)

    assert other.name == second.name


def test_writes_and_reads_have_separate_buckets(compute, server: SimulatorServer, estate: Estate) -> None:
    server.configure_throttling(ThrottleConfig(writes=BucketConfig(capacity=1, refill_per_second=0.01)))
    vm = estate.vms[0]
    client = compute(vm.subscription_id).virtual_machines
    client.begin_start(vm.resource_group, vm.name).result()

    with pytest.raises(HttpResponseError) as raised:
        client.begin_deallocate(vm.resource_group, vm.name)

    assert raised.value.status_code == 429
    assert raised.value.response.headers["x-ms-ratelimit-remaining-subscription-writes"] == "0"
    assert client.get(vm.resource_group, vm.name).name == vm.name
    assert server.state.count("vm.deallocate") == 0


def test_compute_policies_throttle_with_operation_not_allowed(compute, server: SimulatorServer, estate: Estate) -> None:
    server.configure_throttling(
        ThrottleConfig(
            compute=(ComputePolicy("LowCostGet3Min", capacity=1, window_seconds=180, operations=("vm.get",)),)
        )
    )
    vm = estate.vms[0]
    client = compute(vm.subscription_id).virtual_machines
    client.get(vm.resource_group, vm.name)

    with pytest.raises(HttpResponseError) as raised:
        client.get(vm.resource_group, vm.name)

    assert raised.value.status_code == 429
    assert raised.value.error.code == "OperationNotAllowed"
    assert raised.value.error.details[0].code == "TooManyRequests"
    assert raised.value.response.headers["x-ms-ratelimit-remaining-resource"] == "Microsoft.Compute/LowCostGet3Min;0"
    assert raised.value.response.headers["Retry-After"] == "180"


def test_disabled_throttling_never_answers_429(compute, server: SimulatorServer, estate: Estate) -> None:
    server.configure_throttling(ThrottleConfig(enabled=False, reads=BucketConfig(capacity=1, refill_per_second=0)))
    vm = estate.vms[0]

    names = [compute(vm.subscription_id).virtual_machines.get(vm.resource_group, vm.name).name for _ in range(3)]

    assert names == [vm.name] * 3
