"""A delivery records its outcome against the task version it holds; a stale one is read again."""

from __future__ import annotations

from shared.models.messages import TaskOutcome
from shared.models.run import Action, Phase, PhaseStatus, TaskStatus
from shared.usecases.delivery_records import DeliveryRecords
from shared.usecases.supervision import record_outcome
from tests.fakes import FakeRunRecords
from tests.fakes_azure import FakeEstate


class CountingRecords(FakeRunRecords):
    def __init__(self) -> None:
        super().__init__()
        self.task_reads = 0

    def get_task(self, run_key, task_id):
        self.task_reads += 1
        return super().get_task(run_key, task_id)


def estate_with(*names: str) -> tuple[FakeEstate, list[str]]:
    estate = FakeEstate()
    vms = [estate.add_vm(name) for name in names]
    estate.records = CountingRecords()
    estate.planned_pre()
    return estate, vms


def snapshot_task(estate: FakeEstate, vm: str):
    return estate.task(Phase.PRE, Action.SNAPSHOT_DISKS, vm)


def succeeded(estate: FakeEstate, vm: str) -> TaskOutcome:
    return TaskOutcome(
        run_key=estate.key,
        phase=Phase.PRE,
        action=Action.SNAPSHOT_DISKS,
        target=vm,
        status=TaskStatus.SUCCEEDED,
        detail="2 incremental snapshot(s)",
        data={"snapshots": ["s1"]},
    )


def record(estate: FakeEstate, outcome: TaskOutcome, known) -> bool:
    return record_outcome(
        outcome,
        records=estate.records,
        cancellation=estate.cancellation,
        transport=estate.transport,
        now=estate.now,
        known_task=known,
    )


def test_the_view_remembers_the_deliverys_own_task_as_last_read_or_written_and_no_other():
    estate, [vm, other] = estate_with("vm-web-01", "vm-web-02")
    mine = snapshot_task(estate, vm)
    view = DeliveryRecords(estate.records, estate.key, mine.task_id.upper())

    view.get_task(estate.key, snapshot_task(estate, other).task_id)
    assert view.own_task is None
    read = view.get_task(estate.key, mine.task_id)
    assert view.own_task == read
    read.data = {"snapshots_requested": ["s1"]}
    written = view.replace_task(read)
    assert view.own_task == written and view.own_task.etag != read.etag


def test_an_outcome_is_recorded_against_the_task_the_delivery_holds_without_reading_it_again():
    estate, [vm] = estate_with("vm-web-01")
    held = snapshot_task(estate, vm)
    reads = estate.records.task_reads

    assert record(estate, succeeded(estate, vm), held)

    assert estate.records.task_reads == reads
    assert snapshot_task(estate, vm).status is TaskStatus.SUCCEEDED
    assert estate.phase().finished_tasks == 1


def test_a_task_changed_by_another_writer_is_read_again_and_the_other_writers_change_kept():
    estate, [vm] = estate_with("vm-web-01")
    held = snapshot_task(estate, vm)
    meanwhile = snapshot_task(estate, vm)
    meanwhile.data = {"snapshots_requested": ["s1", "s2"]}
    estate.records.replace_task(meanwhile)

    assert record(estate, succeeded(estate, vm), held)

    stored = snapshot_task(estate, vm)
    assert stored.status is TaskStatus.SUCCEEDED
    assert stored.data == {"snapshots_requested": ["s1", "s2"], "snapshots": ["s1"]}
    assert estate.phase().finished_tasks == 1


def test_a_held_version_of_a_task_another_delivery_finished_records_nothing_and_counts_nothing_twice():
    estate, [vm, other] = estate_with("vm-web-01", "vm-web-02")
    held = snapshot_task(estate, vm)
    estate.report(Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED, detail="the duplicate got there first")

    assert not record(estate, succeeded(estate, vm), held)

    stored = snapshot_task(estate, vm)
    assert (stored.status, stored.detail) == (TaskStatus.FAILED, "the duplicate got there first")
    phase = estate.phase()
    assert (phase.finished_tasks, phase.failed_tasks) == (1, 1)
    assert phase.status is PhaseStatus.PLANNED
