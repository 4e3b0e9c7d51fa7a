"""In-memory fakes of the ports, for unit tests of the use cases only.

Integration tests use the real adapters against Azurite and the management-API simulator.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from shared.models.messages import WorkMessage
from shared.models.run import MachineRecord, Phase, PhaseRecord, RunRecord, TaskRecord
from shared.ports.idempotency import IdempotencyRecord, IdempotencyStore, RecordChanged
from shared.ports.records import DeliveryRecord, RunNotFound, RunRecords
from shared.ports.transport import WorkTransport

_etags = itertools.count(1)


def _etag() -> str:
    return f'W/"{next(_etags)}"'


class FakeIdempotencyStore(IdempotencyStore):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.records: dict[str, IdempotencyRecord] = {}

    def _get(self, key):
        record = self.records.get(key)
        return copy.deepcopy(record) if record else None

    def _create(self, record):
        if record.key in self.records:
            raise RecordChanged(record.key)
        stored = self.records[record.key] = replace(record, etag=_etag())
        return stored.etag

    def _replace(self, record):
        current = self.records.get(record.key)
        if current is None or current.etag != record.etag:
            raise RecordChanged(record.key)
        stored = self.records[record.key] = replace(record, etag=_etag())
        return stored.etag

    def _delete(self, key, etag):
        current = self.records.get(key)
        if current is None:
            return
        if current.etag != etag:
            raise RecordChanged(key)
        del self.records[key]


class FakeRunRecords(RunRecords):
    def __init__(self):
        self.runs: dict[str, RunRecord] = {}
        self.phases: dict[tuple[str, Phase], PhaseRecord] = {}
        self.tasks: dict[tuple[str, str], TaskRecord] = {}
        self.machines: dict[str, dict[str, MachineRecord]] = {}
        self.deliveries: list[DeliveryRecord] = []

    def create_run(self, run):
        if run.run_key in self.runs:
            return copy.deepcopy(self.runs[run.run_key]), False
        stored = replace(copy.deepcopy(run), etag=_etag())
        self.runs[run.run_key] = stored
        return copy.deepcopy(stored), True

    def get_run(self, run_key):
        if run_key not in self.runs:
            raise RunNotFound(run_key)
        return copy.deepcopy(self.runs[run_key])

    def update_run(self, run):
        current = self.runs.get(run.run_key)
        if current is None or current.etag != run.etag:
            raise RecordChanged(run.run_key)
        stored = replace(copy.deepcopy(run), etag=_etag())
        self.runs[run.run_key] = stored
        return copy.deepcopy(stored)

    def list_runs(self, *, limit=50):
        return sorted(self.runs.values(), key=lambda r: r.start, reverse=True)[:limit]

    def create_phase(self, phase):
        key = (phase.run_key, phase.phase)
        if key in self.phases:
            return copy.deepcopy(self.phases[key]), False
        stored = replace(copy.deepcopy(phase), etag=_etag())
        self.phases[key] = stored
        return copy.deepcopy(stored), True

    def get_phase(self, run_key, phase):
        stored = self.phases.get((run_key, phase))
        return copy.deepcopy(stored) if stored else None

    def replace_phase(self, phase):
        key = (phase.run_key, phase.phase)
        current = self.phases.get(key)
        if current is None or current.etag != phase.etag:
            raise RecordChanged(str(key))
        stored = replace(copy.deepcopy(phase), etag=_etag())
        self.phases[key] = stored
        return copy.deepcopy(stored)

    def add_tasks(self, tasks):
        for task in tasks:
            key = (task.run_key, task.task_id)
            if key not in self.tasks:
                self.tasks[key] = replace(copy.deepcopy(task), etag=_etag())

    def get_task(self, run_key, task_id):
        stored = self.tasks.get((run_key, task_id))
        return copy.deepcopy(stored) if stored else None

    def replace_task(self, task):
        key = (task.run_key, task.task_id)
        current = self.tasks.get(key)
        if task.etag is None and current is not None:
            raise RecordChanged(str(key))
        if task.etag is not None and (current is None or current.etag != task.etag):
            raise RecordChanged(str(key))
        stored = replace(copy.deepcopy(task), etag=_etag())
        self.tasks[key] = stored
        return copy.deepcopy(stored)

    def replace_task_and_phase(self, task, phase):
        task_key, phase_key = (task.run_key, task.task_id), (phase.run_key, phase.phase)
        current_task, current_phase = self.tasks.get(task_key), self.phases.get(phase_key)
        if current_task is None or current_task.etag != task.etag:
            raise RecordChanged(str(task_key))
        if current_phase is None or current_phase.etag != phase.etag:
            raise RecordChanged(str(phase_key))
        self.tasks[task_key] = replace(copy.deepcopy(task), etag=_etag())
        self.phases[phase_key] = replace(copy.deepcopy(phase), etag=_etag())
        return copy.deepcopy(self.tasks[task_key]), copy.deepcopy(self.phases[phase_key])

    def list_tasks(self, run_key, phase=None):
        found = [
            copy.deepcopy(task)
            for (key, _), task in self.tasks.items()
            if key == run_key and (phase is None or task.phase is phase)
        ]
        return sorted(found, key=lambda task: task.task_id)

    def add_machines(self, run_key, resource_ids):
        bucket = self.machines.setdefault(run_key, {})
        for resource_id in resource_ids:
            bucket.setdefault(resource_id.lower(), MachineRecord(run_key, resource_id))

    def list_machines(self, run_key):
        return list(self.machines.get(run_key, {}).values())

    def record_delivery(self, delivery):
        self.deliveries.append(copy.deepcopy(delivery))

    def list_deliveries(self, *, limit=50):
        return list(reversed(self.deliveries))[:limit]


@dataclass
class SentMessage:
    message: WorkMessage
    delay: timedelta | None


@dataclass
class FakeTransport(WorkTransport):
    sent: list[SentMessage] = field(default_factory=list)

    def send(self, messages: Sequence[WorkMessage], *, delay: timedelta | None = None) -> None:
        self.sent.extend(SentMessage(message, delay) for message in messages)

    def of_kind(self, cls: type) -> list[WorkMessage]:
        return [item.message for item in self.sent if type(item.message) is cls]

    def take(self) -> list[SentMessage]:
        taken, self.sent = self.sent, []
        return taken
