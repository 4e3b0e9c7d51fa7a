"""Client-side pacing of ARM requests, per subscription and operation class, shared by every task
of one instance.

Why: ARM throttles each subscription with token buckets (reads 250 refilling 25/s, writes 200
refilling 10/s, deletes 200 refilling 10/s) and reports what is left in
``x-ms-ratelimit-remaining-subscription-reads|writes|deletes``; Compute adds its own policies,
reported as ``x-ms-ratelimit-remaining-resource: Microsoft.Compute/<policy>;<count>`` (one header
per policy, which an HTTP client may join with commas); Resource Graph allows about 15 queries per
5 seconds per caller and reports ``x-ms-user-quota-remaining`` and
``x-ms-user-quota-resets-after`` (``hh:mm:ss``). Sources:
https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling
https://learn.microsoft.com/troubleshoot/azure/virtual-machines/troubleshooting-throttling-errors
https://learn.microsoft.com/azure/governance/resource-graph/concepts/guidance-for-throttled-requests

How: :class:`RateControl` keeps a model of each bucket (same sizes as ARM's), spends a token
before each request and lowers the model to whatever ARM says is left after it, so the work of
all tasks on the instance slows down before ARM answers 429, not after. A request waits for its
token only when the wait is short (``max_wait``, a few seconds); a longer wait raises
:class:`~shared.errors.Deferred` before anything is sent, and the task runner puts the message
back with that delay, as it does for a 429's ``Retry-After`` (a function never sleeps long). A
429 closes the bucket for the whole instance until its ``Retry-After``. At most
``max_in_flight`` requests per subscription are on the wire at once.

Across instances nothing is shared, on purpose: ARM's own count, returned on every answer, is
the shared state. Each instance lowers its model to it, so what other instances spent is seen
one answer later. A shared lease in Table storage would cost a storage round trip per ARM call
(more than the call it guards) and could still not see other clients of the subscription.
Each instance also learns what share of the refill is its own: when ARM's count is lower than
its model by more than the answer's travel explains, others are spending the same bucket, and it
counts on less of the refill (multiplicative decrease); while the counts agree it takes back more
(additive increase). See docs/rate-control.md.
"""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum

from azure.core.pipeline.policies import HTTPPolicy

from shared.errors import Deferred
from shared.ports.send_guard import check_before_sending

SUBSCRIPTION_HEADER = "x-ms-ratelimit-remaining-subscription-"
RESOURCE_HEADER = "x-ms-ratelimit-remaining-resource"
GRAPH_REMAINING = "x-ms-user-quota-remaining"
GRAPH_RESETS_AFTER = "x-ms-user-quota-resets-after"
GRAPH_KEY = "resource-graph"


class OperationClass(str, Enum):
    """ARM's three budgets, chosen by HTTP method."""

    READS = "reads"
    WRITES = "writes"
    DELETES = "deletes"

    @classmethod
    def of(cls, method: str) -> OperationClass:
        method = method.upper()
        if method in ("GET", "HEAD"):
            return cls.READS
        if method == "DELETE":
            return cls.DELETES
        return cls.WRITES


@dataclass(frozen=True)
class Bucket:
    """A token bucket: ``capacity`` tokens, refilled at ``refill_per_second``."""

    capacity: int
    refill_per_second: float


AZURE_BUCKETS: Mapping[OperationClass, Bucket] = {
    OperationClass.READS: Bucket(250, 25.0),
    OperationClass.WRITES: Bucket(200, 10.0),
    OperationClass.DELETES: Bucket(200, 10.0),
}
"""ARM's per-subscription buckets since 2024 (request-limits-and-throttling, "Regional throttling
and token bucket algorithm")."""

GRAPH_QUOTA = Bucket(15, 3.0)
"""Resource Graph: about 15 queries per 5 seconds per caller, modelled as a bucket of 15 refilling 3/s."""


@dataclass(frozen=True)
class RateHeaders:
    """The remaining budgets one ARM answer reported."""

    subscription: Mapping[OperationClass, int] = field(default_factory=dict)
    resource: Mapping[str, int] = field(default_factory=dict)
    """Compute policy (``Microsoft.Compute/HighCostGet3Min``) to calls left."""
    graph_remaining: int | None = None
    graph_resets_after: float | None = None
    retry_after: float | None = None


_RESOURCE_ITEM = re.compile(r"^\s*([^;,\s]+/[^;,\s]+)\s*;\s*(-?\d+)\s*$")


