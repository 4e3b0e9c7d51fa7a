"""The work transport on Azure Storage queues.

Every message goes to the queue named by its class (``message.queue``), base64-encoded
because the Functions queue trigger expects base64. A delay is the message's initial
visibility timeout: the message is stored at once but nobody can receive it until then.
Messages never expire (``time_to_live=-1``): the default TTL is 7 days, and a delayed safety
message (the pre-deadline check, the post fallback) that silently vanished would leave a run
without its safety net.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from datetime import timedelta
from typing import TYPE_CHECKING

from shared.errors import PermanentError
from shared.models.messages import WorkMessage
from shared.ports.transport import WorkTransport

if TYPE_CHECKING:
    from shared.adapters.storage_clients import StorageClients

__all__ = ["DelayTooLong", "MAX_DELAY", "MAX_MESSAGE_BYTES", "MessageTooLarge", "StorageQueueTransport"]

MAX_DELAY = timedelta(days=7)
"""The longest visibility timeout Storage accepts (604,800 s)."""
MAX_MESSAGE_BYTES = 64 * 1024
"""The largest message Storage accepts, counted after base64 encoding (about 48 KiB of JSON)."""
NEVER_EXPIRE = -1


class MessageTooLarge(PermanentError):
    """A message's base64 body exceeds the 64 KiB a Storage queue message may hold.

    Nothing in the batch was sent. Keep large data (machine lists) in the run records and
    send only keys; see :mod:`shared.models.messages`.
    """

    def __init__(self, message: WorkMessage, encoded_bytes: int):
        self.message_id = message.message_id
        self.encoded_bytes = encoded_bytes
        super().__init__(
            f"{message.kind} message {message.message_id} is {encoded_bytes:,} bytes in base64; "
            f"a Storage queue message holds at most {MAX_MESSAGE_BYTES:,}"
        )


class DelayTooLong(PermanentError):
    """The requested delay is longer than a Storage queue can hide a message (7 days).

    Nothing was sent. Shortening the delay silently would run the work early; a caller that
    needs a longer wait can send a message due in 7 days that re-schedules the rest.
    """

    def __init__(self, delay: timedelta):
        self.delay = delay
        super().__init__(
            f"delay {delay} ({delay.total_seconds():,.0f} s) is longer than the {MAX_DELAY.days} days "
            f"({MAX_DELAY.total_seconds():,.0f} s) a Storage queue message can stay invisible"
        )


class StorageQueueTransport(WorkTransport):
    """Sends work messages to Storage queues (the queues must exist: ``ensure_storage``).

    Args:
        clients: the storage account's clients, whose queue clients encode base64.
        max_workers: threads that send at once when there are several messages. One send is
            one HTTP round trip, so a few threads overlap the waiting: measured on Azurite,
            about 190/s one by one and 250/s with 8 threads (docs/reference.md: 470/s and 600/s with
            16). Eight stays within the SDK's pool of 10 connections per host; more threads
            would open and discard extra connections.
    """

    def __init__(self, clients: StorageClients, *, max_workers: int = 8) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._clients = clients
        self.max_workers = max_workers

    def send(self, messages: Sequence[WorkMessage], *, delay: timedelta | None = None) -> None:
        """Send every message to its queue, invisible for ``delay``.

        All messages are checked before the first is sent, so a too-large message or a too-long
        delay sends nothing. A fraction of a second of delay rounds up (a delay is a "not
        before"). On a failure the messages not yet started are not sent and the error is
        raised; messages already sent stay sent (senders use deterministic ids, so the
        redelivery that follows repeats them harmlessly).

        Raises:
            DelayTooLong: ``delay`` is longer than 7 days.
            MessageTooLarge: a message is over 64 KiB once base64-encoded.
            ValueError: ``delay`` is negative.
            azure.core.exceptions.AzureError: the first send that failed.
        """
        visibility_timeout = visibility_timeout_seconds(delay)
        bodies = [(message.queue.value, _checked_body(message)) for message in messages]
        if not bodies:
            return
        if len(bodies) == 1 or self.max_workers == 1:
            for queue, body in bodies:
                self._send_one(queue, body, visibility_timeout)
            return
        executor = ThreadPoolExecutor(max_workers=min(self.max_workers, len(bodies)), thread_name_prefix="queue-send")
        try:
            futures = [executor.submit(self._send_one, queue, body, visibility_timeout) for queue, body in bodies]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
        finally:
            # On failure, drop the sends that have not started; wait for those in flight so
            # no thread outlives the invocation.
            executor.shutdown(wait=True, cancel_futures=True)

    def _send_one(self, queue: str, body: str, visibility_timeout: int | None) -> None:
        self._clients.queue(queue).send_message(body, visibility_timeout=visibility_timeout, time_to_live=NEVER_EXPIRE)


def visibility_timeout_seconds(delay: timedelta | None) -> int | None:
    """The visibility timeout for ``delay``: whole seconds, rounded up; None for no delay.

    Raises:
        DelayTooLong: longer than 7 days.
        ValueError: negative.
    """
    if delay is None or delay == timedelta(0):
        return None
    if delay < timedelta(0):
        raise ValueError(f"delay must not be negative, got {delay}")
    if delay > MAX_DELAY:
        raise DelayTooLong(delay)
    return math.ceil(delay.total_seconds())


def _checked_body(message: WorkMessage) -> str:
    body = message.to_json()
    raw_bytes = len(body.encode("utf-8"))
    encoded_bytes = 4 * math.ceil(raw_bytes / 3)  # base64 length, without encoding twice
    if encoded_bytes > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(message, encoded_bytes)
    return body
