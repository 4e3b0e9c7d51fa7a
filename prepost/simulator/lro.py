"""Long-running operations: the ``Azure-AsyncOperation`` status resources behind 202 answers.

An operation starts ``InProgress``; it finishes when its timing says so (see
:class:`~prepost.simulator.config.LroTiming`) and only then applies its effect (a VM's power
state, a snapshot becoming ``Succeeded``, a snapshot disappearing). An operation marked to fail
ends ``Failed`` with an ARM error and runs its failure callback instead.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from .clock import iso
from .config import LroTiming


class OperationStatus(str, Enum):
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass
class AsyncOperation:
    """One long-running operation and what to do when it ends."""

    id: str
    operation: str
    target_id: str
    subscription_id: str
    location: str
    created: datetime
    timing: LroTiming
    on_success: Callable[[datetime], None] | None = None
    on_failure: Callable[[datetime], None] | None = None
    failure: dict[str, Any] | None = None
    """The ARM error (``{"code", "message"}``) this operation ends with, or None to succeed."""
    failure_status: int = 500
    polls: int = 0
    status: OperationStatus = OperationStatus.IN_PROGRESS
    ended: datetime | None = None
    disk_operation: bool = False
    """Disk-RP operations (snapshots) live under ``DiskOperations`` instead of ``operations``."""
    duration: float | None = None
    """Seconds this operation takes (drawn from its timing when it began); None: polls only."""

    @property
    def done(self) -> bool:
        return self.status is not OperationStatus.IN_PROGRESS

    def due(self, now: datetime) -> bool:
        """Whether the operation should finish now."""
        if self.done:
            return False
        if self.polls >= self.timing.polls:
            return True
        seconds = self.duration
        return seconds is not None and (now - self.created).total_seconds() >= seconds

    def finish(self, now: datetime) -> None:
        """End the operation and apply its effect (or its failure)."""
        if self.done:
            return
        self.ended = now
        if self.failure is None:
            self.status = OperationStatus.SUCCEEDED
            if self.on_success:
                self.on_success(now)
        else:
            self.status = OperationStatus.FAILED
            if self.on_failure:
                self.on_failure(now)

    def status_path(self) -> str:
        kind = "DiskOperations" if self.disk_operation else "operations"
        return (
            f"/subscriptions/{self.subscription_id}/providers/Microsoft.Compute"
            f"/locations/{self.location}/{kind}/{self.id}"
        )

    def status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"startTime": iso(self.created), "status": self.status.value, "name": self.id}
        if self.ended:
            body["endTime"] = iso(self.ended)
        if self.status is OperationStatus.FAILED and self.failure:
            body["error"] = dict(self.failure)
        return body

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "targetId": self.target_id,
            "status": self.status.value,
            "polls": self.polls,
            "created": iso(self.created),
            "ended": iso(self.ended) if self.ended else None,
            "error": self.failure if self.status is OperationStatus.FAILED else None,
        }


class OperationBook:
    """All operations by id. Not thread-safe on its own: the state's lock guards it."""

    def __init__(self, seed: int = 0) -> None:
        self._operations: dict[str, AsyncOperation] = {}
        self._durations = random.Random(seed)

    def add(
        self,
        *,
        operation: str,
        target_id: str,
        subscription_id: str,
        location: str,
        now: datetime,
        timing: LroTiming,
        on_success: Callable[[datetime], None] | None = None,
        on_failure: Callable[[datetime], None] | None = None,
        failure: dict[str, Any] | None = None,
        failure_status: int = 500,
        disk_operation: bool = False,
    ) -> AsyncOperation:
        record = AsyncOperation(
            id=str(uuid.uuid4()),
            operation=operation,
            target_id=target_id,
            subscription_id=subscription_id,
            location=location,
            created=now,
            timing=timing,
            on_success=on_success,
            on_failure=on_failure,
            failure=failure,
            failure_status=failure_status,
            disk_operation=disk_operation,
            duration=timing.duration(self._durations),
        )
        self._operations[record.id] = record
        return record

    def get(self, operation_id: str) -> AsyncOperation | None:
        return self._operations.get(operation_id.lower())

    def pending_for(self, target_id: str) -> AsyncOperation | None:
        """The unfinished operation on a resource, if any."""
        target = target_id.lower()
        return next((op for op in self._operations.values() if not op.done and op.target_id.lower() == target), None)

    def settle(self, now: datetime) -> None:
        """Finish every operation whose time has come (time-based completion)."""
        for record in list(self._operations.values()):
            if record.due(now):
                record.finish(now)

    def poll(self, record: AsyncOperation, now: datetime) -> None:
        """Count a status poll and finish the operation if that makes it due."""
        record.polls += 1
        if record.due(now):
            record.finish(now)

    def all(self) -> list[AsyncOperation]:
        return list(self._operations.values())
