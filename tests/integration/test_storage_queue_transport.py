"""The Storage queue transport and the storage client factory, against Azurite.

The queues are the app's own (:class:`QueueName`), shared by the whole test session, so every
test starts and ends with them empty. Waiting is always a poll with a deadline.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TypeVar

import pytest
from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient

from shared.adapters.storage_clients import RetrySettings, StorageClients, storage_clients
from shared.adapters.storage_queue_transport import (
    MAX_MESSAGE_BYTES,
    DelayTooLong,
    MessageTooLarge,
    StorageQueueTransport,
    visibility_timeout_seconds,
)
from shared.errors import SettingsError
from shared.models.messages import (
    CheckPreDeadline,
    MonitoringMessage,
    PlanPhase,
    PostFallback,
    TaskMessage,
    TaskOutcome,
    decode_message,
)
from shared.models.run import Action, Phase, TaskStatus
from shared.names import QueueName, TableName
from shared.settings import StorageConnection

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-000000000001"
VM = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
T = TypeVar("T")


def poll(condition: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.1) -> T:
    """The first truthy value of ``condition()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


def clear_queues(clients: StorageClients) -> None:
    for queue in QueueName:
        clients.queue(queue).clear_messages()


@pytest.fixture
def storage_queues(storage) -> Iterator[StorageClients]:
    clear_queues(storage)
    yield storage
    clear_queues(storage)


@pytest.fixture
def transport(storage_queues) -> StorageQueueTransport:
    return StorageQueueTransport(storage_queues)


@pytest.fixture
def raw_queue(storage_connection_string) -> Callable[[QueueName], QueueClient]:
    """A queue client without decoding: the bytes the Functions host would see."""

    def client(queue: QueueName) -> QueueClient:
        return QueueClient.from_connection_string(storage_connection_string, queue.value)

    return client


def receive_all(queue: QueueClient, expected: int, *, timeout: float = 30.0) -> list:
    """Receive until ``expected`` messages arrived, hiding each for 10 minutes once seen."""
    received: list = []

    def more() -> bool:
        wanted = expected - len(received)
        received.extend(
            queue.receive_messages(messages_per_page=min(32, wanted), max_messages=wanted, visibility_timeout=600)
        )
        return len(received) >= expected

    poll(more, timeout=timeout, interval=0.05)
    return received


def test_messages_arrive_base64_and_decode_to_the_same_message(transport, raw_queue):
    messages = [
        PlanPhase(run_key="run-a", phase=Phase.POST),
        CheckPreDeadline(run_key="run-a"),
        PostFallback(run_key="run-a"),
        TaskMessage(run_key="run-a", phase=Phase.PRE, action=Action.SNAPSHOT_DISKS, target=VM, options={"keep": 3}),
        MonitoringMessage(run_key="run-a", action=Action.SUPPRESS_ALERTS, target=SUB, attempt=2),
        TaskOutcome(run_key="run-a", target=VM, status=TaskStatus.FAILED, detail="ünïcödé", data={"x": [1]}),
    ]

    transport.send(messages)

    arrived = []
    for queue in (QueueName.PLAN, QueueName.VM_TASKS, QueueName.MONITORING, QueueName.OUTCOMES):
        expected = sum(1 for message in messages if message.queue is queue)
        for item in receive_all(raw_queue(queue), expected):
            body = base64.b64decode(item.content, validate=True).decode("utf-8")
            arrived.append(decode_message(body))
    assert sorted(arrived, key=repr) == sorted(messages, key=repr)


def test_the_factory_queue_clients_decode_base64(transport, storage_queues):
    message = PlanPhase(run_key="run-b", phase=Phase.PRE)
    transport.send([message])

    (item,) = receive_all(storage_queues.queue(QueueName.PLAN), 1)

    assert decode_message(item.content) == message


def test_messages_never_expire(transport, raw_queue):
    transport.send([CheckPreDeadline(run_key="run-c")], delay=timedelta(hours=1))

    # Hidden, so peek cannot see it; the queue's count shows it was stored.
    assert raw_queue(QueueName.PLAN).peek_messages() == []
    assert raw_queue(QueueName.PLAN).get_queue_properties().approximate_message_count == 1
    transport.send([PostFallback(run_key="run-c")])
    (item,) = receive_all(raw_queue(QueueName.PLAN), 1)
    assert item.expires_on.year == 9999  # time_to_live=-1


def test_a_delay_hides_the_message_until_it_is_due(transport, raw_queue):
    queue = raw_queue(QueueName.PLAN)
    message = CheckPreDeadline(run_key="run-d")

    transport.send([message], delay=timedelta(seconds=2))

    assert list(queue.receive_messages(max_messages=1)) == []  # hidden while the delay runs
    (item,) = receive_all(queue, 1, timeout=15)
    assert decode_message(base64.b64decode(item.content)) == message


def test_a_delay_is_whole_seconds_rounded_up_and_at_most_seven_days():
    assert visibility_timeout_seconds(None) is None
    assert visibility_timeout_seconds(timedelta(0)) is None
    assert visibility_timeout_seconds(timedelta(milliseconds=200)) == 1
    assert visibility_timeout_seconds(timedelta(seconds=90, microseconds=1)) == 91
    assert visibility_timeout_seconds(timedelta(days=7)) == 604_800
    with pytest.raises(DelayTooLong, match="604,800 s"):
        visibility_timeout_seconds(timedelta(days=7, microseconds=1))
    with pytest.raises(ValueError, match="negative"):
        visibility_timeout_seconds(timedelta(seconds=-1))


