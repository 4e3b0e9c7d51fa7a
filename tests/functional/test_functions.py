"""The functions as the host calls them: hand-built trigger inputs from the sample events.

Every function is taken from ``function_app.build_app(...).get_functions()`` and called with a
real ``azure.functions`` trigger object. The container behind them holds in-memory fakes, so
these tests prove what the adapters do (decode, dispatch, settle), not what Azure does.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from datetime import timedelta

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

import function_app
from shared.errors import Throttled
from shared.models.events import parse_time
from shared.models.messages import (
    CheckPreDeadline,
    MonitoringMessage,
    PlanPhase,
    PostFallback,
    TaskMessage,
    TaskOutcome,
)
from shared.models.run import Action, Phase, PhaseStatus, TaskStatus
from shared.names import INTAKE_FUNCTION, READINESS_FUNCTION, STORAGE_MAX_DEQUEUE_COUNT, QueueName
from shared.ports.azure import PowerState
from shared.ports.records import DeliveryOutcome
from shared.settings import Settings, Transport
from tests.conftest import load_events
from tests.fakes_azure import POST_SAMPLE, PRE_SAMPLE, FakeEstate
from tests.functional.conftest import estate_behind_the_app

# One app per module, and get_functions() once per app (a second call raises).
FUNCTIONS = {f.get_function_name(): f for f in function_app.build_app(Transport.STORAGE).get_functions()}
QUEUE_FUNCTIONS = {
    QueueName.PLAN: "plan_storage_queue",
    QueueName.VM_TASKS: "vm_tasks_storage_queue",
    QueueName.MONITORING: "monitoring_storage_queue",
    QueueName.OUTCOMES: "outcomes_storage_queue",
}
SETTINGS = Settings.from_environ(
    {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "PREPOST_ALLOWED_CONFIGURATIONS": "*",
        "PREPOST_ALLOWED_SUBSCRIPTIONS": "*",
        "PREPOST_MAX_TASK_ATTEMPTS": "3",
    }
)
_ids = itertools.count(1)


@pytest.fixture
def estate() -> Iterator[FakeEstate]:
    with estate_behind_the_app(SETTINGS) as estate:
        yield estate


def event_grid_event(name: str) -> func.EventGridEvent:
    raw = copy.deepcopy(load_events(name)[0])
    return func.EventGridEvent(
        id=raw["id"],
        data=raw["data"],
        topic=raw["topic"],
        subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=parse_time(raw["eventTime"]),
        data_version=raw["dataVersion"],
    )


def queue_message(body: str | bytes, *, dequeue_count: int = 1) -> QueueMessage:
    return QueueMessage(id=f"msg-{next(_ids)}", body=body, dequeue_count=dequeue_count)


def call_intake(name: str) -> None:
    FUNCTIONS[INTAKE_FUNCTION].get_user_function()(event_grid_event(name))


def call_queue(queue: QueueName, body: str | bytes, *, dequeue_count: int = 1) -> None:
    FUNCTIONS[QUEUE_FUNCTIONS[queue]].get_user_function()(queue_message(body, dequeue_count=dequeue_count))


def pump(estate: FakeEstate) -> list:
    """Deliver every message sent without a delay to its queue's function until none is left.

    Follow-ups of long operations are delivered too, as their delay ran out; other delayed
    messages (deadline check, fallback, retries) are returned, not delivered.
    """
    delayed = []
    for _ in range(100):
        batch = estate.transport.take()
        if not batch:
            return delayed
        for sent in batch:
            follow_up = isinstance(sent.message, TaskMessage) and sent.message.is_follow_up
            if sent.delay and not follow_up:
                delayed.append(sent)
            else:
                call_queue(sent.message.queue, sent.message.to_json())
    raise AssertionError("messages kept coming")


def test_every_function_is_registered_for_storage_transport():
    assert set(FUNCTIONS) == {INTAKE_FUNCTION, READINESS_FUNCTION, *QUEUE_FUNCTIONS.values()}


# -- intake ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "phase"),
    [
        ("pre-eventgrid-camelcase.json", Phase.PRE),
        ("pre-eventgrid-pascalcase.json", Phase.PRE),
        ("post-eventgrid.json", Phase.POST),
    ],
)
def test_an_event_grid_event_is_recorded_and_its_plan_queued(estate, name, phase):
    # WHEN the host hands the Event Grid trigger a maintenance event
    call_intake(name)

    # THEN the run and phase are recorded and the plan is on its queue
    assert estate.records.get_phase(estate.key, phase).status is PhaseStatus.RECEIVED
    assert PlanPhase(run_key=estate.key, phase=phase) in estate.transport.of_kind(PlanPhase)
    assert estate.records.deliveries[-1].outcome is DeliveryOutcome.ACCEPTED
    assert estate.storage_transport.sent == []


def test_the_same_event_delivered_twice_is_recorded_as_a_duplicate(estate):
    call_intake(PRE_SAMPLE)
    call_intake(PRE_SAMPLE)

    assert list(estate.records.runs) == [estate.key]
    assert [d.outcome for d in estate.records.deliveries] == [
        DeliveryOutcome.ACCEPTED,
        DeliveryOutcome.DUPLICATE,
    ]


def test_an_unrelated_event_is_ignored_without_raising(estate):
    call_intake("unrelated-resource-write.json")

    assert estate.records.deliveries[0].outcome is DeliveryOutcome.IGNORED
    assert estate.transport.sent == []


# -- queues: decode and dispatch ---------------------------------------------------------


def test_the_pipeline_runs_end_to_end_through_the_functions(estate):
    # GIVEN a deallocated VM and an Arc server in the run
    vm = estate.add_vm("vm-web-01", power_state=PowerState.DEALLOCATED, data_disks=1)
    arc = estate.add_arc("srv-01")

    # WHEN the pre-event arrives and every queue message is delivered
    call_intake(PRE_SAMPLE)
    delayed = pump(estate)

    # THEN the pre-work is done and recorded, and the safety nets are scheduled
    assert estate.compute.power_state(vm) is PowerState.RUNNING
    assert len(estate.compute.snapshots) == 1  # OS disk only: the default policy
    assert len(estate.alerts.rules) == 1
    assert estate.records.get_phase(estate.key, Phase.PRE).status is PhaseStatus.COMPLETED
    statuses = {(t.action, t.target): t.status for t in estate.tasks(Phase.PRE)}
    assert statuses[(Action.PREFLIGHT, arc)] is TaskStatus.SUCCEEDED
    assert statuses[(Action.PREFLIGHT, vm)] is TaskStatus.SUCCEEDED
    assert statuses[(Action.SNAPSHOT_DISKS, arc)] is TaskStatus.SKIPPED
    assert {type(s.message) for s in delayed} == {CheckPreDeadline, PostFallback}

    # WHEN the post-event arrives
    call_intake(POST_SAMPLE)
    pump(estate)

    # THEN what prepost did is undone
    assert estate.compute.power_state(vm) is PowerState.DEALLOCATED
    assert estate.alerts.rules == {}
    assert estate.records.get_phase(estate.key, Phase.POST).status is PhaseStatus.COMPLETED
    assert estate.cancellation.calls == []


def test_a_deadline_check_on_the_plan_queue_cancels_unfinished_pre_work(estate):
    estate.add_vm("vm-web-01")
    call_intake(PRE_SAMPLE)
    call_queue(QueueName.PLAN, PlanPhase(run_key=estate.key, phase=Phase.PRE).to_json())
    estate.clock.moment = estate.event.cancel_deadline(timedelta(minutes=2))  # the default margin

    call_queue(QueueName.PLAN, CheckPreDeadline(run_key=estate.key).to_json())

    assert estate.cancellation.cancelled == [estate.event.correlation_id]


def test_throttling_requeues_and_lets_the_host_complete_the_message(estate):
    vm = estate.add_vm("vm-web-01")
    estate.planned_pre()
    estate.compute.fail("get_vm", Throttled("429", retry_after=timedelta(seconds=40)))
    message = TaskMessage(run_key=estate.key, phase=Phase.PRE, action=Action.START_VM, target=vm)

    call_queue(QueueName.VM_TASKS, message.to_json())  # returns: nothing for the host to retry

    [requeued] = estate.transport.sent  # the next attempt; the outcome is recorded, not sent on
    assert requeued.message == message.next_attempt()
    assert requeued.delay.total_seconds() == 40
    task = estate.task(Phase.PRE, Action.START_VM, vm)
    assert task.status is TaskStatus.RETRYING and "429" in task.detail


@pytest.mark.parametrize(
    ("dequeue_count", "recorded_failed"), [(1, False), (STORAGE_MAX_DEQUEUE_COUNT, True)], ids=["first", "last"]
)
def test_an_unexpected_error_is_raised_for_the_host_and_recorded_on_the_last_dequeue(
    estate, dequeue_count, recorded_failed
):
    vm = estate.add_vm("vm-web-01")
    estate.planned_pre()
    estate.compute.fail("get_vm", RuntimeError("SDK bug"))
    body = TaskMessage(run_key=estate.key, phase=Phase.PRE, action=Action.START_VM, target=vm).to_json()

    with pytest.raises(RuntimeError):
        call_queue(QueueName.VM_TASKS, body, dequeue_count=dequeue_count)

    task = estate.task(Phase.PRE, Action.START_VM, vm)
    assert (task.status is TaskStatus.FAILED) is recorded_failed
    assert ("RuntimeError" in task.detail) is recorded_failed


def test_an_outcome_on_the_outcomes_queue_is_recorded(estate):
    """Sent by an earlier version, or replayed by an operator from the poison queue."""
    vm = estate.add_vm("vm-web-01")
    estate.planned_pre()
    outcome = TaskOutcome(
        run_key=estate.key,
        phase=Phase.PRE,
        action=Action.START_VM,
        target=vm,
        status=TaskStatus.SUCCEEDED,
        data={"started_by_us": True},
    )

    call_queue(QueueName.OUTCOMES, outcome.to_json().encode())

    task = estate.task(Phase.PRE, Action.START_VM, vm)
    assert task.status is TaskStatus.SUCCEEDED
    assert task.data["started_by_us"] is True


# -- queues: what cannot be used is parked at once -----------------------------------------


@pytest.mark.parametrize(
    ("queue", "body", "why"),
    [
        (QueueName.VM_TASKS, PlanPhase(run_key="run-1", phase=Phase.PRE).to_json(), "does not belong"),
        (
            QueueName.VM_TASKS,
            MonitoringMessage(run_key="run-1", action=Action.SUPPRESS_ALERTS, target="sub").to_json(),
            "does not belong",
        ),
        (
            QueueName.MONITORING,
            TaskMessage(run_key="run-1", target="/subscriptions/s/x").to_json(),
            "does not belong",
        ),
        (
            QueueName.PLAN,
            TaskOutcome(run_key="run-1", target="/subscriptions/s/x").to_json(),
            "does not belong",
        ),
        (QueueName.OUTCOMES, "not json", "not JSON"),
        (QueueName.PLAN, '{"kind":"plan-phase","v":99,"run_key":"run-1"}', "schema version"),
    ],
    ids=[
        "plan-on-vm-tasks",
        "monitoring-on-vm-tasks",
        "task-on-monitoring",
        "outcome-on-plan",
        "not-json",
        "newer-schema",
    ],
)
def test_a_message_that_cannot_be_used_is_parked_with_its_reason(estate, queue, body, why):
    call_queue(queue, body)

    [(parked_queue, parked_body, reason)] = estate.storage.parked
    assert parked_queue is queue
    assert (parked_body.decode() if isinstance(parked_body, bytes) else parked_body) == body
    assert why in reason
    assert estate.transport.sent == []
    assert estate.compute.calls == []
