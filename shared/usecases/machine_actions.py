"""The actions on machines: start, snapshot, agent check, deallocate, prune.

Each action is idempotent on its own terms (a running VM is not started again, a snapshot of
the same run and disk is reused), and reads the records of earlier phases rather than
guessing: only VMs prepost started are deallocated afterwards.

Starting, deallocating and snapshotting take minutes in Azure, so those actions begin the
operation, record that they did in the task's data (``start_requested``,
``deallocate_requested``, ``snapshots_requested``) and answer :class:`FollowUp`; the follow-up
delivery looks at the VM or the snapshots again and finishes the task once they are done.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.errors import MessageRejected, PermanentError, TransientError
from shared.models.findings import FindingKind, Severity
from shared.models.ids import ResourceId, schedule_stamp_of
from shared.models.messages import TaskMessage
from shared.models.policy import RunPolicy, SnapshotDisks
from shared.models.run import (
    AFTER_OPTION,
    PREFLIGHT_SEVERITY,
    PREFLIGHT_START,
    Action,
    RunRecord,
    TaskRecord,
    TaskStatus,
    task_id,
)
from shared.ports.azure import ArcMachines, Compute, PowerState, Snapshot, VirtualMachine
from shared.ports.idempotency import RecordChanged
from shared.ports.records import RunNotFound, RunRecords
from shared.settings import AllowList
from shared.usecases.fences import FenceClosed, fenced_sending, pre_work_fence
from shared.usecases.message_checks import check_task_message
from shared.usecases.preflight import BLOCKING_FINDINGS, preflight_machine
from shared.usecases.script_actions import ScriptPorts, perform_script_action
from shared.usecases.task_runner import FollowUp, TaskResult

TAG_RUN = "prepost-run"
TAG_CONFIGURATION = "prepost-configuration"
TAG_MACHINE = "prepost-machine"
TAG_DISK = "prepost-disk"
TRANSITIONAL = {PowerState.STARTING, PowerState.DEALLOCATING, PowerState.STOPPING}
TRANSITION_RECHECK = timedelta(seconds=30)
PREREQUISITE_RECHECK = timedelta(minutes=1)
"""How often a task waiting for another one looks by itself; the outcome recorder sends it on as
soon as the other one is final (``then``), so this only bounds the cost of a lost nudge."""
SNAPSHOT_NAME_LIMIT = 80
START = "start VM"
DEALLOCATE = "deallocate VM"
SNAPSHOT = "snapshot disks"
ENDED_UNSUCCESSFULLY = ("failed", "canceled")
"""ARM's terminal provisioning states other than Succeeded: a PUT of the same snapshot retries it."""


@dataclass(frozen=True)
class MachinePorts:
    records: RunRecords
    compute: Compute
    arc: ArcMachines
    allowed_subscriptions: AllowList
    """PREPOST_ALLOWED_SUBSCRIPTIONS: a message for a machine outside them is rejected."""
    scripts: ScriptPorts | None = None
    """Pre and post scripts (docs/hooks.md); None where no script action is ever sent."""


def perform_machine_action(message: TaskMessage, ports: MachinePorts, *, now: datetime) -> TaskResult | FollowUp:
    """Do one machine action, or the next step of it.

    Returns the result, or :class:`FollowUp` while an Azure operation it began is still running.
    Raises TransientError/Throttled to retry, PermanentError to fail, and
    :class:`~shared.errors.MessageRejected` (before any Azure call) for a message that does not
    agree with its task record or the allowed subscriptions.
    """
    run, task = _run_and_task(ports.records, message)
    check_task_message(message, task, run, ports.allowed_subscriptions)
    waiting = _unfinished_prerequisites(message, ports.records)
    if waiting:
        # Ordered work on one machine (start, pre script, snapshot; post script, deallocate):
        # look again later, as for a long operation, bounded by the same wait.
        return FollowUp(f"wait for {', '.join(waiting)}", "waiting", recheck=PREREQUISITE_RECHECK)
    if message.action.is_script:
        if ports.scripts is None:
            raise PermanentError(f"{message.action.value}: scripts are not wired in this app")
        return perform_script_action(message, run, ports.scripts, now)
    handlers = {
        Action.START_VM: _start_vm,
        Action.SNAPSHOT_DISKS: _snapshot_disks,
        Action.CHECK_ARC_AGENT: _check_arc_agent,
        Action.PREFLIGHT: _preflight,
        Action.DEALLOCATE_VM: _deallocate_vm,
        Action.PRUNE_SNAPSHOTS: _prune_snapshots,
    }
    handler = handlers.get(message.action)
    if handler is None:
        raise PermanentError(f"{message.action.value} is not a machine action")
    return handler(message, run, task, ports, now)


