"""Virtual machines and disks through the real ComputeManagementClient."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from prepost.simulator import (
    Estate,
    LroConfig,
    LroTiming,
    ManualClock,
    PatchMode,
    PowerState,
    SimulatorServer,
)

AUTH = {"Authorization": "Bearer test"}


def first_vm(estate: Estate, power: PowerState):
    return next(vm for vm in estate.vms if vm.power_state is power)


def power_code(vm) -> str:
    return next(s.code for s in vm.instance_view.statuses if s.code.startswith("PowerState/"))


def test_get_with_instance_view(compute, estate: Estate) -> None:
    vm = next(v for v in estate.vms if v.data_disks and v.power_state is PowerState.RUNNING)

    got = compute(vm.subscription_id).virtual_machines.get(vm.resource_group, vm.name, expand="instanceView")

    assert got.id == vm.id and got.location == vm.location and got.tags == vm.tags
    assert [s.code for s in got.instance_view.statuses] == [
        "ProvisioningState/succeeded",
        "PowerState/running",
    ]
    assert got.storage_profile.os_disk.managed_disk.id == vm.os_disk.id
    assert got.storage_profile.os_disk.os_type == vm.os_type.value
    assert [(d.lun, d.name, d.managed_disk.id) for d in got.storage_profile.data_disks] == [
        (lun, disk.name, disk.id) for lun, disk in enumerate(vm.data_disks)
    ]


def test_get_without_expand_has_no_instance_view(compute, estate: Estate) -> None:
    vm = estate.vms[0]

    got = compute(vm.subscription_id).virtual_machines.get(vm.resource_group, vm.name)

    assert got.instance_view is None


def test_patch_settings_show_unsafe_orchestration() -> None:
    estate = Estate.from_machines(
        [
            {
                "id": "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg/providers/"
                "Microsoft.Compute/virtualMachines/win-1",
                "osType": "Windows",
                "patchMode": "AutomaticByOS",
            },
            {
                "id": "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg/providers/"
                "Microsoft.Compute/virtualMachines/lnx-1",
                "patchMode": "AutomaticByPlatform",
                "bypassPlatformSafetyChecksOnUserSchedule": False,
            },
        ]
    )
    from azure.mgmt.compute import ComputeManagementClient

    from .conftest import StaticCredential, client_options

    with SimulatorServer(estate) as server:
        client = ComputeManagementClient(StaticCredential(), estate.vms[0].subscription_id, **client_options(server))
        windows = client.virtual_machines.get("rg", "win-1").os_profile.windows_configuration.patch_settings
        linux = client.virtual_machines.get("RG", "LNX-1").os_profile.linux_configuration.patch_settings

    assert windows.patch_mode == PatchMode.AUTOMATIC_BY_OS.value
    assert windows.automatic_by_platform_settings is None
    assert linux.patch_mode == "AutomaticByPlatform"
    assert linux.automatic_by_platform_settings.bypass_platform_safety_checks_on_user_schedule is False


def test_missing_vm_raises_resource_not_found(compute, estate: Estate) -> None:
    vm = estate.vms[0]

    with pytest.raises(ResourceNotFoundError) as raised:
        compute(vm.subscription_id).virtual_machines.get(vm.resource_group, "no-such-vm")

    assert raised.value.error.code == "ResourceNotFound"
    assert "no-such-vm" in raised.value.error.message


def test_unknown_subscription_and_resource_group(compute, estate: Estate) -> None:
    with pytest.raises(ResourceNotFoundError) as raised:
        compute("00000000-0000-4000-8000-000000000000").virtual_machines.get("rg", "vm")
    assert raised.value.error.code == "SubscriptionNotFound"

    with pytest.raises(ResourceNotFoundError) as raised:
        compute(estate.vms[0].subscription_id).virtual_machines.get("rg-nowhere", "vm")
    assert raised.value.error.code == "ResourceGroupNotFound"


def test_start_and_deallocate_change_power_state(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = first_vm(estate, PowerState.DEALLOCATED)
    client = compute(vm.subscription_id).virtual_machines

    client.begin_start(vm.resource_group, vm.name).result()
    running = power_code(client.get(vm.resource_group, vm.name, expand="instanceView"))
    client.begin_deallocate(vm.resource_group, vm.name).result()

    assert running == "PowerState/running"
    assert server.state.power_state(vm.id) is PowerState.DEALLOCATED
    record = server.state.vm(vm.id)
    assert (record.start_count, record.deallocate_count) == (1, 1)
    assert server.state.count("vm.start", vm.id) == 1
    assert server.state.count("vm.deallocate") == 1


def test_start_answers_202_with_operation_headers(server: SimulatorServer, estate: Estate) -> None:
    vm = first_vm(estate, PowerState.DEALLOCATED)

    response = requests.post(f"{server.url}{vm.id}/start?api-version=2024-07-01", headers=AUTH, timeout=5)

    assert response.status_code == 202
    status_url = response.headers["Azure-AsyncOperation"]
    assert status_url.startswith(
        f"{server.url}/subscriptions/{vm.subscription_id}/providers/Microsoft.Compute/locations/{vm.location}/operations/"
    )
    assert response.headers["Location"].endswith("&monitor=true")
    assert response.headers["Retry-After"] == "0"
    assert requests.get(status_url, headers=AUTH, timeout=5).json()["status"] == "Succeeded"
    assert server.state.power_state(vm.id) is PowerState.RUNNING


def test_operations_can_take_several_polls(compute, server: SimulatorServer, estate: Estate) -> None:
    server.configure_lro(LroConfig(per_operation={"vm.start": LroTiming(polls=3, seconds=None)}))
    vm = first_vm(estate, PowerState.DEALLOCATED)
    client = compute(vm.subscription_id).virtual_machines
    accepted = requests.post(f"{server.url}{vm.id}/start?api-version=2024-07-01", headers=AUTH, timeout=5)

    transitional = power_code(client.get(vm.resource_group, vm.name, expand="instanceView"))
    statuses = [requests.get(accepted.headers["Azure-AsyncOperation"], headers=AUTH, timeout=5) for _ in range(3)]

    assert transitional == "PowerState/starting"
    assert [s.json()["status"] for s in statuses] == ["InProgress", "InProgress", "Succeeded"]
    assert "Retry-After-Ms" in statuses[0].headers
    assert server.state.power_state(vm.id) is PowerState.RUNNING


def test_sdk_pollers_finish_multi_poll_operations(compute, server: SimulatorServer, estate: Estate) -> None:
    server.configure_lro(LroConfig(default=LroTiming(polls=4, seconds=None)))
    vm = first_vm(estate, PowerState.DEALLOCATED)

    # The SDK's default polling interval (30 s) applies only without a retry-after hint; the
    # simulator's Retry-After-Ms on InProgress answers keeps this quick.
    client = compute(vm.subscription_id, polling_interval=30).virtual_machines
    client.begin_start(vm.resource_group, vm.name).result()

    assert server.state.power_state(vm.id) is PowerState.RUNNING
    assert [r.operation for r in server.state.requests()].count("operations.get") == 5


def test_operations_can_take_time_on_the_clock(
    compute, server: SimulatorServer, estate: Estate, clock: ManualClock
) -> None:
    server.configure_lro(LroConfig(default=LroTiming(polls=1_000, seconds=60)))
    vm = first_vm(estate, PowerState.RUNNING)
    client = compute(vm.subscription_id).virtual_machines

    client.begin_deallocate(vm.resource_group, vm.name, polling=False)
    before = server.state.power_state(vm.id)
    clock.advance(60)

    assert before is PowerState.DEALLOCATING
    assert server.state.power_state(vm.id) is PowerState.DEALLOCATED


def test_a_second_action_during_an_operation_conflicts(compute, server: SimulatorServer, estate: Estate) -> None:
    server.configure_lro(LroConfig(default=LroTiming(polls=5, seconds=None)))
    vm = first_vm(estate, PowerState.DEALLOCATED)
    client = compute(vm.subscription_id).virtual_machines
    client.begin_start(vm.resource_group, vm.name, polling=False)

    with pytest.raises(HttpResponseError) as raised:
        client.begin_deallocate(vm.resource_group, vm.name)

    assert raised.value.status_code == 409


def test_start_of_a_running_vm_succeeds_and_is_counted(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = first_vm(estate, PowerState.RUNNING)

    compute(vm.subscription_id).virtual_machines.begin_start(vm.resource_group, vm.name).result()

    assert server.state.power_state(vm.id) is PowerState.RUNNING
    assert server.state.count("vm.start", vm.id) == 1


def test_paths_match_case_insensitively(server: SimulatorServer, estate: Estate) -> None:
    vm = estate.vms[0]
    shouting = vm.id.replace("Microsoft.Compute/virtualMachines", "MICROSOFT.COMPUTE/VIRTUALMACHINES").replace(
        "resourceGroups", "resourcegroups"
    )

    response = requests.get(f"{server.url}{shouting.upper()}?api-version=2024-07-01", headers=AUTH, timeout=5)

    assert response.status_code == 200
    assert response.json()["id"] == vm.id


def test_get_disk(compute, estate: Estate) -> None:
    vm = next(v for v in estate.vms if v.data_disks)
    client = compute(vm.subscription_id).disks

    os_disk = client.get(vm.resource_group, vm.os_disk.name)
    data_disk = client.get(vm.resource_group, vm.data_disks[0].name)

    assert (os_disk.location, os_disk.disk_size_gb, os_disk.os_type) == (
        vm.location,
        vm.os_disk.size_gb,
        vm.os_type.value,
    )
    assert os_disk.managed_by == vm.id
    assert data_disk.os_type is None
    assert data_disk.provisioning_state == "Succeeded"
    with pytest.raises(ResourceNotFoundError):
        client.get(vm.resource_group, "missing-disk")


def test_concurrent_clients_each_get_their_own_answer(compute, server: SimulatorServer, estate: Estate) -> None:
    def cycle(vm) -> str:
        client = compute(vm.subscription_id).virtual_machines
        client.begin_start(vm.resource_group, vm.name).result()
        client.begin_deallocate(vm.resource_group, vm.name).result()
        return power_code(client.get(vm.resource_group, vm.name, expand="instanceView"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(cycle, estate.vms))

    assert codes == ["PowerState/deallocated"] * len(estate.vms)
    assert server.state.count("vm.start") == server.state.count("vm.deallocate") == len(estate.vms)
