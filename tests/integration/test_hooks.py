"""Pre and post scripts through the whole pipeline: the app's functions in the local runner,
scripts as blobs in Azurite, Run Command on VMs and Arc servers in the simulator.

The simulator runs on a manual clock, so a script "runs" until the test moves the clock (or
ends at once when programmed with ``durationSeconds: 0``); nothing here sleeps.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from prepost.local.events import build_event
from prepost.render import render_run
from prepost.simulator import Estate, ManualClock, PowerState, SimulatorConfig, ThrottleConfig
from prepost.simulator.estate import ArcStatus
from prepost.simulator.run_command_records import ScriptOutcome
from shared.models.hooks import HookPhase
from shared.models.messages import TaskMessage
from shared.models.run import Action, Phase, PhaseStatus, TaskStatus
from shared.names import HOOKS_CONTAINER
from shared.usecases.run_report import run_report
from shared.usecases.script_actions import execution_name
from tests.integration.harness import future_start

pytestmark = pytest.mark.integration

SCRIPTS = {
    "nginx/stop.sh": "#!/bin/sh\nsystemctl stop nginx\n",
    "nginx/start-and-check.sh": "#!/bin/sh\nsystemctl start nginx && curl -fsS http://127.0.0.1/\n",
    "iis/stop-pool.ps1": "Stop-WebAppPool -Name shop\n",
    "iis/start-pool.ps1": "Start-WebAppPool -Name shop\n",
}
HOOK_TAGS = {
    "prepost-hook-pre-linux": "nginx/stop.sh",
    "prepost-hook-post-linux": "nginx/start-and-check.sh",
    "prepost-hook-pre-windows": "iis/stop-pool.ps1",
    "prepost-hook-post-windows": "iis/start-pool.ps1",
    "prepost-hook-timeout-seconds": "120",
}


def hooks_estate(**tags: str) -> Estate:
    """6 VMs (one Windows, the 4th deallocated) and 2 connected Arc servers (Linux, Windows)."""
    return Estate.generate(
        machines=6,
        subscriptions=2,
        arc_servers=2,
        disconnected_arc_servers=0,
        run_start=future_start(30),
        configuration_tags={**HOOK_TAGS, **tags},
    )


def upload_scripts(connection_string: str, scripts: dict[str, str] = SCRIPTS) -> None:
    service = BlobServiceClient.from_connection_string(connection_string)
    container = service.get_container_client(HOOKS_CONTAINER)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    for name, text in scripts.items():
        container.upload_blob(name, text.encode(), overwrite=True)


@pytest.fixture
def start_hooks_app(start_app, storage_connection_string):
    def start(estate: Estate, *, outcome: ScriptOutcome | None = None, per_machine=None):
        upload_scripts(storage_connection_string)
        clock = ManualClock(datetime.now(timezone.utc))
        config = SimulatorConfig(throttling=ThrottleConfig(enabled=False))
        app = start_app(estate, config=config, clock=clock)
        book = app.sim.state.run_commands
        with book.lock:
            book.program("*", outcome or ScriptOutcome(duration_seconds=0, output="done\n"))
            for machine_id, machine_outcome in (per_machine or {}).items():
                book.program(machine_id, machine_outcome)
        return app, clock

    return start


def pre_event(app):
    return build_event("pre", correlation_id=app.correlation_id, subscription_ids=app.estate.subscription_ids)


def post_event(app):
    return build_event("post", correlation_id=app.correlation_id, subscription_ids=app.estate.subscription_ids)


def scripts_of(app, phase: Phase) -> dict[str, object]:
    action = Action.PRE_SCRIPT if phase is Phase.PRE else Action.POST_SCRIPT
    return {task.target.lower(): task for task in app.tasks(phase) if task.action is action}


def status_of(app, phase: Phase, machine_id: str) -> TaskStatus | None:
    task = scripts_of(app, phase).get(machine_id.lower())
    return task.status if task else None


def executions(app, phase: HookPhase) -> dict[str, int]:
    """Script runs per machine (lower-case id) in ``phase``, as the simulator counted them."""
    counted: dict[str, int] = {}
    for run in app.sim.state.run_commands.executions_of():
        if run["parameters"].get("PREPOST_PHASE") == phase.value:
            counted[run["machineId"].lower()] = counted.get(run["machineId"].lower(), 0) + 1
    return counted


def running_machines(estate: Estate) -> set[str]:
    # Deallocated VMs are started first (prepost-start-deallocated defaults to true).
    return {vm.id.lower() for vm in estate.vms} | {arc.id.lower() for arc in estate.arc_servers}


def test_scripts_run_once_per_machine_before_the_snapshot_and_after_patching(start_hooks_app):
    app, _ = start_hooks_app(hooks_estate())
    estate = app.estate
    assert {vm.os_type.value for vm in estate.vms} == {"Linux", "Windows"}

    assert app.deliver(pre_event(app)).status == 200
    pre = app.wait_phase_final(Phase.PRE)
    assert pre.status is PhaseStatus.COMPLETED, pre.findings
    assert pre.policy["hooks"]["scripts"]["pre-linux"] == "nginx/stop.sh"
    scripts = scripts_of(app, Phase.PRE)
    assert set(scripts) == running_machines(estate)
    for machine_id, task in scripts.items():
        assert task.status is TaskStatus.SUCCEEDED, task
        machines = [*estate.vms, *estate.arc_servers]
        windows = any(m.id.lower() == machine_id and m.os_type.value == "Windows" for m in machines)
        assert task.data["script"] == ("iis/stop-pool.ps1" if windows else "nginx/stop.sh")
        assert task.data["exit_code"] == 0 and task.data["script_state"] == "Succeeded"
        assert task.data["output_tail"] == "done\n"
        assert task.data["timeout_seconds"] == 120
    # One script run per machine, and no run command left behind.
    assert executions(app, HookPhase.PRE) == dict.fromkeys(running_machines(estate), 1)
    assert app.sim.state.run_commands.records == {}

    # Order on each VM: its start (if any), then the pre script, then the snapshot.
    tasks = {(t.action, t.target.lower()): t for t in app.tasks(Phase.PRE)}
    for vm in estate.vms:
        script = tasks[(Action.PRE_SCRIPT, vm.id.lower())]
        snapshot = tasks[(Action.SNAPSHOT_DISKS, vm.id.lower())]
        start = tasks[(Action.START_VM, vm.id.lower())]
        assert start.finished_at <= script.finished_at <= snapshot.finished_at
        assert snapshot.status is TaskStatus.SUCCEEDED
        assert script.task_id in snapshot.options["after"]

    assert app.deliver(post_event(app)).status == 200
    post = app.wait_phase_final(Phase.POST)
    assert post.status is PhaseStatus.COMPLETED, post.findings
    post_scripts = scripts_of(app, Phase.POST)
    assert set(post_scripts) == running_machines(estate)
    assert all(task.status is TaskStatus.SUCCEEDED for task in post_scripts.values())
    assert executions(app, HookPhase.POST) == dict.fromkeys(running_machines(estate), 1)
    # The VM prepost started is deallocated only after its post script.
    (stopped,) = [vm for vm in estate.vms if vm.power_state is PowerState.DEALLOCATED]
    post_tasks = {(t.action, t.target.lower()): t for t in app.tasks(Phase.POST)}
    deallocate = post_tasks[(Action.DEALLOCATE_VM, stopped.id.lower())]
    assert post_tasks[(Action.POST_SCRIPT, stopped.id.lower())].finished_at <= deallocate.finished_at
    assert app.sim.state.power_state(stopped.id) is PowerState.DEALLOCATED

    # Shown per machine and phase in `runs show` and its JSON.
    report = run_report(app.run_key, app.records)
    shown = [t for t in report["tasks"] if t["action"] == "post-script"]
    assert all(t["data"]["exit_code"] == 0 for t in shown)
    text = render_run(report)
    assert "script nginx/start-and-check.sh: Succeeded, exit 0" in text
    assert "out| done" in text


def test_a_failed_pre_script_cancels_the_run_and_every_post_script_still_runs(start_hooks_app):
    estate = hooks_estate()
    failing = estate.vms[0]
    app, _ = start_hooks_app(estate)
    with app.sim.state.run_commands.lock:
        app.sim.state.run_commands.program(
            failing.id,
            ScriptOutcome(exit_code=2, duration_seconds=0, error="nginx still active\n"),
            name_contains="-pre-",
        )
    assert app.deliver(pre_event(app)).status == 200
    pre = app.wait_phase_final(Phase.PRE)
    assert pre.status is PhaseStatus.COMPLETED_WITH_FAILURES
    failed = scripts_of(app, Phase.PRE)[failing.id.lower()]
    assert failed.status is TaskStatus.FAILED
    assert "exited 2" in failed.detail and "(success: 0)" in failed.detail
    assert failed.data["error_tail"] == "nginx still active\n"

    run = app.wait(lambda: (r := app.records.get_run(app.run_key)).cancel_requested_at and r, "run cancelled")
    assert run.cancel_accepted and failing.name in run.cancel_reason
    # Cancelled: the post phase runs at once, and every machine gets its post script.
    post = app.wait_phase_final(Phase.POST)
    assert post.status is PhaseStatus.COMPLETED, [t.detail for t in app.tasks(Phase.POST) if t.status.is_final]
    post_scripts = scripts_of(app, Phase.POST)
    assert set(post_scripts) == running_machines(estate)
    assert all(task.status is TaskStatus.SUCCEEDED for task in post_scripts.values())
    assert executions(app, HookPhase.POST) == dict.fromkeys(running_machines(estate), 1)
    # A pre script not yet begun when the run was cancelled is not begun at all (the fence); one
    # begun runs once, never twice.
    pre_runs = executions(app, HookPhase.PRE)
    assert pre_runs[failing.id.lower()] == 1
    assert set(pre_runs) <= running_machines(estate) and set(pre_runs.values()) == {1}
    not_begun = [t for t in scripts_of(app, Phase.PRE).values() if t.target.lower() not in pre_runs]
    assert all(t.status is TaskStatus.SKIPPED for t in not_begun), [t.detail for t in not_begun]


def test_a_failed_pre_script_declared_a_warning_does_not_cancel(start_hooks_app):
    estate = hooks_estate(**{"prepost-hook-pre-failure": "warn", "prepost-hook-success-codes": "0,3010"})
    windows = next(vm for vm in estate.vms if vm.os_type.value == "Windows")
    linux = estate.vms[0]
    app, _ = start_hooks_app(
        estate,
        per_machine={
            linux.id: ScriptOutcome(exit_code=1, duration_seconds=0),
            windows.id: ScriptOutcome(exit_code=3010, duration_seconds=0),
        },
    )
    assert app.deliver(pre_event(app)).status == 200
    pre = app.wait_phase_final(Phase.PRE)
    scripts = scripts_of(app, Phase.PRE)
    assert scripts[linux.id.lower()].status is TaskStatus.FAILED
    assert "a warning only" in scripts[linux.id.lower()].detail
    assert scripts[windows.id.lower()].status is TaskStatus.SUCCEEDED  # 3010 declared a success
    assert pre.status is PhaseStatus.COMPLETED_WITH_FAILURES
    app.quiesce()
    assert app.records.get_run(app.run_key).cancel_requested_at is None


def test_a_script_that_runs_past_its_timeout_fails_and_cancels(start_hooks_app):
    estate = hooks_estate(**{"prepost-hook-timeout-seconds": "60"})
    slow = estate.vms[0]
    app, clock = start_hooks_app(estate, per_machine={slow.id: ScriptOutcome(timeout=True)})
    assert app.deliver(pre_event(app)).status == 200
    app.wait(
        lambda: executions(app, HookPhase.PRE).get(slow.id.lower()),
        "the slow script is running",
    )
    assert app.phase(Phase.PRE).status is PhaseStatus.PLANNED
    clock.advance(61)
    app.wait_phase_final(Phase.PRE)
    task = scripts_of(app, Phase.PRE)[slow.id.lower()]
    assert task.status is TaskStatus.FAILED and "timed out after 60 s" in task.detail
    assert task.data["script_state"] == "TimedOut"
    run = app.wait(lambda: (r := app.records.get_run(app.run_key)).cancel_requested_at and r, "run cancelled")
    assert run.cancel_accepted


def test_an_agent_that_is_not_ready_and_a_disconnected_arc_agent_are_recorded_failures(start_hooks_app):
    estate = hooks_estate(**{"prepost-hook-pre-failure": "warn"})
    vm = estate.vms[0]
    arc = estate.arc_servers[0]
    app, _ = start_hooks_app(estate, per_machine={vm.id: ScriptOutcome(agent_not_ready=True)})
    app.sim.state.set_arc_status(arc.id, ArcStatus.DISCONNECTED)
    assert app.deliver(pre_event(app)).status == 200
    app.wait_phase_final(Phase.PRE)
    scripts = scripts_of(app, Phase.PRE)
    not_ready = scripts[vm.id.lower()]
    assert not_ready.status is TaskStatus.FAILED
    assert "did not run to an exit code" in not_ready.detail and "agent is not ready" in not_ready.detail
    disconnected = scripts[arc.id.lower()]
    assert disconnected.status is TaskStatus.FAILED
    assert "Arc agent Disconnected" in disconnected.detail
    assert arc.id.lower() not in executions(app, HookPhase.PRE)


def test_a_duplicate_delivery_of_a_script_task_runs_the_script_once(start_hooks_app):
    estate = hooks_estate()
    target = estate.vms[0]
    app, clock = start_hooks_app(estate, per_machine={target.id: ScriptOutcome(duration_seconds=30)})
    assert app.deliver(pre_event(app)).status == 200
    app.wait(
        lambda: executions(app, HookPhase.PRE).get(target.id.lower()),
        "the script is running",
    )
    # The same task message again (a redelivery), and a stale first attempt replayed later.
    message = TaskMessage(run_key=app.run_key, phase=Phase.PRE, action=Action.PRE_SCRIPT, target=target.id)
    app.send(message)
    app.send(message.resent())
    clock.advance(31)
    app.wait_phase_final(Phase.PRE)
    app.send(message.resent().resent())
    app.quiesce()
    assert executions(app, HookPhase.PRE)[target.id.lower()] == 1
    assert scripts_of(app, Phase.PRE)[target.id.lower()].status is TaskStatus.SUCCEEDED
    run = app.records.get_run(app.run_key)
    assert execution_name(run, HookPhase.PRE, target.id).startswith("prepost-pre-")


def test_a_machine_tag_overrides_or_removes_its_script(start_hooks_app, storage_connection_string):
    estate = hooks_estate()
    own, none = estate.vms[0], estate.vms[1]
    own.tags["prepost-hook-pre"] = "nginx/drain.sh"
    none.tags["prepost-hook-pre"] = "none"
    app, _ = start_hooks_app(estate)
    upload_scripts(storage_connection_string, {"nginx/drain.sh": "echo drain\n"})
    assert app.deliver(pre_event(app)).status == 200
    app.wait_phase_final(Phase.PRE)
    scripts = scripts_of(app, Phase.PRE)
    assert scripts[own.id.lower()].data["script"] == "nginx/drain.sh"
    assert scripts[none.id.lower()].status is TaskStatus.SKIPPED
    assert none.id.lower() not in executions(app, HookPhase.PRE)


def test_an_invalid_declaration_fails_the_pre_scripts_and_cancels(start_hooks_app):
    app, _ = start_hooks_app(hooks_estate(**{"prepost-hook-timeout-seconds": "5m"}))
    assert app.deliver(pre_event(app)).status == 200
    pre = app.wait_phase_final(Phase.PRE)
    assert any("invalid hook declaration" in finding and "5m" in finding for finding in pre.findings)
    scripts = scripts_of(app, Phase.PRE)
    assert scripts and all(task.status is TaskStatus.FAILED for task in scripts.values())
    assert executions(app, HookPhase.PRE) == {}
    run = app.wait(lambda: (r := app.records.get_run(app.run_key)).cancel_requested_at and r, "run cancelled")
    assert run.cancel_accepted


# -- the Automation backend: runbook jobs on hybrid worker groups ----------------------------------


def automation_estate(**tags: str) -> Estate:
    estate = hooks_estate()
    account = (
        f"/subscriptions/{estate.configuration.subscription_id}/resourceGroups/rg-patching"
        "/providers/Microsoft.Automation/automationAccounts/aa-patching"
    )
    estate.configuration.tags.update(
        {
            "prepost-hook-backend": "automation",
            "prepost-hook-automation-account": account,
            "prepost-hook-pre-linux": "Stop-Nginx",
            "prepost-hook-post-linux": "Start-Nginx",
            "prepost-hook-pre-windows": "Stop-ShopPool",
            "prepost-hook-post-windows": "Start-ShopPool",
            **tags,
        }
    )
    return estate


def test_runbook_jobs_run_once_on_each_machines_worker_group(start_hooks_app):
    estate = automation_estate()
    tagged = estate.vms[1]
    tagged.tags["prepost-hook-worker-group"] = "hwg-shop-frontend"
    app, _ = start_hooks_app(estate, outcome=ScriptOutcome(duration_seconds=0, output="runbook done\n"))
    assert app.deliver(pre_event(app)).status == 200
    pre = app.wait_phase_final(Phase.PRE)
    assert pre.status is PhaseStatus.COMPLETED, pre.findings
    scripts = scripts_of(app, Phase.PRE)
    assert set(scripts) == running_machines(estate)
    for task in scripts.values():
        assert task.status is TaskStatus.SUCCEEDED, task.detail
        assert task.data["backend"] == "automation" and task.data["output_tail"] == "runbook done\n"
    assert scripts[tagged.id.lower()].data["worker_group"] == "hwg-shop-frontend"
    groups = [run["machineId"] for run in app.sim.state.run_commands.executions_of()]
    expected = {f"prepost-{m.name}" for m in [*estate.vms, *estate.arc_servers] if m is not tagged}
    assert sorted(groups) == sorted([*expected, "hwg-shop-frontend"])  # one job per machine, no more
    assert app.sim.state.run_commands.records == {}  # no run command was used


def test_a_suspended_runbook_job_fails_the_pre_script_and_cancels(start_hooks_app):
    estate = automation_estate()
    machine = estate.vms[0]
    app, _ = start_hooks_app(
        estate, per_machine={f"prepost-{machine.name}": ScriptOutcome(suspended=True, duration_seconds=0)}
    )
    assert app.deliver(pre_event(app)).status == 200
    app.wait_phase_final(Phase.PRE)
    task = scripts_of(app, Phase.PRE)[machine.id.lower()]
    assert task.status is TaskStatus.FAILED and "(Suspended)" in task.detail, task.detail
    run = app.wait(lambda: (r := app.records.get_run(app.run_key)).cancel_requested_at and r, "run cancelled")
    assert run.cancel_accepted
