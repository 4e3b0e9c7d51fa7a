"""A phase's counters spread over counter shards (Azure Table storage, Azurite): exact under races.

Once planned, a final outcome writes its task and the one counter shard its task id hashes to,
instead of the phase row every outcome used to race for (see :mod:`shared.adapters.table_records`).
What must always hold:

- every final task is counted exactly once, failures too, however many outcomes land at once
  and however they interleave with planning, which counts the task records itself;
- the phase is closed exactly once, by whoever sees the last task counted;
- a closed phase shows the absolute counts it was closed with, whatever the shards hold;
- a write of the phase (status, findings) neither loses nor doubles what landed in the shards;
- outcomes of tasks in different shards never make each other write again.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.adapters.storage_clients import StorageClients
from shared.adapters.table_records import COUNTER_SHARDS, TableRunRecords, shard_of
from shared.models.messages import TaskOutcome
from shared.models.policy import RunPolicy
from shared.models.run import Action, Phase, PhaseRecord, PhaseStatus, RunRecord, TaskRecord, TaskStatus, task_id
from shared.names import TableName
from shared.ports.azure import RunCancellation
from shared.ports.idempotency import RecordChanged
from shared.usecases.planning import _mark_planned
from shared.usecases.supervision import finish_phase_if_done, record_outcome
from tests.fakes import FakeTransport
from tests.integration.harness import empty_record_tables

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-000000000001"
CONFIG = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/weekly"
T0 = datetime(2026, 11, 15, 15, 0, tzinfo=timezone.utc)
NOW = T0 - timedelta(minutes=50)
RUN = "weekly-20261115150000-abc"
ACTION = {Phase.PRE: Action.SNAPSHOT_DISKS, Phase.POST: Action.DEALLOCATE_VM}
BARRIER_TIMEOUT = 30
"""Seconds a barrier waits for its parties: a generous bound, only reached when the code hangs."""


def vm(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}"


def task_of(name: str, phase: Phase = Phase.POST) -> TaskRecord:
    return TaskRecord(RUN, phase, ACTION[phase], vm(name), TaskStatus.QUEUED)


def names_in_distinct_shards(count: int) -> list[str]:
    """``count`` machine names whose tasks fall in different shards."""
    found: dict[int, str] = {}
    for index in range(10_000):
        name = f"vm-{index}"
        found.setdefault(shard_of(task_of(name).task_id), name)
        if len(found) == count:
            return list(found.values())
    raise AssertionError("not enough shards")


def names_in_one_shard(count: int) -> list[str]:
    """``count`` machine names whose tasks fall in the same shard."""
    by_shard: dict[int, list[str]] = {}
    for index in range(10_000):
        name = f"vm-{index}"
        same = by_shard.setdefault(shard_of(task_of(name).task_id), [])
        same.append(name)
        if len(same) == count:
            return same
    raise AssertionError("no shard collects that many")


class CountingTable:
    """The tasks table as the adapter uses it, counting its requests; ``before_batch`` runs
    just before each transaction is sent (to line writers up behind a barrier)."""

    def __init__(self, table: Any, counts: dict[str, int], lock: threading.Lock, before_batch=None) -> None:
        self._table, self._counts, self._lock, self._before_batch = table, counts, lock, before_batch

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] = self._counts.get(what, 0) + 1

    def submit_transaction(self, operations, **kwargs):
        if self._before_batch is not None:
            self._before_batch()
        self._count("batch")
        try:
            return self._table.submit_transaction(operations, **kwargs)
        except Exception:
            self._count("batch lost")
            raise

    def query_entities(self, *args, **kwargs):
        self._count("query")
        return self._table.query_entities(*args, **kwargs)

    def get_entity(self, *args, **kwargs):
        self._count("get")
        return self._table.get_entity(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        self._count(name)
        return getattr(self._table, name)


class ObservedRecords(TableRunRecords):
    """The real adapter; it counts the tasks table's requests and the phases it closed."""

    def __init__(self, clients: StorageClients, before_batch=None) -> None:
        super().__init__(clients)
        self.counts: dict[str, int] = {}
        self.closes: list[PhaseRecord] = []
        self._lock = threading.Lock()
        self.before_batch = before_batch

    @property
    def _tasks(self):
        return CountingTable(self._clients.table(TableName.TASKS), self.counts, self._lock, self.before_batch)

    def replace_phase(self, phase: PhaseRecord) -> PhaseRecord:
        written = super().replace_phase(phase)
        if written.status.is_final:
            with self._lock:
                self.closes.append(written)
        return written


