"""The idempotency store on Azure Table storage.

The state machine is in :class:`shared.ports.idempotency.IdempotencyStore`; this backend only
gets, creates, replaces (conditionally on the ETag) and deletes one entity per key:

- PartitionKey: the key's first ``:``-separated segment (in practice the run key, so a run's
  records sit together), or ``default``;
- RowKey: the SHA-256 of the whole key, because keys contain characters table keys forbid
  (``/`` in resource ids) and may be longer than a key may be;
- ``Key`` keeps the key itself for people reading the table.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.adapters.table_values import MAX_PROPERTY_UNITS, fit_text, from_table_datetime, to_utc
from shared.errors import PermanentError
from shared.names import TableName
from shared.ports.idempotency import IdempotencyRecord, IdempotencyStatus, IdempotencyStore, RecordChanged

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from shared.adapters.storage_clients import StorageClients

__all__ = ["TableIdempotencyStore"]

DEFAULT_PARTITION = "default"
RESULT_CHUNKS = 12
"""A result longer than one property (64 KiB) is split over ``Result``, ``Result1``, ...:
12 properties hold 393,216 characters of (ASCII) JSON and keep the entity, at 768 KiB, under
its 1 MiB limit."""
_UNSAFE_PARTITION_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


class TableIdempotencyStore(IdempotencyStore):
    """:class:`~shared.ports.idempotency.IdempotencyStore` on the ``IDEMPOTENCY`` table.

    Args:
        clients: the storage account's clients; the table must exist.
        lock_timeout: how long a lock protects work in progress (see the base class).
        keep_results: how long a completed result is kept and returned.

    Expired records are not deleted (Table storage has no time-to-live); the next delivery
    for the same key takes them over.
    """

    def __init__(
        self,
        clients: StorageClients,
        *,
        lock_timeout: timedelta = timedelta(minutes=10),
        keep_results: timedelta = timedelta(days=7),
    ) -> None:
        super().__init__(lock_timeout=lock_timeout, keep_results=keep_results)
        self._clients = clients

    @property
    def _table(self) -> TableClient:
        return self._clients.table(TableName.IDEMPOTENCY)

    def _get(self, key: str) -> IdempotencyRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._table.get_entity(partition_key(key), row_key(key))
        except ResourceNotFoundError:
            return None
        expires_at = from_table_datetime(entity.get("ExpiresAt"))
        if expires_at is None:
            raise PermanentError(f"idempotency record for {key!r} has no ExpiresAt")
        return IdempotencyRecord(
            key=key,
            status=IdempotencyStatus(entity["Status"]),
            expires_at=expires_at,
            result=_join_result(entity),
            etag=entity.metadata["etag"],
        )

    def _create(self, record: IdempotencyRecord) -> str:
        from azure.core.exceptions import ResourceExistsError

        try:
            metadata = self._table.create_entity(_entity(record))
        except ResourceExistsError:
            raise RecordChanged(f"idempotency record {record.key!r} exists already") from None
        return str(metadata["etag"])

    def _replace(self, record: IdempotencyRecord) -> str:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        if record.etag is None:
            raise RecordChanged(f"idempotency record {record.key!r}: no etag to replace against")
        try:
            # REPLACE, not MERGE: it drops result chunks a longer earlier result left behind.
            metadata = self._table.update_entity(
                _entity(record),
                mode=UpdateMode.REPLACE,
                etag=record.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            raise RecordChanged(f"idempotency record {record.key!r} changed since it was read") from None
        except ResourceNotFoundError:
            raise RecordChanged(f"idempotency record {record.key!r} was deleted since it was read") from None
        return str(metadata["etag"])

    def _delete(self, key: str, etag: str | None) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        if etag is None:
            raise RecordChanged(f"idempotency record {key!r}: no etag to delete against")
        try:
            # delete_entity treats 404 (already gone) as success.
            self._table.delete_entity(
                partition_key(key), row_key(key), etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            raise RecordChanged(f"idempotency record {key!r} was taken over since it was read") from None


def partition_key(key: str) -> str:
    """The key's first ``:`` segment, made safe for a PartitionKey; ``default`` without one."""
    head, separator, _ = key.partition(":")
    if not separator or not head:
        return DEFAULT_PARTITION
    # A forbidden character only costs grouping, not uniqueness (the RowKey is the digest).
    return _UNSAFE_PARTITION_CHARS.sub("_", head)[:256]


def row_key(key: str) -> str:
    """The SHA-256 of the whole key, in hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _entity(record: IdempotencyRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": partition_key(record.key),
        "RowKey": row_key(record.key),
        "Key": fit_text(record.key, what="key"),
        "Status": record.status.value,
        "ExpiresAt": to_utc(record.expires_at),
    }
    if record.result is not None:
        entity.update(_split_result(record.key, record.result))
    return entity


def _split_result(key: str, result: str) -> dict[str, str]:
    """The JSON result over as many properties as it needs (JSON cannot be cut short)."""
    # json.dumps writes ASCII (one UTF-16 unit per character); anything else may need two.
    size = MAX_PROPERTY_UNITS if result.isascii() else MAX_PROPERTY_UNITS // 2
    chunks = [result[start : start + size] for start in range(0, len(result), size)] or [""]
    if len(chunks) > RESULT_CHUNKS:
        raise PermanentError(
            f"the result kept for {key!r} is {len(result):,} characters of JSON; the idempotency "
            f"table keeps at most {RESULT_CHUNKS * size:,}: keep less, or store it elsewhere"
        )
    return {("Result" if index == 0 else f"Result{index}"): chunk for index, chunk in enumerate(chunks)}


def _join_result(entity: Any) -> str | None:
    first = entity.get("Result")
    if first is None:
        return None
    parts = [first]
    for index in range(1, RESULT_CHUNKS):
        part = entity.get(f"Result{index}")
        if part is None:
            break
        parts.append(part)
    return "".join(parts)
