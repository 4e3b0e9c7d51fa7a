"""Planning: a phase's machines resolved once, one task record and one message per action."""

from __future__ import annotations

import pytest

from shared.errors import PermanentError, TransientError
from shared.models.messages import MonitoringMessage, PlanPhase, TaskMessage
from shared.models.policy import RunPolicy
from shared.models.run import Action, Phase, PhaseStatus, TaskStatus
from shared.usecases.planning import ARC_SNAPSHOT_REASON, POST_WAIT_ATTEMPTS, POST_WAIT_FOR_PRE, plan_phase
from shared.usecases.supervision import PRE_CLOSED_RESEND
from tests.fakes_azure import POST_SAMPLE, FakeEstate


@pytest.fixture
def estate() -> FakeEstate:
    return FakeEstate()


def queued_task_ids(estate: FakeEstate, phase: Phase) -> set[str]:
    return {t.task_id for t in estate.tasks(phase) if t.status is TaskStatus.QUEUED}


def sent_task_messages(estate: FakeEstate) -> list[TaskMessage]:
    return [s.message for s in estate.transport.sent if isinstance(s.message, TaskMessage)]


# -- the pre phase -----------------------------------------------------------------------


def test_pre_plans_vms_and_arc_servers_with_one_message_per_queued_task(estate):
    sub_a, sub_b = estate.subscriptions
    vm_a = estate.add_vm("vm-web-01", subscription=sub_a)
    vm_b = estate.add_vm("vm-db-01", subscription=sub_b)
    arc = estate.add_arc("srv-onprem-01", subscription=sub_a)
    estate.deliver()

    phase = estate.plan()

    actions = {(t.action, t.target): t for t in estate.tasks(Phase.PRE)}
    assert set(actions) == {
        (Action.PREFLIGHT, vm_a),
        (Action.START_VM, vm_a),
        (Action.SNAPSHOT_DISKS, vm_a),
        (Action.PREFLIGHT, vm_b),
        (Action.START_VM, vm_b),
        (Action.SNAPSHOT_DISKS, vm_b),
        (Action.PREFLIGHT, arc),
        (Action.SNAPSHOT_DISKS, arc),
        (Action.SUPPRESS_ALERTS, sub_a),
        (Action.SUPPRESS_ALERTS, sub_b),
    }
    # The gate counts the failures of the tasks the plan marks safety-critical (default policy).
    critical = {(action, target) for (action, target), task in actions.items() if task.is_safety_critical}
    assert critical == {
        (Action.START_VM, vm_a),
        (Action.SNAPSHOT_DISKS, vm_a),
        (Action.START_VM, vm_b),
        (Action.SNAPSHOT_DISKS, vm_b),
        (Action.SNAPSHOT_DISKS, arc),
    }
    arc_snapshot = actions[(Action.SNAPSHOT_DISKS, arc)]
    assert arc_snapshot.status is TaskStatus.SKIPPED
    assert arc_snapshot.detail == ARC_SNAPSHOT_REASON

    messages = sent_task_messages(estate)
    assert {m.task_id for m in messages} == queued_task_ids(estate, Phase.PRE)
    assert len(messages) == len(queued_task_ids(estate, Phase.PRE))
    for message in messages:
        expected = MonitoringMessage if message.action.is_monitoring else TaskMessage
        assert type(message) is expected
        assert message.run_key == estate.key
    snapshot_messages = [m for m in messages if m.action is Action.SNAPSHOT_DISKS]
    assert {m.options["disks"] for m in snapshot_messages} == {"os"}

    assert phase.status is PhaseStatus.PLANNED
    assert phase.expected_tasks == len(actions)
    assert phase.finished_tasks == 1  # the Arc snapshot, skipped at once
    assert phase.machines == 3
    assert RunPolicy.from_dict(phase.policy) == RunPolicy()
    assert {m.resource_id for m in estate.records.list_machines(estate.key)} == {vm_a, vm_b, arc}


def test_resource_graph_is_asked_for_this_run_in_its_subscriptions(estate):
    estate.add_vm("vm-web-01")
    estate.deliver()

    estate.plan()

    assert estate.inventory.calls_to("list_run_machines") == [(estate.event.correlation_id, estate.subscriptions)]


def test_an_empty_resource_graph_answer_is_a_finding_not_silence(estate):
    estate.deliver()

    phase = estate.plan()

    assert any("Resource Graph listed no machines" in f and "Reader" in f for f in phase.findings)
    assert estate.tasks() == []
    assert sent_task_messages(estate) == []
    assert estate.phase().status is PhaseStatus.COMPLETED  # nothing to wait for


