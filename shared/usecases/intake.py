"""Intake: turn delivered events into recorded runs and plan messages, fast.

No Azure management call happens here: Event Grid waits 30 seconds for an answer, and the
planner does the slow work from a queue.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import InvalidEvent, MalformedPayload, PermanentError, TransientError, UnsupportedEventType
from shared.models.events import (
    PostMaintenance,
    PreMaintenance,
    describe,
    format_time,
    out_of_range,
    parse_event,
)
from shared.models.ids import ResourceId, run_key
from shared.models.json_text import MAX_DEPTH, value_depth
from shared.models.messages import CheckPreDeadline, PlanPhase, PostFallback, SafetyNet
from shared.models.run import Phase, PhaseRecord, PhaseSource, PhaseStatus, RunRecord
from shared.ports.idempotency import RecordChanged
from shared.ports.records import DeliveryOutcome, DeliveryRecord, RunRecords
from shared.ports.transport import WorkTransport
from shared.settings import AllowList
from shared.usecases.fences import mark_post_began
from shared.usecases.supervision import CONFLICT_RETRIES, MAX_HOP

log = logging.getLogger(__name__)

LATE_PRE_EVENT_FINDING = "pre-event handled after the cancellation deadline"
"""How the pre phase's findings start when its event came too late for the deadline check."""
PAYLOAD_LIMIT = 30_000
EARLY_PRE_EVENT = timedelta(days=1)
"""A pre-event this long before its run's start is accepted with a finding: Update Manager sends
it at least 30 minutes before, so one days ahead is a replay, a test, or a schedule moved."""


@dataclass(frozen=True)
class IntakePolicy:
    """What the intake needs from the settings."""

    allowed_configurations: AllowList
    allowed_subscriptions: AllowList
    cancel_margin: timedelta
    post_fallback_after: timedelta
    """How long after the window's end the post phase runs anyway if no post-event came."""


@dataclass(frozen=True)
class IntakeResult:
    outcome: DeliveryOutcome
    reason: str
    event_id: str
    run_key: str = ""
    phase: Phase | None = None


def accept_event(
    raw: Any,
    *,
    records: RunRecords,
    transport: WorkTransport,
    policy: IntakePolicy,
    now: datetime,
) -> IntakeResult:
    """Validate one delivered JSON value, record its run and phase idempotently, and queue the plan.

    Whatever ``raw`` is, exactly one delivery record says what became of it. Unsupported types
    are recorded as ignored, and anything invalid (not an object, ambiguous, malformed, out of
    range, not allowed) as rejected, before anything else is written or sent: neither is
    raised, because retrying cannot fix them. Storage and transport failures are raised so the
    delivery is retried; the writes are ordered so that the retry completes what the failed
    delivery began, and the same event delivered twice records one run and one plan.
    """
    event_id, event_type = describe(raw)
    payload = _excerpt(raw)
    try:
        event = parse_event(raw)
    except UnsupportedEventType as error:
        return _log(records, now, DeliveryOutcome.IGNORED, str(error), event_id, event_type, payload)
    except (InvalidEvent, MalformedPayload) as error:
        return _log(records, now, DeliveryOutcome.REJECTED, str(error), event_id, event_type, payload)
    out_of_range_reasons = out_of_range(event, now)
    if out_of_range_reasons:
        reason = str(InvalidEvent(out_of_range_reasons))
        return _log(records, now, DeliveryOutcome.REJECTED, reason, event_id, event_type, payload, event=event)

    if not policy.allowed_configurations.allows(event.configuration_id):
        reason = (
            f"maintenance configuration {event.configuration_id} is not in PREPOST_ALLOWED_CONFIGURATIONS"
            f" ({policy.allowed_configurations.describe()})"
        )
        return _log(records, now, DeliveryOutcome.REJECTED, reason, event_id, event_type, payload, event=event)
    config_subscription = ResourceId(event.configuration_id).subscription_id
    if not policy.allowed_subscriptions.allows(config_subscription):
        reason = f"the configuration's subscription {config_subscription} is not in PREPOST_ALLOWED_SUBSCRIPTIONS"
        return _log(records, now, DeliveryOutcome.REJECTED, reason, event_id, event_type, payload, event=event)

    try:
        return _record_and_plan(
            event, records=records, transport=transport, policy=policy, now=now, logged=(event_id, event_type, payload)
        )
    except PermanentError as error:
        # The store refuses a record as given. The bounds checked above are meant to make this
        # impossible; if it happens anyway, retrying cannot change it, so the delivery is answered
        # (no retry storm) and the refusal recorded.
        reason = f"could not be recorded: {error}"
        return _log(records, now, DeliveryOutcome.REJECTED, reason, event_id, event_type, payload, event=event)


