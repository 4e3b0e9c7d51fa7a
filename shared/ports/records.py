"""The run records port: runs, phases, tasks, machines and the intake's delivery log."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from shared.errors import PrepostError
from shared.models.run import MachineRecord, Phase, PhaseRecord, RunRecord, TaskRecord


class RunNotFound(PrepostError):
    """No run is recorded under that correlation id or key."""


class DeliveryOutcome(str, Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"


@dataclass
class DeliveryRecord:
    """One event the intake saw and what it did with it."""

    received_at: datetime
    event_id: str
    event_type: str
    outcome: DeliveryOutcome
    reason: str = ""
    correlation_id: str = ""
    run_key: str = ""
    phase: str = ""
    payload: str = ""
    """The raw event, cut to what a table property holds: enough to replay it."""


class RunRecords(ABC):
    """Durable records of runs. Every write is idempotent or conditional on an etag.

    ``replace_*`` raise :class:`shared.ports.idempotency.RecordChanged` when the record changed
    since it was read, so concurrent handlers never lose each other's updates.
    """

    @abstractmethod
    def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        """Create the run unless it exists; return the stored run and whether it was created."""

    @abstractmethod
    def get_run(self, run_key: str) -> RunRecord:
        """The run; raises :class:`RunNotFound`."""

    @abstractmethod
    def update_run(self, run: RunRecord) -> RunRecord:
        """Replace the run if its etag still matches; returns it with its new etag.

        Raises:
            RecordChanged: the run changed (or was not read) since ``run.etag``.
        """

    @abstractmethod
    def list_runs(self, *, limit: int = 50) -> list[RunRecord]:
        """Most recent runs first (by scheduled start)."""

    @abstractmethod
    def create_phase(self, phase: PhaseRecord) -> tuple[PhaseRecord, bool]:
        """Create the phase unless it exists; return the stored phase and whether it was created."""

    @abstractmethod
    def get_phase(self, run_key: str, phase: Phase) -> PhaseRecord | None:
        """The phase with its etag, or None."""

    @abstractmethod
    def replace_phase(self, phase: PhaseRecord) -> PhaseRecord:
        """Replace if the etag matches; returns the record with its new etag."""

    @abstractmethod
    def add_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        """Create tasks that do not exist yet; existing ones are left as they are."""

    @abstractmethod
    def get_task(self, run_key: str, task_id: str) -> TaskRecord | None:
        """The task with its etag, or None."""

    @abstractmethod
    def replace_task(self, task: TaskRecord) -> TaskRecord:
        """Replace (or create, when ``etag`` is None) the task; returns it with its new etag."""

    @abstractmethod
    def replace_task_and_phase(self, task: TaskRecord, phase: PhaseRecord) -> tuple[TaskRecord, PhaseRecord]:
        """Replace a task and its phase together, both conditional on their etags: all or nothing.

        This is how a task becomes final: the phase's counters change in the same write as
        the task, so they can never disagree with the task records. An adapter may keep the
        counters apart from the rest of the phase (the Table adapter spreads a planned phase's
        over several rows, so that outcomes do not all race for one): then the write is
        conditional on the counters it changes rather than on the whole phase, and the phase
        returned is read again after the write, its counters possibly ahead of this write
        (other outcomes counted meanwhile), never behind.

        Raises:
            RecordChanged: either record changed since it was read; neither was written.
        """

    @abstractmethod
    def list_tasks(self, run_key: str, phase: Phase | None = None) -> list[TaskRecord]:
        """Every task of the run (or phase), in task id order."""

    @abstractmethod
    def add_machines(self, run_key: str, resource_ids: Sequence[str]) -> None:
        """Record the machines in the run's scope (idempotent)."""

    @abstractmethod
    def list_machines(self, run_key: str) -> list[MachineRecord]:
        """The machines recorded for the run."""

    @abstractmethod
    def record_delivery(self, delivery: DeliveryRecord) -> None:
        """Append one intake delivery to the log."""

    @abstractmethod
    def list_deliveries(self, *, limit: int = 50) -> list[DeliveryRecord]:
        """Most recent deliveries first."""
