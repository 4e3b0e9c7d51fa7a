"""What the preflight checks read, served by the simulator and read by the app's own adapters.

Each seeding option of :class:`~prepost.simulator.readiness.Readiness` must show up as the
finding it stands for when the real ``ArmCompute`` and ``ArmArcMachines`` adapters read the
machine through the Azure SDK.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from prepost.simulator import Estate, ManualClock, PowerState, SimulatorServer
from prepost.simulator.readiness import OLD_ARC_AGENT, Readiness
from shared.adapters.arm.arc import ArmArcMachines
from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.compute import ArmCompute
from shared.models.findings import FindingKind
from shared.models.policy import SnapshotDisks
from shared.settings import ArmAuth
from shared.usecases.preflight import preflight_machine

NOW = datetime(2026, 11, 22, 1, 20, tzinfo=UTC)


@pytest.fixture
def estate() -> Estate:
    estate = Estate.generate(
        machines=6, subscriptions=1, arc_servers=3, unsafe_patch_every=0, deallocated_every=0, seed=3
    )
    for arc in estate.arc_servers:
        arc.agent_version = "1.99.09999.1"  # newer than the release table: current
    return Readiness(
        unsafe_patch_every=6,
        agent_not_ready_every=2,
        failed_patch_extension_every=3,
        failed_extension_every=5,
        near_snapshot_limit_every=4,
        full_snapshot_limit_every=5,
        old_arc_agents=1,
        disconnected_arc_servers=1,
        expired_arc_servers=1,
        failed_arc_extension_every=1,
        arc_automatic_upgrade=False,
    ).apply(estate)


@pytest.fixture
def ports(server: SimulatorServer):
    clients = ArmClients(server.url, ArmAuth.SIMULATOR)
    return ArmCompute(clients), ArmArcMachines(clients)


def findings_of(machine_id: str, ports) -> set[FindingKind]:
    compute, arc = ports
    result = preflight_machine(machine_id, compute=compute, arc=arc, now=NOW, disks=SnapshotDisks.OS)
    return {finding.kind for finding in result.findings}


def test_each_seeded_vm_problem_is_found_through_the_real_adapters(estate: Estate, ports) -> None:
    found = {vm.name: findings_of(vm.id, ports) for vm in estate.vms}
    first, second, third, fourth, fifth, sixth = (found[vm.name] for vm in estate.vms)

    assert first == set()
    assert second == {FindingKind.VM_AGENT_NOT_READY}
    assert third == {FindingKind.PATCH_EXTENSION_FAILED}
    assert fourth == {FindingKind.VM_AGENT_NOT_READY, FindingKind.SNAPSHOT_LIMIT_NEAR}
    assert fifth == {FindingKind.EXTENSION_FAILED, FindingKind.SNAPSHOT_LIMIT_REACHED}
    assert sixth == {FindingKind.PATCH_MODE_UNSAFE, FindingKind.VM_AGENT_NOT_READY, FindingKind.PATCH_EXTENSION_FAILED}


def test_a_disk_at_the_limit_refuses_its_next_snapshot(estate: Estate, server: SimulatorServer) -> None:
    fifth = estate.vms[4]

    assert len([s for s in server.state.snapshots() if s.source_resource_id == fifth.os_disk.id]) == 500


def test_a_deallocated_vm_reports_no_agent_until_it_runs(estate: Estate, server: SimulatorServer, ports) -> None:
    vm = estate.vms[1]
    server.state.set_power_state(vm.id, PowerState.DEALLOCATED)

    assert findings_of(vm.id, ports) == {FindingKind.VM_AGENT_UNKNOWN}


def test_each_seeded_arc_problem_is_found_through_the_real_adapters(estate: Estate, ports) -> None:
    old, expired, disconnected = estate.arc_servers
    assert old.agent_version == OLD_ARC_AGENT

    common = {FindingKind.ARC_AUTO_UPGRADE_OFF, FindingKind.EXTENSION_FAILED}
    assert findings_of(old.id, ports) == common | {FindingKind.ARC_AGENT_UNSUPPORTED}
    assert findings_of(expired.id, ports) == common | {FindingKind.ARC_DISCONNECTED}
    assert findings_of(disconnected.id, ports) == common | {FindingKind.ARC_DISCONNECTED}


def test_a_machine_the_simulator_does_not_know_is_missing(estate: Estate, ports) -> None:
    gone = estate.vms[0].id.replace(estate.vms[0].name, "vm-deleted")

    assert findings_of(gone, ports) == {FindingKind.MACHINE_MISSING}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def test_assignments_and_machines_through_resource_graph(estate: Estate, server: SimulatorServer) -> None:
    from shared.adapters.arm.assignments import ResourceGraphAssignments

    graph = ResourceGraphAssignments(ArmClients(server.url, ArmAuth.SIMULATOR))
    subscription = estate.vms[0].subscription_id

    # No explicit assignment: one per machine of the configuration's runs.
    found = graph.list_assignments(estate.configuration.id.upper(), [subscription])
    machines = graph.list_machines([])

    assert {m.lower() for m in found.static} == {m.lower() for m in estate.machine_ids}
    assert found.scopes == ()
    assert {m.resource_id for m in machines} == set(estate.machine_ids)
    assert {m.os_type.lower() for m in machines} == {"linux", "windows"}
    assert graph.list_assignments(estate.configuration.id + "-other", []).static == ()
