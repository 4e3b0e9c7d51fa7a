"""The readiness gate: every path from failures to a recorded decision, with fakes.

GIVEN a planned pre phase, WHEN outcomes (or the deadline) arrive, THEN the run is cancelled
exactly when the error budget is exceeded, and otherwise the record says which machines went
ahead without their safety work.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import TransientError
from shared.models.events import DEFAULT_CUTOFF_BEFORE_START
from shared.models.gate import ErrorBudget, GateDecision, GateVerdict
from shared.models.messages import CheckPreDeadline
from shared.models.policy import DEFAULT_SAFETY_CRITICAL, RunPolicy
from shared.models.run import Action, Phase, PhaseStatus, TaskRecord, TaskStatus
from shared.usecases.supervision import CLAIM_LEASE, check_pre_deadline
from tests.fakes_azure import FakeEstate

BLOCKING = {"blocking_findings": 1, "findings": [{"kind": "snapshot-limit-reached", "severity": "blocking"}]}


def planned(machines: int, tags=None, *, now=None) -> tuple[FakeEstate, list[str]]:
    estate = FakeEstate(tags=tags, now=now)
    vms = [estate.add_vm(f"vm-{index:02d}") for index in range(machines)]
    estate.planned_pre()
    estate.pass_preflight()
    return estate, vms


def succeed(estate: FakeEstate, vm: str, *actions: Action) -> None:
    for action in actions or (Action.START_VM, Action.SNAPSHOT_DISKS):
        estate.report(action, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})


def silence(estate: FakeEstate) -> None:
    for subscription in {t.target for t in estate.tasks(Phase.PRE) if t.action is Action.SUPPRESS_ALERTS}:
        estate.report(Action.SUPPRESS_ALERTS, subscription, TaskStatus.SUCCEEDED, data={"rule_id": "/r"})


def gate(estate: FakeEstate) -> GateDecision | None:
    recorded = estate.records.get_run(estate.key).gate
    return GateDecision.from_dict(recorded) if recorded else None


def deadline_check(estate: FakeEstate, *, now=None) -> str:
    return check_pre_deadline(
        CheckPreDeadline(run_key=estate.key),
        records=estate.records,
        cancellation=estate.cancellation,
        transport=estate.transport,
        now=now or estate.event.cancel_deadline(timedelta(minutes=2)),
    )


# -- the budget and the policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "machines", "allowed"),
    [("0", 50, 0), ("3", 50, 3), ("10%", 50, 5), ("10%", 9, 0), ("100%", 7, 7), (" 25% ", 10, 2)],
)
def test_a_budget_is_a_count_or_a_percentage_of_the_machines_rounded_down(text, machines, allowed):
    assert ErrorBudget.parse(text).allowed(machines) == allowed


@pytest.mark.parametrize("text", ["-1", "3.5", "101%", "ten", "", "%", "1e3", "²"])
def test_a_budget_that_does_not_parse_is_refused(text):
    with pytest.raises(ValueError):
        ErrorBudget.parse(text)


def test_gate_tags_are_read_and_a_typo_keeps_the_safe_default():
    good = RunPolicy.from_tags(
        {
            "prepost-max-errors": "10%",
            "prepost-safety-critical": "snapshot, preflight",
            "prepost-severity-arc-disconnected": "Blocking",
        }
    )
    typo = RunPolicy.from_tags({"prepost-max-errors": "lots", "prepost-safety-critical": "snapshto,start"})

    assert good.max_errors == "10%" and good.safety_critical == ("snapshot", "preflight")
    assert good.severity == {"arc-disconnected": "blocking"} and good.findings == ()
    assert typo.max_errors == "0" and typo.safety_critical == DEFAULT_SAFETY_CRITICAL
    assert len(typo.findings) == 2


def test_settings_give_the_defaults_and_tags_override_them():
    defaults = RunPolicy(max_errors="2", safety_critical=("snapshot",), cancel_on_failure=False)

    untagged = RunPolicy.from_tags({}, defaults)
    tagged = RunPolicy.from_tags({"prepost-max-errors": "0", "prepost-cancel-on-failure": "true"}, defaults)

    assert (untagged.max_errors, untagged.safety_critical, untagged.cancel_on_failure) == ("2", ("snapshot",), False)
    assert (tagged.max_errors, tagged.cancel_on_failure) == ("0", True)


# -- the paths of the gate --------------------------------------------------------------------


def test_all_good_records_no_decision_and_cancels_nothing():
    estate, vms = planned(3)
    for vm in vms:
        succeed(estate, vm)
    silence(estate)

    assert estate.phase().status is PhaseStatus.COMPLETED
    assert gate(estate) is None and estate.cancellation.calls == []


def test_failures_within_a_count_budget_proceed_and_the_record_names_the_machines():
    estate, [a, b, c] = planned(3, {"prepost-max-errors": "1"})
    succeed(estate, a)
    succeed(estate, b, Action.START_VM)
    estate.report(Action.SNAPSHOT_DISKS, b, TaskStatus.FAILED, detail="HTTP 409 disk busy")
    succeed(estate, c)
    silence(estate)

    decision = gate(estate)
    assert estate.phase().status is PhaseStatus.COMPLETED_WITH_FAILURES
    assert estate.cancellation.calls == [] and estate.records.get_run(estate.key).cancel_requested_at is None
    assert decision.verdict is GateVerdict.PROCEED and decision.moment == "phase-completed"
    assert (decision.budget, decision.machines, decision.allowed, decision.failing_count) == ("1", 3, 1, 1)
    [failing] = decision.failing
    assert failing.machine == b and failing.reasons == ("snapshot-disks failed: HTTP 409 disk busy",)


def test_failures_over_a_count_budget_cancel_as_soon_as_it_is_exceeded():
    estate, [a, b, c] = planned(3, {"prepost-max-errors": "1"})
    estate.report(Action.SNAPSHOT_DISKS, a, TaskStatus.FAILED, detail="quota")
    assert estate.cancellation.calls == []

    estate.report(Action.START_VM, b, TaskStatus.FAILED, detail="allocation failed")

    assert not estate.phase().status.is_final  # c is still at work: no need to wait for it
    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]
    decision = gate(estate)
    assert decision.verdict is GateVerdict.CANCEL and decision.moment == "budget-exceeded"
    assert [m.machine for m in decision.failing] == sorted([a, b], key=str.lower)
    run = estate.records.get_run(estate.key)
    assert run.cancel_accepted and "error budget 1 allows 1" in run.cancel_reason


@pytest.mark.parametrize(("failures", "cancelled"), [(1, False), (2, True)])
def test_a_percentage_budget_counts_against_the_machines_of_the_run(failures, cancelled):
    estate, vms = planned(10, {"prepost-max-errors": "10%"})
    for vm in vms[:failures]:
        estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="boom")
    for vm in vms:
        succeed(estate, vm, Action.START_VM)
        if vm not in vms[:failures]:
            succeed(estate, vm, Action.SNAPSHOT_DISKS)
    silence(estate)

    decision = gate(estate)
    assert bool(estate.cancellation.calls) is cancelled
    assert decision.verdict is (GateVerdict.CANCEL if cancelled else GateVerdict.PROCEED)
    assert (decision.machines, decision.allowed, decision.failing_count) == (10, 1, failures)


def test_a_machine_with_several_failed_tasks_is_one_error():
    estate, [a, b] = planned(2, {"prepost-max-errors": "1"})
    estate.report(Action.START_VM, a, TaskStatus.FAILED, detail="no capacity")
    estate.report(Action.SNAPSHOT_DISKS, a, TaskStatus.FAILED, detail="vm gone")
    succeed(estate, b)
    silence(estate)

    [failing] = gate(estate).failing
    assert estate.cancellation.calls == []
    assert failing.machine == a and len(failing.reasons) == 2


def test_a_blocking_finding_cancels_the_run():
    estate = FakeEstate()
    vm = estate.add_vm("vm-00")
    estate.planned_pre()

    estate.report(Action.PREFLIGHT, vm, TaskStatus.FAILED, detail="1 blocking finding(s): disk full", data=BLOCKING)

    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]
    decision = gate(estate)
    assert decision.verdict is GateVerdict.CANCEL
    assert decision.failing[0].reasons == ("preflight: 1 blocking finding(s): disk full",)
    assert "blocking preflight findings" in estate.records.get_run(estate.key).cancel_reason


def test_blocking_findings_do_not_count_when_the_policy_leaves_preflight_out():
    estate = FakeEstate(tags={"prepost-safety-critical": "snapshot,start"})
    vm = estate.add_vm("vm-00")
    estate.planned_pre()

    estate.report(Action.PREFLIGHT, vm, TaskStatus.FAILED, detail="blocking", data=BLOCKING)
    succeed(estate, vm)
    silence(estate)

    assert estate.phase().status is PhaseStatus.COMPLETED_WITH_FAILURES
    assert estate.cancellation.calls == [] and gate(estate) is None


def test_a_preflight_that_could_not_run_blocks_nothing_by_itself():
    estate = FakeEstate()
    vm = estate.add_vm("vm-00")
    estate.planned_pre()

    estate.report(Action.PREFLIGHT, vm, TaskStatus.FAILED, detail="gave up after 8 attempts: HTTP 503")
    succeed(estate, vm)
    silence(estate)

    assert estate.cancellation.calls == [] and gate(estate) is None


def test_a_task_of_any_kind_counts_when_its_plan_marked_it_safety_critical():
    # GIVEN a task the gate knows nothing about, marked safety-critical by its planner
    estate, [vm] = planned(1)
    script = TaskRecord(estate.key, Phase.PRE, Action.CHECK_ARC_AGENT, vm, TaskStatus.QUEUED, safety_critical=True)
    estate.records.add_tasks([script])
    phase = estate.phase()
    phase.expected_tasks += 1
    estate.records.replace_phase(phase)

    estate.report(Action.CHECK_ARC_AGENT, vm, TaskStatus.FAILED, detail="pre script exited 3")

    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]
    assert gate(estate).failing[0].reasons == ("check-arc-agent failed: pre script exited 3",)


def test_work_unfinished_at_the_deadline_cancels_with_the_default_budget():
    estate, [vm] = planned(1)
    succeed(estate, vm, Action.START_VM)

    result = deadline_check(estate)

    assert "pre-work not finished by the cancellation deadline (2 tasks pending)" in result
    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]
    decision = gate(estate)
    assert (
        decision.moment == "deadline" and "not finished by the cancellation deadline" in decision.failing[0].reasons[0]
    )


def test_work_unfinished_at_the_deadline_within_the_budget_proceeds_and_is_recorded():
    estate, [a, b] = planned(2, {"prepost-max-errors": "1"})
    succeed(estate, a)
    succeed(estate, b, Action.START_VM)  # b's snapshot is still running
    silence(estate)

    result = deadline_check(estate)

    assert "the run proceeds" in result and estate.cancellation.calls == []
    decision = gate(estate)
    assert decision.verdict is GateVerdict.PROCEED and decision.moment == "deadline"
    assert decision.failing[0].machine == b
    assert decision.failing[0].reasons == ("snapshot-disks not finished by the cancellation deadline (queued)",)
    # A later failure changes nothing: the decision stands, nothing is cancelled after it.
    estate.report(Action.SNAPSHOT_DISKS, b, TaskStatus.FAILED, detail="too late")
    assert estate.cancellation.calls == [] and gate(estate).verdict is GateVerdict.PROCEED


def test_non_critical_work_unfinished_at_the_deadline_does_not_cancel():
    estate, [vm] = planned(1)
    succeed(estate, vm)  # the alert suppression is still pending

    deadline_check(estate)

    assert estate.cancellation.calls == []
    assert gate(estate).verdict is GateVerdict.PROCEED and gate(estate).failing == ()


def test_a_pre_event_after_the_cutoff_cancels_nothing_and_says_why():
    start = FakeEstate().event.start
    after_cutoff = start - DEFAULT_CUTOFF_BEFORE_START + timedelta(minutes=2)
    estate, [vm] = planned(1, now=after_cutoff)
    assert any("after the cancellation deadline" in f for f in estate.phase().findings)

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="boom")
    deadline_check(estate, now=after_cutoff)

    run = estate.records.get_run(estate.key)
    assert estate.cancellation.calls == []
    assert run.cancel_requested_at is not None and not run.cancel_accepted
    assert "cut-off" in run.cancel_result and "had passed" in run.cancel_result
    assert gate(estate).verdict is GateVerdict.CANCEL  # what the gate decided, though it could not act


def test_a_cancel_call_failing_transiently_is_retried_by_the_same_message_in_time():
    estate, [vm] = planned(1)
    estate.cancellation.fail("cancel", TransientError("HTTP 503"))

    with pytest.raises(TransientError):
        estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="boom")
    assert gate(estate) is None  # the claim was given back for the retry

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="boom")  # the queue delivers it again

    run = estate.records.get_run(estate.key)
    assert len(estate.cancellation.calls_to("cancel")) == 2
    assert run.cancel_accepted and run.cancel_requested_at < estate.event.cancel_deadline(timedelta(minutes=2))


def test_a_decision_claimed_by_a_delivery_that_died_is_finished_later_and_made_once():
    estate, [a, b] = planned(2)
    estate.cancellation.fail("cancel", RuntimeError("the instance died"))
    with pytest.raises(RuntimeError):
        estate.report(Action.SNAPSHOT_DISKS, a, TaskStatus.FAILED, detail="boom")
    assert gate(estate).verdict is GateVerdict.CANCEL  # claimed, but the call was never answered
    calls = len(estate.cancellation.calls_to("cancel"))

    # WHEN other outcomes arrive while the claim is fresh, they leave the call to its claimer
    estate.report(Action.SNAPSHOT_DISKS, b, TaskStatus.FAILED, detail="boom too")
    assert len(estate.cancellation.calls_to("cancel")) == calls

    # THEN a failure arriving after the lease finishes it, once (a success while the phase is
    # still open skips the gate: the phase closing or the deadline check finish it then)
    estate.report(Action.START_VM, a, TaskStatus.FAILED, now=estate.now + CLAIM_LEASE + timedelta(seconds=1))
    estate.report(Action.START_VM, b, TaskStatus.FAILED, now=estate.now + CLAIM_LEASE + timedelta(seconds=2))
    run = estate.records.get_run(estate.key)
    assert run.cancel_accepted and len(estate.cancellation.calls_to("cancel")) == calls + 1
    assert "vm-00" in run.cancel_reason  # the claimed decision's reason


def test_the_deadline_check_finishes_a_fresh_claim_at_once():
    estate, [vm] = planned(1)
    estate.cancellation.fail("cancel", RuntimeError("the instance died"))
    deadline = estate.event.cancel_deadline(timedelta(minutes=2))
    with pytest.raises(RuntimeError):
        # Claimed moments before the deadline: the claim is still fresh when the check comes.
        estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="boom", now=deadline - timedelta(seconds=5))

    deadline_check(estate, now=deadline)

    assert estate.records.get_run(estate.key).cancel_accepted


def test_cancel_on_failure_false_decides_but_does_not_call():
    estate, [vm] = planned(1, {"prepost-cancel-on-failure": "false"})

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="boom")

    run = estate.records.get_run(estate.key)
    assert estate.cancellation.calls == []
    assert "prepost-cancel-on-failure=false" in run.cancel_result
    assert gate(estate).verdict is GateVerdict.CANCEL


def test_a_deadline_check_that_died_after_claiming_makes_the_call_when_delivered_again():
    estate, [vm] = planned(1)
    succeed(estate, vm, Action.START_VM)  # the snapshot is still pending at the deadline
    estate.cancellation.fail("cancel", RuntimeError("the instance died"))
    with pytest.raises(RuntimeError):
        deadline_check(estate)
    assert gate(estate).verdict is GateVerdict.CANCEL and estate.records.get_run(estate.key).cancel_requested_at is None

    result = deadline_check(estate)

    run = estate.records.get_run(estate.key)
    assert run.cancel_accepted and "not finished by the cancellation deadline" in run.cancel_reason
    assert "finished by the deadline check" in result
    assert len(estate.cancellation.calls_to("cancel")) == 2  # the one that died, and the one that counted


def test_runs_show_prints_the_decision_and_the_machines_that_went_ahead_without_their_safety_work():
    from prepost.render import render_run
    from shared.usecases.run_report import run_report

    estate, [a, b] = planned(2, {"prepost-max-errors": "1"})
    succeed(estate, a)
    succeed(estate, b, Action.START_VM)
    estate.report(Action.SNAPSHOT_DISKS, b, TaskStatus.FAILED, detail="HTTP 409 disk busy")
    silence(estate)

    report = run_report(estate.key, estate.records)
    text = render_run(report)

    assert report["gate"]["verdict"] == "proceed" and report["gate"]["failing"][0]["machine"] == b
    assert "Gate       proceed at" in text and "(phase-completed): 1 of 2 machines failing, budget 1 allows 1" in text
    assert "  x vm-01: snapshot-disks failed: HTTP 409 disk busy" in text
