"""The Service Bus work transport: plans and VM tasks through Service Bus queues.

In Azure, ``prepost-plan`` and ``prepost-vm-tasks`` are Service Bus queues when
``PREPOST_TRANSPORT=servicebus``; monitoring and outcomes always stay on Storage queues, so
:class:`ServiceBusTransport` hands those to a ``fallback`` transport (the Storage one).

Why the SDK and not the Functions output binding: the Python output binding accepts only a
str or bytes body, so it cannot set ``MessageId`` (duplicate detection), application
properties or a scheduled enqueue time. See docs/servicebus.md.

Everything here imports ``azure.servicebus`` lazily: ``function_app`` imports the adapters,
and every scale-out pays import time on its cold start (``azure.servicebus`` alone is about
140 ms, ``azure.identity`` about 160 ms).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.clock import utcnow
from shared.errors import PermanentError, SettingsError, TransientError
from shared.models.messages import WorkMessage
from shared.names import SERVICEBUS_CONNECTION, QueueName
from shared.ports.transport import WorkTransport
from shared.settings import ServiceBusConnection

if TYPE_CHECKING:  # SDK types for annotations only: no import cost at runtime
    from azure.core.credentials import TokenCredential
    from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusMessageBatch, ServiceBusSender

__all__ = [
    "CONTENT_TYPE",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_ID_LENGTH",
    "SERVICEBUS_QUEUES",
    "MessageTooLarge",
    "RetrySettings",
    "ServiceBusTransport",
    "build_servicebus_message",
    "iter_batches",
    "plain_properties",
    "scheduled_time",
    "servicebus_message_id",
]

SERVICEBUS_QUEUES: frozenset[QueueName] = frozenset({QueueName.PLAN, QueueName.VM_TASKS})
"""The queues that are Service Bus queues with ``PREPOST_TRANSPORT=servicebus``. The others
(monitoring, outcomes) are always Storage queues."""

MAX_BATCH_MESSAGES = 4500
"""Service Bus accepts at most 4,500 messages in one batch, whatever their size
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-quotas)."""

MAX_MESSAGE_ID_LENGTH = 128
"""Service Bus rejects a ``MessageId`` longer than 128 characters (the SDK raises ValueError)."""

CONTENT_TYPE = "application/json"

_ID_PREFIX_LENGTH = 40


class MessageTooLarge(PermanentError):
    """A message does not fit in an empty batch: it can never be sent as it is.

    Permanent: retrying the same message cannot make it smaller. Work messages are small by
    design (large lists live in the run records), so this means a bug or corrupt data.
    """

    def __init__(self, queue_name: str, message_id: str | None, *, size_limit: int | None, detail: str = ""):
        self.queue_name = queue_name
        self.message_id = message_id
        self.size_limit = size_limit
        limit = f"the {size_limit}-byte batch limit" if size_limit else "the Service Bus size limit"
        text = f"message {message_id!r} for {queue_name} is larger than {limit}"
        super().__init__(f"{text}: {detail}" if detail else text)


@dataclass(frozen=True)
class RetrySettings:
    """Retries and timeouts for Service Bus sends made from inside a function.

    The SDK default waits up to 120 s between tries. A function that sleeps that long holds
    its message lock and its worker while the platform would redeliver the message anyway,
    so a send here fails fast and the caller's delivery is retried instead (the same choice
    as :class:`shared.adapters.storage_clients.RetrySettings`).
    """

    total: int = 2
    """Retries after the first attempt."""
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 4.0
    operation_timeout_seconds: float = 30.0
    """Total time for one send, retries included."""

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "retry_total": self.total,
            "retry_backoff_factor": self.backoff_seconds,
            "retry_backoff_max": self.backoff_max_seconds,
            "retry_mode": "exponential",
        }


# -- pure functions: message construction and batching ------------------------------------


def servicebus_message_id(message_id: str) -> str:
    """``message_id`` itself when Service Bus accepts it, else a stable id of at most 128 chars.

    Duplicate detection only works if a re-send carries the *same* id, so a long id is not
    truncated (two ids sharing a prefix would collide) but replaced by its readable start and
    the SHA-256 of the whole id: deterministic, unique in practice, and 105 characters.
    """
    if len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        return message_id
    digest = hashlib.sha256(message_id.encode("utf-8")).hexdigest()
    return f"{message_id[:_ID_PREFIX_LENGTH]}:{digest}"


def scheduled_time(delay: timedelta | None, now: datetime) -> datetime | None:
    """The UTC enqueue time for ``delay``, or None to enqueue at once (no delay, or not positive)."""
    if delay is None or delay <= timedelta(0):
        return None
    return now + delay


def build_servicebus_message(
    message: WorkMessage,
    *,
    delay: timedelta | None = None,
    now: datetime | None = None,
) -> ServiceBusMessage:
    """The ``ServiceBusMessage`` that carries ``message``.

    - body: ``message.to_json()``, the same body the Storage transport sends;
    - ``message_id``: the deterministic ``message.message_id`` (see :func:`servicebus_message_id`),
      so a repeated send inside the queue's duplicate-detection window is dropped by Service Bus
      (https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection);
    - ``application_properties``: ``message.properties`` (run, phase, action, target, attempt),
      so an operator can filter or peek without decoding the body;
    - ``content_type`` ``application/json`` and ``subject`` = the message kind;
    - ``scheduled_enqueue_time_utc`` = now + ``delay`` when a positive delay is given: the
      message stays invisible until then (https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages).
    """
    from azure.servicebus import ServiceBusMessage

    enqueue_at = scheduled_time(delay, now or utcnow())
    return ServiceBusMessage(
        message.to_json(),
        message_id=servicebus_message_id(message.message_id),
        application_properties=dict(message.properties),
        content_type=CONTENT_TYPE,
        subject=message.kind,
        scheduled_enqueue_time_utc=enqueue_at,
    )


def iter_batches(
    messages: Iterable[ServiceBusMessage],
    new_batch: Callable[[], ServiceBusMessageBatch],
    *,
    max_count: int = MAX_BATCH_MESSAGES,
    queue_name: str = "",
) -> Iterator[ServiceBusMessageBatch]:
    """Fill batches from ``new_batch()`` in order, each within its size limit and ``max_count``.

    A batch is yielded when the next message does not fit (``add_message`` raises
    ``MessageSizeExceededError``) or when it holds ``max_count`` messages; the last, partly
    filled batch is yielded at the end. No empty batch is ever yielded.

    ``new_batch`` is ``sender.create_message_batch`` in production (the size limit then comes
    from the link: 256 KB on Standard, 1 MB on Premium); tests pass
    ``lambda: ServiceBusMessageBatch(max_size_in_bytes=...)``, which needs no network.

    Scheduled messages are batched like any other: Service Bus honours each message's
    ``scheduled_enqueue_time_utc`` on the regular send path. (``sender.schedule_messages``
    accepts a list, not a batch, and only adds sequence numbers for cancellation, which
    prepost never needs.)

    Raises:
        MessageTooLarge: one message does not fit even in an empty batch.
    """
    from azure.servicebus.exceptions import MessageSizeExceededError

    if max_count < 1:
        raise ValueError(f"max_count must be at least 1, got {max_count}")
    batch: ServiceBusMessageBatch | None = None
    for message in messages:
        if batch is None or len(batch) >= max_count:
            if batch is not None:
                yield batch
            batch = new_batch()
        try:
            batch.add_message(message)
        except MessageSizeExceededError:
            if len(batch) == 0:
                raise MessageTooLarge(queue_name, message.message_id, size_limit=batch.max_size_in_bytes) from None
            yield batch
            batch = new_batch()
            try:
                batch.add_message(message)
            except MessageSizeExceededError:
                raise MessageTooLarge(queue_name, message.message_id, size_limit=batch.max_size_in_bytes) from None
    if batch is not None and len(batch) > 0:
        yield batch


def _transient_error_types() -> tuple[type[BaseException], ...]:
    """Service Bus errors worth retrying later: the service or the network, not the message.

    These are the SDK's own retryable errors (after its short in-call retries gave up), plus a
    full queue, which drains. Authentication and authorisation count too: a new role
    assignment takes minutes to propagate, and the delivery's bounded retries cover it.
    """
    from azure.servicebus import exceptions as sb

    return (
        sb.ServiceBusConnectionError,
        sb.ServiceBusCommunicationError,
        sb.OperationTimeoutError,
        sb.ServiceBusServerBusyError,
        sb.ServiceBusQuotaExceededError,
        sb.MessagingEntityDisabledError,
        sb.ServiceBusAuthenticationError,
        sb.ServiceBusAuthorizationError,
    )


@contextmanager
def _servicebus_errors(queue_name: str) -> Iterator[None]:
    """Map SDK errors to prepost's: transient ones become :class:`TransientError`.

    Raising is what makes the caller's delivery be retried; a :class:`TransientError` tells the
    settlement to retry it later with backoff rather than at once.
    """
    from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusError

    try:
        yield
    except MessageSizeExceededError as error:
        raise MessageTooLarge(queue_name, None, size_limit=None, detail=str(error)) from error
    except ServiceBusError as error:
        if isinstance(error, _transient_error_types()):
            raise TransientError(f"Service Bus send to {queue_name} failed: {error}") from error
        raise


# -- the transport ----------------------------------------------------------------------------


class _SenderPool:
    """One lazily created client, and one sender per queue, each used under its own lock.

    The SDK does not make clients or senders thread-safe, and the Python worker runs
    synchronous functions on a thread pool, so each sender is used by one thread at a time
    (https://learn.microsoft.com/python/api/overview/azure/servicebus-readme#thread-safety).
    Senders of different queues work in parallel: each has its own AMQP link.
    """

    def __init__(self, create_client: Callable[[], ServiceBusClient]):
        self._create_client = create_client
        self._lock = threading.Lock()
        self._client: ServiceBusClient | None = None
        self._senders: dict[str, tuple[ServiceBusSender, threading.Lock]] = {}

    @contextmanager
    def sender(self, queue_name: str) -> Iterator[ServiceBusSender]:
        with self._lock:
            if self._client is None:
                self._client = self._create_client()
            entry = self._senders.get(queue_name)
            if entry is None:
                entry = (self._client.get_queue_sender(queue_name), threading.Lock())
                self._senders[queue_name] = entry
        sender, sender_lock = entry
        with sender_lock:
            yield sender

    def close(self) -> None:
        with self._lock:
            senders, self._senders = self._senders, {}
            client, self._client = self._client, None
        for sender, sender_lock in senders.values():
            with sender_lock:
                sender.close()
        if client is not None:
            client.close()


class ServiceBusTransport(WorkTransport):
    """Sends plans and VM tasks to Service Bus queues, everything else to ``fallback``.

    Args:
        connection: a connection string (a namespace's SAS, or the emulator's), or a fully
            qualified namespace reached with ``DefaultAzureCredential`` (managed identity).
        fallback: the transport for messages whose queue is not in ``servicebus_queues``
            (monitoring and outcomes: always Storage queues). Not closed by :meth:`close`.
        servicebus_queues: the queues this transport sends itself.
        credential: a token credential to use instead of ``DefaultAzureCredential``.
        retry: retries and timeouts; the defaults suit code running in a function.
        max_batch_size_in_bytes: a smaller batch limit than the link allows (tests, tuning).
        client_factory: builds the ``ServiceBusClient`` (tests pass a fake); by default one is
            built from ``connection`` on first use.
        clock: the time scheduled messages are counted from.

    Raises:
        SettingsError: (on construction) the connection has neither a connection string nor a
            namespace.

    :meth:`send` raises :class:`~shared.errors.TransientError` when Service Bus or the network
    failed (retry the delivery later) and :class:`MessageTooLarge` when a message can never fit
    in a batch (permanent).
    """

    def __init__(
        self,
        connection: ServiceBusConnection | None,
        fallback: WorkTransport,
        *,
        servicebus_queues: Collection[QueueName] = SERVICEBUS_QUEUES,
        credential: TokenCredential | None = None,
        retry: RetrySettings | None = None,
        max_batch_size_in_bytes: int | None = None,
        client_factory: Callable[[], ServiceBusClient] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if client_factory is None and (
            connection is None or not (connection.connection_string or connection.fully_qualified_namespace)
        ):
            raise SettingsError(
                f"the Service Bus transport needs {SERVICEBUS_CONNECTION} (connection string) or "
                f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace (managed identity)"
            )
        self.connection = connection
        self.fallback = fallback
        self.servicebus_queues = frozenset(servicebus_queues)
        self.retry = retry or RetrySettings()
        self._credential = credential
        self._max_batch_size = max_batch_size_in_bytes
        self._clock = clock
        self._pool = _SenderPool(client_factory or self._create_client)

    def send(self, messages: Sequence[WorkMessage], *, delay: timedelta | None = None) -> None:
        """Send each message to its queue, visible after ``delay``; batches per queue.

        Service Bus queues are sent first, in the order they first appear, then the rest goes
        to the fallback in one call. On a failure the remaining messages are not sent and the
        error is raised: the caller's delivery is retried, and the deterministic message ids
        make Service Bus drop what had already been sent.
        """
        now = self._clock()
        by_queue: dict[QueueName, list[WorkMessage]] = {}
        others: list[WorkMessage] = []
        for message in messages:
            if message.queue in self.servicebus_queues:
                by_queue.setdefault(message.queue, []).append(message)
            else:
                others.append(message)
        for queue, group in by_queue.items():
            self.send_servicebus_messages(
                queue.value, [build_servicebus_message(message, delay=delay, now=now) for message in group]
            )
        if others:
            self.fallback.send(others, delay=delay)

    def send_servicebus_messages(self, queue_name: str, messages: Sequence[ServiceBusMessage]) -> None:
        """Send ready-made ``ServiceBusMessage``s to ``queue_name`` in as few batches as fit.

        Used by :meth:`send` and by the settlement adapter to re-send a received body as is.
        """
        if not messages:
            return
        with _servicebus_errors(queue_name), self._pool.sender(queue_name) as sender:

            def new_batch() -> ServiceBusMessageBatch:
                return sender.create_message_batch(max_size_in_bytes=self._max_batch_size)

            for batch in iter_batches(messages, new_batch, queue_name=queue_name):
                sender.send_messages(batch, timeout=self.retry.operation_timeout_seconds)

    def close(self) -> None:
        """Close the senders and the client (not the fallback, which the caller owns)."""
        self._pool.close()

    def _create_client(self) -> ServiceBusClient:
        connection = self.connection
        assert connection is not None  # checked in __init__
        return create_servicebus_client(connection, credential=self._credential, **self.retry.client_kwargs())


def received_body(message: Any) -> bytes:
    """The body of a received ``ServiceBusReceivedMessage`` as bytes.

    A data body arrives as sections, joined here; a value body (prepost never sends one) is kept
    as its text, so decoding it fails with a readable reason rather than here.
    """
    from azure.servicebus.amqp import AmqpMessageBodyType

    if message.body_type is AmqpMessageBodyType.DATA:
        return b"".join(message.body)
    value = message.body
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def create_servicebus_client(
    connection: ServiceBusConnection, *, credential: TokenCredential | None = None, **kwargs: Any
) -> ServiceBusClient:
    """A client for a connection string (also the emulator's) or a namespace reached with an identity.

    ``credential`` defaults to ``DefaultAzureCredential`` (the app's managed identity, or the
    operator's login for the CLI).
    """
    from azure.servicebus import ServiceBusClient

    if connection.connection_string:
        # Also the emulator: its connection string says UseDevelopmentEmulator=true, which
        # the SDK (7.13.1+) reads to use plain AMQP on localhost.
        return ServiceBusClient.from_connection_string(connection.connection_string, **kwargs)
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return ServiceBusClient(str(connection.fully_qualified_namespace), credential, **kwargs)


def plain_properties(properties: Mapping[Any, Any] | None) -> dict[str, str | int | float | bool]:
    """Application properties as ``str`` keys and primitive values.

    Received properties can have ``bytes`` keys and values (the SDK returns AMQP strings as
    bytes) or, from the Functions binding, JSON-decoded values; only primitives are kept.
    """
    result: dict[str, str | int | float | bool] = {}
    for key, value in (properties or {}).items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str | int | float | bool):
            result[name] = value
    return result
