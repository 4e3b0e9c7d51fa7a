"""What happens to a Service Bus message after its handler ran: the settlement decision.

prepost uses the classic Python Service Bus trigger (``func.ServiceBusMessage``,
``autoCompleteMessages: true``): the Functions host completes the message when the function
returns and abandons it when the function raises. The Python code cannot settle the message
itself (the SDK-type binding that can is a preview package; see docs/servicebus.md for the
decision). Two host behaviours are wrong for prepost, so the trigger adapter never lets an
error escape unless the settlement itself failed:

- an abandoned message is redelivered **at once**, with no backoff, until ``MaxDeliveryCount``
  (https://learn.microsoft.com/azure/azure-functions/functions-bindings-service-bus-trigger#peeklock-behavior):
  a transient failure would be hammered ten times in a few seconds;
- a permanent failure would burn all ten deliveries before the broker dead-letters it.

So, for a message whose handler raised:

- **transient** (or unknown) and attempts left → :class:`Abandon` with a backoff delay: the
  settler schedules a copy of the same body ``retry_after`` from now (a new ``MessageId``, a
  retry counter in its application properties) and returns, so the host completes the original;
- **permanent** (:class:`~shared.errors.InvalidMessage`, :class:`~shared.errors.PermanentError`),
  or any error on the last allowed attempt → :class:`DeadLetter` with a readable reason: the
  settler parks the body in the queue's ``<queue>-poison`` Storage queue (the same place the
  Storage transport's poison messages go) and returns.

If the settler itself fails (Service Bus or Storage down), its error is raised: the host
abandons the message, and after ``MaxDeliveryCount`` deliveries Service Bus moves it to the
queue's own dead-letter sub-queue. Nothing is lost or swallowed.

:func:`decide_settlement` is pure; :class:`ClassicBindingSettler` carries the decision out;
:func:`process_delivery` is the one call a trigger adapter makes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from shared.clock import utcnow
from shared.errors import (
    InvalidEvent,
    InvalidMessage,
    MalformedPayload,
    PermanentError,
    TransientError,
    UnsupportedEventType,
)
from shared.models.retry import DEFAULT_RETRY, RetryPolicy
from shared.names import QueueName

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusMessage

__all__ = [
    "DEFAULT_MAX_DELIVERY_COUNT",
    "ORIGINAL_ID_PROPERTY",
    "RETRY_PROPERTY",
    "Abandon",
    "AttemptInfo",
    "ClassicBindingSettler",
    "Complete",
    "DeadLetter",
    "DeadLetterReason",
    "Parking",
    "ReceivedDelivery",
    "Resender",
    "Settlement",
    "SettlementPolicy",
    "Settler",
    "decide_settlement",
    "is_permanent",
    "process_delivery",
    "retry_copy",
    "retry_message_id",
    "schedule_retry",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_DELIVERY_COUNT = 10
"""The queues' ``MaxDeliveryCount`` (infra and the emulator config): on that delivery the broker
would dead-letter the message itself after one more abandon, so prepost decides first."""

RETRY_PROPERTY = "prepostRetry"
"""Application property counting the scheduled re-sends of a body (absent on the first send)."""

ORIGINAL_ID_PROPERTY = "prepostOriginalMessageId"
"""Application property carrying the first send's ``MessageId`` on every re-send."""

MAX_DESCRIPTION_LENGTH = 1024
"""Dead-letter descriptions are for people: long enough for an error message, short enough to
read in a log line or a queue viewer."""


class DeadLetterReason(str, Enum):
    """Why a message was taken out of circulation; written first in the parked reason."""

    INVALID_MESSAGE = "InvalidMessage"
    PERMANENT_ERROR = "PermanentError"
    MAX_ATTEMPTS_EXCEEDED = "MaxAttemptsExceeded"


@dataclass(frozen=True)
class Complete:
    """Done (or nothing more to do): let the host complete the message."""


@dataclass(frozen=True)
class Abandon:
    """Transient failure: try again after ``retry_after``.

    Named after the broker's abandon (the message is retried), but carried out as "complete
    and schedule a copy", because an abandon would be redelivered at once, with no backoff.
    """

    retry_after: timedelta
    detail: str = ""


