"""Supervision: record outcomes, close phases, cancel the run when the safety work failed,
and make sure the post phase runs and finishes even when its event or its messages are lost.

Every decision here is taken from the records, never from a message alone: a message may be
delivered twice, late, or never, and several instances handle them at once.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from shared.errors import MessageRejected, PermanentError, TransientError
from shared.models.events import DEFAULT_CUTOFF_BEFORE_START, format_time, parse_time
from shared.models.messages import CheckPreDeadline, PlanPhase, PostFallback, SafetyNet, TaskOutcome, task_message_for
from shared.models.policy import RunPolicy
from shared.models.run import (
    THEN_OPTION,
    Phase,
    PhaseRecord,
    PhaseSource,
    PhaseStatus,
    RunRecord,
    TaskRecord,
    TaskStatus,
)
from shared.observability import metrics
from shared.ports.azure import RunCancellation
from shared.ports.idempotency import RecordChanged
from shared.ports.records import RunRecords
from shared.ports.transport import WorkTransport

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 20
MAX_HOP = timedelta(days=6)
"""The longest a safety net is hidden in one send: under the 7 days a Storage queue allows."""
SWEEP_INTERVAL = timedelta(minutes=15)
"""How long the post fallback waits before it looks again at a post phase that is not final."""
MAX_SWEEPS = 8
"""Looks after the first: the fallback keeps an eye on the post phase for two hours."""
NUDGE_RESEND = 1000
"""The ``resend`` of a task sent on by :func:`send_on_dependents`: an id no other send of it uses."""
RUN_CANCELLED = "run-cancelled"
"""The :attr:`PostFallback.cause` sent when Update Manager accepted a cancellation."""


# -- outcomes and phases -------------------------------------------------------------------


def record_outcome(
    outcome: TaskOutcome,
    *,
    records: RunRecords,
    cancellation: RunCancellation,
    transport: WorkTransport,
    now: datetime,
) -> bool:
    """Record a task's outcome; close the phase (and maybe cancel the run) when it was the last.

    A task becomes final in the same write as its phase's counters
    (:meth:`RunRecords.replace_task_and_phase`), so the counters never disagree with the task
    records. An outcome for a task that is final already changes nothing but still looks at the
    phase: if the delivery that made it final died before closing the phase, this one closes it.
    Returns True if the task record changed.
    """
    changed = False
    stored: TaskRecord | None = None
    written: PhaseRecord | None = None
    for _ in range(CONFLICT_RETRIES):
        if stored is None:
            stored = records.get_task(outcome.run_key, outcome.task_id)
            if stored is None:
                # Tasks are recorded before their messages are sent: this outcome is not prepost's.
                raise MessageRejected(f"outcome for unknown task {outcome.task_id} of run {outcome.run_key}")
            if stored.status.is_final:
                log.info("outcome for %s ignored: already %s", stored.task_id, stored.status.value)
                break
            task_read_again = True
        task = replace(
            stored,
            status=outcome.status,
            detail=outcome.detail,
            attempts=max(stored.attempts, outcome.attempts),
            started_at=stored.started_at or (parse_time(outcome.started_at) if outcome.started_at else None),
            finished_at=parse_time(outcome.finished_at) if outcome.finished_at else now,
            data={**stored.data, **outcome.data},
        )
        try:
            if outcome.status.is_final:
                phase = records.get_phase(outcome.run_key, outcome.phase)
                if phase is None:
                    raise PermanentError(f"{outcome.phase.value} phase of {outcome.run_key} is not recorded")
                phase.finished_tasks += 1
                phase.failed_tasks += outcome.status is TaskStatus.FAILED
                _, written = records.replace_task_and_phase(task, phase)
            else:
                records.replace_task(task)
        except RecordChanged:
            # Nearly always the phase row, which every final outcome of the phase writes: the
            # next try reads the phase again (above) but keeps the task; if that is not enough
            # either, the task changed too and is read again as well.
            if not outcome.status.is_final or not task_read_again:
                stored = None
            task_read_again = False
            continue
        changed = True
        if not outcome.status.is_final:
            return True
        metrics.task_finished(
            outcome.run_key, outcome.phase.value, outcome.action.value, outcome.status.value, task.attempts
        )
        send_on_dependents(task, records=records, transport=transport)
        break
    else:
        raise TransientError(f"task {outcome.task_id} kept changing while its outcome was recorded")
    finish_phase_if_done(
        outcome.run_key,
        outcome.phase,
        records=records,
        cancellation=cancellation,
        transport=transport,
        now=now,
        known=written,
    )
    return changed


def send_on_dependents(task: TaskRecord, *, records: RunRecords, transport: WorkTransport) -> None:
    """Send on at once the tasks that wait for ``task`` (option ``then``), now that it is final.

    Only a hint: a waiting task also looks again by itself, so a nudge lost to a crash costs
    time, not the task. The fresh ``resend`` keeps Service Bus from taking it for a duplicate.
    """
    waiting = [records.get_task(task.run_key, str(task_id)) for task_id in task.options.get(THEN_OPTION) or []]
    nudges = [task_message_for(t, resend=NUDGE_RESEND) for t in waiting if t is not None and not t.status.is_final]
    if nudges:
        transport.send(nudges)


def complete_phase_if_done(
    run_key: str,
    phase: Phase,
    *,
    records: RunRecords,
    now: datetime,
    recount: bool = False,
    known: PhaseRecord | None = None,
) -> PhaseRecord | None:
    """Close the phase when every task is final, as the task records say.

    The phase's counters are kept exact (see :func:`record_outcome`) and decide cheaply when
    to look; ``recount`` looks at the task records whatever the counters say (the deadline
    check does, so that no drift can ever make it cancel a run whose work is done). ``known``
    is the phase as the caller just wrote it: the first look uses it instead of reading again.
    """
    for _ in range(CONFLICT_RETRIES):
        record = known or records.get_phase(run_key, phase)
        known = None
        if record is None or record.status is not PhaseStatus.PLANNED:
            return None
        if not recount and record.finished_tasks < record.expected_tasks:
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
            closed = records.replace_phase(record)
        except RecordChanged:
            continue
        metrics.phase_finished(run_key, phase.value, closed.status.value, closed.received_at, now, closed.failed_tasks)
        return closed
    raise TransientError(f"phase {phase.value} of {run_key} kept changing")


def finish_phase_if_done(
    run_key: str,
    phase: Phase,
    *,
    records: RunRecords,
    cancellation: RunCancellation,
    transport: WorkTransport,
    now: datetime,
    recount: bool = False,
    known: PhaseRecord | None = None,
) -> PhaseRecord | None:
    """Close the phase if done; after the pre phase, cancel the run if safety work failed.

    With ``known`` (the phase as the caller just wrote it) still open and not closed here, the
    cancellation check is skipped: the phase was not final when written, and whoever closes it
    makes that check (and the deadline check and redeliveries resume it after a crash).
    """
    closed = complete_phase_if_done(run_key, phase, records=records, now=now, recount=recount, known=known)
    if closed is None and known is not None and known.status is PhaseStatus.PLANNED:
        return None
    if phase is Phase.PRE:
        cancel_if_pre_failed(run_key, records=records, cancellation=cancellation, transport=transport, now=now)
    return closed


def cancel_if_pre_failed(
    run_key: str, *, records: RunRecords, cancellation: RunCancellation, transport: WorkTransport, now: datetime
) -> None:
    """Once the pre phase is final, cancel the run if its safety work failed (or it was never planned).

    Safe to call again and again: it acts only while no cancellation decision is recorded. That
    is what makes it resumable: the phase is closed in one write and the cancel decided in a
    later one, so whoever comes next (a redelivered outcome or plan, the deadline check) finishes
    a decision that a crash or a failed cancel call left half-made.
    """
    phase = records.get_phase(run_key, Phase.PRE)
    if phase is None or not phase.status.is_final:
        return
    if records.get_run(run_key).cancel_requested_at is not None:
        return
    if phase.status is PhaseStatus.FAILED:
        why = next((f for f in reversed(phase.findings) if f.startswith("planning failed: ")), "planning failed")
        reason = f"pre phase could not be planned: {why.removeprefix('planning failed: ')}"
        # The policy may be unknown here, and patching blind is what prepost exists to prevent.
        allows = RunPolicy.from_dict(phase.policy).cancel_on_failure if phase.policy else True
    else:
        failed = [
            task
            for task in records.list_tasks(run_key, Phase.PRE)
            if task.status is TaskStatus.FAILED and task.is_safety_critical
        ]
        if not failed:
            return
        names = ", ".join(sorted({task.target.rsplit("/", 1)[-1] for task in failed})[:10])
        reason = f"{len(failed)} pre tasks failed ({names})"
        allows = RunPolicy.from_dict(phase.policy).cancel_on_failure
    cancel_run(
        run_key,
        reason,
        records=records,
        cancellation=cancellation,
        transport=transport,
        now=now,
        policy_allows=allows,
    )


# -- the cancellation deadline ----------------------------------------------------------------


def check_pre_deadline(
    message: CheckPreDeadline,
    *,
    records: RunRecords,
    cancellation: RunCancellation,
    transport: WorkTransport,
    now: datetime,
) -> str:
    """At the cancellation deadline: cancel the run if the pre-work has not finished.

    Patching without a finished snapshot is what this pipeline exists to prevent; Update
    Manager proceeds unless someone cancels. Whether the work finished is read from the task
    records themselves, never from a counter.
    """
    if wait_until_due(message, transport=transport, now=now):
        return f"not due until {message.due}; sent on"
    run_key = message.run_key
    phase = records.get_phase(run_key, Phase.PRE)
    if phase is None:
        return "no pre phase recorded"
    if phase.status.is_final:
        # A failed phase whose cancellation a crash or a failed call left unmade is made now.
        cancel_if_pre_failed(run_key, records=records, cancellation=cancellation, transport=transport, now=now)
        return f"pre phase already {phase.status.value}"
    if phase.status is PhaseStatus.PLANNED:
        closed = finish_phase_if_done(
            run_key, Phase.PRE, records=records, cancellation=cancellation, transport=transport, now=now, recount=True
        )
        if closed is not None:
            return f"pre phase {closed.status.value}"
        pending = [task for task in records.list_tasks(run_key, Phase.PRE) if not task.status.is_final]
        reason = f"pre-work not finished by the cancellation deadline ({len(pending)} tasks pending)"
    else:
        reason = "pre phase was never planned before the cancellation deadline"
    cancel_run(
        run_key,
        reason,
        records=records,
        cancellation=cancellation,
        transport=transport,
        now=now,
        policy_allows=RunPolicy.from_dict(phase.policy).cancel_on_failure,
    )
    return reason


def cancel_run(
    run_key: str,
    reason: str,
    *,
    records: RunRecords,
    cancellation: RunCancellation,
    transport: WorkTransport,
    now: datetime,
    policy_allows: bool = True,
) -> RunRecord:
    """Decide once that the run must be cancelled; cancel it if that can still help; record why.

    The record always says what came of it: the call's answer, or why no call was made (the
    run already started, the post phase already began, the policy says not to). When Update
    Manager accepted, the post phase is started at once: nothing will be patched, so the VMs
    prepost started and the alerts it silenced must not wait for the end of the window.

    Raises:
        TransientError: the cancel call failed in a way worth retrying (the message is retried).
    """
    run = records.get_run(run_key)
    if run.cancel_requested_at is not None:
        if run.cancel_accepted:
            # The delivery that recorded it may have died before the post phase was sent on.
            transport.send([_post_after_cancel(run_key, run.cancel_requested_at)])
        return run
    result, accepted = _cancel(run, records, cancellation, now, policy_allows)
    for _ in range(CONFLICT_RETRIES):
        if run.cancel_requested_at is not None:
            return run  # another instance decided first; the call above was idempotent
        run.cancel_requested_at = now
        run.cancel_reason = reason
        run.cancel_result = result
        run.cancel_accepted = accepted
        try:
            run = records.update_run(run)
            break
        except RecordChanged:
            run = records.get_run(run_key)
    else:
        raise TransientError(f"run {run_key} kept changing while its cancellation was recorded")
    log.warning("run %s cancellation: %s (%s)", run_key, result, reason)
    metrics.run_cancellation(run_key, accepted, result)
    if accepted:
        transport.send([_post_after_cancel(run_key, now)])
    return run


def _post_after_cancel(run_key: str, cancelled_at: datetime) -> PostFallback:
    """The same message (same id) however often it is sent: Service Bus keeps one."""
    return PostFallback(run_key=run_key, due=format_time(cancelled_at), cause=RUN_CANCELLED)


def _cancel(
    run: RunRecord, records: RunRecords, cancellation: RunCancellation, now: datetime, policy_allows: bool
) -> tuple[str, bool]:
    if not policy_allows:
        return "not cancelled: the policy says so (prepost-cancel-on-failure=false)", False
    if now >= run.start:
        return f"too late: the run had already started at {run.start.isoformat()}", False
    post = records.get_phase(run.run_key, Phase.POST)
    if post is not None:
        return f"not cancelled: the post phase began at {post.received_at.isoformat()}, so the run is over", False
    cutoff = min(
        run.cancellation_cutoff or run.start - DEFAULT_CUTOFF_BEFORE_START,
        run.start - DEFAULT_CUTOFF_BEFORE_START,
    )
    try:
        status = cancellation.cancel(run.correlation_id)
    except PermanentError as error:
        return f"cancel refused: {error}", False
    result = f"cancel requested; Update Manager reports {status}"
    if now > cutoff:
        result += f" (after the cut-off {cutoff.isoformat()}: it may not take effect)"
    return result, True


# -- the post phase, whatever happens to its event ----------------------------------------------


def post_fallback(message: PostFallback, *, records: RunRecords, transport: WorkTransport, now: datetime) -> str:
    """After the window plus grace (or at once after a cancellation): see the post phase through.

    - no post phase: start one (source ``fallback``), so started VMs do not keep running;
    - a post phase never planned (its plan message was lost or parked): send the plan again;
    - tasks of either phase still unfinished (their messages lost or parked): send them again,
      as fresh messages; pre tasks are fenced by then and end without acting.

    Until the post phase and every task are final, the message comes back every
    :data:`SWEEP_INTERVAL`, at most :data:`MAX_SWEEPS` times.
    """
    if wait_until_due(message, transport=transport, now=now):
        return f"not due until {message.due}; sent on"
    run_key = message.run_key
    fresh = message.sweep + 1  # a resend number no earlier send of these messages used
    existing = records.get_phase(run_key, Phase.POST)
    created = False
    if existing is None:
        cause = (
            "the run was cancelled; post phase run by prepost at once"
            if message.cause == RUN_CANCELLED
            else "no post-event arrived by the end of the window plus grace; post phase run by prepost"
        )
        existing, created = records.create_phase(
            PhaseRecord(
                run_key=run_key,
                phase=Phase.POST,
                status=PhaseStatus.RECEIVED,
                event_id="(none: post-event not received)",
                received_at=now,
                source=PhaseSource.FALLBACK,
                findings=[cause],
            )
        )
    result = "post phase started by fallback" if created else f"post phase {existing.status.value}"
    if existing.status is PhaseStatus.RECEIVED:
        # Not created just now: its plan message was lost or parked. Send it as a fresh message.
        transport.send([PlanPhase(run_key=run_key, phase=Phase.POST, resend=0 if created else fresh)])
        result += "; plan sent"
    unfinished = [task for task in records.list_tasks(run_key) if not task.status.is_final]
    # On the first look a planned post phase may simply be at work; from the second look on
    # (or once the post phase is final) an unfinished task has lost its message.
    if unfinished and (message.sweep > 0 or existing.status.is_final):
        transport.send([task_message_for(task, resend=fresh) for task in unfinished])
        result += f"; {len(unfinished)} unfinished tasks sent again"
    settled = existing.status.is_final and not unfinished
    if not settled and message.sweep < MAX_SWEEPS:
        transport.send([message.next_sweep(now + SWEEP_INTERVAL)], delay=SWEEP_INTERVAL)
    elif not settled:
        log.error(
            "run %s: post phase still %s after %d looks; left for an operator",
            run_key,
            existing.status.value,
            MAX_SWEEPS + 1,
        )
    return result


def wait_until_due(message: SafetyNet, *, transport: WorkTransport, now: datetime) -> bool:
    """True (and the message sent on) when ``message`` arrived before it is due.

    Sending on in hops of at most :data:`MAX_HOP` lets a safety net wait longer than a
    transport can hide a message (7 days on Storage queues), and keeps an early replay from
    acting before its time.
    """
    due = message.due_at()
    if due is None or now >= due:
        return False
    transport.send([message.resent()], delay=min(due - now, MAX_HOP))
    return True
