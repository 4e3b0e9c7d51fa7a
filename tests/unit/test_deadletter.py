"""Service Bus dead-letter replay: what is sent back, and when the dead-lettered copy goes.

The receiver and sender are small stand-ins (Service Bus cannot run here; the live suite in
tests/servicebus runs the same calls against a namespace or the emulator); the messages are the
SDK's own ``ServiceBusReceivedMessage`` objects, built from AMQP messages as the broker sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus._pyamqp.message import Header, Message, Properties
from azure.servicebus.exceptions import ServiceBusConnectionError

from prepost.deadletter import (
    REPLAY_PROPERTY,
    DeadLetterOutcome,
    dead_lettered,
    peek_dead_letters,
    replay_dead_letters,
    replay_message,
)
from shared.adapters.servicebus_settlement import ORIGINAL_ID_PROPERTY, RETRY_PROPERTY

QUEUE = "prepost-vm-tasks"


def dead_letter(sequence: int, *, body=b'{"kind": "task"}', message_id=None, properties=None, reason="PermanentError"):
    application = {b"DeadLetterReason": reason.encode(), b"DeadLetterErrorDescription": b"PermanentError: VM gone"}
    application.update(properties or {})
    message = Message(
        data=[body],
        header=Header(delivery_count=1),
        properties=Properties(message_id=message_id or f"run:task:{sequence}", content_type="application/json"),
        application_properties=application,
        message_annotations={b"x-opt-sequence-number": sequence},
    )
    return ServiceBusReceivedMessage(message, receiver=None)


@dataclass
class FakeReceiver:
    waiting: list
    completed: list = field(default_factory=list)
    abandoned: list = field(default_factory=list)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def peek_messages(self, max_message_count):
        return list(self.waiting[:max_message_count])

    def receive_messages(self, max_message_count, max_wait_time):
        batch, self.waiting = self.waiting[:max_message_count], self.waiting[max_message_count:]
        return batch

    def complete_message(self, message):
        self.completed.append(message.sequence_number)

    def abandon_message(self, message):
        self.abandoned.append(message.sequence_number)
        self.waiting.append(message)


@dataclass
class FakeSender:
    sent: list = field(default_factory=list)
    fail_after: int | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def send_messages(self, message):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ServiceBusConnectionError(message="connection lost")
        self.sent.append(message)


@dataclass
class FakeClient:
    receiver: FakeReceiver
    sender: FakeSender = field(default_factory=FakeSender)
    sub_queues: list = field(default_factory=list)

    def get_queue_receiver(self, queue_name, sub_queue=None):
        assert queue_name == QUEUE
        self.sub_queues.append(sub_queue)
        return self.receiver

    def get_queue_sender(self, queue_name):
        assert queue_name == QUEUE
        return self.sender


def test_a_dead_lettered_message_is_read_with_its_reason_and_description():
    message = dead_letter(7, properties={b"runKey": b"run-1"})
    read = dead_lettered(QUEUE, message)
    assert (read.reason, read.description, read.sequence_number) == ("PermanentError", "PermanentError: VM gone", 7)
    assert read.explanation == "PermanentError: PermanentError: VM gone"
    assert read.application_properties["runKey"] == "run-1"
    assert read.body == b'{"kind": "task"}'


def test_the_replayed_copy_has_a_new_stable_id_and_a_fresh_attempt_budget():
    message = dead_lettered(
        QUEUE,
        dead_letter(
            9, message_id="run:task:1:retry:3", properties={RETRY_PROPERTY: 3, ORIGINAL_ID_PROPERTY: "run:task:1"}
        ),
    )
    copy = replay_message(message, replay_id="r1")
    assert copy.message_id == "run:task:1:replay:9" == replay_message(message, replay_id="r2").message_id
    assert RETRY_PROPERTY not in copy.application_properties
    # Later retries of the copy derive their ids from the copy, not from the original's.
    assert copy.application_properties[ORIGINAL_ID_PROPERTY] == copy.message_id
    assert copy.application_properties[REPLAY_PROPERTY] == "r1"
    assert b"".join(copy.body) == message.body


def test_peek_reads_the_dead_letter_sub_queue():
    from azure.servicebus import ServiceBusSubQueue

    client = FakeClient(FakeReceiver([dead_letter(1), dead_letter(2)]))
    assert [m.sequence_number for m in peek_dead_letters(client, QUEUE)] == [1, 2]
    assert client.sub_queues == [ServiceBusSubQueue.DEAD_LETTER]


def test_replay_sends_each_message_back_then_completes_it():
    client = FakeClient(FakeReceiver([dead_letter(1), dead_letter(2), dead_letter(3)]))
    summary = replay_dead_letters(client, QUEUE, replay_id="r1")
    assert summary.count(DeadLetterOutcome.REPLAYED) == 3 and summary.ok
    assert [m.message_id for m in client.sender.sent] == [
        "run:task:1:replay:1",
        "run:task:2:replay:2",
        "run:task:3:replay:3",
    ]
    assert client.receiver.completed == [1, 2, 3]


def test_a_dry_run_only_peeks():
    client = FakeClient(FakeReceiver([dead_letter(1), dead_letter(2)]))
    summary = replay_dead_letters(client, QUEUE, dry_run=True)
    assert summary.count(DeadLetterOutcome.WOULD_REPLAY) == 2
    assert client.sender.sent == [] and client.receiver.completed == []


def test_the_limit_bounds_the_replay():
    client = FakeClient(FakeReceiver([dead_letter(n) for n in range(1, 6)]))
    summary = replay_dead_letters(client, QUEUE, limit=2)
    assert client.receiver.completed == [1, 2] and len(summary.results) == 2


def test_a_failed_send_keeps_the_message_dead_lettered_and_stops():
    client = FakeClient(FakeReceiver([dead_letter(1), dead_letter(2), dead_letter(3)]), FakeSender(fail_after=1))
    summary = replay_dead_letters(client, QUEUE)
    assert [r.outcome for r in summary.results] == [DeadLetterOutcome.REPLAYED, DeadLetterOutcome.FAILED]
    assert "connection lost" in summary.results[1].detail and not summary.ok
    assert client.receiver.completed == [1]
    assert client.receiver.abandoned == [2, 3]


def test_a_message_this_replay_already_sent_is_not_sent_round_again():
    came_back = dead_letter(4, properties={REPLAY_PROPERTY.encode(): b"r1"})
    client = FakeClient(FakeReceiver([dead_letter(1), came_back]))
    summary = replay_dead_letters(client, QUEUE, replay_id="r1")
    assert [r.outcome for r in summary.results] == [DeadLetterOutcome.REPLAYED, DeadLetterOutcome.FAILED]
    assert "already replayed once by this replay" in summary.results[1].detail
    assert client.receiver.abandoned == [4] and len(client.sender.sent) == 1


@pytest.mark.parametrize("argv", [["deadletter", "list"], ["replay", "deadletter", QUEUE]])
def test_the_cli_names_the_missing_connection(argv, monkeypatch, capsys):
    from prepost.cli import EXIT_USAGE, main

    monkeypatch.delenv("ServiceBusConnection", raising=False)
    monkeypatch.delenv("ServiceBusConnection__fullyQualifiedNamespace", raising=False)
    assert main(argv) == EXIT_USAGE
    assert "give --servicebus or --namespace" in capsys.readouterr().err


def test_a_run_filter_replays_only_that_runs_messages_and_leaves_the_others_unsettled():
    mine = [dead_letter(n, properties={b"runKey": b"run-a"}) for n in (1, 3)]
    other = dead_letter(2, properties={b"runKey": b"run-b"})
    client = FakeClient(FakeReceiver([mine[0], other, mine[1]]))
    summary = replay_dead_letters(client, QUEUE, run_key="run-a")
    assert [r.item.sequence_number for r in summary.results] == [1, 3]
    assert client.receiver.completed == [1, 3] and client.receiver.abandoned == []


def test_a_message_seen_again_ends_the_replay():
    # A lock that lapsed during a long replay hands the same messages out again.
    skipped = dead_letter(5, properties={b"runKey": b"run-b"})

    class LapsingReceiver(FakeReceiver):
        def receive_messages(self, max_message_count, max_wait_time):
            return [skipped]

    summary = replay_dead_letters(FakeClient(LapsingReceiver([])), QUEUE, run_key="run-a")
    assert summary.results == []
