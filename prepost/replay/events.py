"""Dead-lettered Event Grid events (Blob): back to the intake's webhook.

Event Grid writes events it could not deliver as blobs holding a JSON array, each event with its
original fields plus ``deadLetterReason``, ``deliveryAttempts``, ``lastDeliveryOutcome``,
``lastHttpStatusCode``, ``publishTime`` and ``lastDeliveryAttemptTime`` (all lower case in the
CloudEvents schema), under
``<container>/<SUBSCRIPTION NAME IN UPPER CASE>/<yyyy>/<M>/<d>/<H>/<guid>.json`` (date parts not
zero-padded; https://learn.microsoft.com/azure/event-grid/manage-event-delivery,
https://learn.microsoft.com/azure/event-grid/delivery-and-retry). Some topics put the topic's
name before the subscription's, so every blob in the container is read except
``replayed/...``. :func:`replay_dead_letter_blobs` strips those fields, delivers each blob's
events as Event Grid would, and after a successful delivery moves the blob to ``replayed/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prepost.replay.result import ReplayOutcome, ReplayResult
from shared.clock import utcnow
from shared.models.events import format_time

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

    from prepost.local.delivery import DeliveryResult
    from shared.settings import StorageConnection

__all__ = [
    "DEAD_LETTER_FIELDS",
    "REPLAYED_PREFIX",
    "BlobOutcome",
    "BlobReplay",
    "DeadLetterBlob",
    "DeadLetterFormatError",
    "DeadLetteredEvent",
    "blob_container",
    "deliverer",
    "describe_delivery",
    "list_dead_letter_blobs",
    "parse_dead_letter_events",
    "read_dead_letter_file",
    "redact_url",
    "replay_dead_letter_blobs",
    "strip_dead_letter_fields",
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


BlobOutcome = ReplayOutcome
"""Kept under its former name: a blob is replayed, would be, undeliverable, unreadable or not moved."""


@dataclass(frozen=True)
class DeadLetterBlob:
    """One dead-letter blob: its name and the events read from it (none when unreadable)."""

    name: str
    events: list[DeadLetteredEvent] = field(default_factory=list)


BlobReplay = ReplayResult[DeadLetterBlob]


def blob_container(connection: StorageConnection, name: str) -> ContainerClient:
    """A client for one blob container: by connection string, or by account with Entra ID.

    With the same short retries as the queue and table clients (``RetrySettings``): the blob
    SDK's default exponential retry keeps an operator waiting about 80 s before it says that
    the account cannot be reached.
    """
    from azure.storage.blob import BlobServiceClient, LinearRetry

    from shared.adapters.storage_clients import RetrySettings

    settings = RetrySettings()
    options: dict[str, Any] = {
        "retry_policy": LinearRetry(
            backoff=2 * settings.backoff_seconds,  # type: ignore[arg-type]  # floats work
            retry_total=settings.total,
            random_jitter_range=settings.backoff_seconds / 2,  # type: ignore[arg-type]
        ),
        "connection_timeout": settings.connection_timeout_seconds,
        "read_timeout": settings.read_timeout_seconds,
    }
    if connection.connection_string:
        service = BlobServiceClient.from_connection_string(connection.connection_string, **options)
    else:
        from azure.identity import DefaultAzureCredential

        service = BlobServiceClient(connection.service_url("blob"), credential=DefaultAzureCredential(), **options)
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
        return ReplayResult(DeadLetterBlob(name), ReplayOutcome.UNREADABLE, str(error))
    blob = DeadLetterBlob(name, events)
    if dry_run:
        return ReplayResult(blob, ReplayOutcome.WOULD_REPLAY)
    if events:
        result = deliver([event.event for event in events])
        if not result.ok:
            return ReplayResult(blob, ReplayOutcome.DELIVERY_FAILED, describe_delivery(result))
    try:
        _move_to_replayed(container, name, content, destination=destination)
    except Exception as error:  # delivered: say so, and that the blob is still there
        return ReplayResult(blob, ReplayOutcome.MOVE_FAILED, f"{type(error).__name__}: {error}")
    return ReplayResult(blob, ReplayOutcome.REPLAYED)


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
