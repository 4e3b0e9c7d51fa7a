"""Plain ARM requests for resource types without a stable SDK model here."""

from __future__ import annotations

from typing import Any

from azure.core.rest import HttpRequest

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.errors import call
from shared.errors import InvalidIdentifier
from shared.models.arm_names import arm_path
from shared.models.ids import ResourceId


def arm_request(
    clients: ArmClients,
    method: str,
    resource_id: str,
    api_version: str,
    what: str,
    body: Any = None,
    *,
    collection: str | None = None,
) -> tuple[int, Any]:
    """Send one ARM request; returns (status, JSON body or None). 404 gives (404, None).

    ``collection`` lists child resources of ``resource_id`` (``extensions``): a collection path
    is no resource id, so the id is checked alone and the collection name must be one word.

    Raises:
        InvalidIdentifier: ``resource_id`` breaks ARM's naming rules; nothing is sent.
    """
    path = arm_path(resource_id)
    if collection is not None:
        if not collection.isalnum():
            raise InvalidIdentifier(f"{collection!r} is not a child collection of a resource")
        path = f"{path}/{collection}"
    client = clients.resources(ResourceId(resource_id).subscription_id)
    request = HttpRequest(method, f"{path}?api-version={api_version}", json=body)

    def send():
        response = client.send_request(request)
        if response.status_code == 404:
            return response
        response.raise_for_status()
        return response

    response = call(what, send)
    if response.status_code == 404:
        return 404, None
    try:
        return response.status_code, response.json() if response.content else None
    except ValueError:
        return response.status_code, None
