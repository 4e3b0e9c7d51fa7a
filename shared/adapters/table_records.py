"""The run records port on Azure Table storage (azure-data-tables).

Layout (one name per concept: the tables are :class:`shared.names.TableName`):

=============  ===================  =============================================
table          PartitionKey         RowKey
=============  ===================  =============================================
``RUNS``       ``run``              run key                       (the runs)
``RUNS``       run key              ``phase-pre`` / ``phase-post`` (their phases)
``TASKS``      run key              task id
``MACHINES``   run key              short hash of the resource id
``EVENTS``     ``yyyyMMdd`` (UTC)   inverted timestamp + short uuid (newest first)
=============  ===================  =============================================

Conditional writes use the entity's ETag (``If-Match``), so two handlers updating the same
phase or task never lose each other's changes: the loser gets
:class:`~shared.ports.idempotency.RecordChanged` and re-reads. Lists and dicts are stored as
JSON strings, datetimes as ``Edm.DateTime`` in UTC. A string property holds at most 64 KiB
(32,768 UTF-16 code units, checked by Azurite too): free text is cut to fit and says so.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, overload

from shared.clock import utcnow
from shared.errors import PermanentError
from shared.models.ids import ResourceId
from shared.models.run import (
    Action,
    MachineRecord,
    Phase,
    PhaseRecord,
    PhaseSource,
    PhaseStatus,
    RunRecord,
    TaskRecord,
    TaskStatus,
)
from shared.names import TableName
from shared.ports.idempotency import RecordChanged
from shared.ports.records import DeliveryOutcome, DeliveryRecord, RunNotFound, RunRecords

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from shared.adapters.storage_clients import StorageClients

__all__ = ["TableRunRecords", "check_key", "fit_text", "from_table_datetime", "to_utc"]

RUN_PARTITION = "run"
TRANSACTION_MAX_OPERATIONS = 100
"""Azure's limit of operations in one entity group transaction (all in one partition)."""
TRANSACTION_MAX_BYTES = 3 * 1024 * 1024
"""Stay well under the 4 MiB limit of a transaction's payload."""
MAX_PROPERTY_UNITS = 32 * 1024
"""64 KiB per string property, counted in UTF-16 code units (2 bytes each)."""
RECENT_DELIVERY_DAYS = 7
"""Days :meth:`TableRunRecords.list_deliveries` reads one partition at a time before it
falls back to scanning the older partitions."""

