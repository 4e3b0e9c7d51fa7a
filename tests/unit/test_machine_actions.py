"""Machine actions: start, snapshot, agent check, deallocate and prune, each idempotent.

Start, deallocate and snapshot begin an Azure operation and answer FollowUp; the fake compute
ends a begun operation at the next look at the resource unless a test says otherwise
(``looks_to_finish=None``: it runs until the test finishes or fails it).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.errors import MessageRejected, PermanentError, Throttled, TransientError
from shared.models.ids import ResourceId, run_key
from shared.models.messages import TaskMessage
from shared.models.run import Action, Phase, TaskRecord, TaskStatus
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
from shared.usecases.task_runner import FollowUp, TaskResult
from tests.fakes_azure import FakeEstate, disk_id

AZURE_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9_]$")


def planned(*, looks_to_finish: int | None = 1, **vm) -> tuple[FakeEstate, str]:
    estate = FakeEstate()
    estate.compute.looks_to_finish = looks_to_finish
    machine = estate.add_vm("vm-web-01", **vm)
    estate.planned_pre()
    return estate, machine


def planned_post(**vm) -> tuple[FakeEstate, str]:
    """A VM whose deallocation task is recorded, as the post planner records it."""
    estate, machine = planned(**vm)
    estate.records.add_tasks([TaskRecord(estate.key, Phase.POST, Action.DEALLOCATE_VM, machine, TaskStatus.QUEUED)])
    return estate, machine


def act(
    estate: FakeEstate,
    action: Action,
    target: str,
    *,
    phase: Phase = Phase.PRE,
    options=None,
    now=None,
    checks: int = 0,
    attempt: int = 1,
    record: bool = True,
) -> TaskResult | FollowUp:
    """One delivery of the task; ``checks`` > 0 makes it a follow-up of an operation begun before.

    With ``record`` (the default) the task is recorded as the planner records it; without, the
    message goes out as it is, recorded or not.
    """
    message = TaskMessage(
        run_key=estate.key,
        phase=phase,
        action=action,
        target=target,
        attempt=attempt,
        checks=checks,
        waiting_since=estate.now.isoformat() if checks else None,
    )
    if record:
        message = estate.as_planned(message, options=options)
    ports = MachinePorts(
        records=estate.records,
        compute=estate.compute,
        arc=estate.arc,
        allowed_subscriptions=estate.allowed_subscriptions,
    )
    return perform_machine_action(message, ports, now=now or estate.now)


def run_record(estate: FakeEstate):
    return estate.records.get_run(estate.key)


def task_data(estate: FakeEstate, action: Action, target: str, phase: Phase = Phase.PRE) -> dict:
    return estate.task(phase, action, target).data


# -- start -------------------------------------------------------------------------------


def test_a_deallocated_vm_is_marked_as_ours_then_started_and_followed_up():
    estate, vm = planned(power_state=PowerState.DEALLOCATED)
    marker_at_call = []
    estate.compute.before["begin_start_vm"] = lambda _: marker_at_call.append(
        task_data(estate, Action.START_VM, vm).get("start_requested")
    )

    result = act(estate, Action.START_VM, vm)

    assert marker_at_call == [True]
    assert result == FollowUp(
        "start VM", "start requested", {"power_state_before": "deallocated", "started_by_us": True}
    )
    assert estate.compute.power_state(vm) is PowerState.STARTING  # begun, not waited for
    assert task_data(estate, Action.START_VM, vm) == {"start_requested": True, "power_state_before": "deallocated"}


def test_the_follow_up_finds_the_vm_running_and_reports_the_state_it_was_started_from():
    estate, vm = planned(power_state=PowerState.DEALLOCATED)
    act(estate, Action.START_VM, vm)

    result = act(estate, Action.START_VM, vm, checks=1)

    assert estate.compute.power_state(vm) is PowerState.RUNNING
    assert result == TaskResult(
        TaskStatus.SUCCEEDED, "started from deallocated", {"power_state_before": "deallocated", "started_by_us": True}
    )
    assert estate.compute.calls_to("begin_start_vm") == [(vm,)]


def test_a_vm_still_starting_is_followed_up_again_without_a_second_start():
    estate, vm = planned(power_state=PowerState.DEALLOCATED, looks_to_finish=None)
    act(estate, Action.START_VM, vm)

    first, second = act(estate, Action.START_VM, vm, checks=1), act(estate, Action.START_VM, vm, checks=2)

    assert (
        first
        == second
        == FollowUp("start VM", "starting", {"power_state_before": "deallocated", "started_by_us": True})
    )
    assert estate.compute.calls_to("begin_start_vm") == [(vm,)]


def test_a_duplicate_of_the_first_delivery_while_starting_follows_up_too():
    estate, vm = planned(power_state=PowerState.DEALLOCATED, looks_to_finish=None)
    act(estate, Action.START_VM, vm)

    duplicate = act(estate, Action.START_VM, vm)  # checks=0: the original message, delivered twice

    assert isinstance(duplicate, FollowUp) and duplicate.state == "starting"
    assert estate.compute.calls_to("begin_start_vm") == [(vm,)]


def test_a_start_that_failed_is_a_transient_error_on_the_follow_up():
    estate, vm = planned(power_state=PowerState.DEALLOCATED, looks_to_finish=None)
    act(estate, Action.START_VM, vm)
    estate.compute.fail_operation(vm)

    with pytest.raises(TransientError, match="start VM did not complete: the VM is deallocated instead of running"):
        act(estate, Action.START_VM, vm, checks=1)

    assert estate.compute.calls_to("begin_start_vm") == [(vm,)]
    assert task_data(estate, Action.START_VM, vm)["start_requested"] is True  # post still deallocates


def test_the_next_attempt_after_a_failed_start_begins_it_again_and_keeps_the_state_before():
    estate, vm = planned(power_state=PowerState.STOPPED, looks_to_finish=None)
    act(estate, Action.START_VM, vm)
    estate.compute.fail_operation(vm)

    again = act(estate, Action.START_VM, vm, attempt=2)
    estate.compute.finish(vm)
    done = act(estate, Action.START_VM, vm, attempt=2, checks=1)

    assert isinstance(again, FollowUp) and again.state == "start requested"
    assert estate.compute.calls_to("begin_start_vm") == [(vm,), (vm,)]
    assert done.status is TaskStatus.SUCCEEDED and done.detail == "started from stopped"
    assert done.data["power_state_before"] == "stopped"


def test_the_intent_marker_survives_a_failed_start_so_post_still_deallocates():
    estate, vm = planned(power_state=PowerState.DEALLOCATED)
    estate.compute.fail("begin_start_vm", TransientError("timeout"))

    with pytest.raises(TransientError):
        act(estate, Action.START_VM, vm)

    assert task_data(estate, Action.START_VM, vm)["start_requested"] is True


def test_a_stopped_but_allocated_vm_is_started():
    estate, vm = planned(power_state=PowerState.STOPPED)

    result = act(estate, Action.START_VM, vm)

    assert estate.compute.calls_to("begin_start_vm") == [(vm,)]
    assert isinstance(result, FollowUp)
    assert result.data == {"power_state_before": "stopped", "started_by_us": True}


def test_a_running_vm_without_the_marker_is_not_ours():
    estate, vm = planned(power_state=PowerState.RUNNING)

    result = act(estate, Action.START_VM, vm)

    assert estate.compute.calls_to("begin_start_vm") == []
    assert result.status is TaskStatus.SUCCEEDED
    assert result.data == {"power_state_before": "running", "started_by_us": False}
    assert "left as it was found" in result.detail


def test_a_running_vm_with_the_marker_was_started_by_an_earlier_delivery():
    estate, vm = planned(power_state=PowerState.DEALLOCATED)
    estate.compute.before["begin_start_vm"] = lambda _: (_ for _ in ()).throw(TimeoutError("worker died"))
    with pytest.raises(TimeoutError):
        act(estate, Action.START_VM, vm)
    del estate.compute.before["begin_start_vm"]
    estate.compute.set_power(vm, PowerState.RUNNING)

    result = act(estate, Action.START_VM, vm)

    assert result.data == {"power_state_before": "deallocated", "started_by_us": True}
    assert result.detail == "started from deallocated"


def test_a_marker_without_the_state_before_still_means_ours():
    # Written by a version that waited for the start inside one delivery.
    estate, vm = planned(power_state=PowerState.RUNNING)
    estate.records.tasks[(estate.key, estate.task(Phase.PRE, Action.START_VM, vm).task_id)].data = {
        "start_requested": True
    }

    result = act(estate, Action.START_VM, vm)

    assert result.data["started_by_us"] is True
    assert result.detail == "running (started by an earlier attempt)"


@pytest.mark.parametrize("state", [PowerState.STARTING, PowerState.DEALLOCATING, PowerState.STOPPING])
def test_a_vm_in_transition_without_our_marker_is_retried_later(state):
    estate, vm = planned(power_state=state)

    with pytest.raises(TransientError) as caught:
        act(estate, Action.START_VM, vm)

    assert caught.value.retry_after == TRANSITION_RECHECK
    assert estate.compute.calls_to("begin_start_vm") == []


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

    begun = act(estate, Action.START_VM, vm)
    result = act(estate, Action.START_VM, vm, checks=1)

    assert begun.data["warning"] == result.data["warning"]
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


def test_starting_a_vm_whose_task_was_never_planned_is_rejected_before_any_azure_call():
    estate, _ = planned()
    other = estate.add_vm("vm-not-planned", in_run=False)

    with pytest.raises(MessageRejected, match="no task .* is recorded"):
        act(estate, Action.START_VM, other, record=False)
    assert estate.compute.calls == []


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


def test_the_os_disk_is_snapshotted_incrementally_with_tags_and_followed_up():
    estate, vm = planned(data_disks=2, location="northeurope")
    machine = estate.compute.vms[vm.lower()]
    run = run_record(estate)

    begun = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "os"})

    [(snapshot_id, source, location, tags)] = estate.compute.calls_to("begin_create_incremental_snapshot")
    assert snapshot_id == snapshot_id_for(run, machine.os_disk_id)
    assert (source, location) == (machine.os_disk_id, "northeurope")
    assert tags == {
        TAG_RUN: run.run_key,
        TAG_CONFIGURATION: run.configuration_name,
        TAG_MACHINE: ResourceId(vm).name,
        TAG_DISK: ResourceId(machine.os_disk_id).name,
    }
    assert begun == FollowUp("snapshot disks", "0 of 1 snapshot(s) ready")
    assert task_data(estate, Action.SNAPSHOT_DISKS, vm) == {"snapshots_requested": [snapshot_id]}

    result = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "os"}, checks=1)

    assert result == TaskResult(
        TaskStatus.SUCCEEDED, "1 incremental snapshot(s): 1 created, 0 reused", {"snapshots": [snapshot_id]}
    )
    assert len(estate.compute.calls_to("begin_create_incremental_snapshot")) == 1


def test_all_disks_includes_the_data_disks():
    estate, vm = planned(data_disks=2)
    machine = estate.compute.vms[vm.lower()]

    begun = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"})
    result = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"}, checks=1)

    sources = [call[1] for call in estate.compute.calls_to("begin_create_incremental_snapshot")]
    assert sources == [machine.os_disk_id, *machine.data_disk_ids]
    assert begun.state == "0 of 3 snapshot(s) ready"
    assert result.detail == "3 incremental snapshot(s): 3 created, 0 reused"
    assert len(result.data["snapshots"]) == 3


def succeeded_snapshot(estate: FakeEstate, disk: str) -> str:
    """A snapshot of ``disk`` for this run that exists already (taken before this task)."""
    snapshot_id = snapshot_id_for(run_record(estate), disk)
    estate.compute.add_snapshot(Snapshot(snapshot_id, disk, estate.now, {}, "Succeeded"))
    return snapshot_id


def test_an_existing_succeeded_snapshot_is_reused_at_once():
    estate, vm = planned()
    snapshot_id = succeeded_snapshot(estate, estate.compute.vms[vm.lower()].os_disk_id)

    result = act(estate, Action.SNAPSHOT_DISKS, vm)

    assert estate.compute.calls_to("begin_create_incremental_snapshot") == []
    assert result == TaskResult(
        TaskStatus.SUCCEEDED, "1 incremental snapshot(s): 0 created, 1 reused", {"snapshots": [snapshot_id]}
    )


def test_created_and_reused_are_counted_across_follow_ups():
    estate, vm = planned(data_disks=2, looks_to_finish=2)
    machine = estate.compute.vms[vm.lower()]
    reused = succeeded_snapshot(estate, machine.data_disk_ids[0])

    begun = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"})
    waiting = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"}, checks=1)
    done = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"}, checks=2)

    assert (begun.state, waiting.state) == ("1 of 3 snapshot(s) ready", "1 of 3 snapshot(s) ready")
    created = [call[0] for call in estate.compute.calls_to("begin_create_incremental_snapshot")]
    assert reused not in created and len(created) == 2
    assert done.detail == "3 incremental snapshot(s): 2 created, 1 reused"
    assert done.data == {
        "snapshots": [snapshot_id_for(run_record(estate), d) for d in (machine.os_disk_id, *machine.data_disk_ids)]
    }


def test_a_snapshot_still_creating_is_not_asked_for_again():
    estate, vm = planned(looks_to_finish=None)
    act(estate, Action.SNAPSHOT_DISKS, vm)

    again = act(estate, Action.SNAPSHOT_DISKS, vm, checks=1)
    duplicate = act(estate, Action.SNAPSHOT_DISKS, vm)  # the original message, delivered twice
    estate.compute.finish()
    done = act(estate, Action.SNAPSHOT_DISKS, vm, checks=2)

    assert again == duplicate == FollowUp("snapshot disks", "0 of 1 snapshot(s) ready")
    assert len(estate.compute.calls_to("begin_create_incremental_snapshot")) == 1
    assert done.detail == "1 incremental snapshot(s): 1 created, 0 reused"


def test_a_snapshot_creating_before_this_task_is_waited_for_and_counted_as_reused():
    estate, vm = planned()
    machine = estate.compute.vms[vm.lower()]
    snapshot_id = snapshot_id_for(run_record(estate), machine.os_disk_id)
    estate.compute.add_snapshot(Snapshot(snapshot_id, machine.os_disk_id, None, {}, "Creating"))

    begun = act(estate, Action.SNAPSHOT_DISKS, vm)
    estate.compute.add_snapshot(Snapshot(snapshot_id, machine.os_disk_id, None, {}, "Succeeded"))
    done = act(estate, Action.SNAPSHOT_DISKS, vm, checks=1)

    assert begun.state == "0 of 1 snapshot(s) ready"
    assert estate.compute.calls_to("begin_create_incremental_snapshot") == []
    assert done.detail == "1 incremental snapshot(s): 0 created, 1 reused"


@pytest.mark.parametrize("state", ["Failed", "Canceled"])
def test_a_snapshot_that_ended_unsuccessfully_found_by_a_first_delivery_is_created_again(state):
    estate, vm = planned()
    machine = estate.compute.vms[vm.lower()]
    snapshot_id = snapshot_id_for(run_record(estate), machine.os_disk_id)
    estate.compute.add_snapshot(Snapshot(snapshot_id, machine.os_disk_id, None, {}, state))

    act(estate, Action.SNAPSHOT_DISKS, vm)
    done = act(estate, Action.SNAPSHOT_DISKS, vm, checks=1)

    assert [call[0] for call in estate.compute.calls_to("begin_create_incremental_snapshot")] == [snapshot_id]
    assert estate.compute.snapshots[snapshot_id.lower()].provisioning_state == "Succeeded"
    assert done.detail == "1 incremental snapshot(s): 1 created, 0 reused"


def test_a_snapshot_creation_that_failed_is_a_transient_error_on_the_follow_up_and_the_next_attempt_retries():
    estate, vm = planned(looks_to_finish=None)
    snapshot_id = snapshot_id_for(run_record(estate), estate.compute.vms[vm.lower()].os_disk_id)
    act(estate, Action.SNAPSHOT_DISKS, vm)
    estate.compute.fail_operation(snapshot_id)

    with pytest.raises(TransientError, match="is failed: its creation did not complete"):
        act(estate, Action.SNAPSHOT_DISKS, vm, checks=1)
    retried = act(estate, Action.SNAPSHOT_DISKS, vm, attempt=2)
    estate.compute.finish()
    done = act(estate, Action.SNAPSHOT_DISKS, vm, attempt=2, checks=1)

    assert retried.state == "0 of 1 snapshot(s) ready"
    assert [call[0] for call in estate.compute.calls_to("begin_create_incremental_snapshot")] == [snapshot_id] * 2
    assert done.detail == "1 incremental snapshot(s): 1 created, 0 reused"
    assert task_data(estate, Action.SNAPSHOT_DISKS, vm)["snapshots_requested"] == [snapshot_id]


def test_a_throttled_snapshot_retried_creates_no_duplicates():
    estate, vm = planned(data_disks=1)
    estate.compute.fail("begin_create_incremental_snapshot", None, Throttled("429", retry_after=timedelta(seconds=60)))

    with pytest.raises(Throttled):
        act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"})
    begun = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"}, attempt=2)
    result = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"}, attempt=2, checks=1)

    assert begun.state == "1 of 2 snapshot(s) ready"
    assert len(estate.compute.snapshots) == 2
    assert len(estate.compute.calls_to("begin_create_incremental_snapshot")) == 3  # 1, throttled, then the other
    assert result.detail == "2 incremental snapshot(s): 2 created, 0 reused"


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
def test_a_vm_that_is_not_deallocated_is_marked_then_deallocated_and_followed_up(state):
    estate, vm = planned_post(power_state=state)
    marker_at_call = []
    estate.compute.before["begin_deallocate_vm"] = lambda _: marker_at_call.append(
        task_data(estate, Action.DEALLOCATE_VM, vm, Phase.POST).get("deallocate_requested")
    )

    begun = act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST)
    done = act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST, checks=1)

    assert marker_at_call == [True]
    assert begun == FollowUp("deallocate VM", "deallocate requested", {"power_state_before": state.value})
    assert estate.compute.calls_to("begin_deallocate_vm") == [(vm,)]
    assert estate.compute.power_state(vm) is PowerState.DEALLOCATED
    assert done == TaskResult(
        TaskStatus.SUCCEEDED, "deallocated (prepost had started it for the run)", {"power_state_before": state.value}
    )


def test_a_vm_still_deallocating_is_followed_up_again():
    estate, vm = planned_post(power_state=PowerState.RUNNING, looks_to_finish=None)
    act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST)

    again = act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST, checks=1)

    assert again == FollowUp("deallocate VM", "deallocating", {"power_state_before": "running"})
    assert estate.compute.calls_to("begin_deallocate_vm") == [(vm,)]


def test_a_deallocation_that_failed_is_a_transient_error_on_the_follow_up():
    estate, vm = planned_post(power_state=PowerState.RUNNING, looks_to_finish=None)
    act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST)
    estate.compute.fail_operation(vm)

    with pytest.raises(
        TransientError, match="deallocate VM did not complete: the VM is running instead of deallocated"
    ):
        act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST, checks=1)


def test_an_already_deallocated_vm_is_left_alone():
    estate, vm = planned_post(power_state=PowerState.DEALLOCATED)

    result = act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST)

    assert estate.compute.calls_to("begin_deallocate_vm") == []
    assert result == TaskResult(TaskStatus.SUCCEEDED, "already deallocated", {"power_state_before": "deallocated"})


@pytest.mark.parametrize("state", [PowerState.STARTING, PowerState.DEALLOCATING, PowerState.STOPPING])
def test_deallocating_a_vm_in_transition_without_our_marker_is_retried_later(state):
    estate, vm = planned_post(power_state=state)

    with pytest.raises(TransientError) as caught:
        act(estate, Action.DEALLOCATE_VM, vm, phase=Phase.POST)
    assert caught.value.retry_after == TRANSITION_RECHECK
    assert estate.compute.calls_to("begin_deallocate_vm") == []


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

    assert estate.compute.calls_to("begin_delete_snapshot") == [(doomed,)]
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