class RecordingCancellation(RunCancellation):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def cancel(self, correlation_id: str) -> str:
        self.calls.append(correlation_id)
        return "Cancelled"


@pytest.fixture
def records(storage) -> ObservedRecords:
    empty_record_tables(storage)
    records = ObservedRecords(storage)
    records.create_run(
        RunRecord(
            run_key=RUN,
            correlation_id=f"{CONFIG}/providers/microsoft.maintenance/applyupdates/20261115150000",
            configuration_id=CONFIG,
            start=T0,
            end=T0 + timedelta(hours=3),
            subscription_ids=(SUB,),
            created_at=T0 - timedelta(minutes=60),
        )
    )
    return records


def received_phase(records: TableRunRecords, phase: Phase = Phase.POST) -> PhaseRecord:
    created, _ = records.create_phase(
        PhaseRecord(run_key=RUN, phase=phase, status=PhaseStatus.RECEIVED, event_id="evt-1", received_at=NOW)
    )
    return created


def planned_phase(records: TableRunRecords, tasks: list[TaskRecord], phase: Phase = Phase.POST) -> PhaseRecord:
    created = received_phase(records, phase)
    created.status = PhaseStatus.PLANNED
    created.planned_at = NOW
    created.expected_tasks = len(tasks)
    records.add_tasks(tasks)
    return records.replace_phase(created)


def outcome(task: TaskRecord, status: TaskStatus = TaskStatus.SUCCEEDED) -> TaskOutcome:
    return TaskOutcome(run_key=RUN, phase=task.phase, action=task.action, target=task.target, status=status)


def record(records: TableRunRecords, message: TaskOutcome) -> bool:
    return record_outcome(
        message, records=records, cancellation=RecordingCancellation(), transport=FakeTransport(), now=NOW
    )


def finish(task: TaskRecord, phase: PhaseRecord) -> tuple[TaskRecord, PhaseRecord]:
    """The task made final and its phase's counter moved, as the outcome recorder does."""
    return replace(task, status=TaskStatus.SUCCEEDED), replace(phase, finished_tasks=phase.finished_tasks + 1)


def shard_rows(storage: StorageClients, phase: Phase = Phase.POST) -> dict[str, dict]:
    prefix = f"phase-{phase.value}-n"
    return {
        e["RowKey"]: e
        for e in storage.table(TableName.TASKS).list_entities()
        if e["PartitionKey"] == RUN and e["RowKey"].startswith(prefix)
    }


# -- the adapter's rules ---------------------------------------------------------------------


def test_a_planned_phase_counts_in_the_tasks_shards_and_is_read_as_their_sum(records, storage):
    names = names_in_distinct_shards(3)
    tasks = [task_of(name) for name in names]
    planned_phase(records, tasks)

    for task in tasks:
        stored = records.get_task(RUN, task.task_id)
        phase = records.get_phase(RUN, Phase.POST)
        _, returned = records.replace_task_and_phase(*finish(stored, phase))
        assert returned == records.get_phase(RUN, Phase.POST)

    assert records.get_phase(RUN, Phase.POST).finished_tasks == 3
    rows = shard_rows(storage)
    assert sorted(rows) == sorted(f"phase-post-n{shard_of(t.task_id)}" for t in tasks)
    assert all(row["FinishedTasks"] == 1 for row in rows.values())
    main = storage.table(TableName.TASKS).get_entity(RUN, "phase-post")
    assert main["FinishedTasks"] == 0
    assert sorted(t.task_id for t in records.list_tasks(RUN)) == sorted(t.task_id for t in tasks)


