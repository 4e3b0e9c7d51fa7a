"""Starting long-running operations (the 202 answer) and answering their status polls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from werkzeug.wrappers import Response

from ..errors import ArmError
from ..faults import Fault
from ..http import RequestContext, empty_response, json_response
from ..lro import AsyncOperation, OperationStatus


def begin(
    ctx: RequestContext,
    *,
    target_id: str,
    subscription_id: str,
    location: str,
    on_success: Callable[[datetime], None],
    on_failure: Callable[[datetime], None] | None = None,
    disk_operation: bool = False,
) -> AsyncOperation:
    """Register an operation for this request; a pending ``on_completion`` fault makes it fail."""
    failure, failure_status = _failure(ctx.failure)
    return ctx.state.operation_book.add(
        operation=ctx.operation,
        target_id=target_id,
        subscription_id=subscription_id,
        location=location,
        now=ctx.clock.now(),
        timing=ctx.config.lro.timing(ctx.operation),
        on_success=on_success,
        on_failure=on_failure,
        failure=failure,
        failure_status=failure_status,
        disk_operation=disk_operation,
    )


def accepted(ctx: RequestContext, record: AsyncOperation, body: object | None = None) -> Response:
    """202 with ``Azure-AsyncOperation`` and ``Location`` pointing at the operation, as ARM answers."""
    status_url = f"{ctx.base_url}{record.status_path()}?api-version={ctx.api_version}"
    headers = {
        "Azure-AsyncOperation": status_url,
        "Location": f"{status_url}&monitor=true",
        "Retry-After": str(record.timing.retry_after),
    }
    if body is None:
        return empty_response(202, headers)
    return json_response(202, body, headers)


def get_status(ctx: RequestContext) -> Response:
    """``GET .../locations/{loc}/operations/{id}``: the status resource, or with ``monitor=true``
    (the ``Location`` URL) 202 while running and 200 when done."""
    ctx.require_subscription()
    record = ctx.state.operation_book.get(ctx.params["operation_id"])
    if record is None or record.subscription_id.lower() != ctx.params["subscription"].lower():
        raise ArmError(404, "NotFound", f"The operation '{ctx.params['operation_id']}' was not found.")
    ctx.state.operation_book.poll(record, ctx.clock.now())
    in_progress = record.status is OperationStatus.IN_PROGRESS
    headers = {"Retry-After-Ms": str(record.timing.poll_retry_after_ms)} if in_progress else {}
    if ctx.request.args.get("monitor", "").lower() == "true":
        if in_progress:
            status_url = f"{ctx.base_url}{ctx.request.full_path}"
            return empty_response(202, {**headers, "Location": status_url})
        if record.status is OperationStatus.FAILED and record.failure:
            raise ArmError(record.failure_status, record.failure["code"], record.failure["message"])
        return empty_response(200)
    return json_response(200, record.status_body(), headers)


def _failure(fault: Fault | None) -> tuple[dict[str, str] | None, int]:
    if fault is None:
        return None, 500
    code = fault.code or ("InternalExecutionError" if fault.status >= 500 else "OperationNotAllowed")
    message = fault.message or f"Simulated failure of the operation (HTTP {fault.status})."
    return {"code": code, "message": message}, fault.status
