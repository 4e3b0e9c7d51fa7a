"""Azure, storage and network errors as one line an operator can act on, and an exit code per kind.

The SDKs raise ``azure.core.exceptions.AzureError`` subclasses (``azure.servicebus`` ones derive
from it too) whose text can run to many lines: HTTP bodies, the request's headers, the chain of
causes. The command prints one line instead, and the traceback only with ``--debug``.
https://learn.microsoft.com/python/api/azure-core/azure.core.exceptions
"""

from __future__ import annotations

import re

EXIT_AZURE = 3
"""Azure, storage or the webhook could not be reached, or refused the request for another reason."""

EXIT_AUTH = 4
"""Authentication failed or the identity lacks a permission (HTTP 401/403, no usable credential)."""

_MAX_DETAIL = 240


class AzureFailure(Exception):
    """An Azure error with what the command was doing when it happened (``reading prepost-plan-poison``)."""

    def __init__(self, doing: str, error: BaseException) -> None:
        super().__init__(f"{doing}: {error}")
        self.doing = doing
        self.error = error


def describe(error: BaseException) -> tuple[str, int] | None:
    """One line and an exit code for an Azure or network error; None for anything else.

    ``AzureFailure`` puts what the command was doing in front of the line.
    """
    if isinstance(error, AzureFailure):
        found = describe(error.error)
        if found is None:
            return f"{error.doing}: {_first_line(error.error)}", EXIT_AZURE
        line, code = found
        return f"{error.doing}: {line}", code
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if _is_servicebus_auth(error):
        return f"Service Bus refused the credentials: {_first_line(error)}", EXIT_AUTH
    if isinstance(error, HttpResponseError) and error.status_code:
        error_code = getattr(error, "error_code", None)
        # Tables report an enum (TableErrorCode.TABLE_NOT_FOUND); print the service's own code.
        code = f" {getattr(error_code, 'value', error_code)}" if error_code else ""
        summary = f"HTTP {error.status_code}{code}"
        if error.status_code in (401, 403):
            return f"access denied ({summary}): {_first_line(error)}", EXIT_AUTH
        return f"{summary}: {_first_line(error)}", EXIT_AZURE
    if isinstance(error, ClientAuthenticationError):  # no HTTP answer: no credential could get a token
        return f"authentication failed: {_first_line(error)}", EXIT_AUTH
    if isinstance(error, HttpResponseError):
        return f"the service refused the request: {_first_line(error)}", EXIT_AZURE
    if isinstance(error, (ServiceRequestError, ServiceResponseError)) or _is_network(error):
        return f"cannot reach the service: {_network_detail(error)}", EXIT_AZURE
    if isinstance(error, AzureError):
        return f"{type(error).__name__}: {_first_line(error)}", EXIT_AZURE
    return None


def _is_servicebus_auth(error: BaseException) -> bool:
    try:
        from azure.servicebus.exceptions import ServiceBusAuthenticationError, ServiceBusAuthorizationError
    except ImportError:  # the CLI works without the Service Bus SDK
        return False
    return isinstance(error, (ServiceBusAuthenticationError, ServiceBusAuthorizationError))


def _is_network(error: BaseException) -> bool:
    """Connection errors: Service Bus's, requests' (webhook delivery) and the socket layer's."""
    try:
        from azure.servicebus.exceptions import ServiceBusCommunicationError, ServiceBusConnectionError
    except ImportError:
        pass
    else:
        if isinstance(error, (ServiceBusConnectionError, ServiceBusCommunicationError)):
            return True
    try:
        import requests
    except ImportError:
        requests = None
    if requests is not None and isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(error, (ConnectionError, TimeoutError))


def _network_detail(error: BaseException) -> str:
    """Where and why, e.g. ``127.0.0.1:10002: connection refused``, from the error and its causes."""
    text = " ".join(str(link) for link in _chain(error))
    where = re.search(r"host='([^']+)', port=(\d+)", text)
    place = f"{where.group(1)}:{where.group(2)}: " if where else ""
    for cause in _chain(error):
        if isinstance(cause, ConnectionRefusedError) or "Connection refused" in str(cause):
            return f"{place}connection refused"
        if "Name or service not known" in str(cause) or "nodename nor servname" in str(cause):
            return f"{place}unknown host name"
        if isinstance(cause, TimeoutError) or "timed out" in str(cause).lower():
            return f"{place}timed out"
    return f"{place}{_first_line(error)}"


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return seen


def _first_line(error: BaseException) -> str:
    """The first non-empty line of the error's message, shortened: SDK messages carry bodies and headers."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    line = next((part.strip() for part in str(message).splitlines() if part.strip()), type(error).__name__)
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 3] + "..."
