"""The readiness gate: count the machines whose safety-critical pre-work failed, against the budget.

A machine fails the gate when one of its pre tasks that the plan marked safety-critical
(:attr:`TaskRecord.is_safety_critical`: snapshots, a VM start, a pre script, whatever the
policy lists) failed; when a check found something ``blocking`` about it and the policy lists
``preflight``; or, at the cancellation deadline, when such a task has not finished. The gate
counts machines, not tasks, so a machine with a failed snapshot and a failed start is one
error. Nothing here knows which kinds of task exist: a new kind plugs in by setting
``safety_critical`` on its task records, or ``blocking_findings`` in its data.

The decision itself is taken and recorded by :mod:`shared.usecases.supervision`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from shared.models.gate import ErrorBudget, FailingMachine, GateDecision, GateVerdict, listed
from shared.models.policy import RunPolicy, SafetyCategory
from shared.models.run import PhaseRecord, TaskRecord, TaskStatus
from shared.usecases.preflight import BLOCKING_FINDINGS

REASON_DETAIL = 200


@dataclass(frozen=True)
class GateAssessment:
    """Where the run stands against its error budget."""

    budget: ErrorBudget
    machines: int
    failing: tuple[FailingMachine, ...]

    @property
    def allowed(self) -> int:
        return self.budget.allowed(self.machines)

    @property
    def exceeded(self) -> bool:
        return len(self.failing) > self.allowed

    @property
    def summary(self) -> str:
        return (
            f"{len(self.failing)} of {self.machines} machines failed their safety-critical pre-work; "
            f"the error budget {self.budget} allows {self.allowed}"
        )

    def decision(self, verdict: GateVerdict, now: datetime, *, moment: str, reason: str) -> GateDecision:
        return GateDecision(
            verdict=verdict,
            decided_at=now,
            budget=str(self.budget),
            machines=self.machines,
            allowed=self.allowed,
            failing=listed(self.failing),
            failing_count=len(self.failing),
            reason=reason,
            moment=moment,
        )


def budget_of(phase: PhaseRecord) -> ErrorBudget:
    """The phase policy's budget; a record whose budget does not parse gets the safe default, 0."""
    try:
        return RunPolicy.from_dict(phase.policy).error_budget if phase.policy else ErrorBudget()
    except ValueError:
        return ErrorBudget()


def may_be_exceeded(phase: PhaseRecord) -> bool:
    """A cheap look at the phase's counters: False when the budget cannot be exceeded yet.

    Every failing machine has at least one failed task, so with no more failed tasks than the
    budget allows there is nothing to count. Used before listing the tasks on every outcome.
    """
    return phase.failed_tasks > budget_of(phase).allowed(phase.machines)


def assess(phase: PhaseRecord, tasks: Iterable[TaskRecord], *, at_deadline: bool = False) -> GateAssessment:
    """Count the failing machines of the pre phase ``phase`` from its task records."""
    policy = RunPolicy.from_dict(phase.policy) if phase.policy else RunPolicy()
    findings_count = policy.is_safety_critical(SafetyCategory.PREFLIGHT)
    reasons: dict[str, tuple[str, list[str]]] = {}
    for task in tasks:
        if not task.target.startswith("/"):
            continue  # subscription-wide work (alert suppression) is nobody's machine
        reason = _reason(task, findings_count, at_deadline)
        if reason:
            reasons.setdefault(task.target.lower(), (task.target, []))[1].append(reason)
    failing = tuple(
        FailingMachine(machine, tuple(why)) for machine, why in sorted(reasons.values(), key=lambda m: m[0].lower())
    )
    return GateAssessment(budget_of(phase), max(phase.machines, len(failing)), failing)


def _reason(task: TaskRecord, findings_count: bool, at_deadline: bool) -> str:
    detail = task.detail[:REASON_DETAIL]
    if task.status is TaskStatus.FAILED and task.is_safety_critical:
        return f"{task.action.value} failed: {detail}"
    if findings_count and int(task.data.get(BLOCKING_FINDINGS, 0) or 0) > 0:
        return f"{task.action.value}: {detail}"
    if at_deadline and task.is_safety_critical and not task.status.is_final:
        return f"{task.action.value} not finished by the cancellation deadline ({task.status.value})"
    return ""
