"""Request budgets: ARM's per-subscription token buckets, Compute's own policies and Resource
Graph's per-caller quota.

ARM (since 2024) keeps a token bucket per subscription and region for reads, writes and deletes
(250 refilling 25/s, 200 refilling 10/s, 200 refilling 10/s); Compute adds named policies
reported in ``x-ms-ratelimit-remaining-resource``; Resource Graph allows about 15 queries per
5 seconds per user. See
https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling
and https://learn.microsoft.com/azure/governance/resource-graph/concepts/guidance-for-throttled-requests.

All budgets read the injectable clock, so a test can exhaust a bucket, advance the clock and
see it refill without sleeping. The simulator ignores regions: one bucket per subscription.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any

from .clock import Clock


class RequestKind(str, Enum):
    """ARM's three budgets, chosen by HTTP method."""

    READS = "reads"
    WRITES = "writes"
    DELETES = "deletes"

    @classmethod
    def of(cls, method: str) -> RequestKind:
        if method in ("GET", "HEAD"):
            return cls.READS
        if method == "DELETE":
            return cls.DELETES
        return cls.WRITES


@dataclass(frozen=True)
class BucketConfig:
    """A token bucket: ``capacity`` tokens, refilled at ``refill_per_second``."""

    capacity: int
    refill_per_second: float


@dataclass(frozen=True)
class ComputePolicy:
    """A Compute throttling policy (per subscription here), e.g. ``LowCostGet3Min``: ``capacity``
    calls refilled evenly over ``window_seconds``, shared by ``operations``."""

    name: str
    capacity: int
    window_seconds: float
    operations: tuple[str, ...]

    @property
    def bucket(self) -> BucketConfig:
        return BucketConfig(self.capacity, self.capacity / self.window_seconds)


@dataclass(frozen=True)
class GraphQuota:
    """Resource Graph's per-caller quota: ``queries`` per fixed window of ``window_seconds``."""

    queries: int = 15
    window_seconds: float = 5.0


DEFAULT_COMPUTE_POLICIES: tuple[ComputePolicy, ...] = (
    # Names follow the shape Compute reports; the limits are generous stand-ins, not Azure's table.
    ComputePolicy("LowCostGet3Min", 4000, 180.0, ("vm.get",)),
    ComputePolicy("UpdateVM3Min", 1500, 180.0, ("vm.start", "vm.deallocate")),
    ComputePolicy("GetDisk3Min", 5000, 180.0, ("disks.get", "snapshots.get", "snapshots.list")),
    ComputePolicy("PutDeleteSnapshot3Min", 1000, 180.0, ("snapshots.create", "snapshots.delete")),
    ComputePolicy("GetOperation3Min", 10000, 180.0, ("operations.get",)),
)


