"""The run records port on Azure Table storage (azure-data-tables).

Layout (one name per concept: the tables are :class:`shared.names.TableName`):

=============  ===================  =============================================
table          PartitionKey         RowKey
=============  ===================  =============================================
``RUNS``       ``run``              run key                       (the runs)
``TASKS``      run key              ``phase-pre`` / ``phase-post`` (the run's phases)
``TASKS``      run key              ``phase-pre-n0`` .. ``phase-pre-n15`` (a phase's counter shards)
``TASKS``      run key              task id (``pre-...``, ``post-...``: the phases' tasks)
``MACHINES``   run key              short hash of the resource id
``EVENTS``     ``yyyyMMdd`` (UTC)   inverted timestamp + short uuid (newest first)
=============  ===================  =============================================

Conditional writes use the entity's ETag (``If-Match``), so two handlers updating the same
run, phase or task never lose each other's changes: the loser gets
:class:`~shared.ports.idempotency.RecordChanged` and re-reads. A phase lives in the same
partition as its tasks, so a task and its phase's counters change in one entity group
transaction (:meth:`TableRunRecords.replace_task_and_phase`): all or nothing.

A planned phase's counters (``FinishedTasks``, ``FailedTasks``) are spread over counter shards:
rows ``phase-<phase>-n<k>`` beside the phase row, created when first needed. Every final
outcome of a planned phase writes its task and the one shard its task id hashes to, so
outcomes of tasks in different shards never race for one etag (with one counter row, most of
the outcomes recorded at once lost the race and each paid a read and a write again). The rules
that keep the counts exact:

- the phase is read with its shards in one query; its counters are the phase row's plus the
  shards', except for a final phase, whose row holds the absolute counts taken from the task
  records when it closed (the shards are then ignored);
- while the phase is only received, an outcome counts on the phase row, conditional on its
  etag (planning counts the task records and writes the row against that etag, so it counts
  again when an outcome came in between); once planned, on its shard, conditional on the
  shard's etag (or creating the shard), and the phase is read again after that write: two
  outcomes in different shards each see only their own increment, so only a read after the
  write lets the last of them see every task counted and close the phase;
- any other write of the phase writes the phase row alone, conditional on its etag, with the
  counters less what the shards held when read: increments that land in the shards meanwhile
  are neither lost nor counted twice.

Task rows start with their phase (``pre-``, ``post-``), so the ranges :meth:`TableRunRecords.list_tasks`
reads never see the phase or shard rows. Lists and dicts are stored as
JSON strings, datetimes as ``Edm.DateTime`` in UTC. A string property holds at most 64 KiB
(32,768 UTF-16 code units, checked by Azurite too): free text is cut to fit and says so.

The entities are built in :mod:`shared.adapters.table_codecs`, their values fitted in
:mod:`shared.adapters.table_values`, and many created at once by :mod:`shared.adapters.table_batches`.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from shared.models.run import MachineRecord, Phase, PhaseRecord, PhaseStatus, RunRecord, TaskRecord
from shared.names import TableName
from shared.ports.idempotency import RecordChanged
from shared.ports.records import DeliveryRecord, RunNotFound, RunRecords

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from shared.adapters.storage_clients import StorageClients

__all__ = ["COUNTER_SHARDS", "TableRunRecords", "shard_of"]

RECENT_DELIVERY_DAYS = 7
"""Days :meth:`TableRunRecords.list_deliveries` reads one partition at a time before it
falls back to scanning the older partitions."""

COUNTER_SHARDS = 16
"""Counter rows per phase. Two outcomes recorded at the same moment collide only when their
tasks hash to the same shard: about one pair in 16, against every pair with a single counter
row; an instance records up to 8-32 outcomes at once (the queue batch, the Service Bus
concurrency), and a fleet runs several instances. More shards would make collisions rarer
still but every read of the phase longer: 17 rows stay far inside one query page (1,000)."""


def shard_of(task_id: str) -> int:
    """The counter shard of a task: a hash that is the same in every process (``hash()`` is not)."""
    return zlib.crc32(task_id.encode("utf-8")) % COUNTER_SHARDS


def shard_row(phase: Phase, shard: int) -> str:
    return f"{phase_row(phase)}-n{shard}"


@dataclass(frozen=True)
class _Shard:
    finished: int
    failed: int
    etag: str


@dataclass(frozen=True)
class _CountersRead:
    """A phase's counters as read: the :attr:`PhaseRecord.storage_view` of this adapter."""

    finished: int
    """Totals the record showed when read (phase row plus shards, or the row alone when final)."""
    failed: int
    shards: Mapping[int, _Shard] = field(default_factory=dict)

    @property
    def shard_finished(self) -> int:
        return sum(shard.finished for shard in self.shards.values())

    @property
    def shard_failed(self) -> int:
        return sum(shard.failed for shard in self.shards.values())


def _phase_as_read(entity: Mapping[str, Any], etag: str, shards: Mapping[int, _Shard]) -> PhaseRecord:
    """The phase record of its row and shards: counters summed unless the phase is final."""
    record = phase_from_entity(entity, etag)
    counters = _CountersRead(record.finished_tasks, record.failed_tasks, dict(shards))
    if not record.status.is_final:
        record.finished_tasks += counters.shard_finished
        record.failed_tasks += counters.shard_failed
        counters = _CountersRead(record.finished_tasks, record.failed_tasks, counters.shards)
    record.storage_view = counters
    return record


