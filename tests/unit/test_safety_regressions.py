"""The safety promise under storage faults, lost messages, late replays and large work.

Each section is one way the promise broke: a run cancelled although its work succeeded, safety
nets lost at intake, a post phase stuck for good, pre-work begun after it was moot, a re-send
dropped as a duplicate, a lock released by a worker that no longer held it, a cancellation that
stopped nothing, and work too large for a queue message or a policy tag beyond reason.

Faults are injected with small subclasses of the fakes defined here: records whose chosen write
fails, a transport whose chosen send fails. Everything else is the use cases themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

from shared.adapters.arm.compute import ArmCompute
from shared.adapters.servicebus_transport import servicebus_message_id
from shared.adapters.storage_queue_transport import MAX_MESSAGE_BYTES, _checked_body
from shared.errors import PermanentError, TransientError
from shared.models.messages import (
    CheckPreDeadline,
    MonitoringMessage,
    PlanPhase,
    PostFallback,
    TaskMessage,
    TaskOutcome,
    WorkMessage,
)
from shared.models.policy import RunPolicy
from shared.models.retry import RetryPolicy
from shared.models.run import Action, Phase, PhaseSource, PhaseStatus, TaskStatus
from shared.ports.azure import PowerState, Snapshot
from shared.ports.idempotency import RecordChanged
from shared.usecases.machine_actions import TAG_MACHINE, TAG_RUN, MachinePorts, perform_machine_action
from shared.usecases.monitoring_actions import MonitoringPorts, perform_monitoring_action
from shared.usecases.planning import plan_phase
from shared.usecases.supervision import check_pre_deadline, post_fallback
from shared.usecases.task_runner import Delivery, FollowUp, TaskResult, run_task
from tests.fakes import FakeIdempotencyStore, FakeRunRecords, FakeTransport, SentMessage
from tests.fakes_azure import CANCEL_MARGIN, GRACE, POST_SAMPLE, FakeEstate, disk_id

CONFLICT_RETRIES = 20
"""How often a handler retries a write that lost an etag race before it gives up."""
DEFAULT_GRACE = timedelta(minutes=60)
LOCK_TIMEOUT = timedelta(minutes=10)
CHECK_INTERVAL = timedelta(seconds=20)


# -- faults ------------------------------------------------------------------------------------


class FaultyRunRecords(FakeRunRecords):
    """Run records whose chosen writes fail, as a 503 or a lost etag race would.

    ``fail("replace_phase", "replace_task_and_phase", error=...)`` makes the next call of any
    of those methods raise ``error`` (``times`` calls in a row); ``before("update_run", hook)``
    runs ``hook`` once right before the next call, to let another instance write in between.
    Nothing is written by a call that fails.
    """

    def __init__(self) -> None:
        super().__init__()
        self._faults: list[tuple[frozenset[str], BaseException, list[int]]] = []
        self._hooks: dict[str, Callable[[], None]] = {}
        self.failed: list[str] = []

    def fail(self, *methods: str, error: BaseException, times: int = 1) -> None:
        self._faults.append((frozenset(methods), error, [times]))

    def before(self, method: str, hook: Callable[[], None]) -> None:
        self._hooks[method] = hook

    def _write(self, method: str) -> None:
        hook = self._hooks.pop(method, None)
        if hook is not None:
            hook()
        for methods, error, left in self._faults:
            if method in methods and left[0] > 0:
                left[0] -= 1
                self.failed.append(method)
                raise error

    def update_run(self, run):
        self._write("update_run")
        return super().update_run(run)

    def replace_phase(self, phase):
        self._write("replace_phase")
        return super().replace_phase(phase)

    def replace_task(self, task):
        self._write("replace_task")
        return super().replace_task(task)

    def replace_task_and_phase(self, task, phase):
        self._write("replace_task_and_phase")
        return super().replace_task_and_phase(task, phase)


@dataclass
class FailingTransport(FakeTransport):
    """Fails the first send that carries a message of ``failing_kind`` (nothing of it is sent)."""

    failing_kind: type[WorkMessage] | None = None
    error: BaseException = field(default_factory=lambda: HttpResponseError(message="503 Server Busy"))

    def send(self, messages: Sequence[WorkMessage], *, delay: timedelta | None = None) -> None:
        if self.failing_kind is not None and any(type(m) is self.failing_kind for m in messages):
            self.failing_kind = None
            raise self.error
        super().send(messages, delay=delay)


def a_503() -> HttpResponseError:
    return HttpResponseError(message="503 Server Busy: the table service is overloaded")


# -- arranging ---------------------------------------------------------------------------------


def planned_run(*names: str, tags=None, records: FakeRunRecords | None = None) -> tuple[FakeEstate, list[str]]:
    """The sample run with deallocated VMs, its pre phase planned; the transport emptied."""
    estate = FakeEstate(tags=tags)
    if records is not None:
        estate.records = records
    vms = [estate.add_vm(name) for name in names or ("vm-web-01",)]
    estate.planned_pre()
    estate.pass_preflight()  # the readiness checks found nothing: these tests are about the rest
    return estate, vms


def deadline(estate: FakeEstate) -> datetime:
    return estate.event.cancel_deadline(CANCEL_MARGIN)


def deadline_check(estate: FakeEstate) -> str:
    """The deadline check, delivered when it is due."""
    return check_pre_deadline(
        CheckPreDeadline(run_key=estate.key, due=deadline(estate).isoformat()),
        records=estate.records,
        cancellation=estate.cancellation,
        transport=estate.transport,
        now=deadline(estate),
    )


def fallback_due(estate: FakeEstate) -> datetime:
    return estate.event.end + GRACE


def machine_ports(estate: FakeEstate) -> MachinePorts:
    return MachinePorts(
        records=estate.records,
        compute=estate.compute,
        arc=estate.arc,
        allowed_subscriptions=estate.allowed_subscriptions,
    )


def monitoring_ports(estate: FakeEstate) -> MonitoringPorts:
    return MonitoringPorts(
        records=estate.records,
        alerts=estate.alerts,
        default_grace=DEFAULT_GRACE,
        rule_resource_group=None,
        allowed_subscriptions=estate.allowed_subscriptions,
    )


def task_message(estate: FakeEstate, action: Action, target: str, *, phase: Phase = Phase.PRE, **kwargs) -> TaskMessage:
    """The message of the task, recorded as the planner records it (see ``FakeEstate.as_planned``)."""
    cls = MonitoringMessage if action.is_monitoring else TaskMessage
    options = kwargs.pop("options", None)
    message = cls(run_key=estate.key, phase=phase, action=action, target=target, **kwargs)
    return estate.as_planned(message, options=options)


def act(estate: FakeEstate, action: Action, target: str, *, now: datetime, phase: Phase = Phase.PRE):
    """One delivery of a task message to its action, as the task handlers make it."""
    message = task_message(estate, action, target, phase=phase)
    if action.is_monitoring:
        return perform_monitoring_action(message, monitoring_ports(estate), now=now)
    return perform_machine_action(message, machine_ports(estate), now=now)


def succeed_pre_work(estate: FakeEstate, vm: str) -> None:
    """Every pre task of one VM's run reported done: started by prepost, snapshot taken, alerts silenced."""
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)
    estate.report(
        Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.SUCCEEDED, data={"rule_id": "/rules/prepost"}
    )


