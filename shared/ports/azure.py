"""Ports to Azure Resource Manager and Resource Graph.

Adapters translate SDK errors into :mod:`shared.errors`: 429 becomes :class:`Throttled` with the
``Retry-After`` Azure asked for, 5xx and connection failures :class:`TransientError`, 401/403
and 400 :class:`PermanentError`. A missing resource is reported as the ports say (None or
False), never as an exception the caller must guess at.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum


class PowerState(str, Enum):
    RUNNING = "running"
    DEALLOCATED = "deallocated"
    STOPPED = "stopped"
    """Stopped but still allocated (still billed); it can be started like a deallocated VM."""
    STARTING = "starting"
    DEALLOCATING = "deallocating"
    STOPPING = "stopping"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PatchSettings:
    os_type: str
    patch_mode: str | None
    bypass_platform_safety_checks: bool

    @property
    def safe_for_scheduled_patching(self) -> bool:
        """Customer-managed schedules need AutomaticByPlatform plus the bypass flag, else Azure
        may patch outside the schedule (docs/reference.md section 6)."""
        return self.patch_mode == "AutomaticByPlatform" and self.bypass_platform_safety_checks


@dataclass(frozen=True)
class ExtensionStatus:
    """One extension of a VM or Arc server as its instance view reports it."""

    name: str
    type: str
    """The handler type, e.g. ``Microsoft.CPlat.Core.LinuxPatchExtension``."""
    code: str
    """The status code, e.g. ``ProvisioningState/succeeded`` or ``ProvisioningState/failed/...``."""
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.code.lower().startswith("provisioningstate/failed")

    @property
    def is_patch_extension(self) -> bool:
        """The extension Update Manager installs to patch the machine (Windows or Linux)."""
        lowered = f"{self.name}|{self.type}".lower()
        return "windowspatchextension" in lowered or "linuxpatchextension" in lowered


@dataclass(frozen=True)
class VirtualMachine:
    resource_id: str
    location: str
    power_state: PowerState
    os_disk_id: str | None
    data_disk_ids: tuple[str, ...]
    patch: PatchSettings | None
    agent_status: str | None = None
    """The VM agent's display status from the instance view (``Ready``, ``Not Ready``), or None
    when the instance view has none (a VM that is not running reports no agent)."""
    agent_message: str = ""
    extensions: tuple[ExtensionStatus, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    resource_id: str
    source_disk_id: str
    created_at: datetime | None
    tags: Mapping[str, str] = field(default_factory=dict)
    provisioning_state: str = "Succeeded"
    incremental: bool = True


@dataclass(frozen=True)
class ArcMachine:
    resource_id: str
    status: str
    agent_version: str | None
    last_status_change: datetime | None
    automatic_upgrade: bool | None = None
    """``properties.agentUpgrade.enableAutomaticUpgrade``; None when Azure does not say."""


class MachineInventory(ABC):
    """The machines of a run, from Resource Graph's ``maintenanceresources``."""

    @abstractmethod
    def list_run_machines(self, correlation_id: str, subscription_ids: Sequence[str]) -> list[str]:
        """Every machine resource id in the run (all pages; VMs and Arc servers).

        An empty list is a real answer only when the caller can read the run's rows: without
        Microsoft.Maintenance/applyUpdates/read (the machine operator role, docs/deploy.md) Resource
        Graph also gives none, which is why the planner records it as a finding.
        """


class MaintenanceConfigurations(ABC):
    @abstractmethod
    def get_tags(self, configuration_id: str) -> dict[str, str]:
        """The configuration's tags (the per-run policy). Raises PermanentError if it is gone."""


class RunCancellation(ABC):
    @abstractmethod
    def cancel(self, correlation_id: str) -> str:
        """Ask Update Manager to cancel the scheduled run; returns the status Azure reports."""


class Compute(ABC):
    """Virtual machines and snapshots (Microsoft.Compute)."""

    @abstractmethod
    def get_vm(self, vm_id: str) -> VirtualMachine | None:
        """The VM with its instance view, or None if it does not exist."""

    @abstractmethod
    def begin_start_vm(self, vm_id: str) -> None:
        """Begin starting the VM; does not wait. The VM shows ``starting`` until it is running.

        Raises what the request itself failed with; the operation's own failure is seen later,
        as a power state that went back.
        """

    @abstractmethod
    def begin_deallocate_vm(self, vm_id: str) -> None:
        """Begin deallocating the VM; does not wait. The VM shows ``deallocating`` until done."""

    @abstractmethod
    def get_disk_location(self, disk_id: str) -> str | None:
        """The disk's region, or None if the disk does not exist."""

    @abstractmethod
    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot, or None."""

    @abstractmethod
    def begin_create_incremental_snapshot(
        self, snapshot_id: str, *, source_disk_id: str, location: str, tags: Mapping[str, str]
    ) -> None:
        """Begin creating (or updating, same name) an incremental snapshot; does not wait.

        :meth:`get_snapshot` then shows its ``provisioning_state``: ``Creating`` or ``Updating``
        while it runs, ``Succeeded`` or ``Failed`` when it ended (a failed creation may also
        leave no snapshot at all).
        """

    @abstractmethod
    def list_snapshots(self, subscription_id: str, resource_group: str) -> list[Snapshot]:
        """Snapshots of one resource group (callers filter by tags)."""

    @abstractmethod
    def begin_delete_snapshot(self, snapshot_id: str) -> None:
        """Begin deleting the snapshot; does not wait. Succeeds when it is already gone.

        Until the deletion ends, :meth:`get_snapshot` and :meth:`list_snapshots` may still show
        the snapshot (``provisioning_state`` ``Deleting``). Raises what the request itself failed
        with (:class:`~shared.errors.TransientError` while another operation on the snapshot
        runs, :class:`~shared.errors.Throttled`); the operation's own failure is seen later, as
        a snapshot that is still there.
        """


class AlertSuppression(ABC):
    """Alert processing rules (Microsoft.AlertsManagement/actionRules)."""

    @abstractmethod
    def put_rule(
        self,
        rule_id: str,
        *,
        scopes: Sequence[str],
        effective_from: datetime,
        effective_until: datetime,
        description: str,
        tags: Mapping[str, str],
    ) -> None:
        """Create or replace a rule that removes all action groups for ``scopes`` in that window."""

    @abstractmethod
    def get_rule(self, rule_id: str) -> dict | None:
        """The rule as ARM returns it, or None."""

    @abstractmethod
    def delete_rule(self, rule_id: str) -> bool:
        """Delete the rule; True if it existed, False when already gone."""


class ArcMachines(ABC):
    @abstractmethod
    def get_machine(self, machine_id: str) -> ArcMachine | None:
        """The Arc-enabled server's agent status, or None."""

    @abstractmethod
    def list_extensions(self, machine_id: str) -> list[ExtensionStatus]:
        """The server's extensions (``machines/{name}/extensions``); empty when it has none."""
