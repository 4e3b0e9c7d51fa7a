"""The seeded estate: the machines, disks, Arc servers, maintenance configuration and runs the
simulator starts with.

Two ways to build one:

* :meth:`Estate.generate` makes a deterministic estate from a seed (same arguments, same
  estate: names, GUIDs, power states and patch modes);
* :meth:`Estate.from_machines` takes an explicit, fixture-like list of machines (resource ids,
  or dicts with ARM-style camelCase overrides).

An estate is plain data. The server copies it into its mutable state at start and at reset, so
one estate can seed many servers.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from . import ids

DEFAULT_RUN_START = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
"""The scheduled start of the seeded run when the caller gives none (a Sunday, 02:00 UTC)."""

TENANT_ID = "5d2b9c41-7e0a-4f3b-8c6d-2a1e9f0b7c35"
"""The (made-up) tenant every simulated resource belongs to."""

COMPUTE_VM = "Microsoft.Compute/virtualMachines"
COMPUTE_DISK = "Microsoft.Compute/disks"
HYBRID_MACHINE = "Microsoft.HybridCompute/machines"
MAINTENANCE_CONFIGURATION = "Microsoft.Maintenance/maintenanceConfigurations"
APPLY_UPDATES_SEGMENT = "/providers/microsoft.maintenance/applyupdates/"


class OsType(str, Enum):
    LINUX = "Linux"
    WINDOWS = "Windows"


class PowerState(str, Enum):
    """The ``PowerState/...`` code of a VM's instance view."""

    RUNNING = "running"
    DEALLOCATED = "deallocated"
    STOPPED = "stopped"
    STARTING = "starting"
    DEALLOCATING = "deallocating"


class PatchMode(str, Enum):
    """``osProfile.*Configuration.patchSettings.patchMode``."""

    AUTOMATIC_BY_PLATFORM = "AutomaticByPlatform"
    AUTOMATIC_BY_OS = "AutomaticByOS"  # Windows only
    MANUAL = "Manual"  # Windows only
    IMAGE_DEFAULT = "ImageDefault"  # Linux only


class ArcStatus(str, Enum):
    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"
    EXPIRED = "Expired"


@dataclass
class Extension:
    """An extension as a machine reports it: ``provisioning_state`` ``Succeeded``, ``Failed``,
    ``Creating``, ... and, when it failed, why (``message``)."""

    name: str
    type: str = ""
    publisher: str = ""
    version: str = "1.0"
    provisioning_state: str = "Succeeded"
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.provisioning_state.lower() == "failed"


def _reported_extensions(declared: list[Extension] | None, failed: list[str], os_type: OsType) -> list[Extension]:
    """``declared`` when given (an estate file says exactly what a machine has), else the patch
    extension Update Manager installs; either way plus the ``failed`` names seeding adds."""
    patch = "WindowsPatchExtension" if os_type is OsType.WINDOWS else "LinuxPatchExtension"
    base = [Extension(patch, patch, "Microsoft.CPlat.Core")] if declared is None else list(declared)
    named = {extension.name for extension in base}
    for name in failed:
        if name in named:
            base = [
                Extension(e.name, e.type, e.publisher, e.version, "Failed", e.message) if e.name == name else e
                for e in base
            ]
        else:
            publisher = "Microsoft.CPlat.Core" if name == patch else "Microsoft.Azure.Extensions"
            base.append(Extension(name, name, publisher, provisioning_state="Failed"))
            named.add(name)
    return base


@dataclass
class Disk:
    """A managed disk (OS or data)."""

    subscription_id: str
    resource_group: str
    name: str
    location: str
    size_gb: int
    os_type: OsType | None = None
    sku: str = "Premium_LRS"
    unique_id: str = ""
    existing_snapshots: int = 0
    """Incremental snapshots of this disk taken before the simulation (beside it, untagged):
    seeds a disk near or at Azure's limit of 500."""

    @property
    def id(self) -> str:
        return ids.resource_id(self.subscription_id, self.resource_group, COMPUTE_DISK, self.name)


