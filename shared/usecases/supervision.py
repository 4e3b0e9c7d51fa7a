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
from shared.models.gate import GateDecision, GateVerdict
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
from shared.ports.records import RunNotFound, RunRecords
from shared.ports.transport import WorkTransport
from shared.usecases.fences import mark_post_began
from shared.usecases.gate import GateAssessment, assess, budget_of, may_be_exceeded

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
PRE_CLOSED_RESEND = 1001
"""The ``resend`` of the post phase's plan sent when the pre phase closes (:func:`send_waiting_post_on`)."""
CLAIM_LEASE = timedelta(seconds=60)
"""How long a claimed cancellation is left to the delivery that claimed it before another finishes it."""
RUN_CANCELLED = "run-cancelled"
"""The :attr:`PostFallback.cause` sent when Update Manager accepted a cancellation."""
DEFAULT_CANCEL_MARGIN = timedelta(minutes=2)
"""The margin before the cut-off when none is given (``PREPOST_CANCEL_MARGIN_MINUTES``'s default)."""


# -- outcomes and phases -------------------------------------------------------------------


def record_outcome(
    outcome: TaskOutcome,
    *,
    records: RunRecords,
    cancellation: RunCancellation,
    transport: WorkTransport,
    now: datetime,
    known_task: TaskRecord | None = None,
) -> bool:
    """Record a task's outcome; close the phase (and maybe cancel the run) when it was the last.

    A task becomes final in the same write as its phase's counters
    (:meth:`RunRecords.replace_task_and_phase`), so the counters never disagree with the task
    records. An outcome for a task that is final already changes nothing but still looks at the
    phase: if the delivery that made it final died before closing the phase, this one closes it.
    ``known_task`` is the task as the delivery that produced the outcome last read or wrote it
    (:class:`~shared.usecases.delivery_records.DeliveryRecords`): the first write goes against
    it instead of a fresh read; if it is stale, that write fails on its etag and the task is read.
    Returns True if the task record changed.
    """
    changed = False
    stored: TaskRecord | None = None
    written: PhaseRecord | None = None
    for _ in range(CONFLICT_RETRIES):
        if stored is None:
            stored = known_task or records.get_task(outcome.run_key, outcome.task_id)
            known_task = None  # used once: after a conflict the task is read
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
            # either, the task changed too (or the delivery's copy of it was stale) and is read
            # again as well.
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
        # A failure may exceed the error budget while the phase is still open: the gate then
        # decides at once, so only a success may skip the check (docs/policy.md).
        known=written if outcome.status is not TaskStatus.FAILED else None,
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
        if closed is not None:
            send_waiting_post_on(run_key, records=records, transport=transport)
    return closed


def send_waiting_post_on(run_key: str, *, records: RunRecords, transport: WorkTransport) -> None:
    """Plan a post phase that waits for the pre phase now, rather than at its next look.

    A post phase received before the pre-work settled (a post-event that overtook it, or the
    fallback sent at once by an accepted cancellation) looks again every few minutes; the pre
    phase closing is the moment it can go. Only a hint: the waiting message still comes, and
    planning a phase twice plans it once.
    """
    post = records.get_phase(run_key, Phase.POST)
    if post is not None and post.status is PhaseStatus.RECEIVED:
        transport.send([PlanPhase(run_key=run_key, phase=Phase.POST, resend=PRE_CLOSED_RESEND)])


