"""The run records as one task delivery uses them: the newest version of its own task, remembered.

A delivery reads its task record (the message check and the action's idempotency markers), may
write markers to it, and then records its outcome (:func:`~shared.usecases.supervision.record_outcome`),
which would read the task once more only to get what this delivery already holds. This view
passes every call on unchanged and remembers the version of the delivery's own task it last read
or wrote, so the recorder can write against it instead. Nothing is assumed from it: the write is
conditional on its etag, and a task changed by anyone else meanwhile fails the write and is read
again. It lives for one delivery only; it is not a cache.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.models.run import MachineRecord, Phase, PhaseRecord, RunRecord, TaskRecord
from shared.ports.records import DeliveryRecord, RunRecords


class DeliveryRecords(RunRecords):
    """``records`` as seen by the delivery of task ``task_id`` of run ``run_key``."""

    def __init__(self, records: RunRecords, run_key: str, task_id: str) -> None:
        self._records = records
        self._key = (run_key, task_id.lower())
        self.own_task: TaskRecord | None = None
        """The delivery's task as it last read or wrote it (None until then)."""

    def _remember(self, task: TaskRecord | None) -> TaskRecord | None:
        if task is not None and (task.run_key, task.task_id.lower()) == self._key:
            self.own_task = task
        return task

    # -- the task: remembered ----------------------------------------------------------

    def get_task(self, run_key: str, task_id: str) -> TaskRecord | None:
        return self._remember(self._records.get_task(run_key, task_id))

    def replace_task(self, task: TaskRecord) -> TaskRecord:
        return self._remember(self._records.replace_task(task))

    def replace_task_and_phase(self, task: TaskRecord, phase: PhaseRecord) -> tuple[TaskRecord, PhaseRecord]:
        written, phase_written = self._records.replace_task_and_phase(task, phase)
        self._remember(written)
        return written, phase_written

    # -- everything else: passed on ----------------------------------------------------

    def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        return self._records.create_run(run)

    def get_run(self, run_key: str) -> RunRecord:
        return self._records.get_run(run_key)

    def update_run(self, run: RunRecord) -> RunRecord:
        return self._records.update_run(run)

    def list_runs(self, *, limit: int = 50) -> list[RunRecord]:
        return self._records.list_runs(limit=limit)

    def create_phase(self, phase: PhaseRecord) -> tuple[PhaseRecord, bool]:
        return self._records.create_phase(phase)

    def get_phase(self, run_key: str, phase: Phase) -> PhaseRecord | None:
        return self._records.get_phase(run_key, phase)

    def replace_phase(self, phase: PhaseRecord) -> PhaseRecord:
        return self._records.replace_phase(phase)

    def add_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        self._records.add_tasks(tasks)

    def list_tasks(self, run_key: str, phase: Phase | None = None) -> list[TaskRecord]:
        return self._records.list_tasks(run_key, phase)

    def add_machines(self, run_key: str, resource_ids: Sequence[str]) -> None:
        self._records.add_machines(run_key, resource_ids)

    def list_machines(self, run_key: str) -> list[MachineRecord]:
        return self._records.list_machines(run_key)

    def record_delivery(self, delivery: DeliveryRecord) -> None:
        self._records.record_delivery(delivery)

    def list_deliveries(self, *, limit: int = 50) -> list[DeliveryRecord]:
        return self._records.list_deliveries(limit=limit)
