"""A maintenance window through the whole pipeline: intake, planner, VM tasks, monitoring,
outcomes and supervision, in the local runner, against Azurite and the simulator.

The run starts 30 minutes from now (as a real pre-event arrives), so cancellation is still
possible; the estate is small (6 VMs in 2 subscriptions, 2 Arc servers) so each test takes a
few seconds. Safety-net messages (deadline check, post fallback) are sent by the test, as the
delayed messages the intake scheduled would arrive later.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from prepost.local.events import build_event
from prepost.simulator import (
    Estate,
    LroConfig,
    LroTiming,
    ManualClock,
    Operation,
    PowerState,
    SimulatorConfig,
    ThrottleConfig,
)
from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.resource_graph import PAGE_SIZE, ResourceGraphInventory
from shared.clock import OffsetClock, set_clock
from shared.models.ids import run_key
from shared.models.messages import CheckPreDeadline, PostFallback, TaskMessage, TaskOutcome
from shared.models.run import Action, Phase, PhaseSource, PhaseStatus, TaskStatus
from shared.settings import ArmAuth
from shared.usecases.machine_actions import snapshot_id_for
from shared.usecases.planning import ARC_SNAPSHOT_REASON
from shared.usecases.supervision import pre_cancel_deadline
from tests.integration.harness import future_start

pytestmark = pytest.mark.integration

EXTRA_SUBSCRIPTION = "0c3f5e7a-1b2d-4e6f-8a9b-c0d1e2f3a4b5"


def small_estate(**tags: str) -> Estate:
    """6 VMs over 2 subscriptions (the 4th deallocated, the 3rd and 6th with data disks), 2 Arc
    servers (the second disconnected); the run starts in 30 minutes."""
    return Estate.generate(
        machines=6,
        subscriptions=2,
        arc_servers=2,
        run_start=future_start(30),
        configuration_tags={"prepost-snapshot-disks": "all", **tags},
    )


def pre_event(app, **changes):
    options = dict(correlation_id=app.correlation_id, subscription_ids=app.estate.subscription_ids)
    options.update(changes)
    return build_event("pre", **options)


def post_event(app):
    return build_event("post", correlation_id=app.correlation_id, subscription_ids=app.estate.subscription_ids)


def by_target(tasks, action: Action) -> dict[str, object]:
    return {task.target.lower(): task for task in tasks if task.action is action}


def test_pre_then_post_does_the_work_once_and_undoes_exactly_it(start_app):
    app = start_app(small_estate())
    estate = app.estate
    deallocated = [vm for vm in estate.vms if vm.power_state is PowerState.DEALLOCATED]
    running = [vm for vm in estate.vms if vm.power_state is PowerState.RUNNING]
    assert len(deallocated) == 1 and len(running) == 5 and len(estate.arc_servers) == 2

    # -- pre ------------------------------------------------------------------------------
    assert app.deliver(pre_event(app)).status == 200
    pre = app.wait_phase_final(Phase.PRE)
    assert pre.status is PhaseStatus.COMPLETED
    assert pre.machines == len(estate.machine_ids) == 8
    tasks = app.tasks(Phase.PRE)
    # Fan-out: per VM a preflight, a start and a snapshot task, per Arc server a preflight and a
    # skipped snapshot, per subscription one alert suppression.
    assert pre.expected_tasks == len(tasks) == 3 * 6 + 2 * 2 + 2
    assert {t.target.lower() for t in tasks if t.action is Action.START_VM} == {vm.id.lower() for vm in estate.vms}
    assert {t.target.lower() for t in tasks if t.action is Action.SUPPRESS_ALERTS} == {
        s.lower() for s in estate.subscription_ids
    }

    # Outcomes recorded with attempts and timings; Arc snapshots skipped with the reason.
    for task in tasks:
        assert task.status.is_final, task
        assert task.detail
        if task.status is TaskStatus.SUCCEEDED:
            assert task.attempts == 1
            assert task.started_at is not None and task.finished_at is not None
            assert task.started_at <= task.finished_at
    snapshot_tasks = by_target(tasks, Action.SNAPSHOT_DISKS)
    for arc in estate.arc_servers:
        skipped = snapshot_tasks[arc.id.lower()]
        assert skipped.status is TaskStatus.SKIPPED and skipped.detail == ARC_SNAPSHOT_REASON
    arc_checks = by_target(tasks, Action.PREFLIGHT)
    connected, disconnected = estate.arc_servers
    assert "arc-disconnected" not in {f["kind"] for f in arc_checks[connected.id.lower()].data["findings"]}
    assert "Disconnected" in arc_checks[disconnected.id.lower()].detail
    assert all(not task.data["blocking_findings"] for task in arc_checks.values())

    # Snapshots: one per disk, deterministic names beside the disk, tagged with the run.
    run = app.records.get_run(app.run_key)
    snapshots = {s.id.lower(): s for s in app.sim.state.snapshots()}
    expected = {snapshot_id_for(run, disk.id).lower(): (vm, disk) for vm in estate.vms for disk in vm.disks}
    assert set(snapshots) == set(expected)
    for snapshot_id, (vm, disk) in expected.items():
        snapshot = snapshots[snapshot_id]
        assert snapshot.source_resource_id.lower() == disk.id.lower()
        assert snapshot.incremental and snapshot.put_count == 1
        assert snapshot.tags == {
            "prepost-run": app.run_key,
            "prepost-configuration": estate.configuration.name,
            "prepost-machine": vm.name,
            "prepost-disk": disk.name,
        }
    for vm in estate.vms:
        assert set(snapshot_tasks[vm.id.lower()].data["snapshots"]) == {
            snapshot_id_for(run, disk.id) for disk in vm.disks
        }

    # The deallocated VM was started (and marked as ours); the running ones were left alone.
    starts = by_target(tasks, Action.START_VM)
    for vm in deallocated:
        assert app.sim.state.power_state(vm.id) is PowerState.RUNNING
        assert app.sim.state.count("vm.start", vm.id) == 1
        assert starts[vm.id.lower()].data["started_by_us"] is True
    for vm in running:
        assert app.sim.state.count("vm.start", vm.id) == 0
        assert starts[vm.id.lower()].data["started_by_us"] is False

    # One alert processing rule per subscription, scoped inside it.
    rules = app.sim.state.alert_rules()
    assert sorted(r.subscription_id.lower() for r in rules) == sorted(s.lower() for s in estate.subscription_ids)
    for rule in rules:
        scopes = rule.properties["scopes"]
        assert scopes and all(s.lower().startswith(f"/subscriptions/{rule.subscription_id.lower()}/") for s in scopes)
        assert rule.tags["prepost-run"] == app.run_key

    # -- post -----------------------------------------------------------------------------
    assert app.deliver(post_event(app)).status == 200
    post = app.wait_phase_final(Phase.POST)
    assert post.status is PhaseStatus.COMPLETED and post.source is PhaseSource.EVENT
    post_tasks = app.tasks(Phase.POST)
    assert sorted((t.action, t.target.lower()) for t in post_tasks) == sorted(
        [(Action.DEALLOCATE_VM, vm.id.lower()) for vm in deallocated]
        + [(Action.REMOVE_SUPPRESSION, s.lower()) for s in estate.subscription_ids]
    )
    assert all(t.status is TaskStatus.SUCCEEDED for t in post_tasks)
    for vm in deallocated:
        assert app.sim.state.power_state(vm.id) is PowerState.DEALLOCATED
        assert app.sim.state.count("vm.deallocate", vm.id) == 1
    for vm in running:
        assert app.sim.state.power_state(vm.id) is PowerState.RUNNING
        assert app.sim.state.count("vm.deallocate", vm.id) == 0
    assert app.sim.state.alert_rules() == []
    assert app.sim.state.cancellations() == []
    assert app.records.get_run(app.run_key).cancel_requested_at is None


def test_resource_graph_pages_with_skip_token(start_app):
    """2,100 machines: three pages of at most 1,000 rows, read through the adapter the planner uses."""
    app = start_app(small_estate())
    subscription = app.estate.subscription_ids[0]
    correlation = app.estate.run_correlation_id(future_start(24 * 60))
    machines = [
        f"/subscriptions/{subscription}/resourceGroups/rg-many/providers/Microsoft.Compute/virtualMachines/vm-{i:04d}"
        for i in range(2_100)
    ]
    app.sim.state.add_run(correlation, machines)
    inventory = ResourceGraphInventory(ArmClients(app.sim.url, ArmAuth.SIMULATOR))
    before = len(app.requests_of("resourcegraph.query"))

    found = inventory.list_run_machines(correlation, [subscription])

    queries = app.requests_of("resourcegraph.query")[before:]
    assert len(queries) == 3 == -(-len(machines) // PAGE_SIZE)
    assert all(q.status == 200 for q in queries)
    assert len(found) == len(machines)
    assert {m.lower() for m in found} == {m.lower() for m in machines}
    # Scoped to the subscriptions asked for, as Resource Graph does.
    assert inventory.list_run_machines(correlation, [app.estate.subscription_ids[1]]) == []


@pytest.mark.parametrize("scope", ["run-without-machines", "subscription-outside-the-run"])
def test_an_empty_resource_graph_answer_is_a_finding(start_app, scope):
    estate = small_estate()
    app = start_app(estate, allowed_subscriptions=[*estate.subscription_ids, EXTRA_SUBSCRIPTION])
    if scope == "run-without-machines":
        correlation = estate.run_correlation_id(future_start(45))
        app.sim.state.add_run(correlation, [])
        event = pre_event(app, correlation_id=correlation)
        subscriptions = estate.subscription_ids
    else:
        correlation = app.correlation_id
        event = pre_event(app, subscription_ids=[EXTRA_SUBSCRIPTION])
        subscriptions = [EXTRA_SUBSCRIPTION]
    key = run_key(correlation)

    assert app.deliver(event).status == 200
    pre = app.wait_phase_final(Phase.PRE, key)

    assert pre.status is PhaseStatus.COMPLETED
    assert pre.machines == 0 and pre.expected_tasks == 0
    assert app.tasks(Phase.PRE, key) == []
    finding = next(f for f in pre.findings if "Resource Graph listed no machines" in f)
    assert all(s in finding for s in subscriptions)
    assert len(app.requests_of("resourcegraph.query")) == 1
    assert app.sim.state.snapshots() == [] and app.sim.state.alert_rules() == []


@pytest.mark.parametrize(
    ("status", "cancel_on_failure"),
    [(403, True), (400, False)],
    ids=["403-cancelled", "400-prepost-cancel-on-failure=false"],
)
def test_a_failed_snapshot_fails_its_task_and_cancels_the_run_once(start_app, status, cancel_on_failure):
    tags = {} if cancel_on_failure else {"prepost-cancel-on-failure": "false"}
    app = start_app(small_estate(**tags))
    victim = next(vm for vm in app.estate.vms if vm.power_state is PowerState.RUNNING)
    app.sim.fail_matching("snapshots.create", f"{victim.name}-osdisk", status)

    assert app.deliver(pre_event(app)).status == 200
    pre = app.wait_phase_final(Phase.PRE)

    assert pre.status is PhaseStatus.COMPLETED_WITH_FAILURES
    failed = [t for t in app.tasks(Phase.PRE) if t.status is TaskStatus.FAILED]
    assert [(t.action, t.target.lower()) for t in failed] == [(Action.SNAPSHOT_DISKS, victim.id.lower())]
    assert f"HTTP {status}" in failed[0].detail
    assert failed[0].attempts == 1  # a permanent error is not retried
    others = [t for t in app.tasks(Phase.PRE) if t is not failed[0] and t.status is not TaskStatus.FAILED]
    assert all(t.status in (TaskStatus.SUCCEEDED, TaskStatus.SKIPPED) for t in others)

    if cancel_on_failure:
        # The phase closes first, then the recorder cancels and records it on the run.
        run = app.wait(lambda: (r := app.records.get_run(app.run_key)).cancel_requested_at and r, "cancel recorded")
        (cancellation,) = app.sim.state.cancellations()
        assert cancellation.correlation_id.lower() == app.correlation_id.lower()
        assert cancellation.count == 1
        assert run.cancel_requested_at is not None
        assert victim.name in run.cancel_reason and "pre tasks failed" in run.cancel_reason
        assert "cancel requested" in run.cancel_result
    else:
        app.quiesce()
        assert app.sim.state.cancellations() == []
        run = app.records.get_run(app.run_key)
        assert not run.cancel_accepted
        assert "prepost-cancel-on-failure=false" in run.cancel_result  # the record says why not


def test_throttled_start_is_requeued_with_retry_after_and_succeeds(start_app):
    app = start_app(small_estate())
    (vm,) = [vm for vm in app.estate.vms if vm.power_state is PowerState.DEALLOCATED]
    app.sim.fail_next("vm.start", times=2, status=429)  # Retry-After: 1

    assert app.deliver(pre_event(app)).status == 200
    pre = app.wait_phase_final(Phase.PRE)

    assert pre.status is PhaseStatus.COMPLETED
    start = by_target(app.tasks(Phase.PRE), Action.START_VM)[vm.id.lower()]
    assert start.status is TaskStatus.SUCCEEDED
    assert start.attempts == 3
    assert app.sim.state.power_state(vm.id) is PowerState.RUNNING
    assert app.sim.state.count("vm.start", vm.id) == 1
    throttled = [r for r in app.requests_of("vm.start") if r.status == 429]
    assert len(throttled) == 2
    # No sleeping inside the function: each 429 re-queued the task as a new message, delayed
    # by the Retry-After Azure gave (each retry was recorded on the task: attempts above).
    requeued = [
        sent
        for sent in app.recorder.of_kind(TaskMessage)
        if sent.message.action is Action.START_VM
        and sent.message.target.lower() == vm.id.lower()
        and sent.message.attempt > 1
        and not sent.message.is_follow_up
    ]
    assert [s.message.attempt for s in requeued] == [2, 3]
    assert all(s.delay == timedelta(seconds=1) for s in requeued)
    assert app.recorder.of_kind(TaskOutcome) == []  # recorded by the task's own delivery, not sent on


def test_deadline_check_cancels_a_run_whose_pre_work_is_unfinished(start_app):
    app = start_app(small_estate())
    (vm,) = [vm for vm in app.estate.vms if vm.power_state is PowerState.DEALLOCATED]
    # Compute asks for ten minutes: the start task waits in the queue, unfinished.
    app.sim.fail_next("vm.start", times=1, status=429, retry_after=600)

    assert app.deliver(pre_event(app)).status == 200

    def only_the_start_pending():
        tasks = app.tasks(Phase.PRE)
        pending = [t for t in tasks if not t.status.is_final]
        return tasks and [(t.action, t.status) for t in pending] == [(Action.START_VM, TaskStatus.RETRYING)]

    app.wait(only_the_start_pending, "every pre task but the throttled start finished")
    requeued = [s for s in app.recorder.of_kind(TaskMessage) if s.message.attempt == 2]
    assert [s.delay for s in requeued] == [timedelta(seconds=600)]
    assert app.sim.state.cancellations() == []

    # The check acts at the run's deadline only: the app's clock is moved there (a check sent
    # before it is sent on until then; see test_hostile_messages).
    deadline = pre_cancel_deadline(app.records.get_run(app.run_key), app.runner.container.settings.cancel_margin)
    set_clock(OffsetClock(deadline))
    try:
        app.send(CheckPreDeadline(run_key=app.run_key))
        app.wait(lambda: app.records.get_run(app.run_key).cancel_requested_at, "cancellation recorded")
    finally:
        set_clock(None)

    run = app.records.get_run(app.run_key)
    assert "pre-work not finished by the cancellation deadline (1 tasks pending)" in run.cancel_reason
    assert "cancel requested" in run.cancel_result
    (cancellation,) = app.sim.state.cancellations()
    assert cancellation.count == 1
    assert app.phase(Phase.PRE).status is PhaseStatus.PLANNED
    assert app.sim.state.count("vm.start", vm.id) == 0


def test_post_fallback_runs_the_post_phase_when_no_post_event_came(start_app, capsys):
    app = start_app(small_estate())
    (vm,) = [vm for vm in app.estate.vms if vm.power_state is PowerState.DEALLOCATED]
    assert app.deliver(pre_event(app)).status == 200
    app.wait_phase_final(Phase.PRE)
    assert app.sim.state.power_state(vm.id) is PowerState.RUNNING
    assert len(app.sim.state.alert_rules()) == 2

    app.send(PostFallback(run_key=app.run_key))
    post = app.wait_phase_final(Phase.POST)

    assert post.status is PhaseStatus.COMPLETED
    assert post.source is PhaseSource.FALLBACK
    assert any("no post-event arrived" in f for f in post.findings)
    deallocations = by_target(app.tasks(Phase.POST), Action.DEALLOCATE_VM)
    assert list(deallocations) == [vm.id.lower()]
    assert deallocations[vm.id.lower()].status is TaskStatus.SUCCEEDED
    assert app.sim.state.power_state(vm.id) is PowerState.DEALLOCATED
    assert app.sim.state.count("vm.deallocate", vm.id) == 1
    assert sum(app.sim.state.count("vm.deallocate", other.id) for other in app.estate.vms) == 1
    assert app.sim.state.alert_rules() == []

    # The post-event arriving late is a duplicate: nothing is undone twice.
    assert app.deliver(post_event(app)).status == 200
    from shared.ports.records import DeliveryOutcome

    latest = app.records.list_deliveries(limit=1)[0]
    assert latest.outcome is DeliveryOutcome.DUPLICATE
    assert "fallback had begun the post phase" in latest.reason and "'Succeeded'" in latest.reason
    assert (latest.run_key, latest.phase) == (app.run_key, "post")


def test_long_operations_are_followed_up_until_azure_finishes_them(start_app):
    """VM starts and snapshots that take ten (simulated) minutes: each task begins its operation,
    follows up every PREPOST_OPERATION_CHECK_SECONDS (1 s locally) while Azure is still at it,
    without using attempts, and finishes once the operations did."""
    slow = LroTiming(polls=1_000, seconds=600)
    config = SimulatorConfig(
        lro=LroConfig(per_operation={Operation.VM_START.value: slow, Operation.SNAPSHOT_CREATE.value: slow}),
        # The manual clock also stops request budgets from refilling: this test is about follow-ups.
        throttling=ThrottleConfig(enabled=False),
    )
    clock = ManualClock(datetime.now(timezone.utc))
    app = start_app(small_estate(), config=config, clock=clock)
    estate = app.estate
    (stopped,) = [vm for vm in estate.vms if vm.power_state is PowerState.DEALLOCATED]
    slow_tasks = {(Action.START_VM, stopped.id.lower())} | {(Action.SNAPSHOT_DISKS, vm.id.lower()) for vm in estate.vms}

    def follow_ups() -> list:
        return [
            sent
            for sent in app.recorder.of_kind(TaskMessage)
            if (sent.message.action, sent.message.target.lower()) in slow_tasks and sent.message.is_follow_up
        ]

    def looked_again_while_running() -> bool:
        # A second follow-up exists only if the first one found the operation still running.
        seen = {(s.message.action, s.message.target.lower()) for s in follow_ups() if s.message.checks >= 2}
        return seen == slow_tasks

    assert app.deliver(pre_event(app)).status == 200
    app.wait(looked_again_while_running, "every slow task followed up twice")

    # Azure is still at it: nothing is final, nothing was asked twice.
    assert app.sim.state.power_state(stopped.id) is PowerState.STARTING
    assert {s.provisioning_state for s in app.sim.state.snapshots()} == {"Creating"}
    assert app.phase(Phase.PRE).status is PhaseStatus.PLANNED

    def start_in_progress():
        task = by_target(app.tasks(Phase.PRE), Action.START_VM)[stopped.id.lower()]
        return task if task.status is TaskStatus.IN_PROGRESS else None

    start = app.wait(start_in_progress, "the start task recorded in-progress")
    assert start.attempts == 1 and start.detail.startswith("start VM: ")
    assert start.data["start_requested"] is True and start.data["power_state_before"] == "deallocated"

    clock.advance(600)
    pre = app.wait_phase_final(Phase.PRE)

    assert pre.status is PhaseStatus.COMPLETED
    tasks = app.tasks(Phase.PRE)
    assert all(t.status is TaskStatus.SUCCEEDED for t in tasks if (t.action, t.target.lower()) in slow_tasks)
    assert all(t.status in (TaskStatus.SUCCEEDED, TaskStatus.SKIPPED) for t in tasks)
    assert all(t.attempts == 1 for t in tasks if (t.action, t.target.lower()) in slow_tasks)  # follow-ups use none
    assert all(app.sim.state.power_state(vm.id) is PowerState.RUNNING for vm in estate.vms)
    assert app.sim.state.count(Operation.VM_START.value, stopped.id) == 1
    assert len(app.requests_of(Operation.VM_START.value)) == 1
    run = app.records.get_run(app.run_key)
    snapshots = app.sim.state.snapshots()
    assert {s.id.lower() for s in snapshots} == {
        snapshot_id_for(run, d.id).lower() for vm in estate.vms for d in vm.disks
    }
    assert all(s.provisioning_state == "Succeeded" and s.put_count == 1 for s in snapshots)
    assert Operation.OPERATION_STATUS.value not in {r.operation for r in app.sim.state.requests()}  # nobody polled

    started = by_target(tasks, Action.START_VM)[stopped.id.lower()]
    assert started.detail == "started from deallocated" and started.data["started_by_us"] is True
    for vm in estate.vms:
        snapshot_task = by_target(tasks, Action.SNAPSHOT_DISKS)[vm.id.lower()]
        assert snapshot_task.detail == f"{len(vm.disks)} incremental snapshot(s): {len(vm.disks)} created, 0 reused"

    # The record said in-progress (above) before succeeded; the follow-ups came after the check
    # interval, each under an id of its own.
    sent = follow_ups()
    assert all(s.delay == timedelta(seconds=1) and s.message.attempt == 1 for s in sent)
    assert len({s.message.message_id for s in sent}) == len(sent)
