"""An estate file in memory: what a team's Azure holds around its maintenance configurations.

The file (``estate.schema.json`` beside this module) declares subscriptions, resource groups,
VMs, Arc servers, maintenance configurations, their assignments and dynamic scopes, and
scheduled runs. :mod:`prepost.estate.loader` reads it, :mod:`prepost.estate.simulate` turns it
into the simulator's :class:`~prepost.simulator.estate.Estate`, :mod:`prepost.estate.export`
writes one from a real subscription.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prepost.simulator import ids
from prepost.simulator.estate import parse_run_id

SCHEMA_VERSION = 1
POWER_STATES = ("running", "deallocated", "stopped", "starting", "deallocating")
OS_TYPES = ("Linux", "Windows")
PATCH_MODES = ("AutomaticByPlatform", "AutomaticByOS", "Manual", "ImageDefault")
ARC_STATUSES = ("Connected", "Disconnected", "Expired")
TAG_OPERATORS = ("All", "Any")


@dataclass(frozen=True)
class SubscriptionSpec:
    id: str
    name: str = ""
    resource_groups: tuple[str, ...] = ()
    """Resource groups that exist even when the file declares nothing in them."""


@dataclass(frozen=True)
class DiskSpec:
    id: str
    size_gb: int
    sku: str = "Premium_LRS"
    lun: int | None = None
    existing_snapshots: int = 0
    """Incremental snapshots of the disk already taken (Azure allows 500 per disk)."""


@dataclass(frozen=True)
class AgentSpec:
    """The VM guest agent as the instance view reports it (``vmAgent``)."""

    status: str = "Ready"
    version: str = ""
    message: str = ""


@dataclass(frozen=True)
class ExtensionSpec:
    """A VM or Arc server extension and the state it reports."""

    name: str
    type: str = ""
    publisher: str = ""
    version: str = ""
    provisioning_state: str = "Succeeded"
    message: str = ""


@dataclass(frozen=True)
class VmSpec:
    id: str
    location: str
    os_type: str
    os_disk: DiskSpec
    data_disks: tuple[DiskSpec, ...] = ()
    power_state: str = "running"
    patch_mode: str = "AutomaticByPlatform"
    bypass_platform_safety_checks: bool = True
    vm_size: str = "Standard_D2s_v5"
    tags: dict[str, str] = field(default_factory=dict)
    agent: AgentSpec | None = None
    extensions: tuple[ExtensionSpec, ...] = ()

    @property
    def subscription_id(self) -> str:
        return ids.subscription_of(self.id) or ""

    @property
    def resource_group(self) -> str:
        return ids.resource_group_of(self.id) or ""


@dataclass(frozen=True)
class ArcSpec:
    id: str
    location: str
    os_type: str
    status: str = "Connected"
    agent_version: str = ""
    last_status_change: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)
    extensions: tuple[ExtensionSpec, ...] = ()
    automatic_upgrade: bool = False
    """``agentUpgrade.enableAutomaticUpgrade``."""

    @property
    def subscription_id(self) -> str:
        return ids.subscription_of(self.id) or ""

    @property
    def resource_group(self) -> str:
        return ids.resource_group_of(self.id) or ""


@dataclass(frozen=True)
class WindowSpec:
    """``properties.maintenanceWindow`` of a configuration."""

    start: datetime
    duration: str = "03:55"
    time_zone: str = "UTC"
    recur_every: str = "1Week Sunday"


@dataclass(frozen=True)
class ConfigurationSpec:
    id: str
    location: str
    window: WindowSpec
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.id.rstrip("/").rsplit("/", 1)[-1]

    @property
    def subscription_id(self) -> str:
        return ids.subscription_of(self.id) or ""


@dataclass(frozen=True)
class AssignmentSpec:
    """A configuration assigned to one machine (``configurationAssignments`` on the machine)."""

    configuration_id: str
    resource_id: str


@dataclass(frozen=True)
class DynamicScopeSpec:
    """A configuration assigned to whatever matches a filter in some subscriptions, as Azure's
    dynamic scopes (``configurationAssignments`` at subscription scope with ``filter``) do."""

    configuration_id: str
    name: str
    subscriptions: tuple[str, ...]
    resource_groups: tuple[str, ...] = ()
    resource_types: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    os_types: tuple[str, ...] = ()
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tag_operator: str = "Any"

    def arm_filter(self) -> dict[str, Any]:
        """``properties.filter`` of the assignment Azure holds for this scope, and the estate
        file's ``filter``: the same shape
        (https://learn.microsoft.com/azure/templates/microsoft.maintenance/configurationassignments)."""
        found: dict[str, Any] = {}
        for key, values in (
            ("resourceTypes", self.resource_types),
            ("resourceGroups", self.resource_groups),
            ("osTypes", self.os_types),
            ("locations", self.locations),
        ):
            if values:
                found[key] = list(values)
        if self.tags:
            found["tagSettings"] = {
                "tags": {name: list(values) for name, values in self.tags.items()},
                "filterOperator": self.tag_operator,
            }
        return found

    def matches(self, machine: VmSpec | ArcSpec) -> bool:
        """Whether Azure would include ``machine`` (every given filter must hold)."""
        if self.subscriptions and machine.subscription_id.lower() not in {s.lower() for s in self.subscriptions}:
            return False
        if self.resource_groups and machine.resource_group.lower() not in {g.lower() for g in self.resource_groups}:
            return False
        if self.resource_types:
            parsed = ids.parse(machine.id)
            kind = parsed.full_type.lower() if parsed else ""
            if kind not in {t.lower() for t in self.resource_types}:
                return False
        if self.locations and machine.location.lower() not in {loc.lower() for loc in self.locations}:
            return False
        if self.os_types and machine.os_type.lower() not in {o.lower() for o in self.os_types}:
            return False
        if self.tags:
            tags = {k.lower(): v for k, v in machine.tags.items()}
            hits = [
                name.lower() in tags and (not values or tags[name.lower()] in values)
                for name, values in self.tags.items()
            ]
            if not (all(hits) if self.tag_operator == "All" else any(hits)):
                return False
        return True


@dataclass(frozen=True)
class RunSpec:
    """A scheduled run (``applyupdates``). ``machines`` None: the configuration's machines."""

    correlation_id: str
    status: str = "Pending"
    machines: tuple[str, ...] | None = None

    @property
    def configuration_id(self) -> str:
        return parse_run_id(self.correlation_id)


@dataclass
class EstateFile:
    subscriptions: list[SubscriptionSpec] = field(default_factory=list)
    vms: list[VmSpec] = field(default_factory=list)
    arc_servers: list[ArcSpec] = field(default_factory=list)
    configurations: list[ConfigurationSpec] = field(default_factory=list)
    assignments: list[AssignmentSpec] = field(default_factory=list)
    dynamic_scopes: list[DynamicScopeSpec] = field(default_factory=list)
    runs: list[RunSpec] = field(default_factory=list)
    description: str = ""

    @property
    def machines(self) -> list[VmSpec | ArcSpec]:
        return [*self.vms, *self.arc_servers]

    @property
    def machine_ids(self) -> list[str]:
        return [machine.id for machine in self.machines]

    @property
    def subscription_ids(self) -> list[str]:
        """Every subscription declared or holding something, in first-seen order."""
        seen: dict[str, str] = {}
        for sub in self.subscriptions:
            seen.setdefault(sub.id.lower(), sub.id)
        for item in (*self.machines, *self.configurations):
            seen.setdefault(item.subscription_id.lower(), item.subscription_id)
        return list(seen.values())

    @property
    def configuration_ids(self) -> list[str]:
        return [config.id for config in self.configurations]

    def configuration(self, configuration_id: str) -> ConfigurationSpec:
        for config in self.configurations:
            if ids.same(config.id, configuration_id):
                return config
        raise KeyError(configuration_id)

    def machines_for(self, configuration_id: str) -> list[str]:
        """The machines a run of ``configuration_id`` covers: its assignments and dynamic scopes,
        in the file's order. A configuration with neither covers every machine of the file (the
        simplest estate: one configuration, all machines)."""
        assigned = {ids.key(a.resource_id) for a in self.assignments if ids.same(a.configuration_id, configuration_id)}
        scopes = [s for s in self.dynamic_scopes if ids.same(s.configuration_id, configuration_id)]
        has_targets = any(ids.same(a.configuration_id, configuration_id) for a in self.assignments) or scopes
        if not has_targets:
            return self.machine_ids
        return [
            machine.id
            for machine in self.machines
            if ids.key(machine.id) in assigned or any(scope.matches(machine) for scope in scopes)
        ]

    def run_machines(self, run: RunSpec) -> list[str]:
        return list(run.machines) if run.machines is not None else self.machines_for(run.configuration_id)

    def counts(self) -> dict[str, Any]:
        return {
            "subscriptions": len(self.subscription_ids),
            "vms": len(self.vms),
            "arcServers": len(self.arc_servers),
            "configurations": len(self.configurations),
            "runs": len(self.runs),
        }
