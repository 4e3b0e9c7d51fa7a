"""Poison queues (Storage): their messages back to their queue.

The Functions host moves a message to ``<queue>-poison`` after ``maxDequeueCount`` failed
deliveries, with the original body (base64, like every message on these queues). prepost itself
parks a message that can never succeed at once, wrapped with a reason
(:mod:`shared.adapters.parking`). :func:`replay_poison` sends the original body back and deletes
the poison copy only after the send succeeded.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prepost.replay.result import ReplayOutcome, ReplayResult, ReplaySummary
from shared.adapters.parking import unpark
from shared.models.events import format_time
from shared.names import STORAGE_MAX_DEQUEUE_COUNT, QueueName

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

    from shared.adapters.storage_clients import StorageClients

__all__ = [
    "HOST_POISON_REASON",
    "PEEK_LIMIT",
    "MessageOutcome",
    "PoisonMessage",
    "PoisonReplay",
    "PoisonResult",
    "PoisonSummary",
    "decode_queue_text",
    "describe_body",
    "peek_poison",
    "poison_message",
    "poison_queue_clients",
    "replay_poison",
    "summarize_poison",
]

PEEK_LIMIT = 32
"""The most messages one peek or receive returns (a Storage queue limit)."""

RECEIVE_VISIBILITY_SECONDS = 60
"""How long a received poison message stays hidden while it is sent back."""

HOST_POISON_REASON = (
    f"poisoned by the Functions host after {STORAGE_MAX_DEQUEUE_COUNT} failed deliveries "
    "(the exception is in the function's logs)"
)


@dataclass(frozen=True)
class PoisonMessage:
    """One message in a ``-poison`` queue, unwrapped."""

    message_id: str
    body: str
    """The original body, as the queue's trigger should see it."""
    note: Mapping[str, Any] | None
    """prepost's parking note (``queue``, ``reason``, ``at``); None when the host poisoned it."""
    inserted_on: datetime | None = None
    pop_receipt: str | None = None

    @property
    def parked(self) -> bool:
        return self.note is not None

    @property
    def reason(self) -> str:
        if self.note is None:
            return HOST_POISON_REASON
        return f"parked by prepost: {self.note.get('reason') or '(no reason given)'}"

    @property
    def poisoned_at(self) -> str:
        if self.note and self.note.get("at"):
            return str(self.note["at"])
        return format_time(self.inserted_on) if self.inserted_on else "-"


MessageOutcome = ReplayOutcome
"""Kept under its former name: a poison message is replayed, would be, or failed."""

PoisonResult = ReplayResult[PoisonMessage]


@dataclass
class PoisonReplay(ReplaySummary[PoisonMessage]):
    """What :func:`replay_poison` did."""

    remaining: int | None = None
    """Messages left in the poison queue afterwards (approximate, as Storage counts them)."""


@dataclass(frozen=True)
class PoisonSummary:
    """Counts and reasons of one poison queue, for ``prepost poison list``."""

    queue: str
    poison_queue: str
    count: int
    reasons: dict[str, int]
    """Reason -> how many of the peeked messages (at most 32) have it."""
    peeked: int
    exists: bool = True


def decode_queue_text(raw: str | bytes) -> str:
    """The text of a Storage queue message: base64-decoded when it is base64 of UTF-8 text.

    The host writes base64 (host.json ``messageEncoding``); a message someone added by hand as
    plain text is returned as it is, so nothing is lost by reading it.
    """
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        decoded = base64.b64decode(text.strip(), validate=True)
        return decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        return text


def poison_message(
    raw_content: str | bytes,
    *,
    message_id: str = "",
    inserted_on: datetime | None = None,
    pop_receipt: str | None = None,
) -> PoisonMessage:
    """Unwrap the raw content of a poison-queue message into its original body and note."""
    body, note = unpark(decode_queue_text(raw_content))
    return PoisonMessage(message_id, body, note, inserted_on, pop_receipt)


def describe_body(body: str) -> str:
    """One line that says what a work message is: kind, run, phase, action, target."""
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        flat = " ".join(body.split())
        return f"(not a work message) {flat[:60]}{'...' if len(flat) > 60 else ''}"
    parts = [str(value.get("kind") or "(no kind)"), str(value.get("run_key") or "(no run)")]
    for key in ("phase", "action"):
        if value.get(key):
            parts.append(str(value[key]))
    target = value.get("target")
    if isinstance(target, str) and target:
        parts.append(target.rstrip("/").rsplit("/", 1)[-1])
    if isinstance(value.get("attempt"), int) and value["attempt"] > 1:
        parts.append(f"attempt {value['attempt']}")
    return " ".join(parts)