# Characters Azure Tables forbid in PartitionKey and RowKey.
_FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_MAX_KEY_LENGTH = 512  # 1 KiB in UTF-16
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_INVERT_FROM = 10**18 - 1  # microseconds since 1970: 18 digits last until the year 33658


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

        entity = _run_entity(run)
        try:
            self._runs.create_entity(entity)
        except ResourceExistsError:
            return self.get_run(run.run_key), False
        return _run_from_entity(entity), True

    def get_run(self, run_key: str) -> RunRecord:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._runs.get_entity(RUN_PARTITION, check_key(run_key, "run key"))
        except ResourceNotFoundError:
            raise RunNotFound(run_key) from None
        return _run_from_entity(entity)

    def update_run(self, run: RunRecord) -> None:
        from azure.data.tables import UpdateMode

        # REPLACE, not MERGE: a field set back to None must disappear from the entity.
        self._runs.upsert_entity(_run_entity(run), mode=UpdateMode.REPLACE)

    def list_runs(self, *, limit: int = 50) -> list[RunRecord]:
        if limit <= 0:
            return []
        entities = self._runs.query_entities("PartitionKey eq @pk", parameters={"pk": RUN_PARTITION})
        # Row keys sort by configuration name, not by time: pick the newest starts while
        # streaming, holding at most ``limit`` runs in memory.
        runs = (_run_from_entity(entity) for entity in entities)
        return heapq.nlargest(limit, runs, key=lambda run: run.start)

    # -- phases -----------------------------------------------------------------------

    def create_phase(self, phase: PhaseRecord) -> tuple[PhaseRecord, bool]:
        from azure.core.exceptions import ResourceExistsError

        entity = _phase_entity(phase)
        try:
            metadata = self._runs.create_entity(entity)
        except ResourceExistsError:
            stored = self.get_phase(phase.run_key, phase.phase)
            if stored is None:  # deleted in between: nothing sensible to return but an error
                raise RecordChanged(f"phase {phase.phase.value} of {phase.run_key}") from None
            return stored, False
        return _phase_from_entity(entity, metadata["etag"]), True

    def get_phase(self, run_key: str, phase: Phase) -> PhaseRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._runs.get_entity(check_key(run_key, "run key"), _phase_row(phase))
        except ResourceNotFoundError:
            return None
        return _phase_from_entity(entity, entity.metadata["etag"])

    def replace_phase(self, phase: PhaseRecord) -> PhaseRecord:
        entity = _phase_entity(phase)
        etag = self._replace_if_unchanged(
            self._runs, entity, phase.etag, f"phase {phase.phase.value} of {phase.run_key}"
        )
        return _phase_from_entity(entity, etag)

    # -- tasks ------------------------------------------------------------------------

    def add_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        _create_missing(self._tasks, [_task_entity(task) for task in tasks])

    def get_task(self, run_key: str, task_id: str) -> TaskRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._tasks.get_entity(check_key(run_key, "run key"), check_key(task_id, "task id"))
        except ResourceNotFoundError:
            return None
        return _task_from_entity(entity, entity.metadata["etag"])

    def replace_task(self, task: TaskRecord) -> TaskRecord:
        from azure.core.exceptions import ResourceExistsError

        entity = _task_entity(task)
        if task.etag is None:
            # No etag: the caller believes the task does not exist yet (create, never overwrite).
            try:
                metadata = self._tasks.create_entity(entity)
            except ResourceExistsError:
                raise RecordChanged(f"task {task.task_id} of {task.run_key} already exists") from None
            return _task_from_entity(entity, metadata["etag"])
        etag = self._replace_if_unchanged(self._tasks, entity, task.etag, f"task {task.task_id} of {task.run_key}")
        return _task_from_entity(entity, etag)

    def list_tasks(self, run_key: str, phase: Phase | None = None) -> list[TaskRecord]:
        query = "PartitionKey eq @pk"
        parameters = {"pk": check_key(run_key, "run key")}
        if phase is not None:
            query += " and Phase eq @phase"
            parameters["phase"] = phase.value
        found = [
            _task_from_entity(entity, entity.metadata["etag"])
            for entity in self._tasks.query_entities(query, parameters=parameters)
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
        _create_missing(self._machines, entities)

    def list_machines(self, run_key: str) -> list[MachineRecord]:
        entities = self._machines.query_entities(
            "PartitionKey eq @pk", parameters={"pk": check_key(run_key, "run key")}, select=["ResourceId"]
        )
        return [MachineRecord(run_key, entity["ResourceId"]) for entity in entities]

    # -- the intake's delivery log ----------------------------------------------------

    def record_delivery(self, delivery: DeliveryRecord) -> None:
        from azure.core.exceptions import ResourceExistsError

        entity = _delivery_entity(delivery)
        for _ in range(3):
            try:
                self._events.create_entity(entity)
                return
            except ResourceExistsError:
                # Same microsecond and same 8 hex digits of a uuid4: vanishingly rare, but
                # a log entry must not be lost, so draw another suffix.
                entity["RowKey"] = _delivery_row_key(to_utc(delivery.received_at))
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
                "PartitionKey eq @pk", parameters={"pk": _day_partition(day)}, results_per_page=min(wanted, 1000)
            )
            found.extend(_delivery_from_entity(entity) for entity in _take(pages, wanted))
            day -= timedelta(days=1)
        if len(found) < limit:
            rest = self._events.query_entities(
                "PartitionKey lt @oldest or PartitionKey gt @newest",
                parameters={"oldest": _day_partition(oldest), "newest": _day_partition(newest)},
            )
            entities = heapq.nlargest(limit - len(found), rest, key=_delivery_sort_key)
            found.extend(_delivery_from_entity(entity) for entity in entities)
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


