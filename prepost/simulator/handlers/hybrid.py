"""Arc-enabled servers (``Microsoft.HybridCompute/machines``): get, and list their extensions."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Response

from .. import errors, ids
from ..clock import iso
from ..estate import HYBRID_MACHINE, TENANT_ID, ArcServer, OsType
from ..http import RequestContext, json_response


def _machine(ctx: RequestContext) -> ArcServer:
    subscription_id, resource_group = ctx.require_resource_group()
    machine_id = ids.resource_id(subscription_id, resource_group, HYBRID_MACHINE, ctx.params["name"])
    arc = ctx.state.arc_servers.get(ids.key(machine_id))
    if arc is None:
        raise errors.resource_not_found(HYBRID_MACHINE, ctx.params["name"], resource_group)
    return arc


def get_machine(ctx: RequestContext) -> Response:
    return json_response(200, render_machine(_machine(ctx)))


def list_extensions(ctx: RequestContext) -> Response:
    """``GET .../machines/{name}/extensions``: the patch extension, plus any seeded as failed."""
    arc = _machine(ctx)
    value = []
    for extension in arc.reported_extensions():
        handler = extension.type or extension.name
        if extension.failed:
            message = extension.message or f"{extension.name}: enable failed (exit code 1)"
            status = {"code": "ProvisioningState/failed", "level": "Error", "message": message}
        else:
            status = {"code": "success", "level": "Information", "message": extension.message or "Extension enabled"}
        value.append(
            {
                "id": f"{arc.id}/extensions/{extension.name}",
                "name": extension.name,
                "type": f"{HYBRID_MACHINE}/extensions",
                "location": arc.location,
                "properties": {
                    "publisher": extension.publisher,
                    "type": handler,
                    "typeHandlerVersion": extension.version or "1.0",
                    "provisioningState": extension.provisioning_state,
                    "instanceView": {"name": extension.name, "type": handler, "status": status},
                },
            }
        )
    return json_response(200, {"value": value})


def render_machine(arc: ArcServer) -> dict[str, Any]:
    windows = arc.os_type is OsType.WINDOWS
    patch_settings = {"assessmentMode": "AutomaticByPlatform", "patchMode": "AutomaticByPlatform"}
    return {
        "id": arc.id,
        "name": arc.name,
        "type": HYBRID_MACHINE,
        "location": arc.location,
        "tags": dict(arc.tags),
        "kind": "",
        "identity": {"type": "SystemAssigned", "principalId": arc.vm_id, "tenantId": TENANT_ID},
        "properties": {
            "provisioningState": "Succeeded",
            "status": arc.status.value,
            "lastStatusChange": iso(arc.last_status_change),
            "agentVersion": arc.agent_version,
            "vmId": arc.vm_id,
            "displayName": arc.name,
            "machineFqdn": f"{arc.name}.corp.example.com",
            "osName": "windows" if windows else "linux",
            "osType": "windows" if windows else "linux",
            "osVersion": "10.0.20348.2966" if windows else "5.15.0-126-generic",
            "osSku": "Windows Server 2022 Datacenter" if windows else "Ubuntu 22.04.5 LTS",
            "osProfile": {
                ("windowsConfiguration" if windows else "linuxConfiguration"): {"patchSettings": patch_settings}
            },
            "agentConfiguration": {
                "proxyUrl": "",
                "incomingConnectionsPorts": [],
                "extensionsEnabled": "true",
            },
            "agentUpgrade": {"enableAutomaticUpgrade": arc.automatic_upgrade},
        },
    }
