"""Resource Graph rows beyond the runs: the ``resources`` table (VMs and Arc servers as Azure
lists them) and configuration assignments in ``maintenanceresources``.

What ``prepost estate export`` reads. The simulator keeps no assignments of its own: a machine
in a run of a configuration is assigned to it (Update Manager builds each run from the
configuration's assignments and dynamic scopes), so each (configuration, machine) pair of the
runs is one static assignment row, as Azure lists them:
https://learn.microsoft.com/azure/templates/microsoft.maintenance/configurationassignments
"""

from __future__ import annotations

from typing import Any

from .. import ids
from ..estate import TENANT_ID
from ..http import RequestContext
from .compute import render_vm
from .hybrid import render_machine

RESOURCES_TABLE = "resources"
ASSIGNMENT_TYPE = "microsoft.maintenance/configurationassignments"


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


def assignment_rows(ctx: RequestContext, scope: set[str] | None) -> list[dict[str, Any]]:
    """One static configuration assignment per (configuration, machine) of the runs."""
    rows: dict[str, dict[str, Any]] = {}
    for run in ctx.state.runs.values():
        configuration_id = run.configuration_id
        name = configuration_id.rsplit("/", 1)[-1]
        for resource_id in run.resource_ids:
            row_id = f"{ids.key(resource_id)}/providers/microsoft.maintenance/configurationassignments/{name.lower()}"
            if row_id in rows or not _in_scope(resource_id, scope):
                continue
            machine = ctx.state.vm_records.get(ids.key(resource_id))
            arc = ctx.state.arc_servers.get(ids.key(resource_id))
            location = machine.vm.location if machine else arc.location if arc else "westeurope"
            rows[row_id] = {
                **_common(resource_id, location),
                "id": row_id,
                "name": name,
                "type": ASSIGNMENT_TYPE,
                "tags": None,
                "properties": {
                    "maintenanceConfigurationId": configuration_id,
                    "resourceId": resource_id,
                },
            }
    return list(rows.values())
