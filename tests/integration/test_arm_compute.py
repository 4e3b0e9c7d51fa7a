"""The Compute adapter against the simulator: long operations are begun, never waited for.

The simulator runs on a manual clock and its operations finish only after three status polls or
60 simulated seconds, so a call that waited (or a poller left polling in the background) would
show up as status polls in the request log, and a begun operation stays in progress until the
test moves the clock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from prepost.simulator import (
    Estate,
    LroConfig,
    LroTiming,
    ManualClock,
    Operation,
    PowerState,
    SimulatorConfig,
    SimulatorServer,
)
from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.compute import ArmCompute
from shared.errors import Throttled
from shared.ports.azure import PowerState as Power
from shared.settings import ArmAuth

pytestmark = pytest.mark.integration

OPERATION_SECONDS = 60
SLOW = LroTiming(polls=3, seconds=OPERATION_SECONDS)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 22, 1, 30, tzinfo=UTC))


@pytest.fixture
def server(clock: ManualClock) -> Iterator[SimulatorServer]:
    estate = Estate.generate(machines=4, subscriptions=1, arc_servers=0, seed=3)
    with SimulatorServer(estate, SimulatorConfig(lro=LroConfig(default=SLOW)), clock=clock) as running:
        yield running


@pytest.fixture
def compute(server: SimulatorServer) -> ArmCompute:
    return ArmCompute(ArmClients(server.url, ArmAuth.SIMULATOR))


def vm_in(server: SimulatorServer, state: PowerState):
    return next(vm for vm in server.estate.vms if vm.power_state is state)


def operations_of(server: SimulatorServer) -> list[str]:
    return [record.operation for record in server.state.requests()]


def pollers() -> list[threading.Thread]:
    """azure-core's LROPoller runs its polling in a thread named ``LROPoller(<uuid>)``."""
    return [thread for thread in threading.enumerate() if thread.name.startswith("LROPoller")]


def test_begin_start_vm_returns_with_the_vm_still_starting_and_no_status_poll(server, compute, clock):
    vm = vm_in(server, PowerState.DEALLOCATED)

    compute.begin_start_vm(vm.id)

    assert server.state.power_state(vm.id) is PowerState.STARTING
    assert operations_of(server) == [Operation.VM_START.value]
    assert pollers() == []
    # The follow-up's look: still starting, and a GET is not a status poll.
    assert compute.get_vm(vm.id).power_state is Power.STARTING
    assert Operation.OPERATION_STATUS.value not in operations_of(server)

    clock.advance(OPERATION_SECONDS)

    assert compute.get_vm(vm.id).power_state is Power.RUNNING
    assert server.state.count(Operation.VM_START.value, vm.id) == 1


def test_begin_deallocate_vm_returns_with_the_vm_still_deallocating(server, compute, clock):
    vm = vm_in(server, PowerState.RUNNING)

    compute.begin_deallocate_vm(vm.id)

    assert compute.get_vm(vm.id).power_state is Power.DEALLOCATING
    assert Operation.OPERATION_STATUS.value not in operations_of(server)
    assert pollers() == []
    clock.advance(OPERATION_SECONDS)
    assert compute.get_vm(vm.id).power_state is Power.DEALLOCATED


def test_begin_create_incremental_snapshot_returns_while_the_snapshot_is_creating(server, compute, clock):
    vm = vm_in(server, PowerState.RUNNING)
    disk = vm.os_disk
    snapshot_id = (
        f"/subscriptions/{vm.subscription_id}/resourceGroups/{vm.resource_group}"
        "/providers/Microsoft.Compute/snapshots/prepost-adapter-test"
    )

    created = compute.begin_create_incremental_snapshot(
        snapshot_id, source_disk_id=disk.id, location=vm.location, tags={"prepost-run": "r"}
    )

    assert created is None
    assert compute.get_snapshot(snapshot_id).provisioning_state == "Creating"
    assert Operation.OPERATION_STATUS.value not in operations_of(server)
    assert pollers() == []
    clock.advance(OPERATION_SECONDS)
    snapshot = compute.get_snapshot(snapshot_id)
    assert snapshot.provisioning_state == "Succeeded"
    assert snapshot.source_disk_id.lower() == disk.id.lower()
    assert snapshot.tags == {"prepost-run": "r"}


def test_begin_delete_snapshot_returns_while_the_snapshot_is_deleting(server, compute, clock):
    vm = vm_in(server, PowerState.RUNNING)
    snapshot_id = (
        f"/subscriptions/{vm.subscription_id}/resourceGroups/{vm.resource_group}"
        "/providers/Microsoft.Compute/snapshots/prepost-adapter-delete"
    )
    compute.begin_create_incremental_snapshot(snapshot_id, source_disk_id=vm.os_disk.id, location=vm.location, tags={})
    clock.advance(OPERATION_SECONDS)
    assert compute.get_snapshot(snapshot_id).provisioning_state == "Succeeded"
    polls_before = operations_of(server).count(Operation.OPERATION_STATUS.value)

    deleted = compute.begin_delete_snapshot(snapshot_id)

    assert deleted is None
    assert compute.get_snapshot(snapshot_id).provisioning_state == "Deleting"
    assert operations_of(server).count(Operation.OPERATION_STATUS.value) == polls_before
    assert pollers() == []
    clock.advance(OPERATION_SECONDS)
    assert compute.get_snapshot(snapshot_id) is None
    assert server.state.count(Operation.SNAPSHOT_DELETE.value, snapshot_id) == 1
    # Already gone: ARM answers 204 and there is nothing to wait for.
    compute.begin_delete_snapshot(snapshot_id)