def test_machines_listed_twice_in_different_case_are_planned_once(estate):
    vm = estate.add_vm("vm-web-01")
    estate.inventory.machines[estate.event.correlation_id.lower()].append(
        vm.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")
    )
    estate.deliver()

    phase = estate.plan()

    assert phase.machines == 1
    assert len([t for t in estate.tasks() if t.action is Action.START_VM]) == 1


def test_subscriptions_not_allowed_are_not_queried_and_their_machines_are_skipped():
    estate = FakeEstate(allowed_subscriptions=FakeEstate().subscriptions[0])
    allowed, refused = estate.subscriptions
    vm_ok = estate.add_vm("vm-web-01", subscription=allowed)
    vm_refused = estate.add_vm("vm-db-01", subscription=refused)  # listed anyway by the inventory
    estate.deliver()

    phase = estate.plan()

    assert estate.inventory.calls_to("list_run_machines") == [(estate.event.correlation_id, (allowed,))]
    assert any(refused in f and "PREPOST_ALLOWED_SUBSCRIPTIONS" in f for f in phase.findings)
    refused_tasks = [t for t in estate.tasks() if t.target == vm_refused]
    assert [t.status for t in refused_tasks] == [TaskStatus.SKIPPED]
    assert refused in refused_tasks[0].detail
    messages = sent_task_messages(estate)
    assert all(m.target not in (vm_refused, refused) for m in messages)
    assert {m.target for m in messages if m.action is Action.SUPPRESS_ALERTS} == {allowed}
    assert any(m.target == vm_ok for m in messages)


def test_no_allowed_subscription_means_no_query_and_a_finding():
    estate = FakeEstate(allowed_subscriptions="00000000-0000-0000-0000-000000000001")
    estate.add_vm("vm-web-01")
    estate.deliver()

    phase = estate.plan()

    assert estate.inventory.calls_to("list_run_machines") == []
    assert estate.tasks() == []
    assert any("Resource Graph listed no machines" in f for f in phase.findings)


def test_a_resource_that_is_not_a_machine_is_skipped(estate):
    disk = f"/subscriptions/{estate.subscriptions[0]}/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"
    estate.inventory.machines[estate.event.correlation_id.lower()].append(disk)
    estate.deliver()

    estate.plan()

    [task] = estate.tasks()
    assert task.status is TaskStatus.SKIPPED
    assert "microsoft.compute/disks" in task.detail


@pytest.mark.parametrize(
    ("tags", "present", "absent"),
    [
        (
            {"prepost-start-deallocated": "false"},
            {Action.SNAPSHOT_DISKS, Action.SUPPRESS_ALERTS},
            {Action.START_VM},
        ),
        (
            {"prepost-suppress-alerts": "false"},
            {Action.START_VM, Action.SNAPSHOT_DISKS},
            {Action.SUPPRESS_ALERTS},
        ),
        (
            {"prepost-snapshot-disks": "none"},
            {Action.START_VM, Action.SUPPRESS_ALERTS},
            {Action.SNAPSHOT_DISKS},
        ),
    ],
)
def test_policy_tags_shape_the_plan(tags, present, absent):
    estate = FakeEstate(tags=tags)
    estate.add_vm("vm-web-01")
    estate.deliver()

    estate.plan()

    sent_actions = {m.action for m in sent_task_messages(estate)}
    assert present <= sent_actions
    assert not absent & sent_actions


def test_snapshot_disks_none_is_recorded_as_skipped_with_the_reason():
    estate = FakeEstate(tags={"prepost-snapshot-disks": "none"})
    vm = estate.add_vm("vm-web-01")
    estate.deliver()

    estate.plan()

    task = estate.task(Phase.PRE, Action.SNAPSHOT_DISKS, vm)
    assert task.status is TaskStatus.SKIPPED
    assert "prepost-snapshot-disks=none" in task.detail


def test_all_disks_policy_travels_in_the_snapshot_message():
    estate = FakeEstate(tags={"prepost-snapshot-disks": "ALL"})
    estate.add_vm("vm-web-01")
    estate.deliver()

    estate.plan()

    [snapshot] = [m for m in sent_task_messages(estate) if m.action is Action.SNAPSHOT_DISKS]
    assert snapshot.options == {"disks": "all"}


def test_invalid_policy_tags_become_phase_findings():
    estate = FakeEstate(tags={"prepost-cancel-on-failure": "perhaps"})
    estate.add_vm("vm-web-01")
    estate.deliver()

    phase = estate.plan()

    assert any("prepost-cancel-on-failure" in f for f in phase.findings)
    assert RunPolicy.from_dict(phase.policy).cancel_on_failure is True


