"""Pre and post scripts inside each machine, through managed Run Command (docs/hooks.md).

One task per machine and phase. The task begins the script under a name fixed by the run, the
phase and the machine (:func:`execution_name`), records that it did, and answers
:class:`FollowUp`; follow-up deliveries read the execution until it finished, record its state,
exit code, duration and the tails of its output and error streams, then delete it.

Why a script never runs twice for one run, phase and machine:
- ``script_requested`` is written on the task before the script is begun; a delivery that
  finds it set only looks at the execution, never begins another;
- before beginning, the execution is looked up by its name: one that exists (a request whose
  answer was lost) is followed, not begun again;
- the result is written on the task before the execution is deleted, so a delivery after the
  deletion reports the recorded result instead of finding nothing.
A request that failed with an answer from Azure (throttled, refused) clears the marker, so the
next attempt may begin it; the look-up above still catches one that was created anyway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.errors import PermanentError, TransientError
from shared.models.events import DEFAULT_CUTOFF_BEFORE_START, parse_time
from shared.models.hooks import (
    MIN_TIMEOUT_SECONDS,
    HookBackend,
    HookDeclaration,
    HookPhase,
    InvalidHookDeclaration,
    machine_override_from_tags,
)
from shared.models.ids import ResourceId, schedule_stamp_of
from shared.models.messages import TaskMessage
from shared.models.run import Action, Phase, RunRecord, TaskStatus
from shared.ports.records import RunRecords
from shared.ports.scripts import ScriptExecution, ScriptRunner, ScriptStore, ScriptTarget, ScriptTargets
from shared.usecases.fences import FenceClosed, fenced_sending, pre_work_fence
from shared.usecases.task_runner import FollowUp, TaskResult

NAME_LIMIT = 80
TAIL_CHARS = 1_000
"""Characters kept of the end of each stream: the end is where a script says why it failed."""
PRE_RESERVE = timedelta(minutes=5)
"""Time kept between the end of a pre script and the cancellation cut-off: the snapshot that
follows it, the cancel margin, and a look or two. The script's timeout is cut to fit."""
OVERDUE_GRACE = timedelta(seconds=60)
"""How long after its timeout an execution that still runs is stopped and recorded as timed out."""
HOOKS_POLICY_KEY = "hooks"
"""Where the pre phase's stored policy keeps the hook declaration (or ``{"invalid": [...]}``)."""


@dataclass(frozen=True)
class ScriptPorts:
    records: RunRecords
    targets: ScriptTargets
    runner: ScriptRunner
    """Managed Run Command (the ``run-command`` backend)."""
    store: ScriptStore
    automation: Callable[[str], ScriptRunner] | None = None
    """Runbook jobs on hybrid workers of the given Automation account (the ``automation`` backend)."""


def _runner(ports: ScriptPorts, declaration: HookDeclaration | None) -> ScriptRunner:
    if declaration is None or declaration.backend is HookBackend.RUN_COMMAND:
        return ports.runner
    if ports.automation is None or not declaration.automation_account:
        raise PermanentError("the automation backend is not available in this app")
    return ports.automation(declaration.automation_account)


def worker_group(target: ScriptTarget) -> str:
    """The hybrid worker group that holds the machine: its ``prepost-hook-worker-group`` tag, or
    ``prepost-<machine name>`` (one group per machine, as hybrid workers reach one machine)."""
    override = machine_override_from_tags(target.tags)
    return override.worker_group or f"prepost-{ResourceId(target.resource_id).name}"[:128]


