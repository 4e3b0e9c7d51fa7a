"""Supervision: record outcomes, close phases, cancel the run when the safety work failed,
and run the post phase when its event never comes."""

from __future__ import annotations

import logging
from datetime import datetime

from shared.errors import PermanentError, TransientError
from shared.models.events import DEFAULT_CUTOFF_BEFORE_START, parse_time
from shared.models.messages import PlanPhase, TaskOutcome
from shared.models.policy import RunPolicy
from shared.models.run import Phase, PhaseRecord, PhaseSource, PhaseStatus, TaskStatus
from shared.ports.azure import RunCancellation
from shared.ports.idempotency import RecordChanged
from shared.ports.records import RunRecords
from shared.ports.transport import WorkTransport

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 20


def record_outcome(outcome: TaskOutcome, *, records: RunRecords, cancellation: RunCancellation, now: datetime) -> bool:
    """Record a task's outcome; close the phase (and maybe cancel the run) when it was the last.

    Idempotent: an outcome for a task that already has a final status changes nothing, so a
    duplicated outcome message cannot count twice. Returns True if the record changed.
    """
    became_final = False
    for _ in range(CONFLICT_RETRIES):
        task = records.get_task(outcome.run_key, outcome.task_id)
        if task is None:
            raise PermanentError(f"outcome for unknown task {outcome.task_id} of run {outcome.run_key}")
        if task.status.is_final:
            log.info("outcome for %s ignored: already %s", task.task_id, task.status.value)
            return False
        task.status = outcome.status
        task.detail = outcome.detail
        task.attempts = max(task.attempts, outcome.attempts)
        task.started_at = task.started_at or (parse_time(outcome.started_at) if outcome.started_at else None)
        task.finished_at = parse_time(outcome.finished_at) if outcome.finished_at else now
        task.data = {**task.data, **outcome.data}
        try:
            records.replace_task(task)
            became_final = outcome.status.is_final
            break
        except RecordChanged:
            continue
    else:
        raise TransientError(f"task {outcome.task_id} kept changing while its outcome was recorded")

    if became_final:
        _count_finished(outcome, records)
        finish_phase_if_done(outcome.run_key, outcome.phase, records=records, cancellation=cancellation, now=now)
    return True


def _count_finished(outcome: TaskOutcome, records: RunRecords) -> None:
    for _ in range(CONFLICT_RETRIES):
        phase = records.get_phase(outcome.run_key, outcome.phase)
        if phase is None:
            return
        phase.finished_tasks += 1
        if outcome.status is TaskStatus.FAILED:
            phase.failed_tasks += 1
        try:
            records.replace_phase(phase)
            return
        except RecordChanged:
            continue
    raise TransientError(f"phase {outcome.phase.value} of {outcome.run_key} kept changing")


def complete_phase_if_done(run_key: str, phase: Phase, *, records: RunRecords, now: datetime) -> PhaseRecord | None:
    """Close the phase when every task is final (counted from the task records themselves).

    The counters on the phase only decide when to look; the task records are the truth, so a
    lost counter update delays nothing past the next outcome or the deadline check.
    """
    for _ in range(CONFLICT_RETRIES):
        record = records.get_phase(run_key, phase)
        if record is None or record.status is not PhaseStatus.PLANNED:
            return None
        if record.finished_tasks < record.expected_tasks:
            return None
        tasks = records.list_tasks(run_key, phase)
        if any(not task.status.is_final for task in tasks):
            return None
        failed = [task for task in tasks if task.status is TaskStatus.FAILED]
        record.status = PhaseStatus.COMPLETED_WITH_FAILURES if failed else PhaseStatus.COMPLETED
        record.completed_at = now
        record.finished_tasks = len(tasks)
        record.failed_tasks = len(failed)
        try:
            return records.replace_phase(record)
        except RecordChanged:
            continue
    raise TransientError(f"phase {phase.value} of {run_key} kept changing")


