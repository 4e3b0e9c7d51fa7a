"""The run records port on Azure Table storage (azure-data-tables).

Layout (one name per concept: the tables are :class:`shared.names.TableName`):

=============  ===================  =============================================
table          PartitionKey         RowKey
=============  ===================  =============================================
``RUNS``       ``run``              run key                       (the runs)
``TASKS``      run key              ``phase-pre`` / ``phase-post`` (the run's phases)
``TASKS``      run key              task id (``pre-...``, ``post-...``: the phases' tasks)
``MACHINES``   run key              short hash of the resource id
``EVENTS``     ``yyyyMMdd`` (UTC)   inverted timestamp + short uuid (newest first)
=============  ===================  =============================================

Conditional writes use the entity's ETag (``If-Match``), so two handlers updating the same
run, phase or task never lose each other's changes: the loser gets
:class:`~shared.ports.idempotency.RecordChanged` and re-reads. A phase lives in the same
partition as its tasks, so a task and its phase's counters change in one entity group
transaction (:meth:`TableRunRecords.replace_task_and_phase`): all or nothing. Lists and dicts are stored as
JSON strings, datetimes as ``Edm.DateTime`` in UTC. A string property holds at most 64 KiB
(32,768 UTF-16 code units, checked by Azurite too): free text is cut to fit and says so.

The entities are built in :mod:`shared.adapters.table_codecs`, their values fitted in
:mod:`shared.adapters.table_values`, and many created at once by :mod:`shared.adapters.table_batches`.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.adapters.table_batches import create_missing, take
from shared.adapters.table_codecs import (
    RUN_PARTITION,
    day_partition,
    delivery_entity,
    delivery_from_entity,
    delivery_row_key,
    delivery_sort_key,
    phase_entity,
    phase_from_entity,
    phase_row,
    run_entity,
    run_from_entity,
    task_entity,
    task_from_entity,
)
from shared.adapters.table_values import check_key, to_utc
from shared.clock import utcnow
from shared.models.ids import ResourceId
from shared.models.run import MachineRecord, Phase, PhaseRecord, RunRecord, TaskRecord
from shared.names import TableName
from shared.ports.idempotency import RecordChanged
from shared.ports.records import DeliveryRecord, RunNotFound, RunRecords

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from shared.adapters.storage_clients import StorageClients

__all__ = ["TableRunRecords"]

RECENT_DELIVERY_DAYS = 7
"""Days :meth:`TableRunRecords.list_deliveries` reads one partition at a time before it
falls back to scanning the older partitions."""


class TableRunRecords(RunRecords):
    """:class:`~shared.ports.records.RunRecords` on Azure Table storage.

    Args:
        clients: the storage account's clients (see
            :func:`shared.adapters.storage_clients.storage_clients`); the tables must exist
            (:meth:`~shared.adapters.storage_clients.StorageClients.ensure_storage`).

    Raises (besides the port's own errors): ``azure.core.exceptions.HttpResponseError`` for
    storage failures, and :class:`~shared.errors.PermanentError` for a record that cannot be
    stored as given (a key with characters Azure Tables forbid, JSON too large for a property).
    """

    def __init__(self, clients: StorageClients) -> None:
        self._clients = clients

    @property
    def _runs(self) -> TableClient:
        return self._clients.table(TableName.RUNS)

    @property
    def _tasks(self) -> TableClient:
        return self._clients.table(TableName.TASKS)

    @property
    def _machines(self) -> TableClient:
        return self._clients.table(TableName.MACHINES)

    @property
    def _events(self) -> TableClient:
        return self._clients.table(TableName.EVENTS)

    # -- runs -------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        from azure.core.exceptions import ResourceExistsError

        entity = run_entity(run)
        try:
            metadata = self._runs.create_entity(entity)
        except ResourceExistsError:
            return self.get_run(run.run_key), False
        return run_from_entity(entity, metadata["etag"]), True

    def get_run(self, run_key: str) -> RunRecord:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._runs.get_entity(RUN_PARTITION, check_key(run_key, "run key"))
        except ResourceNotFoundError:
            raise RunNotFound(run_key) from None
        return run_from_entity(entity, entity.metadata["etag"])

    def update_run(self, run: RunRecord) -> RunRecord:
        entity = run_entity(run)
        etag = self._replace_if_unchanged(self._runs, entity, run.etag, f"run {run.run_key}")
        return run_from_entity(entity, etag)

    def list_runs(self, *, limit: int = 50) -> list[RunRecord]:
        if limit <= 0:
            return []
        entities = self._runs.query_entities("PartitionKey eq @pk", parameters={"pk": RUN_PARTITION})
        # Row keys sort by configuration name, not by time: pick the newest starts while
        # streaming, holding at most ``limit`` runs in memory.
        runs = (run_from_entity(entity) for entity in entities)
        return heapq.nlargest(limit, runs, key=lambda run: run.start)

    # -- phases -----------------------------------------------------------------------

    def create_phase(self, phase: PhaseRecord) -> tuple[PhaseRecord, bool]:
        from azure.core.exceptions import ResourceExistsError

        entity = phase_entity(phase)
        try:
            metadata = self._tasks.create_entity(entity)
        except ResourceExistsError:
            stored = self.get_phase(phase.run_key, phase.phase)
            if stored is None:  # deleted in between: nothing sensible to return but an error
                raise RecordChanged(f"phase {phase.phase.value} of {phase.run_key}") from None
            return stored, False
        return phase_from_entity(entity, metadata["etag"]), True

    def get_phase(self, run_key: str, phase: Phase) -> PhaseRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._tasks.get_entity(check_key(run_key, "run key"), phase_row(phase))
        except ResourceNotFoundError:
            return None
        return phase_from_entity(entity, entity.metadata["etag"])

    def replace_phase(self, phase: PhaseRecord) -> PhaseRecord:
        entity = phase_entity(phase)
        etag = self._replace_if_unchanged(
            self._tasks, entity, phase.etag, f"phase {phase.phase.value} of {phase.run_key}"
        )
        return phase_from_entity(entity, etag)

    # -- tasks ------------------------------------------------------------------------

    def add_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        create_missing(self._tasks, [task_entity(task) for task in tasks])

    def get_task(self, run_key: str, task_id: str) -> TaskRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._tasks.get_entity(check_key(run_key, "run key"), check_key(task_id, "task id"))
        except ResourceNotFoundError:
            return None
        return task_from_entity(entity, entity.metadata["etag"])

    def replace_task(self, task: TaskRecord) -> TaskRecord:
        from azure.core.exceptions import ResourceExistsError

        entity = task_entity(task)
        if task.etag is None:
            # No etag: the caller believes the task does not exist yet (create, never overwrite).
            try:
                metadata = self._tasks.create_entity(entity)
            except ResourceExistsError:
                raise RecordChanged(f"task {task.task_id} of {task.run_key} already exists") from None
            return task_from_entity(entity, metadata["etag"])
        etag = self._replace_if_unchanged(self._tasks, entity, task.etag, f"task {task.task_id} of {task.run_key}")
        return task_from_entity(entity, etag)

    def replace_task_and_phase(self, task: TaskRecord, phase: PhaseRecord) -> tuple[TaskRecord, PhaseRecord]:
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError, UpdateMode

        if task.etag is None or phase.etag is None:
            raise RecordChanged(f"task {task.task_id} and its phase: both must be read before this write")
        if task.run_key != phase.run_key:
            raise ValueError("a task and its phase share a run")
        task_row, phase_row_ = task_entity(task), phase_entity(phase)
        condition = {"mode": UpdateMode.REPLACE, "match_condition": MatchConditions.IfNotModified}
        try:
            results = self._tasks.submit_transaction(
                [
                    ("update", task_row, {**condition, "etag": task.etag}),
                    ("update", phase_row_, {**condition, "etag": phase.etag}),
                ]
            )
        except TableTransactionError as error:
            if error.status_code in (404, 412):  # one of them changed or vanished: nothing was written
                raise RecordChanged(f"task {task.task_id} or its phase changed since read") from None
            raise
        return task_from_entity(task_row, results[0]["etag"]), phase_from_entity(phase_row_, results[1]["etag"])

    def list_tasks(self, run_key: str, phase: Phase | None = None) -> list[TaskRecord]:
        # Task rows start with their phase ("pre-...", "post-..."); the phase rows ("phase-...")
        # share the partition and fall outside these ranges ("." sorts just after "-").
        parameters = {"pk": check_key(run_key, "run key")}
        phases = [phase] if phase is not None else list(Phase)
        ranges = []
        for index, value in enumerate(phases):
            parameters[f"lo{index}"], parameters[f"hi{index}"] = f"{value.value}-", f"{value.value}."
            # Spaces around the parameters: the SDK substitutes whitespace-separated words.
            ranges.append(f"( RowKey ge @lo{index} and RowKey lt @hi{index} )")
        query = f"PartitionKey eq @pk and ( {' or '.join(ranges)} )"
        found = [
            task_from_entity(entity, entity.metadata["etag"])
            for entity in self._tasks.query_entities(query, parameters=parameters)
            if "Action" in entity
        ]
        # The service returns RowKey (= task id) order already; sorting again costs nothing
        # and keeps the contract independent of the backend's collation.
        return sorted(found, key=lambda task: task.task_id)

    # -- machines ---------------------------------------------------------------------

    def add_machines(self, run_key: str, resource_ids: Sequence[str]) -> None:
        check_key(run_key, "run key")
        entities = [
            {
                "PartitionKey": run_key,
                "RowKey": ResourceId(resource_id).short_hash(),
                "ResourceId": resource_id,
            }
            for resource_id in resource_ids
        ]
        create_missing(self._machines, entities)

    def list_machines(self, run_key: str) -> list[MachineRecord]:
        entities = self._machines.query_entities(
            "PartitionKey eq @pk", parameters={"pk": check_key(run_key, "run key")}, select=["ResourceId"]
        )
        return [MachineRecord(run_key, entity["ResourceId"]) for entity in entities]

    # -- the intake's delivery log ----------------------------------------------------

    def record_delivery(self, delivery: DeliveryRecord) -> None:
        from azure.core.exceptions import ResourceExistsError

        entity = delivery_entity(delivery)
        for _ in range(3):
            try:
                self._events.create_entity(entity)
                return
            except ResourceExistsError:
                # Same microsecond and same 8 hex digits of a uuid4: vanishingly rare, but
                # a log entry must not be lost, so draw another suffix.
                entity["RowKey"] = delivery_row_key(to_utc(delivery.received_at))
        raise RecordChanged(f"could not find a free row key for delivery {delivery.event_id}")

    def list_deliveries(self, *, limit: int = 50) -> list[DeliveryRecord]:
        """Most recent deliveries first.

        Partitions are days and sort oldest first, while row keys sort newest first within
        a day. So the recent days are read one partition at a time, newest day first, each
        query stopping after ``limit`` rows; only when they hold fewer than ``limit``
        deliveries are the remaining partitions scanned (the newest kept while streaming).
        """
        if limit <= 0:
            return []
        found: list[DeliveryRecord] = []
        today = utcnow().date()
        newest = today + timedelta(days=1)  # a clock a little ahead of ours
        day = newest
        oldest = today - timedelta(days=RECENT_DELIVERY_DAYS - 1)
        while day >= oldest and len(found) < limit:
            wanted = limit - len(found)
            pages = self._events.query_entities(
                "PartitionKey eq @pk", parameters={"pk": day_partition(day)}, results_per_page=min(wanted, 1000)
            )
            found.extend(delivery_from_entity(entity) for entity in take(pages, wanted))
            day -= timedelta(days=1)
        if len(found) < limit:
            rest = self._events.query_entities(
                "PartitionKey lt @oldest or PartitionKey gt @newest",
                parameters={"oldest": day_partition(oldest), "newest": day_partition(newest)},
            )
            entities = heapq.nlargest(limit - len(found), rest, key=delivery_sort_key)
            found.extend(delivery_from_entity(entity) for entity in entities)
        return found

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _replace_if_unchanged(table: TableClient, entity: dict[str, Any], etag: str | None, what: str) -> str:
        """Replace ``entity`` if it still has ``etag``; return the new etag."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        if etag is None:
            raise RecordChanged(f"{what}: no etag, so it was not read before this write")
        try:
            metadata = table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:  # 412: someone else wrote it since we read it
            raise RecordChanged(f"{what} changed since it was read") from None
        except ResourceNotFoundError:  # 404: it was deleted since we read it
            raise RecordChanged(f"{what} no longer exists") from None
        return str(metadata["etag"])