def perform_script_action(
    message: TaskMessage, run: RunRecord, ports: ScriptPorts, now: datetime
) -> TaskResult | FollowUp:
    """Run the phase's script in the machine, or take the next look at it.

    Raises TransientError/Throttled to retry, PermanentError to fail (a missing machine or script).
    """
    phase = HookPhase.PRE if message.action is Action.PRE_SCRIPT else HookPhase.POST
    what = f"{phase.value} script"
    data = _task_data(ports.records, message)
    if "script_state" in data:
        # Recorded by a delivery that died before (or while) deleting the execution.
        declared = declaration_or_none(ports.records, run.run_key)
        _delete(_runner(ports, declared), ports, message, data)
        return _result_from(data, declared, message)
    declaration = declared_hooks(ports.records, run.run_key)
    if not declaration.enabled:
        return TaskResult(TaskStatus.SKIPPED, "no scripts declared for this run")
    target = ports.targets.get_target(message.target)
    if target is None:
        raise PermanentError(f"machine {message.target} does not exist (deleted, or no read access)")
    name = execution_name(run, phase, message.target)
    runner = _runner(ports, declaration)
    if data.get("script_requested"):
        return _look(message, ports, runner, target, name, declaration, data, what, now)

    script_name = _script_name(declaration, phase, target)
    if script_name is None:
        return TaskResult(TaskStatus.SKIPPED, f"no {what} declared for {target.os.value if target.os else 'this OS'}")
    if not target.running:
        if target.is_arc:
            # An agent that is not connected cannot run anything: a clear failure, judged by policy.
            raise PermanentError(f"{what} {script_name} cannot run: Arc {target.state}")
        return TaskResult(
            TaskStatus.SKIPPED,
            f"{what} {script_name} not run: the VM is {target.state} (Update Manager cannot patch it either)",
            {"script": script_name},
        )
    existing = runner.get_execution(target, name)
    if existing is not None:
        # Begun by an earlier delivery whose request's answer was lost: follow it.
        facts = {
            "script_requested": True,
            "script": script_name,
            "execution": name,
            "backend": declaration.backend.value,
            "timeout_seconds": declaration.timeout_seconds,
            "begun_at": now.isoformat(),
        }
        _mark(ports.records, message, facts)
        return _look(message, ports, runner, target, name, declaration, {**data, **facts}, what, now)

    timeout = declaration.timeout_seconds
    if message.phase is Phase.PRE:
        # The copy read with the task: fenced_sending looks again, freshly, before the script is sent.
        fence = pre_work_fence(run, ports.records, now, reread=False)
        if fence is not None:
            return TaskResult(fence.status, fence.detail(what), {"script": script_name})
        left = int((pre_deadline(run) - PRE_RESERVE - now).total_seconds())
        if left < MIN_TIMEOUT_SECONDS:
            return TaskResult(
                TaskStatus.FAILED,
                f"{what} {script_name} not begun: {max(left, 0)} s left before the cancellation cut-off "
                f"(less {int(PRE_RESERVE.total_seconds() // 60)} min for the snapshot), too little to run it",
                {"script": script_name},
            )
        timeout = min(timeout, left)

    automation = declaration.backend is HookBackend.AUTOMATION
    # A runbook is named, not sent; a Run Command script travels inline.
    text = script_name if automation else ports.store.get_script(script_name)
    run_on = worker_group(target) if automation else None
    facts = {
        "script": script_name,
        "backend": declaration.backend.value,
        "execution": name,
        "os": target.os.value if target.os else None,
        "timeout_seconds": timeout,
        "begun_at": now.isoformat(),
        **({"worker_group": run_on} if run_on else {}),
    }
    _mark(ports.records, message, {**facts, "script_requested": True})
    # A pre script is fenced again by the adapter immediately before its request leaves, after
    # any pacing or retry wait: a cancellation may land while the marker is written or it waits.
    fenced = fenced_sending(run, ports.records, now) if message.phase is Phase.PRE else nullcontext()
    try:
        with fenced:
            runner.begin_script(
                target,
                name,
                run_on=run_on,
                script=text,
                parameters={
                    "PREPOST_RUN": run.run_key,
                    "PREPOST_CONFIGURATION": run.configuration_name,
                    "PREPOST_PHASE": phase.value,
                    "PREPOST_MACHINE": ResourceId(message.target).name,
                },
                timeout_seconds=timeout,
                tags={"prepost-run": run.run_key, "prepost-phase": phase.value},
            )
    except FenceClosed as closed:
        if not closed.after_sending:
            _mark(ports.records, message, {"script_requested": False})
        return TaskResult(closed.fence.status, closed.fence.detail(what), {"script": script_name})
    except Exception:
        # Azure answered (or the call failed): the next attempt looks the execution up first,
        # so clearing the marker can never make a script run twice.
        _mark(ports.records, message, {"script_requested": False})
        raise
    return FollowUp(what, f"{script_name} begun (timeout {timeout} s)", facts)