def test_outcomes_in_different_shards_read_before_either_wrote_both_count(records):
    names = names_in_distinct_shards(2)
    tasks = [task_of(name) for name in names]
    planned_phase(records, tasks)
    # GIVEN both outcomes read the phase before either wrote
    reads = [(records.get_task(RUN, t.task_id), records.get_phase(RUN, Phase.POST)) for t in tasks]

    _, after_first = records.replace_task_and_phase(*finish(*reads[0]))
    _, after_second = records.replace_task_and_phase(*finish(*reads[1]))

    # THEN neither write was refused, and the second sees both counted (it may close the phase)
    assert after_first.finished_tasks == 1
    assert after_second.finished_tasks == 2
    assert records.get_phase(RUN, Phase.POST).finished_tasks == 2


def test_a_stale_shard_writes_neither_the_task_nor_the_shard(records, storage):
    tasks = [task_of(name) for name in names_in_one_shard(3)]
    planned_phase(records, tasks)
    reads = [(records.get_task(RUN, t.task_id), records.get_phase(RUN, Phase.POST)) for t in tasks]
    # GIVEN the first task of the shard counted itself after the others read the phase
    records.replace_task_and_phase(*finish(*reads[0]))
    counted = records.get_phase(RUN, Phase.POST)

    # THEN the second, which saw no shard, cannot create it again
    with pytest.raises(RecordChanged):
        records.replace_task_and_phase(*finish(*reads[1]))
    assert records.get_task(RUN, tasks[1].task_id) == reads[1][0]
    assert records.get_phase(RUN, Phase.POST) == counted

    # AND once the second counted itself on a fresh read, the third's etag of the shard is stale
    records.replace_task_and_phase(*finish(reads[1][0], records.get_phase(RUN, Phase.POST)))
    with pytest.raises(RecordChanged):
        records.replace_task_and_phase(*finish(reads[2][0], counted))
    assert records.get_task(RUN, tasks[2].task_id) == reads[2][0]
    assert records.get_phase(RUN, Phase.POST).finished_tasks == 2
    assert [row["FinishedTasks"] for row in shard_rows(storage).values()] == [2]


def test_a_received_phase_counts_on_its_row_conditional_on_its_etag(records, storage):
    phase = received_phase(records)
    records.add_tasks([task_of("vm-1")])
    task = records.get_task(RUN, task_of("vm-1").task_id)
    # GIVEN planning wrote the phase after this outcome read it
    planning = records.get_phase(RUN, Phase.POST)
    planning.findings = ["counted"]
    planning = records.replace_phase(planning)

    with pytest.raises(RecordChanged):
        records.replace_task_and_phase(*finish(task, phase))
    assert records.get_task(RUN, task.task_id) == task
    assert records.get_phase(RUN, Phase.POST) == planning

    # AND with a fresh read it counts on the phase row, no shard
    _, written = records.replace_task_and_phase(*finish(task, records.get_phase(RUN, Phase.POST)))
    assert written.finished_tasks == 1 == storage.table(TableName.TASKS).get_entity(RUN, "phase-post")["FinishedTasks"]
    assert shard_rows(storage) == {}


def test_a_phase_write_neither_loses_nor_doubles_what_landed_in_the_shards(records):
    names = names_in_distinct_shards(3)
    tasks = [task_of(name) for name in names]
    planned_phase(records, tasks)
    first = records.get_task(RUN, tasks[0].task_id)
    records.replace_task_and_phase(*finish(first, records.get_phase(RUN, Phase.POST)))
    # GIVEN a writer read the phase (one counted), then another outcome landed in its shard
    writer = records.get_phase(RUN, Phase.POST)
    second = records.get_task(RUN, tasks[1].task_id)
    records.replace_task_and_phase(*finish(second, records.get_phase(RUN, Phase.POST)))

    writer.findings = ["a post-event came late"]
    written = records.replace_phase(writer)

    # THEN the phase row's write kept both counts: not lost (2) and not doubled (3)
    assert written.finished_tasks == 1  # as the writer knew it
    fresh = records.get_phase(RUN, Phase.POST)
    assert fresh.finished_tasks == 2 and fresh.findings == ["a post-event came late"]


