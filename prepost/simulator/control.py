"""The inspection and control API under ``/_sim/`` (no authentication), for tests, demos and the CLI.

Lists answer ``{"value": [...]}``; configuration endpoints answer the configuration now in force.
See ``docs/simulator.md`` for every endpoint and shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from .clock import ManualClock, iso
from .config import LatencyConfig, LroConfig
from .estate import ArcStatus, PowerState
from .faults import FaultConfig
from .http import empty_response, json_response
from .records import arc_json, run_json
from .run_command_records import ScriptOutcome
from .throttling import ThrottleConfig

if TYPE_CHECKING:
    from .app import SimulatorApp


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ControlApi:
    """Routes ``/_sim/...`` requests to small handlers."""

    def __init__(self, app: SimulatorApp) -> None:
        self.app = app
        self._routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", ""): self._index,
            ("GET", "state"): lambda r: json_response(200, self.app.state.to_json()),
            ("GET", "vms"): lambda r: _value(self.app.state.vms_json()),
            ("POST", "vms"): self._set_power_state,
            ("GET", "arc-servers"): self._arc_servers,
            ("POST", "arc-servers"): self._set_arc_status,
            ("GET", "snapshots"): lambda r: _value([s.to_json() for s in self.app.state.snapshots()]),
            ("GET", "alert-rules"): lambda r: _value([a.to_json() for a in self.app.state.alert_rules()]),
            ("GET", "cancellations"): lambda r: _value([c.to_json() for c in self.app.state.cancellations()]),
            ("GET", "runs"): lambda r: _value([run_json(run) for run in self.app.state.runs_list()]),
            ("POST", "runs"): self._add_run,
            ("GET", "operations"): lambda r: _value([o.to_json() for o in self.app.state.operations()]),
            ("GET", "counts"): lambda r: json_response(200, self.app.state.counts()),
            ("GET", "requests"): self._requests,
            ("GET", "faults"): lambda r: json_response(200, self.app.faults.config.to_json()),
            ("POST", "faults"): self._set_faults,
            ("GET", "throttling"): lambda r: json_response(200, self.app.throttler.config.to_json()),
            ("POST", "throttling"): self._set_throttling,
            ("GET", "latency"): lambda r: json_response(200, self.app.config.latency.to_json()),
            ("POST", "latency"): self._set_latency,
            ("GET", "lro"): lambda r: json_response(200, self.app.config.lro.to_json()),
            ("POST", "lro"): self._set_lro,
            ("GET", "clock"): self._clock,
            ("POST", "clock"): self._advance_clock,
            ("GET", "run-commands"): self._run_commands,
            ("POST", "run-commands"): self._program_run_command,
            ("POST", "reset"): self._reset,
        }

    def handle(self, request: Request, path: str) -> Response:
        name = path[len("/_sim") :].strip("/").lower()
        handler = self._routes.get((request.method, name))
        try:
            if handler is None:
                methods = sorted(method for method, route in self._routes if route == name)
                if methods:
                    raise ControlError(405, f"{request.method} not allowed on /_sim/{name}; use {', '.join(methods)}")
                raise ControlError(404, f"no control endpoint /_sim/{name}")
            return handler(request)
        except ControlError as error:
            return _error(error.status, error.message)
        except (KeyError, ValueError, TypeError) as error:
            return _error(400, f"bad request: {error}")

    # ------------------------------------------------------------------ handlers
    def _index(self, _: Request) -> Response:
        endpoints = sorted({f"{method} /_sim/{name}".rstrip("/") for method, name in self._routes})
        return json_response(200, {"endpoints": endpoints})

    def _requests(self, request: Request) -> Response:
        since = int(request.args.get("since", "0"))
        records = self.app.state.requests(since)
        return json_response(200, {"value": [r.to_json() for r in records], "next": self.app.state.next_request_index})

    def _set_power_state(self, request: Request) -> Response:
        body = _json(request)
        self.app.state.set_power_state(str(body["id"]), PowerState(body["powerState"]))
        return _value(self.app.state.vms_json())

    def _arc_servers(self, _: Request) -> Response:
        with self.app.state.lock:
            return _value([arc_json(arc) for arc in self.app.state.arc_servers.values()])

    def _set_arc_status(self, request: Request) -> Response:
        body = _json(request)
        self.app.state.set_arc_status(str(body["id"]), ArcStatus(body["status"]))
        return self._arc_servers(request)

    def _run_commands(self, _: Request) -> Response:
        """Run commands now, every script execution so far, and the programmed outcomes."""
        book = self.app.state.run_commands
        now = self.app.clock.now()
        with book.lock:
            return json_response(
                200,
                {
                    "value": [record.to_json(now) for record in book.records.values()],
                    "executions": book.executions_of(),
                    "outcomes": {key: outcome.to_json() for key, outcome in book.outcomes.items()},
                },
            )

    def _program_run_command(self, request: Request) -> Response:
        """Program what scripts do on one machine (``id``) or on all (``"*"``), optionally only in
        run commands whose name contains ``nameContains`` (prepost's names hold ``-pre-``/``-post-``)."""
        body = _json(request)
        outcome = ScriptOutcome.from_json(body)
        machine = str(body.get("id") or "*")
        book = self.app.state.run_commands
        with book.lock:
            book.program(machine, outcome, name_contains=str(body.get("nameContains") or ""))
        return self._run_commands(request)

    def _add_run(self, request: Request) -> Response:
        body = _json(request)
        run = self.app.state.add_run(
            str(body["correlationId"]),
            [str(i) for i in body["resourceIds"]],
            str(body.get("status", "Pending")),
        )
        return json_response(201, run_json(run))

    def _set_faults(self, request: Request) -> Response:
        self.app.faults.configure(FaultConfig.from_json(_json(request)))
        return json_response(200, self.app.faults.config.to_json())

    def _set_throttling(self, request: Request) -> Response:
        self.app.throttler.configure(ThrottleConfig.from_json(_json(request)))
        return json_response(200, self.app.throttler.config.to_json())

    def _set_latency(self, request: Request) -> Response:
        self.app.config.latency = LatencyConfig.from_json(_json(request))
        return json_response(200, self.app.config.latency.to_json())

    def _set_lro(self, request: Request) -> Response:
        self.app.config.lro = LroConfig.from_json(_json(request))
        return json_response(200, self.app.config.lro.to_json())

    def _clock(self, _: Request) -> Response:
        clock = self.app.clock
        return json_response(200, {"now": iso(clock.now()), "manual": isinstance(clock, ManualClock)})

    def _advance_clock(self, request: Request) -> Response:
        clock = self.app.clock
        if not isinstance(clock, ManualClock):
            raise ControlError(409, "the simulator runs on the system clock; start it with a ManualClock to move time")
        clock.advance(float(_json(request)["advanceSeconds"]))
        return self._clock(request)

    def _reset(self, _: Request) -> Response:
        self.app.reset()
        return empty_response(204)


def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as error:
        raise ControlError(400, f"the body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def _value(items: list[Any]) -> Response:
    return json_response(200, {"value": items})


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": {"code": "SimulatorControlError", "message": message}})
