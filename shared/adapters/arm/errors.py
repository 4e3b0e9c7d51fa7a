"""Azure SDK errors translated into what the use cases act on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import PermanentError, Throttled, TransientError

T = TypeVar("T")

# Incremental snapshots: at most 7 per disk per 5 minutes. Azure answers 409; wait and retry.
SNAPSHOT_RATE_RETRY = timedelta(minutes=1)


def retry_after(error: HttpResponseError) -> timedelta | None:
    """The longest wait any of the response's headers asks for, or None.

    ARM answers ``Retry-After`` (seconds); Resource Graph says when the caller's quota resets in
    ``x-ms-user-quota-resets-after`` (``hh:mm:ss``, docs/reference.md section 4). When both come, the
    longer wins: asking again before the quota resets only earns another 429.
    """
    response = error.response
    if response is None:
        return None
    headers = response.headers
    waits = []
    for name in ("Retry-After", "x-ms-retry-after-ms", "x-ms-user-quota-resets-after"):
        value = headers.get(name)
        if not value:
            continue
        try:
            if name.endswith("-ms"):
                waits.append(timedelta(milliseconds=float(value)))
            elif ":" in value:
                hours, minutes, seconds = (float(part) for part in value.split(":"))
                waits.append(timedelta(hours=hours, minutes=minutes, seconds=seconds))
            else:
                waits.append(timedelta(seconds=float(value)))
        except (ValueError, OverflowError):
            continue
    return max(waits, default=None)


def translate(error: Exception, what: str) -> Exception:
    """The :mod:`shared.errors` exception for an SDK error raised while doing ``what``."""
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return TransientError(f"{what}: connection failed: {error}")
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        code = getattr(getattr(error, "error", None), "code", None) or ""
        message = f"{what}: HTTP {status} {code}".rstrip() + f": {_message(error)}"
        if status == 429:
            return Throttled(message, retry_after=retry_after(error))
        if status == 409 and code in {"OperationNotAllowed", "TooManyRequests", "Conflict"}:
            return TransientError(message, retry_after=retry_after(error) or SNAPSHOT_RATE_RETRY)
        if status in (408,) or status >= 500:
            return TransientError(message, retry_after=retry_after(error))
        if status in (401, 403):
            return PermanentError(f"{message} (check the identity's role assignments)")
        return PermanentError(message)
    return error


def call(what: str, operation: Callable[[], T]) -> T:
    """Run an SDK call, translating its errors; ResourceNotFoundError passes through."""
    try:
        return operation()
    except ResourceNotFoundError:
        raise
    except Exception as error:
        translated = translate(error, what)
        if translated is error:
            raise
        raise translated from error


def or_none(what: str, operation: Callable[[], T]) -> T | None:
    """Like :func:`call`, but a 404 gives None."""
    try:
        return call(what, operation)
    except ResourceNotFoundError:
        return None


def _message(error: HttpResponseError) -> str:
    inner = getattr(error, "error", None)
    text = getattr(inner, "message", None) or error.message or str(error)
    return text.splitlines()[0][:300]