def test_a_seven_day_delay_is_accepted_by_the_service(transport, raw_queue):
    transport.send([PostFallback(run_key="run-e")], delay=timedelta(days=7))

    assert raw_queue(QueueName.PLAN).get_queue_properties().approximate_message_count == 1


def test_a_delay_over_seven_days_sends_nothing(transport, raw_queue):
    with pytest.raises(DelayTooLong):
        transport.send([PostFallback(run_key="run-f")], delay=timedelta(days=8))

    assert raw_queue(QueueName.PLAN).get_queue_properties().approximate_message_count == 0


def test_many_messages_sent_in_parallel_all_arrive_exactly_once(transport, raw_queue):
    messages = [
        TaskMessage(run_key="run-g", action=Action.START_VM, target=f"{VM}{index:04d}") for index in range(1_000)
    ]

    started = time.perf_counter()
    transport.send(messages)
    elapsed = time.perf_counter() - started

    received = receive_all(raw_queue(QueueName.VM_TASKS), len(messages))
    counts = Counter(decode_message(base64.b64decode(item.content)).message_id for item in received)
    assert counts == Counter(message.message_id for message in messages)
    assert list(raw_queue(QueueName.VM_TASKS).receive_messages(max_messages=1)) == []
    print(f"sent {len(messages)} messages in {elapsed:.2f} s ({len(messages) / elapsed:.0f}/s)")


def test_a_message_of_exactly_64_kib_is_sent(transport, raw_queue):
    empty = TaskMessage(run_key="run-h", target=VM, options={"pad": ""})
    pad = MAX_MESSAGE_BYTES * 3 // 4 - len(empty.to_json().encode())
    message = TaskMessage(run_key="run-h", target=VM, options={"pad": "p" * pad})

    transport.send([message])

    (item,) = receive_all(raw_queue(QueueName.VM_TASKS), 1)
    assert len(item.content) == MAX_MESSAGE_BYTES
    assert decode_message(base64.b64decode(item.content)) == message


def test_an_oversized_message_raises_and_nothing_is_sent(transport, raw_queue):
    small = TaskMessage(run_key="run-i", target=VM)
    huge = TaskMessage(run_key="run-i", target=VM + "2", options={"machines": ["x" * 100] * 500})

    with pytest.raises(MessageTooLarge, match="at most 65,536") as raised:
        transport.send([small, huge])

    assert raised.value.message_id == huge.message_id
    assert raw_queue(QueueName.VM_TASKS).get_queue_properties().approximate_message_count == 0


def test_sending_nothing_does_nothing(transport):
    transport.send([])


def test_a_failing_send_raises_quickly_instead_of_retrying_for_minutes():
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connection = StorageConnection(
        connection_string="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    clients = StorageClients(connection, retry=RetrySettings(total=2, backoff_seconds=0.2))
    transport = StorageQueueTransport(clients)

    with pytest.raises(AzureError):
        transport.send([PlanPhase(run_key="run-j"), PlanPhase(run_key="run-k"), PlanPhase(run_key="run-l")])
    clients.close()


def test_ensure_storage_creates_every_table_and_queue_idempotently(storage):
    storage.ensure_storage(force=True)
    storage.ensure_storage(force=True)

    queues = {queue.name for queue in storage.queue_service.list_queues()}
    tables = {table.name for table in storage.table_service.list_tables()}
    assert {name for queue in QueueName for name in (queue.value, queue.poison)} <= queues
    assert {table.value for table in TableName} <= tables


def test_park_puts_the_body_and_reason_in_the_poison_queue(storage_queues):
    from shared.adapters.parking import unpark

    poison = QueueClient.from_connection_string(
        storage_queues.connection.connection_string or "", QueueName.VM_TASKS.poison
    )
    poison.clear_messages()

    storage_queues.park(QueueName.VM_TASKS, b"not json", "message is not JSON")

    (item,) = receive_all(poison, 1)
    body, note = unpark(base64.b64decode(item.content).decode())
    assert body == "not json"
    assert note is not None and note["reason"] == "message is not JSON"
    assert item.expires_on.year == 9999
    poison.clear_messages()


def test_queue_messages_are_json_objects_of_a_known_kind(transport, raw_queue):
    """What an operator sees after base64-decoding a message in Storage Explorer."""
    transport.send([PlanPhase(run_key="run-m")])

    (item,) = receive_all(raw_queue(QueueName.PLAN), 1)

    body = json.loads(base64.b64decode(item.content))
    assert (body["kind"], body["v"], body["run_key"], body["phase"]) == ("plan-phase", 1, "run-m", "pre")


class _StaticToken:
    """A token credential that is never asked for a token (no request is sent)."""

    def get_token(self, *scopes, **kwargs):  # pragma: no cover - not called
        raise AssertionError("no request expected")


def test_identity_based_clients_use_the_account_endpoints():
    clients = StorageClients(StorageConnection(account_name="prepoststore"), credential=_StaticToken())

    assert clients.table_service.url.startswith("https://prepoststore.table.core.windows.net")
    assert clients.queue_service.url.startswith("https://prepoststore.queue.core.windows.net")
    assert clients.queue(QueueName.PLAN) is clients.queue(QueueName.PLAN)
    assert clients.table(TableName.RUNS) is clients.table("PrepostRuns")


def test_one_factory_per_connection_and_a_connection_is_required():
    connection = StorageConnection(account_name="prepoststore")

    assert storage_clients(connection) is storage_clients(StorageConnection(account_name="prepoststore"))
    with pytest.raises(SettingsError):
        StorageClients(StorageConnection())
