"""The explicit-settlement Service Bus functions as the Python worker calls them.

What is real here: the registered functions from ``function_app.build_app``; the SDK-type
binding's own converter, which turns the host's model-binding bytes (lock token + AMQP message)
into an ``azure.servicebus.ServiceBusReceivedMessage``; and the binding's own
``ServiceBusMessageActions`` client, which settles over gRPC. The Functions host cannot run
here, so a gRPC server implementing the binding's ``Settlement`` service stands in for it and
records every settlement request it receives.
"""

from __future__ import annotations

import json
import sys
import typing
import uuid
from concurrent import futures
from datetime import datetime, timezone
from types import SimpleNamespace

import grpc
import pytest
import uamqp
from azurefunctions.extensions.base import Datum, meta
from azurefunctions.extensions.base import utils as extension_utils
from azurefunctions.extensions.bindings.protos import settlement_pb2_grpc
from azurefunctions.extensions.bindings.servicebus import (
    ServiceBusConverter,
    ServiceBusMessageActions,
    ServiceBusReceivedMessage,
)
from google.protobuf.empty_pb2 import Empty
from uamqp.message import MessageHeader, MessageProperties

import function_app
import shared.handlers
from shared.adapters.servicebus_settlement import ORIGINAL_ID_PROPERTY, RETRY_PROPERTY
from shared.bootstrap import Container, set_container
from shared.errors import PermanentError
from shared.models.messages import PlanPhase, TaskMessage
from shared.models.run import Action, Phase
from shared.names import SERVICEBUS_CONNECTION, QueueName
from shared.settings import ServiceBusSettlement, Settings, Transport
from tests.fakes import FakeIdempotencyStore
from tests.fakes_azure import FakeEstate

APP_FUNCTIONS = list(function_app.build_app(Transport.SERVICEBUS, ServiceBusSettlement.EXPLICIT).get_functions())
FUNCTIONS = {f.get_function_name(): f for f in APP_FUNCTIONS}
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
LOCK_TOKEN_MARKER = b"x-opt-lock-token"


class RecordingSettlementHost(settlement_pb2_grpc.SettlementServicer):
    """The host's side of the settlement gRPC service: records requests, answers Empty."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, object]] = []

    def Complete(self, request, context):  # noqa: N802 - gRPC method names
        self.requests.append(("complete", request))
        return Empty()

    def Abandon(self, request, context):  # noqa: N802
        self.requests.append(("abandon", request))
        return Empty()

    def Deadletter(self, request, context):  # noqa: N802
        self.requests.append(("deadletter", request))
        return Empty()


class RecordingResender:
    """Stands in for the Service Bus transport: keeps what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list]] = []

    def send_servicebus_messages(self, queue_name, messages) -> None:
        self.sent.append((queue_name, list(messages)))


class NoParking:
    def park(self, queue, body, reason) -> None:
        raise AssertionError(f"explicit settlement must dead-letter, not park: {reason}")