def parse_rate_headers(headers: Mapping[str, str]) -> RateHeaders:
    """Read the rate-limit headers of an answer; malformed values are left out, never raised."""
    lowered = {str(name).lower(): str(value) for name, value in headers.items()}
    subscription: dict[OperationClass, int] = {}
    for kind in OperationClass:
        value = _int(lowered.get(SUBSCRIPTION_HEADER + kind.value))
        if value is not None:
            subscription[kind] = value
    resource: dict[str, int] = {}
    # Several policies come as several headers; requests joins them with ", ".
    for item in (lowered.get(RESOURCE_HEADER) or "").split(","):
        match = _RESOURCE_ITEM.match(item)
        if match:
            resource[match[1]] = int(match[2])
    return RateHeaders(
        subscription=subscription,
        resource=resource,
        graph_remaining=_int(lowered.get(GRAPH_REMAINING)),
        graph_resets_after=_hhmmss(lowered.get(GRAPH_RESETS_AFTER)),
        retry_after=_retry_after(lowered),
    )


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _hhmmss(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parts = [float(part) for part in value.strip().split(":")]
    except ValueError:
        return None
    if len(parts) != 3 or any(part < 0 or math.isnan(part) for part in parts):
        return None
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    milliseconds = headers.get("retry-after-ms") or headers.get("x-ms-retry-after-ms")
    try:
        if milliseconds:
            return max(0.0, float(milliseconds) / 1000)
        if headers.get("retry-after"):
            return max(0.0, float(headers["retry-after"]))
    except ValueError:
        return None
    return None


@dataclass(frozen=True)
class Target:
    """Which budgets a request is charged to."""

    key: str
    """The subscription id (lower case), or :data:`GRAPH_KEY`."""
    kind: OperationClass
    resource_kind: str | None = None
    """``METHOD provider/type[/action]`` for provider requests: learns which Compute policies apply."""

    @classmethod
    def of(cls, method: str, url: str) -> Target | None:
        """The target of a request, or None for requests outside any subscription budget."""
        path = url.split("?", 1)[0]
        lowered = path.lower()
        if "/providers/microsoft.resourcegraph/" in lowered:
            return cls(GRAPH_KEY, OperationClass.READS)
        match = re.search(r"/subscriptions/([^/]+)", path, re.IGNORECASE)
        if match is None:
            return None
        provider = re.search(r"/providers/([^/]+/[^/]+)(?:/[^/]+)?(/[^/]+)?$", path)
        resource_kind = None
        if provider:
            resource_kind = f"{method.upper()} {provider[1].lower()}{(provider[2] or '').lower()}"
        return cls(match[1].lower(), OperationClass.of(method), resource_kind)


MIN_SHARE = 0.02
"""The smallest part of a bucket's refill one instance counts on (1/50: fifty busy instances)."""
ADJUST_EVERY = 1.0
DECREASE = 0.7
INCREASE = 0.05


@dataclass
class _Model:
    bucket: Bucket
    tokens: float
    updated: float
    closed_until: float = 0.0
    share: float = 1.0
    """The part of the refill this instance counts on: lowered when ARM's count shows others
    spending the same bucket, raised slowly again while it does not (additive increase,
    multiplicative decrease)."""

    @property
    def refill_per_second(self) -> float:
        return self.bucket.refill_per_second * self.share

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.bucket.capacity), self.tokens + elapsed * self.refill_per_second)
        self.updated = now

    adjusted: float = float("-inf")

    def follow(self, remaining: int, now: float) -> None:
        """Lower the model to ARM's count; learn from the gap whether others share the bucket.

        The share changes at most once per :data:`ADJUST_EVERY` seconds, however many answers
        come back meanwhile: they tell the same story.
        """
        # A gap wider than what refilled while the answer travelled is someone else's spending.
        tolerance = 2.0 + self.bucket.refill_per_second * 0.5
        if now - self.adjusted >= ADJUST_EVERY:
            if remaining < self.tokens - tolerance:
                self.share, self.adjusted = max(MIN_SHARE, self.share * DECREASE), now
            elif remaining >= self.tokens and self.share < 1.0:
                self.share, self.adjusted = min(1.0, self.share + INCREASE), now
        self.tokens = min(self.tokens, float(remaining))


@dataclass
class _Policy:
    remaining: int
    next_at: float = 0.0