def kinds(sent: list[SentMessage]) -> list[type]:
    return [type(item.message) for item in sent]


def messages_of(sent: list[SentMessage], cls: type) -> list[Any]:
    return [item.message for item in sent if type(item.message) is cls]


def plan_what_was_sent(estate: FakeEstate, sent: list[SentMessage], *, now: datetime) -> None:
    """The planner handles every plan message that reached the queue."""
    for message in messages_of(sent, PlanPhase):
        plan_phase(message, estate.planning(), now=now)


# == 1. a healthy run is never cancelled because a counter write was lost ========================


@pytest.mark.parametrize(
    ("error", "times"),
    [
        pytest.param(a_503(), 1, id="a 503"),
        pytest.param(RecordChanged("phase changed meanwhile"), CONFLICT_RETRIES, id="20 lost etag races"),
    ],
)
def test_a_lost_phase_counter_write_does_not_cancel_a_healthy_run(error, times):
    records = FaultyRunRecords()
    estate, [vm] = planned_run(records=records)
    # GIVEN the write that counts the first outcome into the phase fails
    records.fail("replace_phase", "replace_task_and_phase", error=error, times=times)
    with pytest.raises((AzureError, TransientError)):
        estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    assert records.failed, "the fault was not reached"

    # WHEN the queue delivers that outcome again, and the other tasks succeed
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)
    estate.report(Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.SUCCEEDED, data={"rule_id": "/r"})

    # THEN the phase is complete with every task counted, and nothing asked for a cancellation
    phase = estate.phase()
    assert phase.status is PhaseStatus.COMPLETED
    assert phase.finished_tasks == phase.expected_tasks == 4
    assert estate.cancellation.calls == []
    assert estate.records.get_run(estate.key).cancel_requested_at is None


def test_a_redelivered_outcome_for_a_final_task_still_closes_the_phase():
    records = FaultyRunRecords()
    estate, [vm] = planned_run(records=records)
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    estate.report(Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.SUCCEEDED, data={"rule_id": "/r"})
    # GIVEN the delivery of the last outcome dies on a phase write after its task was recorded
    records.fail("replace_phase", error=a_503())
    with pytest.raises(AzureError):
        estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)
    assert estate.task(Phase.PRE, Action.SNAPSHOT_DISKS, vm).status is TaskStatus.SUCCEEDED

    # WHEN the queue delivers the same outcome again
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.SUCCEEDED)

    # THEN it closes the phase, counting the task once
    phase = estate.phase()
    assert phase.status is PhaseStatus.COMPLETED
    assert phase.finished_tasks == phase.expected_tasks == 4
    assert estate.cancellation.calls == []


