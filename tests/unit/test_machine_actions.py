"""Machine actions: start, snapshot, agent check, deallocate and prune, each idempotent."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.errors import PermanentError, Throttled, TransientError
from shared.models.ids import ResourceId, run_key
from shared.models.messages import TaskMessage
from shared.models.run import Action, Phase, TaskStatus
from shared.ports.azure import PatchSettings, PowerState, Snapshot
from shared.usecases.machine_actions import (
    SNAPSHOT_NAME_LIMIT,
    TAG_CONFIGURATION,
    TAG_DISK,
    TAG_MACHINE,
    TAG_RUN,
    TRANSITION_RECHECK,
    MachinePorts,
    perform_machine_action,
    snapshot_id_for,
)
from tests.fakes_azure import FakeEstate, disk_id

AZURE_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9_]$")


def planned(**vm) -> tuple[FakeEstate, str]:
    estate = FakeEstate()
    machine = estate.add_vm("vm-web-01", **vm)
    estate.planned_pre()
    return estate, machine


def act(estate: FakeEstate, action: Action, target: str, *, phase: Phase = Phase.PRE, options=None, now=None):
    message = TaskMessage(run_key=estate.key, phase=phase, action=action, target=target, options=options or {})
    ports = MachinePorts(records=estate.records, compute=estate.compute, arc=estate.arc)
    return perform_machine_action(message, ports, now=now or estate.now)


def run_record(estate: FakeEstate):
    return estate.records.get_run(estate.key)


# -- start -------------------------------------------------------------------------------


def test_a_deallocated_vm_is_started_and_marked_as_ours_before_the_call():
    estate, vm = planned(power_state=PowerState.DEALLOCATED)
    marker_at_call = []
    estate.compute.before["start_vm"] = lambda _: marker_at_call.append(
        estate.task(Phase.PRE, Action.START_VM, vm).data.get("start_requested")
    )

    result = act(estate, Action.START_VM, vm)

    assert marker_at_call == [True]
    assert estate.compute.power_state(vm) is PowerState.RUNNING
    assert result.status is TaskStatus.SUCCEEDED
    assert result.data["started_by_us"] is True
    assert result.data["power_state_before"] == "deallocated"


def test_the_intent_marker_survives_a_failed_start_so_post_still_deallocates():
    estate, vm = planned(power_state=PowerState.DEALLOCATED)
    estate.compute.fail("start_vm", TransientError("timeout"))

    with pytest.raises(TransientError):
        act(estate, Action.START_VM, vm)

    assert estate.task(Phase.PRE, Action.START_VM, vm).data["start_requested"] is True


def test_a_stopped_but_allocated_vm_is_started():
    estate, vm = planned(power_state=PowerState.STOPPED)

    result = act(estate, Action.START_VM, vm)

    assert estate.compute.calls_to("start_vm") == [(vm,)]
    assert result.data["started_by_us"] is True


def test_a_running_vm_without_the_marker_is_not_ours():
    estate, vm = planned(power_state=PowerState.RUNNING)

    result = act(estate, Action.START_VM, vm)

    assert estate.compute.calls_to("start_vm") == []
    assert result.status is TaskStatus.SUCCEEDED
    assert result.data["started_by_us"] is False
    assert "left as it was found" in result.detail


def test_a_running_vm_with_the_marker_was_started_by_an_earlier_attempt():
    estate, vm = planned(power_state=PowerState.DEALLOCATED)
    estate.compute.before["start_vm"] = lambda _: (_ for _ in ()).throw(TimeoutError("worker died"))
    with pytest.raises(TimeoutError):
        act(estate, Action.START_VM, vm)
    del estate.compute.before["start_vm"]
    estate.compute.vms[vm.lower()] = replace(estate.compute.vms[vm.lower()], power_state=PowerState.RUNNING)

    result = act(estate, Action.START_VM, vm)

    assert result.data["started_by_us"] is True
    assert "earlier attempt" in result.detail


@pytest.mark.parametrize("state", [PowerState.STARTING, PowerState.DEALLOCATING, PowerState.STOPPING])
def test_a_vm_in_transition_is_retried_later(state):
    estate, vm = planned(power_state=state)

    with pytest.raises(TransientError) as caught:
        act(estate, Action.START_VM, vm)

    assert caught.value.retry_after == TRANSITION_RECHECK
    assert estate.compute.calls_to("start_vm") == []


@pytest.mark.parametrize(
    "patch",
    [
        PatchSettings("Linux", "ImageDefault", False),
        PatchSettings("Windows", "AutomaticByOS", False),
        PatchSettings("Linux", "AutomaticByPlatform", False),
        PatchSettings("Windows", None, False),
    ],
    ids=["image-default", "automatic-by-os", "no-bypass", "unset"],
)
def test_an_unsafe_patch_mode_is_a_warning_in_the_data(patch):
    estate, vm = planned(power_state=PowerState.DEALLOCATED, patch=patch)

    result = act(estate, Action.START_VM, vm)

    assert result.status is TaskStatus.SUCCEEDED
    assert "outside the schedule" in result.data["warning"]
    assert result.data["warning"] in result.detail
    assert (patch.patch_mode or "unset") in result.data["warning"]


@pytest.mark.parametrize("patch", [PatchSettings("Linux", "AutomaticByPlatform", True), None], ids=["safe", "unknown"])
def test_a_safe_or_unknown_patch_mode_gives_no_warning(patch):
    estate, vm = planned(power_state=PowerState.RUNNING, patch=patch)

    assert "warning" not in act(estate, Action.START_VM, vm).data


def test_a_missing_vm_is_permanent():
    estate, vm = planned()
    del estate.compute.vms[vm.lower()]

    with pytest.raises(PermanentError):
        act(estate, Action.START_VM, vm)


def test_starting_a_vm_whose_task_was_never_planned_is_permanent():
    estate, _ = planned()
    other = estate.add_vm("vm-not-planned", in_run=False)

    with pytest.raises(PermanentError):
        act(estate, Action.START_VM, other)
    assert estate.compute.calls_to("start_vm") == []


# -- snapshots ---------------------------------------------------------------------------


def test_snapshot_ids_are_deterministic_per_run_and_disk():
    estate, vm = planned()
    run = run_record(estate)
    os_disk = estate.compute.vms[vm.lower()].os_disk_id
    next_week = run.correlation_id[:-14] + "20261129020000"
    other_run = replace(run, correlation_id=next_week, run_key=run_key(next_week))
    data_disk = disk_id("vm-web-01_DataDisk_0", subscription=estate.subscriptions[0])

    assert snapshot_id_for(run, os_disk) == snapshot_id_for(run, os_disk)
    # The same disk spelled in another case names the same snapshot (Azure ids ignore case).
    upper_disk = os_disk.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")
    assert ResourceId(snapshot_id_for(run, os_disk)) == ResourceId(snapshot_id_for(run, upper_disk))
    assert snapshot_id_for(run, os_disk) != snapshot_id_for(other_run, os_disk)
    assert snapshot_id_for(run, os_disk) != snapshot_id_for(run, data_disk)


def test_a_snapshot_lives_next_to_its_disk():
    estate, _ = planned()
    disk = disk_id("d1", subscription=estate.subscriptions[1], resource_group="rg-disks")

    snapshot = ResourceId(snapshot_id_for(run_record(estate), disk))

    assert snapshot.subscription_id == estate.subscriptions[1]
    assert snapshot.resource_group == "rg-disks"
    assert snapshot.provider_type == "microsoft.compute/snapshots"


@pytest.mark.parametrize("name", ["d", "vm-web-01_OsDisk_1_" + "a" * 100, "x" * 47 + "--..--", "disk with spaces"])
def test_snapshot_names_fit_azure_rules_and_stay_unique_when_cut(name):
    estate, _ = planned()
    run = run_record(estate)
    disk = disk_id(name, subscription=estate.subscriptions[0])
    sibling = disk_id(name + "-2", subscription=estate.subscriptions[0])

    snapshot_name = ResourceId(snapshot_id_for(run, disk)).name

    assert len(snapshot_name) <= SNAPSHOT_NAME_LIMIT
    assert AZURE_SNAPSHOT_NAME.match(snapshot_name), snapshot_name
    assert snapshot_id_for(run, disk) != snapshot_id_for(run, sibling)


def test_the_os_disk_is_snapshotted_incrementally_with_tags():
    estate, vm = planned(data_disks=2, location="northeurope")
    machine = estate.compute.vms[vm.lower()]
    run = run_record(estate)

    result = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "os"})

    [(snapshot_id, source, location, tags)] = estate.compute.calls_to("create_incremental_snapshot")
    assert snapshot_id == snapshot_id_for(run, machine.os_disk_id)
    assert (source, location) == (machine.os_disk_id, "northeurope")
    assert tags == {
        TAG_RUN: run.run_key,
        TAG_CONFIGURATION: run.configuration_name,
        TAG_MACHINE: ResourceId(vm).name,
        TAG_DISK: ResourceId(machine.os_disk_id).name,
    }
    assert result.status is TaskStatus.SUCCEEDED
    assert result.data["snapshots"] == [snapshot_id]


def test_all_disks_includes_the_data_disks():
    estate, vm = planned(data_disks=2)
    machine = estate.compute.vms[vm.lower()]

    result = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"})

    sources = [call[1] for call in estate.compute.calls_to("create_incremental_snapshot")]
    assert sources == [machine.os_disk_id, *machine.data_disk_ids]
    assert len(result.data["snapshots"]) == 3


def test_an_existing_succeeded_snapshot_is_reused():
    estate, vm = planned()
    act(estate, Action.SNAPSHOT_DISKS, vm)
    estate.compute.calls.clear()

    result = act(estate, Action.SNAPSHOT_DISKS, vm)

    assert estate.compute.calls_to("create_incremental_snapshot") == []
    assert "1 reused" in result.detail
    assert len(estate.compute.snapshots) == 1


@pytest.mark.parametrize("state", ["Failed", "Creating"])
def test_an_existing_snapshot_that_did_not_succeed_is_created_again(state):
    estate, vm = planned()
    machine = estate.compute.vms[vm.lower()]
    snapshot_id = snapshot_id_for(run_record(estate), machine.os_disk_id)
    estate.compute.add_snapshot(Snapshot(snapshot_id, machine.os_disk_id, None, {}, state))

    act(estate, Action.SNAPSHOT_DISKS, vm)

    assert [call[0] for call in estate.compute.calls_to("create_incremental_snapshot")] == [snapshot_id]
    assert estate.compute.snapshots[snapshot_id.lower()].provisioning_state == "Succeeded"


def test_a_throttled_snapshot_retried_creates_no_duplicates():
    estate, vm = planned(data_disks=1)
    estate.compute.fail("create_incremental_snapshot", None, Throttled("429", retry_after=timedelta(seconds=60)))

    with pytest.raises(Throttled):
        act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"})
    result = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"})

    assert len(estate.compute.snapshots) == 2
    assert "1 created, 1 reused" in result.detail


def test_a_vm_without_managed_disks_cannot_be_snapshotted():
    estate, vm = planned(os_disk=False)

    with pytest.raises(PermanentError):
        act(estate, Action.SNAPSHOT_DISKS, vm)


# -- Arc agent ---------------------------------------------------------------------------


def test_a_connected_arc_agent_is_reported_with_its_version():
    estate = FakeEstate()
    arc = estate.add_arc("srv-01", status="Connected", agent_version="1.48")
    estate.planned_pre()

    result = act(estate, Action.CHECK_ARC_AGENT, arc)

    assert result.status is TaskStatus.SUCCEEDED
    assert result.data == {"agent_status": "Connected", "agent_version": "1.48"}


@pytest.mark.parametrize("status", ["Disconnected", "Expired"])
def test_an_arc_agent_not_connected_is_a_warning(status):
    estate = FakeEstate()
    arc = estate.add_arc("srv-01", status=status, last_status_change=estate.now - timedelta(days=3))
    estate.planned_pre()

    result = act(estate, Action.CHECK_ARC_AGENT, arc)

    assert result.status is TaskStatus.SUCCEEDED
    assert status in result.data["warning"]
    assert "cannot patch" in result.detail


def test_a_missing_arc_server_is_permanent():
    estate = FakeEstate()
    arc = estate.add_arc("srv-01")
    estate.planned_pre()
    estate.arc.machines.clear()

    with pytest.raises(PermanentError):
        act(estate, Action.CHECK_ARC_AGENT, arc)


# -- deallocate --------------------------------------------------------------------------


@pytest.mark.parametrize("state", [PowerState.RUNNING, PowerState.STOPPED])
def test_a_vm_that_is_not_deallocated_is_deallocated(state):
    estate, vm = planned(power_state=state)

    result = act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST)

    assert estate.compute.calls_to("deallocate_vm") == [(vm,)]
    assert estate.compute.power_state(vm) is PowerState.DEALLOCATED
    assert result.data["power_state_before"] == state.value


def test_an_already_deallocated_vm_is_left_alone():
    estate, vm = planned(power_state=PowerState.DEALLOCATED)

    result = act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST)

    assert estate.compute.calls_to("deallocate_vm") == []
    assert result.status is TaskStatus.SUCCEEDED
    assert "already deallocated" in result.detail


@pytest.mark.parametrize("state", [PowerState.STARTING, PowerState.DEALLOCATING, PowerState.STOPPING])
def test_deallocating_a_vm_in_transition_is_retried_later(state):
    estate, vm = planned(power_state=state)

    with pytest.raises(TransientError):
        act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST)
    assert estate.compute.calls_to("deallocate_vm") == []


# -- prune -------------------------------------------------------------------------------


def test_prune_deletes_only_old_snapshots_of_that_machine_and_never_this_runs():
    estate, vm = planned()
    run = run_record(estate)
    sub, rg = estate.subscriptions[0], "rg-app"
    now = estate.now
    old, recent = now - timedelta(days=30), now - timedelta(days=2)

    def snapshot(name, created, **tags):
        resource_id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{name}"
        estate.compute.add_snapshot(Snapshot(resource_id, "disk", created, tags))
        return resource_id

    doomed = snapshot("old-of-vm", old, **{TAG_MACHINE: "VM-WEB-01", TAG_RUN: "an-earlier-run"})
    snapshot("recent-of-vm", recent, **{TAG_MACHINE: "vm-web-01", TAG_RUN: "last-week"})
    snapshot("old-of-other-vm", old, **{TAG_MACHINE: "vm-db-01", TAG_RUN: "an-earlier-run"})
    snapshot("old-of-this-run", old, **{TAG_MACHINE: "vm-web-01", TAG_RUN: run.run_key})
    snapshot("old-untagged", old)
    snapshot("old-no-date", None, **{TAG_MACHINE: "vm-web-01", TAG_RUN: "an-earlier-run"})

    result = act(estate, Action.PRUNE_SNAPSHOTS, vm, phase=Phase.POST, options={"retention_days": 7})

    assert estate.compute.calls_to("delete_snapshot") == [(doomed,)]
    assert result.data["deleted"] == [doomed]
    assert len(estate.compute.snapshots) == 5
    assert estate.compute.calls_to("list_snapshots") == [(sub, rg)]


def test_prune_without_retention_is_skipped():
    estate, vm = planned()

    result = act(estate, Action.PRUNE_SNAPSHOTS, vm, phase=Phase.POST, options={"retention_days": 0})

    assert result.status is TaskStatus.SKIPPED
    assert estate.compute.calls == []


def test_a_monitoring_action_is_not_a_machine_action():
    estate, _ = planned()

    with pytest.raises(PermanentError):
        act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0])
