"""Fault injection: random faults per operation, and deterministic rules for tests.

A fault is decided before the request's handler runs, so an injected fault never applies the
side effect (a 500 on a snapshot PUT creates nothing). The one exception is by design: a rule
with ``on_completion=True`` lets a long-running operation be accepted (202) and then end
``Failed``, again without the side effect, the way a VM start can fail after acceptance.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .ops import WILDCARD, known


class FaultKind(str, Enum):
    THROTTLE = "throttle"
    """429 ``TooManyRequests`` with ``Retry-After``."""
    ERROR = "error"
    """An error status with an ARM error body (500 ``InternalServerError`` for random faults)."""
    TIMEOUT = "timeout"
    """The server holds the request, then closes the connection without answering."""
    FAILED_OPERATION = "failedOperation"
    """A long-running operation is accepted, then its status ends ``Failed``."""


@dataclass(frozen=True)
class FaultSpec:
    """Random faults for one operation: probabilities (0..1) of a 429, a 500 and a timeout."""

    throttle: float = 0.0
    error: float = 0.0
    timeout: float = 0.0
    retry_after: int = 1
    """``Retry-After`` seconds sent with an injected 429."""
    timeout_seconds: float = 30.0
    """How long a timed-out request is held before the connection is closed. Make it longer than
    the client's read timeout."""

    def to_json(self) -> dict[str, Any]:
        return {
            "throttle": self.throttle,
            "error": self.error,
            "timeout": self.timeout,
            "retryAfter": self.retry_after,
            "timeoutSeconds": self.timeout_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultSpec:
        spec = cls(
            throttle=float(data.get("throttle", 0.0)),
            error=float(data.get("error", 0.0)),
            timeout=float(data.get("timeout", 0.0)),
            retry_after=int(data.get("retryAfter", 1)),
            timeout_seconds=float(data.get("timeoutSeconds", 30.0)),
        )
        if spec.throttle + spec.error + spec.timeout > 1.0 or min(spec.throttle, spec.error, spec.timeout) < 0:
            raise ValueError("fault probabilities must be >= 0 and add up to at most 1")
        return spec


@dataclass
class FaultRule:
    """A deterministic fault: fail the next ``times`` calls of ``operation`` (``None``: every call),
    optionally only those whose path or body contains ``resource_contains`` (case-insensitive)."""

    operation: str
    status: int = 500
    times: int | None = 1
    resource_contains: str | None = None
    timeout: bool = False
    """Hold and close instead of answering ``status``."""
    on_completion: bool = False
    """For long-running operations: accept (202), then end the operation ``Failed`` with ``code``."""
    code: str | None = None
    message: str | None = None
    retry_after: int = 1
    timeout_seconds: float = 30.0
    fired: int = 0
    """How many times the rule has fired so far."""

    def __post_init__(self) -> None:
        if not known(self.operation):
            raise ValueError(f"unknown operation name: {self.operation!r}")

    def matches(self, operation: str, target: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.operation not in (WILDCARD, operation):
            return False
        return self.resource_contains is None or self.resource_contains.lower() in target.lower()

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "status": self.status,
            "times": self.times,
            "resourceContains": self.resource_contains,
            "timeout": self.timeout,
            "onCompletion": self.on_completion,
            "code": self.code,
            "message": self.message,
            "retryAfter": self.retry_after,
            "timeoutSeconds": self.timeout_seconds,
            "fired": self.fired,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        return cls(
            operation=str(data["operation"]),
            status=int(data.get("status", 500)),
            times=None if data.get("times", 1) is None else int(data.get("times", 1)),
            resource_contains=data.get("resourceContains"),
            timeout=bool(data.get("timeout", False)),
            on_completion=bool(data.get("onCompletion", False)),
            code=data.get("code"),
            message=data.get("message"),
            retry_after=int(data.get("retryAfter", 1)),
            timeout_seconds=float(data.get("timeoutSeconds", 30.0)),
        )


@dataclass
class FaultConfig:
    """Random faults per operation name (or ``"*"``), deterministic rules, and the random seed."""

    operations: dict[str, FaultSpec] = field(default_factory=dict)
    rules: list[FaultRule] = field(default_factory=list)
    seed: int | None = 0

    def __post_init__(self) -> None:
        for name in self.operations:
            if not known(name):
                raise ValueError(f"unknown operation name: {name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "operations": {name: spec.to_json() for name, spec in self.operations.items()},
            "rules": [rule.to_json() for rule in self.rules],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Parse the ``POST /_sim/faults`` body."""
        return cls(
            operations={name: FaultSpec.from_json(spec) for name, spec in (data.get("operations") or {}).items()},
            rules=[FaultRule.from_json(rule) for rule in data.get("rules") or []],
            seed=data.get("seed", 0),
        )


@dataclass(frozen=True)
class Fault:
    """A decided fault for one request."""

    kind: FaultKind
    status: int
    code: str | None = None
    message: str | None = None
    retry_after: int = 1
    timeout_seconds: float = 30.0


class FaultInjector:
    """Decides, per request, whether to inject a fault. Thread-safe; random draws are seeded."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config
            self._random = random.Random(config.seed)

    def add_rule(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._config.rules.append(rule)
        return rule

    def decide(self, operation: str, target: str, *, long_running: bool) -> Fault | None:
        """The fault for a call of ``operation`` whose path/body text is ``target``, or None."""
        with self._lock:
            for rule in self._config.rules:
                if not rule.matches(operation, target):
                    continue
                if rule.on_completion and not long_running:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                rule.fired += 1
                if rule.timeout:
                    return Fault(FaultKind.TIMEOUT, 0, timeout_seconds=rule.timeout_seconds)
                if rule.on_completion:
                    return Fault(FaultKind.FAILED_OPERATION, rule.status, rule.code, rule.message)
                kind = FaultKind.THROTTLE if rule.status == 429 else FaultKind.ERROR
                return Fault(kind, rule.status, rule.code, rule.message, retry_after=rule.retry_after)
            spec = self._config.operations.get(operation) or self._config.operations.get(WILDCARD)
            if spec is None:
                return None
            draw = self._random.random()
            if draw < spec.throttle:
                return Fault(FaultKind.THROTTLE, 429, retry_after=spec.retry_after)
            if draw < spec.throttle + spec.error:
                return Fault(FaultKind.ERROR, 500)
            if draw < spec.throttle + spec.error + spec.timeout:
                return Fault(FaultKind.TIMEOUT, 0, timeout_seconds=spec.timeout_seconds)
            return None
