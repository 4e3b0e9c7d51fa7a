"""Virtual machines and snapshots through azure-mgmt-compute.

VM start, deallocation, snapshot creation and deletion only *begin* the operation (``polling=False``):
the initial request is made, its errors translated, and the call returns. Waiting for the
operation would hold the message past its lock, and azure-core's poller would keep polling ARM
from a background thread, spending the subscription's read budget. The task follows up instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.errors import call, or_none
from shared.errors import PermanentError
from shared.models.events import parse_time
from shared.models.ids import ResourceId
from shared.ports.azure import Compute, ExtensionStatus, PatchSettings, PowerState, Snapshot, VirtualMachine


def _checked(resource_id: str) -> ResourceId:
    """The id, once it follows ARM's naming rules (the SDK quotes segments, but not ``..``)."""
    from shared.models.arm_names import check_resource_id

    return ResourceId(check_resource_id(resource_id))


class ArmCompute(Compute):
    def __init__(self, clients: ArmClients):
        self._clients = clients

    def _vms(self, vm_id: str):
        resource = _checked(vm_id)
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
        resource = _checked(disk_id)
        disks = self._clients.compute(resource.subscription_id).disks
        disk = or_none(f"get disk {resource.name}", lambda: disks.get(resource.resource_group, resource.name))
        return _wire(disk).get("location") if disk else None

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        resource = _checked(snapshot_id)
        snapshots = self._clients.compute(resource.subscription_id).snapshots
        found = or_none(f"get snapshot {resource.name}", lambda: snapshots.get(resource.resource_group, resource.name))
        return None if found is None else _to_snapshot(found)

    def begin_create_incremental_snapshot(
        self, snapshot_id: str, *, source_disk_id: str, location: str, tags: Mapping[str, str]
    ) -> None:
        from azure.mgmt.compute.models import CreationData
        from azure.mgmt.compute.models import Snapshot as SnapshotModel

        from shared.models.arm_names import bounded_tags

        resource = _checked(snapshot_id)
        snapshots = self._clients.compute(resource.subscription_id).snapshots
        body = SnapshotModel(
            location=location,
            tags=bounded_tags(tags),
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
        from shared.models.arm_names import check_resource_group, check_subscription_id

        check_subscription_id(subscription_id)
        check_resource_group(resource_group)
        snapshots = self._clients.compute(subscription_id).snapshots
        return call(
            f"list snapshots in {resource_group}",
            lambda: [_to_snapshot(s) for s in snapshots.list_by_resource_group(resource_group)],
        )

    def begin_delete_snapshot(self, snapshot_id: str) -> None:
        resource = _checked(snapshot_id)
        snapshots = self._clients.compute(resource.subscription_id).snapshots
        # A 404 (its resource group gone, say) means there is nothing left to delete.
        or_none(
            f"delete snapshot {resource.name}",
            lambda: snapshots.begin_delete(resource.resource_group, resource.name, polling=False),
        )


# azure-mgmt-compute 39's generated models fill their field tables lazily, on the first object
# of each class, without a lock: when the first responses of a process are deserialised on
# several threads at once, that set-up can fail, and the SDK then falls back to returning the
# raw JSON (a dict), or a model holding raw dicts inside, instead of raising. Reading every
# answer through its wire shape (``as_dict()`` of a model, the dict itself otherwise) gives the
# same result either way. Upstream: https://github.com/Azure/azure-sdk-for-python/issues/47426
# (a generator fix was proposed in https://github.com/microsoft/typespec/pull/11236; the pinned
# 39.0.0 still sets up ``Model.__new__`` unguarded, so the workaround stays until a pin does not).
def _wire(resource: Any) -> Mapping[str, Any]:
    """The REST JSON of an SDK answer, whether the SDK returned a model or (the race) a dict."""
    as_dict = getattr(resource, "as_dict", None)
    body = as_dict() if callable(as_dict) else resource
    if not isinstance(body, Mapping):
        raise PermanentError(f"the compute API answered with {type(resource).__name__}, not a resource")
    return body


def _get(body: Any, *path: str) -> Any:
    for key in path:
        body = body.get(key) if isinstance(body, Mapping) else None
    return body


def _to_vm(vm: Any) -> VirtualMachine:
    body = _wire(vm)
    properties = _get(body, "properties") or {}
    power = PowerState.UNKNOWN
    for status in _get(properties, "instanceView", "statuses") or []:
        code = _get(status, "code")
        if isinstance(code, str) and code.lower().startswith("powerstate/"):
            try:
                power = PowerState(code.split("/", 1)[1].lower())
            except ValueError:
                power = PowerState.UNKNOWN
    storage = _get(properties, "storageProfile") or {}
    data_disks = tuple(
        disk_id for disk in _get(storage, "dataDisks") or [] if (disk_id := _get(disk, "managedDisk", "id"))
    )
    return VirtualMachine(
        resource_id=body.get("id"),
        location=body.get("location"),
        power_state=power,
        os_disk_id=_get(storage, "osDisk", "managedDisk", "id"),
        data_disk_ids=data_disks,
        patch=_patch_settings(_get(properties, "osProfile")),
        **_agent_and_extensions(_get(properties, "instanceView")),
    )


def _agent_and_extensions(view: Any) -> dict:
    """The VM agent's status and the extensions' statuses from the instance view (wire shape).

    The agent reports ``Ready`` / ``Not Ready`` as the display status of its status entry;
    an extension reports ``ProvisioningState/failed/...`` with a message when it failed
    (https://learn.microsoft.com/azure/virtual-machines/extensions/troubleshoot).
    """
    if not isinstance(view, Mapping):
        return {}
    agent_status, agent_message = None, ""
    agent_statuses = _get(view, "vmAgent", "statuses") or []
    if agent_statuses:
        first = agent_statuses[0]
        agent_status = _get(first, "displayStatus") or _get(first, "code")
        agent_message = _get(first, "message") or ""
    extensions = []
    for extension in _get(view, "extensions") or []:
        statuses = _get(extension, "statuses") or []
        # The provisioning status says whether it failed; take the first one that is one.
        provisioning = [s for s in statuses if str(_get(s, "code") or "").lower().startswith("provisioningstate/")]
        status = provisioning[0] if provisioning else (statuses[0] if statuses else None)
        extensions.append(
            ExtensionStatus(
                name=_get(extension, "name") or "",
                type=_get(extension, "type") or "",
                code=(_get(status, "code") if status else "") or "",
                message=(_get(status, "message") if status else "") or "",
            )
        )
    return {"agent_status": agent_status, "agent_message": agent_message, "extensions": tuple(extensions)}


def _patch_settings(profile: Any) -> PatchSettings | None:
    if not isinstance(profile, Mapping):
        return None
    for os_type, key in (("Windows", "windowsConfiguration"), ("Linux", "linuxConfiguration")):
        config = profile.get(key)
        if config is None:
            continue
        patch = _get(config, "patchSettings")
        if patch is None:
            return PatchSettings(os_type, None, False)
        bypass = bool(_get(patch, "automaticByPlatformSettings", "bypassPlatformSafetyChecksOnUserSchedule"))
        return PatchSettings(os_type, _get(patch, "patchMode"), bypass)
    return None


def _to_snapshot(snapshot: Any) -> Snapshot:
    body = _wire(snapshot)
    properties = _get(body, "properties") or {}
    created = _get(properties, "timeCreated")
    return Snapshot(
        resource_id=body.get("id"),
        source_disk_id=_get(properties, "creationData", "sourceResourceId") or "",
        created_at=parse_time(created) if isinstance(created, str) else created,
        tags=dict(body.get("tags") or {}),
        provisioning_state=_get(properties, "provisioningState") or "Succeeded",
        incremental=bool(_get(properties, "incremental")),
    )
