"""An estate in memory as estate-file JSON (what :func:`prepost.estate.loader.parse_estate` reads
back into the same estate)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .model import SCHEMA_VERSION, AgentSpec, DiskSpec, EstateFile, ExtensionSpec


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _disk(disk: DiskSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"id": disk.id, "sizeGb": disk.size_gb, "sku": disk.sku}
    if disk.lun is not None:
        out["lun"] = disk.lun
    if disk.existing_snapshots:
        out["existingSnapshots"] = disk.existing_snapshots
    return out


def _extension(ext: ExtensionSpec) -> dict[str, Any]:
    out = {"name": ext.name, "provisioningState": ext.provisioning_state}
    for key, value in (
        ("type", ext.type),
        ("publisher", ext.publisher),
        ("version", ext.version),
        ("message", ext.message),
    ):
        if value:
            out[key] = value
    return out


def _agent(agent: AgentSpec) -> dict[str, Any]:
    return {
        key: value
        for key, value in (("status", agent.status), ("version", agent.version), ("message", agent.message))
        if value
    }


def estate_to_json(estate: EstateFile) -> dict[str, Any]:
    """The file for ``estate``; runs are written with their correlation id and machines."""
    out: dict[str, Any] = {"version": SCHEMA_VERSION}
    if estate.description:
        out["description"] = estate.description
    out["subscriptions"] = [
        {
            "id": sub.id,
            **({"name": sub.name} if sub.name else {}),
            **({"resourceGroups": list(sub.resource_groups)} if sub.resource_groups else {}),
        }
        for sub in estate.subscriptions
    ]
    out["vms"] = []
    for vm in estate.vms:
        item: dict[str, Any] = {
            "id": vm.id,
            "location": vm.location,
            "osType": vm.os_type,
            "vmSize": vm.vm_size,
            "powerState": vm.power_state,
            "osDisk": _disk(vm.os_disk),
            "dataDisks": [_disk(disk) for disk in vm.data_disks],
            "patchSettings": {
                "patchMode": vm.patch_mode,
                "bypassPlatformSafetyChecksOnUserSchedule": vm.bypass_platform_safety_checks,
            },
            "tags": dict(vm.tags),
        }
        if vm.agent is not None:
            item["vmAgent"] = _agent(vm.agent)
        if vm.extensions:
            item["extensions"] = [_extension(ext) for ext in vm.extensions]
        out["vms"].append(item)
    out["arcServers"] = []
    for arc in estate.arc_servers:
        item = {
            "id": arc.id,
            "location": arc.location,
            "osType": arc.os_type,
            "status": arc.status,
            "agentVersion": arc.agent_version,
            "agentUpgrade": {"enableAutomaticUpgrade": arc.automatic_upgrade},
            "tags": dict(arc.tags),
        }
        if arc.last_status_change is not None:
            item["lastStatusChange"] = _time(arc.last_status_change)
        if arc.extensions:
            item["extensions"] = [_extension(ext) for ext in arc.extensions]
        out["arcServers"].append(item)
    out["maintenanceConfigurations"] = [
        {
            "id": config.id,
            "location": config.location,
            "tags": dict(config.tags),
            "maintenanceWindow": {
                "startDateTime": config.window.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                "duration": config.window.duration,
                "timeZone": config.window.time_zone,
                "recurEvery": config.window.recur_every,
            },
        }
        for config in estate.configurations
    ]
    out["configurationAssignments"] = [
        {"maintenanceConfigurationId": a.configuration_id, "resourceId": a.resource_id} for a in estate.assignments
    ]
    out["dynamicScopes"] = []
    for scope in estate.dynamic_scopes:
        out["dynamicScopes"].append(
            {
                "maintenanceConfigurationId": scope.configuration_id,
                "name": scope.name,
                "subscriptions": list(scope.subscriptions),
                "filter": scope.arm_filter(),
            }
        )
    out["runs"] = [
        {
            "correlationId": run.correlation_id,
            "status": run.status,
            **({"machines": list(run.machines)} if run.machines is not None else {}),
        }
        for run in estate.runs
    ]
    return out