@dataclass
class VirtualMachine:
    """An Azure VM with its OS disk, data disks, power state and patch settings."""

    subscription_id: str
    resource_group: str
    name: str
    location: str
    os_type: OsType
    os_disk: Disk
    data_disks: list[Disk] = field(default_factory=list)
    power_state: PowerState = PowerState.RUNNING
    patch_mode: PatchMode = PatchMode.AUTOMATIC_BY_PLATFORM
    bypass_platform_safety_checks: bool = True
    vm_size: str = "Standard_D2s_v5"
    tags: dict[str, str] = field(default_factory=dict)
    vm_id: str = ""
    agent_ready: bool = True
    """Whether the VM agent reports Ready while the VM runs (instance view ``vmAgent``)."""
    agent_status: str | None = None
    """The agent's display status as declared (``Not Ready``, ...); None: from ``agent_ready``."""
    agent_version: str = "2.12.0.2"
    agent_message: str = ""
    failed_extensions: list[str] = field(default_factory=list)
    """Extensions whose instance view reports ``ProvisioningState/failed``: a patch extension
    name (``LinuxPatchExtension``, ``WindowsPatchExtension``) fails the patch extension."""
    extensions: list[Extension] | None = None
    """The extensions the VM has, as declared (an estate file); None: the patch extension."""

    @property
    def id(self) -> str:
        return ids.resource_id(self.subscription_id, self.resource_group, COMPUTE_VM, self.name)

    @property
    def disks(self) -> list[Disk]:
        return [self.os_disk, *self.data_disks]

    def reported_extensions(self) -> list[Extension]:
        return _reported_extensions(self.extensions, self.failed_extensions, self.os_type)

    @property
    def safe_for_scheduled_patching(self) -> bool:
        """Customer-managed schedules need AutomaticByPlatform with the bypass flag set."""
        return self.patch_mode is PatchMode.AUTOMATIC_BY_PLATFORM and self.bypass_platform_safety_checks

    @classmethod
    def create(
        cls,
        resource_id: str,
        *,
        location: str = "westeurope",
        os_type: OsType = OsType.LINUX,
        data_disks: int = 0,
        power_state: PowerState = PowerState.RUNNING,
        patch_mode: PatchMode = PatchMode.AUTOMATIC_BY_PLATFORM,
        bypass_platform_safety_checks: bool = True,
        tags: Mapping[str, str] | None = None,
    ) -> VirtualMachine:
        """A VM from its resource id, with an OS disk ``{name}-osdisk`` and ``data_disks`` data disks."""
        parsed = ids.parse(resource_id)
        if parsed is None or parsed.resource_group is None or parsed.full_type.lower() != COMPUTE_VM.lower():
            raise ValueError(f"not a virtual machine id: {resource_id}")
        sub, rg, name = parsed.subscription_id, parsed.resource_group, parsed.name
        seed = random.Random(ids.key(resource_id))
        os_disk = Disk(sub, rg, f"{name}-osdisk", location, 30 if os_type is OsType.LINUX else 127, os_type)
        disks = [Disk(sub, rg, f"{name}-data-{lun}", location, 128) for lun in range(data_disks)]
        for disk in (os_disk, *disks):
            disk.unique_id = _guid(seed)
        return cls(
            subscription_id=sub,
            resource_group=rg,
            name=name,
            location=location,
            os_type=os_type,
            os_disk=os_disk,
            data_disks=disks,
            power_state=power_state,
            patch_mode=patch_mode,
            bypass_platform_safety_checks=bypass_platform_safety_checks,
            tags=dict(tags or {}),
            vm_id=_guid(seed),
        )


