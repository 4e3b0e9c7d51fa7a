"""Dynamic scopes: which machines a configuration assignment's filter covers."""

from __future__ import annotations

import pytest

from shared.models.scopes import CandidateMachine, DynamicScope, resolve

SUB_A = "6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40"
SUB_B = "b3e8a912-4f6c-4d0b-8a21-7c5e9f3d2a18"
VM_TYPE = "microsoft.compute/virtualmachines"
ARC_TYPE = "microsoft.hybridcompute/machines"


def machine(name, *, sub=SUB_A, group="rg-app", kind=VM_TYPE, location="westeurope", os="Linux", **tags):
    provider = "Microsoft.Compute/virtualMachines" if kind == VM_TYPE else "Microsoft.HybridCompute/machines"
    resource_id = f"/subscriptions/{sub}/resourceGroups/{group}/providers/{provider}/{name}"
    return CandidateMachine(resource_id, kind, location, os, tags)


def scope(**filter_) -> DynamicScope:
    return DynamicScope.from_filter([SUB_A], filter_)


def test_an_empty_filter_covers_every_machine_of_its_subscriptions_only():
    assert scope().matches(machine("a"))
    assert not scope().matches(machine("b", sub=SUB_B))


@pytest.mark.parametrize(
    ("filter_", "candidate", "expected"),
    [
        ({"resourceTypes": ["Microsoft.HybridCompute/machines"]}, machine("a"), False),
        ({"resourceTypes": ["Microsoft.HybridCompute/machines"]}, machine("a", kind=ARC_TYPE, os="linux"), True),
        ({"resourceGroups": ["RG-APP"]}, machine("a"), True),
        ({"resourceGroups": ["rg-db"]}, machine("a"), False),
        ({"osTypes": ["Windows"]}, machine("a"), False),
        ({"osTypes": ["Linux"]}, machine("a", kind=ARC_TYPE, os="linux"), True),
        ({"locations": ["West Europe"]}, machine("a"), True),
        ({"locations": ["northeurope"]}, machine("a"), False),
        ({"resourceGroups": ["rg-app"], "osTypes": ["Windows"]}, machine("a"), False),  # criteria are ANDed
    ],
)
def test_each_criterion_narrows_the_scope(filter_, candidate, expected):
    assert scope(**filter_).matches(candidate) is expected


def test_tags_match_any_or_all_as_the_filter_operator_says():
    tags = {"tags": {"env": ["prod"], "patch": ["wave-1", "wave-2"]}}
    only_env = machine("a", env="prod")
    both = machine("b", env="prod", patch="wave-2")

    assert scope(tagSettings={**tags, "filterOperator": "Any"}).matches(only_env)
    assert not scope(tagSettings={**tags, "filterOperator": "All"}).matches(only_env)
    assert scope(tagSettings={**tags, "filterOperator": "All"}).matches(both)
    assert not scope(tagSettings={"tags": {"env": ["test"]}}).matches(only_env)


def test_resolve_merges_static_and_dynamic_assignments_once_and_ignores_other_resources():
    a, b = machine("vm-a"), machine("vm-b", group="rg-db")
    disk = f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/Microsoft.Compute/disks/d1"

    machines = resolve([a.resource_id.upper(), disk], [scope(resourceGroups=["rg-app"])], [a, b])

    assert machines == [a.resource_id.upper()]
