"""Forged and damaged work messages: each is parked with a clear reason (or, for a deadline check that
comes early, sent on until the run's deadline), and Azure hears nothing.

GIVEN the real function app in the runner, Azurite and the simulator, with a pre phase done;
WHEN messages that prepost did not send (or that disagree with their task records) arrive on its
queues; THEN each lands in its poison queue with the reason, no task record changes, and the
simulator's request log shows no request at all after they were sent.

Some cases need a task record to agree with (a damaged record holding an odd id, a task outside
the allowed subscriptions): the test writes those records itself, as a broken or hostile writer
of the tables would.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from prepost.local.events import build_event
from prepost.simulator import Estate, PowerState
from shared.adapters.parking import unpark
from shared.clock import utcnow
from shared.models.events import format_time
from shared.models.messages import CheckPreDeadline, MonitoringMessage, TaskMessage
from shared.models.run import Action, Phase, PhaseStatus, TaskRecord, TaskStatus
from shared.names import QueueName
from shared.usecases.supervision import pre_cancel_deadline
from tests.integration.harness import future_start

pytestmark = pytest.mark.integration

OUTSIDE = "0c3f5e7a-1b2d-4e6f-8a9b-c0d1e2f3a4b5"
"""A subscription the app may not act in."""


def vm(subscription: str, name: str, group: str = "rg-app") -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}"


def parked(app, queue: QueueName) -> dict[str, str]:
    """Original body -> parking reason, for every message parked in ``queue``'s poison queue."""
    found = {}
    for item in app.runner.container.storage.queue(queue.poison).peek_messages(max_messages=32):
        body, note = unpark(item.content)
        if note is not None:
            found[body] = note["reason"]
    return found


def test_forged_and_damaged_messages_are_parked_with_a_reason_and_reach_no_azure_api(start_app):
    app = start_app(
        Estate.generate(machines=2, subscriptions=1, arc_servers=0, run_start=future_start(30)),
    )
    sub = app.estate.subscription_ids[0]
    machine, other_machine = (v.id for v in app.estate.vms)
    assert app.deliver(build_event("pre", correlation_id=app.correlation_id, subscription_ids=[sub])).status == 200
    assert app.wait_phase_final(Phase.PRE).status is PhaseStatus.COMPLETED
    app.quiesce()
    key = app.run_key

    # Records a damaged or hostile writer left behind; no message of prepost's refers to them.
    # The two forged prunes target two machines: forged messages of one task would contend for
    # its lock, and the loser comes back later as a re-send (a body of its own).
    odd_targets = {
        "dot-dot": vm(sub, "vm", group=".."),
        "query": vm(sub, "vm?api-version=2020-01-01#"),
        "quote": vm(sub, "vm'"),
        "not-a-guid": vm("not-a-guid", "vm"),
    }
    recorded = [
        *(
            TaskRecord(
                key, Phase.POST, Action.PRUNE_SNAPSHOTS, target, TaskStatus.QUEUED, options={"retention_days": 30}
            )
            for target in (machine, other_machine)
        ),
        TaskRecord(key, Phase.POST, Action.REMOVE_SUPPRESSION, sub, TaskStatus.QUEUED),
        TaskRecord(key, Phase.PRE, Action.START_VM, vm(OUTSIDE, "vm-elsewhere"), TaskStatus.QUEUED),
        TaskRecord(key, Phase.PRE, Action.SUPPRESS_ALERTS, "not-a-subscription", TaskStatus.QUEUED),
        *(TaskRecord(key, Phase.PRE, Action.START_VM, target, TaskStatus.QUEUED) for target in odd_targets.values()),
    ]
    app.records.add_tasks(recorded)
    before = {task.task_id: (task.status, task.attempts, task.data) for task in app.tasks()}
    requests_before = len(app.sim.state.requests())

    someone_elses_rule = (
        f"/subscriptions/{sub}/resourceGroups/rg-app/providers/Microsoft.AlertsManagement/actionRules/production-paging"
    )
    forged: dict[QueueName, dict[str, tuple[TaskMessage, str]]] = {
        QueueName.VM_TASKS: {
            "unknown run": (
                TaskMessage(run_key="forged-20261122020000-000000000000", action=Action.START_VM, target=machine),
                "no such run",
            ),
            "unplanned machine": (
                TaskMessage(run_key=key, action=Action.START_VM, target=vm(sub, "vm-not-in-run")),
                "is recorded",
            ),
            "shorter retention": (
                TaskMessage(
                    run_key=key,
                    phase=Phase.POST,
                    action=Action.PRUNE_SNAPSHOTS,
                    target=machine,
                    options={"retention_days": 1},
                ),
                "differ from the recorded",
            ),
            "oversized options": (
                TaskMessage(
                    run_key=key,
                    phase=Phase.POST,
                    action=Action.PRUNE_SNAPSHOTS,
                    target=other_machine,
                    options={"retention_days": 30, "tag": "x" * 40_000},
                ),
                "differ from the recorded",
            ),
            "outside the allowed subscriptions": (
                TaskMessage(run_key=key, action=Action.START_VM, target=vm(OUTSIDE, "vm-elsewhere")),
                "not in PREPOST_ALLOWED_SUBSCRIPTIONS",
            ),
            **{
                f"odd id ({name})": (
                    TaskMessage(run_key=key, action=Action.START_VM, target=target),
                    "not a",
                )
                for name, target in odd_targets.items()
            },
        },
        QueueName.MONITORING: {
            "someone else's rule": (
                MonitoringMessage(
                    run_key=key,
                    phase=Phase.POST,
                    action=Action.REMOVE_SUPPRESSION,
                    target=sub,
                    options={"rule_id": someone_elses_rule},
                ),
                "differ from the recorded",
            ),
            "subscription that is no GUID": (
                MonitoringMessage(run_key=key, action=Action.SUPPRESS_ALERTS, target="not-a-subscription"),
                "not a subscription id",
            ),
        },
    }
    for cases in forged.values():
        for message, _ in cases.values():
            app.send(message)

    for queue, cases in forged.items():
        bodies = {message.to_json() for message, _ in cases.values()}
        reasons = app.wait(
            lambda queue=queue, bodies=bodies: (lambda found: found if bodies <= set(found) else None)(
                parked(app, queue)
            ),
            f"{len(cases)} message(s) parked in {queue.poison}",
        )
        for case, (message, expected) in cases.items():
            assert expected in reasons[message.to_json()], (case, reasons[message.to_json()])
    app.quiesce()

    assert app.sim.state.requests()[requests_before:] == []
    after = {task.task_id: (task.status, task.attempts, task.data) for task in app.tasks()}
    assert after == before


