"""Seeding what the preflight checks look for: unsafe patch modes, VM agents not ready, failed
extensions, old, disconnected or never-upgrading Arc agents, disks near the snapshot limit.

Applied to an estate after it is built (:meth:`Estate.generate` or :meth:`Estate.from_machines`),
deterministically: the same options on the same estate mark the same machines.

    estate = Estate.generate(machines=20)
    Readiness(agent_not_ready_every=5, near_snapshot_limit_every=7).apply(estate)
"""

from __future__ import annotations

from dataclasses import dataclass

from .estate import ArcStatus, Estate, OsType, PatchMode

OLD_ARC_AGENT = "1.36.02680.1549"
"""A Connected Machine agent released in November 2023: unsupported a year later."""
SNAPSHOT_LIMIT = 500


@dataclass(frozen=True)
class Readiness:
    """Every ``*_every`` marks the VMs (or Arc servers) whose 1-based number is a multiple of it; 0 marks none."""

    unsafe_patch_every: int = 0
    """Patch mode ``AutomaticByOS`` (Windows) / ``ImageDefault`` (Linux), no bypass flag."""
    agent_not_ready_every: int = 0
    failed_patch_extension_every: int = 0
    failed_extension_every: int = 0
    """Another extension (``CustomScript``) in a failed state."""
    near_snapshot_limit_every: int = 0
    """The OS disk already has ``existing_snapshots`` incremental snapshots."""
    existing_snapshots: int = SNAPSHOT_LIMIT - 10
    full_snapshot_limit_every: int = 0
    """The OS disk already has 500 incremental snapshots: its next one fails."""
    old_arc_agents: int = 0
    """The first N Arc servers run :data:`OLD_ARC_AGENT`."""
    disconnected_arc_servers: int = 0
    """The last N Arc servers are Disconnected (in addition to any the estate has)."""
    expired_arc_servers: int = 0
    """The N Arc servers before those are Expired."""
    arc_automatic_upgrade: bool | None = None
    """Set ``agentUpgrade.enableAutomaticUpgrade`` on every Arc server (None leaves it)."""
    failed_arc_extension_every: int = 0

    def apply(self, estate: Estate) -> Estate:
        for number, vm in enumerate(estate.vms, start=1):
            if _every(number, self.unsafe_patch_every):
                vm.patch_mode = PatchMode.AUTOMATIC_BY_OS if vm.os_type is OsType.WINDOWS else PatchMode.IMAGE_DEFAULT
                vm.bypass_platform_safety_checks = False
            if _every(number, self.agent_not_ready_every):
                vm.agent_ready = False
            patch = "WindowsPatchExtension" if vm.os_type is OsType.WINDOWS else "LinuxPatchExtension"
            if _every(number, self.failed_patch_extension_every):
                vm.failed_extensions.append(patch)
            if _every(number, self.failed_extension_every):
                vm.failed_extensions.append("CustomScript")
            if _every(number, self.near_snapshot_limit_every):
                vm.os_disk.existing_snapshots = self.existing_snapshots
            if _every(number, self.full_snapshot_limit_every):
                vm.os_disk.existing_snapshots = SNAPSHOT_LIMIT
        arcs = estate.arc_servers
        for index, arc in enumerate(arcs):
            number = index + 1
            if index < self.old_arc_agents:
                arc.agent_version = OLD_ARC_AGENT
            if index >= len(arcs) - self.disconnected_arc_servers:
                arc.status = ArcStatus.DISCONNECTED
            elif index >= len(arcs) - self.disconnected_arc_servers - self.expired_arc_servers:
                arc.status = ArcStatus.EXPIRED
            if self.arc_automatic_upgrade is not None:
                arc.automatic_upgrade = self.arc_automatic_upgrade
            if _every(number, self.failed_arc_extension_every):
                arc.failed_extensions.append("AzureMonitorLinuxAgent")
        return estate


def _every(number: int, every: int) -> bool:
    return every > 0 and number % every == 0