def cancel_if_pre_failed(
    run_key: str,
    *,
    records: RunRecords,
    cancellation: RunCancellation,
    transport: WorkTransport,
    now: datetime,
    resume: bool = False,
) -> None:
    """The readiness gate: cancel the run once its error budget is exceeded; record the decision.

    - While the pre phase runs, a failed task makes the gate look (when the phase's counters
      say the budget may be exceeded, :func:`~shared.usecases.gate.may_be_exceeded`): exceeded,
      the run is cancelled at once, without waiting for the other machines.
    - Once the phase is final: exceeded, cancel; failures within the budget, record that the
      run proceeds and which machines go ahead without their safety work, and why.
    - A pre phase that could not be planned always cancels (when the policy allows cancelling).

    Safe to call again and again: it acts only while no decision is recorded on the run. That
    is what makes it resumable: the phase is closed in one write and the decision recorded in a
    later one, so whoever comes next (a redelivered outcome or plan, the deadline check) finishes
    a decision that a crash or a failed cancel call left half-made.
    """
    phase = records.get_phase(run_key, Phase.PRE)
    if phase is None:
        return
    if not phase.status.is_final and not (phase.status is PhaseStatus.PLANNED and may_be_exceeded(phase)):
        return
    run = records.get_run(run_key)
    claim = _cancel_claim(run)
    if claim is not None:
        # Decided, but the call is not recorded: the claimer is at it, or died (see cancel_run).
        _finish_claim(run_key, claim, phase, records, cancellation, transport, now, resume=resume)
        return
    if run.cancel_requested_at is not None or run.gate is not None:
        return
    if phase.status is PhaseStatus.FAILED:
        why = next((f for f in reversed(phase.findings) if f.startswith("planning failed: ")), "planning failed")
        reason = f"pre phase could not be planned: {why.removeprefix('planning failed: ')}"
        # The policy may be unknown here, and patching blind is what prepost exists to prevent.
        allows = RunPolicy.from_dict(phase.policy).cancel_on_failure if phase.policy else True
        decision = GateAssessment(budget_of(phase), phase.machines, ()).decision(
            GateVerdict.CANCEL, now, moment="planning-failed", reason=reason
        )
        cancel_run(
            run_key,
            reason,
            records=records,
            cancellation=cancellation,
            transport=transport,
            now=now,
            policy_allows=allows,
            gate=decision,
        )
        return
    tasks = records.list_tasks(run_key, Phase.PRE)
    assessment = assess(phase, tasks)
    if not assessment.failing:
        return
    final = phase.status.is_final
    if not assessment.exceeded:
        if final:
            reason = f"{assessment.summary}: the run proceeds; these machines go ahead without their safety work"
            record_gate_decision(
                run_key,
                assessment.decision(GateVerdict.PROCEED, now, moment="phase-completed", reason=reason),
                records=records,
            )
        return
    failed = [task for task in tasks if task.status is TaskStatus.FAILED and task.is_safety_critical]
    names = ", ".join(sorted({m.machine.rsplit("/", 1)[-1] for m in assessment.failing})[:10])
    reason = (
        f"{len(failed)} pre tasks failed ({names}); {assessment.summary}"
        if failed
        else f"blocking preflight findings ({names}); {assessment.summary}"
    )
    cancel_run(
        run_key,
        reason,
        records=records,
        cancellation=cancellation,
        transport=transport,
        now=now,
        policy_allows=RunPolicy.from_dict(phase.policy).cancel_on_failure,
        gate=assessment.decision(
            GateVerdict.CANCEL, now, moment="phase-completed" if final else "budget-exceeded", reason=reason
        ),
    )


def record_gate_decision(run_key: str, decision: GateDecision, *, records: RunRecords) -> RunRecord:
    """Record a decision to proceed, once: the first decision recorded on the run stands."""
    for _ in range(CONFLICT_RETRIES):
        run = records.get_run(run_key)
        if run.gate is not None or run.cancel_requested_at is not None:
            return run
        run.gate = decision.to_dict()
        try:
            run = records.update_run(run)
        except RecordChanged:
            continue
        log.warning("run %s gate: %s (%s)", run_key, decision.verdict.value, decision.reason)
        return run
    raise TransientError(f"run {run_key} kept changing while its gate decision was recorded")


# -- the cancellation deadline ----------------------------------------------------------------


