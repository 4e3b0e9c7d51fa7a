"""The classic Service Bus trigger adapters as the host calls them
(``PREPOST_TRANSPORT=servicebus``, ``PREPOST_SERVICEBUS_SETTLEMENT=classic``).

Classic binding: the host completes the message when the function returns, so the adapter
must settle every failure itself: transient ones come back as a scheduled copy, permanent ones
are parked with a reason, and nothing is raised to the host unless settling itself failed.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from azure.functions.servicebus import ServiceBusMessage

import function_app
import shared.handlers
from shared.bootstrap import Container, set_container
from shared.errors import PermanentError
from shared.models.messages import PlanPhase
from shared.models.run import Phase
from shared.names import SERVICEBUS_CONNECTION, QueueName
from shared.settings import ServiceBusSettlement, Settings, Transport

FUNCTIONS = {
    f.get_function_name(): f
    for f in function_app.build_app(Transport.SERVICEBUS, ServiceBusSettlement.CLASSIC).get_functions()
}
SETTINGS = Settings.from_environ(
    {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "PREPOST_ALLOWED_CONFIGURATIONS": "*",
        "PREPOST_ALLOWED_SUBSCRIPTIONS": "*",
        "PREPOST_TRANSPORT": "servicebus",
        "ServiceBusConnection": "Endpoint=sb://example.invalid/;SharedAccessKeyName=k;SharedAccessKey=v",
        "PREPOST_MAX_TASK_ATTEMPTS": "4",
    }
)


class RecordingResender:
    """Stands in for the Service Bus transport: keeps what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list]] = []

    def send_servicebus_messages(self, queue_name, messages) -> None:
        self.sent.append((queue_name, list(messages)))


class RecordingStorage:
    def __init__(self) -> None:
        self.parked: list[tuple[QueueName, bytes | str, str]] = []

    def park(self, queue, body, reason) -> None:
        self.parked.append((queue, body, reason))


@pytest.fixture
def wiring():
    resender, storage = RecordingResender(), RecordingStorage()
    set_container(Container(SETTINGS, transport=resender, storage=storage))
    try:
        yield resender, storage
    finally:
        set_container(None)


def sb_message(body: bytes, *, delivery_count: int = 1, properties: dict | None = None) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=body,
        message_id="run-1:plan-phase:pre:1",
        delivery_count=delivery_count,
        application_properties=properties or {},
        user_properties={},
        content_type="application/json",
    )


def call(name: str, message: ServiceBusMessage) -> None:
    FUNCTIONS[name].get_user_function()(message)


def test_servicebus_functions_bind_the_plan_and_vm_task_queues():
    bindings = {name: f.get_trigger().get_dict_repr() for name, f in FUNCTIONS.items()}
    assert bindings["plan_servicebus_queue"]["queueName"] == QueueName.PLAN.value
    assert bindings["vm_tasks_servicebus_queue"]["queueName"] == QueueName.VM_TASKS.value
    assert {b["connection"] for b in bindings.values() if b["type"] == "serviceBusTrigger"} == {SERVICEBUS_CONNECTION}
    assert "plan_storage_queue" not in FUNCTIONS and "vm_tasks_storage_queue" not in FUNCTIONS
    # Classic: the host completes on return (host.json autoCompleteMessages), nothing per binding.
    assert all("autoCompleteMessages" not in b for b in bindings.values())


def test_an_undecodable_message_is_parked_on_its_first_delivery(wiring):
    resender, storage = wiring
    call("vm_tasks_servicebus_queue", sb_message(b"not json"))
    assert len(storage.parked) == 1
    queue, body, reason = storage.parked[0]
    assert queue is QueueName.VM_TASKS and body == b"not json" and "not JSON" in reason
    assert resender.sent == []


def test_a_transient_failure_comes_back_as_a_scheduled_copy(wiring, monkeypatch):
    resender, storage = wiring

    def fail(*args, **kwargs):
        raise ConnectionError("storage briefly unreachable")

    monkeypatch.setattr(shared.handlers, "handle_message", fail)
    before = datetime.now(timezone.utc)
    call("plan_servicebus_queue", sb_message(PlanPhase(run_key="run-1", phase=Phase.PRE).to_json().encode()))
    assert storage.parked == []
    [(queue_name, [copy])] = resender.sent
    assert queue_name == QueueName.PLAN.value
    assert copy.scheduled_enqueue_time_utc > before
    assert copy.message_id != "run-1:plan-phase:pre:1"


def test_a_permanent_failure_is_parked_with_its_reason_without_retrying(wiring, monkeypatch):
    resender, storage = wiring

    def fail(*args, **kwargs):
        raise PermanentError("run run-1 is not recorded")

    monkeypatch.setattr(shared.handlers, "handle_message", fail)
    call("plan_servicebus_queue", sb_message(PlanPhase(run_key="run-1").to_json().encode()))
    assert resender.sent == []
    [(queue, _, reason)] = storage.parked
    assert queue is QueueName.PLAN and "run run-1 is not recorded" in reason
