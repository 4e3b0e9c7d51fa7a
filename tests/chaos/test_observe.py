"""The drill's direct view of Azurite: task times, poison queues and their replay."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from prepost.chaos.observe import StorageView
from prepost.chaos.timescale import ScaledClock
from shared.models.messages import PlanPhase, TaskMessage
from shared.models.run import Action, Phase, RunRecord, TaskRecord, TaskStatus
from shared.names import QueueName

pytestmark = pytest.mark.integration

SUBSCRIPTION = "11111111-1111-4111-8111-111111111111"
VM = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"


@pytest.fixture
def view(storage_connection_string):
    clock = ScaledClock(60, datetime.now(timezone.utc) - timedelta(seconds=10))
    storage = StorageView(storage_connection_string, clock)
    yield storage
    storage.close()


def test_tasks_carry_the_virtual_time_their_entity_was_written(view, unique_suffix):
    run_key = f"mc-chaos-20261130100000-{unique_suffix}"
    now = datetime.now(timezone.utc)
    view.records.create_run(RunRecord(run_key, "/c", "/subscriptions/s/config", now, now, ("s",), created_at=now))
    view.records.add_tasks([TaskRecord(run_key, Phase.PRE, Action.START_VM, VM, TaskStatus.SUCCEEDED, "done")])
    [task] = view.tasks(run_key)
    assert (task.phase, task.action, task.status, task.detail) == ("pre", "start-vm", "succeeded", "done")
    expected = view.clock.now()
    assert task.recorded_at is not None
    # Written a moment ago in real time: within a few virtual minutes of the virtual now.
    assert expected - timedelta(minutes=5) <= task.recorded_at <= expected + timedelta(minutes=1)


def test_poison_is_read_whole_and_left_in_place_and_replay_moves_only_the_run(view, unique_suffix):
    mine, other = f"run-a-{unique_suffix}", f"run-b-{unique_suffix}"
    task = TaskMessage(run_key=mine, phase=Phase.PRE, action=Action.START_VM, target=VM)
    raw = view.raw_queues.get_queue_client(QueueName.VM_TASKS.poison)
    # As the host poisons: the original base64 body, no reason.
    raw.send_message(base64.b64encode(task.to_json().encode()).decode(), time_to_live=-1)
    # As prepost parks: wrapped with a reason.
    view.clients.park(QueueName.PLAN, PlanPhase(run_key=mine).to_json(), "unknown field")
    view.clients.park(QueueName.PLAN, PlanPhase(run_key=other).to_json(), "unknown field")

    entries = [entry for entry in view.poison() if entry.run_key in (mine, other)]
    assert sorted((e.queue, e.run_key, e.reason) for e in entries) == [
        ("prepost-plan", mine, "unknown field"),
        ("prepost-plan", other, "unknown field"),
        ("prepost-vm-tasks", mine, None),
    ]
    host_poisoned = next(e for e in entries if e.queue == "prepost-vm-tasks")
    assert host_poisoned.task_id == task.task_id
    # Read again: released, so still all there.
    assert len([e for e in view.poison() if e.run_key in (mine, other)]) == 3

    replayed = view.replay_poison(mine)
    assert sorted(e.queue for e in replayed) == ["prepost-plan", "prepost-vm-tasks"]
    left = [e for e in view.poison() if e.run_key in (mine, other)]
    assert [(e.run_key, e.queue) for e in left] == [(other, "prepost-plan")]
    back = [fields for _, fields, _ in view.visible_work() if fields.get("run_key") == mine]
    assert sorted(fields["kind"] for fields in back) == ["plan-phase", "task"]
