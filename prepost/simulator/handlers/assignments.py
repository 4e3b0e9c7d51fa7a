"""Resource Graph rows for configuration assignments (``maintenanceresources``); the machines
dynamic scopes choose from are in :mod:`.graph_tables` (``resources``).

Assignment rows are shaped as Resource Graph shows ``microsoft.maintenance/configurationassignments``:
ids in lower case, ``properties.resourceId``, ``properties.maintenanceConfigurationId`` and, for
a dynamic scope, ``properties.filter``. A configuration the estate gives no assignment is
assigned, one by one, to the machines of its runs.
"""

from __future__ import annotations

from typing import Any

from .. import ids
from ..estate import TENANT_ID, ConfigurationAssignment
from ..http import RequestContext

ASSIGNMENT_TYPE = "microsoft.maintenance/configurationassignments"


def assignments(ctx: RequestContext) -> list[ConfigurationAssignment]:
    explicit = list(ctx.state.estate.assignments)
    assigned = {ids.key(a.configuration_id) for a in explicit}
    implicit: dict[tuple[str, str], ConfigurationAssignment] = {}
    for run in ctx.state.runs.values():
        configuration = ids.key(run.configuration_id)
        if configuration in assigned:
            continue
        for resource_id in run.resource_ids:
            name = f"{run.configuration_id.rstrip('/').rsplit('/', 1)[-1]}-assignment"
            implicit.setdefault(
                (configuration, ids.key(resource_id)),
                ConfigurationAssignment(run.configuration_id, name, resource_id),
            )
    return explicit + list(implicit.values())


def assignment_rows(ctx: RequestContext, scope: set[str] | None) -> list[dict[str, Any]]:
    rows = []
    for assignment in assignments(ctx):
        subscription_id = (ids.subscription_of(assignment.resource_id) or "").lower()
        if scope is not None and subscription_id not in scope:
            continue
        properties: dict[str, Any] = {
            "resourceId": ids.key(assignment.resource_id),
            "maintenanceConfigurationId": ids.key(assignment.configuration_id),
        }
        if assignment.filter is not None:
            properties["filter"] = assignment.filter
        rows.append(
            {
                "id": ids.key(assignment.id),
                "name": assignment.name,
                "type": ASSIGNMENT_TYPE,
                "tenantId": TENANT_ID,
                "location": "westeurope",
                "resourceGroup": (ids.resource_group_of(assignment.resource_id) or "").lower(),
                "subscriptionId": subscription_id,
                "properties": properties,
            }
        )
    return rows
