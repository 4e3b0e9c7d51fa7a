"""Readiness on demand (``prepost preflight``): machines from assignments, the gate's prediction."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.models.gate import GateVerdict
from shared.models.scopes import CandidateMachine, DynamicScope
from shared.ports.assignments import AssignmentInventory, Assignments
from shared.ports.azure import PowerState, Snapshot
from shared.usecases.readiness import ReadinessPorts, preflight_configuration
from tests.fakes_azure import FakeArc, FakeCompute, FakeConfigurations, vm_id

SUB = "6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40"
CONFIG = f"/subscriptions/{SUB}/resourceGroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations/mc"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class FakeAssignments(AssignmentInventory):
    def __init__(self, static=(), scopes=(), machines=()):
        self.found = Assignments(tuple(static), tuple(scopes))
        self.machines = list(machines)
        self.machine_queries = 0

    def list_assignments(self, configuration_id, subscription_ids):
        return self.found

    def list_machines(self, subscription_ids):
        self.machine_queries += 1
        return self.machines


def estate(tags=None, *, full_disks=0, machines=3):
    compute = FakeCompute(now=NOW)
    ids = [vm_id(f"vm-{index}", subscription=SUB) for index in range(machines)]
    for index, machine in enumerate(ids):
        vm = compute.add_vm(machine, power_state=PowerState.RUNNING)
        if index < full_disks:
            for n in range(500):
                snapshot = (
                    f"/subscriptions/{SUB}/resourceGroups/rg-app/providers/Microsoft.Compute/snapshots/{index}-{n}"
                )
                compute.add_snapshot(Snapshot(snapshot, vm.os_disk_id, NOW))
    configurations = FakeConfigurations({CONFIG: dict(tags or {})})
    return compute, configurations, ids


def test_static_assignments_alone_need_no_machine_query_and_a_ready_estate_proceeds():
    compute, configurations, ids = estate()
    assignments = FakeAssignments(static=ids)
    seen = []

    report = preflight_configuration(
        CONFIG,
        ReadinessPorts(configurations, assignments, compute, FakeArc()),
        now=NOW,
        progress=lambda done, total: seen.append((done, total)),
    )

    assert assignments.machine_queries == 0
    assert [m.machine_id for m in report.machines] == ids
    assert report.verdict is GateVerdict.PROCEED and not report.would_cancel
    assert seen[-1] == (3, 3) and len(seen) == 3


def test_blocking_findings_over_the_budget_would_cancel():
    compute, configurations, ids = estate({"prepost-max-errors": "33%"}, full_disks=2)

    report = preflight_configuration(
        CONFIG, ReadinessPorts(configurations, FakeAssignments(static=ids), compute, FakeArc()), now=NOW
    )

    assert report.would_cancel and report.assessment.allowed == 0
    assert {m.machine for m in report.assessment.failing} == set(ids[:2])
    assert report.to_dict()["gate"]["wouldCancel"] is True


def test_cancel_on_failure_false_predicts_no_cancellation_but_says_the_budget_is_exceeded():
    compute, configurations, ids = estate({"prepost-cancel-on-failure": "false"}, full_disks=1)

    report = preflight_configuration(
        CONFIG, ReadinessPorts(configurations, FakeAssignments(static=ids), compute, FakeArc()), now=NOW
    )

    assert report.verdict is GateVerdict.CANCEL and not report.would_cancel
    assert "prepost-cancel-on-failure=false" in report.summary


def test_blocking_findings_do_not_count_when_preflight_is_not_safety_critical():
    compute, configurations, ids = estate({"prepost-safety-critical": "snapshot,start"}, full_disks=1)

    report = preflight_configuration(
        CONFIG, ReadinessPorts(configurations, FakeAssignments(static=ids), compute, FakeArc()), now=NOW
    )

    assert not report.would_cancel and report.assessment.failing == ()
    assert report.machines[0].blocking  # still reported


def test_dynamic_scopes_are_resolved_and_no_machines_is_said_plainly():
    compute, configurations, ids = estate()
    candidates = [CandidateMachine(ids[1], "microsoft.compute/virtualmachines", "westeurope", "Linux", {"wave": "1"})]
    scope = DynamicScope.from_filter([SUB], {"tagSettings": {"tags": {"wave": ["1"]}}})

    report = preflight_configuration(
        CONFIG,
        ReadinessPorts(configurations, FakeAssignments(scopes=[scope], machines=candidates), compute, FakeArc()),
        now=NOW,
    )
    empty = preflight_configuration(
        CONFIG, ReadinessPorts(configurations, FakeAssignments(), compute, FakeArc()), now=NOW
    )

    assert [m.machine_id for m in report.machines] == [ids[1]]
    assert "no machines are assigned" in empty.summary and not empty.would_cancel