def _counters_read(phase: PhaseRecord) -> _CountersRead | None:
    view = phase.storage_view
    return view if isinstance(view, _CountersRead) else None


def _phase_row_entity(phase: PhaseRecord) -> dict[str, Any]:
    """The phase row for ``phase``: its counters less what the shards held when read, unless
    the phase is final (a final row holds the absolute counts)."""
    entity = phase_entity(phase)
    counters = _counters_read(phase)
    if counters is not None and not phase.status.is_final:
        entity["FinishedTasks"] = phase.finished_tasks - counters.shard_finished
        entity["FailedTasks"] = phase.failed_tasks - counters.shard_failed
    return entity


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
        return _phase_as_read(entity, metadata["etag"], {}), True

    def get_phase(self, run_key: str, phase: Phase) -> PhaseRecord | None:
        # One query reads the phase row and its shards: "phase-pre", then "phase-pre-n<k>"
        # ("." sorts just after "-", and "phase-post" sorts before "phase-pre").
        row = phase_row(phase)
        entities = self._tasks.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": check_key(run_key, "run key"), "lo": row, "hi": f"{row}."},
        )
        main: Mapping[str, Any] | None = None
        shards: dict[int, _Shard] = {}
        prefix = f"{row}-n"
        for entity in entities:
            key = entity["RowKey"]
            if key == row:
                main = entity
            elif key.startswith(prefix) and key[len(prefix) :].isdigit():
                shards[int(key[len(prefix) :])] = _Shard(
                    int(entity.get("FinishedTasks", 0)), int(entity.get("FailedTasks", 0)), entity.metadata["etag"]
                )
        if main is None:
            return None
        return _phase_as_read(main, main.metadata["etag"], shards)

    def replace_phase(self, phase: PhaseRecord) -> PhaseRecord:
        entity = _phase_row_entity(phase)
        etag = self._replace_if_unchanged(
            self._tasks, entity, phase.etag, f"phase {phase.phase.value} of {phase.run_key}"
        )
        counters = _counters_read(phase)
        return _phase_as_read(entity, etag, counters.shards if counters else {})

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
        """Write the task and its phase's counters in one transaction (see the module's rules).

        A planned phase's counters move in the task's shard only, and the phase returned is
        read again after the write: outcomes of tasks in different shards do not see each
        other's increments, so only a read after the write tells the last of them that every
        task is counted (the caller closes the phase from it, :func:`record_outcome`). The
        count it returns may be ahead of the write (other outcomes landed too), never behind.
        """
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError, UpdateMode

        if task.etag is None or phase.etag is None:
            raise RecordChanged(f"task {task.task_id} and its phase: both must be read before this write")
        if task.run_key != phase.run_key:
            raise ValueError("a task and its phase share a run")
        condition = {"mode": UpdateMode.REPLACE, "match_condition": MatchConditions.IfNotModified}
        task_row = task_entity(task)
        operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            ("update", task_row, {**condition, "etag": task.etag})
        ]
        counters = _counters_read(phase)
        sharded = phase.status is PhaseStatus.PLANNED
        if sharded:
            # Planned: only the task's shard, conditional on the shard as read (or created).
            if counters is None:
                raise RecordChanged(f"phase {phase.phase.value} of {phase.run_key}: its counters were not read")
            index = shard_of(task.task_id)
            seen = counters.shards.get(index)
            shard = {
                "PartitionKey": task_row["PartitionKey"],
                "RowKey": shard_row(phase.phase, index),
                "FinishedTasks": (seen.finished if seen else 0) + phase.finished_tasks - counters.finished,
                "FailedTasks": (seen.failed if seen else 0) + phase.failed_tasks - counters.failed,
            }
            operations.append(("update", shard, {**condition, "etag": seen.etag}) if seen else ("create", shard, {}))
        else:
            # Received (or final): the phase row, conditional on its etag. Planning writes that
            # row against the etag it read after counting the task records: an outcome landing
            # in between makes it count again (shared.usecases.planning._mark_planned).
            phase_row_ = _phase_row_entity(phase)
            operations.append(("update", phase_row_, {**condition, "etag": phase.etag}))
        try:
            results = self._tasks.submit_transaction(operations)
        except TableTransactionError as error:
            # 412/404: the task, the phase row or the shard changed or vanished since read;
            # 409: the shard was created meanwhile. Nothing was written either way.
            if error.status_code in (404, 409, 412):
                raise RecordChanged(f"task {task.task_id} or its phase changed since read") from None
            raise
        written_task = task_from_entity(task_row, results[0]["etag"])
        if not sharded:
            return written_task, _phase_as_read(phase_row_, results[1]["etag"], counters.shards if counters else {})
        # Read again, not computed: an outcome in another shard may have landed since this one
        # read the phase, and if this is the last, nobody else would see the phase complete.
        fresh = self.get_phase(phase.run_key, phase.phase)
        if fresh is None:  # deleted since: the task was written, there is no phase to return
            raise RecordChanged(f"phase {phase.phase.value} of {phase.run_key} no longer exists")
        return written_task, fresh

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