def check_pre_deadline(
    message: CheckPreDeadline,
    *,
    records: RunRecords,
    cancellation: RunCancellation,
    transport: WorkTransport,
    now: datetime,
    margin: timedelta = DEFAULT_CANCEL_MARGIN,
) -> str:
    """At the cancellation deadline: cancel the run if the pre-work has not finished.

    Patching without a finished snapshot is what this pipeline exists to prevent; Update
    Manager proceeds unless someone cancels. Whether the work finished is read from the task
    records themselves, never from a counter.

    The deadline is the run record's (:func:`pre_cancel_deadline`), never the message's: a
    check that arrives before it (an operator's replay, a forged message, one without ``due``)
    is sent on until then, in hops as :func:`wait_until_due` sends them, and cancels nothing.
    """
    try:
        run = records.get_run(message.run_key)
    except RunNotFound:
        return "no run recorded"
    deadline = pre_cancel_deadline(run, margin)
    if now < deadline:
        # Carry the record's deadline, so the message says when it is due wherever it is looked at.
        transport.send([replace(message, due=format_time(deadline)).resent()], delay=min(deadline - now, MAX_HOP))
        return f"not due until {format_time(deadline)} (the run's cancellation deadline); sent on"
    run_key = message.run_key
    phase = records.get_phase(run_key, Phase.PRE)
    if phase is None:
        return "no pre phase recorded"
    if phase.status.is_final:
        # A failed phase whose cancellation a crash or a failed call left unmade is made now.
        cancel_if_pre_failed(
            run_key, records=records, cancellation=cancellation, transport=transport, now=now, resume=True
        )
        return f"pre phase already {phase.status.value}"
    if phase.status is PhaseStatus.PLANNED:
        closed = finish_phase_if_done(
            run_key, Phase.PRE, records=records, cancellation=cancellation, transport=transport, now=now, recount=True
        )
        if closed is not None:
            return f"pre phase {closed.status.value}"
        run = records.get_run(run_key)
        claim = _cancel_claim(run)
        if claim is not None:
            # A decision to cancel whose call a crash left unmade (possibly this check's own,
            # delivered again): make it now, whatever the counters say.
            _finish_claim(run_key, claim, phase, records, cancellation, transport, now, resume=True)
            return f"the gate's cancellation, finished by the deadline check: {claim.reason}"
        if run.cancel_requested_at is None and run.gate is not None:
            return f"the gate decided already: {run.gate.get('verdict')}"
        tasks = records.list_tasks(run_key, Phase.PRE)
        pending = [task for task in tasks if not task.status.is_final]
        assessment = assess(phase, tasks, at_deadline=True)
        # A cancellation already decided goes on below (cancel_run finishes what a crash left undone).
        if not assessment.exceeded and run.cancel_requested_at is None:
            # Unfinished work that is not safety-critical, or failures within the budget: patching
            # goes ahead, and the record says which machines go without their safety work.
            reason = (
                f"{len(pending)} pre tasks unfinished at the cancellation deadline; {assessment.summary}: "
                "the run proceeds"
            )
            record_gate_decision(
                run_key,
                assessment.decision(GateVerdict.PROCEED, now, moment="deadline", reason=reason),
                records=records,
            )
            return reason
        reason = (
            f"pre-work not finished by the cancellation deadline ({len(pending)} tasks pending); {assessment.summary}"
        )
        gate = assessment.decision(GateVerdict.CANCEL, now, moment="deadline", reason=reason)
    else:
        reason = "pre phase was never planned before the cancellation deadline"
        gate = GateAssessment(budget_of(phase), phase.machines, ()).decision(
            GateVerdict.CANCEL, now, moment="deadline", reason=reason
        )
    cancel_run(
        run_key,
        reason,
        records=records,
        cancellation=cancellation,
        transport=transport,
        now=now,
        policy_allows=RunPolicy.from_dict(phase.policy).cancel_on_failure,
        gate=gate,
    )
    return reason


def pre_cancel_deadline(run: RunRecord, margin: timedelta) -> datetime:
    """When the deadline check acts, from the run record: the earlier of the event's cut-off and
    T-10 minutes, less ``margin`` (as :meth:`PreMaintenance.cancel_deadline` counts it at intake)."""
    start_cutoff = run.start - DEFAULT_CUTOFF_BEFORE_START
    return min(run.cancellation_cutoff or start_cutoff, start_cutoff) - margin


