"""Arc-enabled servers (Microsoft.HybridCompute/machines) through plain ARM requests."""

from __future__ import annotations

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.generic import arm_request
from shared.models.events import parse_time
from shared.ports.azure import ArcMachine, ArcMachines, ExtensionStatus

API_VERSION = "2024-07-10"


class ArmArcMachines(ArcMachines):
    def __init__(self, clients: ArmClients):
        self._clients = clients

    def get_machine(self, machine_id: str) -> ArcMachine | None:
        status, body = arm_request(self._clients, "GET", machine_id, API_VERSION, "get Arc-enabled server")
        if status == 404 or not body:
            return None
        properties = body.get("properties", {})
        changed = properties.get("lastStatusChange")
        try:
            last_change = parse_time(changed) if changed else None
        except ValueError:
            last_change = None
        return ArcMachine(
            resource_id=body.get("id", machine_id),
            status=str(properties.get("status") or "Unknown"),
            agent_version=properties.get("agentVersion"),
            last_status_change=last_change,
            automatic_upgrade=_automatic_upgrade(properties),
        )

    def list_extensions(self, machine_id: str) -> list[ExtensionStatus]:
        """``GET {machine}/extensions``: each extension's provisioning state and instance view.

        https://learn.microsoft.com/rest/api/hybridcompute/machine-extensions/list
        """
        status, body = arm_request(
            self._clients, "GET", machine_id.rstrip("/"), API_VERSION, "list Arc extensions", collection="extensions"
        )
        if status == 404 or not body:
            return []
        extensions = []
        for item in body.get("value") or []:
            properties = item.get("properties") or {}
            view = (properties.get("instanceView") or {}).get("status") or {}
            state = str(properties.get("provisioningState") or "")
            code = view.get("code") or f"ProvisioningState/{state.lower()}"
            if state.lower() == "failed" and not str(code).lower().startswith("provisioningstate/failed"):
                code = "ProvisioningState/failed"
            extensions.append(
                ExtensionStatus(
                    name=str(item.get("name") or ""),
                    type=str(properties.get("type") or ""),
                    code=str(code),
                    message=str(view.get("message") or ""),
                )
            )
        return extensions


def _automatic_upgrade(properties: dict) -> bool | None:
    upgrade = properties.get("agentUpgrade")
    if not isinstance(upgrade, dict) or "enableAutomaticUpgrade" not in upgrade:
        return None
    return bool(upgrade["enableAutomaticUpgrade"])