def _record_and_plan(
    event: PreMaintenance | PostMaintenance,
    *,
    records: RunRecords,
    transport: WorkTransport,
    policy: IntakePolicy,
    now: datetime,
    logged: tuple[str, str, str],
) -> IntakeResult:
    """Record the run and the phase, send the safety nets (pre) and the plan, then the delivery.

    Each write is create-if-absent and each message has a deterministic id, so a delivery that
    dies half-way is completed by Event Grid's next one.
    """
    event_id, event_type, payload = logged
    key = run_key(event.correlation_id)
    run, _ = records.create_run(
        RunRecord(
            run_key=key,
            correlation_id=event.correlation_id,
            configuration_id=event.configuration_id,
            start=event.start,
            end=event.end,
            subscription_ids=event.subscription_ids,
            created_at=now,
            cancellation_cutoff=event.cancellation_cutoff if isinstance(event, PreMaintenance) else None,
            post_began_at=now if isinstance(event, PostMaintenance) else None,
            stamps_post_start=True,
        )
    )
    if isinstance(event, PreMaintenance) and run.cancellation_cutoff is None:
        # The post-event created the run first (events are not ordered); keep the cut-off now.
        _keep_cutoff(records, run, event.cancellation_cutoff)
    if isinstance(event, PostMaintenance):
        # Before the phase is recorded: pre-work is fenced on the run record (shared.usecases.fences).
        mark_post_began(run, records, now)

    phase = Phase.PRE if isinstance(event, PreMaintenance) else Phase.POST
    findings = _timing_findings(event, now, policy.cancel_margin)
    stored, created = records.create_phase(
        PhaseRecord(
            run_key=key,
            phase=phase,
            status=PhaseStatus.RECEIVED,
            event_id=event.event_id,
            received_at=now,
            source=PhaseSource.EVENT,
            event_status=event.status if isinstance(event, PostMaintenance) else None,
            findings=findings,
        )
    )
    # The safety nets go out on every delivery of a pre-event, before the plan: if an earlier
    # delivery died after recording the phase, or before it could send them, this one does.
    # Their ids are deterministic and their handlers idempotent, so sending them twice is harmless.
    if isinstance(event, PreMaintenance):
        _schedule_safety_nets(event, key, transport, policy, now)
    if not created and stored.source is PhaseSource.FALLBACK and isinstance(event, PostMaintenance):
        # The fallback began the post phase before this event came (a window already over when
        # the pre-event arrived, a cancelled run, a late post-event). Whatever state the phase
        # is in, its work is not started twice; Update Manager's status is kept on it.
        stored = _keep_event_status(records, stored, event)
        if stored.status is PhaseStatus.RECEIVED:
            # Its plan message may have been lost; the plan is idempotent (deterministic id).
            transport.send([PlanPhase(run_key=key, phase=phase)])
        reason = (
            f"post-event with status {event.status!r} came after prepost's fallback had begun the post phase "
            f"at {stored.received_at.isoformat()} ({stored.status.value}); the post phase is not run again, "
            "the event's status is kept on it"
        )
        return _log(
            records,
            now,
            DeliveryOutcome.DUPLICATE,
            reason,
            event_id,
            event_type,
            payload,
            event=event,
            run=key,
            phase=phase,
        )
    if not created and stored.status is not PhaseStatus.RECEIVED:
        reason = f"{phase.value} phase of this run was already received at {stored.received_at.isoformat()}"
        return _log(
            records,
            now,
            DeliveryOutcome.DUPLICATE,
            reason,
            event_id,
            event_type,
            payload,
            event=event,
            run=key,
            phase=phase,
        )

    # Send even for a duplicate whose phase is still RECEIVED: the first delivery may have died
    # between recording and sending. Plan messages have deterministic ids and planning is
    # idempotent, so a second plan message does no harm.
    transport.send([PlanPhase(run_key=key, phase=phase)])

    outcome = DeliveryOutcome.ACCEPTED if created else DeliveryOutcome.DUPLICATE
    reason = "; ".join(findings) if created else f"{phase.value} phase already received; plan re-sent"
    return _log(records, now, outcome, reason, event_id, event_type, payload, event=event, run=key, phase=phase)


