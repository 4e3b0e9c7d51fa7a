"""Creating many table entities in few round trips: entity group transactions per partition.

A transaction holds up to 100 operations on one partition and is all-or-nothing; this module
splits entities into such transactions and copes with the ones that exist already, so that a
redelivered message adding the same entities again creates only the missing ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.data.tables import TableClient

__all__ = ["TRANSACTION_MAX_BYTES", "TRANSACTION_MAX_OPERATIONS", "create_missing", "take"]

TRANSACTION_MAX_OPERATIONS = 100
"""Azure's limit of operations in one entity group transaction (all in one partition)."""
TRANSACTION_MAX_BYTES = 3 * 1024 * 1024
"""Stay well under the 4 MiB limit of a transaction's payload."""


def create_missing(table: TableClient, entities: Iterable[dict[str, Any]]) -> None:
    """Create the entities that do not exist yet; leave existing ones untouched.

    Each partition's entities go in transactions of up to 100 creates (one round trip
    instead of 100). A transaction is all-or-nothing, so one that fails because some of its
    entities exist (a plan message redelivered after a crash half-way) is handled without
    creating entities one by one where possible: the first conflict lists the row keys the
    partition already has (one query) and the transactions go on with the missing entities
    only. Only a conflict after that (another delivery adding the same entities right now)
    falls back to one create per entity, skipping those that exist.
    """
    by_partition: dict[str, dict[str, dict[str, Any]]] = {}
    for entity in entities:
        # The first of two entities with the same key wins, as in a sequence of creates (and
        # a transaction may not hold the same row twice).
        by_partition.setdefault(entity["PartitionKey"], {}).setdefault(entity["RowKey"], entity)
    for partition, rows in by_partition.items():
        _create_missing_in_partition(table, partition, list(rows.values()))


def _create_missing_in_partition(table: TableClient, partition: str, entities: list[dict[str, Any]]) -> None:
    from azure.core.exceptions import ResourceExistsError

    existing: set[str] | None = None
    for chunk in _transaction_chunks(entities):
        if existing is None:
            if _create_together(table, chunk):
                continue
            existing = {
                entity["RowKey"]
                for entity in table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": partition}, select=["RowKey"]
                )
            }
        missing = [entity for entity in chunk if entity["RowKey"] not in existing]
        if not missing or _create_together(table, missing):
            continue
        for entity in missing:  # someone else is creating these very entities right now
            with contextlib.suppress(ResourceExistsError):
                table.create_entity(entity)


def _create_together(table: TableClient, entities: list[dict[str, Any]]) -> bool:
    """Create all entities in one transaction; False if one of them exists already."""
    from azure.data.tables import TableTransactionError

    try:
        table.submit_transaction([("create", entity) for entity in entities])
    except TableTransactionError as error:
        if error.status_code == 409:  # EntityAlreadyExists: the transaction created nothing
            return False
        raise
    return True


def _transaction_chunks(entities: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    size = 0
    for entity in entities:
        # A rough upper bound of the entity's JSON in the batch body, with room for headers.
        entity_size = 512 + sum(2 * len(str(value)) + len(name) + 40 for name, value in entity.items())
        if chunk and (len(chunk) == TRANSACTION_MAX_OPERATIONS or size + entity_size > TRANSACTION_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entity)
        size += entity_size
    if chunk:
        yield chunk


def take(items: Iterable[Any], count: int) -> Iterator[Any]:
    """The first ``count`` items, without asking the service for another page."""
    if count <= 0:
        return
    for index, item in enumerate(items, start=1):
        yield item
        if index >= count:
            return
