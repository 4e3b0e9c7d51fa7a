"""Run records to table entities and back: one codec per kind of record, plus their keys.

The layout these keys follow is described in :mod:`shared.adapters.table_records`. Lists and
dicts become JSON strings, datetimes ``Edm.DateTime`` in UTC, and ``None`` an absent property.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from shared.adapters.table_values import (
    check_key,
    fit_json_list,
    fit_text,
    from_table_datetime,
    json_property,
    required_datetime,
    to_utc,
    without_none,
)
from shared.models.run import (
    Action,
    Phase,
    PhaseRecord,
    PhaseSource,
    PhaseStatus,
    RunRecord,
    TaskRecord,
    TaskStatus,
)
from shared.ports.records import DeliveryOutcome, DeliveryRecord

__all__ = [
    "RUN_PARTITION",
    "day_partition",
    "delivery_entity",
    "delivery_from_entity",
    "delivery_row_key",
    "delivery_sort_key",
    "phase_entity",
    "phase_from_entity",
    "phase_row",
    "run_entity",
    "run_from_entity",
    "task_entity",
    "task_from_entity",
]

RUN_PARTITION = "run"
"""The partition of the ``RUNS`` table holding the runs themselves (their phases are in
partitions named by run key)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_INVERT_FROM = 10**18 - 1  # microseconds since 1970: 18 digits last until the year 33658


def run_entity(run: RunRecord) -> dict[str, Any]:
    return without_none(
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
            "CancelAccepted": run.cancel_accepted or None,
            "Gate": json_property(run.gate, what=f"gate decision of {run.run_key}") if run.gate else None,
            "PostBeganAt": to_utc(run.post_began_at),
            "StampsPostStart": run.stamps_post_start or None,
        }
    )


def run_from_entity(entity: Mapping[str, Any], etag: str | None = None) -> RunRecord:
    return RunRecord(
        run_key=entity["RowKey"],
        correlation_id=entity["CorrelationId"],
        configuration_id=entity["ConfigurationId"],
        start=required_datetime(entity, "Start"),
        end=required_datetime(entity, "End"),
        subscription_ids=tuple(json.loads(entity.get("SubscriptionIds") or "[]")),
        created_at=required_datetime(entity, "CreatedAt"),
        cancellation_cutoff=from_table_datetime(entity.get("CancellationCutoff")),
        cancel_requested_at=from_table_datetime(entity.get("CancelRequestedAt")),
        cancel_reason=entity.get("CancelReason"),
        cancel_result=entity.get("CancelResult"),
        cancel_accepted=bool(entity.get("CancelAccepted", False)),
        gate=json.loads(entity["Gate"]) if entity.get("Gate") else None,
        post_began_at=from_table_datetime(entity.get("PostBeganAt")),
        stamps_post_start=bool(entity.get("StampsPostStart", False)),
        etag=etag,
    )


def phase_row(phase: Phase) -> str:
    return f"phase-{phase.value}"


def phase_entity(phase: PhaseRecord) -> dict[str, Any]:
    return without_none(
        {
            "PartitionKey": check_key(phase.run_key, "run key"),
            "RowKey": phase_row(phase.phase),
            "Phase": phase.phase.value,
            "Status": phase.status.value,
            "EventId": phase.event_id,
            "ReceivedAt": to_utc(phase.received_at),
            "Source": phase.source.value,
            "EventStatus": phase.event_status,
            "Policy": json_property(phase.policy, what=f"policy of phase {phase.phase.value} of {phase.run_key}"),
            "PlannedAt": to_utc(phase.planned_at),
            "ExpectedTasks": phase.expected_tasks,
            "FinishedTasks": phase.finished_tasks,
            "FailedTasks": phase.failed_tasks,
            "Machines": phase.machines,
            "CompletedAt": to_utc(phase.completed_at),
            "Findings": fit_json_list(phase.findings, what="findings"),
        }
    )


def phase_from_entity(entity: Mapping[str, Any], etag: str | None) -> PhaseRecord:
    return PhaseRecord(
        run_key=entity["PartitionKey"],
        phase=Phase(entity["Phase"]),
        status=PhaseStatus(entity["Status"]),
        event_id=entity.get("EventId", ""),
        received_at=required_datetime(entity, "ReceivedAt"),
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


def task_entity(task: TaskRecord) -> dict[str, Any]:
    return without_none(
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
            "Data": json_property(task.data, what=f"data of task {task.task_id}"),
            "Options": json_property(task.options, what=f"options of task {task.task_id}") if task.options else None,
            "SafetyCritical": task.safety_critical,
        }
    )


def task_from_entity(entity: Mapping[str, Any], etag: str | None) -> TaskRecord:
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
        options=json.loads(entity.get("Options") or "{}"),
        safety_critical=entity.get("SafetyCritical"),
        etag=etag,
    )


def day_partition(day: date) -> str:
    return day.strftime("%Y%m%d")


def delivery_row_key(received_at: datetime) -> str:
    micros = (received_at - _EPOCH) // timedelta(microseconds=1)
    # Inverted, zero-padded: later deliveries get smaller keys, so they sort first.
    return f"{_INVERT_FROM - micros:018d}-{uuid.uuid4().hex[:8]}"


def delivery_sort_key(entity: Mapping[str, Any]) -> datetime:
    return from_table_datetime(entity.get("ReceivedAt")) or _EPOCH


def delivery_entity(delivery: DeliveryRecord) -> dict[str, Any]:
    received_at = to_utc(delivery.received_at)
    return {
        "PartitionKey": day_partition(received_at.date()),
        "RowKey": delivery_row_key(received_at),
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


def delivery_from_entity(entity: Mapping[str, Any]) -> DeliveryRecord:
    return DeliveryRecord(
        received_at=required_datetime(entity, "ReceivedAt"),
        event_id=entity.get("EventId", ""),
        event_type=entity.get("EventType", ""),
        outcome=DeliveryOutcome(entity["Outcome"]),
        reason=entity.get("Reason", ""),
        correlation_id=entity.get("CorrelationId", ""),
        run_key=entity.get("RunKey", ""),
        phase=entity.get("Phase", ""),
        payload=entity.get("Payload", ""),
    )