def test_a_redelivered_failed_snapshot_outcome_still_cancels_the_run():
    records = FaultyRunRecords()
    estate, [vm] = planned_run(records=records)
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    estate.report(Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.SUCCEEDED, data={"rule_id": "/r"})
    # GIVEN the failed snapshot's outcome was recorded but its delivery died before closing the phase
    records.fail("replace_phase", error=a_503())
    with pytest.raises(AzureError):
        estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="disk busy")

    # WHEN it is delivered again
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="disk busy")

    # THEN patching without the snapshot is stopped: the phase closes and the run is cancelled
    assert estate.phase().status is PhaseStatus.COMPLETED_WITH_FAILURES
    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]


def test_the_deadline_check_does_not_cancel_a_run_whose_tasks_all_succeeded_whatever_the_counter_says():
    estate, [vm] = planned_run()
    # GIVEN every pre task succeeded in its own record, but the phase's counter never moved
    for task in estate.tasks(Phase.PRE):
        task.status = TaskStatus.SUCCEEDED
        estate.records.replace_task(task)
    assert estate.phase().finished_tasks == 1  # only the preflight, reported by planned_run

    # WHEN the cancellation deadline comes
    result = deadline_check(estate)

    # THEN the phase is closed from the task records, and the run is left to patch
    assert result == "pre phase completed"
    assert estate.phase().status is PhaseStatus.COMPLETED
    assert estate.cancellation.calls == []
    assert estate.records.get_run(estate.key).cancel_requested_at is None


def test_a_cancellation_that_failed_transiently_when_the_pre_phase_closed_is_still_made_by_the_deadline():
    estate, [vm] = planned_run()
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    estate.report(Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.SUCCEEDED, data={"rule_id": "/r"})
    # GIVEN the snapshot failed, and the cancel call made when its outcome closed the phase failed transiently
    estate.cancellation.fail("cancel", TransientError("503 from Update Manager"))
    with pytest.raises(TransientError):
        estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="disk busy")

    # WHEN the outcome is delivered again, and the cancellation deadline comes
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="disk busy")
    deadline_check(estate)

    # THEN the run is cancelled: patching must not go ahead without the snapshot
    assert estate.cancellation.cancelled == [estate.event.correlation_id]
    assert estate.records.get_run(estate.key).cancel_accepted is True


def test_a_pre_phase_that_could_not_be_planned_still_cancels_the_run_when_the_cancel_call_failed_once():
    estate = FakeEstate()
    estate.add_vm("vm-web-01")
    estate.deliver()
    # GIVEN planning fails for good, and the cancel call it makes fails transiently
    estate.inventory.fail("list_run_machines", PermanentError("AuthorizationFailed: no Reader on the subscription"))
    estate.cancellation.fail("cancel", TransientError("503 from Update Manager"))
    with pytest.raises(TransientError):
        estate.plan()

    # WHEN the plan message is delivered again, and the cancellation deadline comes
    estate.plan()
    deadline_check(estate)

    # THEN the run is cancelled: patching must not go ahead without the safety work
    assert estate.cancellation.cancelled == [estate.event.correlation_id]
    assert estate.records.get_run(estate.key).cancel_accepted is True


# == 2. the safety nets survive a failed send at intake =========================================


def test_safety_nets_are_sent_again_when_a_duplicate_pre_event_finds_the_phase_planned():
    estate, _ = planned_run()
    assert estate.phase().status is PhaseStatus.PLANNED

    # WHEN Event Grid delivers the pre-event again
    estate.deliver()

    # THEN both safety nets go out again, each due when it must act; the plan is not repeated
    sent = estate.transport.take()
    assert CheckPreDeadline in kinds(sent)
    assert PostFallback in kinds(sent)
    assert PlanPhase not in kinds(sent)
    [check] = messages_of(sent, CheckPreDeadline)
    [fallback] = messages_of(sent, PostFallback)
    assert check.due_at() == deadline(estate)
    assert fallback.due_at() == fallback_due(estate)


def test_a_pre_event_whose_safety_net_send_failed_gets_its_nets_from_the_redelivery():
    estate = FakeEstate()
    estate.add_vm("vm-web-01")
    estate.transport = FailingTransport(failing_kind=PostFallback)

    # GIVEN the first delivery of the pre-event fails to send the post fallback
    with pytest.raises(AzureError):
        estate.deliver()
    # ... and the planner handles whatever plan message that delivery got out
    plan_what_was_sent(estate, estate.transport.sent, now=estate.now)

    # WHEN Event Grid delivers the pre-event again, and the planner handles what it sent
    redelivered = len(estate.transport.sent)
    estate.deliver()
    plan_what_was_sent(estate, estate.transport.sent[redelivered:], now=estate.now)

    # THEN the run has its post fallback and its deadline check, and its pre phase is planned
    assert PostFallback in kinds(estate.transport.sent)
    assert CheckPreDeadline in kinds(estate.transport.sent)
    assert estate.phase().status is PhaseStatus.PLANNED


def test_no_plan_goes_out_before_the_safety_nets_are_sent():
    estate = FakeEstate()
    estate.add_vm("vm-web-01")

    estate.deliver()

    sent = kinds(estate.transport.take())
    assert sent.index(PlanPhase) > sent.index(CheckPreDeadline)
    assert sent.index(PlanPhase) > sent.index(PostFallback)


