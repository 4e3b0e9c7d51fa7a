"""The actions on machines: start, snapshot, agent check, deallocate, prune.

Each action is idempotent on its own terms (a running VM is not started again, a snapshot of
the same run and disk is reused), and reads the records of earlier phases rather than
guessing: only VMs prepost started are deallocated afterwards.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.errors import PermanentError, TransientError
from shared.models.ids import ResourceId, schedule_stamp_of
from shared.models.messages import TaskMessage
from shared.models.run import Action, RunRecord, TaskStatus, task_id
from shared.ports.azure import ArcMachines, Compute, PowerState, VirtualMachine
from shared.ports.idempotency import RecordChanged
from shared.ports.records import RunRecords
from shared.usecases.task_runner import TaskResult

TAG_RUN = "prepost-run"
TAG_CONFIGURATION = "prepost-configuration"
TAG_MACHINE = "prepost-machine"
TAG_DISK = "prepost-disk"
TRANSITIONAL = {PowerState.STARTING, PowerState.DEALLOCATING, PowerState.STOPPING}
TRANSITION_RECHECK = timedelta(seconds=30)
SNAPSHOT_NAME_LIMIT = 80


@dataclass(frozen=True)
class MachinePorts:
    records: RunRecords
    compute: Compute
    arc: ArcMachines


def perform_machine_action(message: TaskMessage, ports: MachinePorts, *, now: datetime) -> TaskResult:
    """Do one machine action. Raises TransientError/Throttled to retry, PermanentError to fail."""
    run = ports.records.get_run(message.run_key)
    handlers = {
        Action.START_VM: _start_vm,
        Action.SNAPSHOT_DISKS: _snapshot_disks,
        Action.CHECK_ARC_AGENT: _check_arc_agent,
        Action.DEALLOCATE_VM: _deallocate_vm,
        Action.PRUNE_SNAPSHOTS: _prune_snapshots,
    }
    handler = handlers.get(message.action)
    if handler is None:
        raise PermanentError(f"{message.action.value} is not a machine action")
    return handler(message, run, ports, now)


def _require_vm(ports: MachinePorts, vm_id: str) -> VirtualMachine:
    vm = ports.compute.get_vm(vm_id)
    if vm is None:
        raise PermanentError(f"virtual machine {vm_id} does not exist (deleted, or no read access)")
    return vm


def _start_vm(message: TaskMessage, run: RunRecord, ports: MachinePorts, now: datetime) -> TaskResult:
    vm = _require_vm(ports, message.target)
    data: dict = {"power_state_before": vm.power_state.value}
    warning = _patch_warning(vm)
    if warning:
        data["warning"] = warning
    if vm.power_state in TRANSITIONAL:
        raise TransientError(f"VM is {vm.power_state.value}", retry_after=TRANSITION_RECHECK)
    if vm.power_state is PowerState.RUNNING:
        # A previous delivery may have started it and died before reporting: its intent marker
        # says so, and the VM must then still be deallocated after the run.
        ours = bool(_task_data(ports.records, message).get("start_requested"))
        data["started_by_us"] = ours
        detail = "running (started by an earlier attempt)" if ours else "already running; left as it was found"
        return TaskResult(TaskStatus.SUCCEEDED, _join(detail, warning), data)
    # Record the intent before acting, so the post phase deallocates it whatever happens next.
    _mark_task(ports.records, message, {"start_requested": True})
    ports.compute.start_vm(message.target)
    data["started_by_us"] = True
    return TaskResult(TaskStatus.SUCCEEDED, _join(f"started from {vm.power_state.value}", warning), data)


def _deallocate_vm(message: TaskMessage, run: RunRecord, ports: MachinePorts, now: datetime) -> TaskResult:
    vm = _require_vm(ports, message.target)
    if vm.power_state is PowerState.DEALLOCATED:
        return TaskResult(TaskStatus.SUCCEEDED, "already deallocated", {"power_state_before": vm.power_state.value})
    if vm.power_state in TRANSITIONAL:
        raise TransientError(f"VM is {vm.power_state.value}", retry_after=TRANSITION_RECHECK)
    ports.compute.deallocate_vm(message.target)
    return TaskResult(
        TaskStatus.SUCCEEDED,
        "deallocated (prepost had started it for the run)",
        {"power_state_before": vm.power_state.value},
    )


def _snapshot_disks(message: TaskMessage, run: RunRecord, ports: MachinePorts, now: datetime) -> TaskResult:
    vm = _require_vm(ports, message.target)
    disks = [vm.os_disk_id] if vm.os_disk_id else []
    if message.options.get("disks") == "all":
        disks.extend(vm.data_disk_ids)
    if not disks:
        raise PermanentError("the VM has no managed disks to snapshot")
    snapshots, reused = [], 0
    for disk_id in disks:
        snapshot_id = snapshot_id_for(run, disk_id)
        existing = ports.compute.get_snapshot(snapshot_id)
        if existing is not None and existing.provisioning_state.lower() == "succeeded":
            reused += 1
        else:
            ports.compute.create_incremental_snapshot(
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
        snapshots.append(snapshot_id)
    created = len(disks) - reused
    detail = f"{len(disks)} incremental snapshot(s): {created} created, {reused} reused"
    return TaskResult(TaskStatus.SUCCEEDED, detail, {"snapshots": snapshots})


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


def _check_arc_agent(message: TaskMessage, run: RunRecord, ports: MachinePorts, now: datetime) -> TaskResult:
    machine = ports.arc.get_machine(message.target)
    if machine is None:
        raise PermanentError(f"Arc-enabled server {message.target} does not exist (deleted, or no read access)")
    data = {"agent_status": machine.status, "agent_version": machine.agent_version}
    if machine.status.lower() != "connected":
        since = f" since {machine.last_status_change.isoformat()}" if machine.last_status_change else ""
        data["warning"] = f"agent {machine.status}{since}: Update Manager cannot patch this machine"
        return TaskResult(TaskStatus.SUCCEEDED, data["warning"], data)
    return TaskResult(TaskStatus.SUCCEEDED, f"agent connected (version {machine.agent_version})", data)


def _prune_snapshots(message: TaskMessage, run: RunRecord, ports: MachinePorts, now: datetime) -> TaskResult:
    """Delete this machine's prepost snapshots older than the retention, never this run's."""
    retention = timedelta(days=int(message.options.get("retention_days", 0)))
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
        if snapshot.created_at is not None and snapshot.created_at < now - retention:
            ports.compute.delete_snapshot(snapshot.resource_id)
            deleted.append(snapshot.resource_id)
    return TaskResult(
        TaskStatus.SUCCEEDED,
        f"{len(deleted)} snapshot(s) older than {retention.days} days deleted",
        {"deleted": deleted},
    )


def _patch_warning(vm: VirtualMachine) -> str:
    if vm.patch is None or vm.patch.safe_for_scheduled_patching:
        return ""
    return (
        f"patch mode {vm.patch.patch_mode or 'unset'} (bypass={str(vm.patch.bypass_platform_safety_checks).lower()}) "
        "is unsafe for scheduled patching: Azure may patch this VM outside the schedule"
    )


def _task_data(records: RunRecords, message: TaskMessage) -> dict:
    task = records.get_task(message.run_key, task_id(message.phase, message.action, message.target))
    return task.data if task else {}


def _mark_task(records: RunRecords, message: TaskMessage, data: dict) -> None:
    for _ in range(10):
        task = records.get_task(message.run_key, task_id(message.phase, message.action, message.target))
        if task is None:
            raise PermanentError(f"task {message.task_id} is not recorded")
        task.data = {**task.data, **data}
        try:
            records.replace_task(task)
            return
        except RecordChanged:
            continue
    raise TransientError(f"task {message.task_id} kept changing")


def _join(detail: str, warning: str) -> str:
    return f"{detail}; {warning}" if warning else detail