def test_a_closed_phase_is_read_with_its_absolute_counts_whatever_the_shards_hold(records, storage):
    names = names_in_distinct_shards(2)
    tasks = [task_of(name) for name in names]
    planned_phase(records, tasks)
    for task in tasks:
        records.replace_task_and_phase(*finish(records.get_task(RUN, task.task_id), records.get_phase(RUN, Phase.POST)))
    assert len(shard_rows(storage)) == 2

    closed = finish_phase_if_done(
        RUN, Phase.POST, records=records, cancellation=RecordingCancellation(), transport=FakeTransport(), now=NOW
    )

    assert closed is not None and closed.status is PhaseStatus.COMPLETED
    assert (closed.finished_tasks, closed.failed_tasks) == (2, 0)
    main = storage.table(TableName.TASKS).get_entity(RUN, "phase-post")
    assert (main["FinishedTasks"], main["FailedTasks"]) == (2, 0)
    read = records.get_phase(RUN, Phase.POST)
    assert (read.status, read.finished_tasks, read.failed_tasks) == (PhaseStatus.COMPLETED, 2, 0)
    assert len(shard_rows(storage)) == 2  # still there, and not added on top


# -- the outcome recorder on the real adapter ------------------------------------------------


@pytest.mark.parametrize("phase", [Phase.POST, Phase.PRE])
def test_forty_outcomes_from_eight_threads_are_counted_exactly_and_close_the_phase_once(records, storage, phase):
    tasks = [task_of(f"vm-{index}", phase) for index in range(40)]
    planned_phase(records, tasks, phase)
    # Every fifth fails; a pre phase's policy is absent, so the defaults decide (and may cancel).
    statuses = {t.task_id: TaskStatus.FAILED if i % 5 == 0 else TaskStatus.SUCCEEDED for i, t in enumerate(tasks)}
    start = threading.Barrier(8, timeout=BARRIER_TIMEOUT)

    def worker(mine: list[TaskRecord]) -> None:
        start.wait()
        for task in mine:
            assert record(records, outcome(task, statuses[task.task_id]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(worker, tasks[index::8]) for index in range(8)]:
            future.result()

    final = records.get_phase(RUN, phase)
    failed = sum(status is TaskStatus.FAILED for status in statuses.values())
    assert final.status is PhaseStatus.COMPLETED_WITH_FAILURES
    assert (final.finished_tasks, final.failed_tasks) == (40, failed)
    assert [(c.finished_tasks, c.failed_tasks) for c in records.closes] == [(40, failed)]
    assert all(t.status is statuses[t.task_id] for t in records.list_tasks(RUN, phase))
    assert len(shard_rows(storage, phase)) > 1


def test_outcomes_racing_with_planning_are_each_counted_once(records, storage):
    """Planning counts the task records, then marks the phase planned against the etag it read;
    outcomes land before, during and after, some on the phase row and some in shards."""
    tasks = [task_of(f"vm-{index}") for index in range(24)]
    phase = received_phase(records)
    records.add_tasks(tasks)
    early, late = tasks[:12], tasks[12:]
    statuses = {t.task_id: TaskStatus.FAILED if i % 4 == 0 else TaskStatus.SUCCEEDED for i, t in enumerate(tasks)}
    # Planning's first count sees none of the early outcomes; they land before it writes.
    counted = threading.Event()

    class CountedThenRaced(ObservedRecords):
        def list_tasks(self, run_key, phase=None):
            found = super().list_tasks(run_key, phase)
            if not counted.is_set():
                counted.set()
                with ThreadPoolExecutor(max_workers=4) as pool:
                    list(pool.map(lambda t: record(records, outcome(t, statuses[t.task_id])), early))
            return found

    planner = CountedThenRaced(storage)
    counts = planner.counts
    start = threading.Barrier(5, timeout=BARRIER_TIMEOUT)

    def plan() -> None:
        start.wait()
        _mark_planned(phase, tasks, 24, [], RunPolicy(), planner, NOW)
        finish_phase_if_done(
            RUN, Phase.POST, records=records, cancellation=RecordingCancellation(), transport=FakeTransport(), now=NOW
        )

    def late_outcomes(mine: list[TaskRecord]) -> None:
        start.wait()
        for task in mine:
            record(records, outcome(task, statuses[task.task_id]))

    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = [pool.submit(plan)] + [pool.submit(late_outcomes, late[index::4]) for index in range(4)]
        for future in futures:
            future.result()

    final = records.get_phase(RUN, Phase.POST)
    failed = sum(status is TaskStatus.FAILED for status in statuses.values())
    assert final.status is PhaseStatus.COMPLETED_WITH_FAILURES
    assert (final.finished_tasks, final.failed_tasks) == (24, failed)
    assert [(c.finished_tasks, c.failed_tasks) for c in records.closes + planner.closes] == [(24, failed)]
    assert counts["update_entity"] >= 2  # planning's first write was refused: it counted again


# -- round trips -----------------------------------------------------------------------------


def test_outcomes_of_different_shards_recorded_at_once_lose_no_race(storage):
    names = names_in_distinct_shards(8)
    records = _fresh(storage)
    tasks = [task_of(name) for name in names]
    planned_phase(records, tasks)
    records.counts.clear()
    records.before_batch = first_batches_line_up(8)

    # Every outcome has read the phase before any writes (the barrier): with one counter row,
    # seven of these eight writes would be refused and done again.
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(lambda t: record(records, outcome(t)), tasks))

    assert records.counts["batch"] == 8
    assert records.counts.get("batch lost", 0) == 0
    assert records.get_phase(RUN, Phase.POST).status is PhaseStatus.COMPLETED