# -- batches ----------------------------------------------------------------------------


def _create_missing(table: TableClient, entities: Iterable[dict[str, Any]]) -> None:
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


def _take(items: Iterable[Any], count: int) -> Iterator[Any]:
    """The first ``count`` items, without asking the service for another page."""
    if count <= 0:
        return
    for index, item in enumerate(items, start=1):
        yield item
        if index >= count:
            return


# -- entity <-> record ------------------------------------------------------------------


def _run_entity(run: RunRecord) -> dict[str, Any]:
    return _without_none(
        {
            "PartitionKey": RUN_PARTITION,
            "RowKey": check_key(run.run_key, "run key"),
            "CorrelationId": run.correlation_id,
            "ConfigurationId": run.configuration_id,
            "Start": to_utc(run.start),
            "End": to_utc(run.end),
            "SubscriptionIds": json.dumps(list(run.subscription_ids)),
            "CreatedAt": to_utc(run.created_at),
            "CancellationCutoff": to_utc(run.cancellation_cutoff),
            "CancelRequestedAt": to_utc(run.cancel_requested_at),
            "CancelReason": fit_text(run.cancel_reason, what="cancel reason"),
            "CancelResult": fit_text(run.cancel_result, what="cancel result"),
        }
    )


def _run_from_entity(entity: Mapping[str, Any]) -> RunRecord:
    return RunRecord(
        run_key=entity["RowKey"],
        correlation_id=entity["CorrelationId"],
        configuration_id=entity["ConfigurationId"],
        start=_required_datetime(entity, "Start"),
        end=_required_datetime(entity, "End"),
        subscription_ids=tuple(json.loads(entity.get("SubscriptionIds") or "[]")),
        created_at=_required_datetime(entity, "CreatedAt"),
        cancellation_cutoff=from_table_datetime(entity.get("CancellationCutoff")),
        cancel_requested_at=from_table_datetime(entity.get("CancelRequestedAt")),
        cancel_reason=entity.get("CancelReason"),
        cancel_result=entity.get("CancelResult"),
    )


def _phase_row(phase: Phase) -> str:
    return f"phase-{phase.value}"


def _phase_entity(phase: PhaseRecord) -> dict[str, Any]:
    return _without_none(
        {
            "PartitionKey": check_key(phase.run_key, "run key"),
            "RowKey": _phase_row(phase.phase),
            "Phase": phase.phase.value,
            "Status": phase.status.value,
            "EventId": phase.event_id,
            "ReceivedAt": to_utc(phase.received_at),
            "Source": phase.source.value,
            "EventStatus": phase.event_status,
            "Policy": _json_property(phase.policy, what=f"policy of phase {phase.phase.value} of {phase.run_key}"),
            "PlannedAt": to_utc(phase.planned_at),
            "ExpectedTasks": phase.expected_tasks,
            "FinishedTasks": phase.finished_tasks,
            "FailedTasks": phase.failed_tasks,
            "Machines": phase.machines,
            "CompletedAt": to_utc(phase.completed_at),
            "Findings": _fit_json_list(phase.findings, what="findings"),
        }
    )


def _phase_from_entity(entity: Mapping[str, Any], etag: str | None) -> PhaseRecord:
    return PhaseRecord(
        run_key=entity["PartitionKey"],
        phase=Phase(entity["Phase"]),
        status=PhaseStatus(entity["Status"]),
        event_id=entity.get("EventId", ""),
        received_at=_required_datetime(entity, "ReceivedAt"),
        source=PhaseSource(entity.get("Source", PhaseSource.EVENT.value)),
        event_status=entity.get("EventStatus"),
        policy=json.loads(entity.get("Policy") or "{}"),
        planned_at=from_table_datetime(entity.get("PlannedAt")),
        expected_tasks=int(entity.get("ExpectedTasks", 0)),
        finished_tasks=int(entity.get("FinishedTasks", 0)),
        failed_tasks=int(entity.get("FailedTasks", 0)),
        machines=int(entity.get("Machines", 0)),
        completed_at=from_table_datetime(entity.get("CompletedAt")),
        findings=list(json.loads(entity.get("Findings") or "[]")),
        etag=etag,
    )