def test_a_refused_begin_is_still_translated(server, compute):
    vm = vm_in(server, PowerState.DEALLOCATED)
    server.fail_next(Operation.VM_START.value, status=429, retry_after=7)

    with pytest.raises(Throttled) as caught:
        compute.begin_start_vm(vm.id)

    assert caught.value.retry_after is not None and caught.value.retry_after.total_seconds() == 7
    assert server.state.power_state(vm.id) is PowerState.DEALLOCATED


def test_an_operation_that_fails_later_shows_as_the_power_state_going_back(server, compute, clock):
    vm = vm_in(server, PowerState.DEALLOCATED)
    server.fail_next(Operation.VM_START.value, status=500, on_completion=True)

    compute.begin_start_vm(vm.id)  # accepted: the failure comes with the operation's end

    assert compute.get_vm(vm.id).power_state is Power.STARTING
    clock.advance(OPERATION_SECONDS)
    assert compute.get_vm(vm.id).power_state is Power.DEALLOCATED


# azure-mgmt-compute 39 can hand back the raw JSON instead of a model when the first responses
# of a process are deserialised on several threads at once (its models set up their field tables
# lazily, without a lock; https://github.com/Azure/azure-sdk-for-python/issues/47426). Here the
# SDK's deserialiser is made to do what it does in that race, for every answer.
@pytest.fixture
def raced_sdk(monkeypatch):
    from azure.mgmt.compute.operations import _operations

    monkeypatch.setattr(_operations, "_deserialize", lambda model, data, *args, **kwargs: data)


def test_the_adapter_reads_a_vm_the_sdk_returned_as_a_raw_dict(server, compute, raced_sdk):
    vm = vm_in(server, PowerState.RUNNING)
    raw = compute._clients.compute(vm.subscription_id).virtual_machines.get(
        vm.resource_group, vm.name, expand="instanceView"
    )
    assert type(raw) is dict  # the race's answer, reproduced

    found = compute.get_vm(vm.id)

    assert found.resource_id.lower() == vm.id.lower()
    assert found.power_state is Power.RUNNING
    assert found.os_disk_id.lower() == vm.os_disk.id.lower()
    assert [d.lower() for d in found.data_disk_ids] == [d.id.lower() for d in vm.data_disks]
    assert found.patch is not None and found.patch.patch_mode == vm.patch_mode.value
    assert found.patch.bypass_platform_safety_checks is vm.bypass_platform_safety_checks


def test_the_adapter_reads_snapshots_and_disks_the_sdk_returned_as_raw_dicts(server, compute, clock, raced_sdk):
    vm = vm_in(server, PowerState.RUNNING)
    snapshot_id = (
        f"/subscriptions/{vm.subscription_id}/resourceGroups/{vm.resource_group}"
        "/providers/Microsoft.Compute/snapshots/prepost-raced"
    )
    compute.begin_create_incremental_snapshot(snapshot_id, source_disk_id=vm.os_disk.id, location=vm.location, tags={})
    clock.advance(OPERATION_SECONDS)

    snapshot = compute.get_snapshot(snapshot_id)

    assert snapshot.provisioning_state == "Succeeded"
    assert snapshot.source_disk_id.lower() == vm.os_disk.id.lower()
    assert snapshot.created_at is not None and snapshot.created_at.tzinfo is not None
    assert [s.resource_id.lower() for s in compute.list_snapshots(vm.subscription_id, vm.resource_group)] == [
        snapshot_id.lower()
    ]
    assert compute.get_disk_location(vm.os_disk.id) == vm.location


def test_a_model_and_its_raw_json_read_the_same():
    from azure.mgmt.compute._utils.model_base import _deserialize
    from azure.mgmt.compute.models import VirtualMachine as VmModel

    from shared.adapters.arm.compute import _to_vm

    raw = {
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
        "location": "westeurope",
        "properties": {
            "storageProfile": {
                "osDisk": {"managedDisk": {"id": "os"}},
                "dataDisks": [{"lun": 0, "managedDisk": {"id": "d0"}}, {"lun": 1}],
            },
            "osProfile": {"windowsConfiguration": {"patchSettings": {"patchMode": "AutomaticByOS"}}},
            "instanceView": {"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/deallocated"}]},
        },
    }
    model = _deserialize(VmModel, raw)

    assert _to_vm(model) == _to_vm(raw)
    assert _to_vm(raw).data_disk_ids == ("d0",)
    assert _to_vm(raw).power_state is Power.DEALLOCATED
    assert (_to_vm(raw).patch.os_type, _to_vm(raw).patch.patch_mode) == ("Windows", "AutomaticByOS")
