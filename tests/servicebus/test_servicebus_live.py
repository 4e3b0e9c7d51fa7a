"""Contract tests: what prepost relies on from Service Bus, checked against the real thing.

They run only when ``PREPOST_TEST_SERVICEBUS_CONNECTION`` holds a connection string: the
official emulator (``docker compose up``, see docs/servicebus.md) or a real namespace whose
``prepost-vm-tasks`` queue has duplicate detection on. Stop any function app consuming that
queue first: the tests send to it and take back only their own messages (matched by a run key
unique to each test); anything else they receive is left alone, never deleted.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from shared.adapters.servicebus_settlement import (
    ORIGINAL_ID_PROPERTY,
    RETRY_PROPERTY,
    Abandon,
    ClassicBindingSettler,
    ReceivedDelivery,
    retry_message_id,
)
from shared.adapters.servicebus_transport import CONTENT_TYPE, ServiceBusTransport, plain_properties
from shared.clock import utcnow
from shared.models.messages import MonitoringMessage, TaskMessage, decode_message
from shared.models.run import Action, Phase
from shared.names import QueueName
from shared.settings import ServiceBusConnection
from tests.fakes import FakeTransport

CONNECTION_ENV = "PREPOST_TEST_SERVICEBUS_CONNECTION"
CONNECTION = os.environ.get(CONNECTION_ENV, "").strip()

pytestmark = pytest.mark.skipif(
    not CONNECTION,
    reason=(
        "PREPOST_TEST_SERVICEBUS_CONNECTION is not set: these tests need a real Service Bus "
        "namespace or the official emulator (see docs/servicebus.md)"
    ),
)

QUEUE = QueueName.VM_TASKS.value
VM = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/"
)


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    from azure.servicebus import ServiceBusClient

    sb_client = ServiceBusClient.from_connection_string(CONNECTION)
    with sb_client:
        yield sb_client


@pytest.fixture
def run_key() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fallback() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def transport(fallback: FakeTransport) -> Iterator[ServiceBusTransport]:
    sb_transport = ServiceBusTransport(ServiceBusConnection(connection_string=CONNECTION), fallback=fallback)
    yield sb_transport
    sb_transport.close()


def task(run_key: str, n: int = 0) -> TaskMessage:
    return TaskMessage(run_key=run_key, phase=Phase.PRE, action=Action.START_VM, target=f"{VM}vm{n}")


def receive_ours(
    client,
    run_key: str,
    *,
    within: float,
    expected: int | None = None,
    dead_letter: bool = False,
    settle: Callable[[object, object], None] | None = None,
) -> list:
    """Receive this test's messages (by ``runKey``) for up to ``within`` seconds.

    Stops early once ``expected`` messages arrived; with ``expected=None`` it listens the whole
    time (to prove that nothing more arrives). Ours are settled with ``settle`` (default:
    complete). Others are left unsettled: their lock lapses within a minute and their owner gets
    them again. (Abandoning them would hand them straight back to this loop, and ten quick
    abandons would push them into the dead-letter queue.)
    """
    from azure.servicebus import ServiceBusSubQueue

    ours: list = []
    deadline = time.monotonic() + within
    receiver = client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER if dead_letter else None)
    with receiver:
        while time.monotonic() < deadline and (expected is None or len(ours) < expected):
            wait = max(min(deadline - time.monotonic(), 5.0), 0.5)
            for message in receiver.receive_messages(max_message_count=100, max_wait_time=wait):
                if plain_properties(message.application_properties).get("runKey") == run_key:
                    ours.append(message)
                    (settle or (lambda r, m: r.complete_message(m)))(receiver, message)
    return ours


def body_text(message) -> str:
    return b"".join(message.body).decode("utf-8")


@pytest.mark.servicebus
def test_a_batch_arrives_with_ids_and_properties_intact(client, transport, fallback, run_key):
    tasks = [task(run_key, n) for n in range(25)]
    monitoring = MonitoringMessage(run_key=run_key, action=Action.SUPPRESS_ALERTS, target="sub")

    transport.send([*tasks, monitoring])

    received = receive_ours(client, run_key, within=60, expected=len(tasks))
    by_id = {message.message_id: message for message in received}
    assert set(by_id) == {t.message_id for t in tasks}
    for sent in tasks:
        got = by_id[sent.message_id]
        assert plain_properties(got.application_properties) == sent.properties
        assert got.content_type == CONTENT_TYPE
        assert got.subject == "task"
        assert decode_message(body_text(got)) == sent
    assert [item.message for item in fallback.sent] == [monitoring]  # monitoring stays on Storage


@pytest.mark.servicebus
def test_a_repeated_message_id_is_dropped_by_duplicate_detection(client, transport, run_key):
    message = task(run_key)

    transport.send([message])
    transport.send([message])  # a retried delivery sending the same work again

    received = receive_ours(client, run_key, within=15)
    assert len(received) == 1, (
        f"{len(received)} copies arrived: the queue {QUEUE} needs RequiresDuplicateDetection=true"
    )


@pytest.mark.servicebus
def test_a_scheduled_message_is_not_received_before_its_time(client, transport, run_key):
    delay = timedelta(seconds=15)
    sent_at = utcnow()

    transport.send([task(run_key)], delay=delay)

    early = receive_ours(client, run_key, within=6, expected=1)
    assert early == [], "the scheduled message was delivered before its enqueue time"
    later = receive_ours(client, run_key, within=60, expected=1)
    assert len(later) == 1
    scheduled = later[0].scheduled_enqueue_time_utc
    assert scheduled is not None
    assert abs((scheduled - (sent_at + delay)).total_seconds()) < 5


@pytest.mark.servicebus
def test_a_dead_lettered_message_keeps_a_readable_reason(client, transport, run_key):
    message = task(run_key)
    transport.send([message])

    def dead_letter(receiver, received) -> None:
        receiver.dead_letter_message(
            received, reason="InvalidMessage", error_description="unknown message kind 'bogus'"
        )

    assert len(receive_ours(client, run_key, within=30, expected=1, settle=dead_letter)) == 1

    [parked] = receive_ours(client, run_key, within=30, expected=1, dead_letter=True)
    assert parked.dead_letter_reason == "InvalidMessage"
    assert parked.dead_letter_error_description == "unknown message kind 'bogus'"
    assert parked.message_id == message.message_id
    assert decode_message(body_text(parked)) == message


@pytest.mark.servicebus
def test_a_transient_failure_is_retried_as_a_scheduled_copy_with_a_new_id(client, transport, run_key):
    message = task(run_key)
    delivery = ReceivedDelivery(
        body=message.to_json().encode(),
        message_id=message.message_id,
        application_properties=message.properties,
        content_type=CONTENT_TYPE,
        subject=message.kind,
    )
    settler = ClassicBindingSettler(resender=transport, parking=_NoParking())

    settler.settle(QueueName.VM_TASKS, delivery, Abandon(retry_after=timedelta(seconds=5)))

    [copy] = receive_ours(client, run_key, within=45, expected=1)
    assert copy.message_id == retry_message_id(message.message_id, 1)
    properties = plain_properties(copy.application_properties)
    assert properties[RETRY_PROPERTY] == 1
    assert properties[ORIGINAL_ID_PROPERTY] == message.message_id
    assert copy.scheduled_enqueue_time_utc is not None
    assert decode_message(body_text(copy)) == message


class _NoParking:
    def park(self, queue, body, reason) -> None:
        raise AssertionError(f"nothing should be parked here: {reason}")


@pytest.mark.servicebus
def test_a_dead_lettered_message_is_replayed_to_its_queue_under_a_new_id(client, transport, run_key):
    from prepost.deadletter import DeadLetterOutcome, replay_dead_letters

    message = task(run_key)
    transport.send([message])

    def dead_letter(receiver, received) -> None:
        receiver.dead_letter_message(received, reason="PermanentError", error_description="PermanentError: test")

    assert len(receive_ours(client, run_key, within=30, expected=1, settle=dead_letter)) == 1

    summary = replay_dead_letters(client, QUEUE, run_key=run_key)
    assert [r.outcome for r in summary.results] == [DeadLetterOutcome.REPLAYED]
    assert summary.results[0].message.reason == "PermanentError"

    [replayed] = receive_ours(client, run_key, within=30, expected=1)
    assert replayed.message_id.startswith(f"{message.message_id}:replay:")
    assert decode_message(body_text(replayed)) == message
    assert receive_ours(client, run_key, within=5, dead_letter=True) == []
