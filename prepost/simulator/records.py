"""The records the simulator keeps about what happened: VMs now, snapshots, alert rules,
cancellations and requests, each with the JSON shape the ``/_sim/`` API answers."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import ids
from .clock import iso
from .estate import ArcServer, PowerState, Run, VirtualMachine
from .lro import AsyncOperation


@dataclass
class VmRecord:
    """A VM as the simulator sees it now: its seed data, power state and action counts."""

    vm: VirtualMachine
    power_state: PowerState
    start_count: int = 0
    """Start operations that completed successfully."""
    deallocate_count: int = 0
    """Deallocate operations that completed successfully."""
    power_changed: datetime | None = None

    @property
    def id(self) -> str:
        return self.vm.id

    def to_json(self, pending: AsyncOperation | None = None) -> dict[str, Any]:
        vm = self.vm
        return {
            "id": vm.id,
            "name": vm.name,
            "subscriptionId": vm.subscription_id,
            "resourceGroup": vm.resource_group,
            "location": vm.location,
            "osType": vm.os_type.value,
            "powerState": self.power_state.value,
            "startCount": self.start_count,
            "deallocateCount": self.deallocate_count,
            "patchMode": vm.patch_mode.value,
            "bypassPlatformSafetyChecksOnUserSchedule": vm.bypass_platform_safety_checks,
            "disks": [disk.id for disk in vm.disks],
            "pendingOperation": pending.operation if pending else None,
        }


@dataclass
class SnapshotRecord:
    """A snapshot created through the API."""

    subscription_id: str
    resource_group: str
    name: str
    location: str
    source_resource_id: str
    source_unique_id: str
    incremental: bool
    time_created: datetime
    disk_size_gb: int
    os_type: str | None
    unique_id: str
    tags: dict[str, str] = field(default_factory=dict)
    provisioning_state: str = "Creating"
    put_count: int = 1
    """Accepted PUTs (the create and every later update of the same name)."""

    @property
    def id(self) -> str:
        return ids.resource_id(self.subscription_id, self.resource_group, "Microsoft.Compute/snapshots", self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "subscriptionId": self.subscription_id,
            "resourceGroup": self.resource_group,
            "location": self.location,
            "sourceResourceId": self.source_resource_id,
            "incremental": self.incremental,
            "provisioningState": self.provisioning_state,
            "timeCreated": iso(self.time_created),
            "tags": dict(self.tags),
            "putCount": self.put_count,
        }


@dataclass
class AlertRuleRecord:
    """An alert processing rule (``Microsoft.AlertsManagement/actionRules``)."""

    subscription_id: str
    resource_group: str
    name: str
    location: str
    properties: dict[str, Any]
    tags: dict[str, str]
    created: datetime
    modified: datetime
    put_count: int = 1

    @property
    def id(self) -> str:
        return ids.resource_id(
            self.subscription_id, self.resource_group, "Microsoft.AlertsManagement/actionRules", self.name
        )

    def to_arm(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "Microsoft.AlertsManagement/actionRules",
            "name": self.name,
            "location": self.location,
            "tags": dict(self.tags),
            "properties": copy.deepcopy(self.properties),
            "systemData": {
                "createdBy": "simulator",
                "createdByType": "Application",
                "createdAt": iso(self.created),
                "lastModifiedBy": "simulator",
                "lastModifiedByType": "Application",
                "lastModifiedAt": iso(self.modified),
            },
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.to_arm(), "putCount": self.put_count}


@dataclass
class CancellationRecord:
    """Cancel requests received for one run."""

    correlation_id: str
    first: datetime
    last: datetime
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "correlationId": self.correlation_id,
            "firstTime": iso(self.first),
            "lastTime": iso(self.last),
            "count": self.count,
        }


@dataclass(frozen=True)
class RequestRecord:
    """One entry of the request log."""

    index: int
    time: datetime
    method: str
    path: str
    operation: str | None
    status: int
    """The HTTP status answered; 0 when a simulated timeout closed the connection."""
    fault: str | None = None
    """``throttle``, ``error``, ``timeout``, ``failedOperation``, or ``quota`` for a real budget 429."""

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "time": iso(self.time),
            "method": self.method,
            "path": self.path,
            "operation": self.operation,
            "status": self.status,
            "fault": self.fault,
        }


def arc_json(arc: ArcServer) -> dict[str, Any]:
    return {
        "id": arc.id,
        "name": arc.name,
        "subscriptionId": arc.subscription_id,
        "resourceGroup": arc.resource_group,
        "status": arc.status.value,
        "agentVersion": arc.agent_version,
        "lastStatusChange": iso(arc.last_status_change),
    }


def run_json(run: Run) -> dict[str, Any]:
    return {"correlationId": run.correlation_id, "status": run.status, "resourceIds": list(run.resource_ids)}