@dataclass(frozen=True)
class ThrottleConfig:
    """All request budgets. ``enabled=False`` still reports remaining budgets but never answers 429."""

    enabled: bool = True
    reads: BucketConfig = BucketConfig(250, 25.0)
    writes: BucketConfig = BucketConfig(200, 10.0)
    deletes: BucketConfig = BucketConfig(200, 10.0)
    resource_graph: GraphQuota = GraphQuota()
    compute: tuple[ComputePolicy, ...] = DEFAULT_COMPUTE_POLICIES

    def bucket(self, kind: RequestKind) -> BucketConfig:
        return {
            RequestKind.READS: self.reads,
            RequestKind.WRITES: self.writes,
            RequestKind.DELETES: self.deletes,
        }[kind]

    def policy_for(self, operation: str) -> ComputePolicy | None:
        return next((policy for policy in self.compute if operation in policy.operations), None)

    def to_json(self) -> dict[str, Any]:
        def bucket(config: BucketConfig) -> dict[str, Any]:
            return {"capacity": config.capacity, "refillPerSecond": config.refill_per_second}

        return {
            "enabled": self.enabled,
            "reads": bucket(self.reads),
            "writes": bucket(self.writes),
            "deletes": bucket(self.deletes),
            "resourceGraph": {
                "queries": self.resource_graph.queries,
                "windowSeconds": self.resource_graph.window_seconds,
            },
            "compute": [
                {
                    "name": policy.name,
                    "capacity": policy.capacity,
                    "windowSeconds": policy.window_seconds,
                    "operations": list(policy.operations),
                }
                for policy in self.compute
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThrottleConfig:
        """Parse the ``POST /_sim/throttling`` body; keys left out keep their defaults."""
        base = cls()

        def bucket(name: str, default: BucketConfig) -> BucketConfig:
            raw = data.get(name)
            if raw is None:
                return default
            return BucketConfig(
                int(raw.get("capacity", default.capacity)),
                float(raw.get("refillPerSecond", default.refill_per_second)),
            )

        graph = data.get("resourceGraph") or {}
        compute = base.compute
        if "compute" in data:
            compute = tuple(
                ComputePolicy(
                    str(item["name"]),
                    int(item["capacity"]),
                    float(item.get("windowSeconds", 180.0)),
                    tuple(item.get("operations", ())),
                )
                for item in data["compute"]
            )
        return replace(
            base,
            enabled=bool(data.get("enabled", True)),
            reads=bucket("reads", base.reads),
            writes=bucket("writes", base.writes),
            deletes=bucket("deletes", base.deletes),
            resource_graph=GraphQuota(
                int(graph.get("queries", base.resource_graph.queries)),
                float(graph.get("windowSeconds", base.resource_graph.window_seconds)),
            ),
            compute=compute,
        )


@dataclass
class TokenBucket:
    """A token bucket that refills lazily from the clock."""

    config: BucketConfig
    tokens: float
    updated: datetime

    def _refill(self, now: datetime) -> None:
        elapsed = max(0.0, (now - self.updated).total_seconds())
        self.tokens = min(float(self.config.capacity), self.tokens + elapsed * self.config.refill_per_second)
        self.updated = now

    def take(self, now: datetime) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def remaining(self, now: datetime) -> int:
        self._refill(now)
        return int(self.tokens)

    def seconds_until_token(self, now: datetime) -> int:
        """Whole seconds until the next token (at least 1): the ``Retry-After`` to answer."""
        self._refill(now)
        missing = max(0.0, 1.0 - self.tokens)
        if self.config.refill_per_second <= 0:
            return 3600
        return max(1, math.ceil(missing / self.config.refill_per_second))


@dataclass
class _QuotaWindow:
    started: datetime
    used: int = 0


@dataclass(frozen=True)
class Verdict:
    """The outcome of charging a request: allowed or not, with headers to send either way."""

    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int = 0
    policy: str | None = None
    """Which budget ran out: ``subscription-reads``, a Compute policy name, or ``resource-graph``."""


class Throttler:
    """Charges requests against the configured budgets. Thread-safe."""

    def __init__(self, config: ThrottleConfig, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.configure(config)

    @property
    def config(self) -> ThrottleConfig:
        return self._config

    def configure(self, config: ThrottleConfig) -> None:
        """Replace the configuration and start every bucket full."""
        with self._lock:
            self._config = config
            self._buckets: dict[tuple[str, str], TokenBucket] = {}
            self._graph: dict[str, _QuotaWindow] = {}

    def _bucket(self, key: tuple[str, str], config: BucketConfig, now: datetime) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(config, float(config.capacity), now)
        return bucket

    def charge_arm(self, subscription_id: str, method: str, operation: str | None) -> Verdict:
        """Charge an ARM request to its subscription's bucket (and Compute policy, if any)."""
        kind = RequestKind.of(method)
        now = self._clock.now()
        with self._lock:
            config = self._config
            bucket = self._bucket((subscription_id.lower(), kind.value), config.bucket(kind), now)
            headers: dict[str, str] = {}
            policy = config.policy_for(operation) if operation else None
            policy_bucket = (
                self._bucket((subscription_id.lower(), "compute:" + policy.name), policy.bucket, now)
                if policy
                else None
            )
            allowed = bucket.take(now) or not config.enabled
            failed_policy = None if allowed else f"subscription-{kind.value}"
            retry_after = 0 if allowed else bucket.seconds_until_token(now)
            if allowed and policy and policy_bucket is not None and not policy_bucket.take(now) and config.enabled:
                allowed, failed_policy = False, policy.name
                retry_after = policy_bucket.seconds_until_token(now)
            headers[f"x-ms-ratelimit-remaining-subscription-{kind.value}"] = str(bucket.remaining(now))
            if policy and policy_bucket is not None:
                headers["x-ms-ratelimit-remaining-resource"] = (
                    f"Microsoft.Compute/{policy.name};{policy_bucket.remaining(now)}"
                )
            if not allowed:
                headers["Retry-After"] = str(retry_after)
            return Verdict(allowed, headers, retry_after, failed_policy)

    def charge_graph(self, caller: str) -> Verdict:
        """Charge a Resource Graph query to the caller's quota window."""
        now = self._clock.now()
        with self._lock:
            quota = self._config.resource_graph
            window = self._graph.get(caller)
            if window is None or (now - window.started).total_seconds() >= quota.window_seconds:
                window = self._graph[caller] = _QuotaWindow(now)
            allowed = window.used < quota.queries or not self._config.enabled
            if window.used < quota.queries:
                window.used += 1
            left = max(0.0, quota.window_seconds - (now - window.started).total_seconds())
            headers = {
                "x-ms-user-quota-remaining": str(max(0, quota.queries - window.used)),
                "x-ms-user-quota-resets-after": _hhmmss(left),
            }
            retry_after = 0
            if not allowed:
                retry_after = max(1, math.ceil(left))
                headers["Retry-After"] = str(retry_after)
            return Verdict(allowed, headers, retry_after, None if allowed else "resource-graph")


def _hhmmss(seconds: float) -> str:
    whole = math.ceil(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