@dataclass(frozen=True)
class DeadLetter:
    """Permanent failure: take the message out of circulation with a readable reason."""

    reason: DeadLetterReason
    description: str

    @property
    def text(self) -> str:
        """``Reason: description``, the form written next to the parked body."""
        return f"{self.reason.value}: {self.description}"


Settlement = Complete | Abandon | DeadLetter


@dataclass(frozen=True)
class ReceivedDelivery:
    """One delivery of a Service Bus message, independent of the binding that received it."""

    body: bytes
    message_id: str | None = None
    delivery_count: int = 1
    """How many times the broker delivered *this* message (1 on the first delivery)."""
    application_properties: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    content_type: str | None = None
    subject: str | None = None

    @property
    def retries(self) -> int:
        """How many scheduled re-sends came before this message (0 for the first send)."""
        raw = self.application_properties.get(RETRY_PROPERTY, 0)
        try:
            return max(int(raw), 0)
        except (TypeError, ValueError):
            return 0

    @property
    def attempt(self) -> int:
        """Which attempt at this body this delivery is, counting re-sends and redeliveries."""
        return self.retries + max(self.delivery_count, 1)

    @property
    def original_message_id(self) -> str | None:
        """The first send's ``MessageId``, whichever re-send this is."""
        original = self.application_properties.get(ORIGINAL_ID_PROPERTY)
        return str(original) if original else self.message_id

    @classmethod
    def from_trigger(cls, message: Any) -> ReceivedDelivery:
        """From the classic binding's ``func.ServiceBusMessage`` (or anything shaped like it).

        Extension 5.x fills ``application_properties``; older hosts only ``user_properties``:
        both are read, the former winning.
        """
        from shared.adapters.servicebus_transport import plain_properties

        body = message.get_body()
        properties = {
            **plain_properties(getattr(message, "user_properties", None)),
            **plain_properties(getattr(message, "application_properties", None)),
        }
        return cls(
            body=body if isinstance(body, bytes) else str(body).encode("utf-8"),
            message_id=getattr(message, "message_id", None),
            delivery_count=int(getattr(message, "delivery_count", None) or 1),
            application_properties=properties,
            content_type=getattr(message, "content_type", None),
            subject=getattr(message, "subject", None) or getattr(message, "label", None),
        )

    @classmethod
    def from_received_message(cls, message: Any) -> ReceivedDelivery:
        """From the SDK-type binding's ``azure.servicebus.ServiceBusReceivedMessage``.

        Received property keys and string values are bytes (see ``plain_properties``).
        """
        from shared.adapters.servicebus_transport import plain_properties, received_body

        return cls(
            body=received_body(message),
            message_id=message.message_id,
            delivery_count=int(message.delivery_count or 1),
            application_properties=plain_properties(message.application_properties),
            content_type=message.content_type,
            subject=message.subject,
        )


@dataclass(frozen=True)
class AttemptInfo:
    """Which attempt this is and how many are allowed, for handlers that act on the last one.

    Same fields as ``shared.usecases.task_runner.Delivery``: build that from these two.
    """

    count: int
    max_count: int

    @property
    def is_last(self) -> bool:
        return self.count >= self.max_count


@dataclass(frozen=True)
class SettlementPolicy:
    """The limits :func:`decide_settlement` applies: the app's one retry policy, and the queue's
    own delivery limit."""

    retry: RetryPolicy = DEFAULT_RETRY
    """Attempts at one body, re-sends included, and the waits between them."""
    max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT
    """The queue's ``MaxDeliveryCount``."""

    def __post_init__(self) -> None:
        if self.max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1")

    @property
    def max_attempts(self) -> int:
        return self.retry.max_attempts

    def is_last(self, delivery: ReceivedDelivery) -> bool:
        """No attempt will follow this one if it fails."""
        return delivery.attempt >= self.max_attempts or delivery.delivery_count >= self.max_delivery_count

    def attempt_info(self, delivery: ReceivedDelivery) -> AttemptInfo:
        """``count``/``max_count`` such that ``is_last`` agrees with :meth:`is_last`."""
        if self.is_last(delivery):
            return AttemptInfo(count=max(delivery.attempt, self.max_attempts), max_count=self.max_attempts)
        return AttemptInfo(count=delivery.attempt, max_count=self.max_attempts)