# == 3. a stuck post phase is rescued by the fallback ===========================================


def post_phase_received(estate: FakeEstate, vm: str) -> PlanPhase:
    """The pre-work done, the post-event received, its plan message parked (lost); returns that message."""
    succeed_pre_work(estate, vm)
    assert estate.phase().status is PhaseStatus.COMPLETED
    estate.deliver(POST_SAMPLE, now=estate.event.end)
    [lost] = [m for m in messages_of(estate.transport.take(), PlanPhase) if m.phase is Phase.POST]
    assert estate.phase(Phase.POST).status is PhaseStatus.RECEIVED
    return lost


def run_fallback(estate: FakeEstate, message: PostFallback, *, now: datetime) -> tuple[str, list[SentMessage]]:
    result = post_fallback(message, records=estate.records, transport=estate.transport, now=now)
    return result, estate.transport.take()


def test_the_fallback_plans_a_post_phase_stuck_in_received():
    estate, [vm] = planned_run()
    lost = post_phase_received(estate, vm)
    due = fallback_due(estate)

    # WHEN the post fallback comes due
    _, sent = run_fallback(estate, PostFallback(run_key=estate.key, due=due.isoformat()), now=due)

    # THEN the plan is sent again under an id Service Bus has not seen, and planning it deallocates the VM
    [plan] = [m for m in messages_of(sent, PlanPhase) if m.phase is Phase.POST]
    assert servicebus_message_id(plan.message_id) != servicebus_message_id(lost.message_id)
    plan_phase(plan, estate.planning(), now=due)
    assert estate.phase(Phase.POST).status is PhaseStatus.PLANNED
    assert estate.task(Phase.POST, Action.DEALLOCATE_VM, vm).status is TaskStatus.QUEUED


def test_the_fallback_sends_unfinished_post_tasks_again_from_its_second_look_until_the_phase_is_settled():
    estate, [vm] = planned_run()
    post_phase_received(estate, vm)
    plan_phase(PlanPhase(run_key=estate.key, phase=Phase.POST), estate.planning(), now=estate.event.end)
    # GIVEN the post tasks' messages were all lost (parked)
    lost = {m.task_id: m for m in messages_of(estate.transport.take(), TaskMessage)}
    lost.update({m.task_id: m for m in messages_of(estate.transport.sent, MonitoringMessage)})
    assert estate.phase(Phase.POST).status is PhaseStatus.PLANNED
    due = fallback_due(estate)

    # WHEN the fallback looks the first time, the tasks may still be at work: it only looks again later
    _, first = run_fallback(estate, PostFallback(run_key=estate.key, due=due.isoformat()), now=due)
    assert not [m for m in (item.message for item in first) if isinstance(m, TaskMessage)]
    [second_look] = messages_of(first, PostFallback)
    assert second_look.sweep == 1
    assert second_look.due_at() > due

    # WHEN it looks the second time
    _, second = run_fallback(estate, second_look, now=second_look.due_at())

    # THEN every unfinished task goes out again under a fresh id, and another look is scheduled
    resent = [m for m in (item.message for item in second) if isinstance(m, TaskMessage)]
    assert {m.task_id for m in resent} == {task.task_id for task in estate.tasks(Phase.POST)}
    for message in resent:
        original = task_message(estate, message.action, message.target, phase=Phase.POST, options=message.options)
        assert servicebus_message_id(message.message_id) != servicebus_message_id(original.message_id)
    [third_look] = messages_of(second, PostFallback)

    # WHEN the re-sent tasks finish, the next look finds the phase settled and looks no more
    for message in resent:
        estate.report(message.action, message.target, TaskStatus.SUCCEEDED, phase=Phase.POST)
    assert estate.phase(Phase.POST).status is PhaseStatus.COMPLETED
    _, third = run_fallback(estate, third_look, now=third_look.due_at())
    assert third == []


def test_the_fallback_gives_up_looking_after_a_bounded_number_of_looks():
    estate, [vm] = planned_run()
    post_phase_received(estate, vm)
    plan_phase(PlanPhase(run_key=estate.key, phase=Phase.POST), estate.planning(), now=estate.event.end)
    estate.transport.take()
    message = PostFallback(run_key=estate.key, due=fallback_due(estate).isoformat())

    looks = 0
    while message is not None and looks < 100:
        looks += 1
        _, sent = run_fallback(estate, message, now=message.due_at())
        message = next(iter(messages_of(sent, PostFallback)), None)

    assert message is None
    assert 2 <= looks <= 12


# == 4. pre-work is fenced once it is moot or too late ==========================================


def test_a_start_vm_replayed_after_the_post_phase_began_starts_nothing():
    estate, [vm] = planned_run()
    # GIVEN the post phase began (before the start: the run is over early)
    estate.deliver(POST_SAMPLE, now=estate.now)
    assert estate.phase(Phase.POST) is not None

    # WHEN the start-vm message is replayed
    result = act(estate, Action.START_VM, vm, now=estate.now + timedelta(minutes=5))

    # THEN the VM is not started and the task ends (nobody would deallocate it)
    assert estate.compute.power_state(vm) is PowerState.DEALLOCATED
    assert isinstance(result, TaskResult)
    assert result.status is TaskStatus.SKIPPED
    assert "post phase" in result.detail