@dataclass
class ArcServer:
    """An Azure Arc-enabled server (``Microsoft.HybridCompute/machines``)."""

    subscription_id: str
    resource_group: str
    name: str
    location: str
    os_type: OsType
    status: ArcStatus = ArcStatus.CONNECTED
    agent_version: str = "1.47.02825.2025"
    last_status_change: datetime = DEFAULT_RUN_START - timedelta(days=3)
    os_name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    vm_id: str = ""
    automatic_upgrade: bool = False
    """``properties.agentUpgrade.enableAutomaticUpgrade``."""
    failed_extensions: list[str] = field(default_factory=list)
    """Extensions (``machines/{name}/extensions``) in the ``Failed`` provisioning state."""
    extensions: list[Extension] | None = None
    """The extensions the server has, as declared (an estate file); None: the patch extension."""

    @property
    def id(self) -> str:
        return ids.resource_id(self.subscription_id, self.resource_group, HYBRID_MACHINE, self.name)

    def reported_extensions(self) -> list[Extension]:
        return _reported_extensions(self.extensions, self.failed_extensions, self.os_type)

    @classmethod
    def create(
        cls,
        resource_id: str,
        *,
        location: str = "westeurope",
        os_type: OsType = OsType.LINUX,
        status: ArcStatus = ArcStatus.CONNECTED,
        agent_version: str = "1.47.02825.2025",
        last_status_change: datetime | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ArcServer:
        parsed = ids.parse(resource_id)
        if parsed is None or parsed.resource_group is None or parsed.full_type.lower() != HYBRID_MACHINE.lower():
            raise ValueError(f"not an Arc server id: {resource_id}")
        return cls(
            subscription_id=parsed.subscription_id,
            resource_group=parsed.resource_group,
            name=parsed.name,
            location=location,
            os_type=os_type,
            status=status,
            agent_version=agent_version,
            last_status_change=last_status_change or DEFAULT_RUN_START - timedelta(days=3),
            os_name="linux" if os_type is OsType.LINUX else "windows",
            tags=dict(tags or {}),
            vm_id=_guid(random.Random(ids.key(resource_id))),
        )


@dataclass
class MaintenanceConfiguration:
    """A maintenance configuration (scope InGuestPatch) and its weekly window."""

    subscription_id: str
    resource_group: str = "rg-patching"
    name: str = "mc-weekly"
    location: str = "westeurope"
    tags: dict[str, str] = field(default_factory=dict)
    window_start: datetime = DEFAULT_RUN_START
    duration: str = "03:55"
    time_zone: str = "UTC"
    recur_every: str = "1Week Sunday"

    @property
    def id(self) -> str:
        return ids.resource_id(self.subscription_id, self.resource_group, MAINTENANCE_CONFIGURATION, self.name)


@dataclass
class ConfigurationAssignment:
    """A ``Microsoft.Maintenance/configurationAssignments``: one machine (``resource_id`` a machine
    id), or a dynamic scope (``resource_id`` ``/subscriptions/S`` and a ``filter`` as ARM shapes it:
    ``resourceTypes``, ``resourceGroups``, ``osTypes``, ``locations``, ``tagSettings``)."""

    configuration_id: str
    name: str
    resource_id: str
    filter: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.resource_id.rstrip('/')}/providers/Microsoft.Maintenance/configurationAssignments/{self.name}"


