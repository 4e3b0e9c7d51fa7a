"""Preflight: read-only checks of one machine, recorded as findings with a severity.

The same checks run in two places: as the ``preflight`` task of every machine in a run's pre
phase, and on demand (``prepost preflight``) days before a window. They only read: the VM with
its instance view, the snapshots beside its disks, the Arc server and its extensions.

What is checked (docs/reference.md section 6):

- Azure VM: patch orchestration mode and ``bypassPlatformSafetyChecksOnUserSchedule``; the VM
  agent's status; extensions in a failed state (the patch extension above all); incremental
  snapshots per disk against Azure's limit of 500.
- Arc-enabled server: connection status and since when; agent version age (supported for a
  year, :mod:`shared.models.arc_agent`); automatic agent upgrade; failed extensions.
- Either: a machine that no longer exists, or that prepost may not read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.errors import PermanentError
from shared.models import arc_agent
from shared.models.findings import Finding, FindingKind, Severity, finding, worst
from shared.models.ids import MachineKind, ResourceId
from shared.models.policy import SnapshotDisks
from shared.ports.azure import ArcMachine, ArcMachines, Compute, ExtensionStatus, PowerState, VirtualMachine

BLOCKING_FINDINGS = "blocking_findings"
"""The key in a task's data that counts its blocking findings: the gate reads this number, which
survives when a long findings list is cut to fit the record."""
SNAPSHOT_LIMIT = 500
"""Incremental snapshots Azure allows per disk
(https://learn.microsoft.com/azure/virtual-machines/disks-incremental-snapshots#restrictions)."""
SNAPSHOT_HEADROOM = 25
"""A disk with this many or fewer snapshots left before the limit is reported as near it."""


@dataclass(frozen=True)
class MachinePreflight:
    """The findings about one machine."""

    machine_id: str
    kind: str
    """``vm``, ``arc`` or ``other``."""
    findings: tuple[Finding, ...]

    @property
    def worst(self) -> Severity | None:
        return worst(self.findings)

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.BLOCKING)

    @property
    def summary(self) -> str:
        if not self.findings:
            return "no findings"
        return "; ".join(str(f) for f in sorted(self.findings, key=lambda f: -f.severity.rank))

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine_id,
            "kind": self.kind,
            "worst": self.worst.value if self.worst else None,
            "findings": [f.to_dict() for f in self.findings],
        }


def preflight_machine(
    machine_id: str,
    *,
    compute: Compute,
    arc: ArcMachines,
    now: datetime,
    disks: SnapshotDisks = SnapshotDisks.OS,
    severity: Mapping[FindingKind, Severity] | None = None,
    power_before: Callable[[str], str | None] | None = None,
) -> MachinePreflight:
    """Read one machine and check it.

    ``power_before`` tells, for a VM prepost started for the run, the power state it had before
    (asked after the VM is read). The agent of a VM that was not running is not judged, whether
    the check sees it before, during or after its start: a freshly started VM's agent may not
    be ready yet, and the finding must not depend on which task ran first.

    Reads that Azure refuses (no access: :class:`PermanentError`) become a
    ``machine-unreadable`` finding; a machine that is gone, ``machine-missing``.

    Raises:
        TransientError / Throttled: a read failed in a way worth retrying.
    """
    kind = ResourceId(machine_id).machine_kind
    try:
        if kind is MachineKind.AZURE_VM:
            vm = compute.get_vm(machine_id)
            if vm is None:
                return _missing(machine_id, "vm", "virtual machine", severity)
            before = power_before(machine_id) if power_before else None
            counts = snapshot_counts(compute, _disks(vm, disks))
            return MachinePreflight(machine_id, "vm", tuple(check_vm(vm, counts, severity, power_before=before)))
        if kind is MachineKind.ARC_SERVER:
            machine = arc.get_machine(machine_id)
            if machine is None:
                return _missing(machine_id, "arc", "Arc-enabled server", severity)
            extensions = arc.list_extensions(machine_id)
            return MachinePreflight(machine_id, "arc", tuple(check_arc(machine, extensions, now, severity)))
    except PermanentError as error:
        message = f"prepost may not read this machine, so it cannot do its safety work on it: {error}"
        return MachinePreflight(
            machine_id, kind_name(kind), (finding(FindingKind.MACHINE_UNREADABLE, message, severity),)
        )
    message = f"resource type {ResourceId(machine_id).provider_type} is not a machine prepost checks"
    return MachinePreflight(machine_id, "other", (finding(FindingKind.NOT_A_MACHINE, message, severity),))


def kind_name(kind: MachineKind | None) -> str:
    return {MachineKind.AZURE_VM: "vm", MachineKind.ARC_SERVER: "arc"}.get(kind, "other")  # type: ignore[arg-type]


def _missing(machine_id: str, kind: str, what: str, severity) -> MachinePreflight:
    message = f"the run lists this {what}, but it does not exist (deleted or moved)"
    return MachinePreflight(machine_id, kind, (finding(FindingKind.MACHINE_MISSING, message, severity),))


def _disks(vm: VirtualMachine, disks: SnapshotDisks) -> list[str]:
    if disks is SnapshotDisks.NONE:
        return []
    chosen = [vm.os_disk_id] if vm.os_disk_id else []
    if disks is SnapshotDisks.ALL:
        chosen.extend(vm.data_disk_ids)
    return chosen


