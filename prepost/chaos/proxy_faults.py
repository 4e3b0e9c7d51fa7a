"""What the storage fault proxy does to each request: operation classes, fault plans and the seeded decision.

A request to Azurite is first given an *operation* name (``table.insert``, ``queue.send`` ...) from its method
and path, so a plan can aim at the calls whose failure matters (a lost ``queue.send`` duplicates a message, a
lost ``table.insert`` turns the retry into a 409). The plan then decides, per request, one of five faults or
none, plus an extra delay:

``error500`` / ``error503``
    Answer 500 ``InternalError`` / 503 ``ServerBusy`` without forwarding: no side effect, the SDK retries.
``reset_before``
    Close the connection without forwarding or answering: a connection reset, no side effect.
``lost_response``
    Forward (the side effect happens upstream), then close without answering: the client retries work that
    was already done.
``timeout``
    Forward, hold the answer for ``timeout_seconds``, then close without answering.

Decisions come from one ``random.Random(seed)`` that draws exactly two numbers per request whatever the plan
says, so the same seed and the same request order give the same decisions, and a rule firing does not shift
the random faults of later requests.

Text form (the ``--faults`` option), parts separated by ``;``, whitespace ignored::

    plan     = [part *(";" part)]              ; empty text: no faults
    part     = setting / entry
    setting  = "latency=" MS                   ; default extra delay, uniform in [0, MS], of every request
             / "timeout_seconds=" SECONDS      ; how long a timeout fault holds the request (default 2)
             / "seed=" INT                     ; the random seed (default 0)
    entry    = target "=" item *("," item)
    target   = "*" / "queue.*" / "table.*" / OPERATION
    item     = kind ":" PROBABILITY            ; random: this fault with this probability (0..1)
             / kind "@" range                  ; rule: this fault on exactly these requests of the target
             / "latency:" MS                   ; this target's extra delay, instead of latency=
    kind     = "500" / "503" / "reset" / "lost" / "timeout"   ; or the FaultKind values (error500 ...)
    range    = N / N "-" M / N "-"             ; the target's Nth request (1-based), Nth to Mth, Nth onwards

For example ``*=500:0.02,503:0.02,reset:0.01,lost:0.01,timeout:0.005;table.batch=lost:0.05;latency=20``, or, for
a test, ``queue.send=lost@1-2`` (lose the responses to the first two message sends).

An operation takes its random rates (and latency) from the most specific entry that has any: its own, else
``queue.*`` / ``table.*``, else ``*``; an entry replaces the less specific ones entirely, it does not add to
them. The probabilities of one entry add up to at most 1. Rules are tried in the order given and the first
that covers the request wins over the random draw; a rule's requests are counted per target since the plan
was set. The JSON form (:meth:`FaultPlan.to_json`) holds the same information.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "OPERATIONS",
    "SERVICES",
    "TARGETS",
    "Decision",
    "FaultDecider",
    "FaultKind",
    "FaultPlan",
    "FaultRates",
    "FaultRule",
    "Service",
    "classify",
]

Service = Literal["queue", "table"]
SERVICES: tuple[Service, ...] = ("queue", "table")

#: Every operation name :func:`classify` can return.
OPERATIONS: frozenset[str] = frozenset(
    {
        "table.query",
        "table.insert",
        "table.update",
        "table.delete",
        "table.batch",
        "table.create",
        "table.other",
        "queue.send",
        "queue.receive",
        "queue.peek",
        "queue.delete",
        "queue.update",
        "queue.other",
    }
)
WILDCARD = "*"
#: Every name a plan entry or rule may aim at: the operations and the wildcards.
TARGETS: frozenset[str] = OPERATIONS | {WILDCARD, "queue.*", "table.*"}

DEFAULT_TIMEOUT_SECONDS = 2.0
_EPSILON = 1e-9  # 0.1 + 0.2 + 0.7 must count as 1


class FaultKind(str, Enum):
    """The faults the proxy can inject (see the module docstring)."""

    ERROR500 = "error500"
    ERROR503 = "error503"
    RESET_BEFORE = "reset_before"
    LOST_RESPONSE = "lost_response"
    TIMEOUT = "timeout"

    @property
    def forwards(self) -> bool:
        """True for the faults that let the request reach the upstream (its side effect happens)."""
        return self in (FaultKind.LOST_RESPONSE, FaultKind.TIMEOUT)

    @property
    def short_name(self) -> str:
        """The name used in the text form."""
        return _SHORT_NAMES[self]

    @classmethod
    def parse(cls, name: str) -> FaultKind:
        """A kind from its short name (``503``, ``lost`` ...) or its value (``error503`` ...)."""
        text = name.strip().lower()
        for kind in cls:
            if text in (kind.value, kind.short_name):
                return kind
        known = ", ".join(f"{kind.short_name} ({kind.value})" for kind in cls)
        raise ValueError(f"unknown fault kind {name.strip()!r}; known kinds: {known}")


_SHORT_NAMES = {
    FaultKind.ERROR500: "500",
    FaultKind.ERROR503: "503",
    FaultKind.RESET_BEFORE: "reset",
    FaultKind.LOST_RESPONSE: "lost",
    FaultKind.TIMEOUT: "timeout",
}


def _check_target(name: str) -> str:
    if name not in TARGETS:
        raise ValueError(f"unknown operation {name!r}; known: *, queue.*, table.*, {', '.join(sorted(OPERATIONS))}")
    return name


def _check_number(what: str, value: Any, *, upper: float | None = None) -> float:
    """``value`` as a finite float >= 0 (and <= ``upper``), or a ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (upper is not None and number > upper):
        bounds = f"between 0 and {upper:g}" if upper is not None else "0 or more"
        raise ValueError(f"{what} must be {bounds}, got {value!r}")
    return number


