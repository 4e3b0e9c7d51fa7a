"""The machines of a run, from Resource Graph's ``maintenanceresources`` table."""

from __future__ import annotations

from collections.abc import Sequence

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.errors import call
from shared.errors import InvalidIdentifier, PermanentError
from shared.models.arm_names import check_resource_id, check_subscription_id
from shared.ports.azure import MachineInventory

PAGE_SIZE = 1000
MAX_PAGES = 100
# Both Azure VMs and Arc-enabled servers are part of runs; Microsoft's samples keep VMs only.
QUERY = """maintenanceresources
| where type =~ 'microsoft.maintenance/applyupdates'
| where properties.correlationId =~ '{correlation_id}'
| project resourceId = tostring(properties.resourceId)
| order by resourceId asc"""


def run_machines_query(correlation_id: str) -> str:
    # A run id that follows ARM's naming rules holds no quote, backslash or line break, so it
    # cannot end the KQL string literal it is put in.
    try:
        check_resource_id(correlation_id)
    except InvalidIdentifier as error:
        raise PermanentError(f"correlation id {correlation_id!r} cannot go in a query: {error}") from error
    return QUERY.format(correlation_id=correlation_id)


class ResourceGraphInventory(MachineInventory):
    def __init__(self, clients: ArmClients):
        self._clients = clients

    def list_run_machines(self, correlation_id: str, subscription_ids: Sequence[str]) -> list[str]:
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        for subscription in subscription_ids:
            check_subscription_id(subscription)
        client = self._clients.resource_graph()
        query = run_machines_query(correlation_id)
        machines: list[str] = []
        skip_token = None
        for _ in range(MAX_PAGES):
            request = QueryRequest(
                subscriptions=list(subscription_ids),
                query=query,
                options=QueryRequestOptions(skip_token=skip_token, top=PAGE_SIZE, result_format="objectArray"),
            )
            page = call("Resource Graph query", lambda request=request: client.resources(request))
            for row in page.data or []:
                resource_id = row.get("resourceId") if isinstance(row, dict) else None
                if resource_id:
                    machines.append(resource_id)
            skip_token = page.skip_token
            if not skip_token:
                return machines
        raise PermanentError(f"Resource Graph returned more than {MAX_PAGES} pages for {correlation_id}")
