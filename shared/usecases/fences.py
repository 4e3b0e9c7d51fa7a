"""Fences: when pre-phase work must no longer begin.

Messages can arrive late (a redelivery hours later, an operator's replay of a poisoned message,
an Event Grid retry of the pre-event). Pre-work begun then acts on machines nobody is waiting
for: a VM started after the post phase ran is never deallocated, a snapshot taken after the
start is not the state before patching. So every pre-phase action that changes something in
Azure asks :func:`pre_work_fence` right before it begins, from the records, not the message.

Work already begun is still looked at and finished (a follow-up of a start asked for before
the fence); only beginning is fenced.

The last look is :func:`fenced_sending`: the fence asked again by the ARM adapters once a
request has waited for its rate-control token and slot, immediately before it goes on the wire,
for each request (each snapshot of a VM, each retry). A look taken before the adapter's own
waiting leaves a window as long as that wait (seconds; minutes of a compressed clock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.errors import PrepostError, TransientError
from shared.models.run import Phase, RunRecord, TaskStatus
from shared.ports.idempotency import RecordChanged
from shared.ports.records import RunRecords
from shared.ports.send_guard import guarded

STAMP_RETRIES = 20
"""Tries at stamping the run when other writers keep changing it (as the outcome recorder's)."""


@dataclass(frozen=True)
class Fence:
    """Why pre-phase work must not begin."""

    reason: str
    missed: bool
    """True when patching goes ahead without the work (the run started): the task failed.
    False when the work is moot (cancelled, or the run is over): the task is skipped."""

    @property
    def status(self) -> TaskStatus:
        return TaskStatus.FAILED if self.missed else TaskStatus.SKIPPED

    def detail(self, what: str) -> str:
        return f"{what} not begun: {self.reason}"


def pre_work_fence(run: RunRecord, records: RunRecords, now: datetime, *, reread: bool = True) -> Fence | None:
    """Why pre-phase work must not begin now, or None when it may.

    In order: the run's scheduled start has passed (patching has begun: a snapshot now is not
    the machine before patching); Update Manager accepted a cancellation (nothing will be
    patched); the post phase began (the run is over, and the post phase only undoes what was
    recorded before it).

    One storage read: the run record, which says both (:func:`mark_post_began` stamps it before
    the post phase is recorded). ``reread=False`` judges the caller's copy as it is, for a first
    look that :func:`fenced_sending` follows with a fresh one before anything is sent.
    """
    started = _started(run, now)
    if started is not None:
        return started
    # Read again: the caller's copy may be older than the ARM calls it made since (a slow or
    # held request can take minutes), and a cancellation accepted meanwhile must stop the work.
    if reread and not run.cancel_accepted:
        run = records.get_run(run.run_key)
    if run.cancel_accepted:
        return Fence("the run was cancelled", missed=False)
    began = run.post_began_at
    if began is None and not run.stamps_post_start and reread:
        # Recorded by an earlier version, which does not stamp the run: ask the phase itself.
        post = records.get_phase(run.run_key, Phase.POST)
        began = post.received_at if post is not None else None
    if began is not None:
        return Fence(f"the post phase began at {began.isoformat()}", missed=False)
    return None


def mark_post_began(run: RunRecord, records: RunRecords, now: datetime) -> RunRecord:
    """Stamp the run with the moment its post phase began, before the post phase is recorded.

    In that order, pre-work fenced on the run record alone never begins once the post phase
    exists. Idempotent: an earlier stamp stands. A crash after the stamp and before the phase
    fences pre-work a little early, which is what the post-event means anyway: patching is over.
    """
    for _ in range(STAMP_RETRIES):
        if run.post_began_at is not None:
            return run
        try:
            return records.update_run(replace(run, post_began_at=now))
        except RecordChanged:
            run = records.get_run(run.run_key)
    raise TransientError(f"run {run.run_key} kept changing while its post phase was stamped on it")


def _started(run: RunRecord, now: datetime) -> Fence | None:
    if now >= run.start:
        return Fence(f"the run started at {run.start.isoformat()}", missed=True)
    return None


class FenceClosed(Exception):
    """Raised in an adapter, right before a request was sent: the fence closed meanwhile, and
    the request was not sent."""

    def __init__(self, fence: Fence, *, after_sending: bool = False) -> None:
        super().__init__(fence.reason)
        self.fence = fence
        self.after_sending = after_sending
        """An earlier request of the same block went out (a retry was stopped, or a later disk's
        snapshot): what it asked for may be happening, so its marker must stay."""


@contextmanager
def fenced_sending(
    run: RunRecord, records: RunRecords, now: datetime, *, clock: Callable[[], datetime] | None = None
) -> Iterator[None]:
    """Ask :func:`pre_work_fence` immediately before each request that changes something in Azure
    is sent inside the block; raise :class:`FenceClosed` (nothing sent) when it closed.

    The time of each look is ``now`` moved on by the time that passed since the block began on
    ``clock`` (the app's clock by default): the delivery's ``now`` may be seconds or minutes old
    by the time a paced or retried request leaves.
    """
    read = clock or _app_now
    began = read()
    sent = False

    def moment() -> datetime:
        return now + max(timedelta(0), read() - began)

    def check() -> None:
        nonlocal sent
        try:
            fence = pre_work_fence(run, records, moment())
        except PrepostError:
            raise
        except Exception as error:
            # A storage error raised inside the ARM pipeline would pass for the ARM request's own
            # (and be retried by it): say what failed, and let the task be retried as a whole.
            raise TransientError(f"the records could not be read right before the request: {error}") from error
        # The clock again after the reads: a slow or retried storage call can take long enough
        # (minutes, on a compressed clock) for the start to pass meanwhile.
        fence = fence or _started(run, moment())
        if fence is not None:
            raise FenceClosed(fence, after_sending=sent)
        sent = True

    with guarded(check):
        yield


def _app_now() -> datetime:
    from shared.clock import utcnow

    return utcnow()