@dataclass(frozen=True)
class FaultRates:
    """Random faults for one target: the probability of each kind, and an extra delay.

    The probabilities are each in [0, 1] and add up to at most 1; with what is left no fault is injected.
    """

    error500: float = 0.0
    error503: float = 0.0
    reset_before: float = 0.0
    lost_response: float = 0.0
    timeout: float = 0.0
    latency_ms: float | None = None
    """Upper bound of a uniform extra delay for every request; None: the plan's ``latency_ms``."""

    def __post_init__(self) -> None:
        for kind in FaultKind:
            _check_number(f"probability of {kind.value}", getattr(self, kind.value), upper=1.0)
        if self.latency_ms is not None:
            _check_number("latency_ms", self.latency_ms)
        if self.total > 1.0 + _EPSILON:
            raise ValueError(f"fault probabilities add up to {self.total:g}, more than 1")

    @property
    def total(self) -> float:
        """The probability of some fault."""
        return sum(self.probability(kind) for kind in FaultKind)

    def probability(self, kind: FaultKind) -> float:
        return float(getattr(self, kind.value))

    def pick(self, draw: float) -> FaultKind | None:
        """The fault for a uniform ``draw`` in [0, 1): kinds take consecutive slices of [0, 1)."""
        edge = 0.0
        for kind in FaultKind:
            edge += self.probability(kind)
            if draw < edge:
                return kind
        return None

    def to_json(self) -> dict[str, float]:
        """The fields that are set (zero probabilities are left out)."""
        data = {kind.value: self.probability(kind) for kind in FaultKind if self.probability(kind)}
        if self.latency_ms is not None:
            data["latency_ms"] = self.latency_ms
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRates:
        _reject_unknown_keys("rates", data, {f.name for f in fields(cls)})
        return cls(**dict(data))


@dataclass(frozen=True)
class FaultRule:
    """A deterministic fault: ``kind`` on the ``first``-th to ``last``-th requests of ``operation``.

    Requests are numbered from 1 per target (an operation, or a wildcard counting all its operations) since
    the plan was set; ``last=None`` means every request from ``first`` on. ``FaultRule("queue.send",
    FaultKind.LOST_RESPONSE, last=2)`` loses the answers to the first two message sends.
    """

    operation: str
    kind: FaultKind
    first: int = 1
    last: int | None = None

    def __post_init__(self) -> None:
        _check_target(self.operation)
        if not isinstance(self.kind, FaultKind):
            object.__setattr__(self, "kind", FaultKind.parse(str(self.kind)))
        if isinstance(self.first, bool) or not isinstance(self.first, int) or self.first < 1:
            raise ValueError(f"rule on {self.operation}: first must be a whole number from 1, got {self.first!r}")
        if self.last is not None and (
            isinstance(self.last, bool) or not isinstance(self.last, int) or self.last < self.first
        ):
            raise ValueError(
                f"rule on {self.operation}: last must be a whole number >= first ({self.first}), got {self.last!r}"
            )

    def covers(self, number: int) -> bool:
        """True if the target's ``number``-th request is one of the rule's."""
        return self.first <= number and (self.last is None or number <= self.last)

    @property
    def range_text(self) -> str:
        if self.last is None:
            return f"{self.first}-"
        return str(self.first) if self.last == self.first else f"{self.first}-{self.last}"

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "kind": self.kind.value, "first": self.first, "last": self.last}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        _reject_unknown_keys("rule", data, {"operation", "kind", "first", "last"})
        if "operation" not in data or "kind" not in data:
            raise ValueError(f"a rule needs an operation and a kind, got {dict(data)!r}")
        return cls(
            operation=str(data["operation"]),
            kind=FaultKind.parse(str(data["kind"])),
            first=data.get("first", 1),
            last=data.get("last"),
        )


