"""What a handler gets (:class:`RequestContext`) and the responses it builds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from . import errors
from .clock import Clock
from .config import SimulatorConfig
from .errors import ArmError
from .faults import Fault
from .state import SimulatorState


@dataclass
class RequestContext:
    """One ARM request on its way through a handler."""

    request: Request
    params: dict[str, str]
    operation: str
    state: SimulatorState
    config: SimulatorConfig
    clock: Clock
    failure: Fault | None = None
    """A fault to apply when a long-running operation completes (``on_completion`` rules)."""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """Scheme and host as the client addressed us, so operation URLs lead back here."""
        return self.request.host_url.rstrip("/")

    @property
    def api_version(self) -> str:
        return self.request.args.get("api-version", "")

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or 400 ``InvalidRequestContent``."""
        raw = self.request.get_data(cache=True)
        if not raw:
            raise errors.invalid_request_content(
                "The request content was invalid and could not be deserialized: empty body."
            )
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise errors.invalid_request_content(
                f"The request content was invalid and could not be deserialized: {error}."
            ) from error
        if not isinstance(body, dict):
            raise errors.invalid_request_content("The request content must be a JSON object.")
        return body

    def require_subscription(self) -> str:
        subscription_id = self.params["subscription"]
        if not self.state.has_subscription(subscription_id):
            raise errors.subscription_not_found(subscription_id)
        return subscription_id

    def require_resource_group(self) -> tuple[str, str]:
        subscription_id = self.require_subscription()
        resource_group = self.params["resource_group"]
        if not self.state.has_resource_group(subscription_id, resource_group):
            raise errors.resource_group_not_found(resource_group)
        return subscription_id, resource_group


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json; charset=utf-8",
    )


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(b"", status=status, headers=dict(headers or {}))
    if status == 204:
        # A 204 carries neither a body nor a content type.
        response.headers.pop("Content-Type", None)
    return response


def error_response(error: ArmError) -> Response:
    return json_response(error.status, error.body(), error.headers)