def _look(
    message: TaskMessage,
    ports: ScriptPorts,
    runner: ScriptRunner,
    target: ScriptTarget,
    name: str,
    declaration: HookDeclaration,
    data: dict,
    what: str,
    now: datetime,
) -> TaskResult | FollowUp:
    execution = runner.get_execution(target, name)
    script_name = data.get("script", "?")
    if execution is None:
        return TaskResult(
            TaskStatus.FAILED,
            f"{what} {script_name}: its execution {name} is gone before its result was read (deleted by someone "
            "else?); whether it ran is unknown, and it is not run again",
            {"script": script_name, "execution": name},
        )
    if not execution.is_finished:
        if not _overdue(data, now):
            return FollowUp(what, f"{script_name} {execution.execution_state.lower() or 'pending'}")
        # Run Command stops a script at its timeout itself; a runbook job has no timeout, so
        # prepost stops it (and is the safety net for an execution that never reports an end).
        execution = replace(execution, execution_state="TimedOut")
    recorded = _recorded(execution)
    _mark(ports.records, message, recorded)
    _delete(runner, ports, message, {**data, "execution": name})
    return _result_from({**data, **recorded}, declaration, message)


def _overdue(data: dict, now: datetime) -> bool:
    begun, timeout = data.get("begun_at"), data.get("timeout_seconds")
    if not begun or not timeout:
        return False
    try:
        return now > parse_time(begun) + timedelta(seconds=int(timeout)) + OVERDUE_GRACE
    except ValueError:
        return False


def _recorded(execution: ScriptExecution) -> dict:
    duration = None
    if execution.started_at and execution.ended_at:
        duration = round((execution.ended_at - execution.started_at).total_seconds(), 1)
    return {
        "script_state": execution.execution_state or execution.provisioning_state,
        "exit_code": execution.exit_code,
        "duration_seconds": duration,
        "script_started_at": execution.started_at.isoformat() if execution.started_at else None,
        "script_ended_at": execution.ended_at.isoformat() if execution.ended_at else None,
        "output_tail": _tail(execution.output),
        "error_tail": _tail(execution.error),
        "execution_message": _tail(execution.message, 300),
    }


def _result_from(data: dict, declaration: HookDeclaration | None, message: TaskMessage) -> TaskResult:
    """Judge a finished execution: its exit code against the declared success codes."""
    codes = declaration.success_exit_codes if declaration else (0,)
    state = str(data.get("script_state") or "unknown")
    exit_code = data.get("exit_code")
    script = data.get("script", "script")
    took = f" in {data['duration_seconds']:g} s" if data.get("duration_seconds") is not None else ""
    keep = {k: v for k, v in data.items() if k not in ("script_requested",)}
    if state.lower() == "timedout":
        status, detail = TaskStatus.FAILED, f"{script} timed out after {data.get('timeout_seconds', '?')} s"
    elif exit_code is None:
        why = data.get("execution_message") or data.get("error_tail") or "no exit code"
        status, detail = TaskStatus.FAILED, f"{script} did not run to an exit code ({state}): {why}"
    elif int(exit_code) in codes:
        status, detail = TaskStatus.SUCCEEDED, f"{script} exited {exit_code}{took}"
    else:
        allowed = ",".join(str(code) for code in codes)
        status, detail = TaskStatus.FAILED, f"{script} exited {exit_code}{took} (success: {allowed})"
    warn_only = declaration is not None and not declaration.pre_is_safety_critical
    if status is TaskStatus.FAILED and message.action is Action.PRE_SCRIPT and warn_only:
        detail += "; a warning only (prepost-hook-pre-failure=warn): patching goes ahead"
    return TaskResult(status, detail, keep)