def finish_phase_if_done(
    run_key: str, phase: Phase, *, records: RunRecords, cancellation: RunCancellation, now: datetime
) -> PhaseRecord | None:
    """Close the phase if done; after the pre phase, cancel the run if safety work failed."""
    closed = complete_phase_if_done(run_key, phase, records=records, now=now)
    if closed is None or phase is not Phase.PRE:
        return closed
    policy = RunPolicy.from_dict(closed.policy)
    failed = [
        task
        for task in records.list_tasks(run_key, Phase.PRE)
        if task.status is TaskStatus.FAILED and task.action.is_safety_critical
    ]
    if failed and policy.cancel_on_failure:
        names = ", ".join(sorted({task.target.rsplit("/", 1)[-1] for task in failed})[:10])
        cancel_run(
            run_key,
            f"{len(failed)} pre tasks failed ({names})",
            records=records,
            cancellation=cancellation,
            now=now,
        )
    return closed


def check_pre_deadline(run_key: str, *, records: RunRecords, cancellation: RunCancellation, now: datetime) -> str:
    """At the cancellation deadline: cancel the run if the pre-work has not finished.

    Patching without a finished snapshot is what this pipeline exists to prevent; Update
    Manager proceeds unless someone cancels.
    """
    phase = records.get_phase(run_key, Phase.PRE)
    if phase is None:
        return "no pre phase recorded"
    if phase.status is PhaseStatus.PLANNED:
        closed = finish_phase_if_done(run_key, Phase.PRE, records=records, cancellation=cancellation, now=now)
        if closed is not None:
            return f"pre phase {closed.status.value}"
    elif phase.status.is_final:
        return f"pre phase already {phase.status.value}"
    policy = RunPolicy.from_dict(phase.policy)
    pending = [task for task in records.list_tasks(run_key, Phase.PRE) if not task.status.is_final]
    reason = (
        f"pre-work not finished by the cancellation deadline ({len(pending)} tasks pending)"
        if phase.status is PhaseStatus.PLANNED
        else "pre phase was never planned before the cancellation deadline"
    )
    if not policy.cancel_on_failure:
        _add_finding(run_key, Phase.PRE, reason + "; not cancelled (prepost-cancel-on-failure=false)", records)
        return reason
    cancel_run(run_key, reason, records=records, cancellation=cancellation, now=now)
    return reason


def cancel_run(run_key: str, reason: str, *, records: RunRecords, cancellation: RunCancellation, now: datetime) -> None:
    """Cancel the scheduled run once, if it is not too late, and record what happened."""
    run = records.get_run(run_key)
    if run.cancel_requested_at is not None:
        return
    cutoff = min(
        run.cancellation_cutoff or run.start - DEFAULT_CUTOFF_BEFORE_START,
        run.start - DEFAULT_CUTOFF_BEFORE_START,
    )
    run.cancel_requested_at = now
    run.cancel_reason = reason
    if now >= run.start:
        run.cancel_result = "too late: the run had already started"
    else:
        try:
            status = cancellation.cancel(run.correlation_id)
            run.cancel_result = f"cancel requested; Update Manager reports {status}"
            if now > cutoff:
                run.cancel_result += f" (after the cut-off {cutoff.isoformat()}: it may not take effect)"
        except PermanentError as error:
            run.cancel_result = f"cancel refused: {error}"
    log.warning("run %s cancellation: %s (%s)", run_key, run.cancel_result, reason)
    records.update_run(run)


def post_fallback(run_key: str, *, records: RunRecords, transport: WorkTransport, now: datetime) -> str:
    """After the window plus grace: run the post phase if its event never came.

    Started VMs would otherwise keep running and billing; the alert suppression ends by itself
    (its schedule), but removing the rule keeps the subscription tidy.
    """
    existing = records.get_phase(run_key, Phase.POST)
    if existing is not None:
        return f"post phase already {existing.status.value}"
    phase, created = records.create_phase(
        PhaseRecord(
            run_key=run_key,
            phase=Phase.POST,
            status=PhaseStatus.RECEIVED,
            event_id="(none: post-event not received)",
            received_at=now,
            source=PhaseSource.FALLBACK,
            findings=["no post-event arrived by the end of the window plus grace; post phase run by prepost"],
        )
    )
    if created or phase.status is PhaseStatus.RECEIVED:
        transport.send([PlanPhase(run_key=run_key, phase=Phase.POST)])
    return "post phase started by fallback"


def _add_finding(run_key: str, phase: Phase, finding: str, records: RunRecords) -> None:
    for _ in range(CONFLICT_RETRIES):
        record = records.get_phase(run_key, phase)
        if record is None or finding in record.findings:
            return
        record.findings.append(finding)
        try:
            records.replace_phase(record)
            return
        except RecordChanged:
            continue
