"""Fault injection: deterministic rules, seeded random faults, timeouts; never a side effect."""

from __future__ import annotations

import random

import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.mgmt.compute.models import CreationData, Snapshot

from prepost.simulator import (
    Estate,
    FaultConfig,
    FaultRule,
    FaultSpec,
    LatencyConfig,
    PowerState,
    SimulatorServer,
)
from prepost.simulator.faults import FaultInjector, FaultKind


def snapshot_of(disk) -> Snapshot:
    return Snapshot(
        location=disk.location,
        creation_data=CreationData(create_option="Copy", source_resource_id=disk.id),
        incremental=True,
    )


def test_fail_next_n_calls_then_succeed(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = estate.vms[0]
    client = compute(vm.subscription_id).snapshots
    server.fail_next("snapshots.create", times=2, status=500)

    failures = []
    for _ in range(2):
        with pytest.raises(HttpResponseError) as raised:
            client.begin_create_or_update(vm.resource_group, "snap", snapshot_of(vm.os_disk))
        failures.append((raised.value.status_code, raised.value.error.code))
    created = client.begin_create_or_update(vm.resource_group, "snap", snapshot_of(vm.os_disk)).result()

    assert failures == [(500, "InternalServerError")] * 2
    assert created.provisioning_state == "Succeeded"
    # The failed PUTs created nothing: one snapshot, created once.
    assert [s.put_count for s in server.state.snapshots()] == [1]


def test_always_fail_for_matching_resources(compute, server: SimulatorServer, estate: Estate) -> None:
    broken, healthy = [vm for vm in estate.vms if vm.power_state is PowerState.RUNNING][:2]
    server.fail_matching("vm.deallocate", contains=f"/virtualMachines/{broken.name}/", status=409, code="Conflict")

    for _ in range(2):
        with pytest.raises(HttpResponseError) as raised:
            compute(broken.subscription_id).virtual_machines.begin_deallocate(broken.resource_group, broken.name)
        assert raised.value.status_code == 409
    compute(healthy.subscription_id).virtual_machines.begin_deallocate(healthy.resource_group, healthy.name).result()

    assert server.state.power_state(broken.id) is PowerState.RUNNING
    assert server.state.power_state(healthy.id) is PowerState.DEALLOCATED


def test_rules_can_match_the_request_body(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = next(v for v in estate.vms if v.data_disks)
    server.fail_matching("snapshots.create", contains=vm.data_disks[0].name, status=500)
    client = compute(vm.subscription_id).snapshots

    with pytest.raises(HttpResponseError):
        client.begin_create_or_update(vm.resource_group, "data", snapshot_of(vm.data_disks[0]))
    client.begin_create_or_update(vm.resource_group, "os", snapshot_of(vm.os_disk)).result()

    assert [s.name for s in server.state.snapshots()] == ["os"]


def test_injected_429_carries_retry_after(compute, server: SimulatorServer, estate: Estate) -> None:
    server.fail_next("vm.get", status=429, retry_after=7)
    vm = estate.vms[0]

    with pytest.raises(HttpResponseError) as raised:
        compute(vm.subscription_id).virtual_machines.get(vm.resource_group, vm.name)

    assert raised.value.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert raised.value.error.code == "TooManyRequests"
    assert server.state.requests()[-1].fault == "throttle"


def test_a_failed_start_leaves_the_vm_deallocated(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = next(v for v in estate.vms if v.power_state is PowerState.DEALLOCATED)
    server.fail_next("vm.start", status=409, on_completion=True, code="AllocationFailed", message="No capacity.")

    with pytest.raises(HttpResponseError) as raised:
        compute(vm.subscription_id).virtual_machines.begin_start(vm.resource_group, vm.name).result()

    assert "AllocationFailed" in str(raised.value)
    assert server.state.power_state(vm.id) is PowerState.DEALLOCATED
    assert server.state.count("vm.start", vm.id) == 0


def test_timeout_holds_the_request_and_changes_nothing(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = next(v for v in estate.vms if v.power_state is PowerState.DEALLOCATED)
    server.fail_next("vm.start", timeout=True, timeout_seconds=30)
    client = compute(vm.subscription_id, read_timeout=0.3).virtual_machines

    with pytest.raises(ServiceResponseError):
        client.begin_start(vm.resource_group, vm.name)

    assert server.state.power_state(vm.id) is PowerState.DEALLOCATED
    assert [(r.operation, r.status, r.fault) for r in server.state.requests()] == [("vm.start", 0, "timeout")]


def test_random_faults_are_seeded_and_reproducible() -> None:
    def outcomes(seed: int) -> list[FaultKind | None]:
        injector = FaultInjector(
            FaultConfig(operations={"*": FaultSpec(throttle=0.2, error=0.2, timeout=0.1)}, seed=seed)
        )
        decisions = [injector.decide("vm.get", "/x", long_running=False) for _ in range(200)]
        return [d.kind if d else None for d in decisions]

    first = outcomes(3)
    assert first == outcomes(3)
    assert first != outcomes(4)
    assert {FaultKind.THROTTLE, FaultKind.ERROR, FaultKind.TIMEOUT, None} == set(first)
    assert 40 <= first.count(None) <= 120


def test_random_faults_over_http(compute, server: SimulatorServer, estate: Estate) -> None:
    server.configure_faults(FaultConfig(operations={"vm.get": FaultSpec(error=1.0)}))
    vm = estate.vms[0]

    with pytest.raises(HttpResponseError) as raised:
        compute(vm.subscription_id).virtual_machines.get(vm.resource_group, vm.name)
    server.configure_faults(None)

    assert raised.value.status_code == 500
    assert compute(vm.subscription_id).virtual_machines.get(vm.resource_group, vm.name).name == vm.name


def test_unknown_operation_names_are_refused() -> None:
    with pytest.raises(ValueError):
        FaultRule("vm.reboot")
    with pytest.raises(ValueError):
        FaultConfig(operations={"snapshot.create": FaultSpec(error=0.5)})


def test_latency_delays_answers(compute, server: SimulatorServer, estate: Estate) -> None:
    server.configure_latency(LatencyConfig({"vm.get": (5.0, 5.0)}))
    vm = estate.vms[0]

    with pytest.raises(ServiceResponseError):
        compute(vm.subscription_id, read_timeout=0.2).virtual_machines.get(vm.resource_group, vm.name)
    server.configure_latency(LatencyConfig())

    assert compute(vm.subscription_id).disks.get(vm.resource_group, vm.os_disk.name).name == vm.os_disk.name


def test_latency_ranges_are_drawn_per_operation() -> None:
    latency = LatencyConfig({"*": (0.1, 0.3), "vm.get": (2.0, 2.0)})
    rng = random.Random(1)

    draws = [latency.delay("snapshots.create", rng) for _ in range(50)]

    assert latency.delay("vm.get", rng) == 2.0
    assert all(0.1 <= d <= 0.3 for d in draws) and len(set(draws)) > 1
    with pytest.raises(ValueError):
        LatencyConfig({"vm.get": (2.0, 1.0)})