@dataclass
class Run:
    """A scheduled run (``applyupdates``) and the machines it covers, as ``maintenanceresources``
    lists them."""

    correlation_id: str
    resource_ids: list[str]
    status: str = "Pending"

    @property
    def configuration_id(self) -> str:
        return parse_run_id(self.correlation_id)

    @property
    def name(self) -> str:
        return self.correlation_id.rstrip("/").rsplit("/", 1)[-1]

    @property
    def start(self) -> datetime | None:
        """The scheduled start encoded in the last segment (yyyyMMddHHmmss), if it parses."""
        try:
            return datetime.strptime(self.name, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            return None


def run_correlation_id(configuration_id: str, start: datetime) -> str:
    """The correlation id of the run of ``configuration_id`` scheduled at ``start`` (UTC)."""
    stamp = start.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"{configuration_id}{APPLY_UPDATES_SEGMENT}{stamp}"


def parse_run_id(correlation_id: str) -> str:
    """Check a correlation id's shape; return its configuration id. Raises ValueError."""
    path = ids.normalise_path(correlation_id)
    lowered = path.lower()
    if APPLY_UPDATES_SEGMENT not in lowered:
        raise ValueError(f"not an applyupdates id: {correlation_id}")
    configuration_id = path[: lowered.index(APPLY_UPDATES_SEGMENT)]
    parsed = ids.parse(configuration_id)
    if parsed is None or parsed.full_type.lower() != MAINTENANCE_CONFIGURATION.lower():
        raise ValueError(f"not a maintenance configuration run id: {correlation_id}")
    return configuration_id


@dataclass
class Estate:
    """Everything the simulator starts with. Build with :meth:`generate` or :meth:`from_machines`,
    or directly from the dataclasses."""

    vms: list[VirtualMachine] = field(default_factory=list)
    arc_servers: list[ArcServer] = field(default_factory=list)
    configurations: list[MaintenanceConfiguration] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    extra_resource_groups: list[tuple[str, str]] = field(default_factory=list)
    """(subscription, resource group) pairs that exist without seeded resources, e.g. for alert rules."""
    extra_subscriptions: list[str] = field(default_factory=list)
    """Subscriptions that exist but hold nothing."""
    assignments: list[ConfigurationAssignment] = field(default_factory=list)
    """Configuration assignments. A configuration with none is taken as assigned, one by one,
    to the machines of its runs."""

    # ----------------------------------------------------------------- derived views
    @property
    def configuration(self) -> MaintenanceConfiguration:
        """The first (usually only) maintenance configuration."""
        if not self.configurations:
            raise LookupError("the estate has no maintenance configuration")
        return self.configurations[0]

    @property
    def run(self) -> Run:
        """The first (seeded) run."""
        if not self.runs:
            raise LookupError("the estate has no run")
        return self.runs[0]

    @property
    def subscription_ids(self) -> list[str]:
        """Every subscription holding something, in first-seen order."""
        seen: dict[str, None] = {}
        for item in (*self.vms, *self.arc_servers, *self.configurations):
            seen.setdefault(item.subscription_id, None)
        for subscription_id, _ in self.extra_resource_groups:
            seen.setdefault(subscription_id, None)
        for subscription_id in self.extra_subscriptions:
            seen.setdefault(subscription_id, None)
        return list(seen)

    @property
    def resource_groups(self) -> set[tuple[str, str]]:
        """(subscription, resource group) pairs that exist, lower-cased."""
        groups = {(s.lower(), rg.lower()) for s, rg in self.extra_resource_groups}
        for item in (*self.vms, *self.arc_servers, *self.configurations):
            groups.add((item.subscription_id.lower(), item.resource_group.lower()))
        for vm in self.vms:
            for disk in vm.disks:
                groups.add((disk.subscription_id.lower(), disk.resource_group.lower()))
        return groups

    @property
    def machine_ids(self) -> list[str]:
        """All VM and Arc server ids."""
        return [vm.id for vm in self.vms] + [arc.id for arc in self.arc_servers]

    @property
    def disks(self) -> list[Disk]:
        return [disk for vm in self.vms for disk in vm.disks]

    def vm(self, name_or_id: str) -> VirtualMachine:
        """A VM by name or id (case-insensitive)."""
        for vm in self.vms:
            if vm.name.lower() == name_or_id.lower() or ids.same(vm.id, name_or_id):
                return vm
        raise KeyError(name_or_id)

    # ----------------------------------------------------------------- runs
    def run_correlation_id(self, start: datetime, configuration: MaintenanceConfiguration | None = None) -> str:
        """The correlation id of the run of the (first) configuration scheduled at ``start``."""
        return run_correlation_id((configuration or self.configuration).id, start)

    def add_run(self, correlation_id: str, resource_ids: Iterable[str], status: str = "Pending") -> Run:
        """Register another run (``maintenanceresources`` rows for ``resource_ids``). Replaces a run
        with the same correlation id."""
        parse_run_id(correlation_id)
        run = Run(correlation_id=correlation_id, resource_ids=list(resource_ids), status=status)
        self.runs = [existing for existing in self.runs if not ids.same(existing.correlation_id, correlation_id)]
        self.runs.append(run)
        return run

    # ----------------------------------------------------------------- builders
    @classmethod
    def generate(
        cls,
        machines: int = 50,
        subscriptions: int = 2,
        arc_servers: int = 3,
        data_disks_every: int = 3,
        deallocated_every: int = 4,
        unsafe_patch_every: int = 10,
        seed: int = 1,
        *,
        run_start: datetime | None = None,
        configuration_tags: Mapping[str, str] | None = None,
        configuration_name: str = "mc-weekly",
        configuration_resource_group: str = "rg-patching",
        subscription_ids: Sequence[str] | None = None,
        vms_per_resource_group: int = 8,
        disconnected_arc_servers: int = 1,
        extra_resource_groups: Sequence[str] = (),
    ) -> Estate:
        """A deterministic estate: same arguments, same estate.

        See :func:`prepost.simulator.seeding.generate` for what it holds."""
        from .seeding import generate

        return generate(
            machines,
            subscriptions,
            arc_servers,
            data_disks_every,
            deallocated_every,
            unsafe_patch_every,
            seed,
            run_start=run_start,
            configuration_tags=configuration_tags,
            configuration_name=configuration_name,
            configuration_resource_group=configuration_resource_group,
            subscription_ids=subscription_ids,
            vms_per_resource_group=vms_per_resource_group,
            disconnected_arc_servers=disconnected_arc_servers,
            extra_resource_groups=extra_resource_groups,
        )

    @classmethod
    def from_machines(
        cls,
        machines: Iterable[str | Mapping[str, Any]],
        *,
        configuration: MaintenanceConfiguration | str | None = None,
        configuration_tags: Mapping[str, str] | None = None,
        run_start: datetime | None = None,
        extra_resource_groups: Sequence[tuple[str, str]] = (),
    ) -> Estate:
        """An estate from an explicit list of machine ids or dicts. See
        :func:`prepost.simulator.seeding.from_machines`."""
        from .seeding import from_machines

        return from_machines(
            machines,
            configuration=configuration,
            configuration_tags=configuration_tags,
            run_start=run_start,
            extra_resource_groups=extra_resource_groups,
        )


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
