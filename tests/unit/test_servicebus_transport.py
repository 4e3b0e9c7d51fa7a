"""The Service Bus transport without a network: message construction, batching, routing.

Batches are real ``ServiceBusMessageBatch`` objects (they measure encoded AMQP sizes offline);
only the client and its senders are faked, at the seam the SDK documents
(``get_queue_sender``, ``create_message_batch``, ``send_messages``).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.exceptions import MessagingEntityNotFoundError, ServiceBusConnectionError

from shared.adapters.servicebus_transport import (
    CONTENT_TYPE,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_ID_LENGTH,
    MessageTooLarge,
    ServiceBusTransport,
    build_servicebus_message,
    iter_batches,
    plain_properties,
    servicebus_message_id,
)
from shared.errors import PermanentError, SettingsError, TransientError
from shared.models.messages import MonitoringMessage, PlanPhase, TaskMessage, TaskOutcome, decode_message
from shared.models.run import Action, Phase, TaskStatus
from shared.names import QueueName
from shared.settings import ServiceBusConnection
from tests.fakes import FakeTransport

NOW = datetime(2026, 11, 15, 14, 30, tzinfo=UTC)
VM = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
    "/providers/Microsoft.Compute/virtualMachines/vm1"
)
RUN = "weekly-20261115150000-0123456789ab"


def task(
    target: str = VM, *, attempt: int = 1, run_key: str = RUN, action: Action = Action.SNAPSHOT_DISKS
) -> TaskMessage:
    return TaskMessage(run_key=run_key, phase=Phase.PRE, action=action, target=target, attempt=attempt)


def body_of(message: ServiceBusMessage) -> str:
    return b"".join(message.body).decode("utf-8")


class RecordingBatch(ServiceBusMessageBatch):
    """A real batch (real size accounting) that also remembers what was added, for assertions."""

    def __init__(self, max_size_in_bytes: int | None = None):
        super().__init__(max_size_in_bytes=max_size_in_bytes)
        self.added: list[ServiceBusMessage] = []

    def add_message(self, message) -> None:
        super().add_message(message)
        self.added.append(message)


# -- message construction ---------------------------------------------------------------------


def test_message_carries_the_deterministic_id_properties_content_type_and_subject():
    message = task(attempt=3)

    built = build_servicebus_message(message, now=NOW)

    assert built.message_id == message.message_id
    assert built.application_properties == {
        "kind": "task",
        "runKey": RUN,
        "phase": "pre",
        "action": "snapshot-disks",
        "target": VM,
        "attempt": 3,
    }
    assert built.content_type == CONTENT_TYPE == "application/json"
    assert built.subject == "task"
    assert built.scheduled_enqueue_time_utc is None
    assert decode_message(body_of(built)) == message


def test_the_same_message_always_gets_the_same_id_so_duplicate_detection_can_drop_repeats():
    assert build_servicebus_message(task(), now=NOW).message_id == build_servicebus_message(task(), now=NOW).message_id
    assert (
        build_servicebus_message(task(attempt=2), now=NOW).message_id
        != build_servicebus_message(task(), now=NOW).message_id
    )


def test_a_delay_schedules_the_message_at_now_plus_delay():
    built = build_servicebus_message(PlanPhase(run_key=RUN), delay=timedelta(minutes=7), now=NOW)

    assert built.scheduled_enqueue_time_utc == NOW + timedelta(minutes=7)
    assert built.application_properties["phase"] == "pre"


@pytest.mark.parametrize("delay", [timedelta(0), timedelta(seconds=-30)])
def test_no_positive_delay_means_enqueue_now(delay):
    assert build_servicebus_message(task(), delay=delay, now=NOW).scheduled_enqueue_time_utc is None


def test_short_ids_are_kept_as_they_are():
    assert servicebus_message_id("run:pre-start-vm-abc:1") == "run:pre-start-vm-abc:1"
    assert servicebus_message_id("x" * MAX_MESSAGE_ID_LENGTH) == "x" * MAX_MESSAGE_ID_LENGTH


def test_long_ids_become_a_stable_readable_hash_within_128_characters():
    long_a = "r" * 100 + ":pre-start-vm-" + "a" * 40
    long_b = "r" * 100 + ":pre-start-vm-" + "b" * 40

    id_a = servicebus_message_id(long_a)

    assert len(id_a) <= MAX_MESSAGE_ID_LENGTH
    assert id_a == servicebus_message_id(long_a)
    assert id_a != servicebus_message_id(long_b)  # same prefix, different id: no collision
    assert id_a.startswith(long_a[:40])


def test_a_message_with_a_long_run_key_still_gets_an_acceptable_id():
    message = task(run_key="k" * 120)

    built = build_servicebus_message(message, now=NOW)

    assert len(built.message_id) <= MAX_MESSAGE_ID_LENGTH
    assert built.message_id == servicebus_message_id(message.message_id)


def test_received_properties_are_normalised_to_text_keys_and_primitive_values():
    raw = {b"kind": b"task", "attempt": 2, b"ok": True, "nested": {"no": 1}, "none": None}

    assert plain_properties(raw) == {"kind": "task", "attempt": 2, "ok": True}
    assert plain_properties(None) == {}


# -- batching ------------------------------------------------------------------------------------


def sized_messages(count: int, body_size: int) -> list[ServiceBusMessage]:
    return [ServiceBusMessage("x" * body_size, message_id=f"m{i}") for i in range(count)]


def test_batches_are_filled_up_to_their_size_limit_in_order():
    messages = sized_messages(10, 300)

    batches = list(iter_batches(messages, lambda: RecordingBatch(max_size_in_bytes=1500)))

    assert len(batches) > 1
    assert [m.message_id for batch in batches for m in batch.added] == [f"m{i}" for i in range(10)]
    assert all(0 < batch.size_in_bytes <= 1500 for batch in batches)
    # Every batch but the last was full: the next message would not have fitted.
    assert all(len(batch) == len(batches[0]) for batch in batches[:-1])


def test_a_batch_never_holds_more_than_4500_messages():
    messages = sized_messages(MAX_BATCH_MESSAGES + 1, 1)

    batches = list(iter_batches(messages, lambda: ServiceBusMessageBatch(max_size_in_bytes=8 * 1024 * 1024)))

    assert [len(batch) for batch in batches] == [MAX_BATCH_MESSAGES, 1]


def test_the_count_limit_can_be_lowered():
    batches = list(iter_batches(sized_messages(7, 1), ServiceBusMessageBatch, max_count=3))

    assert [len(batch) for batch in batches] == [3, 3, 1]


def test_no_messages_means_no_batch():
    assert list(iter_batches([], ServiceBusMessageBatch)) == []


def test_a_single_message_too_large_for_an_empty_batch_is_a_precise_permanent_error():
    too_big = ServiceBusMessage("x" * 5000, message_id="big-one")

    with pytest.raises(MessageTooLarge) as raised:
        list(iter_batches([too_big], lambda: ServiceBusMessageBatch(max_size_in_bytes=1024), queue_name="prepost-plan"))

    error = raised.value
    assert isinstance(error, PermanentError)
    assert (error.message_id, error.queue_name, error.size_limit) == ("big-one", "prepost-plan", 1024)
    assert "big-one" in str(error) and "1024" in str(error)


def test_batches_before_an_oversized_message_are_yielded_first():
    messages = [*sized_messages(2, 10), ServiceBusMessage("x" * 5000, message_id="big-one")]
    batches = iter_batches(messages, lambda: ServiceBusMessageBatch(max_size_in_bytes=1024))

    assert len(next(batches)) == 2
    with pytest.raises(MessageTooLarge):
        next(batches)


# -- the transport ---------------------------------------------------------------------------------


class FakeSender:
    def __init__(self, queue_name: str, *, error: Exception | None = None, max_size: int = 262_144):
        self.queue_name = queue_name
        self.sent: list[RecordingBatch] = []
        self.error = error
        self.max_size = max_size
        self.closed = False
        self._busy = False
        self.overlaps = 0

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> RecordingBatch:
        return RecordingBatch(max_size_in_bytes=max_size_in_bytes or self.max_size)

    def send_messages(self, batch, *, timeout=None) -> None:
        if self._busy:
            self.overlaps += 1
        self._busy = True
        try:
            time.sleep(0.001)
            if self.error is not None:
                raise self.error
            self.sent.append(batch)
        finally:
            self._busy = False

    def close(self) -> None:
        self.closed = True

    @property
    def messages(self) -> list[ServiceBusMessage]:
        return [message for batch in self.sent for message in batch.added]


class FakeClient:
    def __init__(self, **sender_options):
        self.senders: dict[str, FakeSender] = {}
        self.sender_requests = 0
        self.closed = False
        self._options = sender_options

    def get_queue_sender(self, queue_name: str) -> FakeSender:
        self.sender_requests += 1
        return self.senders.setdefault(queue_name, FakeSender(queue_name, **self._options))

    def close(self) -> None:
        self.closed = True


def make_transport(client: FakeClient, fallback: FakeTransport | None = None, **kwargs) -> ServiceBusTransport:
    clients = []

    def factory():
        clients.append(client)
        return client

    transport = ServiceBusTransport(
        ServiceBusConnection(connection_string="Endpoint=sb://localhost;UseDevelopmentEmulator=true;"),
        fallback=fallback or FakeTransport(),
        client_factory=factory,
        clock=lambda: NOW,
        **kwargs,
    )
    transport.created_clients = clients  # type: ignore[attr-defined]
    return transport


def test_plans_and_vm_tasks_go_to_service_bus_and_monitoring_and_outcomes_to_the_fallback():
    client, fallback = FakeClient(), FakeTransport()
    transport = make_transport(client, fallback)
    plan = PlanPhase(run_key=RUN)
    tasks = [task(), task(VM.replace("vm1", "vm2"))]
    monitoring = MonitoringMessage(
        run_key=RUN, action=Action.SUPPRESS_ALERTS, target="00000000-0000-0000-0000-000000000001"
    )
    outcome = TaskOutcome(run_key=RUN, target=VM, status=TaskStatus.SUCCEEDED)

    transport.send([plan, tasks[0], monitoring, tasks[1], outcome])

    assert [m.message_id for m in client.senders["prepost-plan"].messages] == [plan.message_id]
    assert [m.message_id for m in client.senders["prepost-vm-tasks"].messages] == [t.message_id for t in tasks]
    assert [item.message for item in fallback.sent] == [monitoring, outcome]
    assert set(client.senders) == {QueueName.PLAN.value, QueueName.VM_TASKS.value}


def test_many_tasks_for_one_queue_travel_in_one_batch():
    client = FakeClient()
    transport = make_transport(client)

    transport.send([task(VM.replace("vm1", f"vm{i}")) for i in range(50)])

    assert [len(batch) for batch in client.senders["prepost-vm-tasks"].sent] == [50]


def test_a_small_batch_limit_splits_one_send_into_several_batches():
    client = FakeClient()
    transport = make_transport(client, max_batch_size_in_bytes=2048)

    transport.send([task(VM.replace("vm1", f"vm{i}")) for i in range(20)])

    sent = client.senders["prepost-vm-tasks"].sent
    assert len(sent) > 1
    assert sum(len(batch) for batch in sent) == 20


def test_a_delayed_send_schedules_every_message_and_passes_the_delay_to_the_fallback():
    client, fallback = FakeClient(), FakeTransport()
    transport = make_transport(client, fallback)
    monitoring = MonitoringMessage(run_key=RUN, action=Action.REMOVE_SUPPRESSION, target="sub")

    transport.send([task(), task(VM.replace("vm1", "vm2")), monitoring], delay=timedelta(seconds=90))

    scheduled = {m.scheduled_enqueue_time_utc for m in client.senders["prepost-vm-tasks"].messages}
    assert scheduled == {NOW + timedelta(seconds=90)}
    assert fallback.sent[0].delay == timedelta(seconds=90)


def test_only_storage_messages_never_create_a_service_bus_client():
    client, fallback = FakeClient(), FakeTransport()
    transport = make_transport(client, fallback)

    transport.send([TaskOutcome(run_key=RUN, target=VM)])

    assert transport.created_clients == []  # type: ignore[attr-defined]
    assert len(fallback.sent) == 1


def test_the_client_is_created_once_and_each_queue_sender_reused():
    client = FakeClient()
    transport = make_transport(client)

    for _ in range(3):
        transport.send([task(), PlanPhase(run_key=RUN)])

    assert len(transport.created_clients) == 1  # type: ignore[attr-defined]
    assert client.sender_requests == 2


def test_concurrent_sends_never_use_one_sender_from_two_threads_at_once():
    client = FakeClient()
    transport = make_transport(client)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                transport.send([task(VM.replace("vm1", f"vm{n}-{i}"))])
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    sender = client.senders["prepost-vm-tasks"]
    assert sender.overlaps == 0
    assert len(sender.messages) == 160
    assert len(transport.created_clients) == 1  # type: ignore[attr-defined]


def test_a_transient_service_bus_error_is_raised_as_transient_so_the_delivery_is_retried():
    transport = make_transport(FakeClient(error=ServiceBusConnectionError(message="link detached")))

    with pytest.raises(TransientError) as raised:
        transport.send([task()])

    assert "prepost-vm-tasks" in str(raised.value)
    assert isinstance(raised.value.__cause__, ServiceBusConnectionError)


def test_a_non_transient_service_bus_error_is_raised_unchanged():
    transport = make_transport(FakeClient(error=MessagingEntityNotFoundError(message="no such queue")))

    with pytest.raises(MessagingEntityNotFoundError):
        transport.send([task()])


def test_an_oversized_work_message_raises_message_too_large_before_anything_is_sent():
    client = FakeClient(max_size=1024)
    transport = make_transport(client)

    with pytest.raises(MessageTooLarge) as raised:
        transport.send([TaskMessage(run_key=RUN, target=VM, options={"blob": "x" * 4000})])

    assert raised.value.queue_name == "prepost-vm-tasks"
    assert client.senders["prepost-vm-tasks"].sent == []


def test_close_releases_senders_and_client_but_not_the_fallback():
    client, fallback = FakeClient(), FakeTransport()
    transport = make_transport(client, fallback)
    transport.send([task()])

    transport.close()

    assert client.closed and client.senders["prepost-vm-tasks"].closed
    transport.send([task()])  # a later send opens a new client
    assert len(transport.created_clients) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("connection", [None, ServiceBusConnection()])
def test_a_missing_connection_is_a_settings_error(connection):
    with pytest.raises(SettingsError, match="ServiceBusConnection"):
        ServiceBusTransport(connection, fallback=FakeTransport())


def test_importing_the_adapters_does_not_import_the_sdk():
    # Cold start: function_app imports the adapters on every scale-out.
    code = (
        "import sys, shared.adapters.servicebus_transport, shared.adapters.servicebus_settlement;"
        "sys.exit('azure.servicebus' in sys.modules or 'azure.identity' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=_repo_root())
    assert result.returncode == 0, result.stderr


def _repo_root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2])
