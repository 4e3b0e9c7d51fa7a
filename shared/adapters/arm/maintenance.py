"""Maintenance configurations (azure-mgmt-maintenance) and run cancellation (generic ARM)."""

from __future__ import annotations

from azure.core.rest import HttpRequest

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.errors import call
from shared.errors import PermanentError
from shared.models.arm_names import arm_path, check_resource_id
from shared.models.ids import ResourceId, configuration_of
from shared.ports.azure import MaintenanceConfigurations, RunCancellation

# azure-mgmt-maintenance 2.1.0 has no cancel operation; the REST API does (preview version).
CANCEL_API_VERSION = "2023-09-01-preview"


class ArmMaintenanceConfigurations(MaintenanceConfigurations):
    def __init__(self, clients: ArmClients):
        self._clients = clients

    def get_tags(self, configuration_id: str) -> dict[str, str]:
        from azure.core.exceptions import ResourceNotFoundError

        resource = ResourceId(check_resource_id(configuration_id))
        operations = self._clients.maintenance(resource.subscription_id).maintenance_configurations
        try:
            config = call(
                f"get configuration {resource.name}", lambda: operations.get(resource.resource_group, resource.name)
            )
        except ResourceNotFoundError as error:
            raise PermanentError(f"maintenance configuration {configuration_id} does not exist") from error
        return dict(config.tags or {})


class ArmRunCancellation(RunCancellation):
    def __init__(self, clients: ArmClients):
        self._clients = clients

    def cancel(self, correlation_id: str) -> str:
        if configuration_of(correlation_id) is None:
            raise PermanentError(f"{correlation_id} is not a maintenance run id")
        # Checked and quoted segment by segment: the id came in an event, and a quote, ``?``,
        # ``#`` or ``..`` in it must not change which resource the PUT reaches.
        path = arm_path(correlation_id)
        client = self._clients.resources(ResourceId(correlation_id).subscription_id)
        request = HttpRequest(
            "PUT",
            f"{path}?api-version={CANCEL_API_VERSION}",
            json={"properties": {"status": "Cancel"}},
        )

        def send():
            response = client.send_request(request)
            response.raise_for_status()
            return response

        response = call("cancel run", send)
        try:
            return str(response.json().get("properties", {}).get("status") or "Cancel")
        except ValueError:
            return "Cancel"
