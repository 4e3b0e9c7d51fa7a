"""One factory for the Table and Queue service clients of the function app's storage account.

The clients are created on first use and reused for the life of the worker process: an SDK
client holds a connection pool, and building one per invocation would pay TLS handshakes on
every message. The Azure SDK modules are imported inside the methods, not at module level,
because ``function_app`` imports the adapters and every scale-out pays the import on its cold
start (``azure.storage.queue`` alone is about 150 ms, ``azure.identity`` about 160 ms).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from shared.names import QueueName, TableName
from shared.settings import StorageConnection

if TYPE_CHECKING:  # the SDK types, for annotations only: no import cost at runtime
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient, TableServiceClient
    from azure.storage.queue import QueueClient, QueueServiceClient

__all__ = ["RetrySettings", "StorageClients", "ensure_storage", "storage_clients"]


@dataclass(frozen=True)
class RetrySettings:
    """Retries and timeouts for storage calls made from inside a function.

    The SDK defaults are built for long-running programs: azure-core retries up to 10 times
    with up to 2 minutes between tries, and the storage SDKs' exponential retry waits about 18 s,
    then 24 s, then 42 s. A function that sleeps that long holds its message lease and its
    worker while the trigger would retry the message anyway, so a call here fails fast and
    the platform's redelivery (queue visibility timeout, Event Grid retry) does the waiting.
    """

    total: int = 2
    """Retries after the first attempt."""
    backoff_seconds: float = 0.5
    """The base wait between tries. Tables (azure-core) retry once at once, then after
    2 x this; queues (storage's linear retry) wait 2 x this before each retry, give or take
    a little jitter. Either way a failing call gives up within about 2 s plus its timeouts."""
    connection_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0

    def table_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for azure-data-tables (a subclass of azure-core's ``RetryPolicy``)."""
        return {
            "retry_total": self.total,
            "retry_backoff_factor": self.backoff_seconds,
            "retry_backoff_max": 4 * self.backoff_seconds,
            "connection_timeout": self.connection_timeout_seconds,
            "read_timeout": self.read_timeout_seconds,
        }

    def queue_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for azure-storage-queue, which has its own retry policy class."""
        from azure.storage.queue import LinearRetry

        # Linear, not exponential: the storage SDK's exponential formula starts at
        # initial_backoff + increment_base ** 1 and grows from there (2.5 s, 4.5 s for 0.5
        # and 2), longer than a function should sleep; the redelivery does the long waits.
        policy = LinearRetry(
            backoff=2 * self.backoff_seconds,  # type: ignore[arg-type]  # floats work
            retry_total=self.total,
            random_jitter_range=self.backoff_seconds / 2,  # type: ignore[arg-type]
        )
        return {
            "retry_policy": policy,
            "connection_timeout": self.connection_timeout_seconds,
            "read_timeout": self.read_timeout_seconds,
        }


class StorageClients:
    """Lazily created, reused Table and Queue clients for one storage account.

    Args:
        connection: a connection string (Azurite, account keys), or an account name reached
            with ``DefaultAzureCredential`` (managed identity in Azure).
        credential: a token credential to use instead of ``DefaultAzureCredential`` for an
            identity-based connection (ignored with a connection string).
        retry: retry and timeout settings; the defaults suit code running in a function.

    Every method is safe to call from several threads; the clients themselves are thread-safe
    (Azure SDK guideline) and share one connection pool per service.
    """

    def __init__(
        self,
        connection: StorageConnection,
        *,
        credential: TokenCredential | None = None,
        retry: RetrySettings | None = None,
    ) -> None:
        if not connection.connection_string and not connection.account_name:
            from shared.errors import SettingsError

            raise SettingsError("a storage connection needs a connection string or an account name")
        self.connection = connection
        self.retry = retry or RetrySettings()
        self._credential = credential
        self._lock = threading.RLock()
        self._table_service: TableServiceClient | None = None
        self._queue_service: QueueServiceClient | None = None
        self._tables: dict[str, TableClient] = {}
        self._queues: dict[str, QueueClient] = {}
        self._ensured = False

    # -- clients ----------------------------------------------------------------------

    @property
    def table_service(self) -> TableServiceClient:
        """The account's ``TableServiceClient``, created on first use."""
        with self._lock:
            if self._table_service is None:
                from azure.data.tables import TableServiceClient

                options = self.retry.table_kwargs()
                if self.connection.connection_string:
                    self._table_service = TableServiceClient.from_connection_string(
                        self.connection.connection_string, **options
                    )
                else:
                    self._table_service = TableServiceClient(
                        endpoint=self.connection.service_url("table"),
                        credential=self._token_credential(),
                        **options,
                    )
            return self._table_service

    @property
    def queue_service(self) -> QueueServiceClient:
        """The account's ``QueueServiceClient`` (base64 messages), created on first use."""
        with self._lock:
            if self._queue_service is None:
                from azure.storage.queue import QueueServiceClient

                options = {**self.retry.queue_kwargs(), **_base64_policies()}
                if self.connection.connection_string:
                    self._queue_service = QueueServiceClient.from_connection_string(
                        self.connection.connection_string, **options
                    )
                else:
                    self._queue_service = QueueServiceClient(
                        account_url=self.connection.service_url("queue"),
                        credential=self._token_credential(),
                        **options,
                    )
            return self._queue_service

    def table(self, name: TableName | str) -> TableClient:
        """A client for one table (sharing the service's connection pool)."""
        key = _name(name)
        with self._lock:
            client = self._tables.get(key)
            if client is None:
                client = self._tables[key] = self.table_service.get_table_client(key)
            return client

    def queue(self, name: QueueName | str) -> QueueClient:
        """A client for one queue that sends and receives base64 text.

        The Functions host's queue trigger expects base64 bodies (host.json
        ``extensions.queues.messageEncoding`` defaults to base64); a plain-text message would
        fail to decode on the first delivery and end up in the poison queue.
        """
        key = _name(name)
        with self._lock:
            client = self._queues.get(key)
            if client is None:
                client = self._queues[key] = self.queue_service.get_queue_client(key, **_base64_policies())
            return client

    def park(self, queue: QueueName, body: str | bytes, reason: str) -> None:
        """Put an unusable message in ``<queue>-poison`` at once, with its reason.

        The parked form is :func:`shared.adapters.parking.parked_body` (the original body
        kept for ``prepost replay``). With this method the clients serve as the ``Parking``
        of :mod:`shared.adapters.servicebus_settlement` and of :func:`shared.handlers.park`.
        """
        from shared.adapters.parking import park_in_poison_queue

        park_in_poison_queue(self, queue, body, reason)

    # -- provisioning -----------------------------------------------------------------

    def ensure_storage(self, *, force: bool = False) -> None:
        """Create every table in :class:`TableName`, and every queue in :class:`QueueName`
        with its ``-poison`` queue, when missing. Idempotent; runs once per process unless
        ``force`` is set.

        The infra templates create the same tables and queues; this covers Azurite and a
        freshly created account, where the first message would otherwise fail with 404.
        """
        from azure.core.exceptions import ResourceExistsError

        with self._lock:
            if self._ensured and not force:
                return
            for table in TableName:
                # create_table_if_not_exists swallows "already exists" (409) itself.
                self.table_service.create_table_if_not_exists(table.value)
            for queue in QueueName:
                for queue_name in (queue.value, queue.poison):
                    # 409 means it exists with other metadata: still the queue we want.
                    with contextlib.suppress(ResourceExistsError):
                        self.queue_service.create_queue(queue_name)
            self._ensured = True

    def close(self) -> None:
        """Close both service clients (and their connection pools)."""
        with self._lock:
            for client in (self._table_service, self._queue_service):
                if client is not None:
                    client.close()
            self._table_service = self._queue_service = None
            self._tables.clear()
            self._queues.clear()
            self._ensured = False

    def _token_credential(self) -> TokenCredential:
        if self._credential is None:
            # Imported here: azure.identity costs about 160 ms and only identity-based
            # connections need it.
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential


@cache
def storage_clients(connection: StorageConnection) -> StorageClients:
    """The process-wide :class:`StorageClients` for ``connection`` (created once, on first call)."""
    return StorageClients(connection)


def ensure_storage(connection: StorageConnection | StorageClients) -> None:
    """Create the app's tables and queues (and poison queues) where missing. Idempotent."""
    clients = connection if isinstance(connection, StorageClients) else storage_clients(connection)
    clients.ensure_storage()


def _base64_policies() -> dict[str, Any]:
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

    return {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
    }


def _name(name: TableName | QueueName | str) -> str:
    return name.value if isinstance(name, TableName | QueueName) else name