def peek_poison(poison: QueueClient, *, limit: int = PEEK_LIMIT) -> list[PoisonMessage]:
    """Up to ``limit`` (at most 32) messages of a poison queue, without changing anything.

    ``poison`` must not decode messages itself (no base64 decode policy): bodies are decoded
    here so that a message that is not base64 can still be read.
    """
    messages = poison.peek_messages(max_messages=max(1, min(limit, PEEK_LIMIT)))
    return [poison_message(m.content, message_id=m.id, inserted_on=m.inserted_on) for m in messages]


def poison_queue_clients(storage: StorageClients, queue: QueueName) -> tuple[QueueClient, QueueClient]:
    """``<queue>-poison`` read raw (bodies are decoded here) and ``queue`` writing base64."""
    return storage.queue_service.get_queue_client(queue.poison), storage.queue(queue)


def approximate_count(queue: QueueClient) -> int:
    """Storage's approximate message count (includes messages that are invisible for now)."""
    return int(queue.get_queue_properties().approximate_message_count or 0)


def replay_poison(
    poison: QueueClient,
    target: QueueClient,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    report: Callable[[PoisonResult], None] = lambda result: None,
) -> PoisonReplay:
    """Send poison messages back to their queue; delete each only after its send succeeded.

    Args:
        poison: the ``<queue>-poison`` client, without a decode policy (see :func:`peek_poison`).
        target: the work queue's client, encoding base64 as the Functions host expects.
        dry_run: only peek (at most 32 messages) and report; change nothing.
        limit: replay at most this many messages.
        report: called with each result as it happens, so a long replay shows progress.

    At most the number of messages present at the start is taken, so a message that fails
    again and returns to the poison queue during the replay is not picked up a second time.
    A failed send makes the message visible again at once and stops the replay (the same
    failure would repeat for every message); it stays in the poison queue.

    Raises:
        azure.core.exceptions.AzureError: reading or deleting from the poison queue failed.
    """
    summary = PoisonReplay(queue=target.queue_name)
    present = approximate_count(poison)
    if dry_run:
        for message in peek_poison(poison, limit=PEEK_LIMIT if limit is None else limit):
            summary.record(ReplayResult(message, ReplayOutcome.WOULD_REPLAY), report)
        summary.remaining = present
        return summary
    budget = present if limit is None else min(present, limit)
    while budget > 0:
        batch = list(
            poison.receive_messages(max_messages=min(budget, PEEK_LIMIT), visibility_timeout=RECEIVE_VISIBILITY_SECONDS)
        )
        if not batch:
            break
        for index, received in enumerate(batch):
            message = poison_message(
                received.content,
                message_id=received.id,
                inserted_on=received.inserted_on,
                pop_receipt=received.pop_receipt,
            )
            result = _replay_one(poison, target, message)
            summary.record(result, report)
            if result.outcome is ReplayOutcome.FAILED:
                _release(poison, [(m.id, m.pop_receipt) for m in batch[index + 1 :]])
                summary.remaining = approximate_count(poison)
                return summary
        budget -= len(batch)
    summary.remaining = approximate_count(poison)
    return summary


def _replay_one(poison: QueueClient, target: QueueClient, message: PoisonMessage) -> PoisonResult:
    from azure.core.exceptions import AzureError

    try:
        # Never expire, as the transport sends: a replayed message must not silently vanish.
        target.send_message(message.body, time_to_live=-1)
    except AzureError as error:
        _release(poison, [(message.message_id, message.pop_receipt)])
        return ReplayResult(message, ReplayOutcome.FAILED, f"send to {target.queue_name} failed: {error}")
    poison.delete_message(message.message_id, message.pop_receipt)
    return ReplayResult(message, ReplayOutcome.REPLAYED)


def _release(poison: QueueClient, receipts: Sequence[tuple[str, str | None]]) -> None:
    """Make received messages visible again now instead of after the receive's timeout."""
    from azure.core.exceptions import AzureError

    for message_id, pop_receipt in receipts:
        # If this fails too, the message becomes visible by itself when the receive's timeout ends.
        with contextlib.suppress(AzureError):
            poison.update_message(message_id, pop_receipt, visibility_timeout=0)


def summarize_poison(queue_name: str, poison: QueueClient) -> PoisonSummary:
    """Count a poison queue and tally the reasons of its first (up to 32) messages."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        count = approximate_count(poison)
    except ResourceNotFoundError:
        return PoisonSummary(queue_name, poison.queue_name, 0, {}, 0, exists=False)
    messages = peek_poison(poison) if count else []
    reasons: dict[str, int] = {}
    for message in messages:
        reasons[message.reason] = reasons.get(message.reason, 0) + 1
    return PoisonSummary(queue_name, poison.queue_name, count, reasons, len(messages))
