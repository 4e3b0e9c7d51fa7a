"""One contract for the run records, run against the in-memory fake and Azure Table storage.

Every test in ``TestContract`` runs twice: on :class:`tests.fakes.FakeRunRecords` (what the
unit tests of the use cases trust) and on :class:`TableRunRecords` against Azurite. A test
that passes for both proves the fake behaves like the real thing. Tests after the contract
cover what only the table adapter has: property limits, key rules, types read back.
"""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import AzureError

from shared.adapters.storage_clients import StorageClients
from shared.adapters.table_records import TableRunRecords
from shared.adapters.table_values import MAX_PROPERTY_UNITS
from shared.errors import PermanentError
from shared.models.run import (
    Action,
    Phase,
    PhaseRecord,
    PhaseSource,
    PhaseStatus,
    RunRecord,
    TaskRecord,
    TaskStatus,
)
from shared.names import TableName
from shared.ports.idempotency import RecordChanged
from shared.ports.records import DeliveryOutcome, DeliveryRecord, RunNotFound, RunRecords
from shared.settings import StorageConnection
from tests.fakes import FakeRunRecords
from tests.integration.harness import empty_record_tables

SUB = "00000000-0000-0000-0000-000000000001"
SUB2 = "00000000-0000-0000-0000-000000000002"
CONFIG = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/weekly"
T0 = datetime(2026, 11, 15, 15, 0, tzinfo=timezone.utc)


def vm(name: str, subscription: str = SUB) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}"


def make_run(key: str = "weekly-20261115150000-abc", *, start: datetime = T0, **changes) -> RunRecord:
    run = RunRecord(
        run_key=key,
        correlation_id=f"{CONFIG}/providers/microsoft.maintenance/applyupdates/{start:%Y%m%d%H%M%S}",
        configuration_id=CONFIG,
        start=start,
        end=start + timedelta(hours=3),
        subscription_ids=(SUB, SUB2),
        created_at=start - timedelta(minutes=30),
    )
    return replace(run, **changes)


def make_phase(run_key: str = "weekly-20261115150000-abc", phase: Phase = Phase.PRE, **changes) -> PhaseRecord:
    record = PhaseRecord(
        run_key=run_key,
        phase=phase,
        status=PhaseStatus.RECEIVED,
        event_id="evt-1",
        received_at=T0 - timedelta(minutes=30),
    )
    return replace(record, **changes)


def make_task(
    target: str, *, run_key: str = "weekly-20261115150000-abc", phase: Phase = Phase.PRE, **changes
) -> TaskRecord:
    task = TaskRecord(
        run_key=run_key,
        phase=phase,
        action=Action.SNAPSHOT_DISKS if phase is Phase.PRE else Action.PRUNE_SNAPSHOTS,
        target=target,
        status=TaskStatus.QUEUED,
        queued_at=T0 - timedelta(minutes=29),
    )
    return replace(task, **changes)


def without_etag(record):
    return replace(record, etag=None)


@pytest.fixture
def table_records(storage) -> TableRunRecords:
    empty_record_tables(storage)
    return TableRunRecords(storage)


@pytest.fixture(params=["fake", pytest.param("table", marks=pytest.mark.integration)])
def records(request) -> RunRecords:
    if request.param == "fake":
        return FakeRunRecords()
    return request.getfixturevalue("table_records")


