"""What prepost recorded about a run, as one JSON-ready object (for the CLI and the demo)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from shared.models.events import format_time
from shared.models.ids import run_key
from shared.models.run import Phase
from shared.ports.records import RunNotFound, RunRecords


def resolve_run_key(identifier: str, records: RunRecords) -> str:
    """Accept a correlation id (any casing) or a run key; raise RunNotFound if neither is known."""
    candidates = [run_key(identifier)] if identifier.strip().startswith("/") else [identifier.strip()]
    for candidate in candidates:
        try:
            records.get_run(candidate)
            return candidate
        except RunNotFound:
            continue
    raise RunNotFound(f"no run recorded for {identifier}")


def run_report(key: str, records: RunRecords) -> dict[str, Any]:
    """The run, its phases with counts and findings, and every task."""
    run = records.get_run(key)
    phases = []
    for phase in Phase:
        record = records.get_phase(key, phase)
        if record is None:
            continue
        phases.append(
            {
                "phase": phase.value,
                "status": record.status.value,
                "source": record.source.value,
                "eventId": record.event_id,
                "eventStatus": record.event_status,
                "receivedAt": _time(record.received_at),
                "plannedAt": _time(record.planned_at),
                "completedAt": _time(record.completed_at),
                "machines": record.machines,
                "expectedTasks": record.expected_tasks,
                "policy": record.policy,
                "findings": record.findings,
            }
        )
    tasks = []
    for task in records.list_tasks(key):
        tasks.append(
            {
                "taskId": task.task_id,
                "resourceId": task.target,
                "phase": task.phase.value,
                "action": task.action.value,
                "status": task.status.value,
                "detail": task.detail,
                "attempts": task.attempts,
                "startedAt": _time(task.started_at),
                "finishedAt": _time(task.finished_at),
                "data": task.data,
            }
        )
    for phase in phases:
        counts = Counter(t["status"] for t in tasks if t["phase"] == phase["phase"])
        phase["taskCounts"] = dict(sorted(counts.items()))
    return {
        "runKey": run.run_key,
        "correlationId": run.correlation_id,
        "configurationId": run.configuration_id,
        "configuration": run.configuration_name,
        "start": _time(run.start),
        "end": _time(run.end),
        "cancellationCutoff": _time(run.cancellation_cutoff),
        "subscriptionIds": list(run.subscription_ids),
        "cancellation": None
        if run.cancel_requested_at is None
        else {
            "requestedAt": _time(run.cancel_requested_at),
            "reason": run.cancel_reason,
            "result": run.cancel_result,
            "accepted": run.cancel_accepted,
        },
        # The readiness gate's decision: proceed or cancel, when, and the machines it was about.
        "gate": run.gate,
        "phases": phases,
        "tasks": tasks,
    }


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value else None
