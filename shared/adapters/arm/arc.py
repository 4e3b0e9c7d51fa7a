"""Arc-enabled servers (Microsoft.HybridCompute/machines) through plain ARM requests."""

from __future__ import annotations

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.generic import arm_request
from shared.models.events import parse_time
from shared.ports.azure import ArcMachine, ArcMachines

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
        )