def _run_and_task(records: RunRecords, message: TaskMessage) -> tuple[RunRecord, TaskRecord | None]:
    """The run and the task record, read once: the actions' markers come from this same read."""
    try:
        run = records.get_run(message.run_key)
    except RunNotFound as error:
        raise MessageRejected(f"{message.kind} for run {message.run_key}: no such run is recorded") from error
    return run, records.get_task(message.run_key, message.task_id)


def _unfinished_prerequisites(message: TaskMessage, records: RunRecords) -> list[str]:
    """The actions this task waits for (option ``after``) that are not final yet."""
    after = message.options.get(AFTER_OPTION) or []
    waiting = []
    for prerequisite in after:
        task = records.get_task(message.run_key, str(prerequisite))
        if task is not None and not task.status.is_final:
            waiting.append(task.action.value)
    return waiting


def _require_vm(ports: MachinePorts, vm_id: str) -> VirtualMachine:
    vm = ports.compute.get_vm(vm_id)
    if vm is None:
        raise PermanentError(f"virtual machine {vm_id} does not exist (deleted, or no read access)")
    return vm


def _start_vm(
    message: TaskMessage, run: RunRecord, task: TaskRecord, ports: MachinePorts, now: datetime
) -> TaskResult | FollowUp:
    """Start a stopped or deallocated VM and follow up until it runs; leave a running VM alone.

    The intent marker ``start_requested`` is written before the start is asked for, so the post
    phase deallocates the VM whatever happens next; it also keeps the power state found before,
    which the VM no longer shows once it runs.
    """
    vm = _require_vm(ports, message.target)
    warning = _patch_warning(vm)
    marker = task.data
    requested = bool(marker.get("start_requested"))
    recorded = marker.get("power_state_before") if requested else None
    state = vm.power_state
    before = str(recorded or state.value)
    data: dict = {"power_state_before": before, **({"warning": warning} if warning else {})}
    if state is PowerState.RUNNING:
        data["started_by_us"] = requested
        return TaskResult(TaskStatus.SUCCEEDED, _join(_running_detail(requested, recorded), warning), data)
    if state is PowerState.STARTING and requested:
        return FollowUp(START, "starting", {**data, "started_by_us": True})
    if state in TRANSITIONAL:
        # Someone else is changing it (or it is being stopped): look again once it settled.
        raise TransientError(f"VM is {state.value}", retry_after=TRANSITION_RECHECK)
    if message.is_follow_up and requested:
        raise TransientError(f"{START} did not complete: the VM is {state.value} instead of running")
    # The copy read with the task will do here: fenced_sending looks again, freshly, before the
    # start request leaves; this look only spares a marker write for a message come too late.
    fence = pre_work_fence(run, ports.records, now, reread=False)
    if fence is not None:
        return TaskResult(fence.status, _join(fence.detail(START), warning), data)
    _mark_task(ports.records, message, {"start_requested": True, "power_state_before": before}, known=task)
    # Looked at again by the adapter immediately before the request leaves, after any pacing
    # or retry wait: a cancellation may land while the marker is written or the request waits.
    try:
        with fenced_sending(run, ports.records, now):
            ports.compute.begin_start_vm(message.target)
    except FenceClosed as closed:
        if not closed.after_sending:
            # Nothing was sent; a start that went out before a stopped retry keeps its marker, so
            # the post phase deallocates the VM whatever came of it.
            _mark_task(ports.records, message, {"start_requested": False})
        return TaskResult(closed.fence.status, _join(closed.fence.detail(START), warning), data)
    return FollowUp(START, "start requested", {**data, "started_by_us": True})


def _running_detail(requested: bool, recorded_before: str | None) -> str:
    if not requested:
        return "already running; left as it was found"
    # A marker without the state before was written by an earlier version, which waited for
    # the start inside the delivery that asked for it.
    return f"started from {recorded_before}" if recorded_before else "running (started by an earlier attempt)"


