"""The drill's invariants on synthetic observations: each passes a clean window and flags a planted fault."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from prepost.chaos.invariants import (
    FAIL,
    NOT_APPLICABLE,
    OK,
    ArmRequest,
    DeliveryObs,
    MessageObs,
    PhaseObs,
    RuleObs,
    ScriptRunObs,
    SnapshotObs,
    TaskObs,
    WindowObservation,
    check_all,
    check_i1,
    check_i2,
    check_i3,
    check_i4,
    check_i5,
    check_i6,
    check_i7,
    check_i8,
    check_i9,
    pre_work_verdict,
)
from shared.usecases.intake import LATE_PRE_EVENT_FINDING

T = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)
SUB = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-chaos-01/providers"
VM1 = f"{SUB}/Microsoft.Compute/virtualMachines/vm-c01-1"
VM2 = f"{SUB}/Microsoft.Compute/virtualMachines/vm-c01-2"
VM3 = f"{SUB}/Microsoft.Compute/virtualMachines/vm-c01-3"
ARC = f"{SUB}/Microsoft.HybridCompute/machines/arc-c01"
DISKS = {
    VM1.lower(): [
        f"{SUB}/Microsoft.Compute/disks/vm-c01-1-osdisk".lower(),
        f"{SUB}/Microsoft.Compute/disks/vm-c01-1-data-0".lower(),
    ],
    VM2.lower(): [f"{SUB}/Microsoft.Compute/disks/vm-c01-2-osdisk".lower()],
    VM3.lower(): [f"{SUB}/Microsoft.Compute/disks/vm-c01-3-osdisk".lower()],
}
RUN = "mc-chaos-20261130100000-0123456789ab"
RULE = f"{SUB}/Microsoft.AlertsManagement/actionRules/prepost-run"


def minutes(n: float) -> datetime:
    return T + timedelta(minutes=n)


def task(phase, action, target, status="succeeded", at=-35.0, detail="done") -> TaskObs:
    return TaskObs(phase, action, target, status, detail, minutes(at))


def clean() -> WindowObservation:
    """A window where everything went right: VM2 was deallocated, prepost started and deallocated it."""
    snapshots = [
        SnapshotObs(f"{SUB}/Microsoft.Compute/snapshots/prepost-20261130100000-{disk.rsplit('/', 1)[-1]}-x", disk)
        for disks in DISKS.values()
        for disk in disks
    ]
    return WindowObservation(
        number=1,
        run_key=RUN,
        correlation_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc"
        "/providers/microsoft.maintenance/applyupdates/20261130100000",
        start=T,
        end=minutes(20),
        cutoff=minutes(-10),
        deadline=minutes(-12),
        grace=timedelta(minutes=10),
        observed_at=minutes(35),
        vms=DISKS,
        power_before={VM1.lower(): "running", VM2.lower(): "deallocated", VM3.lower(): "stopped"},
        power_after={VM1.lower(): "running", VM2.lower(): "deallocated", VM3.lower(): "deallocated"},
        vm_starts=[
            ArmRequest(minutes(-38), "vm.start", "vm-c01-2"),
            ArmRequest(minutes(-38), "vm.start", "vm-c01-3"),
        ],
        snapshot_puts=[ArmRequest(minutes(-37), "snapshots.create", s.id.rsplit("/", 1)[-1]) for s in snapshots],
        phases={
            "pre": PhaseObs("pre", "completed", minutes(-40), planned_at=minutes(-39.5), completed_at=minutes(-34)),
            "post": PhaseObs("post", "completed", minutes(20), planned_at=minutes(20.5), completed_at=minutes(23)),
        },
        tasks=[
            task("pre", "start-vm", VM1),
            task("pre", "start-vm", VM2),
            task("pre", "start-vm", VM3),
            task("pre", "snapshot-disks", VM1),
            task("pre", "snapshot-disks", VM2),
            task("pre", "snapshot-disks", VM3),
            task("pre", "snapshot-disks", ARC, status="skipped", at=-39.5),
            task("pre", "check-arc-agent", ARC),
            task("pre", "suppress-alerts", "11111111-1111-4111-8111-111111111111"),
            task("post", "deallocate-vm", VM2, at=22),
            task("post", "deallocate-vm", VM3, at=22),
            task("post", "remove-suppression", "11111111-1111-4111-8111-111111111111", at=21),
        ],
        snapshots=snapshots,
        rules=[RuleObs(RULE, minutes(30), exists_now=False)],
        deliveries=[DeliveryObs("pre", minutes(-40), 200), DeliveryObs("post", minutes(20), 200)],
        recorded_deliveries={"pre": 1, "post": 1},
    )


def replace_task(obs: WindowObservation, action: str, target: str, **changes) -> WindowObservation:
    tasks = [
        dataclasses.replace(t, **changes) if (t.action, t.target) == (action, target) and t.phase == "pre" else t
        for t in obs.tasks
    ]
    return dataclasses.replace(obs, tasks=tasks)


def cancelled(obs: WindowObservation, at: float) -> WindowObservation:
    return dataclasses.replace(
        obs,
        sim_cancellations=[minutes(at)],
        cancel_requested_at=minutes(at),
        cancel_reason="pre-work not finished",
        cancel_result="cancel requested; Update Manager reports Cancel",
        cancel_accepted=True,
    )


def test_a_clean_window_passes_every_invariant():
    results = check_all(clean())
    assert {name: result.status for name, result in results.items()} == {
        "I1": OK,
        "I2": NOT_APPLICABLE,
        "I3": OK,
        "I4": OK,
        "I5": OK,
        "I6": OK,
        "I7": OK,
        "I8": OK,
        "I9": NOT_APPLICABLE,
    }
    assert all(not result.violations for result in results.values())


# -- I1 / I2 ---------------------------------------------------------------------------------------


def test_i1_flags_a_cancel_after_the_pre_work_succeeded_in_time():
    result = check_i1(cancelled(clean(), -11.5))
    assert result.status == FAIL
    assert "cancelled although" in result.violations[0] and "T-11m30s" in result.violations[0]


def test_i1_counts_the_cancel_recorded_on_the_run_even_without_a_call():
    obs = dataclasses.replace(clean(), cancel_requested_at=minutes(-12))
    assert check_i1(obs).status == FAIL


def test_a_task_finishing_within_the_band_around_the_deadline_is_judged_by_neither():
    obs = cancelled(replace_task(clean(), "snapshot-disks", VM2, recorded_at=minutes(-12.5)), -11.9)
    assert pre_work_verdict(obs).kind == "band"
    assert check_i1(obs).status == NOT_APPLICABLE
    assert check_i2(obs).status == NOT_APPLICABLE


def test_i2_flags_a_failed_safety_task_without_a_cancel_or_a_reason():
    obs = replace_task(clean(), "snapshot-disks", VM1, status="failed", detail="gave up after 8 attempts")
    result = check_i2(obs)
    assert result.status == FAIL
    assert "snapshot-disks vm-c01-1" in result.violations[0] and "gave up" in result.violations[0]
    assert check_i1(obs).status == NOT_APPLICABLE


def test_i2_flags_pre_work_unfinished_at_the_deadline():
    obs = replace_task(clean(), "start-vm", VM2, recorded_at=minutes(-5))
    result = check_i2(obs)
    assert result.status == FAIL and "unfinished at the deadline" in result.violations[0]


def test_i2_flags_a_pre_phase_never_planned_by_the_deadline():
    obs = clean()
    obs.phases["pre"] = dataclasses.replace(obs.phases["pre"], received_at=minutes(-5), planned_at=minutes(-4.5))
    result = check_i2(obs)
    assert result.status == FAIL and "not planned by the deadline" in result.violations[0]


def test_a_pre_phase_that_could_not_be_planned_is_judged_by_i2_not_i1():
    obs = clean()
    obs.phases["pre"] = dataclasses.replace(obs.phases["pre"], status="failed")
    obs.tasks = [t for t in obs.tasks if t.phase != "pre"]
    assert check_i1(cancelled(obs, -39)).status == NOT_APPLICABLE
    assert check_i2(cancelled(obs, -39)).status == OK
    result = check_i2(obs)
    assert result.status == FAIL and "could not be planned" in result.violations[0]


def test_i2_passes_a_cancel_before_the_cut_off():
    obs = cancelled(replace_task(clean(), "start-vm", VM2, status="failed"), -11)
    assert check_i2(obs).status == OK


def test_i2_flags_a_cancel_after_the_cut_off_when_the_record_gives_no_reason():
    obs = dataclasses.replace(replace_task(clean(), "start-vm", VM2, status="failed"), sim_cancellations=[minutes(-9)])
    result = check_i2(obs)
    assert result.status == FAIL and "a cancel came only at" in result.violations[0]


def test_i2_accepts_a_run_record_that_says_why_it_was_not_cancelled():
    obs = dataclasses.replace(
        replace_task(clean(), "start-vm", VM2, status="failed"), cancel_result="too late: the run had already started"
    )
    assert check_i2(obs).status == OK


# -- I3 ----------------------------------------------------------------------------------------------


def test_i3_flags_a_started_vm_left_running():
    obs = clean()
    obs.power_after[VM2.lower()] = "running"
    result = check_i3(obs)
    assert result.status == FAIL
    assert "vm-c01-2 was deallocated before the window and is running after it" in result.violations[0]
    assert "prepost started it at" in result.violations[0]


def test_i3_flags_a_running_vm_that_ends_deallocated():
    obs = clean()
    obs.power_after[VM1.lower()] = "deallocated"
    result = check_i3(obs)
    assert result.status == FAIL and "vm-c01-1 was running before" in result.violations[0]


def test_i3_lets_a_stopped_vm_end_stopped_or_deallocated_but_not_running():
    obs = clean()
    obs.power_after[VM3.lower()] = "stopped"
    assert check_i3(obs).status == OK
    obs.power_after[VM3.lower()] = "running"
    assert check_i3(obs).status == FAIL


def test_i3_lists_the_vms_the_simulator_saw_started():
    assert check_i3(clean()).note == "started by prepost: vm-c01-2, vm-c01-3"


# -- I4 ----------------------------------------------------------------------------------------------


def test_i4_flags_a_vm_start_after_the_scheduled_start():
    obs = clean()
    obs.vm_starts.append(ArmRequest(minutes(2), "vm.start", "vm-c01-2"))
    result = check_i4(obs)
    assert result.status == FAIL
    assert result.violations == [
        "vm-c01-2: started at 10:02:00 (T+2m00s), after the run's scheduled start at 10:00:00 (T+0m00s)"
    ]


def test_i4_names_the_vm_whose_disks_were_snapshotted_late_once_per_vm():
    obs = clean()
    obs.snapshot_puts += [
        ArmRequest(minutes(3), "snapshots.create", "prepost-20261130100000-vm-c01-1-osdisk-0a1b2c3d"),
        ArmRequest(minutes(4), "snapshots.create", "prepost-20261130100000-vm-c01-1-data-0-4e5f6a7b"),
    ]
    result = check_i4(obs)
    assert result.violations == [
        "vm-c01-1: 2 snapshot PUT(s) from 10:03:00 (T+3m00s), after the run's scheduled start at 10:00:00 (T+0m00s)"
    ]


def test_i4_flags_a_snapshot_after_the_post_phase_began():
    obs = clean()
    obs.phases["post"] = dataclasses.replace(obs.phases["post"], received_at=minutes(-39))
    result = check_i4(obs)
    assert result.status == FAIL and "after the post phase began" in result.violations[0]


def test_i4_flags_work_after_the_cancel():
    obs = cancelled(clean(), -38.5)
    result = check_i4(obs)
    assert result.status == FAIL and all("after the run was cancelled" in v for v in result.violations)


def test_i4_lets_pre_work_go_on_after_a_cancel_that_was_not_accepted():
    """A refused or too-late cancel leaves patching going ahead: the pre-work may go on too."""
    refused = dataclasses.replace(
        cancelled(clean(), -38.5), sim_cancellations=[], cancel_result="cancel refused: 403", cancel_accepted=False
    )
    assert check_i4(refused).status == OK


def test_i2_accepts_a_pre_phase_whose_event_came_after_the_deadline_and_says_so():
    obs = clean()
    late = f"{LATE_PRE_EVENT_FINDING} 2026-11-30T13:48:00+00:00: no cancellation is made for unfinished pre-work"
    obs.phases["pre"] = dataclasses.replace(
        obs.phases["pre"], received_at=minutes(-5), planned_at=minutes(-4.5), findings=(late,)
    )
    result = check_i2(obs)
    assert result.status == OK and "the record says why" in result.note


def test_i4_allows_a_request_in_flight_at_the_boundary():
    obs = clean()
    obs.vm_starts.append(ArmRequest(T + timedelta(seconds=20), "vm.start", "vm-c01-2"))
    assert check_i4(obs).status == OK


# -- I5 ----------------------------------------------------------------------------------------------


def test_i5_flags_a_rule_left_after_the_post_phase():
    obs = dataclasses.replace(clean(), rules=[RuleObs(RULE, minutes(30), exists_now=True)])
    result = check_i5(obs)
    assert result.status == FAIL and "prepost-run (subscription 11111111) still exists" in result.violations[0]


def test_i5_flags_a_rule_effective_beyond_end_plus_grace():
    obs = dataclasses.replace(clean(), rules=[RuleObs(RULE, minutes(90), exists_now=False)])
    result = check_i5(obs)
    assert result.status == FAIL and "later than the window's end + grace" in result.violations[0]


# -- I6 ----------------------------------------------------------------------------------------------


def test_i6_flags_two_snapshots_of_one_disk():
    obs = clean()
    disk = DISKS[VM2.lower()][0]
    obs.snapshots.append(SnapshotObs(f"{SUB}/Microsoft.Compute/snapshots/prepost-other", disk))
    result = check_i6(obs)
    assert result.status == FAIL and "has 2 snapshots for this run" in result.violations[0]


def test_i6_flags_a_disk_without_a_snapshot_though_its_task_succeeded():
    obs = clean()
    missing = DISKS[VM1.lower()][1]
    obs.snapshots = [s for s in obs.snapshots if s.source_disk_id != missing]
    result = check_i6(obs)
    assert result.status == FAIL and "vm-c01-1-data-0 has no snapshot" in result.violations[0]


def test_i6_does_not_expect_snapshots_of_a_vm_whose_task_failed():
    obs = replace_task(clean(), "snapshot-disks", VM1, status="failed")
    obs.snapshots = [s for s in obs.snapshots if s.source_disk_id not in DISKS[VM1.lower()]]
    assert check_i6(obs).status == OK


# -- I7 ----------------------------------------------------------------------------------------------


def test_i7_flags_a_task_that_never_finished():
    obs = replace_task(clean(), "start-vm", VM2, status="in-progress", detail="start VM: starting")
    result = check_i7(obs)
    assert result.status == FAIL and result.violations == [
        "task pre start-vm vm-c01-2 is still in-progress: start VM: starting"
    ]


def test_i7_flags_a_phase_stuck_in_planned():
    obs = clean()
    obs.phases["pre"] = dataclasses.replace(obs.phases["pre"], status="planned")
    result = check_i7(obs)
    assert result.status == FAIL and "pre phase is still planned" in result.violations[0]


def test_i7_flags_a_run_without_a_post_phase():
    obs = clean()
    del obs.phases["post"]
    result = check_i7(obs)
    assert result.status == FAIL and "no post phase" in result.violations[0]


# -- I8 ----------------------------------------------------------------------------------------------


def test_i8_flags_a_message_left_in_a_work_queue():
    obs = dataclasses.replace(clean(), leftovers=[MessageObs("prepost-vm-tasks", f"task {RUN} pre start-vm vm-c01-2")])
    result = check_i8(obs)
    assert result.status == FAIL and result.violations[0].startswith("message left in prepost-vm-tasks")


def test_i8_accepts_a_parked_message_with_a_reason():
    obs = dataclasses.replace(clean(), poison=[MessageObs("prepost-plan-poison", "garbage", reason="not JSON")])
    assert check_i8(obs).status == OK


def test_i8_accepts_a_poisoned_message_whose_task_is_final_with_a_detail():
    task_id = next(t.task_id for t in clean().tasks if t.action == "start-vm" and t.target == VM2)
    obs = dataclasses.replace(clean(), poison=[MessageObs("prepost-vm-tasks-poison", "task", task_id=task_id)])
    assert check_i8(obs).status == OK


def test_i8_flags_a_poisoned_message_without_a_reason_or_a_final_task():
    obs = replace_task(clean(), "start-vm", VM2, status="queued", detail="")
    task_id = next(t.task_id for t in obs.tasks if t.action == "start-vm" and t.target == VM2)
    obs = dataclasses.replace(obs, poison=[MessageObs("prepost-vm-tasks-poison", "task", task_id=task_id)])
    result = check_i8(obs)
    assert result.status == FAIL and "its task is queued" in result.violations[0]


def test_i8_flags_a_plan_message_poisoned_without_a_reason():
    obs = dataclasses.replace(clean(), poison=[MessageObs("prepost-plan-poison", "check-pre-deadline")])
    result = check_i8(obs)
    assert result.status == FAIL and "belongs to no task" in result.violations[0]


def test_i8_flags_an_accepted_delivery_missing_from_the_events_log():
    obs = dataclasses.replace(clean(), recorded_deliveries={"pre": 1})
    result = check_i8(obs)
    assert (
        result.status == FAIL
        and "1 post-event delivery answered 2xx, but the events log records 0" in result.violations
    )


def test_i8_does_not_count_failed_deliveries():
    obs = clean()
    obs.deliveries.append(DeliveryObs("pre", minutes(-39), 0))
    obs.deliveries.append(DeliveryObs("pre", minutes(-39), 500))
    assert check_i8(obs).status == OK


# -- all together ------------------------------------------------------------------------------------


def test_a_check_that_raises_is_a_failure_of_that_invariant_only(monkeypatch):
    from prepost.chaos import invariants

    def broken(obs):
        raise KeyError("boom")

    monkeypatch.setitem(invariants.CHECKS, "I6", broken)
    results = check_all(clean())
    assert results["I6"].status == FAIL and "the check itself failed" in results["I6"].violations[0]
    assert results["I5"].status == OK


@pytest.mark.parametrize("offset, expected", [(-20, "10:00:00 (T+0m00s)"), (95, "10:00:00 (T+0m00s)")])
def test_times_are_shown_relative_to_the_start(offset, expected):
    assert clean().when(T) == expected
    assert clean().when(minutes(offset)).endswith(f"(T{'+' if offset >= 0 else '-'}{abs(offset)}m00s)")


# -- I9 ----------------------------------------------------------------------------------------------


def with_scripts(obs: WindowObservation, runs: list[tuple[str, str, float]], *, critical: bool = True):
    machines = sorted(obs.vms)
    tasks = [*obs.tasks]
    for machine in machines:
        tasks.append(dataclasses.replace(task("pre", "pre-script", machine, at=-36.0), safety_critical=critical))
        tasks.append(task("post", "post-script", machine, at=65.0))
    script_runs = [ScriptRunObs(machine, phase, minutes(at)) for machine, phase, at in runs]
    return dataclasses.replace(obs, tasks=tasks, script_runs=script_runs)


def test_i9_holds_when_each_pre_script_is_followed_by_one_post_script():
    obs = clean()
    runs = [(m, phase, at) for m in obs.vms for phase, at in (("pre", -37.0), ("post", 64.0))]
    result = check_i9(with_scripts(obs, runs))
    assert result.status == OK, result.violations


def test_i9_flags_a_script_that_ran_twice_and_a_pre_script_without_its_post_script():
    obs = clean()
    first, second, *_ = sorted(obs.vms)
    runs = [(first, "pre", -37.0), (first, "pre", -36.5), (first, "post", 64.0), (second, "pre", -37.0)]
    result = check_i9(with_scripts(obs, runs))
    assert result.status == FAIL
    assert any("pre script ran 2 times" in v for v in result.violations), result.violations
    assert any("pre script ran at" in v and "no post script ran" in v for v in result.violations), result.violations


def test_i9_is_not_applicable_without_scripts():
    assert check_i9(clean()).status == NOT_APPLICABLE


def test_a_failed_safety_critical_pre_script_makes_the_pre_work_failed():
    obs = with_scripts(clean(), [])
    target = sorted(obs.vms)[0]
    failed = replace_task(obs, "pre-script", target, status="failed", detail="exited 2")
    assert pre_work_verdict(failed).kind == "failed-or-late"
    warned = replace_task(with_scripts(clean(), [], critical=False), "pre-script", target, status="failed")
    assert pre_work_verdict(warned).kind == "in-time"


def test_i4_flags_a_pre_script_begun_after_the_cancellation():
    obs = cancelled(clean(), -20.0)
    late = ArmRequest(minutes(-15.0), "runcommands.put", "vm-c01-1", 201)
    result = check_i4(dataclasses.replace(obs, script_puts=[late]))
    assert result.status == FAIL
    assert result.violations == [
        f"vm-c01-1: its pre script begun at {obs.when(minutes(-15.0))}, after the run was cancelled at "
        f"{obs.when(minutes(-20.0))}"
    ]
