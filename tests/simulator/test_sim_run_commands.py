"""Run commands (VMs through the real ComputeManagementClient, Arc servers and runbook jobs through
prepost's own adapters) and their programmable outcomes, on the simulator's manual clock."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from prepost.simulator import Estate, ManualClock, PowerState, SimulatorServer
from prepost.simulator.estate import ArcStatus
from shared.adapters.arm.automation_jobs import AutomationJobs, job_name
from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.run_commands import ArmRunCommands, ArmScriptTargets
from shared.errors import PermanentError, TransientError
from shared.models.hooks import ScriptOs
from shared.settings import ArmAuth


def running_vm(estate: Estate):
    return next(vm for vm in estate.vms if vm.power_state is PowerState.RUNNING)


@pytest.fixture
def arm(server: SimulatorServer) -> ArmClients:
    return ArmClients(server.url, ArmAuth.SIMULATOR)


def program(server: SimulatorServer, **body) -> requests.Response:
    return requests.post(f"{server.url}/_sim/run-commands", json=body, timeout=5)


def test_a_vm_run_command_runs_its_script_and_reports_the_instance_view(compute, server, estate, clock: ManualClock):
    from azure.mgmt.compute.models import RunCommandInputParameter, VirtualMachineRunCommand
    from azure.mgmt.compute.models import VirtualMachineRunCommandScriptSource as Source

    vm = running_vm(estate)
    assert program(server, id=vm.id, exitCode=3, durationSeconds=30, output="half\nall\n", error="oops").ok
    operations = compute(vm.subscription_id).virtual_machine_run_commands
    body = VirtualMachineRunCommand(
        location=vm.location,
        source=Source(script="echo hi"),
        parameters=[RunCommandInputParameter(name="PREPOST_PHASE", value="pre")],
        async_execution=True,
        timeout_in_seconds=120,
    )
    created = operations.begin_create_or_update(vm.resource_group, vm.name, "prepost-pre-x", body).result()
    assert created.provisioning_state == "Succeeded" and created.source.script == "echo hi"

    running = operations.get_by_virtual_machine(vm.resource_group, vm.name, "prepost-pre-x", expand="instanceView")
    assert running.instance_view.execution_state == "Running" and running.instance_view.exit_code is None
    clock.advance(31)
    done = operations.get_by_virtual_machine(vm.resource_group, vm.name, "prepost-pre-x", expand="instanceView")
    view = done.instance_view
    assert (view.execution_state, view.exit_code, view.output, view.error) == ("Failed", 3, "half\nall\n", "oops")
    assert (view.end_time - view.start_time).total_seconds() == 30

    # As in Azure, a second PUT of the same name runs the script again: prepost must never send one.
    operations.begin_create_or_update(vm.resource_group, vm.name, "prepost-pre-x", body).result()
    runs = requests.get(f"{server.url}/_sim/run-commands", timeout=5).json()
    assert [r["executions"] for r in runs["value"]] == [2] and len(runs["executions"]) == 2
    assert runs["executions"][0]["parameters"] == {"PREPOST_PHASE": "pre"}

    operations.begin_delete(vm.resource_group, vm.name, "prepost-pre-x").result()
    with pytest.raises(ResourceNotFoundError):
        operations.get_by_virtual_machine(vm.resource_group, vm.name, "prepost-pre-x")
    assert len(requests.get(f"{server.url}/_sim/run-commands", timeout=5).json()["executions"]) == 2


def test_prepost_adapters_on_a_vm_and_an_arc_server(server, estate, arm, clock: ManualClock):
    targets, runner = ArmScriptTargets(arm), ArmRunCommands(arm)
    vm = running_vm(estate)
    arc = next(a for a in estate.arc_servers if a.status is ArcStatus.CONNECTED)
    for machine in (vm, arc):
        target = targets.get_target(machine.id)
        assert target.running and target.os is (
            ScriptOs.LINUX if machine.os_type.value == "Linux" else ScriptOs.WINDOWS
        )
        runner.begin_script(target, "prepost-post-y", script="x", parameters={}, timeout_seconds=60, tags={})
        assert runner.get_execution(target, "prepost-post-y").is_finished is False
        clock.advance(3)
        execution = runner.get_execution(target, "prepost-post-y")
        assert execution.is_finished and execution.exit_code == 0 and execution.output == "ok"
        runner.delete_execution(target, "prepost-post-y")
        runner.delete_execution(target, "prepost-post-y")  # already gone: fine
        assert runner.get_execution(target, "prepost-post-y") is None


def test_timeouts_an_agent_that_is_not_ready_and_machines_that_cannot_run_anything(server, estate, arm, clock):
    targets, runner = ArmScriptTargets(arm), ArmRunCommands(arm)
    vm = running_vm(estate)
    target = targets.get_target(vm.id)
    program(server, id=vm.id, nameContains="-slow-", timeout=True)
    program(server, id=vm.id, nameContains="-deaf-", agentNotReady=True)
    runner.begin_script(target, "prepost-slow-1", script="x", parameters={}, timeout_seconds=60, tags={})
    runner.begin_script(target, "prepost-deaf-1", script="x", parameters={}, timeout_seconds=60, tags={})
    clock.advance(59)
    assert not runner.get_execution(target, "prepost-slow-1").is_finished
    clock.advance(2)
    slow = runner.get_execution(target, "prepost-slow-1")
    assert slow.execution_state == "TimedOut" and slow.exit_code is None
    deaf = runner.get_execution(target, "prepost-deaf-1")
    assert deaf.is_finished and deaf.exit_code is None and "not ready" in deaf.message

    stopped = next(v for v in estate.vms if v.power_state is PowerState.DEALLOCATED)
    assert not targets.get_target(stopped.id).running
    with pytest.raises(TransientError, match="OperationNotAllowed"):
        runner.begin_script(targets.get_target(stopped.id), "n", script="x", parameters={}, timeout_seconds=60, tags={})
    arc = estate.arc_servers[0]
    server.state.set_arc_status(arc.id, ArcStatus.DISCONNECTED)
    disconnected = targets.get_target(arc.id)
    assert not disconnected.running and disconnected.state.startswith("agent Disconnected since")
    with pytest.raises(PermanentError, match="MachineNotConnected"):
        runner.begin_script(disconnected, "n", script="x", parameters={}, timeout_seconds=60, tags={})


def test_runbook_jobs_complete_fail_suspend_and_stop(server, estate, arm, clock: ManualClock):
    account = (
        f"/subscriptions/{estate.configuration.subscription_id}/resourceGroups/{estate.configuration.resource_group}"
        "/providers/Microsoft.Automation/automationAccounts/aa"
    )
    jobs = ArmScriptTargets(arm), AutomationJobs(arm, account)
    targets, runner = jobs
    target = targets.get_target(running_vm(estate).id)
    program(server, id="hwg-ok", output="done\n")
    program(server, id="hwg-suspended", suspended=True, error="needs input")
    program(server, id="hwg-forever", timeout=True)

    def begin(name, group):
        runner.begin_script(
            target, name, script="Stop-App", parameters={"A": "1"}, timeout_seconds=60, tags={}, run_on=group
        )

    begin("ok", "hwg-ok")
    begin("suspended", "hwg-suspended")
    begin("forever", "hwg-forever")
    with pytest.raises(TransientError, match="Conflict"):
        begin("ok", "hwg-ok")  # the same job id twice is refused
    clock.advance(3)
    ok = runner.get_execution(target, "ok")
    assert (ok.execution_state, ok.exit_code, ok.output) == ("Succeeded", 0, "done\n")
    suspended = runner.get_execution(target, "suspended")
    assert suspended.is_finished and suspended.exit_code is None and suspended.error == "needs input"
    assert not runner.get_execution(target, "forever").is_finished
    runner.delete_execution(target, "forever")  # stops it
    assert runner.get_execution(target, "forever").execution_state == "Canceled"
    executions = requests.get(f"{server.url}/_sim/run-commands", timeout=5).json()["executions"]
    assert sorted(e["machineId"] for e in executions) == ["hwg-forever", "hwg-ok", "hwg-suspended"]
    assert job_name("ok") == job_name("OK")  # one job per execution name, whatever its casing


def test_a_bad_outcome_is_refused_by_the_control_api(server):
    assert program(server, id="*", exitCode="zero").status_code == 400
    assert program(server, id="*", colour="red").status_code == 400