def _deallocate_vm(
    message: TaskMessage, run: RunRecord, task: TaskRecord, ports: MachinePorts, now: datetime
) -> TaskResult | FollowUp:
    """Deallocate a VM prepost started for the run (the planner only asks for those).

    ``deallocate_requested`` is written before asking, so a follow-up knows the deallocation is
    prepost's own and a VM found deallocated was deallocated by it, not before it.
    """
    vm = _require_vm(ports, message.target)
    marker = task.data
    requested = bool(marker.get("deallocate_requested"))
    state = vm.power_state
    before = str(marker.get("power_state_before") or state.value) if requested else state.value
    data = {"power_state_before": before}
    if state is PowerState.DEALLOCATED:
        detail = "deallocated (prepost had started it for the run)" if requested else "already deallocated"
        return TaskResult(TaskStatus.SUCCEEDED, detail, data)
    if state is PowerState.DEALLOCATING and requested:
        return FollowUp(DEALLOCATE, "deallocating", data)
    if state in TRANSITIONAL:
        raise TransientError(f"VM is {state.value}", retry_after=TRANSITION_RECHECK)
    if message.is_follow_up and requested:
        raise TransientError(f"{DEALLOCATE} did not complete: the VM is {state.value} instead of deallocated")
    _mark_task(ports.records, message, {"deallocate_requested": True, "power_state_before": before}, known=task)
    ports.compute.begin_deallocate_vm(message.target)
    return FollowUp(DEALLOCATE, "deallocate requested", data)


def _snapshot_disks(
    message: TaskMessage, run: RunRecord, task: TaskRecord, ports: MachinePorts, now: datetime
) -> TaskResult | FollowUp:
    """Take an incremental snapshot of each disk and follow up until all of them succeeded.

    Snapshot names are deterministic, so a snapshot that exists is looked at rather than taken
    again. The ids this task asked for are kept in ``snapshots_requested``, so the final detail
    tells snapshots created by this task from snapshots reused from before.
    """
    vm = _require_vm(ports, message.target)
    disks = _disks_to_snapshot(vm, message)
    requested = {s.lower() for s in task.data.get("snapshots_requested", [])}
    snapshots = [snapshot_id_for(run, disk_id) for disk_id in disks]
    ready, to_create = 0, []
    for disk_id, snapshot_id in zip(disks, snapshots, strict=True):
        state = _snapshot_state(ports.compute.get_snapshot(snapshot_id))
        if state == "succeeded":
            ready += 1
        elif state in (None, *ENDED_UNSUCCESSFULLY):
            if message.is_follow_up and snapshot_id.lower() in requested:
                seen = "is gone" if state is None else f"is {state}"
                raise TransientError(f"snapshot {ResourceId(snapshot_id).name} {seen}: its creation did not complete")
            to_create.append((disk_id, snapshot_id))
        # Anything else (Creating, Updating): Azure is still at it.
    if to_create:
        # Recorded before asking, so a crash in between still counts them as this task's (a list
        # of names: recording one that is then not asked for changes nothing in Azure).
        _remember_requested(ports.records, message, [snapshot_id for _, snapshot_id in to_create], known=task)
        # The fence is asked by the adapter immediately before each PUT leaves, after any pacing
        # or retry wait: one look before the loop would let a later disk's PUT out after a
        # cancellation. That is the only look (a look before the marker too would cost two more
        # storage reads for every task, to save one write for a fenced one).
        try:
            with fenced_sending(run, ports.records, now):
                for disk_id, snapshot_id in to_create:
                    _begin_snapshot(ports, run, message, vm, disk_id, snapshot_id)
                    requested.add(snapshot_id.lower())
        except FenceClosed as closed:
            detail = f"{closed.fence.detail(SNAPSHOT)} ({ready} of {len(disks)} snapshot(s) ready)"
            return TaskResult(
                closed.fence.status, detail, {"snapshots": [s for s in snapshots if s.lower() in requested]}
            )
    if ready < len(disks):
        return FollowUp(SNAPSHOT, f"{ready} of {len(disks)} snapshot(s) ready")
    created = sum(1 for snapshot_id in snapshots if snapshot_id.lower() in requested)
    detail = f"{len(disks)} incremental snapshot(s): {created} created, {len(disks) - created} reused"
    return TaskResult(TaskStatus.SUCCEEDED, detail, {"snapshots": snapshots})


def _disks_to_snapshot(vm: VirtualMachine, message: TaskMessage) -> list[str]:
    disks = [vm.os_disk_id] if vm.os_disk_id else []
    if message.options.get("disks") == "all":
        disks.extend(vm.data_disk_ids)
    if not disks:
        raise PermanentError("the VM has no managed disks to snapshot")
    return disks


