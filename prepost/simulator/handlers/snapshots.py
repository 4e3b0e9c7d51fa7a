"""Snapshots: create or update (long-running, 202), get, delete (long-running), list by group.

Enforces what Azure enforces on incremental snapshots: the source disk must exist and be in the
snapshot's region, at most 7 per disk in 5 minutes and 500 per disk in total
(https://learn.microsoft.com/azure/virtual-machines/disks-incremental-snapshots). A PUT on an
existing name updates it (tags) and creates nothing; changing its source is refused.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from werkzeug.wrappers import Response

from .. import errors, ids
from ..clock import iso
from ..errors import ArmError
from ..http import RequestContext, empty_response, json_response
from ..records import SnapshotRecord
from . import operations
from .tags import validate_tags

SNAPSHOT_TYPE = "Microsoft.Compute/snapshots"
# 1-80 characters: letters, digits, underscores, periods and hyphens; starts with a letter or
# digit and ends with a letter, digit or underscore (Azure's naming rules for Microsoft.Compute).
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")


def _snapshot_id(ctx: RequestContext) -> tuple[str, str, str]:
    subscription_id, resource_group = ctx.require_resource_group()
    return (
        subscription_id,
        resource_group,
        ids.resource_id(subscription_id, resource_group, SNAPSHOT_TYPE, ctx.params["name"]),
    )


def get_snapshot(ctx: RequestContext) -> Response:
    _, resource_group, snapshot_id = _snapshot_id(ctx)
    record = ctx.state.snapshot_records.get(ids.key(snapshot_id))
    if record is None:
        raise errors.resource_not_found(SNAPSHOT_TYPE, ctx.params["name"], resource_group)
    return json_response(200, render_snapshot(record))


def list_snapshots(ctx: RequestContext) -> Response:
    subscription_id, resource_group = ctx.require_resource_group()
    value = [
        render_snapshot(record)
        for record in ctx.state.snapshot_records.values()
        if record.subscription_id.lower() == subscription_id.lower()
        and record.resource_group.lower() == resource_group.lower()
    ]
    return json_response(200, {"value": value})


def put_snapshot(ctx: RequestContext) -> Response:
    subscription_id, resource_group, snapshot_id = _snapshot_id(ctx)
    name = ctx.params["name"]
    if not _NAME.match(name):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"The resource name '{name}' is invalid. It can contain only letters, digits, '_', '.' and '-', "
            "must start with a letter or digit, end with a letter, digit or '_', "
            "and be at most 80 characters.",
        )
    body = ctx.json_body()
    location = body.get("location")
    if not location:
        raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
    properties = body.get("properties") or {}
    tags = validate_tags(body.get("tags"))
    creation = properties.get("creationData") or {}
    create_option = str(creation.get("createOption", ""))
    if create_option.lower() != "copy":
        raise errors.bad_request(
            f"createOption '{create_option}' is not supported by the simulator; use 'Copy'.",
            code="InvalidParameter",
            target="creationData.createOption",
        )
    source_id = creation.get("sourceResourceId")
    if not source_id:
        raise errors.bad_request(
            "Required parameter 'sourceResourceId' is missing (null).",
            code="InvalidParameter",
            target="creationData.sourceResourceId",
        )
    incremental = bool(properties.get("incremental", False))
    record = ctx.state.snapshot_records.get(ids.key(snapshot_id))
    if record is not None:
        return _update(ctx, record, source_id, incremental, tags)
    disk = ctx.state.disks.get(ids.key(source_id))
    if disk is None:
        raise ArmError(404, "ResourceNotFound", f"Source resource '{source_id}' was not found.")
    if disk.location.lower() != str(location).lower():
        raise errors.bad_request(
            f"The snapshot location '{location}' differs from the location '{disk.location}' of source "
            f"'{disk.id}'. Copying across regions needs createOption 'CopyStart'.",
            code="InvalidParameter",
            target="location",
        )
    now = ctx.clock.now()
    if incremental:
        _check_incremental_limits(ctx, disk.id, now)
    record = SnapshotRecord(
        subscription_id=subscription_id,
        resource_group=_canonical_group(ctx, subscription_id, resource_group),
        name=name,
        location=disk.location,
        source_resource_id=disk.id,
        source_unique_id=disk.unique_id,
        incremental=incremental,
        time_created=now,
        disk_size_gb=disk.size_gb,
        os_type=disk.os_type.value if disk.os_type else None,
        unique_id=str(uuid.uuid4()),
        tags=tags,
    )
    key = ids.key(snapshot_id)
    ctx.state.snapshot_records[key] = record
    if incremental:
        ctx.state.snapshot_creations.setdefault(ids.key(disk.id), []).append(now)

    def succeeded(_: datetime) -> None:
        record.provisioning_state = "Succeeded"
        ctx.state.increment(ctx.operation, record.id)

    def failed(_: datetime) -> None:
        # A failed creation leaves nothing behind.
        ctx.state.snapshot_records.pop(key, None)

    operation = operations.begin(
        ctx,
        target_id=record.id,
        subscription_id=subscription_id,
        location=record.location,
        on_success=succeeded,
        on_failure=failed,
        disk_operation=True,
    )
    return operations.accepted(ctx, operation, render_snapshot(record))


def _update(
    ctx: RequestContext, record: SnapshotRecord, source_id: str, incremental: bool, tags: dict[str, str]
) -> Response:
    if not ids.same(record.source_resource_id, source_id):
        raise ArmError(
            409,
            "PropertyChangeNotAllowed",
            "Changing property 'sourceResourceId' is not allowed.",
            target="sourceResourceId",
        )
    if record.incremental != incremental:
        raise ArmError(
            409,
            "PropertyChangeNotAllowed",
            "Changing property 'incremental' is not allowed.",
            target="incremental",
        )
    if ctx.state.operation_book.pending_for(record.id) is not None:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Snapshot '{record.name}' has an operation in progress; retry when it completes.",
        )
    record.tags = tags
    record.put_count += 1

    def succeeded(_: datetime) -> None:
        ctx.state.increment(ctx.operation, record.id)

    operation = operations.begin(
        ctx,
        target_id=record.id,
        subscription_id=record.subscription_id,
        location=record.location,
        on_success=succeeded,
        disk_operation=True,
    )
    return operations.accepted(ctx, operation, render_snapshot(record))


def _check_incremental_limits(ctx: RequestContext, disk_id: str, now: datetime) -> None:
    limits = ctx.config.limits
    window_start = now - timedelta(seconds=limits.snapshot_window_seconds)
    history = ctx.state.snapshot_creations.setdefault(ids.key(disk_id), [])
    history[:] = [moment for moment in history if moment > window_start]
    if len(history) >= limits.snapshots_per_window:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"At most {limits.snapshots_per_window} incremental snapshots of a disk can be created in "
            f"{int(limits.snapshot_window_seconds // 60)} minutes; disk '{disk_id}' reached that limit. "
            "Retry later.",
        )
    existing = sum(
        1
        for record in ctx.state.snapshot_records.values()
        if record.incremental and ids.same(record.source_resource_id, disk_id)
    )
    if existing >= limits.snapshots_per_disk:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Disk '{disk_id}' already has {existing} incremental snapshots, the maximum per disk.",
        )


def delete_snapshot(ctx: RequestContext) -> Response:
    _, _, snapshot_id = _snapshot_id(ctx)
    key = ids.key(snapshot_id)
    record = ctx.state.snapshot_records.get(key)
    if record is None:
        return empty_response(204)
    if ctx.state.operation_book.pending_for(record.id) is not None:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Snapshot '{record.name}' has an operation in progress; retry when it completes.",
        )
    record.provisioning_state = "Deleting"

    def succeeded(_: datetime) -> None:
        ctx.state.snapshot_records.pop(key, None)
        ctx.state.increment(ctx.operation, record.id)

    def failed(_: datetime) -> None:
        record.provisioning_state = "Succeeded"

    operation = operations.begin(
        ctx,
        target_id=record.id,
        subscription_id=record.subscription_id,
        location=record.location,
        on_success=succeeded,
        on_failure=failed,
        disk_operation=True,
    )
    return operations.accepted(ctx, operation)


def _canonical_group(ctx: RequestContext, subscription_id: str, resource_group: str) -> str:
    """The resource group's own spelling (ARM keeps the creator's casing, not each caller's)."""
    for record in ctx.state.vm_records.values():
        vm = record.vm
        if (
            vm.subscription_id.lower() == subscription_id.lower()
            and vm.resource_group.lower() == resource_group.lower()
        ):
            return vm.resource_group
    return resource_group


def render_snapshot(record: SnapshotRecord) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "hyperVGeneration": "V2",
        "creationData": {
            "createOption": "Copy",
            "sourceResourceId": record.source_resource_id,
            "sourceUniqueId": record.source_unique_id,
        },
        "diskSizeGB": record.disk_size_gb,
        "diskSizeBytes": record.disk_size_gb * 1024**3,
        "uniqueId": record.unique_id,
        "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
        "networkAccessPolicy": "AllowAll",
        "publicNetworkAccess": "Enabled",
        "timeCreated": iso(record.time_created),
        "provisioningState": record.provisioning_state,
        "diskState": "Unattached",
        "incremental": record.incremental,
        "completionPercent": 100.0 if record.provisioning_state == "Succeeded" else 0.0,
    }
    if record.os_type:
        properties["osType"] = record.os_type
    if record.incremental:
        properties["incrementalSnapshotFamilyId"] = record.source_unique_id
    return {
        "id": record.id,
        "name": record.name,
        "type": SNAPSHOT_TYPE,
        "location": record.location,
        "tags": dict(record.tags),
        "sku": {"name": "Standard_LRS", "tier": "Standard"},
        "properties": properties,
    }
