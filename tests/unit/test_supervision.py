"""Supervision: outcomes counted once, phases closed, runs cancelled when the safety work failed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import MessageRejected, PermanentError, TransientError
from shared.models.events import DEFAULT_CUTOFF_BEFORE_START, format_time
from shared.models.messages import CheckPreDeadline, PlanPhase, PostFallback
from shared.models.run import Action, Phase, PhaseSource, PhaseStatus, TaskStatus
from shared.ports.idempotency import RecordChanged
from shared.usecases.supervision import MAX_HOP, cancel_run, check_pre_deadline, post_fallback
from tests.fakes import FakeRunRecords
from tests.fakes_azure import FakeEstate


def planned(tags=None, records=None) -> tuple[FakeEstate, str]:
    """The sample run planned with one VM: start, snapshot and one suppression task."""
    estate = FakeEstate(tags=tags)
    if records is not None:
        estate.records = records
    vm = estate.add_vm("vm-web-01")
    estate.planned_pre()
    return estate, vm


def finish_all_but_snapshot(estate: FakeEstate, vm: str) -> None:
    estate.pass_preflight()
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    estate.report(Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.SUCCEEDED, data={"rule_id": "/r"})


def deadline_check(estate: FakeEstate, *, now=None) -> str:
    now = now or estate.event.cancel_deadline(timedelta(minutes=2))
    return check_pre_deadline(
        CheckPreDeadline(run_key=estate.key),
        records=estate.records,
        cancellation=estate.cancellation,
        transport=estate.transport,
        now=now,
    )


def cancel(estate: FakeEstate, reason: str = "test", *, now=None):
    return cancel_run(
        estate.key,
        reason,
        records=estate.records,
        cancellation=estate.cancellation,
        transport=estate.transport,
        now=now or estate.now,
    )


def fallback(estate: FakeEstate, *, now, sweep: int = 0) -> str:
    message = PostFallback(run_key=estate.key, sweep=sweep)
    return post_fallback(message, records=estate.records, transport=estate.transport, now=now)


# -- outcomes ----------------------------------------------------------------------------


def test_an_outcome_updates_the_task_record():
    estate, vm = planned()

    changed = estate.report(
        Action.START_VM,
        vm,
        TaskStatus.SUCCEEDED,
        detail="started from deallocated",
        attempts=2,
        data={"started_by_us": True},
    )

    task = estate.task(Phase.PRE, Action.START_VM, vm)
    assert changed is True
    assert task.status is TaskStatus.SUCCEEDED
    assert task.detail == "started from deallocated"
    assert task.attempts == 2
    assert task.data["started_by_us"] is True
    assert task.finished_at == estate.now


def test_a_final_outcome_delivered_twice_is_counted_once():
    estate, vm = planned()

    first = estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED)
    second = estate.report(Action.START_VM, vm, TaskStatus.FAILED, detail="late duplicate")

    assert (first, second) == (True, False)
    assert estate.phase().finished_tasks == 1
    assert estate.phase().failed_tasks == 0
    assert estate.task(Phase.PRE, Action.START_VM, vm).status is TaskStatus.SUCCEEDED


def test_a_retrying_outcome_is_recorded_but_not_counted():
    estate, vm = planned()

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.RETRYING, detail="throttled", attempts=1)

    assert estate.task(Phase.PRE, Action.SNAPSHOT_DISKS, vm).status is TaskStatus.RETRYING
    assert estate.phase().finished_tasks == 0

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED, attempts=2)

    assert estate.phase().finished_tasks == 1
    assert estate.task(Phase.PRE, Action.SNAPSHOT_DISKS, vm).attempts == 2


def test_an_in_progress_outcome_is_recorded_but_not_counted_and_keeps_the_task_open():
    estate, vm = planned()
    estate.report(Action.START_VM, vm, TaskStatus.IN_PROGRESS, detail="start VM: start requested", data={"a": 1})
    estate.report(Action.START_VM, vm, TaskStatus.IN_PROGRESS, detail="start VM: starting")

    task = estate.task(Phase.PRE, Action.START_VM, vm)
    assert (task.status, task.detail, task.data["a"]) == (TaskStatus.IN_PROGRESS, "start VM: starting", 1)
    assert estate.phase().finished_tasks == 0

    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, detail="started from deallocated")
    late = estate.report(Action.START_VM, vm, TaskStatus.IN_PROGRESS, detail="start VM: starting")

    assert late is False  # an in-progress outcome overtaken by the final one changes nothing
    assert estate.task(Phase.PRE, Action.START_VM, vm).status is TaskStatus.SUCCEEDED
    assert estate.phase().finished_tasks == 1


def test_the_deadline_check_counts_a_task_in_progress_as_pending():
    estate, vm = planned()
    finish_all_but_snapshot(estate, vm)
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.IN_PROGRESS, detail="snapshot disks: 0 of 1 snapshot(s) ready")

    assert "1 tasks pending" in deadline_check(estate)
    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]


def test_an_outcome_for_an_unknown_task_is_rejected_as_not_prepost_s():
    estate, _ = planned()

    with pytest.raises(MessageRejected, match="unknown task"):
        estate.report(Action.START_VM, estate.add_vm("vm-not-planned", in_run=False), TaskStatus.SUCCEEDED)


def test_the_phase_completes_when_every_task_is_final():
    estate, vm = planned()
    finish_all_but_snapshot(estate, vm)
    assert estate.phase().status is PhaseStatus.PLANNED

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)

    phase = estate.phase()
    assert phase.status is PhaseStatus.COMPLETED
    assert phase.completed_at == estate.now
    assert phase.finished_tasks == phase.expected_tasks == len(estate.tasks(Phase.PRE))
    assert estate.cancellation.calls == []


def test_a_failure_that_is_not_safety_critical_completes_with_failures_without_cancelling():
    estate, vm = planned()
    estate.pass_preflight()
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED)
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)

    estate.report(Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.FAILED, detail="forbidden")

    phase = estate.phase()
    assert phase.status is PhaseStatus.COMPLETED_WITH_FAILURES
    assert phase.failed_tasks == 1
    assert estate.cancellation.calls == []


class FlakyPhaseRecords(FakeRunRecords):
    """Loses the first phase write after arming: another handler changed the phase meanwhile."""

    armed = False

    def replace_phase(self, phase):
        if self.armed:
            self.armed = False
            raise RecordChanged("phase changed")
        return super().replace_phase(phase)


def test_a_concurrent_phase_change_does_not_lose_or_double_the_count():
    records = FlakyPhaseRecords()
    estate, vm = planned(records=records)
    records.armed = True

    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED)

    assert estate.phase().finished_tasks == 1


# -- cancelling after a failed pre phase -------------------------------------------------


def test_a_failed_snapshot_cancels_the_run_once():
    estate, vm = planned()
    finish_all_but_snapshot(estate, vm)

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="disk not found")
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="disk not found")  # redelivered
    deadline_check(estate)  # the deadline check still fires later

    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]
    run = estate.records.get_run(estate.key)
    assert run.cancel_requested_at == estate.now
    assert "1 pre tasks failed" in run.cancel_reason and "vm-web-01" in run.cancel_reason
    assert estate.cancellation.status in run.cancel_result
    assert estate.phase().status is PhaseStatus.COMPLETED_WITH_FAILURES


def test_a_failed_start_cancels_the_run_too():
    estate, vm = planned()
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)
    estate.report(Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.SUCCEEDED)

    estate.report(Action.START_VM, vm, TaskStatus.FAILED)

    assert len(estate.cancellation.calls_to("cancel")) == 1


def test_a_failure_over_the_budget_cancels_at_once_without_waiting_for_the_phase():
    estate, vm = planned()

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="quota")

    assert not estate.phase().status.is_final  # other tasks still running
    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]
    gate = estate.records.get_run(estate.key).gate
    assert gate["verdict"] == "cancel" and gate["moment"] == "budget-exceeded"
    assert [m["machine"] for m in gate["failing"]] == [vm]


def test_a_failure_within_the_budget_does_not_cancel_while_the_phase_runs():
    estate, vm = planned(tags={"prepost-max-errors": "1"})

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED)

    assert estate.cancellation.calls == []
    assert estate.records.get_run(estate.key).gate is None


def test_cancel_on_failure_false_does_not_cancel():
    estate, vm = planned(tags={"prepost-cancel-on-failure": "false"})
    finish_all_but_snapshot(estate, vm)

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED)

    assert estate.phase().status is PhaseStatus.COMPLETED_WITH_FAILURES
    assert estate.cancellation.calls == []
    run = estate.records.get_run(estate.key)
    assert run.cancel_accepted is False
    assert "prepost-cancel-on-failure=false" in run.cancel_result  # the record says why not


def test_a_refused_cancellation_is_recorded():
    estate, vm = planned()
    finish_all_but_snapshot(estate, vm)
    estate.cancellation.fail("cancel", PermanentError("403 AuthorizationFailed"))

    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED)

    run = estate.records.get_run(estate.key)
    assert run.cancel_result.startswith("cancel refused")
    assert "AuthorizationFailed" in run.cancel_result


def test_a_transient_cancellation_failure_is_raised_and_the_retry_cancels():
    estate, vm = planned()
    estate.cancellation.fail("cancel", TransientError("503"))

    with pytest.raises(TransientError):
        cancel(estate)
    assert estate.records.get_run(estate.key).cancel_requested_at is None

    cancel(estate)

    assert estate.cancellation.cancelled == [estate.event.correlation_id]
    assert estate.records.get_run(estate.key).cancel_requested_at == estate.now


def test_a_cancellation_after_the_run_started_is_recorded_as_too_late():
    estate, _ = planned()

    cancel(estate, "pre-work failed", now=estate.event.start)

    run = estate.records.get_run(estate.key)
    assert estate.cancellation.calls == []
    assert run.cancel_result.startswith("too late")
    assert run.cancel_reason == "pre-work failed"


def test_a_cancellation_after_the_cutoff_is_not_attempted_but_recorded():
    estate, _ = planned()
    after_cutoff = estate.event.start - DEFAULT_CUTOFF_BEFORE_START + timedelta(minutes=1)

    cancel(estate, "late", now=after_cutoff)

    assert estate.cancellation.calls_to("cancel") == []
    run = estate.records.get_run(estate.key)
    assert run.cancel_requested_at == after_cutoff and not run.cancel_accepted
    assert "the cut-off" in run.cancel_result and "had passed" in run.cancel_result


# -- the deadline check ------------------------------------------------------------------


def test_the_deadline_check_cancels_when_pre_tasks_are_pending():
    estate, vm = planned()
    estate.pass_preflight()
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED)

    result = deadline_check(estate)

    assert "2 tasks pending" in result
    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]
    assert "not finished by the cancellation deadline" in estate.records.get_run(estate.key).cancel_reason


def test_the_deadline_check_twice_cancels_once():
    estate, _ = planned()

    deadline_check(estate)
    deadline_check(estate)

    assert len(estate.cancellation.calls_to("cancel")) == 1


def test_the_deadline_check_leaves_a_completed_pre_phase_alone():
    estate, vm = planned()
    finish_all_but_snapshot(estate, vm)
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)

    result = deadline_check(estate)

    assert "already completed" in result
    assert estate.cancellation.calls == []


def test_the_deadline_check_closes_a_phase_whose_last_count_was_lost():
    estate, vm = planned()
    for action in (Action.PREFLIGHT, Action.START_VM, Action.SNAPSHOT_DISKS):
        task = estate.task(Phase.PRE, action, vm)
        task.status = TaskStatus.SUCCEEDED
        estate.records.replace_task(task)
    task = estate.task(Phase.PRE, Action.SUPPRESS_ALERTS, estate.subscriptions[0])
    task.status = TaskStatus.SUCCEEDED
    estate.records.replace_task(task)
    phase = estate.phase()
    phase.finished_tasks = phase.expected_tasks  # the counters said done, nobody closed it
    estate.records.replace_phase(phase)

    result = deadline_check(estate)

    assert result == "pre phase completed"
    assert estate.phase().status is PhaseStatus.COMPLETED
    assert estate.cancellation.calls == []


def test_the_deadline_check_cancels_a_pre_phase_never_planned():
    estate = FakeEstate()
    estate.deliver()

    result = deadline_check(estate)

    assert "never planned" in result
    assert len(estate.cancellation.calls_to("cancel")) == 1


def test_the_deadline_check_respects_cancel_on_failure_false():
    estate, _ = planned(tags={"prepost-cancel-on-failure": "false"})

    deadline_check(estate)

    assert estate.cancellation.calls == []
    assert "prepost-cancel-on-failure=false" in estate.records.get_run(estate.key).cancel_result


def test_the_deadline_check_without_a_pre_phase_does_nothing():
    estate = FakeEstate()
    estate.deliver("post-eventgrid.json")

    assert deadline_check(estate) == "no pre phase recorded"
    assert estate.cancellation.calls == []


# -- the post fallback -------------------------------------------------------------------


def test_the_fallback_starts_the_post_phase_when_no_post_event_came():
    estate, _ = planned()
    later = estate.event.end + timedelta(hours=1)

    fallback(estate, now=later)

    phase = estate.phase(Phase.POST)
    assert phase.source is PhaseSource.FALLBACK
    assert phase.status is PhaseStatus.RECEIVED
    assert phase.received_at == later
    assert estate.transport.of_kind(PlanPhase) == [PlanPhase(run_key=estate.key, phase=Phase.POST)]
    # It comes back to see the post phase through.
    assert [m.sweep for m in estate.transport.of_kind(PostFallback)] == [1]


def test_the_fallback_leaves_a_finished_post_phase_alone():
    estate, vm = planned()
    finish_all_but_snapshot(estate, vm)
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)
    estate.deliver("post-eventgrid.json")
    estate.plan(Phase.POST)
    for task in estate.tasks(Phase.POST):
        estate.report(task.action, task.target, TaskStatus.SUCCEEDED, phase=Phase.POST)
    estate.transport.take()

    result = fallback(estate, now=estate.event.end + timedelta(hours=1))

    assert estate.phase(Phase.POST).status is PhaseStatus.COMPLETED
    assert "completed" in result
    assert estate.transport.sent == []
    assert estate.phase(Phase.POST).source is PhaseSource.EVENT


def test_a_safety_net_delivered_early_is_sent_on_until_it_is_due():
    estate, _ = planned()
    due = estate.event.end + timedelta(hours=1)
    early = PostFallback(run_key=estate.key, due=format_time(due))

    result = post_fallback(early, records=estate.records, transport=estate.transport, now=due - timedelta(days=9))

    assert "not due" in result
    assert estate.phase(Phase.POST) is None
    [sent] = estate.transport.sent
    assert sent.message == early.resent() and sent.delay == MAX_HOP


class DiesAfterMarkingPlanned(FakeRunRecords):
    """The instance dies right after a phase is marked planned, before anyone closes it."""

    armed = False

    def replace_phase(self, phase):
        stored = super().replace_phase(phase)
        if self.armed and phase.status is PhaseStatus.PLANNED:
            self.armed = False
            raise SystemExit("the instance died")
        return stored


def post_phase_of_no_tasks_left_planned() -> FakeEstate:
    """A run whose pre-event came after the start (nothing planned, nothing to undo); the delivery
    that planned its post phase died before closing it."""
    records = DiesAfterMarkingPlanned()
    estate = FakeEstate()
    estate.records = records
    estate.deliver()
    estate.plan(now=estate.event.start + timedelta(minutes=2))  # fenced: the pre phase fails to plan
    estate.deliver("post-eventgrid.json")
    records.armed = True
    with pytest.raises(SystemExit):
        estate.plan(Phase.POST)
    assert estate.phase(Phase.POST).status is PhaseStatus.PLANNED and estate.tasks(Phase.POST) == []
    return estate


def test_a_redelivered_plan_closes_a_post_phase_whose_closing_died_with_its_instance():
    estate = post_phase_of_no_tasks_left_planned()

    estate.plan(Phase.POST)  # the queue delivers the plan message again

    assert estate.phase(Phase.POST).status is PhaseStatus.COMPLETED


def test_the_fallback_closes_a_post_phase_left_planned_with_every_task_final():
    estate = post_phase_of_no_tasks_left_planned()
    estate.transport.take()

    result = fallback(estate, now=estate.event.end + timedelta(hours=1))

    assert estate.phase(Phase.POST).status is PhaseStatus.COMPLETED
    assert "closed (completed)" in result
    assert estate.transport.sent == []  # settled: no further look


# -- the deadline is the run record's, never the message's -------------------------------------


@pytest.mark.parametrize(
    "due",
    [None, "forged-early"],
    ids=["no-due", "due-earlier-than-the-record"],
)
def test_a_deadline_check_arriving_early_cancels_nothing_and_is_sent_on_to_the_record_s_deadline(due):
    estate, vm = planned()
    finish_all_but_snapshot(estate, vm)  # the snapshot is still at work: at the deadline this cancels
    estate.transport.take()
    deadline = estate.event.cancel_deadline(timedelta(minutes=2))
    now = deadline - timedelta(minutes=7)
    forged = CheckPreDeadline(run_key=estate.key, due=format_time(now - timedelta(minutes=1)) if due else None)

    result = deadline_check_of(estate, forged, now=now)

    assert "sent on" in result
    assert estate.cancellation.calls_to("cancel") == []
    run = estate.records.get_run(estate.key)
    assert run.cancel_requested_at is None and run.gate is None
    [sent] = estate.transport.take()
    assert type(sent.message) is CheckPreDeadline and sent.message.due_at() == deadline
    assert sent.delay == deadline - now
    assert sent.message.message_id != forged.message_id
    # WHEN it comes back at the deadline, the check is made (and here it cancels: work unfinished)
    assert "1 tasks pending" in deadline_check_of(estate, sent.message, now=deadline)
    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]


def test_a_deadline_check_days_early_hops_at_most_max_hop_and_acts_at_the_deadline_only():
    estate, vm = planned()
    finish_all_but_snapshot(estate, vm)
    estate.transport.take()
    deadline = estate.event.cancel_deadline(timedelta(minutes=2))
    message, now = CheckPreDeadline(run_key=estate.key), deadline - MAX_HOP - timedelta(days=2)

    hops = 0
    while "sent on" in (result := deadline_check_of(estate, message, now=now)):
        [sent] = estate.transport.take()
        assert sent.delay <= MAX_HOP and estate.cancellation.calls_to("cancel") == []
        message, now, hops = sent.message, now + sent.delay, hops + 1

    assert hops == 2 and now == deadline
    assert "1 tasks pending" in result


def test_the_deadline_follows_the_configured_margin_and_the_recorded_cut_off():
    estate, vm = planned()
    finish_all_but_snapshot(estate, vm)
    estate.transport.take()
    margin = timedelta(minutes=5)
    deadline = estate.event.cancel_deadline(margin)

    early = check_pre_deadline(
        CheckPreDeadline(run_key=estate.key),
        records=estate.records,
        cancellation=estate.cancellation,
        transport=estate.transport,
        now=deadline - timedelta(seconds=1),
        margin=margin,
    )

    assert "sent on" in early and estate.cancellation.calls_to("cancel") == []
    [sent] = estate.transport.take()
    assert sent.message.due_at() == deadline


def test_a_deadline_check_for_an_unknown_run_does_nothing():
    estate, _ = planned()
    estate.transport.take()

    result = deadline_check_of(estate, CheckPreDeadline(run_key="mc-unknown-20261122020000-000000000000"))

    assert result == "no run recorded"
    assert estate.transport.sent == [] and estate.cancellation.calls_to("cancel") == []


def deadline_check_of(estate: FakeEstate, message: CheckPreDeadline, *, now=None) -> str:
    return check_pre_deadline(
        message,
        records=estate.records,
        cancellation=estate.cancellation,
        transport=estate.transport,
        now=now or estate.event.cancel_deadline(timedelta(minutes=2)),
    )
