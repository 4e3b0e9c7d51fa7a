"""Operator replay: poison-queue messages back to their queue, dead-lettered events back to the intake.

Both are safe to repeat because every handler is idempotent: runs and phases are created only
if absent, task messages have deterministic ids and their results live in
``PrepostIdempotency``, outcomes for finished tasks are ignored, snapshots have deterministic
names. Replaying does not bypass any check: a message still wrong is parked again, an event
still invalid is recorded as rejected again.

Poison queues (Storage): the Functions host moves a message to ``<queue>-poison`` after
``maxDequeueCount`` failed deliveries, with the original body (base64, like every message on
these queues). prepost itself parks a message that can never succeed at once, wrapped with a
reason (:mod:`shared.adapters.parking`). :func:`replay_poison` sends the original body back and
deletes the poison copy only after the send succeeded.

Dead-lettered events (Blob): Event Grid writes events it could not deliver as blobs holding a
JSON array, each event with its original fields plus ``deadLetterReason``, ``deliveryAttempts``,
``lastDeliveryOutcome``, ``lastHttpStatusCode``, ``publishTime`` and
``lastDeliveryAttemptTime`` (all lower case in the CloudEvents schema), under
``<container>/<SUBSCRIPTION NAME IN UPPER CASE>/<yyyy>/<M>/<d>/<H>/<guid>.json`` (date parts not
zero-padded; https://learn.microsoft.com/azure/event-grid/manage-event-delivery,
https://learn.microsoft.com/azure/event-grid/delivery-and-retry). Some topics put the topic's
name before the subscription's, so every blob in the container is read except
``replayed/...``. :func:`replay_dead_letter_blobs` strips those fields, delivers each blob's
events as Event Grid would, and after a successful delivery moves the blob to ``replayed/``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from shared.adapters.parking import unpark
from shared.clock import utcnow
from shared.models.events import format_time
from shared.names import STORAGE_MAX_DEQUEUE_COUNT, QueueName

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient
    from azure.storage.queue import QueueClient

    from prepost.local.delivery import DeliveryResult
    from shared.adapters.storage_clients import StorageClients
    from shared.settings import StorageConnection

__all__ = [
    "DEAD_LETTER_FIELDS",
    "REPLAYED_PREFIX",
    "BlobOutcome",
    "BlobReplay",
    "DeadLetterFormatError",
    "DeadLetteredEvent",
    "MessageOutcome",
    "PoisonMessage",
    "PoisonReplay",
    "PoisonResult",
    "PoisonSummary",
    "blob_container",
    "decode_queue_text",
    "deliverer",
    "describe_body",
    "describe_delivery",
    "list_dead_letter_blobs",
    "parse_dead_letter_events",
    "peek_poison",
    "poison_queue_clients",
    "poison_message",
    "read_dead_letter_file",
    "redact_url",
    "replay_dead_letter_blobs",
    "replay_poison",
    "strip_dead_letter_fields",
    "summarize_poison",
]

DEAD_LETTER_FIELDS = frozenset(
    {
        "deadletterreason",
        "deliveryattempts",
        "lastdeliveryoutcome",
        "lasthttpstatuscode",
        "publishtime",
        "lastdeliveryattempttime",
    }
)
"""What Event Grid adds to a dead-lettered event, lower-cased (CloudEvents spells them so;
the Event Grid schema uses camelCase). Compared case-insensitively."""

REPLAYED_PREFIX = "replayed/"
"""Where a replayed dead-letter blob is moved, so nothing is replayed twice by accident."""

PEEK_LIMIT = 32
"""The most messages one peek or receive returns (a Storage queue limit)."""

RECEIVE_VISIBILITY_SECONDS = 60
"""How long a received poison message stays hidden while it is sent back."""

HOST_POISON_REASON = (
    f"poisoned by the Functions host after {STORAGE_MAX_DEQUEUE_COUNT} failed deliveries "
    "(the exception is in the function's logs)"
)


# -- poison queues ----------------------------------------------------------------------


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


class MessageOutcome(str, Enum):
    REPLAYED = "replayed"
    WOULD_REPLAY = "would replay"
    FAILED = "failed"


@dataclass(frozen=True)
class PoisonResult:
    message: PoisonMessage
    outcome: MessageOutcome
    detail: str = ""


@dataclass
class PoisonReplay:
    """What :func:`replay_poison` did."""

    queue: str
    results: list[PoisonResult] = field(default_factory=list)
    remaining: int | None = None
    """Messages left in the poison queue afterwards (approximate, as Storage counts them)."""

    def count(self, outcome: MessageOutcome) -> int:
        return sum(1 for result in self.results if result.outcome is outcome)

    @property
    def ok(self) -> bool:
        return self.count(MessageOutcome.FAILED) == 0


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
            _record(summary, report, PoisonResult(message, MessageOutcome.WOULD_REPLAY))
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
            _record(summary, report, result)
            if result.outcome is MessageOutcome.FAILED:
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
        return PoisonResult(message, MessageOutcome.FAILED, f"send to {target.queue_name} failed: {error}")
    poison.delete_message(message.message_id, message.pop_receipt)
    return PoisonResult(message, MessageOutcome.REPLAYED)


def _release(poison: QueueClient, receipts: Sequence[tuple[str, str | None]]) -> None:
    """Make received messages visible again now instead of after the receive's timeout."""
    from azure.core.exceptions import AzureError

    for message_id, pop_receipt in receipts:
        # If this fails too, the message becomes visible by itself when the receive's timeout ends.
        with contextlib.suppress(AzureError):
            poison.update_message(message_id, pop_receipt, visibility_timeout=0)