def test_a_start_vm_replayed_hours_after_the_window_starts_nothing():
    estate, [vm] = planned_run()
    estate.deliver(POST_SAMPLE, now=estate.event.end)
    late = estate.event.end + timedelta(hours=3)

    result = act(estate, Action.START_VM, vm, now=late)

    assert estate.compute.power_state(vm) is PowerState.DEALLOCATED
    assert isinstance(result, TaskResult)
    assert result.status.is_final


def test_a_snapshot_replayed_after_the_run_started_takes_none_and_fails_the_task():
    estate, [vm] = planned_run()
    after_start = estate.event.start + timedelta(minutes=10)

    result = act(estate, Action.SNAPSHOT_DISKS, vm, now=after_start)

    # THEN no snapshot of an already patched machine, and the task says the safety work was missed
    assert estate.compute.snapshots == {}
    assert isinstance(result, TaskResult)
    assert result.status is TaskStatus.FAILED


def test_a_pre_event_replayed_after_the_window_plans_no_pre_work():
    estate = FakeEstate()
    vm = estate.add_vm("vm-web-01")
    late = estate.event.end + timedelta(hours=2)

    # WHEN the only delivery of the pre-event that gets through is a replay after the window
    estate.deliver(now=late)
    plan_what_was_sent(estate, estate.transport.take(), now=late)

    # THEN no pre task is planned or sent, and the VM stays deallocated
    sent = estate.transport.take()
    assert not [m for m in (item.message for item in sent) if isinstance(m, TaskMessage)]
    assert estate.tasks(Phase.PRE) == []
    assert estate.phase().status is PhaseStatus.FAILED
    assert estate.compute.power_state(vm) is PowerState.DEALLOCATED


def test_alert_suppression_arriving_after_the_post_phase_began_silences_nothing():
    estate, _ = planned_run()
    estate.deliver(POST_SAMPLE, now=estate.now)

    result = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0], now=estate.now + timedelta(minutes=5))

    assert estate.alerts.rules == {}
    assert result.status is TaskStatus.SKIPPED


# == 5. re-sends are never dropped as duplicates ================================================


def test_a_task_locked_elsewhere_is_resent_with_a_fresh_message_id():
    estate, [vm] = planned_run()
    message = task_message(estate, Action.SNAPSHOT_DISKS, vm)
    idempotency = FakeIdempotencyStore()
    # GIVEN another delivery holds the task's lock
    idempotency.begin(f"task:{message.run_key}:{message.task_id}", now=estate.now)
    transport = FakeTransport()
    calls: list[TaskMessage] = []

    def action(received: TaskMessage) -> TaskResult:
        calls.append(received)
        return TaskResult(TaskStatus.SUCCEEDED, "done")

    def deliver(received: TaskMessage) -> TaskMessage:
        run_task(
            received,
            action,
            idempotency=idempotency,
            transport=transport,
            report=[].append,
            retry=RetryPolicy(max_attempts=5),
            check_interval=CHECK_INTERVAL,
            now=lambda: estate.now,
        )
        [sent] = transport.take()
        return sent.message

    # WHEN the message is delivered, and its re-send is delivered while the lock is still held
    first = deliver(message)
    second = deliver(first)

    # THEN each re-send is the same task under an id Service Bus has not seen yet
    assert calls == []
    assert (first.task_id, first.attempt, second.task_id, second.attempt) == (message.task_id, 1, message.task_id, 1)
    ids = {servicebus_message_id(m.message_id) for m in (message, first, second)}
    assert len(ids) == 3


def test_a_safety_net_arriving_early_is_sent_on_with_a_fresh_message_id():
    estate, _ = planned_run()
    due = fallback_due(estate)
    early = PostFallback(run_key=estate.key, due=due.isoformat())

    result = post_fallback(early, records=estate.records, transport=estate.transport, now=estate.now)

    [sent] = estate.transport.take()
    assert "not due" in result
    assert type(sent.message) is PostFallback
    assert sent.message.due_at() == due
    assert servicebus_message_id(sent.message.message_id) != servicebus_message_id(early.message_id)
    assert estate.phase(Phase.POST) is None


# == 6. locks and run records are fenced by their etags =========================================


def slow_worker(estate: FakeEstate, idempotency: FakeIdempotencyStore, outcome: BaseException | TaskResult):
    """A delivery whose action outlives its lock: meanwhile a successor delivery takes the lock over."""
    message = task_message(estate, Action.SNAPSHOT_DISKS, estate.tasks(Phase.PRE)[0].target)
    key = f"task:{message.run_key}:{message.task_id}"
    taken_over = estate.now + LOCK_TIMEOUT + timedelta(minutes=1)

    def action(_: TaskMessage) -> TaskResult:
        idempotency.begin(key, now=taken_over)  # the successor's lock
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    run_task(
        message,
        action,
        idempotency=idempotency,
        transport=FakeTransport(),
        report=[].append,
        retry=RetryPolicy(max_attempts=5),
        check_interval=CHECK_INTERVAL,
        now=lambda: estate.now,
        delivery=Delivery(count=1, max_count=5),
    )
    return message, key, taken_over