def _delete(runner: ScriptRunner, ports: ScriptPorts, message: TaskMessage, data: dict) -> None:
    name = data.get("execution")
    if not name:
        return
    target = ports.targets.get_target(message.target)
    if target is not None:
        runner.delete_execution(target, name)


def _script_name(declaration: HookDeclaration, phase: HookPhase, target: ScriptTarget) -> str | None:
    declared = declaration.script_for(phase, target.os) if target.os else None
    override = machine_override_from_tags(target.tags)  # InvalidHookDeclaration is a PermanentError
    return override.script_for(phase, declared)


def declared_hooks(records: RunRecords, run_key: str) -> HookDeclaration:
    """The declaration stored on the run's pre phase when it was planned.

    Raises:
        InvalidHookDeclaration: the configuration's hook tags did not parse.
    """
    pre = records.get_phase(run_key, Phase.PRE)
    stored = (pre.policy or {}).get(HOOKS_POLICY_KEY) if pre else None
    if not stored:
        return HookDeclaration()
    if "invalid" in stored:
        raise InvalidHookDeclaration(list(stored["invalid"]))
    return HookDeclaration.from_dict(stored)


def declaration_or_none(records: RunRecords, run_key: str) -> HookDeclaration | None:
    try:
        return declared_hooks(records, run_key)
    except InvalidHookDeclaration:
        return None


def pre_deadline(run: RunRecord) -> datetime:
    """The cancellation cut-off the pre scripts must leave room before (the earlier of the
    event's cut-off and T-10 minutes, as the deadline check counts it, less its margin)."""
    start_cutoff = run.start - DEFAULT_CUTOFF_BEFORE_START
    return min(run.cancellation_cutoff or start_cutoff, start_cutoff)


def execution_name(run: RunRecord, phase: HookPhase, machine_id: str) -> str:
    """``prepost-<pre|post>-<schedule>-<machine>-<hash>``: the same run, phase and machine
    always give the same name (run command names allow letters, digits, ``-``, ``_``, ``.``)."""
    machine = ResourceId(machine_id)
    stamp = schedule_stamp_of(run.correlation_id) or run.start.strftime("%Y%m%d%H%M%S")
    digest = hashlib.sha256(f"{run.correlation_id.lower()}|{phase.value}|{machine.key}".encode()).hexdigest()[:8]
    prefix = f"prepost-{phase.value}-{stamp}-"
    room = NAME_LIMIT - len(prefix) - len(digest) - 1
    part = re.sub(r"[^A-Za-z0-9_.-]", "-", machine.name)[:room].rstrip(".-")
    return f"{prefix}{part}-{digest}"


def _tail(text: str | None, limit: int = TAIL_CHARS) -> str:
    text = text or ""
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def _task_data(records: RunRecords, message: TaskMessage) -> dict:
    task = records.get_task(message.run_key, message.task_id)
    return task.data if task else {}


def _mark(records: RunRecords, message: TaskMessage, data: dict) -> None:
    from shared.ports.idempotency import RecordChanged

    for _ in range(10):
        task = records.get_task(message.run_key, message.task_id)
        if task is None:
            raise PermanentError(f"task {message.task_id} is not recorded")
        task.data = {**task.data, **data}
        try:
            records.replace_task(task)
            return
        except RecordChanged:
            continue
    raise TransientError(f"task {message.task_id} kept changing")