def _record(summary: PoisonReplay, report: Callable[[PoisonResult], None], result: PoisonResult) -> None:
    summary.results.append(result)
    report(result)


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


# -- dead-lettered events -------------------------------------------------------------


class DeadLetterFormatError(ValueError):
    """A dead-letter blob or file that is not a JSON array of event objects."""


@dataclass(frozen=True)
class DeadLetteredEvent:
    """One event as Event Grid dead-lettered it: the original event and why it was given up."""

    event: dict[str, Any]
    """The event with the dead-letter fields removed, ready to deliver again."""
    facts: dict[str, Any]
    """The removed fields, keyed as Event Grid wrote them."""

    def _fact(self, name: str) -> Any:
        for key, value in self.facts.items():
            if key.lower() == name.lower():
                return value
        return None

    @property
    def reason(self) -> str:
        reason = self._fact("deadLetterReason") or "(no deadLetterReason)"
        details = []
        if self._fact("deliveryAttempts") is not None:
            details.append(f"{self._fact('deliveryAttempts')} attempts")
        outcome = self._fact("lastDeliveryOutcome")
        status = self._fact("lastHttpStatusCode")
        if outcome or status:
            details.append("last: " + " ".join(str(part) for part in (outcome, status) if part))
        if self._fact("lastDeliveryAttemptTime"):
            details.append(f"at {self._fact('lastDeliveryAttemptTime')}")
        return f"{reason} ({', '.join(details)})" if details else str(reason)

    def describe(self) -> str:
        """Event type and run (or id): what the operator needs to recognise it."""
        fields = {str(key).lower(): value for key, value in self.event.items()}
        event_type = fields.get("eventtype") or fields.get("type") or "(no type)"
        data = fields.get("data")
        correlation = None
        if isinstance(data, Mapping):
            correlation = next((v for k, v in data.items() if str(k).lower() == "correlationid"), None)
        return f"{event_type} {correlation or fields.get('id') or '(no id)'}"


def strip_dead_letter_fields(raw: Mapping[str, Any]) -> DeadLetteredEvent:
    """Split a dead-lettered event into the original event and the fields Event Grid added."""
    event = {key: value for key, value in raw.items() if str(key).lower() not in DEAD_LETTER_FIELDS}
    facts = {key: value for key, value in raw.items() if str(key).lower() in DEAD_LETTER_FIELDS}
    return DeadLetteredEvent(event, facts)


def parse_dead_letter_events(content: str | bytes) -> list[DeadLetteredEvent]:
    """The events of one dead-letter blob (a JSON array; a single object is accepted too).

    Raises:
        DeadLetterFormatError: not JSON, or not an array of objects.
    """
    try:
        value = json.loads(content)
    except (ValueError, UnicodeDecodeError) as error:
        raise DeadLetterFormatError(f"not JSON: {error}") from error
    events = [value] if isinstance(value, dict) else value
    if not isinstance(events, list) or not all(isinstance(item, dict) for item in events):
        raise DeadLetterFormatError("expected a JSON array of event objects")
    return [strip_dead_letter_fields(item) for item in events]


def read_dead_letter_file(path: str) -> list[DeadLetteredEvent]:
    """The events of a dead-letter blob saved as a file.

    Raises:
        OSError: the file cannot be read.
        DeadLetterFormatError: its content is not a JSON array of events.
    """
    with open(path, "rb") as handle:
        return parse_dead_letter_events(handle.read())


Deliver = Callable[[list[dict[str, Any]]], "DeliveryResult"]


def deliverer(url: str, *, timeout: float = 30.0, key: str | None = None) -> Deliver:
    """Deliver events to the Event Grid webhook at ``url`` (with its system ``key``, in a header);
    a connection failure is a failed result."""
    import requests

    from prepost.local.delivery import DeliveryResult, deliver

    def send(events: list[dict[str, Any]]) -> DeliveryResult:
        try:
            return deliver(url, events, timeout=timeout, key=key)
        except requests.RequestException as error:
            return DeliveryResult(0, f"{type(error).__name__}: {redact_url(str(error))}")

    return send