def test_a_slow_worker_cannot_release_its_successors_lock():
    estate, _ = planned_run()
    idempotency = FakeIdempotencyStore(lock_timeout=LOCK_TIMEOUT)

    # GIVEN a slow delivery fails after its lock was taken over, and releases it
    message, _, taken_over = slow_worker(estate, idempotency, TransientError("throttled"))

    # WHEN a third delivery of the task arrives while the successor works
    third_calls: list[TaskMessage] = []
    transport = FakeTransport()
    run_task(
        message,
        lambda received: third_calls.append(received) or TaskResult(TaskStatus.SUCCEEDED, "again"),
        idempotency=idempotency,
        transport=transport,
        report=[].append,
        retry=RetryPolicy(max_attempts=5),
        check_interval=CHECK_INTERVAL,
        now=lambda: taken_over + timedelta(seconds=30),
    )

    # THEN the successor's lock held: the work is not done a third time at once
    assert third_calls == []
    assert kinds(transport.sent) == [TaskMessage]


def test_a_slow_worker_cannot_overwrite_its_successors_lock_with_its_result():
    estate, _ = planned_run()
    idempotency = FakeIdempotencyStore(lock_timeout=LOCK_TIMEOUT)

    # GIVEN a slow delivery succeeds after its lock was taken over
    _, key, _ = slow_worker(estate, idempotency, TaskResult(TaskStatus.SUCCEEDED, "late"))

    # THEN the record is still the successor's lock, not the slow worker's result
    assert idempotency.records[key].status.value == "in-progress"


def test_a_stale_run_record_cannot_overwrite_a_recorded_cancellation():
    records = FaultyRunRecords()
    estate = FakeEstate()
    estate.records = records
    estate.add_vm("vm-web-01")
    # GIVEN the post-event created the run (events are not ordered), so its cut-off is unknown
    estate.deliver(POST_SAMPLE)
    assert records.get_run(estate.key).cancellation_cutoff is None

    def another_instance_cancels() -> None:
        run = records.get_run(estate.key)
        run.cancel_requested_at = estate.now
        run.cancel_reason = "pre phase could not be planned"
        run.cancel_result = "cancel requested; Update Manager reports Cancel"
        FakeRunRecords.update_run(records, run)

    # WHEN the pre-event keeps the cut-off on the run it read, while another instance records a cancellation
    records.before("update_run", another_instance_cancels)
    estate.deliver()

    # THEN both survive
    run = records.get_run(estate.key)
    assert run.cancel_requested_at == estate.now
    assert run.cancel_reason == "pre phase could not be planned"
    assert run.cancellation_cutoff == estate.event.cancellation_cutoff


# == 7. an accepted cancellation stops the pre-work and undoes it at once =======================


def test_after_an_accepted_cancel_no_vm_is_started_and_the_post_phase_runs_at_once():
    estate, [vm_a, vm_b] = planned_run("vm-a", "vm-b")
    # GIVEN vm-a was started and the alerts silenced; vm-b's start and both snapshots are pending
    estate.compute.set_power(vm_a, PowerState.RUNNING)
    estate.report(Action.START_VM, vm_a, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    silenced = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0], now=estate.now)
    estate.report(Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.SUCCEEDED, data=silenced.data)
    assert len(estate.alerts.rules) == 1
    at_deadline = deadline(estate)

    # WHEN the deadline check finds the pre-work unfinished and Update Manager accepts the cancel
    deadline_check(estate)
    assert estate.cancellation.calls_to("cancel") == [(estate.event.correlation_id,)]
    assert estate.records.get_run(estate.key).cancel_accepted is True
    [now_due] = messages_of(estate.transport.take(), PostFallback)
    assert now_due.cause == "run-cancelled"
    assert now_due.due_at() == at_deadline

    # THEN the pending pre tasks begin nothing
    later = at_deadline + timedelta(minutes=1)
    for action, target in ((Action.START_VM, vm_b), (Action.SNAPSHOT_DISKS, vm_a), (Action.SNAPSHOT_DISKS, vm_b)):
        result = act(estate, action, target, now=later)
        assert result.status is TaskStatus.SKIPPED, (action, result.detail)
        estate.report(action, target, result.status, detail=result.detail, now=later)
    assert estate.compute.power_state(vm_b) is PowerState.DEALLOCATED
    assert estate.compute.snapshots == {}

    # AND the post phase runs at once, before the window: vm-a is deallocated and the alerts come back
    _, sent = run_fallback(estate, now_due, now=later)
    assert estate.phase(Phase.POST).source is PhaseSource.FALLBACK
    plan_what_was_sent(estate, sent, now=later)
    post_tasks = {(task.action, task.target) for task in estate.tasks(Phase.POST)}
    assert (Action.DEALLOCATE_VM, vm_a) in post_tasks
    assert (Action.DEALLOCATE_VM, vm_b) not in post_tasks
    act(estate, Action.DEALLOCATE_VM, vm_a, phase=Phase.POST, now=later)
    assert estate.compute.power_state(vm_a) is PowerState.DEALLOCATING
    removal = next(m for m in messages_of(estate.transport.sent, MonitoringMessage) if m.phase is Phase.POST)
    perform_monitoring_action(removal, monitoring_ports(estate), now=later)
    assert estate.alerts.rules == {}
    assert later < estate.event.start


