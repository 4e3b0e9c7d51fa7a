"""Virtual machines (get, start, deallocate) and managed disks (get)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from werkzeug.wrappers import Response

from .. import errors, ids
from ..clock import iso
from ..errors import ArmError
from ..estate import Disk, OsType, PowerState
from ..http import RequestContext, json_response
from ..records import VmRecord
from . import operations

_POWER_DISPLAY = {
    PowerState.RUNNING: "VM running",
    PowerState.DEALLOCATED: "VM deallocated",
    PowerState.STOPPED: "VM stopped",
    PowerState.STARTING: "VM starting",
    PowerState.DEALLOCATING: "VM deallocating",
}


def _vm_record(ctx: RequestContext) -> VmRecord:
    subscription_id, resource_group = ctx.require_resource_group()
    vm_id = ids.resource_id(subscription_id, resource_group, "Microsoft.Compute/virtualMachines", ctx.params["name"])
    record = ctx.state.vm_records.get(ids.key(vm_id))
    if record is None:
        raise errors.resource_not_found("Microsoft.Compute/virtualMachines", ctx.params["name"], resource_group)
    return record


def get_vm(ctx: RequestContext) -> Response:
    record = _vm_record(ctx)
    expand = ctx.request.args.get("$expand", "")
    return json_response(200, render_vm(record, instance_view=expand.lower() == "instanceview"))


def start_vm(ctx: RequestContext) -> Response:
    return _power_action(ctx, PowerState.STARTING, PowerState.RUNNING, "start")


def deallocate_vm(ctx: RequestContext) -> Response:
    return _power_action(ctx, PowerState.DEALLOCATING, PowerState.DEALLOCATED, "deallocate")


def _power_action(ctx: RequestContext, transition: PowerState, final: PowerState, verb: str) -> Response:
    record = _vm_record(ctx)
    book = ctx.state.operation_book
    if book.pending_for(record.id) is not None:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Operation '{verb}' is not allowed on VM '{record.vm.name}' since another operation is in progress.",
        )
    before = record.power_state
    if before is not final:
        record.power_state = transition
        record.power_changed = ctx.clock.now()

    def succeeded(now: datetime) -> None:
        record.power_state = final
        record.power_changed = now
        if final is PowerState.RUNNING:
            record.start_count += 1
        else:
            record.deallocate_count += 1
        ctx.state.increment(ctx.operation, record.id)

    def failed(now: datetime) -> None:
        record.power_state = before
        record.power_changed = now

    operation = operations.begin(
        ctx,
        target_id=record.id,
        subscription_id=record.vm.subscription_id,
        location=record.vm.location,
        on_success=succeeded,
        on_failure=failed,
    )
    return operations.accepted(ctx, operation)


def get_disk(ctx: RequestContext) -> Response:
    subscription_id, resource_group = ctx.require_resource_group()
    disk_id = ids.resource_id(subscription_id, resource_group, "Microsoft.Compute/disks", ctx.params["name"])
    disk = ctx.state.disks.get(ids.key(disk_id))
    if disk is None:
        raise errors.resource_not_found("Microsoft.Compute/disks", ctx.params["name"], resource_group)
    owner = next((r.vm for r in ctx.state.vm_records.values() if any(d is disk for d in r.vm.disks)), None)
    return json_response(200, render_disk(disk, owner.id if owner else None))


def render_vm(record: VmRecord, *, instance_view: bool) -> dict[str, Any]:
    """A VM as ``GET virtualMachines/{name}`` returns it (api-version 2024-07-01 shape)."""
    vm = record.vm
    patch_settings: dict[str, Any] = {
        "patchMode": vm.patch_mode.value,
        "assessmentMode": "AutomaticByPlatform",
    }
    if vm.patch_mode.value == "AutomaticByPlatform":
        patch_settings["automaticByPlatformSettings"] = {
            "rebootSetting": "IfRequired",
            "bypassPlatformSafetyChecksOnUserSchedule": vm.bypass_platform_safety_checks,
        }
    if vm.os_type is OsType.WINDOWS:
        os_profile: dict[str, Any] = {
            "computerName": vm.name[:15],
            "adminUsername": "azureadmin",
            "windowsConfiguration": {
                "provisionVMAgent": True,
                "enableAutomaticUpdates": True,
                "patchSettings": {**patch_settings, "enableHotpatching": False},
            },
            "secrets": [],
            "allowExtensionOperations": True,
        }
        image = {
            "publisher": "MicrosoftWindowsServer",
            "offer": "WindowsServer",
            "sku": "2022-datacenter-azure-edition",
        }
    else:
        os_profile = {
            "computerName": vm.name,
            "adminUsername": "azureuser",
            "linuxConfiguration": {
                "disablePasswordAuthentication": True,
                "provisionVMAgent": True,
                "patchSettings": patch_settings,
            },
            "secrets": [],
            "allowExtensionOperations": True,
        }
        image = {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server"}
    properties: dict[str, Any] = {
        "vmId": vm.vm_id,
        "hardwareProfile": {"vmSize": vm.vm_size},
        "storageProfile": {
            "imageReference": {**image, "version": "latest", "exactVersion": "1.0.0"},
            "osDisk": {
                "osType": vm.os_type.value,
                "name": vm.os_disk.name,
                "createOption": "FromImage",
                "caching": "ReadWrite",
                "managedDisk": {"storageAccountType": vm.os_disk.sku, "id": vm.os_disk.id},
                "deleteOption": "Delete",
                "diskSizeGB": vm.os_disk.size_gb,
            },
            "dataDisks": [
                {
                    "lun": lun,
                    "name": disk.name,
                    "createOption": "Attach",
                    "caching": "None",
                    "managedDisk": {"storageAccountType": disk.sku, "id": disk.id},
                    "deleteOption": "Detach",
                    "diskSizeGB": disk.size_gb,
                    "toBeDetached": False,
                }
                for lun, disk in enumerate(vm.data_disks)
            ],
        },
        "osProfile": os_profile,
        "networkProfile": {
            "networkInterfaces": [
                {
                    "id": ids.resource_id(
                        vm.subscription_id,
                        vm.resource_group,
                        "Microsoft.Network/networkInterfaces",
                        f"{vm.name}-nic",
                    )
                }
            ]
        },
        "provisioningState": "Succeeded",
        "timeCreated": "2025-01-15T09:30:00.0000000Z",
    }
    if instance_view:
        properties["instanceView"] = _instance_view(record)
    return {
        "name": vm.name,
        "id": vm.id,
        "type": "Microsoft.Compute/virtualMachines",
        "location": vm.location,
        "tags": dict(vm.tags),
        "properties": properties,
    }


def _instance_view(record: VmRecord) -> dict[str, Any]:
    vm = record.vm
    power = record.power_state
    statuses: list[dict[str, Any]] = [
        {
            "code": "ProvisioningState/succeeded",
            "level": "Info",
            "displayStatus": "Provisioning succeeded",
            "time": iso(record.power_changed) if record.power_changed else "2025-01-15T09:31:00.0000000Z",
        },
        {"code": f"PowerState/{power.value}", "level": "Info", "displayStatus": _POWER_DISPLAY[power]},
    ]
    view: dict[str, Any] = {
        "computerName": vm.name[:15] if vm.os_type is OsType.WINDOWS else vm.name,
        "osName": "Windows Server 2022 Datacenter Azure Edition" if vm.os_type is OsType.WINDOWS else "ubuntu",
        "osVersion": "10.0.20348" if vm.os_type is OsType.WINDOWS else "24.04",
        "hyperVGeneration": "V2",
        "disks": [
            {"name": disk.name, "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info"}]}
            for disk in vm.disks
        ],
        "statuses": statuses,
    }
    if power is PowerState.RUNNING:
        # Only a running VM's agent reports, and with it the extensions' statuses.
        status = vm.agent_status or ("Ready" if vm.agent_ready else "Not Ready")
        if status.lower() == "ready":
            agent_status = {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": status}
        else:
            agent_status = {
                "code": "ProvisioningState/Unavailable",
                "level": "Warning",
                "displayStatus": status,
                "message": vm.agent_message or "VM status blob is found but not yet populated.",
            }
        view["vmAgent"] = {"vmAgentVersion": vm.agent_version, "statuses": [agent_status]}
        view["extensions"] = _extensions(vm)
    return view


def _extensions(vm) -> list[dict[str, Any]]:
    """The VM's extensions (declared, or the patch extension Update Manager installs) with their
    states (docs/reference.md section 6: a failed extension reports ``ProvisioningState/failed/...``
    with a message)."""
    extensions = []
    for extension in vm.reported_extensions():
        state = extension.provisioning_state
        if extension.failed:
            status = {
                "code": "ProvisioningState/failed/1",
                "level": "Error",
                "displayStatus": "Provisioning failed",
                "message": extension.message
                or f"Enable failed for {extension.name}: the extension handler exited with code 1",
            }
        else:
            status = {"code": f"ProvisioningState/{state.lower()}", "level": "Info", "displayStatus": state}
            if extension.message:
                status["message"] = extension.message
        handler = extension.type or extension.name
        extensions.append(
            {
                "name": extension.name,
                "type": f"{extension.publisher}.{handler}" if extension.publisher else handler,
                "typeHandlerVersion": extension.version or "1.0",
                "statuses": [status],
            }
        )
    return extensions


def render_disk(disk: Disk, managed_by: str | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "hyperVGeneration": "V2",
        "creationData": {"createOption": "FromImage" if disk.os_type else "Empty"},
        "diskSizeGB": disk.size_gb,
        "diskSizeBytes": disk.size_gb * 1024**3,
        "uniqueId": disk.unique_id,
        "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
        "networkAccessPolicy": "AllowAll",
        "publicNetworkAccess": "Enabled",
        "timeCreated": "2025-01-15T09:30:00.0000000Z",
        "provisioningState": "Succeeded",
        "diskState": "Attached" if managed_by else "Unattached",
    }
    if disk.os_type:
        properties["osType"] = disk.os_type.value
    body: dict[str, Any] = {
        "id": disk.id,
        "name": disk.name,
        "type": "Microsoft.Compute/disks",
        "location": disk.location,
        "tags": {},
        "sku": {"name": disk.sku, "tier": "Premium" if disk.sku.startswith("Premium") else "Standard"},
        "properties": properties,
    }
    if managed_by:
        body["managedBy"] = managed_by
    return body
