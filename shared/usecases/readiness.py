"""Readiness on demand: the preflight checks of every machine assigned to a configuration, and
what the gate would decide, days before the window (``prepost preflight``).

The machines are the configuration's assignments, as Resource Graph lists them: machines
assigned one by one, and dynamic scopes resolved from their filters. The checks and the gate
are the same ones a run's pre phase uses (:mod:`shared.usecases.preflight`,
:mod:`shared.usecases.gate`); only blocking findings can fail a machine here, since no
snapshot or start is attempted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.errors import PermanentError, TransientError
from shared.models.events import format_time
from shared.models.gate import ErrorBudget, FailingMachine, GateVerdict, listed
from shared.models.policy import RunPolicy, SafetyCategory
from shared.models.scopes import resolve
from shared.ports.assignments import AssignmentInventory
from shared.ports.azure import ArcMachines, Compute, MaintenanceConfigurations
from shared.ports.readiness import ReadinessRecords, ReadinessResult
from shared.usecases.gate import GateAssessment
from shared.usecases.preflight import MachinePreflight, preflight_machine

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReadinessPorts:
    configurations: MaintenanceConfigurations
    assignments: AssignmentInventory
    compute: Compute
    arc: ArcMachines


@dataclass(frozen=True)
class ReadinessReport:
    configuration_id: str
    checked_at: datetime
    policy: RunPolicy
    static_assignments: int
    dynamic_scopes: int
    machines: tuple[MachinePreflight, ...]
    assessment: GateAssessment

    @property
    def verdict(self) -> GateVerdict:
        return GateVerdict.CANCEL if self.assessment.exceeded else GateVerdict.PROCEED

    @property
    def would_cancel(self) -> bool:
        """The gate would cancel the run, and the policy lets it."""
        return self.assessment.exceeded and self.policy.cancel_on_failure

    @property
    def summary(self) -> str:
        if not self.machines:
            return (
                "no machines are assigned to this configuration (or the identity lacks Reader on their "
                "subscriptions): nothing would be patched"
            )
        if self.would_cancel:
            return f"the run would be cancelled: {self.assessment.summary}"
        if self.assessment.exceeded:
            return (
                "the budget is exceeded, but prepost-cancel-on-failure=false: the run would proceed; "
                f"{self.assessment.summary}"
            )
        return f"the run would proceed: {self.assessment.summary}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "configurationId": self.configuration_id,
            "checkedAt": format_time(self.checked_at),
            "assignments": {"machines": self.static_assignments, "dynamicScopes": self.dynamic_scopes},
            "policy": self.policy.to_dict(),
            "gate": {
                "verdict": self.verdict.value,
                "wouldCancel": self.would_cancel,
                "budget": str(self.assessment.budget),
                "machines": self.assessment.machines,
                "allowed": self.assessment.allowed,
                "failing": [machine.to_dict() for machine in self.assessment.failing],
                "summary": self.summary,
            },
            "machines": [machine.to_dict() for machine in self.machines],
        }


def preflight_configuration(
    configuration_id: str,
    ports: ReadinessPorts,
    *,
    now: datetime,
    subscription_ids: Sequence[str] = (),
    policy_defaults: RunPolicy | None = None,
    progress: Progress | None = None,
    workers: int = 4,
) -> ReadinessReport:
    """Check every machine assigned to the configuration, now, and say what the gate would decide.

    Raises:
        PermanentError: the configuration or Resource Graph cannot be read (no access, gone).
        TransientError / Throttled: Azure failed in a way worth trying again later.
    """
    policy = RunPolicy.from_tags(ports.configurations.get_tags(configuration_id), policy_defaults)
    found = ports.assignments.list_assignments(configuration_id, subscription_ids)
    candidates = ports.assignments.list_machines(subscription_ids) if found.scopes else []
    machine_ids = resolve(found.static, found.scopes, candidates)
    severity = policy.severity_overrides

    def check(machine_id: str) -> MachinePreflight:
        return preflight_machine(
            machine_id,
            compute=ports.compute,
            arc=ports.arc,
            now=now,
            disks=policy.snapshot_disks,
            severity=severity,
        )

    results: list[MachinePreflight] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(check, machine_ids):
            results.append(result)
            if progress is not None:
                progress(len(results), len(machine_ids))
    counts_findings = policy.is_safety_critical(SafetyCategory.PREFLIGHT)
    failing = tuple(
        FailingMachine(result.machine_id, tuple(str(f) for f in result.blocking))
        for result in results
        if counts_findings and result.blocking
    )
    try:
        budget = policy.error_budget
    except ValueError:
        budget = ErrorBudget()
    return ReadinessReport(
        configuration_id=configuration_id,
        checked_at=now,
        policy=policy,
        static_assignments=len(found.static),
        dynamic_scopes=len(found.scopes),
        machines=tuple(results),
        assessment=GateAssessment(budget, len(results), failing),
    )


def check_on_schedule(
    configuration_ids: Sequence[str],
    ports: ReadinessPorts,
    records: ReadinessRecords,
    *,
    now: datetime,
    policy_defaults: RunPolicy | None = None,
) -> list[ReadinessResult]:
    """The timer's work: check each configuration, and keep each result, a failed check included.

    One configuration that cannot be checked (gone, no access, Azure failing) is recorded with
    its error and does not stop the others; nothing is retried until the next schedule.
    """
    results = []
    for configuration_id in configuration_ids:
        try:
            report = preflight_configuration(configuration_id, ports, now=now, policy_defaults=policy_defaults)
        except (PermanentError, TransientError) as error:
            result = ReadinessResult(
                configuration_id, now, None, error=str(error), summary="the check could not be made"
            )
            log.error("readiness of %s could not be checked: %s", configuration_id, error)
        else:
            result = result_of(report)
            level = logging.WARNING if report.would_cancel else logging.INFO
            log.log(level, "readiness of %s: %s", configuration_id, report.summary)
        records.add(result)
        results.append(result)
    return results


def result_of(report: ReadinessReport) -> ReadinessResult:
    severities = Counter(machine.worst.value if machine.worst else "ok" for machine in report.machines)
    return ReadinessResult(
        configuration_id=report.configuration_id,
        checked_at=report.checked_at,
        verdict=report.verdict.value,
        would_cancel=report.would_cancel,
        machines=len(report.machines),
        severities=dict(sorted(severities.items())),
        failing=[machine.to_dict() for machine in listed(report.assessment.failing)],
        summary=report.summary,
    )
