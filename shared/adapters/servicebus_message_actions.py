"""Explicit settlement through the SDK-type binding's ``ServiceBusMessageActions``.

With ``PREPOST_SERVICEBUS_SETTLEMENT=explicit`` (an opt-in) the Service Bus triggers bind to
``azure.servicebus.ServiceBusReceivedMessage`` with ``autoCompleteMessages: false``, and the
function settles every message itself through the Functions host (gRPC, the host's own
receiver, so the lock is the one the host holds):

- :class:`~shared.adapters.servicebus_settlement.Complete` → ``complete``;
- :class:`~shared.adapters.servicebus_settlement.Abandon` → schedule a copy with backoff, then
  ``complete`` (a broker abandon would redeliver at once, with no backoff);
- :class:`~shared.adapters.servicebus_settlement.DeadLetter` → ``deadletter`` with
  ``DeadLetterReason`` and ``DeadLetterErrorDescription`` set, on the first delivery: the message
  lands in ``<queue>/$deadletterqueue`` where operators and ``prepost`` look for it.

If a settlement call fails, its error is raised: the function fails, the host abandons the
message (or its lock expires) and Service Bus delivers it again; after ``MaxDeliveryCount`` the
broker dead-letters it itself. Nothing is left unsettled silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from shared.adapters.servicebus_settlement import (
    Abandon,
    Complete,
    DeadLetter,
    ReceivedDelivery,
    Resender,
    Settlement,
    schedule_retry,
)
from shared.clock import utcnow
from shared.names import QueueName

__all__ = ["ExplicitSettler", "MessageActions"]

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 128
"""``DeadLetterReason`` is a short code; the details go in the description."""


class MessageActions(Protocol):
    """What prepost uses of ``azurefunctions.extensions.bindings.servicebus.ServiceBusMessageActions``."""

    def complete(self, message: Any) -> None: ...

    def deadletter(
        self,
        message: Any,
        properties_to_modify: bytes = b"",
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None: ...


class ExplicitSettler:
    """Settles one received message through the host's message actions.

    Built per delivery: it holds the received message whose lock token the host settles.
    """

    def __init__(
        self,
        *,
        actions: MessageActions,
        message: Any,
        resender: Resender,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.actions = actions
        self.message = message
        self.resender = resender
        self._clock = clock

    def settle(self, queue: QueueName, delivery: ReceivedDelivery, settlement: Settlement) -> None:
        if isinstance(settlement, Complete):
            self.actions.complete(self.message)
            return
        if isinstance(settlement, Abandon):
            # Copy first, complete second: a failed complete redelivers the original, whose
            # copy has the same MessageId and is dropped by duplicate detection.
            schedule_retry(self.resender, queue, delivery, settlement, now=self._clock())
            self.actions.complete(self.message)
            return
        if isinstance(settlement, DeadLetter):
            log.error(
                "message %s on %s dead-lettered: %s",
                delivery.message_id,
                queue.value,
                settlement.text,
            )
            self.actions.deadletter(
                self.message,
                deadletter_reason=settlement.reason.value[:MAX_REASON_LENGTH],
                deadletter_error_description=settlement.description,
            )
            return
        raise TypeError(f"not a settlement: {settlement!r}")
