"""Alert processing rules through plain ARM requests.

azure-mgmt-alertsmanagement's stable release has no alert processing rules (only the legacy
action rules model), so the rule is sent as JSON with api-version 2021-08-08.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.generic import arm_request
from shared.models.arm_names import bounded_tags
from shared.models.events import format_time
from shared.ports.azure import AlertSuppression

API_VERSION = "2021-08-08"


class ArmAlertSuppression(AlertSuppression):
    def __init__(self, clients: ArmClients):
        self._clients = clients

    def put_rule(
        self,
        rule_id: str,
        *,
        scopes: Sequence[str],
        effective_from: datetime,
        effective_until: datetime,
        description: str,
        tags: Mapping[str, str],
    ) -> None:
        body = {
            "location": "Global",
            "tags": bounded_tags(tags),
            "properties": {
                "scopes": list(scopes),
                "description": description,
                "enabled": True,
                "actions": [{"actionType": "RemoveAllActionGroups"}],
                "schedule": {
                    "effectiveFrom": format_time(effective_from).replace("Z", ""),
                    "effectiveUntil": format_time(effective_until).replace("Z", ""),
                    "timeZone": "UTC",
                },
            },
        }
        arm_request(self._clients, "PUT", rule_id, API_VERSION, "put alert processing rule", body)

    def get_rule(self, rule_id: str) -> dict | None:
        status, body = arm_request(self._clients, "GET", rule_id, API_VERSION, "get alert processing rule")
        return None if status == 404 else body

    def delete_rule(self, rule_id: str) -> bool:
        status, _ = arm_request(self._clients, "DELETE", rule_id, API_VERSION, "delete alert processing rule")
        return status not in (204, 404)