def is_permanent(error: BaseException) -> bool:
    """True when retrying cannot help: the message or the request itself is wrong.

    Everything else, including errors prepost did not anticipate, is retried a bounded number
    of times: an unknown error may be an outage, and the last attempt parks it anyway.
    """
    if isinstance(error, TransientError):
        return False
    return isinstance(error, InvalidMessage | PermanentError | InvalidEvent | UnsupportedEventType | MalformedPayload)


def decide_settlement(
    error: BaseException | None,
    delivery_count: int,
    *,
    retries: int = 0,
    policy: SettlementPolicy | None = None,
    key: str = "",
) -> Settlement:
    """Decide what to do with a message whose handler finished (``error=None``) or raised.

    Args:
        error: what the handler raised, or None.
        delivery_count: the broker's delivery count of this message (1 on the first delivery).
        retries: scheduled re-sends before this message (:attr:`ReceivedDelivery.retries`).
        policy: the attempt limits and the backoff (default: :class:`SettlementPolicy()`).
        key: a stable key of the message (its original id) to spread backoff delays.

    Returns:
        :class:`Complete` on success; :class:`DeadLetter` for a permanent error or any error on
        the last attempt; otherwise :class:`Abandon` with the delay before the next attempt.
    """
    if error is None:
        return Complete()
    policy = policy or SettlementPolicy()
    description = _describe(error)
    if isinstance(error, InvalidMessage):
        # The reason already names the error type; the description says what was wrong.
        return DeadLetter(DeadLetterReason.INVALID_MESSAGE, _truncate(str(error)) or description)
    if is_permanent(error):
        return DeadLetter(DeadLetterReason.PERMANENT_ERROR, description)
    delivery_count = max(delivery_count, 1)
    attempt = max(retries, 0) + delivery_count
    if attempt >= policy.max_attempts or delivery_count >= policy.max_delivery_count:
        return DeadLetter(
            DeadLetterReason.MAX_ATTEMPTS_EXCEEDED,
            _truncate(f"gave up after attempt {attempt} (delivery {delivery_count}): {description}"),
        )
    retry_after = error.retry_after if isinstance(error, TransientError) else None
    return Abandon(retry_after=policy.retry.delay(attempt, key=key, retry_after=retry_after), detail=description)


def retry_message_id(original_id: str, retry: int) -> str:
    """The ``MessageId`` of re-send number ``retry`` of ``original_id``.

    Deterministic, so if the re-send succeeds but the original is redelivered anyway (the host's
    complete failed), the second re-send carries the same id and duplicate detection drops it.
    """
    from shared.adapters.servicebus_transport import servicebus_message_id

    return servicebus_message_id(f"{original_id}:retry:{retry}")


class Resender(Protocol):
    """Sends ready-made Service Bus messages (``ServiceBusTransport`` is one)."""

    def send_servicebus_messages(self, queue_name: str, messages: Sequence[ServiceBusMessage]) -> None: ...


class Parking(Protocol):
    """Keeps an unusable body with its reason where an operator looks (``<queue>-poison``)."""

    def park(self, queue: QueueName, body: str | bytes, reason: str) -> None: ...


class Settler(Protocol):
    """Carries out a :data:`Settlement` for one delivery."""

    def settle(self, queue: QueueName, delivery: ReceivedDelivery, settlement: Settlement) -> None: ...


def retry_copy(delivery: ReceivedDelivery, retry_after: timedelta, *, now: datetime) -> ServiceBusMessage:
    """The scheduled copy of ``delivery`` for the next attempt (body and properties kept)."""
    from azure.servicebus import ServiceBusMessage

    retry = delivery.retries + 1
    original = delivery.original_message_id or _body_id(delivery.body)
    properties: dict[str | bytes, Any] = {
        **dict(delivery.application_properties),
        RETRY_PROPERTY: retry,
        ORIGINAL_ID_PROPERTY: original,
    }
    return ServiceBusMessage(
        delivery.body,
        message_id=retry_message_id(original, retry),
        application_properties=properties,
        content_type=delivery.content_type,
        subject=delivery.subject,
        scheduled_enqueue_time_utc=now + retry_after,
    )