def _task_entity(task: TaskRecord) -> dict[str, Any]:
    return _without_none(
        {
            "PartitionKey": check_key(task.run_key, "run key"),
            "RowKey": check_key(task.task_id, "task id"),
            "Phase": task.phase.value,
            "Action": task.action.value,
            "Target": task.target,
            "Status": task.status.value,
            "Detail": fit_text(task.detail, what="detail"),
            "Attempts": task.attempts,
            "QueuedAt": to_utc(task.queued_at),
            "StartedAt": to_utc(task.started_at),
            "FinishedAt": to_utc(task.finished_at),
            "Data": _json_property(task.data, what=f"data of task {task.task_id}"),
        }
    )


def _task_from_entity(entity: Mapping[str, Any], etag: str | None) -> TaskRecord:
    return TaskRecord(
        run_key=entity["PartitionKey"],
        phase=Phase(entity["Phase"]),
        action=Action(entity["Action"]),
        target=entity["Target"],
        status=TaskStatus(entity["Status"]),
        detail=entity.get("Detail", ""),
        attempts=int(entity.get("Attempts", 0)),
        queued_at=from_table_datetime(entity.get("QueuedAt")),
        started_at=from_table_datetime(entity.get("StartedAt")),
        finished_at=from_table_datetime(entity.get("FinishedAt")),
        data=json.loads(entity.get("Data") or "{}"),
        etag=etag,
    )


def _day_partition(day: date) -> str:
    return day.strftime("%Y%m%d")


def _delivery_row_key(received_at: datetime) -> str:
    micros = (received_at - _EPOCH) // timedelta(microseconds=1)
    # Inverted, zero-padded: later deliveries get smaller keys, so they sort first.
    return f"{_INVERT_FROM - micros:018d}-{uuid.uuid4().hex[:8]}"


def _delivery_sort_key(entity: Mapping[str, Any]) -> datetime:
    return from_table_datetime(entity.get("ReceivedAt")) or _EPOCH


def _delivery_entity(delivery: DeliveryRecord) -> dict[str, Any]:
    received_at = to_utc(delivery.received_at)
    return {
        "PartitionKey": _day_partition(received_at.date()),
        "RowKey": _delivery_row_key(received_at),
        "ReceivedAt": received_at,
        "EventId": fit_text(delivery.event_id, what="event id"),
        "EventType": fit_text(delivery.event_type, what="event type"),
        "Outcome": delivery.outcome.value,
        "Reason": fit_text(delivery.reason, what="reason"),
        "CorrelationId": fit_text(delivery.correlation_id, what="correlation id"),
        "RunKey": delivery.run_key,
        "Phase": delivery.phase,
        "Payload": fit_text(delivery.payload, what="payload"),
    }


def _delivery_from_entity(entity: Mapping[str, Any]) -> DeliveryRecord:
    return DeliveryRecord(
        received_at=_required_datetime(entity, "ReceivedAt"),
        event_id=entity.get("EventId", ""),
        event_type=entity.get("EventType", ""),
        outcome=DeliveryOutcome(entity["Outcome"]),
        reason=entity.get("Reason", ""),
        correlation_id=entity.get("CorrelationId", ""),
        run_key=entity.get("RunKey", ""),
        phase=entity.get("Phase", ""),
        payload=entity.get("Payload", ""),
    )


# -- values -----------------------------------------------------------------------------


