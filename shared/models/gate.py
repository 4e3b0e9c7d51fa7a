"""The readiness gate's vocabulary: the error budget and the decision recorded on the run.

Update Manager cannot drop one machine from a run inside its last 40 minutes, so the gate
decides for the whole run: cancel it, or let it proceed while recording which machines go
ahead without their safety work, and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from shared.models.events import format_time, parse_time

MAX_BUDGET_COUNT = 100_000


@dataclass(frozen=True)
class ErrorBudget:
    """How many machines' safety-critical work may fail before the run is cancelled.

    ``0`` (the default) cancels on the first failure; ``3`` tolerates three machines;
    ``10%`` tolerates a tenth of the run's machines, rounded down (so ``10%`` of 9 machines
    tolerates none), the way AWS Systems Manager's ``MaxErrors`` counts.
    """

    count: int | None = 0
    percent: int | None = None

    @classmethod
    def parse(cls, text: str) -> ErrorBudget:
        """``"3"`` or ``"10%"``; raises ValueError naming what is wrong."""
        raw = str(text).strip()
        if raw.endswith("%"):
            digits = raw[:-1].strip()
            if not (digits.isascii() and digits.isdigit() and len(digits) <= 3) or int(digits) > 100:
                raise ValueError(f"{raw!r} is not a percentage from 0% to 100%")
            return cls(count=None, percent=int(digits))
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or int(raw) > MAX_BUDGET_COUNT:
            raise ValueError(f"{raw!r} is not a whole number of machines (0 to {MAX_BUDGET_COUNT}) or a percentage")
        return cls(count=int(raw))

    def allowed(self, machines: int) -> int:
        """Machines that may fail out of ``machines`` without cancelling the run."""
        if self.percent is not None:
            return math.floor(machines * self.percent / 100)
        return self.count or 0

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.count)


class GateVerdict(str, Enum):
    PROCEED = "proceed"
    """Failures within the budget: patching goes ahead, the failing machines are recorded."""
    CANCEL = "cancel"
    """The budget is exceeded (or the pre phase could not be planned): the run is cancelled."""


@dataclass(frozen=True)
class FailingMachine:
    """A machine whose safety-critical work failed, did not finish, or was blocked by a finding."""

    machine: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FailingMachine:
        return cls(str(values["machine"]), tuple(str(r) for r in values.get("reasons", ())))


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, when, and about which machines."""

    verdict: GateVerdict
    decided_at: datetime
    budget: str
    machines: int
    """Machines in the run (the base of a percentage budget)."""
    allowed: int
    """Machines that could fail within the budget."""
    failing: tuple[FailingMachine, ...] = ()
    """The failing machines, at most :data:`MAX_LISTED` of them (``failing_count`` has them all)."""
    failing_count: int = 0
    reason: str = ""
    moment: str = ""
    """When in the pre phase it was taken: ``budget-exceeded``, ``phase-completed`` or ``deadline``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "decidedAt": format_time(self.decided_at),
            "moment": self.moment,
            "budget": self.budget,
            "machines": self.machines,
            "allowed": self.allowed,
            "failingCount": self.failing_count,
            "failing": [machine.to_dict() for machine in self.failing],
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GateDecision:
        return cls(
            verdict=GateVerdict(values["verdict"]),
            decided_at=parse_time(values["decidedAt"]),
            budget=str(values.get("budget", "0")),
            machines=int(values.get("machines", 0)),
            allowed=int(values.get("allowed", 0)),
            failing=tuple(FailingMachine.from_dict(item) for item in values.get("failing", ())),
            failing_count=int(values.get("failingCount", len(values.get("failing", ())))),
            reason=str(values.get("reason", "")),
            moment=str(values.get("moment", "")),
        )


MAX_LISTED = 50
"""Failing machines listed on the run record: a table property holds 64 KiB; the count is kept apart."""


def listed(failing: Sequence[FailingMachine]) -> tuple[FailingMachine, ...]:
    return tuple(failing[:MAX_LISTED])
