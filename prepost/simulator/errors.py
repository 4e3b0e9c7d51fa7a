"""ARM-style errors: ``{"error": {"code": ..., "message": ...}}`` with the status ARM uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ArmError(Exception):
    """An error answered the way ARM answers it; raised by handlers, rendered by the app."""

    status: int
    code: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    target: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.code}: {self.message}")

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        return {"error": error}


def resource_not_found(resource_type: str, name: str, resource_group: str | None) -> ArmError:
    where = f" under resource group '{resource_group}'" if resource_group else ""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}'{where} was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def subscription_not_found(subscription_id: str) -> ArmError:
    return ArmError(404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found.")


def resource_group_not_found(resource_group: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{resource_group}' could not be found.")


def bad_request(message: str, code: str = "BadRequest", target: str | None = None) -> ArmError:
    return ArmError(400, code, message, target=target)


def invalid_request_content(message: str) -> ArmError:
    return ArmError(400, "InvalidRequestContent", message)


def internal_error() -> ArmError:
    return ArmError(
        500,
        "InternalServerError",
        "Encountered internal server error. Diagnostic information: simulated fault.",
    )


def too_many_requests(retry_after: int, message: str | None = None) -> ArmError:
    return ArmError(
        429,
        "TooManyRequests",
        message
        or "The request is being throttled as the limit has been reached for operation type. "
        "For more information, see https://aka.ms/armthrottling",
        headers={"Retry-After": str(retry_after)},
    )


def from_status(status: int, code: str | None = None, message: str | None = None) -> ArmError:
    """An error for an injected fault with a given HTTP status (and an ARM-like default code)."""
    defaults = {
        400: "BadRequest",
        401: "AuthenticationFailed",
        403: "AuthorizationFailed",
        404: "ResourceNotFound",
        409: "Conflict",
        429: "TooManyRequests",
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }
    if status == 500 and not code and not message:
        return internal_error()
    return ArmError(
        status,
        code or defaults.get(status, "SimulatedFault"),
        message or f"Simulated fault: HTTP {status}.",
    )
