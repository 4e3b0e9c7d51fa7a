"""Managed Run Command on Azure VMs and Arc-enabled servers, through plain ARM requests.

The same resource shape on both providers:
- VMs: ``Microsoft.Compute/virtualMachines/{vm}/runCommands/{name}``
  https://learn.microsoft.com/rest/api/compute/virtual-machine-run-commands/create-or-update
  https://learn.microsoft.com/rest/api/compute/virtual-machine-run-commands/get-by-virtual-machine
  (``$expand=instanceView`` gives ``executionState``, ``exitCode``, ``output``, ``error``,
  ``startTime``, ``endTime``, ``executionMessage``).
- Arc-enabled servers: ``Microsoft.HybridCompute/machines/{m}/runCommands/{name}``, GA
  api-version 2025-01-13 (earlier ones are previews)
  https://learn.microsoft.com/rest/api/hybridcompute/machine-run-commands/create-or-update

The PUT is a long-running operation; with ``asyncExecution: true`` it completes when the script
starts. Its answer is not waited for: the task reads the run command on its follow-ups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.core.rest import HttpRequest

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.errors import call
from shared.models.events import parse_time
from shared.models.hooks import ScriptOs
from shared.models.ids import MachineKind, ResourceId
from shared.ports.scripts import ScriptExecution, ScriptRunner, ScriptTarget, ScriptTargets

VM_API_VERSION = "2024-07-01"
ARC_API_VERSION = "2025-01-13"
ARC_MACHINE_API_VERSION = "2024-07-10"


def _api_version(machine_id: str) -> str:
    return ARC_API_VERSION if ResourceId(machine_id).machine_kind is MachineKind.ARC_SERVER else VM_API_VERSION


def _send(
    clients: ArmClients, method: str, path: str, query: str, what: str, body: Any = None, *, text: bool = False
) -> tuple[int, Any]:
    """One ARM request: (status, JSON body, or the body as text with ``text``); 404 gives (404, None)."""
    client = clients.resources(ResourceId(path).subscription_id)
    request = HttpRequest(method, f"{path}?{query}", json=body)

    def send():
        response = client.send_request(request)
        if response.status_code != 404:
            response.raise_for_status()
        return response

    response = call(what, send)
    if response.status_code == 404:
        return 404, None
    if text:
        return response.status_code, response.text()
    try:
        return response.status_code, response.json() if response.content else None
    except ValueError:
        return response.status_code, None


class ArmRunCommands(ScriptRunner):
    def __init__(self, clients: ArmClients):
        self._clients = clients

    def begin_script(
        self,
        target: ScriptTarget,
        name: str,
        *,
        script: str,
        parameters: Mapping[str, str],
        timeout_seconds: int,
        tags: Mapping[str, str],
        run_on: str | None = None,
    ) -> None:
        body = {
            "location": target.location,
            "tags": dict(tags),
            "properties": {
                "source": {"script": script},
                "parameters": [{"name": key, "value": value} for key, value in parameters.items()],
                "asyncExecution": True,
                "timeoutInSeconds": timeout_seconds,
                # Keep a non-zero exit a script outcome, read from the instance view, rather
                # than a failed deployment of the resource.
                "treatFailureAsDeploymentFailure": False,
            },
        }
        _send(
            self._clients,
            "PUT",
            f"{target.resource_id}/runCommands/{name}",
            f"api-version={_api_version(target.resource_id)}",
            f"create run command {name}",
            body,
        )

    def get_execution(self, target: ScriptTarget, name: str) -> ScriptExecution | None:
        status, body = _send(
            self._clients,
            "GET",
            f"{target.resource_id}/runCommands/{name}",
            f"$expand=instanceView&api-version={_api_version(target.resource_id)}",
            f"get run command {name}",
        )
        if status == 404 or not body:
            return None
        return _to_execution(name, body)

    def delete_execution(self, target: ScriptTarget, name: str) -> None:
        _send(
            self._clients,
            "DELETE",
            f"{target.resource_id}/runCommands/{name}",
            f"api-version={_api_version(target.resource_id)}",
            f"delete run command {name}",
        )


class ArmScriptTargets(ScriptTargets):
    """The machine's OS, state and tags, read with one GET."""

    def __init__(self, clients: ArmClients):
        self._clients = clients

    def get_target(self, machine_id: str) -> ScriptTarget | None:
        is_arc = ResourceId(machine_id).machine_kind is MachineKind.ARC_SERVER
        if is_arc:
            query = f"api-version={ARC_MACHINE_API_VERSION}"
        else:
            query = f"$expand=instanceView&api-version={VM_API_VERSION}"
        status, body = _send(self._clients, "GET", machine_id, query, "get machine for its script")
        if status == 404 or not body:
            return None
        properties = body.get("properties") or {}
        tags = body.get("tags") or {}
        if is_arc:
            agent = str(properties.get("status") or "Unknown")
            since = properties.get("lastStatusChange")
            return ScriptTarget(
                resource_id=body.get("id", machine_id),
                location=str(body.get("location", "")),
                os=ScriptOs.parse(properties.get("osType")),
                running=agent.lower() == "connected",
                state=f"agent {agent}" + (f" since {since}" if since and agent.lower() != "connected" else ""),
                is_arc=True,
                tags=tags,
            )
        os_disk = ((properties.get("storageProfile") or {}).get("osDisk") or {}).get("osType")
        statuses = (properties.get("instanceView") or {}).get("statuses") or []
        codes = [str(status.get("code", "")) for status in statuses]
        powers = [code.split("/", 1)[1].lower() for code in codes if code.lower().startswith("powerstate/")]
        power = powers[-1] if powers else "unknown"
        return ScriptTarget(
            resource_id=body.get("id", machine_id),
            location=str(body.get("location", "")),
            os=ScriptOs.parse(os_disk),
            running=power == "running",
            state=power,
            tags=tags,
        )


def _to_execution(name: str, body: Mapping[str, Any]) -> ScriptExecution:
    properties = body.get("properties") or {}
    view = properties.get("instanceView") or {}
    exit_code = view.get("exitCode")
    return ScriptExecution(
        name=name,
        execution_state=str(view.get("executionState") or "Pending"),
        provisioning_state=str(properties.get("provisioningState") or "Succeeded"),
        exit_code=int(exit_code) if isinstance(exit_code, int | float) and not isinstance(exit_code, bool) else None,
        output=str(view.get("output") or ""),
        error=str(view.get("error") or ""),
        message=str(view.get("executionMessage") or ""),
        started_at=_time(view.get("startTime")),
        ended_at=_time(view.get("endTime")),
    )


def _time(value: Any):
    if not value:
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        return None
