"""Service Bus dead-letter queues: what sits there and why, and sending it back.

With ``PREPOST_TRANSPORT=servicebus`` and explicit settlement, a plan or VM-task message that
failed permanently (or ran out of attempts) is dead-lettered with ``DeadLetterReason`` and
``DeadLetterErrorDescription``; the broker adds its own reasons (``MaxDeliveryCountExceeded``,
``TTLExpiredException``). ``prepost deadletter list`` shows them; ``prepost replay deadletter``
sends each body back to its queue and completes the dead-lettered copy once the send succeeded.

A replayed message gets a new ``MessageId`` (``<original>:replay:<sequence number>``): the
original id may still be inside the duplicate-detection window, where the broker would drop it
silently. The id is deterministic, so a replay interrupted between send and complete and run
again sends the same id, and duplicate detection drops the repeat. Its retry counter is reset:
replaying is an operator's decision to try again with the full attempt budget.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prepost.replay.result import ReplayOutcome, ReplayResult, ReplaySummary
from shared.adapters.servicebus_settlement import ORIGINAL_ID_PROPERTY, RETRY_PROPERTY
from shared.adapters.servicebus_transport import plain_properties, received_body, servicebus_message_id

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage

__all__ = [
    "REPLAY_PROPERTY",
    "DeadLetterOutcome",
    "DeadLetterReplay",
    "DeadLetterResult",
    "DeadLetteredMessage",
    "dead_lettered",
    "peek_dead_letters",
    "replay_dead_letters",
    "replay_message",
]

PEEK_LIMIT = 32
"""The most messages a dry run or ``deadletter list`` shows per queue."""

RECEIVE_BATCH = 20
RECEIVE_WAIT_SECONDS = 5.0
"""How long one receive waits for messages before the dead-letter queue counts as drained."""

REPLAY_PROPERTY = "prepostReplay"
"""Application property on a replayed copy: the id of the replay that sent it. A message that
comes back to the dead-letter queue during the same replay is not sent a second time."""

REPLAYED_FROM_PROPERTY = "prepostReplayedFrom"
"""Application property on a replayed copy: the dead-lettered message's sequence number."""


@dataclass(frozen=True)
class DeadLetteredMessage:
    """One message in a queue's ``$deadletterqueue``."""

    queue: str
    message_id: str | None
    sequence_number: int | None
    enqueued_at: datetime | None
    reason: str
    description: str
    body: bytes
    delivery_count: int
    application_properties: Mapping[str, Any] = field(default_factory=dict)
    content_type: str | None = None
    subject: str | None = None

    @property
    def explanation(self) -> str:
        """``Reason: description``, as an operator reads it."""
        if self.description and self.description != self.reason:
            return f"{self.reason}: {self.description}"
        return self.reason


def dead_lettered(queue: str, message: ServiceBusReceivedMessage) -> DeadLetteredMessage:
    """A received (or peeked) dead-letter message, as plain data."""
    return DeadLetteredMessage(
        queue=queue,
        message_id=message.message_id,
        sequence_number=message.sequence_number,
        enqueued_at=message.enqueued_time_utc,
        reason=message.dead_letter_reason or "(no reason given)",
        description=message.dead_letter_error_description or "",
        body=received_body(message),
        delivery_count=int(message.delivery_count or 0),
        application_properties=plain_properties(message.application_properties),
        content_type=message.content_type,
        subject=message.subject,
    )


def replay_message(message: DeadLetteredMessage, *, replay_id: str) -> ServiceBusMessage:
    """The copy sent back to the queue: same body and properties, a new deterministic id."""
    from azure.servicebus import ServiceBusMessage

    original = str(message.application_properties.get(ORIGINAL_ID_PROPERTY) or message.message_id or "")
    properties: dict[str | bytes, Any] = {
        key: value for key, value in message.application_properties.items() if key not in (RETRY_PROPERTY,)
    }
    message_id = servicebus_message_id(f"{original}:replay:{message.sequence_number}")
    # Retries of the replayed copy derive their ids from this one, not from the original:
    # the original's retry ids may still be inside the duplicate-detection window.
    properties[ORIGINAL_ID_PROPERTY] = message_id
    properties[REPLAY_PROPERTY] = replay_id
    if message.sequence_number is not None:
        properties[REPLAYED_FROM_PROPERTY] = message.sequence_number
    return ServiceBusMessage(
        message.body,
        message_id=message_id,
        application_properties=properties,
        content_type=message.content_type,
        subject=message.subject,
    )