def test_a_configuration_name_longer_than_a_tag_value_still_gets_its_snapshots_and_rule(start_app):
    # ARM takes configuration names up to 260 characters, tag values up to 256: the snapshot's
    # and the rule's prepost-configuration tag is cut, not refused (a refusal would fail the
    # snapshot and cancel the run).
    name = "mc-" + "x" * 255
    app = start_app(
        Estate.generate(
            machines=1, subscriptions=1, arc_servers=0, run_start=future_start(30), configuration_name=name
        ),
    )
    sub = app.estate.subscription_ids[0]
    assert app.deliver(build_event("pre", correlation_id=app.correlation_id, subscription_ids=[sub])).status == 200

    pre = app.wait_phase_final(Phase.PRE)

    assert pre.status is PhaseStatus.COMPLETED, [(t.action, t.detail) for t in app.tasks(Phase.PRE)]
    snapshots = app.sim.state.snapshots()
    assert snapshots
    for snapshot in snapshots:
        assert snapshot.tags["prepost-configuration"] == name[:256]
    assert app.records.get_run(app.run_key).cancel_requested_at is None


def test_a_forged_early_deadline_check_cancels_nothing_and_reaches_no_azure_api(start_app):
    app = start_app(Estate.generate(machines=4, subscriptions=1, arc_servers=0, run_start=future_start(30)))
    sub = app.estate.subscription_ids[0]
    (stopped,) = [v for v in app.estate.vms if v.power_state is PowerState.DEALLOCATED]
    # Compute asks for ten minutes: the start waits in the queue, and the pre phase stays open.
    app.sim.fail_next("vm.start", times=1, status=429, retry_after=600)
    assert app.deliver(build_event("pre", correlation_id=app.correlation_id, subscription_ids=[sub])).status == 200

    def only_the_start_pending():
        pending = [t for t in app.tasks(Phase.PRE) if not t.status.is_final]
        return pending and [(t.action, t.status) for t in pending] == [(Action.START_VM, TaskStatus.RETRYING)]

    app.wait(only_the_start_pending, "every pre task but the throttled start finished")
    app.quiesce()
    run = app.records.get_run(app.run_key)
    deadline = pre_cancel_deadline(run, app.runner.container.settings.cancel_margin)
    assert utcnow() < deadline
    requests_before = len(app.sim.state.requests())
    sent_before = len(app.recorder.of_kind(CheckPreDeadline))

    # WHEN deadline checks nobody scheduled arrive now: one without ``due``, one claiming to be due
    forged = [
        CheckPreDeadline(run_key=app.run_key),
        CheckPreDeadline(run_key=app.run_key, due=format_time(utcnow() - timedelta(minutes=1)), resend=7),
    ]
    for message in forged:
        app.send(message)
    sent_on = app.wait(
        lambda: (lambda sent: sent if len(sent) == len(forged) else None)(
            [s for s in app.recorder.of_kind(CheckPreDeadline)[sent_before:] if s.message not in forged]
        ),
        "both checks sent on",
    )
    app.quiesce()

    # THEN nothing is cancelled or decided, Azure hears nothing, and each check waits for the run's deadline
    run = app.records.get_run(app.run_key)
    assert (run.cancel_requested_at, run.cancel_result, run.gate) == (None, None, None)
    assert app.sim.state.cancellations() == []
    assert app.sim.state.requests()[requests_before:] == []
    assert app.phase(Phase.PRE).status is PhaseStatus.PLANNED
    assert [s.message.due_at() for s in sent_on] == [deadline, deadline]
    assert all(timedelta(0) < s.delay <= deadline - run.created_at for s in sent_on)
    assert app.sim.state.count("vm.start", stopped.id) == 0