def test_outcomes_of_one_shard_recorded_at_once_lose_the_race_as_one_row_did(storage):
    """The same measurement where it must show a loss: two tasks in one shard."""
    names = names_in_one_shard(2)
    records = _fresh(storage)
    tasks = [task_of(name) for name in names]
    planned_phase(records, tasks)
    records.counts.clear()
    records.before_batch = first_batches_line_up(2)

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert all(pool.map(lambda t: record(records, outcome(t)), tasks))

    assert records.counts.get("batch lost", 0) == 1
    assert records.get_phase(RUN, Phase.POST).finished_tasks == 2


def first_batches_line_up(parties: int):
    """A ``before_batch`` that holds the first ``parties`` transactions until all are ready to
    be sent (so each writer has read the phase before any wrote); later ones go at once."""
    barrier = threading.Barrier(parties, timeout=BARRIER_TIMEOUT)
    calls = iter(range(1_000_000))
    lock = threading.Lock()

    def before_batch() -> None:
        with lock:
            call = next(calls)
        if call < parties:
            barrier.wait()

    return before_batch


def _fresh(storage: StorageClients) -> ObservedRecords:
    empty_record_tables(storage)
    return ObservedRecords(storage)


def test_the_shards_are_a_fixed_handful_and_stable_across_processes():
    ids = [task_id(Phase.PRE, Action.SNAPSHOT_DISKS, vm(f"vm-{index}")) for index in range(200)]
    assert {shard_of(i) for i in ids} == set(range(COUNTER_SHARDS))
    # crc32 of the id: the same in every process, unlike hash() of a str
    assert shard_of("pre-snapshot-disks-0000000000000000") == shard_of("pre-snapshot-disks-0000000000000000")
