"""Snapshots through the real ComputeManagementClient: the 202 protocol and Azure's limits."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute.models import CreationData, Snapshot

from prepost.simulator import Estate, LroConfig, LroTiming, ManualClock, SimulatorServer

AUTH = {"Authorization": "Bearer test"}


def snapshot_of(disk, tags: dict[str, str] | None = None, location: str | None = None) -> Snapshot:
    return Snapshot(
        location=location or disk.location,
        tags=tags or {"prepost-run": "20261122020000"},
        creation_data=CreationData(create_option="Copy", source_resource_id=disk.id),
        incremental=True,
    )


@pytest.fixture
def vm(estate: Estate):
    return next(v for v in estate.vms if v.data_disks)


def test_create_polls_to_succeeded_then_get(compute, server: SimulatorServer, vm, clock: ManualClock) -> None:
    client = compute(vm.subscription_id).snapshots
    start = server.state.next_request_index

    created = client.begin_create_or_update(vm.resource_group, "snap-os", snapshot_of(vm.os_disk)).result()
    fetched = client.get(vm.resource_group, "snap-os")

    assert created.provisioning_state == "Succeeded"
    assert (fetched.id, fetched.location, fetched.incremental) == (created.id, vm.location, True)
    assert fetched.creation_data.source_resource_id == vm.os_disk.id
    assert fetched.time_created == clock.now()
    assert fetched.tags == {"prepost-run": "20261122020000"}
    trail = [(r.method, r.operation, r.status) for r in server.state.requests(since=start)]
    assert trail[:3] == [
        ("PUT", "snapshots.create", 202),
        ("GET", "operations.get", 200),
        ("GET", "snapshots.get", 200),
    ]


def test_put_answers_202_never_201(server: SimulatorServer, vm) -> None:
    url = f"{server.url}{vm.os_disk.id.rsplit('/disks/', 1)[0]}/snapshots/raw"
    body = {
        "location": vm.location,
        "properties": {
            "incremental": True,
            "creationData": {"createOption": "Copy", "sourceResourceId": vm.os_disk.id},
        },
    }

    response = requests.put(f"{url}?api-version=2024-03-02", json=body, headers=AUTH, timeout=5)

    assert response.status_code == 202
    assert "/DiskOperations/" in response.headers["Azure-AsyncOperation"]
    assert response.json()["properties"]["provisioningState"] == "Creating"


def test_putting_the_same_name_again_updates_it(compute, server: SimulatorServer, vm) -> None:
    client = compute(vm.subscription_id).snapshots

    client.begin_create_or_update(vm.resource_group, "snap-os", snapshot_of(vm.os_disk, {"try": "1"})).result()
    again = client.begin_create_or_update(vm.resource_group, "snap-os", snapshot_of(vm.os_disk, {"try": "2"})).result()

    snapshots = server.state.snapshots()
    assert len(snapshots) == 1
    assert (snapshots[0].put_count, again.tags) == (2, {"try": "2"})
    assert server.state.count("snapshots.create", again.id) == 2


def test_reusing_a_name_for_another_disk_conflicts(compute, vm) -> None:
    client = compute(vm.subscription_id).snapshots
    client.begin_create_or_update(vm.resource_group, "snap", snapshot_of(vm.os_disk)).result()

    with pytest.raises(HttpResponseError) as raised:
        client.begin_create_or_update(vm.resource_group, "snap", snapshot_of(vm.data_disks[0]))

    assert raised.value.status_code == 409
    assert raised.value.error.code == "PropertyChangeNotAllowed"


def test_at_most_seven_incremental_snapshots_per_disk_in_five_minutes(
    compute, server: SimulatorServer, vm, clock: ManualClock
) -> None:
    client = compute(vm.subscription_id).snapshots
    for n in range(7):
        client.begin_create_or_update(vm.resource_group, f"snap-{n}", snapshot_of(vm.os_disk)).result()

    with pytest.raises(HttpResponseError) as raised:
        client.begin_create_or_update(vm.resource_group, "snap-7", snapshot_of(vm.os_disk))
    other_disk = client.begin_create_or_update(vm.resource_group, "other", snapshot_of(vm.data_disks[0])).result()
    clock.advance(301)
    later = client.begin_create_or_update(vm.resource_group, "snap-7", snapshot_of(vm.os_disk)).result()

    assert raised.value.status_code == 409
    assert raised.value.error.code == "OperationNotAllowed"
    assert other_disk.provisioning_state == later.provisioning_state == "Succeeded"
    assert len(server.state.snapshots()) == 9


def test_source_disk_must_exist(compute, server: SimulatorServer, vm) -> None:
    missing = vm.os_disk.id.replace("-osdisk", "-gone")
    body = Snapshot(
        location=vm.location,
        creation_data=CreationData(create_option="Copy", source_resource_id=missing),
        incremental=True,
    )

    with pytest.raises(ResourceNotFoundError):
        compute(vm.subscription_id).snapshots.begin_create_or_update(vm.resource_group, "snap", body)

    assert server.state.snapshots() == []


def test_snapshot_must_be_in_the_disks_region(compute, vm) -> None:
    with pytest.raises(HttpResponseError) as raised:
        compute(vm.subscription_id).snapshots.begin_create_or_update(
            vm.resource_group, "snap", snapshot_of(vm.os_disk, location="eastus")
        )

    assert raised.value.status_code == 400


@pytest.mark.parametrize("name", ["-starts-with-hyphen", "ends.with.period.", "x" * 81, "has space"])
def test_invalid_names_are_rejected(server: SimulatorServer, vm, name: str) -> None:
    url = (
        f"{server.url}/subscriptions/{vm.subscription_id}/resourceGroups/{vm.resource_group}"
        f"/providers/Microsoft.Compute/snapshots/{name}?api-version=2024-03-02"
    )
    body = {
        "location": vm.location,
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": vm.os_disk.id}},
    }

    response = requests.put(url, json=body, headers=AUTH, timeout=5)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidResourceName"


def test_get_of_a_missing_snapshot_is_an_arm_404(compute, server: SimulatorServer, vm) -> None:
    with pytest.raises(ResourceNotFoundError) as raised:
        compute(vm.subscription_id).snapshots.get(vm.resource_group, "nothing-here")

    assert raised.value.status_code == 404
    assert raised.value.error.code == "ResourceNotFound"


def test_delete_is_long_running_and_idempotent(compute, server: SimulatorServer, vm) -> None:
    client = compute(vm.subscription_id).snapshots
    client.begin_create_or_update(vm.resource_group, "snap", snapshot_of(vm.os_disk)).result()
    start = server.state.next_request_index

    client.begin_delete(vm.resource_group, "snap").result()
    client.begin_delete(vm.resource_group, "snap").result()

    assert server.state.snapshots() == []
    deletes = [r.status for r in server.state.requests(since=start) if r.method == "DELETE"]
    assert deletes == [202, 204]


def test_list_by_resource_group(compute, vm) -> None:
    client = compute(vm.subscription_id).snapshots
    client.begin_create_or_update(vm.resource_group, "a", snapshot_of(vm.os_disk)).result()
    client.begin_create_or_update(vm.resource_group, "b", snapshot_of(vm.data_disks[0])).result()

    names = sorted(s.name for s in client.list_by_resource_group(vm.resource_group))

    assert names == ["a", "b"]
    assert list(client.list_by_resource_group("rg-prepost")) == []


def test_a_failed_operation_creates_nothing(compute, server: SimulatorServer, vm) -> None:
    server.fail_next("snapshots.create", status=500, on_completion=True, code="InternalDiskManagementError")

    with pytest.raises(HttpResponseError) as raised:
        compute(vm.subscription_id).snapshots.begin_create_or_update(
            vm.resource_group, "snap", snapshot_of(vm.os_disk)
        ).result()

    assert "InternalDiskManagementError" in str(raised.value)
    assert server.state.snapshots() == []


def test_snapshot_is_creating_until_its_operation_ends(
    compute, server: SimulatorServer, vm, clock: ManualClock
) -> None:
    server.configure_lro(LroConfig(per_operation={"snapshots.create": LroTiming(polls=100, seconds=30)}))
    client = compute(vm.subscription_id).snapshots

    client.begin_create_or_update(vm.resource_group, "snap", snapshot_of(vm.os_disk), polling=False)
    creating = client.get(vm.resource_group, "snap").provisioning_state
    clock.advance(30)

    assert creating == "Creating"
    assert client.get(vm.resource_group, "snap").provisioning_state == "Succeeded"
