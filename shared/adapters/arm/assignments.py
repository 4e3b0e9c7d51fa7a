"""Configuration assignments and candidate machines through Resource Graph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.errors import call
from shared.errors import PermanentError
from shared.models.ids import ResourceId
from shared.models.scopes import CandidateMachine, DynamicScope
from shared.ports.assignments import AssignmentInventory, Assignments

PAGE_SIZE = 1000
MAX_PAGES = 200
ASSIGNMENTS_QUERY = """maintenanceresources
| where type =~ 'microsoft.maintenance/configurationassignments'
| where properties.maintenanceConfigurationId =~ '{configuration_id}'
| project id, resourceId = tostring(properties.resourceId), filter = properties.filter
| order by id asc"""
# Azure VMs keep their OS type on the OS disk; Arc servers in properties.osType.
MACHINES_QUERY = """resources
| where type in~ ('microsoft.compute/virtualmachines', 'microsoft.hybridcompute/machines')
| project id, type, location, tags,
    vmOsType = tostring(properties.storageProfile.osDisk.osType), arcOsType = tostring(properties.osType)
| order by id asc"""


class ResourceGraphAssignments(AssignmentInventory):
    def __init__(self, clients: ArmClients):
        self._clients = clients

    def list_assignments(self, configuration_id: str, subscription_ids: Sequence[str]) -> Assignments:
        if "'" in configuration_id or "\n" in configuration_id:
            raise PermanentError(f"configuration id {configuration_id!r} contains characters a query cannot hold")
        static: list[str] = []
        scopes: list[DynamicScope] = []
        for row in self._rows(ASSIGNMENTS_QUERY.format(configuration_id=configuration_id), subscription_ids):
            resource_id = str(row.get("resourceId") or "")
            scope = ResourceId(resource_id) if resource_id.startswith("/") else None
            if row.get("filter") or (scope is not None and scope.provider_type == "subscriptions"):
                # A dynamic scope lives at subscription scope: the subscription of its own id.
                subscription = scope.subscription_id if scope else ResourceId(str(row.get("id"))).subscription_id
                scopes.append(DynamicScope.from_filter([subscription], row.get("filter")))
            elif resource_id:
                static.append(resource_id)
        return Assignments(tuple(static), tuple(scopes))

    def list_machines(self, subscription_ids: Sequence[str]) -> list[CandidateMachine]:
        machines = []
        for row in self._rows(MACHINES_QUERY, subscription_ids):
            machines.append(
                CandidateMachine(
                    resource_id=str(row.get("id")),
                    type=str(row.get("type") or ""),
                    location=str(row.get("location") or ""),
                    os_type=str(row.get("vmOsType") or row.get("arcOsType") or ""),
                    tags=dict(row.get("tags") or {}),
                )
            )
        return machines

    def _rows(self, query: str, subscription_ids: Sequence[str]) -> list[dict[str, Any]]:
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        client = self._clients.resource_graph()
        rows: list[dict[str, Any]] = []
        skip_token = None
        for _ in range(MAX_PAGES):
            request = QueryRequest(
                subscriptions=list(subscription_ids) or None,
                query=query,
                options=QueryRequestOptions(skip_token=skip_token, top=PAGE_SIZE, result_format="objectArray"),
            )
            page = call("Resource Graph query", lambda request=request: client.resources(request))
            rows.extend(row for row in page.data or [] if isinstance(row, dict))
            skip_token = page.skip_token
            if not skip_token:
                return rows
        raise PermanentError(f"Resource Graph returned more than {MAX_PAGES} pages")