def snapshot_counts(compute: Compute, disk_ids: Sequence[str]) -> dict[str, int]:
    """Incremental snapshots per disk, counted in each disk's resource group.

    Azure counts every incremental snapshot of a disk wherever it lives; prepost puts its own
    beside the disk, so that is where it looks (one list per resource group). Snapshots kept in
    other resource groups are not seen, which can only make the count lower than Azure's.
    """
    counts = {disk_id: 0 for disk_id in disk_ids}
    groups: dict[tuple[str, str], list[str]] = {}
    for disk_id in disk_ids:
        disk = ResourceId(disk_id)
        groups.setdefault((disk.subscription_id, disk.resource_group or ""), []).append(disk_id)
    for (subscription_id, group), members in groups.items():
        by_key = {disk_id.lower(): disk_id for disk_id in members}
        for snapshot in compute.list_snapshots(subscription_id, group):
            source = by_key.get((snapshot.source_disk_id or "").lower())
            if source is not None and snapshot.incremental:
                counts[source] += 1
    return counts


# -- the checks themselves: pure functions of what was read ------------------------------------


def check_vm(
    vm: VirtualMachine,
    snapshots: Mapping[str, int],
    severity: Mapping[FindingKind, Severity] | None = None,
    *,
    power_before: str | None = None,
) -> list[Finding]:
    """Findings about an Azure VM from its model, instance view and snapshot counts per disk.

    ``power_before``: the power state before prepost started the VM for the run, if it did.
    """
    found: list[Finding] = []
    patch = vm.patch
    if patch is not None and not patch.safe_for_scheduled_patching:
        found.append(
            finding(
                FindingKind.PATCH_MODE_UNSAFE,
                f"patch mode {patch.patch_mode or 'unset'} with bypassPlatformSafetyChecksOnUserSchedule="
                f"{str(patch.bypass_platform_safety_checks).lower()}: Azure may patch this VM outside the schedule "
                "(set AutomaticByPlatform and the bypass flag)",
                severity,
            )
        )
    state = power_before or vm.power_state.value
    if state == PowerState.RUNNING.value:
        if (vm.agent_status or "").strip().lower() != "ready":
            detail = f": {vm.agent_message}" if vm.agent_message else ""
            found.append(
                finding(
                    FindingKind.VM_AGENT_NOT_READY,
                    f"VM agent status is {vm.agent_status or 'not reported'}{detail}: Update Manager cannot patch it",
                    severity,
                )
            )
    else:
        found.append(
            finding(
                FindingKind.VM_AGENT_UNKNOWN,
                f"the VM was {state} before the run: its agent reports a status only once it runs",
                severity,
            )
        )
    found.extend(_extension_findings(vm.extensions, severity))
    for disk_id, count in sorted(snapshots.items()):
        name = ResourceId(disk_id).name
        if count >= SNAPSHOT_LIMIT:
            found.append(
                finding(
                    FindingKind.SNAPSHOT_LIMIT_REACHED,
                    f"disk {name} has {count} incremental snapshots, Azure's limit is {SNAPSHOT_LIMIT}: "
                    "its pre-patch snapshot will fail (delete old snapshots)",
                    severity,
                )
            )
        elif count >= SNAPSHOT_LIMIT - SNAPSHOT_HEADROOM:
            found.append(
                finding(
                    FindingKind.SNAPSHOT_LIMIT_NEAR,
                    f"disk {name} has {count} of {SNAPSHOT_LIMIT} incremental snapshots allowed",
                    severity,
                )
            )
    return found


def check_arc(
    machine: ArcMachine,
    extensions: Sequence[ExtensionStatus],
    now: datetime,
    severity: Mapping[FindingKind, Severity] | None = None,
) -> list[Finding]:
    """Findings about an Arc-enabled server from its properties and extensions."""
    found: list[Finding] = []
    if machine.status.lower() != "connected":
        since = f" since {machine.last_status_change.isoformat()}" if machine.last_status_change else ""
        found.append(
            finding(
                FindingKind.ARC_DISCONNECTED,
                f"agent {machine.status}{since}: Update Manager cannot patch this machine",
                severity,
            )
        )
    age = arc_agent.months_old(machine.agent_version, now)
    if age is not None and age > arc_agent.SUPPORT_MONTHS:
        year, month = arc_agent.release_month(machine.agent_version) or (None, None)
        released = f" (released {year}-{month:02d})" if year else ""
        found.append(
            finding(
                FindingKind.ARC_AGENT_UNSUPPORTED,
                f"agent version {machine.agent_version}{released} is {age} months old; Microsoft supports versions "
                f"released within the last {arc_agent.SUPPORT_MONTHS} months",
                severity,
            )
        )
    if machine.automatic_upgrade is False:
        found.append(
            finding(FindingKind.ARC_AUTO_UPGRADE_OFF, "automatic agent upgrade (agentUpgrade) is not enabled", severity)
        )
    found.extend(_extension_findings(extensions, severity))
    return found


def _extension_findings(
    extensions: Sequence[ExtensionStatus], severity: Mapping[FindingKind, Severity] | None
) -> list[Finding]:
    found = []
    for extension in extensions:
        if not extension.failed:
            continue
        kind = FindingKind.PATCH_EXTENSION_FAILED if extension.is_patch_extension else FindingKind.EXTENSION_FAILED
        message = f": {extension.message[:300]}" if extension.message else ""
        found.append(finding(kind, f"extension {extension.name} is in a failed state{message}", severity))
    return found
