"""The storage guarantees the safety fixes rest on, against Azure Table storage (Azurite).

- a task and its phase's counters change together or not at all;
- the phase rows now share the tasks' partition, and never show up as tasks;
- a run record written from a stale read is refused;
- a worker whose lock was taken over can neither complete nor release its successor's lock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from shared.adapters.table_idempotency import TableIdempotencyStore
from shared.adapters.table_records import TableRunRecords
from shared.models.run import Action, Phase, PhaseRecord, PhaseStatus, RunRecord, TaskRecord, TaskStatus
from shared.ports.idempotency import AlreadyDone, AlreadyInProgress, IdempotencyStatus, RecordChanged
from tests.integration.harness import empty_record_tables

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-000000000001"
CONFIG = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/weekly"
T0 = datetime(2026, 11, 15, 15, 0, tzinfo=timezone.utc)
RUN = "weekly-20261115150000-abc"
LOCK = timedelta(minutes=10)


def vm(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}"


@pytest.fixture
def records(storage) -> TableRunRecords:
    empty_record_tables(storage)
    return TableRunRecords(storage)


@pytest.fixture
def locks(storage) -> TableIdempotencyStore:
    return TableIdempotencyStore(storage, lock_timeout=LOCK, keep_results=timedelta(days=7))


def a_run() -> RunRecord:
    return RunRecord(
        run_key=RUN,
        correlation_id=f"{CONFIG}/providers/microsoft.maintenance/applyupdates/20261115150000",
        configuration_id=CONFIG,
        start=T0,
        end=T0 + timedelta(hours=3),
        subscription_ids=(SUB,),
        created_at=T0 - timedelta(minutes=30),
    )


def a_planned_phase(records: TableRunRecords, phase: Phase = Phase.PRE, *, tasks: int = 2) -> PhaseRecord:
    created, _ = records.create_phase(
        PhaseRecord(
            run_key=RUN, phase=phase, status=PhaseStatus.RECEIVED, event_id="evt-1", received_at=T0 - timedelta(hours=1)
        )
    )
    created.status = PhaseStatus.PLANNED
    created.expected_tasks = tasks
    return records.replace_phase(created)


def a_task(name: str, phase: Phase = Phase.PRE) -> TaskRecord:
    action = Action.SNAPSHOT_DISKS if phase is Phase.PRE else Action.DEALLOCATE_VM
    return TaskRecord(RUN, phase, action, vm(name), TaskStatus.QUEUED)


def finished(task: TaskRecord, phase: PhaseRecord) -> tuple[TaskRecord, PhaseRecord]:
    """The task made final and its phase's counter moved, as the outcome recorder does."""
    return replace(task, status=TaskStatus.SUCCEEDED, detail="1 snapshot"), replace(
        phase, finished_tasks=phase.finished_tasks + 1
    )


# -- a task and its phase: all or nothing ---------------------------------------------------


def test_a_task_and_its_phase_change_together_when_neither_changed_since_read(records):
    phase = a_planned_phase(records)
    records.add_tasks([a_task("vm-1")])
    task = records.get_task(RUN, a_task("vm-1").task_id)

    stored_task, stored_phase = records.replace_task_and_phase(*finished(task, phase))

    assert records.get_task(RUN, task.task_id) == stored_task
    assert records.get_task(RUN, task.task_id).status is TaskStatus.SUCCEEDED
    assert records.get_phase(RUN, Phase.PRE) == stored_phase
    assert records.get_phase(RUN, Phase.PRE).finished_tasks == 1


def test_a_stale_phase_etag_writes_neither_the_task_nor_the_phase(records):
    # A phase not planned yet counts on its own row (a planned one in counter shards, each
    # conditional on its etag the same way: tests/integration/test_phase_counter_shards.py).
    phase, _ = records.create_phase(
        PhaseRecord(run_key=RUN, phase=Phase.PRE, status=PhaseStatus.RECEIVED, event_id="evt-1", received_at=T0)
    )
    records.add_tasks([a_task("vm-1")])
    task = records.get_task(RUN, a_task("vm-1").task_id)
    # GIVEN another outcome counted itself into the phase after this one read it
    other = records.get_phase(RUN, Phase.PRE)
    other.finished_tasks = 1
    other = records.replace_phase(other)

    with pytest.raises(RecordChanged):
        records.replace_task_and_phase(*finished(task, phase))

    # THEN the task is untouched (a redelivery records it), and the other outcome's count stands
    assert records.get_task(RUN, task.task_id) == task
    assert records.get_phase(RUN, Phase.PRE) == other