def peek_dead_letters(client: ServiceBusClient, queue: str, *, limit: int = PEEK_LIMIT) -> list[DeadLetteredMessage]:
    """The first ``limit`` dead-lettered messages of ``queue``, without locking them."""
    from azure.servicebus import ServiceBusSubQueue

    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        return [dead_lettered(queue, message) for message in receiver.peek_messages(max_message_count=limit)]


DeadLetterOutcome = ReplayOutcome
"""Kept under its former name: a dead-lettered message is replayed, would be, or failed."""

DeadLetterResult = ReplayResult[DeadLetteredMessage]


@dataclass
class DeadLetterReplay(ReplaySummary[DeadLetteredMessage]):
    """What :func:`replay_dead_letters` did."""

    replay_id: str = ""
    """Set on every copy sent (property ``prepostReplay``): a message seen again is not sent twice."""


def replay_dead_letters(
    client: ServiceBusClient,
    queue: str,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    report: Callable[[DeadLetterResult], None] = lambda result: None,
    replay_id: str | None = None,
    run_key: str | None = None,
) -> DeadLetterReplay:
    """Send dead-lettered messages of ``queue`` back to it; complete each only after its send.

    With ``run_key``, only that run's messages (application property ``runKey``) are replayed;
    the others are left untouched: not settled, so their lock lapses and they stay where they
    are. Each message is looked at once: seeing one again (its lock lapsed during a long
    replay) ends the replay.

    A failed send abandons the message (it stays in the dead-letter queue) and stops the replay:
    the same failure would repeat for every message. A message that this replay already sent
    and that failed again stops it too, instead of going round in circles.

    Raises:
        azure.servicebus.exceptions.ServiceBusError: receiving or completing failed.
    """
    from azure.servicebus import ServiceBusSubQueue
    from azure.servicebus.exceptions import ServiceBusError

    summary = DeadLetterReplay(queue=queue, replay_id=replay_id or uuid.uuid4().hex)

    def selected(message: DeadLetteredMessage) -> bool:
        return run_key is None or message.application_properties.get("runKey") == run_key

    if dry_run:
        peeked = peek_dead_letters(client, queue, limit=PEEK_LIMIT if limit is None else limit)
        for message in filter(selected, peeked):
            summary.record(ReplayResult(message, ReplayOutcome.WOULD_REPLAY), report)
        return summary
    budget = limit
    seen: set[int | None] = set()
    with (
        client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver,
        client.get_queue_sender(queue) as sender,
    ):
        while budget is None or budget > 0:
            batch = receiver.receive_messages(
                max_message_count=RECEIVE_BATCH if budget is None else min(budget, RECEIVE_BATCH),
                max_wait_time=RECEIVE_WAIT_SECONDS,
            )
            if not batch or all(received.sequence_number in seen for received in batch):
                break
            for index, received in enumerate(batch):
                message = dead_lettered(queue, received)
                seen.add(message.sequence_number)
                if not selected(message):
                    continue  # not settled: its lock lapses and it stays in the dead-letter queue
                if message.application_properties.get(REPLAY_PROPERTY) == summary.replay_id:
                    detail = "already replayed once by this replay and dead-lettered again; left for a person"
                    _abandon_all(receiver, batch[index:])
                    summary.record(ReplayResult(message, ReplayOutcome.FAILED, detail), report)
                    return summary
                try:
                    sender.send_messages(replay_message(message, replay_id=summary.replay_id))
                except ServiceBusError as error:
                    _abandon_all(receiver, batch[index:])
                    detail = f"send to {queue} failed: {error}"
                    summary.record(ReplayResult(message, ReplayOutcome.FAILED, detail), report)
                    return summary
                receiver.complete_message(received)
                summary.record(ReplayResult(message, ReplayOutcome.REPLAYED), report)
                if budget is not None:
                    budget -= 1
                    if budget == 0:
                        break
    return summary


def _abandon_all(receiver: Any, messages: list[Any]) -> None:
    """Unlock messages now, rather than when their locks expire."""
    from azure.servicebus.exceptions import ServiceBusError

    for message in messages:
        # If this fails, the lock expires by itself and the message stays where it is.
        with contextlib.suppress(ServiceBusError):
            receiver.abandon_message(message)
