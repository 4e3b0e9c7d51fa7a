"""Pre and post scripts: planning, the never-twice state machine, timeouts and the cancel decision.

The machine, the store and the runner are fakes of the ports (``shared.ports.scripts``); the
records, planning and supervision are the real use cases on fake records (tests/fakes_azure.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.errors import Throttled
from shared.models.hooks import HookPhase, ScriptOs
from shared.models.messages import TaskMessage
from shared.models.run import AFTER_OPTION, SAFETY_CRITICAL_OPTION, THEN_OPTION, Action, Phase, TaskStatus
from shared.ports.scripts import ScriptExecution, ScriptNotFound, ScriptRunner, ScriptStore, ScriptTarget, ScriptTargets
from shared.ports.send_guard import check_before_sending
from shared.usecases.script_actions import (
    OVERDUE_GRACE,
    PRE_RESERVE,
    ScriptPorts,
    execution_name,
    perform_script_action,
    pre_deadline,
)
from shared.usecases.supervision import NUDGE_RESEND
from shared.usecases.task_runner import FollowUp, TaskResult
from tests.fakes_azure import POST_SAMPLE, FakeEstate

TAGS = {"prepost-hook-pre-linux": "nginx/stop.sh", "prepost-hook-post-linux": "nginx/start.sh"}


class Targets(ScriptTargets):
    def __init__(self):
        self.targets: dict[str, ScriptTarget] = {}

    def add(self, machine_id: str, **changes) -> None:
        base = ScriptTarget(machine_id, "westeurope", ScriptOs.LINUX, True, "running")
        self.targets[machine_id.lower()] = replace(base, **changes)

    def get_target(self, machine_id: str) -> ScriptTarget | None:
        return self.targets.get(machine_id.lower())


class Store(ScriptStore):
    def __init__(self):
        self.scripts = {"nginx/stop.sh": "systemctl stop nginx", "nginx/start.sh": "systemctl start nginx"}
        self.on_read = None

    def get_script(self, name: str) -> str:
        if self.on_read:
            self.on_read()
        if name not in self.scripts:
            raise ScriptNotFound(f"script {name} not found")
        return self.scripts[name]


class Runner(ScriptRunner):
    """Executions by name; ``begun`` counts every begin (a script run)."""

    def __init__(self):
        self.executions: dict[str, ScriptExecution] = {}
        self.begun: list[dict] = []
        self.deleted: list[str] = []
        self.fail_begin: Exception | None = None
        self.create_then_fail = False
        self.on_begin = None

    def begin_script(self, target, name, *, script, parameters, timeout_seconds, tags, run_on=None) -> None:
        if self.on_begin:
            self.on_begin()
        check_before_sending()  # as the ARM adapter does, right before the request leaves
        if self.fail_begin and not self.create_then_fail:
            raise self.fail_begin
        self.begun.append({"name": name, "script": script, "parameters": dict(parameters), "timeout": timeout_seconds})
        self.executions[name] = ScriptExecution(name, "Running")
        if self.fail_begin:
            raise self.fail_begin  # created, but the answer was lost

    def finish(self, name: str, **changes) -> None:
        self.executions[name] = replace(
            self.executions[name], **{"execution_state": "Succeeded", "exit_code": 0, **changes}
        )

    def get_execution(self, target, name):
        return self.executions.get(name)

    def delete_execution(self, target, name) -> None:
        self.deleted.append(name)
        self.executions.pop(name, None)


def planned(tags=TAGS) -> tuple[FakeEstate, str, ScriptPorts]:
    estate = FakeEstate(tags=tags)
    vm = estate.add_vm("vm-web-01")
    estate.planned_pre()
    targets = Targets()
    targets.add(vm)
    ports = ScriptPorts(records=estate.records, targets=targets, runner=Runner(), store=Store())
    return estate, vm, ports


def act(estate, vm, ports, *, phase=Phase.PRE, now=None) -> TaskResult | FollowUp:
    action = Action.PRE_SCRIPT if phase is Phase.PRE else Action.POST_SCRIPT
    message = TaskMessage(run_key=estate.key, phase=phase, action=action, target=vm)
    run = estate.records.get_run(estate.key)
    return perform_script_action(message, run, ports, now or estate.now)


def data(estate, vm, phase=Phase.PRE) -> dict:
    action = Action.PRE_SCRIPT if phase is Phase.PRE else Action.POST_SCRIPT
    return estate.task(phase, action, vm).data


# -- planning ------------------------------------------------------------------------------------


def test_planning_orders_start_pre_script_and_snapshot_on_each_vm():
    estate, vm, _ = planned()
    start = estate.task(Phase.PRE, Action.START_VM, vm)
    script = estate.task(Phase.PRE, Action.PRE_SCRIPT, vm)
    snapshot = estate.task(Phase.PRE, Action.SNAPSHOT_DISKS, vm)
    assert script.options == {
        SAFETY_CRITICAL_OPTION: True,
        AFTER_OPTION: [start.task_id],
        THEN_OPTION: [snapshot.task_id],
    }
    assert snapshot.options[AFTER_OPTION] == [script.task_id]
    assert start.options[THEN_OPTION] == [script.task_id]
    assert script.is_safety_critical
    assert estate.records.get_phase(estate.key, Phase.PRE).policy["hooks"]["scripts"] == {
        "pre-linux": "nginx/stop.sh",
        "post-linux": "nginx/start.sh",
    }


def test_without_hook_tags_nothing_changes():
    estate, vm, _ = planned(tags={})
    assert estate.task(Phase.PRE, Action.PRE_SCRIPT, vm) is None
    assert AFTER_OPTION not in estate.task(Phase.PRE, Action.SNAPSHOT_DISKS, vm).options


def test_a_pre_script_declared_a_warning_is_not_safety_critical():
    estate, vm, _ = planned(tags={**TAGS, "prepost-hook-pre-failure": "warn"})
    assert not estate.task(Phase.PRE, Action.PRE_SCRIPT, vm).is_safety_critical


def test_an_invalid_declaration_is_a_finding_and_its_pre_scripts_fail_safety_critical():
    estate, vm, ports = planned(tags={**TAGS, "prepost-hook-timeout-seconds": "soon"})
    phase = estate.records.get_phase(estate.key, Phase.PRE)
    assert any("invalid hook declaration" in finding for finding in phase.findings)
    assert estate.task(Phase.PRE, Action.PRE_SCRIPT, vm).is_safety_critical
    with pytest.raises(Exception, match="not a whole number of seconds"):
        act(estate, vm, ports)
    assert ports.runner.begun == []


# -- never twice ---------------------------------------------------------------------------------


def test_the_marker_is_written_before_the_script_is_begun_and_a_redelivery_only_looks():
    estate, vm, ports = planned()
    seen = []
    ports.runner.on_begin = lambda: seen.append(data(estate, vm).get("script_requested"))
    first = act(estate, vm, ports)
    assert isinstance(first, FollowUp) and seen == [True]
    name = execution_name(estate.records.get_run(estate.key), HookPhase.PRE, vm)
    assert ports.runner.begun[0]["name"] == name and ports.runner.begun[0]["script"] == "systemctl stop nginx"
    assert ports.runner.begun[0]["parameters"]["PREPOST_PHASE"] == "pre"

    assert isinstance(act(estate, vm, ports), FollowUp)  # a duplicate delivery
    ports.runner.finish(name, output="stopped\n", exit_code=0)
    done = act(estate, vm, ports)
    assert done.status is TaskStatus.SUCCEEDED and done.data["output_tail"] == "stopped\n"
    assert ports.runner.deleted == [name]
    # Delivered again after the deletion: the recorded result, not a second run.
    again = act(estate, vm, ports)
    assert again.status is TaskStatus.SUCCEEDED
    assert len(ports.runner.begun) == 1


def test_a_request_azure_refused_may_be_made_again_and_one_created_anyway_is_followed():
    estate, vm, ports = planned()
    ports.runner.fail_begin = Throttled("429")
    with pytest.raises(Throttled):
        act(estate, vm, ports)
    assert data(estate, vm)["script_requested"] is False
    ports.runner.fail_begin = None
    assert isinstance(act(estate, vm, ports), FollowUp)
    assert len(ports.runner.begun) == 1

    estate, vm, ports = planned()
    ports.runner.fail_begin, ports.runner.create_then_fail = Throttled("answer lost"), True
    with pytest.raises(Throttled):
        act(estate, vm, ports)
    assert isinstance(act(estate, vm, ports), FollowUp)  # found by its name, followed
    assert len(ports.runner.begun) == 1


def test_an_execution_gone_before_its_result_was_read_is_not_run_again():
    estate, vm, ports = planned()
    act(estate, vm, ports)
    ports.runner.executions.clear()
    result = act(estate, vm, ports)
    assert result.status is TaskStatus.FAILED and "not run again" in result.detail
    assert len(ports.runner.begun) == 1


# -- outcome and time ------------------------------------------------------------------------------


def test_exit_codes_are_judged_by_the_declared_success_codes():
    estate, vm, ports = planned(tags={**TAGS, "prepost-hook-success-codes": "0,3"})
    act(estate, vm, ports)
    name = ports.runner.begun[0]["name"]
    ports.runner.finish(name, exit_code=3, execution_state="Failed")
    assert act(estate, vm, ports).status is TaskStatus.SUCCEEDED

    estate, vm, ports = planned()
    act(estate, vm, ports)
    ports.runner.finish(ports.runner.begun[0]["name"], exit_code=1, execution_state="Failed", error="boom\n")
    result = act(estate, vm, ports)
    assert result.status is TaskStatus.FAILED and "exited 1" in result.detail and result.data["error_tail"] == "boom\n"


def test_the_pre_script_timeout_is_cut_to_end_before_the_cancellation_cut_off():
    estate, vm, ports = planned()
    run = estate.records.get_run(estate.key)
    now = pre_deadline(run) - PRE_RESERVE - timedelta(seconds=100)
    act(estate, vm, ports, now=now)
    assert ports.runner.begun[0]["timeout"] == 100

    estate, vm, ports = planned()
    late = pre_deadline(run) - PRE_RESERVE - timedelta(seconds=10)
    result = act(estate, vm, ports, now=late)
    assert result.status is TaskStatus.FAILED and "too little to run it" in result.detail
    assert ports.runner.begun == []


def test_an_execution_running_past_its_timeout_is_stopped_and_recorded_timed_out():
    estate, vm, ports = planned()
    act(estate, vm, ports)
    later = estate.now + timedelta(seconds=300) + OVERDUE_GRACE + timedelta(seconds=1)
    result = act(estate, vm, ports, now=later)
    assert result.status is TaskStatus.FAILED and "timed out after 300 s" in result.detail
    assert ports.runner.deleted == [ports.runner.begun[0]["name"]]


def test_a_cancellation_that_lands_while_the_marker_is_written_stops_the_pre_script():
    estate, vm, ports = planned()

    def cancel():
        run = estate.records.get_run(estate.key)
        run.cancel_requested_at, run.cancel_accepted = estate.now, True
        estate.records.update_run(run)

    ports.store.on_read = cancel
    result = act(estate, vm, ports)
    assert result.status is TaskStatus.SKIPPED and "cancelled" in result.detail
    assert ports.runner.begun == [] and data(estate, vm)["script_requested"] is False


def test_a_stopped_vm_is_skipped_and_a_disconnected_arc_agent_fails():
    estate, vm, ports = planned()
    ports.targets.add(vm, running=False, state="deallocated")
    assert act(estate, vm, ports).status is TaskStatus.SKIPPED
    ports.targets.add(vm, running=False, state="agent Disconnected", is_arc=True)
    with pytest.raises(Exception, match="cannot run: Arc agent Disconnected"):
        act(estate, vm, ports)


def test_a_machine_tag_removes_its_script_and_a_missing_blob_is_a_clear_error():
    estate, vm, ports = planned()
    ports.targets.add(vm, tags={"prepost-hook-pre": "none"})
    assert act(estate, vm, ports).status is TaskStatus.SKIPPED
    ports.targets.add(vm, tags={"prepost-hook-pre": "missing.sh"})
    with pytest.raises(ScriptNotFound, match="missing.sh"):
        act(estate, vm, ports)


# -- the cancel decision ---------------------------------------------------------------------------


@pytest.mark.parametrize(("failure", "cancelled"), [("cancel", True), ("warn", False)])
def test_a_failed_pre_script_cancels_only_when_declared_safety_critical(failure, cancelled):
    estate, vm, _ = planned(tags={**TAGS, "prepost-hook-pre-failure": failure})
    for task in estate.tasks(Phase.PRE):
        status = TaskStatus.FAILED if task.action is Action.PRE_SCRIPT else TaskStatus.SUCCEEDED
        estate.report(task.action, task.target, status, detail="exited 2")
    run = estate.records.get_run(estate.key)
    assert (run.cancel_requested_at is not None) is cancelled


def test_post_scripts_are_planned_for_every_machine_that_had_a_pre_script_and_come_before_deallocation():
    estate, vm, _ = planned()
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED, data={"started_by_us": True})
    for task in estate.tasks(Phase.PRE):
        if not task.status.is_final:
            estate.report(task.action, task.target, TaskStatus.FAILED, detail="whatever came of it")
    estate.deliver(POST_SAMPLE)
    estate.plan(Phase.POST)
    script = estate.task(Phase.POST, Action.POST_SCRIPT, vm)
    deallocate = estate.task(Phase.POST, Action.DEALLOCATE_VM, vm)
    assert script is not None and deallocate.options[AFTER_OPTION] == [script.task_id]


def test_a_task_others_wait_for_sends_them_on_once_it_is_final():
    estate, vm, _ = planned()
    estate.report(Action.START_VM, vm, TaskStatus.IN_PROGRESS)
    assert estate.transport.take() == []  # not final yet: nothing to send on
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED)
    sent = [s.message for s in estate.transport.take() if isinstance(s.message, TaskMessage)]
    assert [(m.action, m.target, m.resend) for m in sent] == [(Action.PRE_SCRIPT, vm, NUDGE_RESEND)]
    assert sent[0].options == estate.task(Phase.PRE, Action.PRE_SCRIPT, vm).options
    estate.report(Action.START_VM, vm, TaskStatus.SUCCEEDED)  # a duplicate outcome sends nothing
    assert [s for s in estate.transport.take() if isinstance(s.message, TaskMessage)] == []


def test_a_cancellation_that_lands_while_the_pre_script_request_is_paced_stops_it():
    estate, vm, ports = planned()

    def cancel():
        run = estate.records.get_run(estate.key)
        run.cancel_requested_at, run.cancel_accepted = estate.now, True
        estate.records.update_run(run)

    ports.runner.on_begin = cancel  # the adapter is waiting for its rate-control token
    result = act(estate, vm, ports)
    assert result.status is TaskStatus.SKIPPED and "cancelled" in result.detail
    assert ports.runner.begun == [] and data(estate, vm)["script_requested"] is False