def test_a_configuration_that_cannot_be_read_plans_the_fail_safe_policy_and_says_so(estate):
    estate.configurations.fail("get_tags", PermanentError("forbidden"))
    vm = estate.add_vm("vm-web-01")
    estate.deliver()

    phase = estate.plan()

    assert phase.status is PhaseStatus.PLANNED
    assert any("could not read the configuration's policy tags" in f for f in phase.findings)
    assert RunPolicy.from_dict(phase.policy) == RunPolicy.fail_safe()
    actions = {task.action for task in estate.tasks(Phase.PRE)}
    assert Action.SNAPSHOT_DISKS in actions
    assert Action.START_VM not in actions and Action.SUPPRESS_ALERTS not in actions
    assert estate.task(Phase.PRE, Action.SNAPSHOT_DISKS, vm).options == {"disks": "os"}


@pytest.mark.parametrize("error", [TransientError("503")], ids=["transient"])
def test_a_transient_failure_is_raised_and_the_retry_plans_once(estate, error):
    # A throttled one is sent again instead: tests/unit/test_planning_throttled.py
    estate.add_vm("vm-web-01")
    estate.deliver()
    estate.transport.take()
    estate.inventory.fail("list_run_machines", error)

    with pytest.raises(TransientError):
        estate.plan()
    assert estate.phase().status is PhaseStatus.RECEIVED
    assert estate.transport.sent == []

    phase = estate.plan()

    assert phase.status is PhaseStatus.PLANNED
    assert len(sent_task_messages(estate)) == len(queued_task_ids(estate, Phase.PRE))


def test_planning_the_same_phase_twice_does_it_once(estate):
    estate.add_vm("vm-web-01")
    estate.deliver()
    first = estate.plan()
    sent = len(estate.transport.sent)

    second = estate.plan()

    assert second.status is PhaseStatus.PLANNED
    assert second.planned_at == first.planned_at
    assert len(estate.transport.sent) == sent
    assert len(estate.inventory.calls_to("list_run_machines")) == 1


def test_planning_a_phase_that_was_never_received_is_permanent(estate):
    estate.deliver()

    with pytest.raises(PermanentError):
        estate.plan(Phase.POST)


# -- the post phase ----------------------------------------------------------------------


def planned_run_with_outcomes(estate: FakeEstate, *, tags=None):
    """Three VMs (one started by us, one already running, one whose start crashed), one Arc
    server, and suppression rules in both subscriptions; every pre task final."""
    sub_a, sub_b = estate.subscriptions
    started = estate.add_vm("vm-started", subscription=sub_a)
    running = estate.add_vm("vm-was-running", subscription=sub_a)
    crashed = estate.add_vm("vm-start-crashed", subscription=sub_b)
    arc = estate.add_arc("srv-01", subscription=sub_a)
    estate.planned_pre()
    estate.report(Action.START_VM, started, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    estate.report(Action.START_VM, running, TaskStatus.SUCCEEDED, data={"started_by_us": False})
    # The start was requested (intent marker), then the task failed before reporting success.
    task = estate.task(Phase.PRE, Action.START_VM, crashed)
    task.data = {"start_requested": True}
    estate.records.replace_task(task)
    estate.report(Action.START_VM, crashed, TaskStatus.FAILED, detail="gave up")
    for vm in (started, running, crashed):
        estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)
    for machine in (started, running, crashed, arc):
        estate.report(Action.PREFLIGHT, machine, TaskStatus.SUCCEEDED)
    estate.report(Action.SUPPRESS_ALERTS, sub_a, TaskStatus.SUCCEEDED, data={"rule_id": "/rule/a"})
    estate.report(Action.SUPPRESS_ALERTS, sub_b, TaskStatus.SUCCEEDED, data={"rule_id": "/rule/b"})
    assert estate.phase(Phase.PRE).status.is_final
    estate.deliver(POST_SAMPLE)
    estate.transport.take()
    return started, running, crashed, arc


def test_post_deallocates_only_the_vms_prepost_started_and_removes_the_recorded_rules(estate):
    started, running, crashed, arc = planned_run_with_outcomes(estate)

    phase = estate.plan(Phase.POST)

    messages = sent_task_messages(estate)
    deallocations = {m.target for m in messages if m.action is Action.DEALLOCATE_VM}
    assert deallocations == {started, crashed}
    removals = {m.options["rule_id"] for m in messages if m.action is Action.REMOVE_SUPPRESSION}
    assert removals == {"/rule/a", "/rule/b"}
    assert all(type(m) is MonitoringMessage for m in messages if m.action is Action.REMOVE_SUPPRESSION)
    assert {m.action for m in messages} == {Action.DEALLOCATE_VM, Action.REMOVE_SUPPRESSION}
    assert phase.status is PhaseStatus.PLANNED
    assert phase.expected_tasks == len(messages) == len(estate.tasks(Phase.POST))