class TestContract:
    # -- runs -------------------------------------------------------------------------

    def test_a_created_run_reads_back_with_every_field(self, records):
        run = make_run(
            start=datetime(2026, 11, 15, 16, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
            cancellation_cutoff=T0 - timedelta(minutes=10),
            cancel_requested_at=T0 - timedelta(minutes=11),
            cancel_reason="snapshot failed on 2 machines",
            cancel_result="accepted",
        )

        stored, created = records.create_run(run)

        assert created is True
        assert stored.etag
        assert replace(stored, etag=None) == run
        assert records.get_run(run.run_key) == stored

    def test_creating_a_run_twice_keeps_the_first(self, records):
        first = make_run()
        records.create_run(first)

        stored, created = records.create_run(replace(first, end=first.end + timedelta(hours=1)))

        assert created is False
        assert replace(stored, etag=None) == first
        assert records.get_run(first.run_key) == stored

    def test_a_missing_run_raises_run_not_found(self, records):
        with pytest.raises(RunNotFound):
            records.get_run("never-recorded")

    def test_update_run_overwrites_and_clears_the_cancellation(self, records):
        run, _ = records.create_run(make_run())
        cancelled = replace(
            run, cancel_requested_at=T0, cancel_reason="deadline", cancel_result="accepted", cancel_accepted=True
        )

        cancelled = records.update_run(cancelled)
        assert records.get_run(run.run_key) == cancelled

        cleared = records.update_run(replace(run, etag=cancelled.etag))
        assert records.get_run(run.run_key) == cleared
        assert cleared.cancel_requested_at is None and cleared.cancel_accepted is False

    def test_update_run_from_a_stale_read_raises_record_changed(self, records):
        run, _ = records.create_run(make_run())
        records.update_run(replace(run, cancel_reason="first"))

        with pytest.raises(RecordChanged):
            records.update_run(replace(run, cancel_reason="second"))
        assert records.get_run(run.run_key).cancel_reason == "first"

    def test_list_runs_is_newest_start_first_and_limited(self, records):
        starts = [T0 + timedelta(days=offset) for offset in (3, -7, 0, 14, -1)]
        for index, start in enumerate(starts):
            records.create_run(make_run(f"weekly-{index}", start=start))

        listed = records.list_runs()

        assert [run.start for run in listed] == sorted(starts, reverse=True)
        assert [run.run_key for run in records.list_runs(limit=2)] == ["weekly-3", "weekly-0"]
        assert records.list_runs(limit=0) == []

    def test_list_runs_of_an_empty_store_is_empty(self, records):
        assert records.list_runs() == []

    # -- phases -----------------------------------------------------------------------

    def test_a_created_phase_reads_back_with_its_etag(self, records):
        phase = make_phase(
            status=PhaseStatus.PLANNED,
            source=PhaseSource.FALLBACK,
            event_status="Succeeded",
            policy={"snapshot": True, "keep": 3, "tags": {"team": "ops"}},
            planned_at=T0 - timedelta(minutes=29),
            expected_tasks=12,
            finished_tasks=3,
            failed_tasks=1,
            machines=6,
            completed_at=T0,
            findings=["vm1: patch mode is AutomaticByOS", "vm2: agent 1.40 is older than a year"],
        )

        stored, created = records.create_phase(phase)

        assert created is True
        assert stored.etag
        assert without_etag(stored) == phase
        assert records.get_phase(phase.run_key, Phase.PRE) == stored

    def test_creating_a_phase_twice_returns_the_stored_one(self, records):
        first, _ = records.create_phase(make_phase(event_id="first"))

        stored, created = records.create_phase(make_phase(event_id="second"))

        assert created is False
        assert stored == first
        records.replace_phase(replace(stored, status=PhaseStatus.PLANNED))  # its etag is current

    def test_a_missing_phase_is_none(self, records):
        records.create_phase(make_phase(phase=Phase.PRE))

        assert records.get_phase("weekly-20261115150000-abc", Phase.POST) is None
        assert records.get_phase("other-run", Phase.PRE) is None

    def test_replace_phase_with_the_current_etag_wins_and_gets_a_new_etag(self, records):
        stored, _ = records.create_phase(make_phase())

        updated = records.replace_phase(replace(stored, status=PhaseStatus.COMPLETED, finished_tasks=4))

        assert updated.etag and updated.etag != stored.etag
        assert records.get_phase(stored.run_key, Phase.PRE) == updated
        assert updated.status is PhaseStatus.COMPLETED and updated.finished_tasks == 4

    def test_replace_phase_with_a_stale_etag_loses(self, records):
        stored, _ = records.create_phase(make_phase())
        records.replace_phase(replace(stored, finished_tasks=1))

        with pytest.raises(RecordChanged):
            records.replace_phase(replace(stored, finished_tasks=2))
        assert records.get_phase(stored.run_key, Phase.PRE).finished_tasks == 1

    def test_replace_phase_without_an_etag_or_record_loses(self, records):
        stored, _ = records.create_phase(make_phase())

        with pytest.raises(RecordChanged):
            records.replace_phase(replace(stored, etag=None))
        with pytest.raises(RecordChanged):
            records.replace_phase(replace(stored, phase=Phase.POST))

    # -- tasks ------------------------------------------------------------------------

    def test_added_tasks_list_in_task_id_order_and_by_phase(self, records):
        pre = [make_task(vm(f"vm{index}")) for index in range(5)]
        post = [make_task(vm(f"vm{index}"), phase=Phase.POST) for index in range(3)]
        records.add_tasks(pre + post)

        listed = records.list_tasks("weekly-20261115150000-abc")

        assert [task.task_id for task in listed] == sorted(task.task_id for task in pre + post)
        assert all(task.etag for task in listed)
        assert [without_etag(t) for t in records.list_tasks(pre[0].run_key, Phase.PRE)] == sorted(
            pre, key=lambda task: task.task_id
        )
        assert {t.task_id for t in records.list_tasks(pre[0].run_key, Phase.POST)} == {t.task_id for t in post}
        assert records.list_tasks("other-run") == []

    def test_get_task_reads_every_field(self, records):
        task = make_task(
            vm("vm1"),
            status=TaskStatus.SUCCEEDED,
            detail="2 snapshots",
            attempts=2,
            started_at=T0 - timedelta(minutes=20),
            finished_at=T0 - timedelta(minutes=19, microseconds=7),
            data={"snapshots": ["snap-os", "snap-data0"], "started_by_us": False},
        )
        records.add_tasks([task])

        stored = records.get_task(task.run_key, task.task_id)

        assert without_etag(stored) == task
        assert records.get_task(task.run_key, "pre-start-vm-missing") is None

    def test_add_tasks_leaves_existing_tasks_alone(self, records):
        task = make_task(vm("vm1"))
        records.add_tasks([task])
        stored = records.get_task(task.run_key, task.task_id)
        done = records.replace_task(replace(stored, status=TaskStatus.SUCCEEDED, attempts=1))

        records.add_tasks([task, make_task(vm("vm2"))])

        assert records.get_task(task.run_key, task.task_id) == done
        assert len(records.list_tasks(task.run_key)) == 2

    def test_add_tasks_of_many_runs_in_more_than_one_transaction(self, records):
        """More than 100 tasks per partition, two partitions, a duplicate in the input."""
        big = [make_task(vm(f"vm{index:03d}"), run_key="run-big") for index in range(250)]
        small = [make_task(vm(f"vm{index:03d}"), run_key="run-small") for index in range(30)]
        duplicate = replace(big[0], detail="second copy of the same task")

        records.add_tasks(big + small + [duplicate])

        assert len(records.list_tasks("run-big")) == 250
        assert len(records.list_tasks("run-small")) == 30
        assert records.get_task("run-big", big[0].task_id).detail == ""  # the first copy wins

    def test_add_tasks_again_after_a_partial_add_creates_only_the_rest(self, records):
        """A plan message redelivered after a crash half-way through adding its tasks."""
        tasks = [make_task(vm(f"vm{index:03d}")) for index in range(150)]
        records.add_tasks(tasks[:120])
        first = records.get_task(tasks[0].run_key, tasks[0].task_id)
        records.replace_task(replace(first, status=TaskStatus.RETRYING, attempts=1))

        records.add_tasks(tasks)

        listed = records.list_tasks(tasks[0].run_key)
        assert len(listed) == 150
        assert records.get_task(tasks[0].run_key, tasks[0].task_id).status is TaskStatus.RETRYING

    def test_add_no_tasks_is_fine(self, records):
        records.add_tasks([])

        assert records.list_tasks("weekly-20261115150000-abc") == []

    def test_replace_task_without_an_etag_creates_it_once(self, records):
        task = make_task(vm("vm1"), status=TaskStatus.FAILED, detail="no snapshot")

        created = records.replace_task(task)

        assert created.etag
        assert records.get_task(task.run_key, task.task_id) == created
        with pytest.raises(RecordChanged):
            records.replace_task(task)

    def test_replace_task_needs_the_current_etag(self, records):
        records.add_tasks([make_task(vm("vm1"))])
        stored = records.get_task("weekly-20261115150000-abc", make_task(vm("vm1")).task_id)
        updated = records.replace_task(replace(stored, status=TaskStatus.SUCCEEDED, attempts=1))

        assert updated.etag != stored.etag
        with pytest.raises(RecordChanged):
            records.replace_task(replace(stored, status=TaskStatus.FAILED))
        assert records.get_task(stored.run_key, stored.task_id) == updated

    def test_replace_task_with_an_etag_but_no_record_loses(self, records):
        stored = records.replace_task(make_task(vm("vm1")))

        with pytest.raises(RecordChanged):
            records.replace_task(replace(stored, target=vm("vm-never-added")))

    # -- machines ---------------------------------------------------------------------

    def test_machines_are_recorded_once_per_run(self, records):
        ids = [vm("vm1"), vm("vm2"), "/subscriptions/" + SUB + "/resourceGroups/rg/providers/"
               "Microsoft.HybridCompute/machines/arc1"]  # fmt: skip
        records.add_machines("run-a", ids)

        records.add_machines("run-a", [ids[0].upper(), vm("vm3")])
        records.add_machines("run-b", [vm("vm9")])

        machines = records.list_machines("run-a")
        assert sorted(machine.resource_id for machine in machines) == sorted([*ids, vm("vm3")])
        assert {machine.run_key for machine in machines} == {"run-a"}
        assert [machine.resource_id for machine in records.list_machines("run-b")] == [vm("vm9")]
        assert records.list_machines("run-c") == []

    # -- deliveries -------------------------------------------------------------------

    def test_deliveries_list_newest_first_across_days(self, records):
        now = datetime.now(timezone.utc)
        times = [
            now - timedelta(days=400),  # older than the days read one by one
            now - timedelta(days=30),
            now - timedelta(days=2, minutes=5),
            now - timedelta(days=2),
            now - timedelta(hours=1),
            now,
        ]
        for index, received_at in enumerate(times):  # in the order they happened
            records.record_delivery(
                DeliveryRecord(
                    received_at=received_at,
                    event_id=f"evt-{index}",
                    event_type="Microsoft.Maintenance.PreMaintenanceEvent",
                    outcome=DeliveryOutcome.ACCEPTED if index % 2 else DeliveryOutcome.DUPLICATE,
                    reason="" if index % 2 else "seen before",
                    correlation_id=f"{CONFIG}/providers/microsoft.maintenance/applyupdates/{index}",
                    run_key=f"weekly-{index}",
                    phase="pre",
                    payload=json.dumps({"id": f"evt-{index}"}),
                )
            )

        listed = records.list_deliveries()

        assert [delivery.event_id for delivery in listed] == [f"evt-{index}" for index in range(5, -1, -1)]
        assert [delivery.received_at for delivery in listed] == sorted(times, reverse=True)
        assert listed[-1].outcome is DeliveryOutcome.DUPLICATE and listed[-1].reason == "seen before"
        assert [d.event_id for d in records.list_deliveries(limit=3)] == ["evt-5", "evt-4", "evt-3"]
        assert [d.event_id for d in records.list_deliveries(limit=5)][-1] == "evt-1"

    def test_no_deliveries_list_empty(self, records):
        assert records.list_deliveries() == []


# -- only the table adapter ---------------------------------------------------------------


def test_datetimes_read_back_as_plain_utc_datetimes(table_records):
    table_records.create_run(make_run(start=datetime(2026, 11, 15, 16, 0, tzinfo=timezone(timedelta(hours=1)))))

    run = table_records.get_run("weekly-20261115150000-abc")

    assert type(run.start) is datetime
    assert run.start.tzinfo is timezone.utc
    assert run.start == datetime(2026, 11, 15, 15, 0, tzinfo=timezone.utc)


def test_a_naive_datetime_is_taken_as_utc(table_records):
    table_records.create_run(make_run(start=datetime(2026, 11, 15, 15, 0)))

    assert table_records.get_run("weekly-20261115150000-abc").start == T0


def test_long_free_text_is_cut_to_fit_and_says_so(table_records):
    payload = json.dumps({"data": "x" * 200_000})
    table_records.record_delivery(
        DeliveryRecord(T0, "evt", "type", DeliveryOutcome.REJECTED, reason="r" * 40_000, payload=payload)
    )
    task = make_task(vm("vm1"), detail="\U0001f4a5" * 20_000)  # outside the BMP: 2 UTF-16 units each
    table_records.add_tasks([task])

    delivery = table_records.list_deliveries()[0]
    detail = table_records.get_task(task.run_key, task.task_id).detail

    assert delivery.payload.startswith(payload[:1000])
    assert f"of {len(payload)} characters kept" in delivery.payload
    assert len(delivery.payload.encode("utf-16-le")) <= 2 * MAX_PROPERTY_UNITS
    assert "reason truncated by prepost" in delivery.reason
    assert detail.startswith("\U0001f4a5" * 100) and "detail truncated by prepost" in detail
    assert len(detail.encode("utf-16-le")) <= 2 * MAX_PROPERTY_UNITS


def test_too_many_findings_keep_the_first_and_count_the_rest(table_records):
    findings = [f"vm{index:05d}: patch mode is Manual, {'x' * 80}" for index in range(2_000)]

    stored, _ = table_records.create_phase(make_phase(findings=findings))

    read = table_records.get_phase(stored.run_key, Phase.PRE)
    assert read.findings[:10] == findings[:10]
    assert read.findings[-1].startswith(f"[{2_000 - (len(read.findings) - 1)} more findings not stored")
    assert stored.findings == read.findings  # what create_phase returns is what was stored


def test_structured_data_too_large_for_a_property_is_refused(table_records):
    task = make_task(vm("vm1"), data={"snapshots": ["s" * 100] * 1_000})

    with pytest.raises(PermanentError, match="a table property holds at most 65,536"):
        table_records.add_tasks([task])


def test_a_key_with_characters_tables_forbid_is_refused(table_records):
    with pytest.raises(PermanentError, match="table keys may not contain"):
        table_records.create_run(make_run("weekly/2026"))
    with pytest.raises(PermanentError, match="table keys may not contain"):
        table_records.add_tasks([make_task("subscriptions/" + SUB)])


def test_layout_of_the_stored_entities(table_records, storage):
    """The documented keys, so people can find records in Storage Explorer."""
    table_records.create_run(make_run())
    table_records.create_phase(make_phase())
    table_records.add_machines("weekly-20261115150000-abc", [vm("vm1")])
    table_records.record_delivery(DeliveryRecord(T0, "evt", "type", DeliveryOutcome.ACCEPTED))

    runs = {(e["PartitionKey"], e["RowKey"]) for e in storage.table(TableName.RUNS).list_entities()}
    tasks = {(e["PartitionKey"], e["RowKey"]) for e in storage.table(TableName.TASKS).list_entities()}
    machine = next(iter(storage.table(TableName.MACHINES).list_entities()))
    delivery = next(iter(storage.table(TableName.EVENTS).list_entities()))

    assert runs == {("run", "weekly-20261115150000-abc")}
    assert tasks == {("weekly-20261115150000-abc", "phase-pre")}  # a phase sits beside its tasks
    assert len(machine["RowKey"]) == 16 and machine["ResourceId"] == vm("vm1")
    assert delivery["PartitionKey"] == "20261115"


def test_an_unreachable_table_service_fails_quickly():
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connection = StorageConnection(
        connection_string="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    clients = StorageClients(connection)

    # The SDK's default policy would retry for minutes; the tuned one gives up and raises.
    with pytest.raises(AzureError):
        TableRunRecords(clients).get_run("weekly-20261115150000-abc")
    clients.close()


def test_add_tasks_of_a_thousand_tasks_records_every_one(table_records):
    # How fast this is belongs to `make bench` (fan-out), not to an assertion here.
    tasks = [make_task(vm(f"vm{index:04d}")) for index in range(1_000)]

    table_records.add_tasks(tasks)

    assert len(table_records.list_tasks(tasks[0].run_key)) == 1_000