@dataclass(frozen=True)
class FaultPlan:
    """Everything the proxy needs to decide faults: random rates per target, rules, seed, delays."""

    rates: Mapping[str, FaultRates] = field(default_factory=dict)
    rules: tuple[FaultRule, ...] = ()
    seed: int = 0
    latency_ms: float = 0.0
    """The extra delay (uniform in [0, latency_ms]) of operations whose entry sets none."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    """How long a ``timeout`` fault holds the request before closing the connection."""

    def __post_init__(self) -> None:
        for target, rates in self.rates.items():
            _check_target(target)
            if not isinstance(rates, FaultRates):
                raise ValueError(f"rates of {target} must be FaultRates, got {type(rates).__name__}")
        if not all(isinstance(rule, FaultRule) for rule in self.rules):
            raise ValueError("rules must be FaultRule instances")
        object.__setattr__(self, "rates", dict(self.rates))
        object.__setattr__(self, "rules", tuple(self.rules))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be a whole number, got {self.seed!r}")
        _check_number("latency_ms", self.latency_ms)
        _check_number("timeout_seconds", self.timeout_seconds)

    def rates_for(self, operation: str) -> FaultRates:
        """The random rates of ``operation``: from its own entry, else its service's wildcard, else ``*``."""
        for target in _targets_of(operation):
            if target in self.rates:
                return self.rates[target]
        return FaultRates()

    def latency_ms_for(self, operation: str) -> float:
        latency = self.rates_for(operation).latency_ms
        return self.latency_ms if latency is None else latency

    def with_seed(self, seed: int) -> FaultPlan:
        return replace(self, seed=seed)

    # -- text form --------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """A plan from the text form (module docstring); ValueError naming the part at fault."""
        settings: dict[str, Any] = {}
        probabilities: dict[str, dict[str, float]] = {}
        latencies: dict[str, float] = {}
        rules: list[FaultRule] = []
        for raw_part in text.split(";"):
            part = raw_part.strip()
            if not part:
                continue
            name, equals, value = (piece.strip() for piece in part.partition("="))
            if not equals or not value:
                raise ValueError(f"{part!r}: expected NAME=VALUE (a setting) or OPERATION=ITEMS")
            if name in _SETTINGS:
                if name in settings:
                    raise ValueError(f"{name!r} is given twice")
                settings[name] = _parse_setting(name, value)
                continue
            target = _check_target(name)
            for raw_item in value.split(","):
                item = raw_item.strip()
                try:
                    _parse_item(item, target, probabilities, latencies, rules)
                except ValueError as error:
                    raise ValueError(f"{target}={value}: {error}") from None
        rates = {}
        for target in {*probabilities, *latencies}:
            try:
                rates[target] = FaultRates(**probabilities.get(target, {}), latency_ms=latencies.get(target))
            except ValueError as error:
                raise ValueError(f"{target}: {error}") from None
        return cls(rates=rates, rules=tuple(rules), **{_SETTINGS[name]: value for name, value in settings.items()})

    def to_text(self) -> str:
        """The text form; ``FaultPlan.parse(plan.to_text()) == plan``."""
        parts = [f"seed={self.seed}"]
        if self.latency_ms:
            parts.append(f"latency={_number_text(self.latency_ms)}")
        if self.timeout_seconds != DEFAULT_TIMEOUT_SECONDS:
            parts.append(f"timeout_seconds={_number_text(self.timeout_seconds)}")
        for target, rates in self.rates.items():
            items = [
                f"{kind.short_name}:{_number_text(rates.probability(kind))}"
                for kind in FaultKind
                if rates.probability(kind)
            ]
            if rates.latency_ms is not None:
                items.append(f"latency:{_number_text(rates.latency_ms)}")
            # An entry with nothing set still overrides the wildcards: keep it as an explicit zero.
            parts.append(f"{target}={','.join(items) or '500:0'}")
        # Each rule is a part of its own, in order: the first rule covering a request wins.
        parts.extend(f"{rule.operation}={rule.kind.short_name}@{rule.range_text}" for rule in self.rules)
        return ";".join(parts)

    # -- JSON form --------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-ready data (what ``POST /_proxy/faults`` accepts)."""
        return {
            "seed": self.seed,
            "latency_ms": self.latency_ms,
            "timeout_seconds": self.timeout_seconds,
            "rates": {target: rates.to_json() for target, rates in self.rates.items()},
            "rules": [rule.to_json() for rule in self.rules],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> FaultPlan:
        """A plan from :meth:`to_json` data, or from its JSON text; missing keys take their defaults."""
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError as error:
                raise ValueError(f"fault plan is not valid JSON: {error}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault plan must be a JSON object, got {type(data).__name__}")
        _reject_unknown_keys("plan", data, {"seed", "latency_ms", "timeout_seconds", "rates", "rules"})
        rates_data = data.get("rates") or {}
        if not isinstance(rates_data, Mapping) or not all(isinstance(v, Mapping) for v in rates_data.values()):
            raise ValueError("plan 'rates' must map operation names to objects")
        rates = {}
        for target, entry in rates_data.items():
            try:
                rates[_check_target(str(target))] = FaultRates.from_json(entry)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{target}: {error}") from None
        rules_data = data.get("rules") or []
        if not isinstance(rules_data, list) or not all(isinstance(rule, Mapping) for rule in rules_data):
            raise ValueError("plan 'rules' must be a list of objects")
        return cls(
            rates=rates,
            rules=tuple(FaultRule.from_json(rule) for rule in rules_data),
            seed=data.get("seed", 0),
            latency_ms=data.get("latency_ms", 0.0),
            timeout_seconds=data.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
        )


_SETTINGS = {"latency": "latency_ms", "timeout_seconds": "timeout_seconds", "seed": "seed"}
_RANGE = re.compile(r"^(\d+)(?:(-)(\d*))?$")


def _parse_setting(name: str, value: str) -> float | int:
    try:
        return int(value) if name == "seed" else _check_number(name, float(value))
    except ValueError as error:
        raise ValueError(f"{name}={value}: {error}") from None


def _parse_item(
    item: str,
    target: str,
    probabilities: dict[str, dict[str, float]],
    latencies: dict[str, float],
    rules: list[FaultRule],
) -> None:
    """Add one ``kind:p``, ``kind@range`` or ``latency:ms`` item of ``target`` to what is parsed so far."""
    if "@" in item:
        kind_text, _, range_text = item.partition("@")
        match = _RANGE.match(range_text.strip())
        if match is None:
            raise ValueError(f"{item!r}: the range must be N, N-M or N- (request numbers from 1)")
        first = int(match.group(1))
        last = None if match.group(2) and not match.group(3) else int(match.group(3) or first)
        rules.append(FaultRule(target, FaultKind.parse(kind_text), first, last))
        return
    name, colon, number_text = (piece.strip() for piece in item.partition(":"))
    if not colon:
        raise ValueError(f"{item!r}: expected KIND:PROBABILITY, KIND@RANGE or latency:MS")
    try:
        number = float(number_text)
    except ValueError:
        raise ValueError(f"{item!r}: {number_text!r} is not a number") from None
    if name.lower() == "latency":
        if target in latencies:
            raise ValueError("latency is given twice")
        latencies[target] = _check_number("latency", number)
        return
    kind = FaultKind.parse(name)
    entry = probabilities.setdefault(target, {})
    if kind.value in entry:
        raise ValueError(f"{kind.short_name} is given twice")
    entry[kind.value] = _check_number(f"probability of {kind.value}", number, upper=1.0)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _reject_unknown_keys(what: str, data: Mapping[str, Any], known: Iterable[str]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")


def _targets_of(operation: str) -> tuple[str, str, str]:
    """The targets that cover ``operation``, most specific first."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; known: {', '.join(sorted(OPERATIONS))}")
    return operation, f"{operation.partition('.')[0]}.*", WILDCARD


# -- classification -------------------------------------------------------------------


def classify(service: Service, method: str, target: str) -> str:
    """The operation name of a request to Azurite's ``service``, from its method and request target.

    ``target`` is the path and query as sent (``/devstoreaccount1/jobs/messages?numofmessages=1``); Azurite on
    an IP address uses path-style URLs, so the first path segment is the account.
    """
    parts = urlsplit(target)
    segments = [unquote(segment) for segment in parts.path.strip("/").split("/")]
    resource = segments[1:]  # after the account name
    query = {key.lower(): values for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    verb = method.upper()
    if service == "table":
        return _classify_table(verb, resource, query)
    if service == "queue":
        return _classify_queue(verb, resource, query)
    raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")


def _classify_table(verb: str, resource: list[str], query: Mapping[str, list[str]]) -> str:
    if len(resource) != 1 or not resource[0] or "comp" in query or "restype" in query:
        return "table.other"  # the service root, ACLs, service properties and stats
    name = resource[0]
    if name == "$batch":
        return "table.batch" if verb == "POST" else "table.other"
    if name == "Tables" or name.startswith("Tables("):
        # POST /Tables creates a table, GET /Tables is "Query Tables"; DELETE /Tables('t') drops one.
        return {"POST": "table.create", "GET": "table.query"}.get(verb, "table.other")
    if verb == "GET":
        return "table.query"  # /t() queries entities, /t(PartitionKey=..,RowKey=..) gets one
    if verb == "POST":
        return "table.insert"
    if "(" in name:
        if verb in ("PUT", "MERGE", "PATCH"):
            return "table.update"  # update, merge and both upserts
        if verb == "DELETE":
            return "table.delete"
    return "table.other"


def _classify_queue(verb: str, resource: list[str], query: Mapping[str, list[str]]) -> str:
    if len(resource) < 2 or resource[1] != "messages":
        return "queue.other"  # queues themselves: create, delete, metadata, list, service properties
    if len(resource) == 2:
        if verb == "POST":
            return "queue.send"
        if verb == "GET":
            peek = query.get("peekonly", [""])[-1].lower() == "true"
            return "queue.peek" if peek else "queue.receive"
        return "queue.other"  # DELETE .../messages clears the queue
    if len(resource) == 3 and "popreceipt" in query:
        if verb == "DELETE":
            return "queue.delete"
        if verb == "PUT":
            return "queue.update"
    return "queue.other"


# -- decisions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What to do with one request."""

    operation: str
    fault: FaultKind | None = None
    delay_seconds: float = 0.0
    """Extra delay before anything else happens to the request."""
    hold_seconds: float = 0.0
    """For a ``timeout`` fault: how long to hold the request after forwarding it."""


class FaultDecider:
    """Decides the fault of each request from a plan; thread-safe, reproducible for a seed and request order."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self.set_plan(plan or FaultPlan())

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def set_plan(self, plan: FaultPlan) -> None:
        """Use ``plan`` from now on: the random sequence restarts from its seed, rule counts from zero."""
        with self._lock:
            self._plan = plan
            self._random = random.Random(plan.seed)
            self._seen: Counter[str] = Counter()

    def decide(self, operation: str) -> Decision:
        """The decision for the next request, of ``operation``."""
        targets = _targets_of(operation)
        with self._lock:
            plan = self._plan
            # Two draws per request whatever happens, so that decisions stay aligned with the request order.
            fault_draw = self._random.random()
            delay_draw = self._random.random()
            for target in targets:
                self._seen[target] += 1
            covering = (rule for rule in plan.rules if rule.operation in targets)
            fault = next((rule.kind for rule in covering if rule.covers(self._seen[rule.operation])), None)
        if fault is None:
            fault = plan.rates_for(operation).pick(fault_draw)
        return Decision(
            operation=operation,
            fault=fault,
            delay_seconds=delay_draw * plan.latency_ms_for(operation) / 1000.0,
            hold_seconds=plan.timeout_seconds if fault is FaultKind.TIMEOUT else 0.0,
        )