def schedule_retry(
    resender: Resender, queue: QueueName, delivery: ReceivedDelivery, settlement: Abandon, *, now: datetime
) -> ServiceBusMessage:
    """Send the scheduled copy that carries out an :class:`Abandon`; return it.

    Called before the original is completed: if completing fails, the redelivered original
    sends the same ``MessageId`` again and duplicate detection drops it.
    """
    copy = retry_copy(delivery, settlement.retry_after, now=now)
    resender.send_servicebus_messages(queue.value, [copy])
    log.warning(
        "message %s on %s failed (%s); attempt %d scheduled in %d s as %s",
        delivery.message_id,
        queue.value,
        settlement.detail,
        delivery.attempt + 1,
        int(settlement.retry_after.total_seconds()),
        copy.message_id,
    )
    return copy


class ClassicBindingSettler:
    """Carries out a :data:`Settlement` for the classic binding (the host completes on return).

    - :class:`Complete`: nothing to do.
    - :class:`Abandon`: schedule a copy of the body ``retry_after`` from now on the same queue,
      with :data:`RETRY_PROPERTY` + 1 and a deterministic new ``MessageId``.
    - :class:`DeadLetter`: park the body in ``<queue>-poison`` with ``Reason: description``
      (the classic binding cannot dead-letter; ``PREPOST_SERVICEBUS_SETTLEMENT=explicit`` can).

    Raises whatever the resender or the parking raised, so the host abandons the message and
    Service Bus redelivers it (and dead-letters it after ``MaxDeliveryCount``).
    """

    def __init__(self, *, resender: Resender, parking: Parking, clock: Callable[[], datetime] = utcnow) -> None:
        self.resender = resender
        self.parking = parking
        self._clock = clock

    def settle(self, queue: QueueName, delivery: ReceivedDelivery, settlement: Settlement) -> None:
        if isinstance(settlement, Complete):
            return
        if isinstance(settlement, Abandon):
            schedule_retry(self.resender, queue, delivery, settlement, now=self._clock())
            return
        if isinstance(settlement, DeadLetter):
            log.error(
                "message %s on %s parked in %s: %s",
                delivery.message_id,
                queue.value,
                queue.poison,
                settlement.text,
            )
            self.parking.park(queue, delivery.body, settlement.text)
            return
        raise TypeError(f"not a settlement: {settlement!r}")


def process_delivery(
    queue: QueueName,
    delivery: ReceivedDelivery,
    handle: Callable[[ReceivedDelivery], None],
    *,
    settler: Settler,
    policy: SettlementPolicy | None = None,
) -> Settlement:
    """Run ``handle`` for one delivery, then settle it; the trigger adapter's only call.

    ``handle`` decodes and dispatches the body (it raises to report a failure). Its error is
    not re-raised: the settlement decides and ``settler`` carries it out. Only a failure of the
    settlement itself escapes (the host then abandons the message, or its lock expires).
    """
    policy = policy or SettlementPolicy()
    error: BaseException | None = None
    try:
        handle(delivery)
    except Exception as caught:  # every failure is settled below, none is swallowed
        error = caught
        log.warning("handler failed for %s on %s: %s", delivery.message_id, queue.value, caught, exc_info=True)
    settlement = decide_settlement(
        error,
        delivery.delivery_count,
        retries=delivery.retries,
        policy=policy,
        key=delivery.original_message_id or "",
    )
    settler.settle(queue, delivery, settlement)
    return settlement


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return _truncate(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION_LENGTH else text[: MAX_DESCRIPTION_LENGTH - 1] + "…"


def _body_id(body: bytes) -> str:
    """An id for a message that arrived without one (never the case for prepost's own sends)."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
