"""ARM names against Azure's character rules, and resource ids as quoted request paths."""

from __future__ import annotations

import pytest

from shared.errors import InvalidIdentifier
from shared.models.arm_names import arm_path, bounded_tags, check_name, check_resource_group, check_resource_id

SUB = "6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40"
RUN = (
    f"/subscriptions/{SUB}/resourceGroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations/"
    "mc-weekly-linux/providers/microsoft.maintenance/applyupdates/20261122020000"
)


def vm(name: str, group: str = "rg") -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}"


@pytest.mark.parametrize(
    "resource_id",
    [
        RUN,
        vm("vm-web-01"),
        vm("web_01.internal", group="rg.(prod)_1"),
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/arc-01",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/snapshots/prepost-20261122020000-os_1-ab12",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.AlertsManagement/actionRules/prepost-run-1",
        f"/subscriptions/{SUB}",
    ],
)
def test_ids_azure_accepts_pass(resource_id):
    assert check_resource_id(resource_id) == resource_id


@pytest.mark.parametrize(
    ("resource_id", "why"),
    [
        (vm("vm", group=".."), "resource group"),
        (vm("vm", group="rg."), "resource group"),
        (vm("vm?api-version=1"), "virtual machine"),
        (vm("vm#fragment"), "virtual machine"),
        (vm("vm'"), "virtual machine"),
        (vm('vm"'), "virtual machine"),
        (vm("vm-"), "virtual machine"),
        (vm("_vm"), "virtual machine"),
        (vm("v" * 65), "virtual machine"),
        (vm("vm\u212a"), "virtual machine"),
        (vm("vm/../../other"), "Azure resource id"),
        (RUN.replace("mc-weekly-linux", ".."), "maintenanceConfigurations"),
        (RUN.replace("mc-weekly-linux", "mc%2F.."), "maintenanceConfigurations"),
        (RUN.replace(SUB, "not-a-guid"), "subscription id"),
        (RUN.replace(SUB, SUB.replace("-", "")), "subscription id"),
        (RUN + "?x=1", "applyupdates"),
        ("subscriptions/" + SUB, "resource id"),
        (vm("vm") + "/", "resource id"),
        (vm("vm") + "x" * 2_000, "resource id"),
    ],
)
def test_ids_that_break_the_rules_are_refused_with_the_reason(resource_id, why):
    with pytest.raises(InvalidIdentifier) as caught:
        check_resource_id(resource_id)
    message = str(caught.value).lower()
    assert why.lower() in message or "not an azure resource id" in message


def test_snapshot_names_follow_the_snapshot_rule():
    check_name("Microsoft.Compute/snapshots", "a" * 80)
    for bad in ("a" * 81, "snap-", "-snap", "snap.", "sn ap"):
        with pytest.raises(InvalidIdentifier):
            check_name("Microsoft.Compute/snapshots", bad)


def test_resource_group_names_take_up_to_90_characters():
    check_resource_group("r" * 90)
    with pytest.raises(InvalidIdentifier):
        check_resource_group("r" * 91)


def test_every_segment_of_the_path_is_quoted():
    path = arm_path(vm("vm-1", group="rg(prod)"))
    assert path == f"/subscriptions/{SUB}/resourceGroups/rg%28prod%29/providers/Microsoft.Compute/virtualMachines/vm-1"
    assert arm_path(RUN) == RUN


def test_tag_values_are_cut_to_what_arm_accepts():
    tags = bounded_tags({"prepost-configuration": "c" * 300, "prepost-run": "r-1"})
    assert tags == {"prepost-configuration": "c" * 256, "prepost-run": "r-1"}


@pytest.mark.parametrize(
    "segment", ["mc'weekly", 'mc"weekly', "mc?weekly", "mc#weekly", "..", "mc/../x", "mc%2F..", "mc weekly"]
)
@pytest.mark.parametrize("where", ["configuration", "resource group"])
def test_a_correlation_id_with_an_odd_segment_is_no_run_id_and_no_request_path(segment, where):
    from shared.models.ids import configuration_of

    odd = RUN.replace("mc-weekly-linux" if where == "configuration" else "rg-patching", segment)
    assert configuration_of(odd) is None
    with pytest.raises(InvalidIdentifier):
        arm_path(odd)
