"""Explicit settlement: each decision becomes the right call on the host's message actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus._pyamqp.message import Header, Message, Properties

from shared.adapters.servicebus_message_actions import MAX_REASON_LENGTH, ExplicitSettler
from shared.adapters.servicebus_settlement import (
    RETRY_PROPERTY,
    Abandon,
    Complete,
    DeadLetter,
    DeadLetterReason,
    ReceivedDelivery,
)
from shared.names import QueueName

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
BODY = b'{"kind": "task"}'
RECEIVED = object()  # the binding's message object; the settler only hands it back to the host


@dataclass
class FakeActions:
    calls: list[tuple] = field(default_factory=list)
    fail_on: str | None = None

    def complete(self, message) -> None:
        self._record("complete", message)

    def deadletter(self, message, properties_to_modify=b"", deadletter_reason=None, deadletter_error_description=None):
        self._record("deadletter", message, deadletter_reason, deadletter_error_description)

    def _record(self, name, *args) -> None:
        self.calls.append((name, *args))
        if self.fail_on == name:
            raise RuntimeError(f"{name} failed")


@dataclass
class FakeResender:
    sent: list[tuple[str, list]] = field(default_factory=list)

    def send_servicebus_messages(self, queue_name, messages) -> None:
        self.sent.append((queue_name, list(messages)))


def settle(settlement, *, actions=None, delivery=None):
    actions, resender = actions or FakeActions(), FakeResender()
    settler = ExplicitSettler(actions=actions, message=RECEIVED, resender=resender, clock=lambda: NOW)
    settler.settle(QueueName.VM_TASKS, delivery or ReceivedDelivery(body=BODY, message_id="run:task:1"), settlement)
    return actions, resender


def test_complete_completes_the_received_message():
    actions, resender = settle(Complete())
    assert actions.calls == [("complete", RECEIVED)] and resender.sent == []


def test_abandon_schedules_a_copy_then_completes_instead_of_abandoning():
    actions, resender = settle(Abandon(retry_after=timedelta(seconds=40), detail="TransientError: 503"))
    [(queue_name, [copy])] = resender.sent
    assert queue_name == QueueName.VM_TASKS.value
    assert copy.scheduled_enqueue_time_utc == NOW + timedelta(seconds=40)
    assert copy.application_properties[RETRY_PROPERTY] == 1
    assert actions.calls == [("complete", RECEIVED)]


def test_a_failed_complete_after_the_copy_is_raised_and_a_redelivery_resends_the_same_id():
    retry = Abandon(retry_after=timedelta(seconds=10))
    with pytest.raises(RuntimeError, match="complete failed"):
        settle(retry, actions=FakeActions(fail_on="complete"))
    _, first = settle(retry)
    # The host redelivers the original (delivery 2): its copy has the same id, so duplicate
    # detection drops it instead of running the task twice.
    _, redelivered = settle(retry, delivery=ReceivedDelivery(body=BODY, message_id="run:task:1", delivery_count=2))
    assert first.sent[0][1][0].message_id == redelivered.sent[0][1][0].message_id


def test_dead_letter_sets_the_reason_and_the_description_on_the_broker_message():
    settlement = DeadLetter(DeadLetterReason.PERMANENT_ERROR, "PermanentError: VM was deleted")
    actions, resender = settle(settlement)
    assert actions.calls == [("deadletter", RECEIVED, "PermanentError", "PermanentError: VM was deleted")]
    assert resender.sent == []
    assert len("MaxAttemptsExceeded") <= MAX_REASON_LENGTH


def test_a_failed_dead_letter_is_raised():
    with pytest.raises(RuntimeError, match="deadletter failed"):
        settle(DeadLetter(DeadLetterReason.INVALID_MESSAGE, "not JSON"), actions=FakeActions(fail_on="deadletter"))


def test_anything_else_is_a_programming_error():
    with pytest.raises(TypeError):
        settle("complete")


def _received(body_sections, *, delivery_count, properties):
    message = Message(
        data=body_sections,
        header=Header(delivery_count=delivery_count),
        properties=Properties(message_id="run:task:2", content_type="application/json", subject="task"),
        application_properties=properties,
    )
    return ServiceBusReceivedMessage(message, receiver=None)


def test_a_delivery_is_read_from_the_sdk_received_message():
    message = _received([b'{"kind":', b' "task"}'], delivery_count=3, properties={b"prepostRetry": 2, b"run": b"r"})
    delivery = ReceivedDelivery.from_received_message(message)
    assert delivery.body == b'{"kind": "task"}'
    assert delivery.message_id == "run:task:2"
    assert delivery.delivery_count == 3 and delivery.retries == 2 and delivery.attempt == 5
    assert delivery.application_properties == {"prepostRetry": 2, "run": "r"}
    assert (delivery.content_type, delivery.subject) == ("application/json", "task")


def test_a_missing_delivery_count_counts_as_the_first_delivery():
    message = _received([BODY], delivery_count=0, properties=None)
    assert ReceivedDelivery.from_received_message(message).delivery_count == 1