def _snapshot_state(snapshot: Snapshot | None) -> str | None:
    """The snapshot's provisioning state in lower case, or None when there is no snapshot."""
    return None if snapshot is None else snapshot.provisioning_state.lower()


def _begin_snapshot(
    ports: MachinePorts, run: RunRecord, message: TaskMessage, vm: VirtualMachine, disk_id: str, snapshot_id: str
) -> None:
    ports.compute.begin_create_incremental_snapshot(
        snapshot_id,
        source_disk_id=disk_id,
        location=vm.location,
        tags={
            TAG_RUN: run.run_key,
            TAG_CONFIGURATION: run.configuration_name,
            TAG_MACHINE: ResourceId(message.target).name,
            TAG_DISK: ResourceId(disk_id).name,
        },
    )


def _remember_requested(
    records: RunRecords, message: TaskMessage, snapshot_ids: list[str], *, known: TaskRecord | None = None
) -> None:
    def add(data: dict) -> dict:
        known = list(data.get("snapshots_requested", []))
        seen = {s.lower() for s in known}
        return {**data, "snapshots_requested": known + [s for s in snapshot_ids if s.lower() not in seen]}

    _update_task_data(records, message, add, known=known)


def snapshot_id_for(run: RunRecord, disk_id: str) -> str:
    """A deterministic snapshot id: the same run and disk always give the same name.

    Lives in the disk's resource group. Names are ``prepost-<schedule>-<disk>-<hash>`` within
    Azure's 80-character limit; the hash keeps names unique when disk names are cut.
    """
    disk = ResourceId(disk_id)
    stamp = schedule_stamp_of(run.correlation_id) or run.start.strftime("%Y%m%d%H%M%S")
    digest = hashlib.sha256(f"{run.correlation_id.lower()}|{disk.key}".encode()).hexdigest()[:8]
    room = SNAPSHOT_NAME_LIMIT - len("prepost--") - len(stamp) - len(digest) - 1
    disk_part = re.sub(r"[^A-Za-z0-9_.-]", "-", disk.name)[:room].rstrip(".-")
    name = f"prepost-{stamp}-{disk_part}-{digest}"
    return (
        f"/subscriptions/{disk.subscription_id}/resourceGroups/{disk.resource_group}"
        f"/providers/Microsoft.Compute/snapshots/{name}"
    )


def _check_arc_agent(
    message: TaskMessage, run: RunRecord, task: TaskRecord, ports: MachinePorts, now: datetime
) -> TaskResult:
    machine = ports.arc.get_machine(message.target)
    if machine is None:
        raise PermanentError(f"Arc-enabled server {message.target} does not exist (deleted, or no read access)")
    data = {"agent_status": machine.status, "agent_version": machine.agent_version}
    if machine.status.lower() != "connected":
        since = f" since {machine.last_status_change.isoformat()}" if machine.last_status_change else ""
        data["warning"] = f"agent {machine.status}{since}: Update Manager cannot patch this machine"
        return TaskResult(TaskStatus.SUCCEEDED, data["warning"], data)
    return TaskResult(TaskStatus.SUCCEEDED, f"agent connected (version {machine.agent_version})", data)


def _preflight(
    message: TaskMessage, run: RunRecord, task: TaskRecord, ports: MachinePorts, now: datetime
) -> TaskResult:
    """Check the machine (read-only) and record the findings; fail when one of them is blocking.

    The severities are the phase policy's, as the planner put them in the task's options. A
    failed preflight task counts against the error budget only through its blocking findings
    (``blocking_findings`` in its data) and only when the policy lists ``preflight`` as
    safety-critical: a check that could not run (Azure kept failing) blocks nothing by itself.
    """
    options = task.options
    if PREFLIGHT_SEVERITY in options:
        # The planner put the policy's part in the task: the phase record gets the policy only
        # after the task messages are sent, so a preflight reading it could find none yet.
        severity = {FindingKind(kind): Severity(value) for kind, value in options[PREFLIGHT_SEVERITY].items()}
        disks = SnapshotDisks(options.get("disks", SnapshotDisks.OS.value))
    else:  # planned by an earlier version: the policy is on the phase
        phase = ports.records.get_phase(message.run_key, message.phase)
        policy = RunPolicy.from_dict(phase.policy) if phase and phase.policy else RunPolicy()
        severity = policy.severity_overrides
        disks = SnapshotDisks(options.get("disks", policy.snapshot_disks.value))

    def power_before(machine_id: str) -> str | None:
        if options.get(PREFLIGHT_START) is False:
            return None  # no start task was planned for this machine
        # The start task marks its intent before asking Azure, and only for a VM not running.
        start = ports.records.get_task(message.run_key, task_id(message.phase, Action.START_VM, machine_id))
        if start is None or not start.data.get("start_requested"):
            return None
        return str(start.data.get("power_state_before") or PowerState.DEALLOCATED.value)

    result = preflight_machine(
        message.target,
        compute=ports.compute,
        arc=ports.arc,
        now=now,
        disks=disks,
        severity=severity,
        power_before=power_before,
    )
    blocking = result.blocking
    data = {
        "findings": [f.to_dict() for f in result.findings],
        "worst": result.worst.value if result.worst else None,
        BLOCKING_FINDINGS: len(blocking),
    }
    if blocking:
        return TaskResult(TaskStatus.FAILED, f"{len(blocking)} blocking finding(s): {result.summary}", data)
    return TaskResult(TaskStatus.SUCCEEDED, result.summary, data)


