"""Resource Graph's ``resources`` table: VMs and Arc servers as Azure lists them.

What ``prepost estate export`` reads, and what dynamic scopes choose from (``prepost
preflight``). Configuration assignments are in :mod:`.assignments`.
"""

from __future__ import annotations

from typing import Any

from .. import ids
from ..estate import TENANT_ID
from ..http import RequestContext
from .compute import render_vm
from .hybrid import render_machine

RESOURCES_TABLE = "resources"


def _in_scope(resource_id: str, scope: set[str] | None) -> bool:
    return scope is None or (ids.subscription_of(resource_id) or "").lower() in scope


def _common(resource_id: str, location: str) -> dict[str, Any]:
    return {
        "tenantId": TENANT_ID,
        "kind": "",
        "location": location.lower(),
        "resourceGroup": (ids.resource_group_of(resource_id) or "").lower(),
        "subscriptionId": ids.subscription_of(resource_id) or "",
        "managedBy": "",
        "sku": None,
        "plan": None,
        "identity": None,
        "zones": None,
        "extendedLocation": None,
    }


def resource_rows(ctx: RequestContext, scope: set[str] | None) -> list[dict[str, Any]]:
    """VMs (with ``properties.extended.instanceView.powerState``, as Resource Graph adds it) and
    Arc servers of the subscriptions in scope. Resource Graph lower-cases ``type``, keeps ids."""
    rows = []
    for record in ctx.state.vm_records.values():
        if not _in_scope(record.id, scope):
            continue
        vm = render_vm(record, instance_view=False)
        power = record.power_state.value
        vm["properties"]["extended"] = {
            "instanceView": {"powerState": {"code": f"PowerState/{power}", "level": "Info", "displayStatus": power}}
        }
        rows.append({**_common(record.id, record.vm.location), **vm, "type": vm["type"].lower()})
    for arc in ctx.state.arc_servers.values():
        if not _in_scope(arc.id, scope):
            continue
        machine = render_machine(arc)
        rows.append({**_common(arc.id, arc.location), **machine, "type": machine["type"].lower()})
    return rows