@pytest.fixture
def settlement_host(monkeypatch):
    host = RecordingSettlementHost()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    settlement_pb2_grpc.add_SettlementServicer_to_server(host, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # The worker process is started with these arguments; the client reads them from sys.argv.
    monkeypatch.setattr(
        sys,
        "argv",
        [sys.argv[0], "--host", "127.0.0.1", "--port", str(port), "--functions-grpc-max-message-length", "2097152"],
    )
    try:
        yield host, ServiceBusMessageActions()
    finally:
        server.stop(grace=None)


@pytest.fixture
def resender():
    sender = RecordingResender()
    set_container(Container(SETTINGS, transport=sender, storage=NoParking()))
    try:
        yield sender
    finally:
        set_container(None)


def received(
    body: bytes,
    *,
    lock_token: uuid.UUID,
    message_id: str = "run-1:plan-phase:pre:1",
    delivery_count: int = 1,
    properties: dict | None = None,
):
    """A received message as the SDK-type binding builds it from the host's bytes."""
    amqp = uamqp.Message(
        body=body,
        properties=MessageProperties(message_id=message_id, content_type="application/json"),
        application_properties=properties or {},
    )
    header = MessageHeader()
    header.delivery_count = delivery_count
    amqp.header = header
    content = lock_token.bytes_le + LOCK_TOKEN_MARKER + amqp.encode_message()
    binding_data = SimpleNamespace(
        version="1.0",
        source="AzureServiceBusReceivedMessage",
        content_type="application/octet-stream",
        content=content,
    )
    datum = Datum(type="model_binding_data", value=binding_data)
    return ServiceBusConverter.decode(datum, trigger_metadata={}, pytype=ServiceBusReceivedMessage)


def call(name: str, message, actions) -> None:
    FUNCTIONS[name].get_user_function()(message=message, message_actions=actions)


def plan_body() -> bytes:
    return PlanPhase(run_key="run-1", phase=Phase.PRE).to_json().encode()


def test_the_worker_sees_an_sdk_type_trigger_and_a_settlement_client():
    for name in ("plan_servicebus_queue", "vm_tasks_servicebus_queue"):
        function = FUNCTIONS[name]
        # The worker resolves the annotations to classes; strings would disable the SDK type.
        hints = typing.get_type_hints(function.get_user_function())
        assert hints["message"] is ServiceBusReceivedMessage
        assert meta._ConverterMeta.check_supported_grpc_client_type(hints["message_actions"])
        input_types = {"message": SimpleNamespace(pytype=hints["message"])}
        raw, _ = extension_utils.get_raw_bindings(function, input_types)
        [trigger] = [binding for binding in map(json.loads, raw) if binding["type"] == "serviceBusTrigger"]
        assert trigger["properties"] == {"SupportsDeferredBinding": True}
        assert trigger["autoCompleteMessages"] is False
        assert trigger["connection"] == SERVICEBUS_CONNECTION
    assert FUNCTIONS["plan_servicebus_queue"].get_trigger().get_dict_repr()["queueName"] == QueueName.PLAN.value
    assert FUNCTIONS["vm_tasks_servicebus_queue"].get_trigger().get_dict_repr()["queueName"] == QueueName.VM_TASKS.value


def test_a_handled_message_is_completed_with_its_own_lock_token(settlement_host, resender, monkeypatch):
    host, actions = settlement_host
    seen = []
    monkeypatch.setattr(
        shared.handlers, "handle_message", lambda queue, body, container, delivery, **kw: seen.append((queue, body))
    )
    token = uuid.uuid4()

    call("plan_servicebus_queue", received(plan_body(), lock_token=token), actions)

    assert seen == [(QueueName.PLAN, plan_body())]
    assert [(kind, request.locktoken) for kind, request in host.requests] == [("complete", str(token))]
    assert resender.sent == []


def test_an_undecodable_message_is_dead_lettered_with_a_readable_reason_on_its_first_delivery(
    settlement_host, resender
):
    host, actions = settlement_host
    token = uuid.uuid4()

    call("vm_tasks_servicebus_queue", received(b"not json", lock_token=token), actions)

    [(kind, request)] = host.requests
    assert kind == "deadletter" and request.locktoken == str(token)
    assert request.deadletterReason.value == "InvalidMessage"
    assert "not JSON" in request.deadletterErrorDescription.value
    assert resender.sent == []


def test_a_message_on_the_wrong_queue_is_dead_lettered_not_run(settlement_host, resender):
    host, actions = settlement_host

    call("vm_tasks_servicebus_queue", received(plan_body(), lock_token=uuid.uuid4()), actions)

    [(kind, request)] = host.requests
    assert kind == "deadletter" and request.deadletterReason.value == "InvalidMessage"
    assert "does not belong on prepost-vm-tasks" in request.deadletterErrorDescription.value


def test_a_task_message_its_task_record_disagrees_with_is_dead_lettered_before_any_azure_call(settlement_host):
    host, actions = settlement_host
    estate = FakeEstate()
    vm = estate.add_vm("vm-web-01")
    estate.planned_pre()
    set_container(
        Container(
            SETTINGS,
            records=estate.records,
            idempotency=FakeIdempotencyStore(),
            transport=RecordingResender(),
            storage=NoParking(),
            compute=estate.compute,
            arc=estate.arc,
        )
    )
    forged = TaskMessage(
        run_key=estate.key, phase=Phase.PRE, action=Action.SNAPSHOT_DISKS, target=vm, options={"disks": "all"}
    )
    try:
        call(
            "vm_tasks_servicebus_queue",
            received(forged.to_json().encode(), lock_token=uuid.uuid4(), message_id=forged.message_id),
            actions,
        )
    finally:
        set_container(None)

    [(kind, request)] = host.requests
    assert kind == "deadletter" and request.deadletterReason.value == "InvalidMessage"
    assert "differ from the recorded" in request.deadletterErrorDescription.value
    assert estate.compute.calls == []


def test_a_permanent_failure_is_dead_lettered_with_the_error(settlement_host, resender, monkeypatch):
    host, actions = settlement_host

    def fail(*args, **kwargs):
        raise PermanentError("run run-1 is not recorded")

    monkeypatch.setattr(shared.handlers, "handle_message", fail)
    call("plan_servicebus_queue", received(plan_body(), lock_token=uuid.uuid4()), actions)

    [(kind, request)] = host.requests
    assert kind == "deadletter" and request.deadletterReason.value == "PermanentError"
    assert request.deadletterErrorDescription.value == "PermanentError: run run-1 is not recorded"
    assert resender.sent == []


def test_a_transient_failure_is_rescheduled_with_backoff_then_completed(settlement_host, resender, monkeypatch):
    host, actions = settlement_host

    def fail(*args, **kwargs):
        raise ConnectionError("storage briefly unreachable")

    monkeypatch.setattr(shared.handlers, "handle_message", fail)
    before = datetime.now(timezone.utc)
    token = uuid.uuid4()
    call("plan_servicebus_queue", received(plan_body(), lock_token=token, properties={"run": "run-1"}), actions)

    [(queue_name, [copy])] = resender.sent
    assert queue_name == QueueName.PLAN.value
    assert copy.scheduled_enqueue_time_utc > before
    assert b"".join(copy.body) == plan_body()
    assert copy.application_properties[RETRY_PROPERTY] == 1
    assert copy.application_properties[ORIGINAL_ID_PROPERTY] == "run-1:plan-phase:pre:1"
    assert copy.application_properties["run"] == "run-1"
    # No abandon: the broker would redeliver at once. The original is completed instead.
    assert [(kind, request.locktoken) for kind, request in host.requests] == [("complete", str(token))]


def test_the_last_attempt_is_dead_lettered_instead_of_rescheduled(settlement_host, resender, monkeypatch):
    host, actions = settlement_host

    def fail(*args, **kwargs):
        raise ConnectionError("still unreachable")

    monkeypatch.setattr(shared.handlers, "handle_message", fail)
    # PREPOST_MAX_TASK_ATTEMPTS=4: three re-sends before, this delivery is attempt 4.
    message = received(plan_body(), lock_token=uuid.uuid4(), properties={RETRY_PROPERTY: 3})
    call("plan_servicebus_queue", message, actions)

    [(kind, request)] = host.requests
    assert kind == "deadletter" and request.deadletterReason.value == "MaxAttemptsExceeded"
    assert "gave up after attempt 4" in request.deadletterErrorDescription.value
    assert resender.sent == []


def test_a_failed_settlement_is_raised_so_the_host_redelivers(resender, monkeypatch):
    # No settlement host listening: the gRPC call fails, and the function must fail too.
    monkeypatch.setattr(
        sys,
        "argv",
        [sys.argv[0], "--host", "127.0.0.1", "--port", "1", "--functions-grpc-max-message-length", "2097152"],
    )
    monkeypatch.setattr(shared.handlers, "handle_message", lambda *args, **kwargs: None)
    actions = ServiceBusMessageActions()

    with pytest.raises(Exception, match="Failed to complete message"):
        call("plan_servicebus_queue", received(plan_body(), lock_token=uuid.uuid4()), actions)