def test_an_accepted_cancel_whose_post_fallback_send_failed_still_sends_it_on_the_retry():
    estate, _ = planned_run()
    estate.transport = FailingTransport(failing_kind=PostFallback)
    # GIVEN the deadline check's cancel was accepted, but sending the post fallback due now failed
    with pytest.raises(AzureError):
        deadline_check(estate)
    assert estate.records.get_run(estate.key).cancel_accepted is True

    # WHEN the deadline check is delivered again
    deadline_check(estate)

    # THEN the post fallback due now goes out, so the post phase still runs at once
    assert [m.cause for m in messages_of(estate.transport.sent, PostFallback)] == ["run-cancelled"]
    assert len(estate.cancellation.calls_to("cancel")) == 1


def accepted_cancellation(estate: FakeEstate) -> None:
    """Record that Update Manager accepted the run's cancellation, as the deadline check does."""
    run = estate.records.get_run(estate.key)
    run.cancel_requested_at = estate.now
    run.cancel_reason = "pre-work not finished by the cancellation deadline"
    run.cancel_result = "cancel requested; Update Manager reports Cancel"
    run.cancel_accepted = True
    estate.records.update_run(run)


def test_a_start_vm_arriving_after_an_accepted_cancel_starts_nothing():
    estate, [vm] = planned_run()
    accepted_cancellation(estate)

    result = act(estate, Action.START_VM, vm, now=estate.now + timedelta(minutes=1))

    assert estate.compute.power_state(vm) is PowerState.DEALLOCATED
    assert isinstance(result, TaskResult)
    assert result.status is TaskStatus.SKIPPED


def test_alert_suppression_arriving_after_an_accepted_cancel_silences_nothing():
    estate, _ = planned_run()
    accepted_cancellation(estate)

    result = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0], now=estate.now + timedelta(minutes=1))

    assert estate.alerts.rules == {}
    assert result.status is TaskStatus.SKIPPED


def test_a_refused_cancellation_does_not_stop_the_pre_work():
    estate, [vm] = planned_run()
    estate.cancellation.fail("cancel", PermanentError("the run cannot be cancelled any more"))
    deadline_check(estate)
    assert estate.records.get_run(estate.key).cancel_accepted is False
    assert PostFallback not in kinds(estate.transport.take())

    # THEN the run will be patched, so the VM is still started for it
    result = act(estate, Action.START_VM, vm, now=deadline(estate) + timedelta(minutes=1))

    assert isinstance(result, FollowUp)
    assert estate.compute.power_state(vm) is PowerState.STARTING


# == 8. sizes and bounds ========================================================================


def old_snapshots(estate: FakeEstate, vm: str, count: int) -> None:
    """``count`` snapshots prepost took of the VM in earlier runs, all past any retention."""
    name = vm.rsplit("/", 1)[-1]
    disk = disk_id(f"{name}_OsDisk_1", subscription=estate.subscriptions[0])
    for index in range(count):
        estate.compute.add_snapshot(
            Snapshot(
                resource_id=(
                    f"/subscriptions/{estate.subscriptions[0]}/resourceGroups/rg-app/providers/Microsoft.Compute"
                    f"/snapshots/prepost-20250101020000-{name}_OsDisk_1-{index:08x}"
                ),
                source_disk_id=disk,
                created_at=estate.now - timedelta(days=400),
                tags={TAG_MACHINE: name, TAG_RUN: f"mc-weekly-linux-2025-{index}"},
                provisioning_state="Succeeded",
            )
        )


def test_a_prune_of_a_thousand_snapshots_records_an_outcome_that_fits_a_queue_message():
    """Recorded where it happened, but it must still fit a message: a parked outcome is replayed as one."""
    estate, [vm] = planned_run()
    old_snapshots(estate, vm, 1000)
    message = task_message(estate, Action.PRUNE_SNAPSHOTS, vm, phase=Phase.POST, options={"retention_days": 30})
    recorded: list[TaskOutcome] = []

    outcome = run_task(
        message,
        lambda received: perform_machine_action(received, machine_ports(estate), now=estate.now),
        idempotency=FakeIdempotencyStore(),
        transport=FakeTransport(),
        report=recorded.append,
        retry=RetryPolicy(max_attempts=5),
        check_interval=CHECK_INTERVAL,
        now=lambda: estate.now,
    )

    # THEN every old snapshot is deleted, and the outcome says so in a message a Storage queue accepts
    assert estate.compute.snapshots == {}
    assert recorded == [outcome]
    body = _checked_body(outcome)
    assert len(body.encode()) * 4 / 3 <= MAX_MESSAGE_BYTES
    assert outcome.status is TaskStatus.SUCCEEDED
    assert "1000 snapshot(s)" in outcome.detail
    assert json.loads(body)["data"].get("deleted_total") == 1000