class RateControl:
    """The pacing state of one instance: bucket models, Compute policies, in-flight slots.

    Thread-safe: the host runs several tasks of an instance at once, and every management client
    of the instance carries the same :class:`ArmRatePolicy` around this one object.
    """

    def __init__(
        self,
        *,
        buckets: Mapping[OperationClass, Bucket] = AZURE_BUCKETS,
        graph: Bucket = GRAPH_QUOTA,
        max_wait: float = 3.0,
        max_in_flight: int = 16,
        reserve: int = 2,
        resource_reserve: int = 5,
        resource_spacing: float = 1.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        spread: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` and ``sleep`` default to the app's clock (``shared.clock``), so the model
        keeps ARM's time even when a harness runs the app on a faster clock."""
        self.buckets = dict(buckets)
        self.graph = graph
        self.max_wait = max_wait
        self.max_in_flight = max_in_flight
        self.reserve = reserve
        self.resource_reserve = resource_reserve
        self.resource_spacing = resource_spacing
        self._spread = spread or random.random
        self._clock = clock or _app_seconds
        self._sleep = sleep or _app_sleep
        self._time_scale = _app_time_scale if clock is None else (lambda: 1.0)
        self._lock = threading.Lock()
        self._models: dict[tuple[str, OperationClass], _Model] = {}
        self._policies: dict[tuple[str, str], _Policy] = {}
        self._policies_of: dict[tuple[str, str], set[str]] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._kind_closed: dict[tuple[str, str], float] = {}
        self.waited = 0.0
        """Seconds spent waiting for tokens on this instance (for the bench)."""
        self.deferred = 0
        """Requests put off (``Deferred`` raised) on this instance."""

    # -- decisions ------------------------------------------------------------------------

    def _model(self, target: Target, now: float) -> _Model:
        key = (target.key, target.kind)
        model = self._models.get(key)
        if model is None:
            bucket = self.graph if target.key == GRAPH_KEY else self.buckets[target.kind]
            model = self._models[key] = _Model(bucket, float(bucket.capacity), now)
        model.refill(now)
        return model

    def reserve_token(self, target: Target) -> float:
        """Spend a token for ``target``; the seconds to wait before sending (0: send now).

        Raises :class:`~shared.errors.Deferred` (spending nothing) when the wait would exceed
        ``max_wait``: the caller puts the work off instead of sleeping, for that wait stretched
        by a random part of it (``spread``, 0 to 1), so work put off together returns spread out.
        """
        now = self._clock()
        with self._lock:
            model = self._model(target, now)
            closed = self._kind_closed.get((target.key, target.resource_kind or target.kind.value), 0.0)
            wait = max(0.0, model.closed_until - now, closed - now)
            reserve = 0 if target.key == GRAPH_KEY else self.reserve
            after = model.tokens - 1.0
            bucket_wait = (reserve - after) / model.refill_per_second if after < reserve else 0.0
            wait = max(wait, bucket_wait)
            policy_wait, policy_names = self._policy_wait(target, now)
            wait = max(wait, policy_wait)
            if wait > self.max_wait:
                self.deferred += 1
                if bucket_wait >= wait:
                    # Spread the returns over a while as long again, so that the work put off
                    # together does not come back together to find the bucket empty again.
                    wait *= 1.0 + self._spread()
                raise Deferred(
                    f"ARM {target.kind.value} budget of {target.key} is spent; putting the work off {wait:.1f} s",
                    retry_after=timedelta(seconds=math.ceil(wait)),
                )
            model.tokens = after
            for name in policy_names:
                policy = self._policies[(target.key, name)]
                if policy.remaining <= self.resource_reserve:
                    policy.next_at = max(policy.next_at, now) + self.resource_spacing
            self.waited += wait
            return wait

    def _policy_wait(self, target: Target, now: float) -> tuple[float, set[str]]:
        """Compute policies low on calls space their requests ``resource_spacing`` apart; their
        refill is not published, so a low count is followed instead of a modelled rate."""
        if target.resource_kind is None:
            return 0.0, set()
        names = self._policies_of.get((target.key, target.resource_kind), set())
        wait = 0.0
        for name in names:
            policy = self._policies[(target.key, name)]
            if policy.remaining <= self.resource_reserve:
                wait = max(wait, policy.next_at - now)
        return wait, names

    def observe(self, target: Target, status: int, headers: Mapping[str, str]) -> RateHeaders:
        """Lower the models to what ARM says is left; a 429 closes the budget until ``Retry-After``."""
        seen = parse_rate_headers(headers)
        now = self._clock()
        with self._lock:
            model = self._model(target, now)
            remaining = seen.graph_remaining if target.key == GRAPH_KEY else seen.subscription.get(target.kind)
            if remaining is not None:
                model.follow(remaining, now)
            for name, left in seen.resource.items():
                policy = self._policies.setdefault((target.key, name), _Policy(left))
                policy.remaining = left
                if target.resource_kind is not None:
                    self._policies_of.setdefault((target.key, target.resource_kind), set()).add(name)
            if status == 429:
                wait = seen.retry_after
                if wait is None and target.key == GRAPH_KEY:
                    wait = seen.graph_resets_after
                wait = 1.0 if wait is None else wait
                exhausted = [name for name, left in seen.resource.items() if left <= 0]
                if remaining is not None and remaining <= 0:
                    # The subscription's bucket itself is empty: every request of the class waits,
                    # and this instance counts on half as much of the refill from now on.
                    model.closed_until = max(model.closed_until, now + wait)
                    model.tokens = min(model.tokens, 0.0)
                    model.share, model.adjusted = max(MIN_SHARE, model.share * 0.5), now
                elif exhausted:
                    # A Compute policy ran out: hold only the requests that policy covers.
                    for name in exhausted:
                        policy = self._policies[(target.key, name)]
                        policy.next_at = max(policy.next_at, now + wait)
                else:
                    # Throttled by something the headers do not name (a provider's own limit):
                    # hold requests of the same kind, let the others go.
                    kind = (target.key, target.resource_kind or target.kind.value)
                    self._kind_closed[kind] = max(self._kind_closed.get(kind, 0.0), now + wait)
        return seen

    # -- concurrency ----------------------------------------------------------------------

    @contextmanager
    def slot(self, target: Target, timeout: float) -> Iterator[None]:
        """One of the subscription's ``max_in_flight`` places on the wire, for the request's length."""
        with self._lock:
            semaphore = self._slots.get(target.key)
            if semaphore is None:
                semaphore = self._slots[target.key] = threading.BoundedSemaphore(self.max_in_flight)
        # ``timeout`` is in the app's seconds; the semaphore waits in real ones.
        if not semaphore.acquire(timeout=max(0.0, timeout) / self._time_scale()):
            with self._lock:
                self.deferred += 1
            raise Deferred(
                f"{self.max_in_flight} ARM requests to {target.key} already in flight on this instance",
                retry_after=timedelta(seconds=max(1, math.ceil(self.max_wait))),
            )
        try:
            yield
        finally:
            semaphore.release()

    def admit(self, target: Target) -> float:
        """Wait (at most ``max_wait``) until a request to ``target`` may be sent; the seconds waited."""
        wait = self.reserve_token(target)
        if wait > 0:
            self._sleep(wait)
        return wait

    def snapshot(self) -> dict[str, float]:
        """The modelled tokens per budget, for people and tests."""
        now = self._clock()
        with self._lock:
            out = {}
            for (key, kind), model in self._models.items():
                model.refill(now)
                out[f"{key}/{kind.value}"] = round(model.tokens, 2)
            return out


def _app_seconds() -> float:
    from shared.clock import utcnow

    return utcnow().timestamp()


def _app_time_scale() -> float:
    from shared.clock import time_scale

    return time_scale()


def _app_sleep(seconds: float) -> None:
    from shared.clock import sleep

    sleep(seconds)


def buckets_from(configured: Mapping[str, tuple[int, float]]) -> dict[OperationClass, Bucket]:
    """Azure's buckets, with the ones a setting gives (``PREPOST_ARM_BUCKETS``) replaced."""
    buckets = dict(AZURE_BUCKETS)
    for name, (capacity, refill) in configured.items():
        buckets[OperationClass(name)] = Bucket(capacity, refill)
    return buckets


class ArmRatePolicy(HTTPPolicy):
    """azure-core policy that paces each request through a shared :class:`RateControl`.

    Placed after the retry policy (``per_retry_policies``), so a retried request is paced too.
    A request that changes something is checked (:func:`~shared.ports.send_guard.check_before_sending`)
    once it holds its token and slot, right before it is sent.
    """

    def __init__(self, control: RateControl) -> None:
        super().__init__()
        self.control = control

    def send(self, request):
        http_request = request.http_request
        changes = http_request.method.upper() not in ("GET", "HEAD")
        target = Target.of(http_request.method, http_request.url)
        if target is None:
            if changes:
                check_before_sending()
            return self.next.send(request)
        waited = self.control.admit(target)
        with self.control.slot(target, timeout=self.control.max_wait - waited):
            # The caller's last look (shared.ports.send_guard), after the token's pacing and the
            # slot's wait and on each retry: whatever changed meanwhile still stops the request.
            if changes:
                check_before_sending()
            response = self.next.send(request)
        http_response = response.http_response
        self.control.observe(target, http_response.status_code, http_response.headers)
        return response
