"""Maintenance configurations (get) and runs (``applyupdates``: get, and PUT to cancel).

Cancelling is ``PUT {correlationId}?api-version=2023-09-01-preview`` with
``{"properties": {"status": "Cancel"}}`` (azure-mgmt-maintenance has no operation for it). The
simulator records each cancel; repeating it is harmless and answers the same resource.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from werkzeug.wrappers import Response

from .. import errors, ids
from ..clock import iso
from ..errors import ArmError
from ..estate import MAINTENANCE_CONFIGURATION, MaintenanceConfiguration, Run
from ..http import RequestContext, json_response
from ..records import CancellationRecord


def _configuration(ctx: RequestContext) -> MaintenanceConfiguration:
    subscription_id, resource_group = ctx.require_resource_group()
    config_id = ids.resource_id(subscription_id, resource_group, MAINTENANCE_CONFIGURATION, ctx.params["name"])
    config = ctx.state.configurations.get(ids.key(config_id))
    if config is None:
        raise errors.resource_not_found(MAINTENANCE_CONFIGURATION, ctx.params["name"], resource_group)
    return config


def get_configuration(ctx: RequestContext) -> Response:
    return json_response(200, render_configuration(_configuration(ctx)))


def _run(ctx: RequestContext, config: MaintenanceConfiguration) -> Run:
    run_id = f"{config.id}/providers/microsoft.maintenance/applyupdates/{ctx.params['run']}"
    run = ctx.state.runs.get(ids.key(run_id))
    if run is None:
        raise errors.resource_not_found("Microsoft.Maintenance/applyUpdates", ctx.params["run"], config.resource_group)
    return run


def get_run(ctx: RequestContext) -> Response:
    config = _configuration(ctx)
    return json_response(200, render_run(_run(ctx, config), config, ctx.clock.now()))


def put_run(ctx: RequestContext) -> Response:
    config = _configuration(ctx)
    body = ctx.json_body()
    status = str((body.get("properties") or {}).get("status", ""))
    if status.lower() != "cancel":
        raise errors.bad_request(
            f"Status '{status}' cannot be set on a scheduled run; only 'Cancel' is supported.",
            code="InvalidParameter",
            target="properties.status",
        )
    run = _run(ctx, config)
    now = ctx.clock.now()
    _check_cutoff(ctx, run, now)
    run.status = "Cancel"
    key = ids.key(run.correlation_id)
    record = ctx.state.cancellation_records.get(key)
    if record is None:
        ctx.state.cancellation_records[key] = CancellationRecord(run.correlation_id, now, now)
    else:
        record.count += 1
        record.last = now
    ctx.state.increment(ctx.operation, run.correlation_id)
    return json_response(200, render_run(run, config, now))


def _check_cutoff(ctx: RequestContext, run: Run, now: datetime) -> None:
    """Refuse a cancel after the cut-off, when the configuration asks for it."""
    minutes = ctx.config.limits.cancellation_cutoff_minutes
    start = run.start
    if minutes is None or start is None or run.status == "Cancel":
        return
    cutoff = start - timedelta(minutes=minutes)
    if now > cutoff:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"The run '{run.name}' can no longer be cancelled: the cut-off was {iso(cutoff)}.",
        )


def render_configuration(config: MaintenanceConfiguration) -> dict[str, Any]:
    """A configuration as ``maintenanceConfigurations/{name}`` GET returns it (2023-04-01 shape)."""
    return {
        "id": config.id,
        "name": config.name,
        "type": "Microsoft.Maintenance/maintenanceConfigurations",
        "location": config.location,
        "tags": dict(config.tags),
        "systemData": {
            "createdBy": "patching-admin@example.com",
            "createdByType": "User",
            "createdAt": "2025-01-10T08:00:00.0000000Z",
            "lastModifiedBy": "patching-admin@example.com",
            "lastModifiedByType": "User",
            "lastModifiedAt": "2025-01-10T08:00:00.0000000Z",
        },
        "properties": {
            "namespace": "Microsoft.Maintenance",
            "extensionProperties": {"InGuestPatchMode": "User"},
            "maintenanceScope": "InGuestPatch",
            "maintenanceWindow": {
                "startDateTime": config.window_start.strftime("%Y-%m-%d %H:%M"),
                "duration": config.duration,
                "timeZone": config.time_zone,
                "recurEvery": config.recur_every,
            },
            "visibility": "Custom",
            "installPatches": {
                "rebootSetting": "IfRequired",
                "windowsParameters": {
                    "classificationsToInclude": ["Critical", "Security"],
                    "kbNumbersToExclude": [],
                    "kbNumbersToInclude": [],
                    "excludeKbsRequiringReboot": False,
                },
                "linuxParameters": {
                    "classificationsToInclude": ["Critical", "Security"],
                    "packageNameMasksToExclude": [],
                    "packageNameMasksToInclude": [],
                },
            },
        },
    }


def render_run(run: Run, config: MaintenanceConfiguration, now: datetime) -> dict[str, Any]:
    return {
        "id": run.correlation_id,
        "name": run.name,
        "type": "Microsoft.Maintenance/applyUpdates",
        "properties": {"status": run.status, "resourceId": config.id, "lastUpdateTime": iso(now)},
    }
