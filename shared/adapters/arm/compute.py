"""Virtual machines and snapshots through azure-mgmt-compute.

VM start, deallocation, snapshot creation and deletion only *begin* the operation (``polling=False``):
the initial request is made, its errors translated, and the call returns. Waiting for the
operation would hold the message past its lock, and azure-core's poller would keep polling ARM
from a background thread, spending the subscription's read budget. The task follows up instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.errors import call, or_none
from shared.models.ids import ResourceId
from shared.ports.azure import Compute, ExtensionStatus, PatchSettings, PowerState, Snapshot, VirtualMachine


class ArmCompute(Compute):
    def __init__(self, clients: ArmClients):
        self._clients = clients

    def _vms(self, vm_id: str):
        resource = ResourceId(vm_id)
        return self._clients.compute(resource.subscription_id).virtual_machines, resource

    def get_vm(self, vm_id: str) -> VirtualMachine | None:
        operations, resource = self._vms(vm_id)
        vm = or_none(
            f"get VM {resource.name}",
            lambda: operations.get(resource.resource_group, resource.name, expand="instanceView"),
        )
        return None if vm is None else _to_vm(vm)

    def begin_start_vm(self, vm_id: str) -> None:
        operations, resource = self._vms(vm_id)
        call(
            f"start VM {resource.name}",
            lambda: operations.begin_start(resource.resource_group, resource.name, polling=False),
        )

    def begin_deallocate_vm(self, vm_id: str) -> None:
        operations, resource = self._vms(vm_id)
        call(
            f"deallocate VM {resource.name}",
            lambda: operations.begin_deallocate(resource.resource_group, resource.name, polling=False),
        )

    def get_disk_location(self, disk_id: str) -> str | None:
        resource = ResourceId(disk_id)
        disks = self._clients.compute(resource.subscription_id).disks
        disk = or_none(f"get disk {resource.name}", lambda: disks.get(resource.resource_group, resource.name))
        return disk.location if disk else None

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        resource = ResourceId(snapshot_id)
        snapshots = self._clients.compute(resource.subscription_id).snapshots
        found = or_none(f"get snapshot {resource.name}", lambda: snapshots.get(resource.resource_group, resource.name))
        return None if found is None else _to_snapshot(found)

    def begin_create_incremental_snapshot(
        self, snapshot_id: str, *, source_disk_id: str, location: str, tags: Mapping[str, str]
    ) -> None:
        from azure.mgmt.compute.models import CreationData
        from azure.mgmt.compute.models import Snapshot as SnapshotModel

        resource = ResourceId(snapshot_id)
        snapshots = self._clients.compute(resource.subscription_id).snapshots
        body = SnapshotModel(
            location=location,
            tags=dict(tags),
            creation_data=CreationData(create_option="Copy", source_resource_id=source_disk_id),
            incremental=True,
        )
        # The initial answer's body is not read: Azure may send none with its 202, and callers
        # look at the snapshot with get_snapshot on their follow-up anyway.
        call(
            f"create snapshot {resource.name}",
            lambda: snapshots.begin_create_or_update(resource.resource_group, resource.name, body, polling=False),
        )

    def list_snapshots(self, subscription_id: str, resource_group: str) -> list[Snapshot]:
        snapshots = self._clients.compute(subscription_id).snapshots
        return call(
            f"list snapshots in {resource_group}",
            lambda: [_to_snapshot(s) for s in snapshots.list_by_resource_group(resource_group)],
        )

    def begin_delete_snapshot(self, snapshot_id: str) -> None:
        resource = ResourceId(snapshot_id)
        snapshots = self._clients.compute(resource.subscription_id).snapshots
        # A 404 (its resource group gone, say) means there is nothing left to delete.
        or_none(
            f"delete snapshot {resource.name}",
            lambda: snapshots.begin_delete(resource.resource_group, resource.name, polling=False),
        )


def _to_vm(vm) -> VirtualMachine:
    statuses = vm.instance_view.statuses if vm.instance_view and vm.instance_view.statuses else []
    power = PowerState.UNKNOWN
    for status in statuses:
        if status.code and status.code.lower().startswith("powerstate/"):
            try:
                power = PowerState(status.code.split("/", 1)[1].lower())
            except ValueError:
                power = PowerState.UNKNOWN
    storage = vm.storage_profile
    os_disk_id = (
        storage.os_disk.managed_disk.id if storage and storage.os_disk and storage.os_disk.managed_disk else None
    )
    data_disks = (
        tuple(disk.managed_disk.id for disk in (storage.data_disks or []) if disk.managed_disk and disk.managed_disk.id)
        if storage
        else ()
    )
    return VirtualMachine(
        resource_id=vm.id,
        location=vm.location,
        power_state=power,
        os_disk_id=os_disk_id,
        data_disk_ids=data_disks,
        patch=_patch_settings(vm),
        **_agent_and_extensions(vm.instance_view),
    )


def _agent_and_extensions(view) -> dict:
    """The VM agent's status and the extensions' statuses from the instance view.

    The agent reports ``Ready`` / ``Not Ready`` as the display status of its status entry;
    an extension reports ``ProvisioningState/failed/...`` with a message when it failed
    (https://learn.microsoft.com/azure/virtual-machines/extensions/troubleshoot).
    """
    if view is None:
        return {}
    agent = view.vm_agent
    agent_status, agent_message = None, ""
    if agent is not None and agent.statuses:
        first = agent.statuses[0]
        agent_status = first.display_status or first.code
        agent_message = first.message or ""
    extensions = []
    for extension in view.extensions or []:
        statuses = extension.statuses or []
        # The provisioning status says whether it failed; take the first one that is one.
        status = next((s for s in statuses if (s.code or "").lower().startswith("provisioningstate/")), None)
        status = status or (statuses[0] if statuses else None)
        extensions.append(
            ExtensionStatus(
                name=extension.name or "",
                type=extension.type or "",
                code=(status.code if status else "") or "",
                message=(status.message if status else "") or "",
            )
        )
    return {"agent_status": agent_status, "agent_message": agent_message, "extensions": tuple(extensions)}


def _patch_settings(vm) -> PatchSettings | None:
    profile = vm.os_profile
    if profile is None:
        return None
    for os_type, config in (("Windows", profile.windows_configuration), ("Linux", profile.linux_configuration)):
        if config is None:
            continue
        patch = config.patch_settings
        if patch is None:
            return PatchSettings(os_type, None, False)
        by_platform = patch.automatic_by_platform_settings
        bypass = bool(by_platform and by_platform.bypass_platform_safety_checks_on_user_schedule)
        # The SDK gives an enum (LinuxVMGuestPatchMode...); keep the wire value.
        mode = patch.patch_mode
        return PatchSettings(os_type, None if mode is None else str(getattr(mode, "value", mode)), bypass)
    return None


def _to_snapshot(snapshot) -> Snapshot:
    source = snapshot.creation_data.source_resource_id if snapshot.creation_data else ""
    return Snapshot(
        resource_id=snapshot.id,
        source_disk_id=source or "",
        created_at=snapshot.time_created,
        tags=dict(snapshot.tags or {}),
        provisioning_state=snapshot.provisioning_state or "Succeeded",
        incremental=bool(snapshot.incremental),
    )