def _prune_snapshots(
    message: TaskMessage, run: RunRecord, task: TaskRecord, ports: MachinePorts, now: datetime
) -> TaskResult:
    """Delete this machine's prepost snapshots older than the retention, never this run's."""
    # From the task record (the message was checked against it), never from the message alone.
    retention = timedelta(days=int(task.options.get("retention_days", 0)))
    if retention <= timedelta(0):
        return TaskResult(TaskStatus.SKIPPED, "no retention configured")
    vm = ResourceId(message.target)
    # Snapshots live beside their disks, which may sit in other resource groups than the VM.
    groups = {(vm.subscription_id, (vm.resource_group or "").lower())}
    current = ports.compute.get_vm(message.target)
    if current is not None:
        for disk_id in filter(None, (current.os_disk_id, *current.data_disk_ids)):
            disk = ResourceId(disk_id)
            groups.add((disk.subscription_id, (disk.resource_group or "").lower()))
    snapshots = [s for sub, group in sorted(groups) for s in ports.compute.list_snapshots(sub, group)]
    deleted = []
    for snapshot in snapshots:
        tags = {key.lower(): value for key, value in snapshot.tags.items()}
        if tags.get(TAG_MACHINE, "").lower() != vm.name.lower() or tags.get(TAG_RUN) == run.run_key:
            continue
        if snapshot.provisioning_state.lower() == "deleting":
            continue  # asked for by an earlier delivery; Azure refuses a second delete meanwhile
        if snapshot.created_at is not None and snapshot.created_at < now - retention:
            ports.compute.begin_delete_snapshot(snapshot.resource_id)
            deleted.append(snapshot.resource_id)
    # The ids can be hundreds: the outcome keeps the count and the first few (shared.models.bounds).
    return TaskResult(
        TaskStatus.SUCCEEDED,
        f"deletion of {len(deleted)} snapshot(s) older than {retention.days} days requested",
        {"deleted": deleted},
    )


def _patch_warning(vm: VirtualMachine) -> str:
    if vm.patch is None or vm.patch.safe_for_scheduled_patching:
        return ""
    return (
        f"patch mode {vm.patch.patch_mode or 'unset'} (bypass={str(vm.patch.bypass_platform_safety_checks).lower()}) "
        "is unsafe for scheduled patching: Azure may patch this VM outside the schedule"
    )


def _mark_task(records: RunRecords, message: TaskMessage, data: dict, *, known: TaskRecord | None = None) -> None:
    _update_task_data(records, message, lambda current: {**current, **data}, known=known)


def _update_task_data(
    records: RunRecords, message: TaskMessage, change: Callable[[dict], dict], *, known: TaskRecord | None = None
) -> None:
    """Apply ``change`` to the task's data, again on a fresh read whenever another writer won.

    ``known`` is the record this delivery read already: the first try writes against its etag
    instead of reading it again (one storage round trip less when nobody else wrote meanwhile).
    """
    for _ in range(10):
        task = known or records.get_task(message.run_key, task_id(message.phase, message.action, message.target))
        known = None
        if task is None:
            raise PermanentError(f"task {message.task_id} is not recorded")
        task = replace(task, data=change(task.data))
        try:
            records.replace_task(task)
            return
        except RecordChanged:
            continue
    raise TransientError(f"task {message.task_id} kept changing")


def _join(detail: str, warning: str) -> str:
    return f"{detail}; {warning}" if warning else detail
