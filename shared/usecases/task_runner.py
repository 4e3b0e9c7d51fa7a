"""Running one task message: idempotency, retries without sleeping, and recording the outcome.

Every machine or monitoring action goes through :func:`run_task`, so the rules are the same
for all of them:
- a task already done is not done again (duplicate deliveries);
- work the ARM rate control put off (:class:`~shared.errors.Deferred`) is sent again after the
  wait with the same attempt: nothing was tried;
- throttling and transient failures re-queue the task with a delay (``Retry-After`` when
  Azure gave one, else the backoff of :class:`~shared.models.retry.RetryPolicy`, the same
  policy the Service Bus settlement uses) instead of sleeping inside the function;
- permanent failures, and transient ones after the last attempt, become a FAILED outcome;
- an unexpected error is raised, so the platform retries it; on the last delivery it is
  recorded as FAILED first, so the record never stays "queued" while the message sits in poison;
- a long Azure operation is begun and then looked at again by scheduled follow-ups
  (:class:`FollowUp`) instead of being waited for inside one delivery, whose message lock or
  visibility timeout would run out first. Follow-ups use no attempt; the wait is bounded by
  :data:`MAX_OPERATION_WAIT`. Only the first look reports ``in-progress``.

The outcome is recorded by the delivery that produced it (``report``, the outcome recorder of
:mod:`shared.usecases.supervision`), not sent on as a message for another function to record:
that hop cost a send, a receive and a delete per outcome, and a task read in another instance.
It is recorded before the idempotency lock is completed or released, so a crash or a failed
write in between leaves the lock to expire or released, and the redelivered message does the
(idempotent) action again and records it then. An outcome already recorded is not recorded
twice: the recorder ignores one for a task that is final.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.errors import Deferred, MessageRejected, PermanentError, Throttled, TransientError
from shared.models.bounds import DETAIL_LIMIT, bounded_data, cut_text
from shared.models.events import format_time, parse_time
from shared.models.messages import TaskMessage, TaskOutcome
from shared.models.retry import RetryPolicy
from shared.models.run import TaskStatus
from shared.ports.idempotency import AlreadyDone, AlreadyInProgress, Begun, IdempotencyStore
from shared.ports.transport import WorkTransport

log = logging.getLogger(__name__)

IN_PROGRESS_RECHECK = timedelta(seconds=30)
MAX_OPERATION_WAIT = timedelta(minutes=30)
"""How long one attempt follows up a long operation before the task fails. A VM start or an
incremental snapshot takes minutes; one still running after half an hour is stuck, and in the
pre phase the cancellation deadline has passed by then anyway."""


@dataclass(frozen=True)
class TaskResult:
    """What an action reports when it did not raise."""

    status: TaskStatus
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


RECHECK_LIMIT = 3
"""A :attr:`FollowUp.recheck` waits at most this many operation check intervals."""

@dataclass(frozen=True)
class FollowUp:
    """What an action reports when its Azure operation is begun but not finished: look again later.

    The runner schedules the same attempt again (``TaskMessage.follow_up``) after the operation
    check interval and records the task ``in-progress``. The action must be able to tell, on the
    follow-up, whether the operation finished (idempotency markers in the task record).
    """

    operation: str
    """What is being waited for, for people: ``start VM``, ``snapshot disks``."""
    state: str
    """What this look saw: ``start requested``, ``starting``, ``1 of 3 snapshot(s) ready``."""
    data: dict[str, Any] = field(default_factory=dict)
    recheck: timedelta | None = None
    """Look again after this instead of the operation check interval (a task waiting for another
    one, which is sent on when that one is final, looks again rarely), but never later than
    :data:`RECHECK_LIMIT` operation checks: a nudge lost to a crash or a busy lock then costs a
    few checks, not a fixed minute (the local stack checks every second)."""


@dataclass(frozen=True)
class Delivery:
    """Facts about this delivery of the message, from the trigger."""

    count: int = 1
    max_count: int = 5

    @property
    def is_last(self) -> bool:
        return self.count >= self.max_count


def run_task(
    message: TaskMessage,
    action: Callable[[TaskMessage], TaskResult | FollowUp],
    *,
    idempotency: IdempotencyStore,
    transport: WorkTransport,
    report: Callable[[TaskOutcome], object],
    retry: RetryPolicy,
    check_interval: timedelta,
    now: Callable[[], datetime],
    delivery: Delivery = Delivery(),
) -> TaskOutcome | None:
    """Run ``action`` for ``message`` once; return the outcome recorded (None if nothing was).

    ``report`` records an outcome (:func:`~shared.usecases.supervision.record_outcome`); an
    error it raises is raised here, with the lock released, so the platform delivers the
    message again. ``retry`` is the app's one retry policy (attempts and waits); ``check_interval`` is how long
    after a :class:`FollowUp` the task looks again (``PREPOST_OPERATION_CHECK_SECONDS``).
    """
    key = f"task:{message.run_key}:{message.task_id}"
    try:
        lock = idempotency.begin(key, now=now())
    except AlreadyInProgress:
        # Another delivery is working on it (a duplicate, or a crashed worker's lock that has
        # not expired yet). Look again later rather than fail; as a fresh message, because
        # Service Bus drops a MessageId it has seen within its duplicate-detection window.
        transport.send([message.resent()], delay=IN_PROGRESS_RECHECK)
        return None
    if isinstance(lock, AlreadyDone):
        log.info("%s already done; duplicate delivery ignored", key)
        return None

    started = now()
    steps = _Steps(message, started, now, transport, report, idempotency, lock)
    try:
        result = action(message)
    except Deferred as error:
        # The ARM rate control sent nothing: the same attempt goes again after the wait, without
        # an outcome (the task's record is unchanged) and without spending an attempt.
        idempotency.release(lock)
        wait = error.retry_after or IN_PROGRESS_RECHECK
        transport.send([message.resent()], delay=wait)
        log.info("%s put off %d s by ARM rate control", key, int(wait.total_seconds()))
        return None
    except (Throttled, TransientError) as error:
        if retry.is_last(message.attempt):
            return steps.finish(TaskResult(TaskStatus.FAILED, f"gave up after {message.attempt} attempts: {error}"))
        delay = retry.delay(message.attempt, key=key, retry_after=error.retry_after)
        detail = f"attempt {message.attempt}: {error}; retrying in {int(delay.total_seconds())} s"
        return steps.go_on(TaskResult(TaskStatus.RETRYING, detail), message.next_attempt(), delay)
    except PermanentError as error:
        return steps.finish(TaskResult(TaskStatus.FAILED, str(error)))
    except MessageRejected:
        # Not this task's message: the task's record and outcome belong to the genuine one.
        idempotency.release(lock)
        raise
    except Exception as error:
        idempotency.release(lock)
        if delivery.is_last:
            detail = f"unexpected {type(error).__name__} on delivery {delivery.count}: {error}"
            try:
                report(_outcome(message, TaskResult(TaskStatus.FAILED, detail), started, now()))
            except Exception:
                # The error the action raised is the one to see; this one is logged with it.
                log.exception("%s: its failure could not be recorded either", key)
        raise
    if isinstance(result, FollowUp):
        return _follow_up(message, result, steps, check_interval)
    return steps.finish(result)


@dataclass(frozen=True)
class _Steps:
    """What ends one delivery: record the outcome, then settle the lock and send what comes next."""

    message: TaskMessage
    started: datetime
    now: Callable[[], datetime]
    transport: WorkTransport
    report: Callable[[TaskOutcome], object]
    idempotency: IdempotencyStore
    lock: Begun

    def record(self, result: TaskResult) -> TaskOutcome:
        """Record the outcome; if that fails, release the lock so the redelivery can do it all again."""
        outcome = _outcome(self.message, result, self.started, self.now())
        try:
            self.report(outcome)
        except BaseException:
            self.idempotency.release(self.lock)
            raise
        return outcome

    def finish(self, result: TaskResult) -> TaskOutcome:
        """Record a final outcome, then complete the lock.

        In that order: a crash in between repeats an idempotent action and an outcome the
        recorder ignores (the task is final), never loses the outcome.
        """
        outcome = self.record(result)
        done = {"status": result.status.value, "detail": result.detail[:DETAIL_LIMIT]}
        if not self.idempotency.complete(self.lock, done):
            log.warning("%s: lock taken over by another delivery while it worked; its result stands", self.lock.key)
        log.info("%s %s: %s", self.lock.key, result.status.value, result.detail)
        return outcome

    def go_on(self, result: TaskResult | None, following: TaskMessage, delay: timedelta) -> TaskOutcome | None:
        """Record a passing state (when there is one to say), release the lock, send the next message.

        Recorded first: if that fails, nothing is sent and the platform delivers this message
        again. Released before the send, so the next delivery can begin; a crash before the
        send raises, and the platform delivers this message again, which looks again.
        """
        outcome = self.record(result) if result is not None else None
        self.idempotency.release(self.lock)
        self.transport.send([following], delay=delay)
        return outcome


def _follow_up(
    message: TaskMessage, follow_up: FollowUp, steps: _Steps, check_interval: timedelta
) -> TaskOutcome | None:
    """Schedule the next look at a running operation, or fail the task once it waited too long."""
    finished = steps.now()
    waiting_since = parse_time(message.waiting_since) if message.waiting_since else steps.started
    if finished - waiting_since > MAX_OPERATION_WAIT:
        minutes = int(MAX_OPERATION_WAIT.total_seconds() // 60)
        detail = f"{follow_up.operation} did not finish within {minutes} minutes; last seen: {follow_up.state}"
        return steps.finish(TaskResult(TaskStatus.FAILED, detail, follow_up.data))
    if follow_up.recheck is not None:
        check_interval = min(follow_up.recheck, check_interval * RECHECK_LIMIT)
    seconds = int(check_interval.total_seconds())
    detail = f"{follow_up.operation}: {follow_up.state}; looking again in {seconds} s"
    log.info("%s in progress: %s", steps.lock.key, detail)
    # The record says in-progress since the first look; saying it again on every look would
    # cost a task write each time (a snapshot is looked at several times) for a detail nobody
    # acts on. The final outcome carries the last state seen.
    in_progress = None if message.is_follow_up else TaskResult(TaskStatus.IN_PROGRESS, detail, follow_up.data)
    following = message.follow_up(waiting_since=format_time(waiting_since))
    return steps.go_on(in_progress, following, check_interval)


def _outcome(message: TaskMessage, result: TaskResult, started: datetime, finished: datetime) -> TaskOutcome:
    return TaskOutcome(
        run_key=message.run_key,
        phase=message.phase,
        action=message.action,
        target=message.target,
        status=result.status,
        detail=cut_text(result.detail, DETAIL_LIMIT),
        attempts=message.attempt,
        started_at=format_time(started),
        finished_at=format_time(finished),
        data=bounded_data(result.data),
    )
