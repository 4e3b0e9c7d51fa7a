"""Fences: when pre-phase work must no longer begin.

Messages can arrive late (a redelivery hours later, an operator's replay of a poisoned message,
an Event Grid retry of the pre-event). Pre-work begun then acts on machines nobody is waiting
for: a VM started after the post phase ran is never deallocated, a snapshot taken after the
start is not the state before patching. So every pre-phase action that changes something in
Azure asks :func:`pre_work_fence` right before it begins, from the records, not the message.

Work already begun is still looked at and finished (a follow-up of a start asked for before
the fence); only beginning is fenced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.models.run import Phase, RunRecord, TaskStatus
from shared.ports.records import RunRecords


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


def pre_work_fence(run: RunRecord, records: RunRecords, now: datetime) -> Fence | None:
    """Why pre-phase work must not begin now, or None when it may.

    In order: the run's scheduled start has passed (patching has begun: a snapshot now is not
    the machine before patching); Update Manager accepted a cancellation (nothing will be
    patched); the post phase began (the run is over, and the post phase only undoes what was
    recorded before it).
    """
    if now >= run.start:
        return Fence(f"the run started at {run.start.isoformat()}", missed=True)
    # Read again: the caller's copy may be older than the ARM calls it made since (a slow or
    # held request can take minutes), and a cancellation accepted meanwhile must stop the work.
    run = records.get_run(run.run_key) if not run.cancel_accepted else run
    if run.cancel_accepted:
        return Fence("the run was cancelled", missed=False)
    post = records.get_phase(run.run_key, Phase.POST)
    if post is not None:
        return Fence(f"the post phase began at {post.received_at.isoformat()}", missed=False)
    return None