def cancel_run(
    run_key: str,
    reason: str,
    *,
    records: RunRecords,
    cancellation: RunCancellation,
    transport: WorkTransport,
    now: datetime,
    policy_allows: bool = True,
    gate: GateDecision | None = None,
    resume: bool = False,
) -> RunRecord:
    """Decide once that the run must be cancelled; cancel it if that can still help; record why.

    The record always says what came of it: the call's answer, or why no call was made (the
    run already started, the post phase already began, the policy says not to). When Update
    Manager accepted, the post phase is started at once: nothing will be patched, so the VMs
    prepost started and the alerts it silenced must not wait for the end of the window.

    With ``gate`` (the gate's decision and its failing machines), the decision is first claimed
    on the run record with its etag, so that of the outcomes arriving together only one makes
    the call. A claim whose call has not been recorded is finished by whoever comes after
    :data:`CLAIM_LEASE`, or at once with ``resume`` (the deadline check): a delivery that died
    after claiming cannot leave the run uncancelled.

    Raises:
        TransientError: the cancel call failed in a way worth retrying (the message is retried).
    """
    run = records.get_run(run_key)
    if run.cancel_requested_at is not None:
        if run.cancel_accepted:
            # The delivery that recorded it may have died before the post phase was sent on.
            transport.send([_post_after_cancel(run_key, run.cancel_requested_at)])
        return run
    claim = _cancel_claim(run)
    if claim is None and gate is not None:
        run, won = _claim(run, gate, records)
        if not won:
            return run  # another delivery claimed the decision first and makes the call
    elif claim is not None:
        if not resume and now - claim.decided_at < CLAIM_LEASE:
            return run  # claimed moments ago by a delivery that is making the call
        reason = claim.reason or reason
    try:
        result, accepted = _cancel(run, records, cancellation, now, policy_allows)
    except TransientError:
        if gate is not None and claim is None:
            _release_claim(run_key, records)  # so that the retry of this very message claims again
        raise
    for _ in range(CONFLICT_RETRIES):
        if run.cancel_requested_at is not None:
            return run  # another instance decided first; the call above was idempotent
        run.cancel_requested_at = now
        run.cancel_reason = reason
        run.cancel_result = result
        run.cancel_accepted = accepted
        if run.gate is None and gate is not None:
            run.gate = gate.to_dict()
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


def _finish_claim(
    run_key: str,
    claim: GateDecision,
    phase: PhaseRecord,
    records: RunRecords,
    cancellation: RunCancellation,
    transport: WorkTransport,
    now: datetime,
    *,
    resume: bool,
) -> None:
    """Make the cancel call of a recorded decision (``claim``) that nobody recorded making."""
    # An unknown policy cancels: patching blind is what prepost exists to prevent.
    allows = RunPolicy.from_dict(phase.policy).cancel_on_failure if phase.policy else True
    cancel_run(
        run_key,
        claim.reason,
        records=records,
        cancellation=cancellation,
        transport=transport,
        now=now,
        policy_allows=allows,
        resume=resume,
    )


def _cancel_claim(run: RunRecord) -> GateDecision | None:
    """The gate's decision to cancel, when it is recorded but its call is not (yet)."""
    if run.gate is None or run.cancel_requested_at is not None:
        return None
    decision = GateDecision.from_dict(run.gate)
    return decision if decision.verdict is GateVerdict.CANCEL else None


def _claim(run: RunRecord, gate: GateDecision, records: RunRecords) -> tuple[RunRecord, bool]:
    for _ in range(CONFLICT_RETRIES):
        if run.gate is not None or run.cancel_requested_at is not None:
            return run, False
        run.gate = gate.to_dict()
        try:
            return records.update_run(run), True
        except RecordChanged:
            run = records.get_run(run.run_key)
    raise TransientError(f"run {run.run_key} kept changing while its gate decision was claimed")


def _release_claim(run_key: str, records: RunRecords) -> None:
    for _ in range(CONFLICT_RETRIES):
        run = records.get_run(run_key)
        if _cancel_claim(run) is None:
            return
        run.gate = None
        try:
            records.update_run(run)
            return
        except RecordChanged:
            continue


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
    if now > cutoff:
        # Update Manager takes a cancellation only before the cut-off (docs/reference.md section 2,
        # https://learn.microsoft.com/azure/update-manager/manage-pre-post-events): no call is
        # made after it, and the record says so.
        return f"not cancelled: the cut-off {cutoff.isoformat()} had passed; Update Manager takes none after it", False
    try:
        status = cancellation.cancel(run.correlation_id)
    except PermanentError as error:
        return f"cancel refused: {error}", False
    result = f"cancel requested; Update Manager reports {status}"
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
        try:
            run = records.get_run(run_key)
        except RunNotFound as error:
            raise MessageRejected(f"post fallback for run {run_key}: no such run is recorded") from error
        # Stamped first: pre-work is fenced on the run record (shared.usecases.fences).
        mark_post_began(run, records, now)
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
    if existing.status is PhaseStatus.PLANNED and not any(t.phase is Phase.POST for t in unfinished):
        # Every post task is final but nobody closed the phase (the delivery that would have
        # died; a phase of no tasks has no outcome to close it): close it from the records.
        closed = complete_phase_if_done(run_key, Phase.POST, records=records, now=now, recount=True)
        if closed is not None:
            existing = closed
            result += f"; closed ({closed.status.value})"
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