def test_a_stale_task_etag_writes_neither_the_phase_nor_the_task(records):
    phase = a_planned_phase(records)
    records.add_tasks([a_task("vm-1")])
    task = records.get_task(RUN, a_task("vm-1").task_id)
    # GIVEN another delivery changed the task after this one read it
    other = records.get_task(RUN, task.task_id)
    other.status = TaskStatus.IN_PROGRESS
    other.detail = "snapshot requested"
    other = records.replace_task(other)

    with pytest.raises(RecordChanged):
        records.replace_task_and_phase(*finished(task, phase))

    assert records.get_phase(RUN, Phase.PRE) == phase
    assert records.get_task(RUN, task.task_id) == other


def test_list_tasks_never_returns_the_phase_rows_that_share_the_partition(records):
    pre = a_planned_phase(records, Phase.PRE, tasks=2)
    post = a_planned_phase(records, Phase.POST, tasks=1)
    records.add_tasks([a_task("vm-1"), a_task("vm-2"), a_task("vm-1", Phase.POST)])
    task = records.get_task(RUN, a_task("vm-1").task_id)
    records.replace_task_and_phase(*finished(task, pre))

    everything = records.list_tasks(RUN)
    pre_tasks = records.list_tasks(RUN, Phase.PRE)
    post_tasks = records.list_tasks(RUN, Phase.POST)

    assert [t.task_id for t in pre_tasks] == sorted([a_task("vm-1").task_id, a_task("vm-2").task_id])
    assert [t.task_id for t in post_tasks] == [a_task("vm-1", Phase.POST).task_id]
    assert sorted(t.task_id for t in everything) == sorted(t.task_id for t in pre_tasks + post_tasks)
    assert all(isinstance(t.action, Action) and not t.task_id.startswith("phase") for t in everything)
    assert records.get_phase(RUN, Phase.POST) == post


def test_list_tasks_of_a_run_with_phases_but_no_tasks_is_empty(records):
    a_planned_phase(records, Phase.PRE, tasks=0)
    a_planned_phase(records, Phase.POST, tasks=0)

    assert records.list_tasks(RUN) == []
    assert records.list_tasks(RUN, Phase.PRE) == []
    assert records.list_tasks(RUN, Phase.POST) == []


# -- runs -------------------------------------------------------------------------------------


def test_update_run_from_a_stale_read_is_refused_and_keeps_the_newer_write(records):
    records.create_run(a_run())
    stale = records.get_run(RUN)
    cancelled = records.get_run(RUN)
    cancelled.cancel_requested_at = T0 - timedelta(minutes=12)
    cancelled.cancel_reason = "pre-work not finished by the cancellation deadline"
    cancelled.cancel_accepted = True
    cancelled = records.update_run(cancelled)

    stale.cancellation_cutoff = T0 - timedelta(minutes=10)
    with pytest.raises(RecordChanged):
        records.update_run(stale)

    assert records.get_run(RUN) == cancelled


def test_update_run_without_an_etag_is_refused(records):
    records.create_run(a_run())

    with pytest.raises(RecordChanged):
        records.update_run(replace(a_run(), cancel_reason="written blind", etag=None))

    assert records.get_run(RUN).cancel_reason is None


# -- locks ----------------------------------------------------------------------------------


def test_a_slow_workers_release_leaves_its_successors_lock_in_place(locks, unique_suffix):
    key = f"run-{unique_suffix}:pre-snapshot-disks-0123456789abcdef"
    slow = locks.begin(key, now=T0)
    successor = locks.begin(key, now=T0 + LOCK + timedelta(seconds=1))  # the slow one's lock expired

    assert locks.release(slow) is False

    with pytest.raises(AlreadyInProgress):
        locks.begin(key, now=T0 + LOCK + timedelta(seconds=2))
    assert locks.complete(successor, {"status": "succeeded"}, now=T0 + LOCK + timedelta(seconds=3)) is True


def test_a_slow_workers_complete_leaves_its_successors_lock_in_place(locks, unique_suffix):
    key = f"run-{unique_suffix}:pre-start-vm-0123456789abcdef"
    slow = locks.begin(key, now=T0)
    successor = locks.begin(key, now=T0 + LOCK + timedelta(seconds=1))

    assert locks.complete(slow, {"status": "late"}, now=T0 + LOCK + timedelta(seconds=2)) is False

    assert locks._get(key).status is IdempotencyStatus.IN_PROGRESS
    with pytest.raises(AlreadyInProgress):
        locks.begin(key, now=T0 + LOCK + timedelta(seconds=3))
    assert locks.complete(successor, {"status": "succeeded"}, now=T0 + LOCK + timedelta(seconds=4)) is True
    assert locks.begin(key, now=T0 + LOCK + timedelta(seconds=5)) == AlreadyDone(key, {"status": "succeeded"})


def test_the_successor_can_release_its_own_lock(locks, unique_suffix):
    key = f"run-{unique_suffix}:pre-suppress-alerts-{unique_suffix}"
    locks.begin(key, now=T0)
    successor = locks.begin(key, now=T0 + LOCK + timedelta(seconds=1))

    assert locks.release(successor) is True

    assert locks._get(key) is None