def test_post_prunes_old_snapshots_of_vms_when_retention_is_set():
    estate = FakeEstate(tags={"prepost-snapshot-retention-days": "7"})
    started, running, crashed, arc = planned_run_with_outcomes(estate)

    estate.plan(Phase.POST)

    prunes = [m for m in sent_task_messages(estate) if m.action is Action.PRUNE_SNAPSHOTS]
    assert {m.target for m in prunes} == {started, running, crashed}  # not the Arc server
    assert {m.options["retention_days"] for m in prunes} == {7}


def test_post_waits_while_pre_tasks_are_unfinished(estate):
    vm = estate.add_vm("vm-web-01")
    estate.planned_pre()
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    estate.deliver(POST_SAMPLE)
    estate.transport.take()

    phase = estate.plan(Phase.POST)

    assert phase.status is PhaseStatus.RECEIVED
    assert estate.tasks(Phase.POST) == []
    [resend] = estate.transport.sent
    assert resend.message == PlanPhase(run_key=estate.key, phase=Phase.POST, attempt=2)
    assert resend.delay == POST_WAIT_FOR_PRE


def test_a_waiting_post_phase_is_planned_as_soon_as_the_pre_phase_closes(estate):
    estate.add_vm("vm-web-01")
    estate.planned_pre()
    estate.deliver(POST_SAMPLE)
    estate.plan(Phase.POST)  # the pre-work is still running: the post phase waits
    estate.transport.take()

    for task in estate.records.list_tasks(estate.key, Phase.PRE):
        if not task.status.is_final:
            estate.report(task.action, task.target, TaskStatus.SUCCEEDED)

    assert estate.phase(Phase.PRE).status is PhaseStatus.COMPLETED
    woken = [s.message for s in estate.transport.sent if isinstance(s.message, PlanPhase)]
    assert woken == [PlanPhase(run_key=estate.key, phase=Phase.POST, resend=PRE_CLOSED_RESEND)]
    plan_phase(woken[0], estate.planning(), now=estate.now)
    assert estate.phase(Phase.POST).status is not PhaseStatus.RECEIVED  # planned now, not at its next look


def test_post_waits_while_pre_was_received_but_not_planned(estate):
    estate.add_vm("vm-web-01")
    estate.deliver()
    estate.deliver(POST_SAMPLE)
    estate.transport.take()

    estate.plan(Phase.POST, attempt=3)

    assert [s.message for s in estate.transport.sent] == [PlanPhase(run_key=estate.key, phase=Phase.POST, attempt=4)]


def test_post_stops_waiting_after_the_last_attempt_and_says_so(estate):
    sub_a = estate.subscriptions[0]
    vm = estate.add_vm("vm-web-01", subscription=sub_a)
    estate.planned_pre()
    estate.pass_preflight()
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    # The snapshot and the suppression never reported.
    estate.deliver(POST_SAMPLE)
    estate.transport.take()

    phase = estate.plan(Phase.POST, attempt=POST_WAIT_ATTEMPTS)

    assert phase.status is PhaseStatus.PLANNED
    assert any("2 pre tasks were still unfinished" in f for f in phase.findings)
    messages = sent_task_messages(estate)
    assert {(m.action, m.target) for m in messages} == {
        (Action.DEALLOCATE_VM, vm),
        (Action.REMOVE_SUPPRESSION, sub_a),
    }
    [removal] = [m for m in messages if m.action is Action.REMOVE_SUPPRESSION]
    assert "rule_id" not in removal.options  # removed by its known name


def test_post_without_a_planned_pre_phase_has_nothing_to_undo(estate):
    estate.deliver(POST_SAMPLE)

    phase = estate.plan(Phase.POST)

    assert any("nothing to undo" in f for f in phase.findings)
    assert sent_task_messages(estate) == []
    assert estate.phase(Phase.POST).status is PhaseStatus.COMPLETED


def test_a_pre_phase_that_cannot_be_planned_is_recorded_failed_and_the_run_cancelled(estate):
    """GIVEN Resource Graph refuses (no Reader role) WHEN the pre phase is planned
    THEN the phase is FAILED with the reason and the run is cancelled, instead of retrying blind."""
    from dataclasses import replace

    estate.deliver()
    estate.inventory.fail("list_run_machines", PermanentError("HTTP 403 AuthorizationFailed"))
    ports = replace(estate.planning(), cancellation=estate.cancellation)
    phase = plan_phase(PlanPhase(run_key=estate.key, phase=Phase.PRE), ports, now=estate.now)
    assert phase.status is PhaseStatus.FAILED
    assert any("AuthorizationFailed" in finding for finding in phase.findings)
    assert estate.cancellation.cancelled == [estate.event.correlation_id]
    assert estate.records.get_run(estate.key).cancel_reason.startswith("pre phase could not be planned")