@overload
def to_utc(value: datetime) -> datetime: ...
@overload
def to_utc(value: None) -> None: ...
def to_utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; a naive datetime is taken to be UTC already.

    (The SDK would take a naive datetime as local time, which differs between a developer's
    machine and Azure.)
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def from_table_datetime(value: Any) -> datetime | None:
    """A plain, timezone-aware UTC ``datetime`` from what the SDK returns for ``Edm.DateTime``.

    The SDK returns a ``datetime`` subclass that remembers the service's string and writes
    that string back instead of the value; a plain datetime keeps records comparable and
    copyable like any other.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    value = to_utc(value)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        timezone.utc,
    )


def _required_datetime(entity: Mapping[str, Any], name: str) -> datetime:
    value = from_table_datetime(entity.get(name))
    if value is None:
        raise PermanentError(f"stored entity {entity.get('PartitionKey')}/{entity.get('RowKey')} has no {name}")
    return value


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@overload
def fit_text(value: str, *, what: str, limit: int = ...) -> str: ...
@overload
def fit_text(value: None, *, what: str, limit: int = ...) -> None: ...
def fit_text(value: str | None, *, what: str, limit: int = MAX_PROPERTY_UNITS) -> str | None:
    """``value`` cut to fit one Table string property, ending with a note saying so.

    The note says how much was kept, so nobody mistakes a cut payload for the whole event.
    """
    if value is None:
        return None
    if len(value) * 2 <= limit or _utf16_units(value) <= limit:
        return value
    total = len(value)
    note = f"\n[{what} truncated by prepost: first {{kept}} of {total} characters kept; a table property holds 64 KiB]"
    budget = limit - _utf16_units(note.format(kept=total))
    # Cut on the UTF-16 encoding; "ignore" drops half a surrogate pair left at the cut.
    kept_text = value.encode("utf-16-le")[: 2 * budget].decode("utf-16-le", errors="ignore")
    return kept_text + note.format(kept=len(kept_text))


def _fit_json_list(items: Sequence[str], *, what: str) -> str:
    """A JSON list that fits one property: the last items give way to a note counting them."""
    encoded = json.dumps(list(items))
    if _utf16_units(encoded) <= MAX_PROPERTY_UNITS:
        return encoded
    kept: list[str] = []
    size = 2  # the brackets
    reserve = 200  # room for the note
    for item in items:
        item = fit_text(item, what=what[:-1] if what.endswith("s") else what, limit=MAX_PROPERTY_UNITS // 4) or ""
        item_size = _utf16_units(json.dumps(item)) + 2
        if size + item_size > MAX_PROPERTY_UNITS - reserve:
            break
        kept.append(item)
        size += item_size
    dropped = len(items) - len(kept)
    kept.append(f"[{dropped} more {what} not stored by prepost: a table property holds 64 KiB]")
    return json.dumps(kept)


def _json_property(value: Any, *, what: str) -> str:
    """``value`` as JSON for one property; structured data cannot be cut, so it must fit."""
    encoded = json.dumps(value, default=str, separators=(",", ":"))
    if _utf16_units(encoded) > MAX_PROPERTY_UNITS:
        raise PermanentError(
            f"{what} is {_utf16_units(encoded) * 2:,} bytes as JSON; a table property holds at most 65,536"
        )
    return encoded


def check_key(value: str, what: str) -> str:
    """``value`` if Azure Tables accept it as a PartitionKey or RowKey, else a precise error."""
    if not value:
        raise PermanentError(f"{what} must not be empty")
    if len(value) > _MAX_KEY_LENGTH:
        raise PermanentError(f"{what} is {len(value)} characters; table keys hold at most {_MAX_KEY_LENGTH}")
    bad = _FORBIDDEN_KEY_CHARS.search(value)
    if bad:
        raise PermanentError(f"{what} {value!r} contains {bad.group()!r}, which table keys may not contain")
    return value


def _without_none(entity: dict[str, Any]) -> dict[str, Any]:
    # Tables have no null: an absent property reads back as None.
    return {name: value for name, value in entity.items() if value is not None}