def _schedule_safety_nets(
    event: PreMaintenance, key: str, transport: WorkTransport, policy: IntakePolicy, now: datetime
) -> None:
    """Messages due later that make sure nothing is left half-done when something is lost.

    Each carries the moment it is due: one due further ahead than a transport can hide a
    message is sent on in hops by its handler (``shared.usecases.supervision.wait_until_due``).
    """
    deadline = event.cancel_deadline(policy.cancel_margin)
    fallback_at = event.end + policy.post_fallback_after
    nets: list[SafetyNet] = [PostFallback(run_key=key, due=format_time(fallback_at))]
    if deadline > now:
        nets.insert(0, CheckPreDeadline(run_key=key, due=format_time(deadline)))
    for net in nets:
        due = net.due_at() or now
        transport.send([net], delay=min(max(due - now, timedelta(0)), MAX_HOP))


def _keep_cutoff(records: RunRecords, run: RunRecord, cutoff: datetime) -> None:
    for _ in range(CONFLICT_RETRIES):
        if run.cancellation_cutoff is not None:
            return
        run.cancellation_cutoff = cutoff
        try:
            records.update_run(run)
            return
        except RecordChanged:
            run = records.get_run(run.run_key)
    raise TransientError(f"run {run.run_key} kept changing while its cut-off was recorded")


def _keep_event_status(records: RunRecords, phase: PhaseRecord, event: PostMaintenance) -> PhaseRecord:
    """A post-event that comes after the fallback began the post phase: keep what Update Manager
    said on the phase (once; a repeated delivery changes nothing). Returns the phase as stored."""
    for _ in range(CONFLICT_RETRIES):
        if phase.event_status is not None:
            return phase
        phase.event_status = event.status
        phase.findings = [
            *phase.findings,
            f"post-event {event.event_id} (status {event.status}) arrived after the fallback had begun the post phase",
        ]
        try:
            return records.replace_phase(phase)
        except RecordChanged:
            fresh = records.get_phase(phase.run_key, phase.phase)
            if fresh is None:
                return phase
            phase = fresh
    raise TransientError(f"post phase of {phase.run_key} kept changing while the event's status was kept")


def _timing_findings(event: PreMaintenance | PostMaintenance, now: datetime, margin: timedelta) -> list[str]:
    findings = []
    if isinstance(event, PreMaintenance):
        deadline = event.cancel_deadline(margin)
        if now >= deadline:
            findings.append(
                f"{LATE_PRE_EVENT_FINDING} {deadline.isoformat()}: no cancellation is made for unfinished "
                "pre-work, and one made for failed pre-work may not take effect"
            )
        if not event.cutoff_was_given:
            findings.append("cancellationCutOffDateTime missing; assumed 10 minutes before start")
        lead = event.start - now
        if lead > EARLY_PRE_EVENT:
            findings.append(
                f"pre-event received {lead.days} days {lead.seconds // 3600} hours before the start "
                "(Update Manager sends it about 30 minutes before): the pre-work is done now, its safety "
                "nets are due later"
            )
    return findings


def _log(
    records: RunRecords,
    now: datetime,
    outcome: DeliveryOutcome,
    reason: str,
    event_id: str,
    event_type: str,
    payload: str,
    *,
    event: PreMaintenance | PostMaintenance | None = None,
    run: str = "",
    phase: Phase | None = None,
) -> IntakeResult:
    level = logging.INFO if outcome in (DeliveryOutcome.ACCEPTED, DeliveryOutcome.DUPLICATE) else logging.WARNING
    log.log(level, "event %s (%s) %s: %s", event_id, event_type, outcome.value, reason)
    correlation = event.correlation_id if event else ""
    records.record_delivery(
        DeliveryRecord(
            received_at=now,
            event_id=event_id,
            event_type=event_type,
            outcome=outcome,
            reason=reason,
            correlation_id=correlation,
            run_key=run or (run_key(correlation) if correlation else ""),
            phase=phase.value if phase else "",
            payload=payload,
        )
    )
    return IntakeResult(outcome, reason, event_id, run, phase)


def _excerpt(raw: Any) -> str:
    """The delivered value as JSON for the record, cut to :data:`PAYLOAD_LIMIT` characters."""
    if value_depth(raw) > MAX_DEPTH:
        # Serialising it would recurse as deep as it nests; the reason says what was wrong.
        return f"(not kept: nests more than {MAX_DEPTH} levels deep)"
    text = json.dumps(raw, default=str, separators=(",", ":"))
    if len(text) > PAYLOAD_LIMIT:
        return text[:PAYLOAD_LIMIT] + f"...(cut from {len(text)} characters)"
    return text
