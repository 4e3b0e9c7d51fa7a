"""The WSGI application.

An ARM request passes, in ARM's order: authentication (any ``Bearer`` token; 401 without),
``api-version`` (any value; 400 without), routing, the request budgets (429 when spent), fault
injection, added latency, and finally its handler with the state lock held. Every answer
carries request ids and the remaining budget, and is written to the request log. Paths under
``/_sim/`` go to the control API instead, without authentication.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import uuid
from collections.abc import Iterable
from copy import deepcopy
from typing import Any

from werkzeug.wrappers import Request, Response

from . import errors, ids, routes
from .clock import Clock, iso
from .config import SimulatorConfig
from .control import ControlApi
from .errors import ArmError
from .estate import Estate
from .faults import Fault, FaultInjector, FaultKind
from .http import RequestContext, error_response
from .state import SimulatorState
from .throttling import Throttler, Verdict


class SimulatorApp:
    """The simulator as a WSGI callable. :class:`~prepost.simulator.server.SimulatorServer` runs it."""

    def __init__(
        self, estate: Estate, config: SimulatorConfig, clock: Clock, stopping: threading.Event | None = None
    ) -> None:
        self.estate = estate
        self.config = config
        self.clock = clock
        self.stopping = stopping or threading.Event()
        self.state = SimulatorState(estate, clock, request_log_limit=config.request_log_limit)
        self.throttler = Throttler(config.throttling, clock)
        # The injector counts rules down, so it works on a copy and reset can restore the original.
        self.faults = FaultInjector(deepcopy(config.faults))
        self._latency_random = random.Random(config.seed)
        self._initial = (config.throttling, deepcopy(config.faults), config.latency, config.lro)
        self.control = ControlApi(self)

    def reset(self) -> None:
        """Back to the seeded estate and the configuration the app started with."""
        throttling, faults, latency, lro = self._initial
        self.config.throttling, self.config.latency, self.config.lro = throttling, latency, lro
        self.throttler.configure(throttling)
        self.faults.configure(deepcopy(faults))
        self.state.reset(self.estate)

    # ------------------------------------------------------------------ WSGI
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self.stopping.is_set():
            # A keep-alive connection can outlive stop(): answer nothing on it.
            _drop(environ)
        request = Request(environ)
        path = ids.normalise_path(request.path)
        if path.lower() == "/_sim" or path.lower().startswith("/_sim/"):
            response = self.control.handle(request, path)
        else:
            response = self._arm(request, path, environ)
        return response(environ, start_response)

    def _arm(self, request: Request, path: str, environ: dict[str, Any]) -> Response:
        operation: str | None = None
        fault_label: str | None = None
        budget: dict[str, str] = {}
        try:
            caller = _authenticate(request)
            if not request.args.get("api-version"):
                raise ArmError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            route, params = routes.match(request.method, path)
            operation = route.operation.value
            self.state.settle()
            verdict = (
                self.throttler.charge_arm(params["subscription"], request.method, operation)
                if route.subscription_scoped
                else self.throttler.charge_graph(caller)
            )
            budget = verdict.headers
            if not verdict.allowed:
                fault_label = "quota"
                raise _throttled(verdict, self.clock)
            target = f"{path} {request.get_data(as_text=True)}"
            fault = self.faults.decide(operation, target, long_running=route.long_running)
            failure: Fault | None = None
            if fault is not None:
                fault_label = fault.kind.value
                if fault.kind is FaultKind.TIMEOUT:
                    self.state.log_request(request.method, path, operation, 0, fault_label)
                    self._hold_and_close(fault, environ)
                if fault.kind is FaultKind.FAILED_OPERATION:
                    failure = fault
                else:
                    raise _injected(fault)
            self._delay(operation, request.method)
            ctx = RequestContext(request, params, operation, self.state, self.config, self.clock, failure=failure)
            with self.state.lock:
                response = route.handler(ctx)
        except ArmError as error:
            response = error_response(error)
        for name, value in budget.items():
            response.headers[name] = value
        response.headers["x-ms-request-id"] = str(uuid.uuid4())
        response.headers["x-ms-correlation-request-id"] = request.headers.get(
            "x-ms-correlation-request-id", str(uuid.uuid4())
        )
        self.state.log_request(request.method, path, operation, response.status_code, fault_label)
        return response

    def _delay(self, operation: str, method: str) -> None:
        seconds = self.config.latency.delay(operation, self._latency_random, method)
        if seconds > 0:
            self.stopping.wait(seconds)

    def _hold_and_close(self, fault: Fault, environ: dict[str, Any]) -> None:
        """Answer nothing: wait (until stop at the latest), then drop the connection."""
        self.stopping.wait(fault.timeout_seconds)
        _drop(environ)


def _drop(environ: dict[str, Any]) -> None:
    """Close the client's connection without an answer."""
    connection = environ.get("werkzeug.socket")
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
    # Werkzeug treats a ConnectionError from the app as a dropped connection and sends nothing.
    raise ConnectionAbortedError("connection dropped by the simulator")


def _authenticate(request: Request) -> str:
    """The caller's token; 401 as ARM answers when it is missing."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        reason = "missing" if not header else "malformed"
        raise ArmError(
            401,
            "AuthenticationFailed",
            f"Authentication failed. The 'Authorization' header is {reason}.",
            headers={
                "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
                f'error="invalid_token", error_description="The \'Authorization\' header is {reason}."'
            },
        )
    return token.strip()


def _throttled(verdict: Verdict, clock: Clock) -> ArmError:
    retry = {"Retry-After": str(verdict.retry_after)}
    if verdict.policy == "resource-graph":
        return ArmError(
            429,
            "RateLimiting",
            "Please provide below info when asking for support: the caller's Resource Graph quota is spent.",
            details=[
                {
                    "code": "RateLimiting",
                    "message": "Client application has been throttled and should not attempt to repeat the "
                    "request until an amount of time has elapsed. Please see "
                    "https://aka.ms/resourcegraph-throttling for help.",
                }
            ],
            headers=retry,
        )
    if verdict.policy and not verdict.policy.startswith("subscription-"):
        # Compute's own policies answer with OperationNotAllowed and name the policy in details.
        now = clock.now()
        return ArmError(
            429,
            "OperationNotAllowed",
            "The server rejected the request because too many requests have been received for this subscription.",
            details=[
                {
                    "code": "TooManyRequests",
                    "target": verdict.policy,
                    "message": json.dumps({"operationGroup": verdict.policy, "startTime": iso(now)}),
                }
            ],
            headers=retry,
        )
    return errors.too_many_requests(verdict.retry_after)


def _injected(fault: Fault) -> ArmError:
    if fault.kind is FaultKind.THROTTLE:
        error = errors.too_many_requests(fault.retry_after, fault.message)
        if fault.code:
            error.code = fault.code
        return error
    return errors.from_status(fault.status, fault.code, fault.message)