def test_a_huge_failure_detail_is_cut_to_fit_a_queue_message():
    estate, [vm] = planned_run()
    message = task_message(estate, Action.SNAPSHOT_DISKS, vm)

    def action(_: TaskMessage) -> TaskResult:
        raise PermanentError("disk refused: " + "x" * 200_000)

    outcome = run_task(
        message,
        action,
        idempotency=FakeIdempotencyStore(),
        transport=FakeTransport(),
        report=[].append,
        retry=RetryPolicy(max_attempts=5),
        check_interval=CHECK_INTERVAL,
        now=lambda: estate.now,
    )

    assert outcome.status is TaskStatus.FAILED
    assert outcome.detail.startswith("disk refused: ")
    _checked_body(outcome)


class SnapshotsApi:
    """What ArmCompute uses of azure-mgmt-compute's snapshot operations; it records every wait."""

    def __init__(self, models: list[Any]) -> None:
        self.models = models
        self.begun: list[tuple[str, str, dict]] = []
        self.waited: list[str] = []

    def list_by_resource_group(self, resource_group: str):
        return list(self.models)

    def begin_delete(self, resource_group: str, name: str, **kwargs):
        self.begun.append((resource_group, name, kwargs))
        waited = self.waited
        return SimpleNamespace(result=lambda *a, **k: waited.append(name), wait=lambda *a, **k: waited.append(name))


class NoVms:
    def get(self, *args, **kwargs):
        raise ResourceNotFoundError("the VM is gone")


def test_a_prune_begins_every_deletion_without_waiting_for_any():
    estate, [vm] = planned_run()
    old_snapshots(estate, vm, 300)
    from azure.mgmt.compute.models import Snapshot as SnapshotModel

    # The SDK's own models, built from the JSON the list operation answers.
    models = [
        SnapshotModel(
            {
                "id": s.resource_id,
                "location": "westeurope",
                "tags": dict(s.tags),
                "properties": {
                    "creationData": {"createOption": "Copy", "sourceResourceId": s.source_disk_id},
                    "timeCreated": s.created_at.isoformat(),
                    "provisioningState": "Succeeded",
                    "incremental": True,
                },
            }
        )
        for s in estate.compute.snapshots.values()
    ]
    snapshots = SnapshotsApi(models)
    api = SimpleNamespace(snapshots=snapshots, virtual_machines=NoVms())
    clients = SimpleNamespace(compute=lambda subscription: api)
    ports = MachinePorts(
        records=estate.records,
        compute=ArmCompute(clients),
        arc=estate.arc,
        allowed_subscriptions=estate.allowed_subscriptions,
    )
    message = task_message(estate, Action.PRUNE_SNAPSHOTS, vm, phase=Phase.POST, options={"retention_days": 30})

    result = perform_machine_action(message, ports, now=estate.now)

    assert result.status is TaskStatus.SUCCEEDED
    assert len(snapshots.begun) == 300
    assert snapshots.waited == []
    assert all(kwargs.get("polling") is False for _, _, kwargs in snapshots.begun)


@pytest.mark.parametrize(("minutes", "kept"), [("1440", 1440), ("1441", None), ("99999999", None)])
def test_a_suppression_grace_above_one_day_is_refused_and_reported(minutes, kept):
    policy = RunPolicy.from_tags({"prepost-suppression-grace-minutes": minutes})

    assert policy.suppression_grace_minutes == kept
    assert bool(policy.findings) is (kept is None)


def test_a_huge_suppression_grace_tag_does_not_silence_alerts_for_centuries():
    estate, _ = planned_run(tags={"prepost-suppression-grace-minutes": "99999999"})

    act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0], now=estate.now)

    [rule] = estate.alerts.rules.values()
    assert rule["effective_until"] == estate.event.end + DEFAULT_GRACE
    assert any("suppression-grace-minutes" in finding for finding in estate.phase().findings)


@pytest.mark.parametrize(("days", "kept"), [("3650", 3650), ("3651", 0), ("100000", 0)])
def test_a_snapshot_retention_above_ten_years_is_refused_and_reported(days, kept):
    policy = RunPolicy.from_tags({"prepost-snapshot-retention-days": days})

    assert policy.snapshot_retention_days == kept
    assert bool(policy.findings) is (kept == 0)


def test_unreadable_configuration_tags_start_no_vm_and_silence_no_alert_but_still_snapshot():
    estate = FakeEstate()
    vm = estate.add_vm("vm-web-01")
    estate.configurations.fail("get_tags", PermanentError("AuthorizationFailed: no read access to the configuration"))

    estate.planned_pre()

    planned = {(task.action, task.target): task.status for task in estate.tasks(Phase.PRE)}
    assert planned == {(Action.PREFLIGHT, vm): TaskStatus.QUEUED, (Action.SNAPSHOT_DISKS, vm): TaskStatus.QUEUED}
    assert RunPolicy.from_dict(estate.phase().policy).cancel_on_failure is True
    assert any("could not read the configuration's policy tags" in f for f in estate.phase().findings)
