"""Planning: resolve a phase's machines and fan out one task per machine and action."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.errors import Deferred, PermanentError, Throttled, TransientError
from shared.models.hooks import HookDeclaration, InvalidHookDeclaration, hooks_from_tags
from shared.models.ids import MachineKind, ResourceId
from shared.models.messages import MonitoringMessage, PlanPhase, TaskMessage
from shared.models.policy import RunPolicy, SafetyCategory, SnapshotDisks
from shared.models.retry import DEFAULT_RETRY
from shared.models.run import (
    AFTER_OPTION,
    PREFLIGHT_SEVERITY,
    PREFLIGHT_START,
    SAFETY_CRITICAL_OPTION,
    THEN_OPTION,
    Action,
    Phase,
    PhaseRecord,
    PhaseStatus,
    RunRecord,
    TaskRecord,
    TaskStatus,
)
from shared.observability import metrics
from shared.ports.azure import MachineInventory, MaintenanceConfigurations, RunCancellation
from shared.ports.idempotency import RecordChanged
from shared.ports.records import RunRecords
from shared.ports.transport import WorkTransport
from shared.settings import AllowList
from shared.usecases.fences import pre_work_fence
from shared.usecases.script_actions import HOOKS_POLICY_KEY
from shared.usecases.supervision import CONFLICT_RETRIES, cancel_if_pre_failed, finish_phase_if_done

log = logging.getLogger(__name__)

ARC_SNAPSHOT_REASON = "Azure cannot snapshot the disks of an Arc-enabled server; take a backup on the machine itself"
# A post-event can overtake the pre-work (events are not ordered). Wait for the pre phase to
# settle, but not forever: after this many checks the post phase undoes what is recorded.
POST_WAIT_FOR_PRE = timedelta(minutes=2)
POST_WAIT_ATTEMPTS = 15


SAFETY_CATEGORIES = {
    Action.SNAPSHOT_DISKS: SafetyCategory.SNAPSHOT,
    Action.START_VM: SafetyCategory.START,
    Action.PRE_SCRIPT: SafetyCategory.PRE_SCRIPT,
}
"""Pre actions whose failure counts against the error budget when the policy lists their category.
A preflight task is not among them: only its blocking findings count (``shared.usecases.gate``)."""


@dataclass(frozen=True)
class PlanningPorts:
    records: RunRecords
    transport: WorkTransport
    inventory: MachineInventory
    configurations: MaintenanceConfigurations
    allowed_subscriptions: AllowList
    cancellation: RunCancellation
    """Used when the pre phase cannot be planned at all: patching must not go ahead blind."""
    policy_defaults: RunPolicy = field(default_factory=RunPolicy)
    """What the app settings say where a configuration has no gate tag (budget, safety-critical work)."""


def plan_phase(message: PlanPhase, ports: PlanningPorts, *, now: datetime) -> PhaseRecord:
    """Plan one phase of a run, once.

    Safe to repeat: task records are created only if absent and task messages carry
    deterministic ids, so a redelivered plan message re-sends at most what a crash left unsent.

    A throttled Resource Graph or ARM read sends the plan again after the wait Azure asked for
    (:func:`_plan_again_later`) instead of raising.

    Raises:
        TransientError: Resource Graph or ARM failed (not throttled); the plan message is retried.
    """
    records = ports.records
    run = records.get_run(message.run_key)
    phase = records.get_phase(run.run_key, message.phase)
    if phase is None:
        raise PermanentError(f"{message.phase.value} phase of run {run.run_key} is not recorded")
    if phase.status is not PhaseStatus.RECEIVED:
        log.info("%s %s already planned (%s)", run.run_key, phase.phase.value, phase.status.value)
        # A delivery that died after marking the phase planned left it to this one: close the
        # phase if every task is final (a phase of no tasks has no outcome that would), and for
        # the pre phase make the gate's decision a crash or a failed cancel call left unmade.
        finish_phase_if_done(
            run.run_key,
            phase.phase,
            records=records,
            cancellation=ports.cancellation,
            transport=ports.transport,
            now=now,
            recount=phase.status is PhaseStatus.PLANNED,
        )
        return phase

    if message.phase is Phase.PRE:
        fence = pre_work_fence(run, records, now)
        if fence is not None:
            # Pre-work that would begin after the run started, after the post phase began or
            # after a cancellation acts on machines nobody is waiting for: plan nothing.
            return _planning_failed(run, phase, ports, f"too late to plan the pre phase: {fence.reason}", now)
        try:
            tasks, outgoing, machines, policy, findings, hooks = _plan_pre(run, ports)
        except (Throttled, Deferred) as error:
            return _plan_again_later(message, phase, error, ports.transport)
        except PermanentError as error:
            # Retrying cannot help (e.g. the identity lacks its role): record why, and do not let
            # patching proceed without the safety work.
            return _planning_failed(run, phase, ports, str(error), now)
    else:
        waiting = _pre_still_running(run, records)
        if waiting and message.attempt < POST_WAIT_ATTEMPTS:
            ports.transport.send([message.next_attempt()], delay=POST_WAIT_FOR_PRE)
            log.info("%s post waits for %d pre tasks", run.run_key, waiting)
            return phase
        tasks, outgoing, machines, policy, findings = _plan_post(run, ports)
        hooks = None
        if waiting:
            findings.append(f"{waiting} pre tasks were still unfinished when the post phase was planned")

    records.add_tasks(tasks)
    ports.transport.send(outgoing)
    phase = _mark_planned(phase, tasks, machines, [*policy.findings, *findings], policy, records, now, hooks)
    log.info("%s %s planned: %d tasks, %d machines", run.run_key, phase.phase.value, len(tasks), machines)
    finish_phase_if_done(
        run.run_key,
        message.phase,
        records=records,
        cancellation=ports.cancellation,
        transport=ports.transport,
        now=now,
    )
    return phase


def _mark_planned(
    phase: PhaseRecord,
    tasks: list[TaskRecord],
    machines: int,
    findings: list[str],
    policy: RunPolicy,
    records: RunRecords,
    now: datetime,
    hooks: dict | None = None,
) -> PhaseRecord:
    """Mark the phase planned, its counters counted from the stored task records.

    Outcomes may already have arrived for tasks sent above (or by an earlier delivery of this
    plan). Each final outcome changes the phase in the same write as its task, so if one lands
    between the count and this write, the write fails on the etag and the count is taken again.
    """
    planned_ids = {task.task_id for task in tasks}
    for _ in range(CONFLICT_RETRIES):
        stored = [task for task in records.list_tasks(phase.run_key, phase.phase) if task.task_id in planned_ids]
        phase.status = PhaseStatus.PLANNED
        phase.planned_at = now
        phase.expected_tasks = len(tasks)
        phase.finished_tasks = sum(1 for task in stored if task.status.is_final)
        phase.failed_tasks = sum(1 for task in stored if task.status is TaskStatus.FAILED)
        phase.machines = machines
        phase.policy = {**policy.to_dict(), **({HOOKS_POLICY_KEY: hooks} if hooks else {})}
        phase.findings = [*phase.findings, *(finding for finding in findings if finding not in phase.findings)]
        try:
            return records.replace_phase(phase)
        except RecordChanged:
            fresh = records.get_phase(phase.run_key, phase.phase)
            if fresh is None or fresh.status is not PhaseStatus.RECEIVED:
                raise TransientError(f"{phase.phase.value} phase of {phase.run_key} changed while planned") from None
            phase = fresh
    raise TransientError(f"{phase.phase.value} phase of {phase.run_key} kept changing while planned")


def _plan_again_later(
    message: PlanPhase, phase: PhaseRecord, error: TransientError, transport: WorkTransport
) -> PhaseRecord:
    """Send the plan again after the wait Azure asked for, and say so in one log line.

    Resource Graph allows about 15 queries per 5 seconds per caller and says when its quota
    resets (``x-ms-user-quota-resets-after``, read by ``shared.adapters.arm.errors``). Raising
    instead would have the platform deliver the message again at once, with a traceback each
    time, and burn its delivery count. Nothing of the phase is recorded before the machines are
    listed, so planning again starts afresh. It cannot go on for ever: pre-work is not planned
    once the run has started (``pre_work_fence``), and the deadline check cancels a run whose
    pre phase was never planned.
    """
    delay = DEFAULT_RETRY.delay(message.resend + 1, key=message.message_id, retry_after=error.retry_after)
    # A fresh MessageId: Service Bus would drop this one as a duplicate within its window.
    transport.send([message.resent()], delay=delay)
    log.warning(
        "%s %s planning throttled; planning again in %d s: %s",
        message.run_key,
        phase.phase.value,
        int(delay.total_seconds()),
        error,
    )
    return phase


def _planning_failed(run: RunRecord, phase: PhaseRecord, ports: PlanningPorts, reason: str, now: datetime):
    phase.status = PhaseStatus.FAILED
    phase.planned_at = now
    phase.completed_at = now
    phase.findings = [*phase.findings, f"planning failed: {reason}"]
    phase = ports.records.replace_phase(phase)
    log.error("%s pre phase could not be planned: %s", run.run_key, reason)
    metrics.phase_finished(run.run_key, phase.phase.value, phase.status.value, phase.received_at, now, 0)
    cancel_if_pre_failed(
        run.run_key, records=ports.records, cancellation=ports.cancellation, transport=ports.transport, now=now
    )
    return phase


def _plan_pre(run: RunRecord, ports: PlanningPorts):
    findings: list[str] = []
    hooks: dict | None = None
    try:
        tags = ports.configurations.get_tags(run.configuration_id)
        policy = RunPolicy.from_tags(tags, ports.policy_defaults)
        hooks, declaration = _read_hooks(tags, findings)
    except PermanentError as error:
        declaration = None
        # Not the defaults: they start VMs and silence alerts, which nobody asked for here.
        policy = replace(ports.policy_defaults, start_deallocated=False, suppress_alerts=False)
        findings.append(
            f"could not read the configuration's policy tags ({error}); the fail-safe policy is used: "
            "snapshots of the OS disks, no VM started, no alert silenced, cancel on failure"
        )

    allowed = [sub for sub in run.subscription_ids if ports.allowed_subscriptions.allows(sub)]
    refused = sorted(set(run.subscription_ids) - set(allowed))
    if refused:
        findings.append(f"subscriptions not in PREPOST_ALLOWED_SUBSCRIPTIONS are left alone: {', '.join(refused)}")
    machine_ids = ports.inventory.list_run_machines(run.correlation_id, allowed) if allowed else []
    machine_ids = _unique(machine_ids)
    if not machine_ids:
        findings.append(
            "Resource Graph listed no machines for this run: either the schedule's scope is empty or the "
            "identity cannot read the run's applyUpdates rows (the prepost machine operator role, or Reader) "
            "on subscriptions " + ", ".join(allowed or run.subscription_ids)
        )
    ports.records.add_machines(run.run_key, machine_ids)

    tasks: list[TaskRecord] = []
    outgoing: list[TaskMessage] = []

    def add(action: Action, target: str, *, status=TaskStatus.QUEUED, detail: str = "", options=None):
        category = SAFETY_CATEGORIES.get(action)
        critical = policy.is_safety_critical(category) if category else False
        declared = (options or {}).get(SAFETY_CRITICAL_OPTION)
        if declared is not None:
            # A pre script declared a warning (prepost-hook-pre-failure=warn) never counts.
            critical = critical and bool(declared)
        tasks.append(
            TaskRecord(
                run.run_key,
                Phase.PRE,
                action,
                target,
                status,
                detail,
                options=options or {},
                # The gate counts failures of the tasks marked here; the policy says which kinds.
                safety_critical=critical,
            )
        )
        if status is TaskStatus.QUEUED:
            cls = MonitoringMessage if action.is_monitoring else TaskMessage
            outgoing.append(
                cls(run_key=run.run_key, phase=Phase.PRE, action=action, target=target, options=options or {})
            )
        return tasks[-1].task_id

    subscriptions_with_machines: dict[str, list[str]] = {}
    for machine in machine_ids:
        resource = ResourceId(machine)
        kind = resource.machine_kind
        if resource.subscription_id not in {sub.lower() for sub in allowed}:
            add(
                Action.SNAPSHOT_DISKS,
                machine,
                status=TaskStatus.SKIPPED,
                detail=f"subscription {resource.subscription_id} is not one prepost may act in",
            )
            continue
        if kind in (MachineKind.AZURE_VM, MachineKind.ARC_SERVER):
            subscriptions_with_machines.setdefault(resource.subscription_id, []).append(machine)
        starts = kind is MachineKind.AZURE_VM and policy.start_deallocated
        if kind in (MachineKind.AZURE_VM, MachineKind.ARC_SERVER):
            # Read-only checks of every machine, whatever else is done to it.
            # The policy's part travels in the task: the phase record gets the policy only once
            # every message is sent, and a preflight may run before that.
            checks = {
                "disks": policy.snapshot_disks.value,
                PREFLIGHT_SEVERITY: dict(policy.severity),
                PREFLIGHT_START: starts,
            }
            add(Action.PREFLIGHT, machine, options=checks)
        if kind is MachineKind.AZURE_VM:
            started = add(Action.START_VM, machine) if starts else None
            # Order on the machine: start it, run the pre script, then snapshot (so the snapshot
            # can be application-consistent). docs/hooks.md
            script = _add_pre_script(add, machine, hooks, declaration, after=started)
            if policy.snapshot_disks is SnapshotDisks.NONE:
                add(
                    Action.SNAPSHOT_DISKS,
                    machine,
                    status=TaskStatus.SKIPPED,
                    detail="policy tag prepost-snapshot-disks=none",
                )
            else:
                options = {"disks": policy.snapshot_disks.value, **({AFTER_OPTION: [script]} if script else {})}
                add(Action.SNAPSHOT_DISKS, machine, options=options)
        elif kind is MachineKind.ARC_SERVER:
            _add_pre_script(add, machine, hooks, declaration, after=None)
            add(Action.SNAPSHOT_DISKS, machine, status=TaskStatus.SKIPPED, detail=ARC_SNAPSHOT_REASON)
        else:
            add(
                Action.SNAPSHOT_DISKS,
                machine,
                status=TaskStatus.SKIPPED,
                detail=f"resource type {resource.provider_type} is not a machine prepost handles",
            )

    if policy.suppress_alerts:
        for subscription in sorted(subscriptions_with_machines):
            add(Action.SUPPRESS_ALERTS, subscription)
    tasks, outgoing = _link_dependents(tasks, outgoing)
    return tasks, outgoing, len(machine_ids), policy, findings, hooks


def _link_dependents(tasks: list[TaskRecord], outgoing: list) -> tuple[list[TaskRecord], list]:
    """Give every task that others wait for (their ``after``) the list of those (``then``), on its
    record and its message alike, so the outcome recorder can send them on when it is final."""
    then: dict[str, list[str]] = {}
    for task in tasks:
        for prerequisite in task.options.get(AFTER_OPTION) or []:
            then.setdefault(prerequisite, []).append(task.task_id)
    if not then:
        return tasks, outgoing
    for task in tasks:
        if task.task_id in then:
            task.options = {**task.options, THEN_OPTION: then[task.task_id]}
    linked = [
        replace(message, options={**message.options, THEN_OPTION: then[message.task_id]})
        if message.task_id in then
        else message
        for message in outgoing
    ]
    return tasks, linked


def _read_hooks(tags, findings: list[str]) -> tuple[dict | None, HookDeclaration | None]:
    """The hook declaration to store on the pre phase, and the parsed one (None when invalid)."""
    try:
        declaration = hooks_from_tags(tags)
    except InvalidHookDeclaration as error:
        findings.append(f"{error}; the pre scripts fail (and the post scripts are not run)")
        return {"invalid": error.problems}, None
    if not declaration.enabled:
        return None, declaration
    return declaration.to_dict(), declaration


def _add_pre_script(add, machine: str, hooks: dict | None, declaration, *, after: str | None) -> str | None:
    """A pre-script task when scripts are declared (or declared wrongly: it then fails)."""
    if not hooks:
        return None
    # Unknown (invalid declaration): safety-critical, as patching blind is what prepost prevents.
    critical = declaration.pre_is_safety_critical if declaration is not None else True
    options: dict = {SAFETY_CRITICAL_OPTION: critical}
    if after:
        options[AFTER_OPTION] = [after]
    return add(Action.PRE_SCRIPT, machine, options=options)


def _plan_post(run: RunRecord, ports: PlanningPorts):
    """Undo what the pre phase recorded doing; never more."""
    records = ports.records
    findings: list[str] = []
    pre = records.get_phase(run.run_key, Phase.PRE)
    policy = RunPolicy.from_dict(pre.policy) if pre and pre.policy else None
    if policy is None:
        findings.append("no planned pre phase is recorded for this run: nothing to undo")
        policy = RunPolicy()
    pre_tasks = records.list_tasks(run.run_key, Phase.PRE)
    machines = records.list_machines(run.run_key)

    tasks: list[TaskRecord] = []
    outgoing: list[TaskMessage] = []
    post_scripts = _plan_post_scripts(run, pre, pre_tasks, tasks, outgoing)
    for task in pre_tasks:
        if task.action is Action.START_VM and (task.data.get("started_by_us") or task.data.get("start_requested")):
            # The post script runs in the machine before it is deallocated again.
            script = post_scripts.get(task.target.lower())
            options = {AFTER_OPTION: [script]} if script else {}
            tasks.append(
                TaskRecord(
                    run.run_key, Phase.POST, Action.DEALLOCATE_VM, task.target, TaskStatus.QUEUED, options=options
                )
            )
            outgoing.append(
                TaskMessage(
                    run_key=run.run_key,
                    phase=Phase.POST,
                    action=Action.DEALLOCATE_VM,
                    target=task.target,
                    options=options,
                )
            )
        elif task.action is Action.SUPPRESS_ALERTS and task.data.get("rule_id"):
            options = {"rule_id": task.data["rule_id"]}
            tasks.append(
                TaskRecord(
                    run.run_key, Phase.POST, Action.REMOVE_SUPPRESSION, task.target, TaskStatus.QUEUED, options=options
                )
            )
            outgoing.append(
                MonitoringMessage(
                    run_key=run.run_key,
                    phase=Phase.POST,
                    action=Action.REMOVE_SUPPRESSION,
                    target=task.target,
                    options=options,
                )
            )
        elif task.action is Action.SUPPRESS_ALERTS and not task.status.is_final:
            # The rule may exist even though its outcome never arrived: remove by its known name.
            tasks.append(TaskRecord(run.run_key, Phase.POST, Action.REMOVE_SUPPRESSION, task.target, TaskStatus.QUEUED))
            outgoing.append(
                MonitoringMessage(
                    run_key=run.run_key, phase=Phase.POST, action=Action.REMOVE_SUPPRESSION, target=task.target
                )
            )
    if policy.snapshot_retention_days > 0:
        for machine in machines:
            if ResourceId(machine.resource_id).machine_kind is MachineKind.AZURE_VM:
                options = {"retention_days": policy.snapshot_retention_days}
                tasks.append(
                    TaskRecord(
                        run.run_key,
                        Phase.POST,
                        Action.PRUNE_SNAPSHOTS,
                        machine.resource_id,
                        TaskStatus.QUEUED,
                        options=options,
                    )
                )
                outgoing.append(
                    TaskMessage(
                        run_key=run.run_key,
                        phase=Phase.POST,
                        action=Action.PRUNE_SNAPSHOTS,
                        target=machine.resource_id,
                        options=options,
                    )
                )
    tasks, outgoing = _link_dependents(tasks, outgoing)
    return tasks, outgoing, len(machines), policy, findings


def _plan_post_scripts(run: RunRecord, pre, pre_tasks, tasks: list, outgoing: list) -> dict[str, str]:
    """A post-script task for every machine that had a pre-script task, whatever became of the
    pre script or the run (cancelled, patching failed): whatever it stopped is started again.
    Returns the post-script task id per machine (lower-case id)."""
    stored = (pre.policy or {}).get(HOOKS_POLICY_KEY) if pre else None
    if not stored or "invalid" in stored:
        return {}
    planned: dict[str, str] = {}
    for task in pre_tasks:
        if task.action is not Action.PRE_SCRIPT or task.target.lower() in planned:
            continue
        record = TaskRecord(run.run_key, Phase.POST, Action.POST_SCRIPT, task.target, TaskStatus.QUEUED)
        tasks.append(record)
        outgoing.append(
            TaskMessage(run_key=run.run_key, phase=Phase.POST, action=Action.POST_SCRIPT, target=task.target)
        )
        planned[task.target.lower()] = record.task_id
    return planned


def _pre_still_running(run: RunRecord, records: RunRecords) -> int:
    pre = records.get_phase(run.run_key, Phase.PRE)
    if pre is None or pre.status.is_final:
        return 0
    if pre.status is PhaseStatus.RECEIVED:
        return 1
    return sum(1 for task in records.list_tasks(run.run_key, Phase.PRE) if not task.status.is_final)


def _unique(resource_ids: Sequence[str]) -> list[str]:
    seen: dict[str, str] = {}
    for resource_id in resource_ids:
        seen.setdefault(resource_id.lower(), resource_id)
    return sorted(seen.values(), key=str.lower)
