"""Preflight checks: each finding, its default severity, and what the policy makes of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.errors import PermanentError, TransientError
from shared.models import arc_agent
from shared.models.findings import DEFAULT_SEVERITY, FindingKind, Severity
from shared.models.policy import RunPolicy, SnapshotDisks
from shared.ports.azure import ArcMachine, ExtensionStatus, PatchSettings, PowerState, Snapshot
from shared.usecases.preflight import SNAPSHOT_LIMIT, check_arc, check_vm, preflight_machine
from tests.fakes_azure import FakeArc, FakeCompute, arc_id, vm_id

SUB = "6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40"
NOW = datetime(2026, 11, 22, 1, 20, tzinfo=UTC)
VM = vm_id("vm-web-01", subscription=SUB)
ARC = arc_id("srv-01", subscription=SUB)


def kinds(findings) -> set[FindingKind]:
    return {finding.kind for finding in findings}


def a_vm(compute: FakeCompute | None = None, **kwargs):
    compute = compute or FakeCompute(now=NOW)
    kwargs.setdefault("power_state", PowerState.RUNNING)
    return compute, compute.add_vm(VM, **kwargs)


def snapshots_of(compute: FakeCompute, disk: str, count: int, *, incremental: bool = True, group: str = "rg-app"):
    for index in range(count):
        compute.add_snapshot(
            Snapshot(
                f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/snapshots/"
                f"{disk.rsplit('/', 1)[-1]}-{index:04d}",
                disk,
                NOW,
                incremental=incremental,
            )
        )


# -- Azure VMs ---------------------------------------------------------------------------------


def test_a_healthy_running_vm_has_no_findings():
    compute, vm = a_vm()

    assert check_vm(vm, {vm.os_disk_id: 3}) == []


@pytest.mark.parametrize(
    ("patch_mode", "bypass"),
    [("AutomaticByOS", False), ("ImageDefault", False), ("Manual", False), ("AutomaticByPlatform", False)],
)
def test_a_patch_mode_unsafe_for_schedules_is_a_warning(patch_mode, bypass):
    _, vm = a_vm(patch=PatchSettings("Windows", patch_mode, bypass))

    [finding] = check_vm(vm, {})

    assert finding.kind is FindingKind.PATCH_MODE_UNSAFE and finding.severity is Severity.WARNING
    assert patch_mode in finding.message


def test_a_vm_agent_that_is_not_ready_is_reported_with_its_message():
    _, vm = a_vm(agent_status="Not Ready")

    [finding] = check_vm(vm, {})

    assert finding.kind is FindingKind.VM_AGENT_NOT_READY
    assert "Not Ready" in finding.message and "cannot patch" in finding.message


def test_a_deallocated_vm_reports_its_agent_as_unknown_not_as_failing():
    _, vm = a_vm(power_state=PowerState.DEALLOCATED, agent_status=None)

    [finding] = check_vm(vm, {})

    assert finding.kind is FindingKind.VM_AGENT_UNKNOWN and finding.severity is Severity.INFO


def test_a_failed_patch_extension_is_told_apart_from_other_failed_extensions():
    extensions = (
        ExtensionStatus("LinuxPatchExtension", "Microsoft.CPlat.Core.LinuxPatchExtension", "ProvisioningState/failed"),
        ExtensionStatus("CustomScript", "Microsoft.Azure.Extensions.CustomScript", "ProvisioningState/failed/0", "x"),
        ExtensionStatus("AzureMonitorLinuxAgent", "Microsoft.Azure.Monitor.AMA", "ProvisioningState/succeeded"),
    )
    _, vm = a_vm(extensions=extensions)

    findings = {finding.kind: finding for finding in check_vm(vm, {})}

    assert set(findings) == {FindingKind.PATCH_EXTENSION_FAILED, FindingKind.EXTENSION_FAILED}
    assert findings[FindingKind.PATCH_EXTENSION_FAILED].severity is Severity.WARNING
    assert "LinuxPatchExtension" in findings[FindingKind.PATCH_EXTENSION_FAILED].message
    assert findings[FindingKind.EXTENSION_FAILED].severity is Severity.INFO


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (SNAPSHOT_LIMIT - 26, set()),
        (SNAPSHOT_LIMIT - 25, {FindingKind.SNAPSHOT_LIMIT_NEAR}),
        (SNAPSHOT_LIMIT - 1, {FindingKind.SNAPSHOT_LIMIT_NEAR}),
        (SNAPSHOT_LIMIT, {FindingKind.SNAPSHOT_LIMIT_REACHED}),
    ],
)
def test_snapshots_per_disk_are_checked_against_the_limit_of_500(count, expected):
    _, vm = a_vm()

    findings = check_vm(vm, {vm.os_disk_id: count})

    assert kinds(findings) == expected
    if expected == {FindingKind.SNAPSHOT_LIMIT_REACHED}:
        assert findings[0].severity is Severity.BLOCKING


def test_the_policy_can_raise_or_lower_a_severity():
    _, vm = a_vm(patch=PatchSettings("Linux", "ImageDefault", False))
    raised = RunPolicy.from_tags({"prepost-severity-patch-mode-unsafe": "blocking"}).severity_overrides
    lowered = RunPolicy.from_tags({"prepost-severity-snapshot-limit-reached": "info"}).severity_overrides

    [unsafe] = check_vm(vm, {}, raised)
    full = [f for f in check_vm(vm, {vm.os_disk_id: SNAPSHOT_LIMIT}, lowered) if f.kind.name.startswith("SNAP")]

    assert unsafe.severity is Severity.BLOCKING
    assert full[0].severity is Severity.INFO


def test_snapshot_counts_include_only_incremental_snapshots_of_that_disk_beside_it():
    compute, vm = a_vm(data_disks=1)
    snapshots_of(compute, vm.os_disk_id, 480)
    snapshots_of(compute, vm.os_disk_id.upper(), 0)
    snapshots_of(compute, vm.data_disk_ids[0], 499, group="rg-app")  # only counted with disks=all
    full = f"/subscriptions/{SUB}/resourceGroups/rg-app/providers/Microsoft.Compute/snapshots/full"
    compute.add_snapshot(Snapshot(full, vm.os_disk_id, NOW, {}, "Succeeded", incremental=False))

    os_only = preflight_machine(VM, compute=compute, arc=FakeArc(), now=NOW)
    every_disk = preflight_machine(VM, compute=compute, arc=FakeArc(), now=NOW, disks=SnapshotDisks.ALL)

    os_disk = vm.os_disk_id.rsplit("/", 1)[-1]
    assert [f.message for f in os_only.findings] == [f"disk {os_disk} has 480 of 500 incremental snapshots allowed"]
    assert len(every_disk.findings) == 2


# -- Arc-enabled servers ---------------------------------------------------------------------


def an_arc(**kwargs) -> ArcMachine:
    arc = FakeArc()
    return arc.add_machine(ARC, **kwargs)


def test_a_connected_current_arc_server_with_automatic_upgrade_has_no_findings():
    assert check_arc(an_arc(agent_version="1.50.03000.1"), [], datetime(2025, 6, 1, tzinfo=UTC)) == []


@pytest.mark.parametrize("status", ["Disconnected", "Expired"])
def test_a_disconnected_or_expired_arc_agent_says_since_when(status):
    since = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
    machine = an_arc(status=status, last_status_change=since, agent_version="9.0")

    [finding] = check_arc(machine, [], NOW)

    assert finding.kind is FindingKind.ARC_DISCONNECTED and finding.severity is Severity.WARNING
    assert status in finding.message and since.isoformat() in finding.message


def test_an_arc_agent_released_more_than_a_year_ago_is_unsupported():
    machine = an_arc(agent_version="1.36.02680.1549")  # November 2023

    [finding] = check_arc(machine, [], datetime(2024, 12, 1, tzinfo=UTC))

    assert finding.kind is FindingKind.ARC_AGENT_UNSUPPORTED
    assert "2023-11" in finding.message and "13 months" in finding.message
    assert check_arc(machine, [], datetime(2024, 11, 30, tzinfo=UTC)) == []  # twelve months: still supported


def test_an_agent_newer_than_the_table_counts_as_current():
    newest = max(arc_agent.RELEASES)
    newer = f"{newest[0]}.{newest[1] + 7}.01234.5"

    assert check_arc(an_arc(agent_version=newer), [], datetime(2040, 1, 1, tzinfo=UTC)) == []
    assert arc_agent.months_old(newer, NOW) == 0
    assert arc_agent.months_old("not a version", NOW) is None


def test_automatic_agent_upgrade_off_is_information():
    [finding] = check_arc(an_arc(automatic_upgrade=False, agent_version="9.0"), [], NOW)

    assert finding.kind is FindingKind.ARC_AUTO_UPGRADE_OFF and finding.severity is Severity.INFO


def test_a_failed_arc_extension_is_reported():
    failed = ExtensionStatus("WindowsPatchExtension", "WindowsPatchExtension", "ProvisioningState/failed", "exit 1")

    [finding] = check_arc(an_arc(agent_version="9.0"), [failed], NOW)

    assert finding.kind is FindingKind.PATCH_EXTENSION_FAILED and "exit 1" in finding.message


# -- machines that cannot be checked --------------------------------------------------------


def test_a_machine_the_run_lists_but_that_is_gone_is_a_missing_machine():
    result = preflight_machine(VM, compute=FakeCompute(now=NOW), arc=FakeArc(), now=NOW)
    arc_result = preflight_machine(ARC, compute=FakeCompute(now=NOW), arc=FakeArc(), now=NOW)

    assert kinds(result.findings) == kinds(arc_result.findings) == {FindingKind.MACHINE_MISSING}
    assert result.worst is DEFAULT_SEVERITY[FindingKind.MACHINE_MISSING]


def test_a_machine_prepost_may_not_read_is_blocking():
    compute, _ = a_vm()
    compute.fail("get_vm", PermanentError("403 AuthorizationFailed"))

    result = preflight_machine(VM, compute=compute, arc=FakeArc(), now=NOW)

    assert kinds(result.findings) == {FindingKind.MACHINE_UNREADABLE}
    assert result.blocking and "AuthorizationFailed" in result.findings[0].message


def test_a_transient_read_failure_is_raised_so_the_task_retries():
    compute, _ = a_vm()
    compute.fail("list_snapshots", TransientError("503"))

    with pytest.raises(TransientError):
        preflight_machine(VM, compute=compute, arc=FakeArc(), now=NOW)


def test_findings_survive_a_round_trip_through_a_dict():
    compute, _ = a_vm(patch=PatchSettings("Linux", "ImageDefault", False), agent_status="Not Ready")
    result = preflight_machine(VM, compute=compute, arc=FakeArc(), now=NOW)

    data = result.to_dict()

    assert data["worst"] == "warning"
    assert {f["kind"] for f in data["findings"]} == {"patch-mode-unsafe", "vm-agent-not-ready"}


# -- the preflight task of a run -------------------------------------------------------------


def preflight_task(estate, vm):
    from shared.models.messages import TaskMessage
    from shared.models.run import Action, Phase
    from shared.usecases.machine_actions import MachinePorts, perform_machine_action

    message = estate.as_planned(TaskMessage(run_key=estate.key, phase=Phase.PRE, action=Action.PREFLIGHT, target=vm))
    ports = MachinePorts(estate.records, estate.compute, estate.arc, estate.allowed_subscriptions)
    return perform_machine_action(message, ports, now=estate.now)


@pytest.mark.parametrize("start_seen", ["before", "after"])
def test_the_agent_of_a_vm_prepost_starts_is_not_judged_whichever_task_runs_first(start_seen):
    from shared.models.run import Action, Phase
    from tests.fakes_azure import FakeEstate

    estate = FakeEstate()
    vm = estate.add_vm("vm-web-01", power_state=PowerState.DEALLOCATED, agent_status=None)
    estate.planned_pre()
    if start_seen == "after":
        # The start task marked its intent and the VM runs now, its agent not ready yet.
        task = estate.task(Phase.PRE, Action.START_VM, vm)
        task.data = {"start_requested": True, "power_state_before": "deallocated"}
        estate.records.replace_task(task)
        estate.compute.vms[vm.lower()] = replace(
            estate.compute.get_vm(vm), power_state=PowerState.RUNNING, agent_status="Not Ready"
        )

    result = preflight_task(estate, vm)

    assert result.status.value == "succeeded"
    assert [f["kind"] for f in result.data["findings"]] == ["vm-agent-unknown"]
    assert result.detail == "info: the VM was deallocated before the run: its agent reports a status only once it runs"


def test_the_agent_of_a_vm_that_was_running_is_judged():
    from tests.fakes_azure import FakeEstate

    estate = FakeEstate()
    vm = estate.add_vm("vm-web-01", power_state=PowerState.RUNNING, agent_status="Not Ready")
    estate.planned_pre()

    result = preflight_task(estate, vm)

    assert [f["kind"] for f in result.data["findings"]] == ["vm-agent-not-ready"]
    assert result.data["blocking_findings"] == 0


def test_the_policys_severities_apply_even_when_the_preflight_runs_before_the_phase_holds_the_policy():
    """The planner sends the task messages before it writes the policy on the phase record."""
    from shared.models.run import Phase
    from tests.fakes_azure import FakeEstate

    estate = FakeEstate(tags={"prepost-severity-vm-agent-not-ready": "blocking"})
    vm = estate.add_vm("vm-web-01", power_state=PowerState.RUNNING, agent_status="Not Ready")
    estate.planned_pre()
    phase = estate.phase(Phase.PRE)
    phase.policy = {}  # as read between the sends and the phase being marked planned
    estate.records.replace_phase(phase)

    result = preflight_task(estate, vm)

    assert result.status.value == "failed"
    assert result.data["blocking_findings"] == 1


def test_a_preflight_of_a_machine_without_a_start_task_does_not_look_for_one():
    from shared.models.run import Action, Phase
    from tests.fakes_azure import FakeEstate

    estate = FakeEstate(tags={"prepost-start-deallocated": "false"})
    vm = estate.add_vm("vm-web-01", power_state=PowerState.RUNNING, agent_status="Not Ready")
    estate.planned_pre()
    assert estate.task(Phase.PRE, Action.START_VM, vm) is None
    looked_for: list[str] = []
    get_task = estate.records.get_task
    estate.records.get_task = lambda run_key, task: looked_for.append(task) or get_task(run_key, task)

    result = preflight_task(estate, vm)

    assert [f["kind"] for f in result.data["findings"]] == ["vm-agent-not-ready"]
    assert all(not task.startswith("pre-start") for task in looked_for), looked_for