def redact_url(text: str) -> str:
    """``text`` with the value of every ``code=`` (function key) query parameter hidden.

    Applied to URLs before they are printed or recorded, and to error messages, which quote
    the URL they failed on.
    """
    return _FUNCTION_KEY.sub(r"\1***", text)


_FUNCTION_KEY = re.compile(r"(?i)([?&]code=)[^&#\s'\"]+")


def describe_delivery(result: DeliveryResult) -> str:
    """``HTTP <status> <body>``, or ``no answer: <error>`` when the webhook was not reached."""
    text = redact_url(" ".join(result.body.split()))[:300]
    return f"HTTP {result.status} {text}" if result.status else f"no answer: {text}"


class BlobOutcome(str, Enum):
    REPLAYED = "replayed"
    WOULD_REPLAY = "would replay"
    DELIVERY_FAILED = "delivery failed"
    UNREADABLE = "unreadable"
    MOVE_FAILED = "delivered, not moved"


@dataclass(frozen=True)
class BlobReplay:
    name: str
    outcome: BlobOutcome
    events: list[DeadLetteredEvent] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in (BlobOutcome.REPLAYED, BlobOutcome.WOULD_REPLAY)


def blob_container(connection: StorageConnection, name: str) -> ContainerClient:
    """A client for one blob container: by connection string, or by account with Entra ID."""
    from azure.storage.blob import BlobServiceClient

    if connection.connection_string:
        service = BlobServiceClient.from_connection_string(connection.connection_string)
    else:
        from azure.identity import DefaultAzureCredential

        service = BlobServiceClient(connection.service_url("blob"), credential=DefaultAzureCredential())
    return service.get_container_client(name)


def list_dead_letter_blobs(container: ContainerClient, *, prefix: str | None = None) -> list[str]:
    """Names of the dead-letter blobs not yet replayed, oldest first.

    Oldest by creation time, not by name: the date parts of the names are not zero-padded, so
    names do not sort by time.
    """
    blobs = [
        blob
        for blob in container.list_blobs(name_starts_with=prefix or None)
        if not blob.name.startswith(REPLAYED_PREFIX)
    ]
    return [blob.name for blob in sorted(blobs, key=_created)]


def _created(blob: Any) -> tuple[float, str]:
    moment = blob.creation_time or blob.last_modified
    return (moment.timestamp() if moment else 0.0, blob.name)


def replay_dead_letter_blobs(
    container: ContainerClient,
    deliver: Deliver,
    *,
    destination: str,
    dry_run: bool = False,
    prefix: str | None = None,
    report: Callable[[BlobReplay], None] = lambda result: None,
) -> list[BlobReplay]:
    """Deliver each dead-letter blob's events again and move the blob to ``replayed/``.

    One delivery per blob, with all its events, as Event Grid posts an array. A blob is moved
    only after the webhook answered 2xx; a failed delivery or an unreadable blob leaves it
    where it is, and the replay goes on with the next blob. ``destination`` is recorded on the
    moved blob (redacted: no function key).
    """
    results = []
    for name in list_dead_letter_blobs(container, prefix=prefix):
        result = _replay_blob(container, name, deliver, destination=destination, dry_run=dry_run)
        results.append(result)
        report(result)
    return results


def _replay_blob(
    container: ContainerClient, name: str, deliver: Deliver, *, destination: str, dry_run: bool
) -> BlobReplay:
    content = container.download_blob(name).readall()
    try:
        events = parse_dead_letter_events(content)
    except DeadLetterFormatError as error:
        return BlobReplay(name, BlobOutcome.UNREADABLE, detail=str(error))
    if dry_run:
        return BlobReplay(name, BlobOutcome.WOULD_REPLAY, events)
    if events:
        result = deliver([event.event for event in events])
        if not result.ok:
            return BlobReplay(name, BlobOutcome.DELIVERY_FAILED, events, describe_delivery(result))
    try:
        _move_to_replayed(container, name, content, destination=destination)
    except Exception as error:  # delivered: say so, and that the blob is still there
        return BlobReplay(name, BlobOutcome.MOVE_FAILED, events, f"{type(error).__name__}: {error}")
    return BlobReplay(name, BlobOutcome.REPLAYED, events)


def _move_to_replayed(container: ContainerClient, name: str, content: bytes, *, destination: str) -> None:
    """Copy the blob under ``replayed/`` (with when and where it went), then delete the original.

    A copy by upload rather than a server-side copy: dead-letter blobs are small, and an
    upload needs no SAS or second authorization for the source, whatever the credential.
    """
    from azure.storage.blob import ContentSettings

    container.upload_blob(
        REPLAYED_PREFIX + name,
        content,
        overwrite=True,
        content_settings=ContentSettings(content_type="application/json"),
        metadata={"prepost_replayed_at": format_time(utcnow()), "prepost_replayed_to": redact_url(destination)},
    )
    container.delete_blob(name)
