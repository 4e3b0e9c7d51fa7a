"""Resource ids: compared and keyed case-insensitively, displayed as given."""

from __future__ import annotations

import re

import pytest

from shared.models.ids import (
    MachineKind,
    ResourceId,
    configuration_of,
    is_guid,
    run_key,
    schedule_stamp_of,
)
from shared.models.run import Action, Phase, task_id
from tests.conftest import load_events
from tests.fakes_azure import arc_id, vm_id

SAMPLE = load_events("pre-eventgrid-camelcase.json")[0]["data"]
CORRELATION = SAMPLE["correlationId"]
CONFIGURATION = SAMPLE["maintenanceConfigurationId"]
SUBSCRIPTION = SAMPLE["resourceSubscriptionIds"][0]
VM = vm_id("vm-Web-01", subscription=SUBSCRIPTION, resource_group="rg-App")
ARC = arc_id("srv-01", subscription=SUBSCRIPTION)
TABLE_KEY_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def test_resource_ids_are_equal_and_hash_alike_whatever_the_case():
    upper = ResourceId(VM.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"))
    original = ResourceId(VM)

    assert upper == original
    assert hash(upper) == hash(original)
    assert len({upper, original}) == 1
    assert str(original) == VM  # displayed as given


def test_a_trailing_slash_does_not_change_the_identity():
    assert ResourceId(VM + "/") == ResourceId(VM)


def test_a_resource_id_is_not_equal_to_its_text():
    assert ResourceId(VM) != VM


def test_parts_of_a_resource_id():
    resource = ResourceId(VM)

    assert resource.subscription_id == SUBSCRIPTION.lower()
    assert resource.resource_group == "rg-App"
    assert resource.name == "vm-Web-01"
    assert resource.provider_type == "microsoft.compute/virtualmachines"


def test_a_nested_resource_type_lists_every_type_segment():
    extension = ResourceId(VM + "/extensions/HybridWorkerExtension")

    assert extension.provider_type == "microsoft.compute/virtualmachines/extensions"
    assert extension.name == "HybridWorkerExtension"


@pytest.mark.parametrize(
    ("resource_id", "kind"),
    [
        (VM, MachineKind.AZURE_VM),
        (VM.lower(), MachineKind.AZURE_VM),
        (ARC, MachineKind.ARC_SERVER),
        (ARC.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"), MachineKind.ARC_SERVER),
        (VM + "/extensions/ext", None),
        (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute/disks/d1", None),
        (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg", None),
    ],
    ids=["vm", "vm-lower", "arc", "arc-upper", "extension", "disk", "resource-group"],
)
def test_machine_kind(resource_id, kind):
    assert ResourceId(resource_id).machine_kind is kind


@pytest.mark.parametrize("text", ["", "/", "vm-web-01", "/resourceGroups/rg", "/subscriptions/", "/subscriptions//rg"])
def test_text_that_is_not_a_resource_id_is_refused(text):
    with pytest.raises(ValueError):
        ResourceId(text)


def test_short_hash_is_stable_case_insensitive_and_distinct():
    assert ResourceId(VM).short_hash() == ResourceId(VM.lower()).short_hash()
    assert ResourceId(VM).short_hash() != ResourceId(ARC).short_hash()
    assert len(ResourceId(VM).short_hash(8)) == 8


def test_the_configuration_and_schedule_of_a_run_id():
    assert configuration_of(CORRELATION).lower() == CONFIGURATION.lower()
    assert schedule_stamp_of(CORRELATION) == CORRELATION.rsplit("/", 1)[-1]


def test_run_ids_are_recognised_whatever_the_case():
    camel = CORRELATION.replace("applyupdates", "applyUpdates").replace(
        "microsoft.maintenance", "Microsoft.Maintenance"
    )

    assert configuration_of(camel) == configuration_of(CORRELATION)
    assert configuration_of(CORRELATION.upper()) is not None


@pytest.mark.parametrize(
    "text",
    [CONFIGURATION, CORRELATION + "/extra", CORRELATION[:-2], VM, "", "applyupdates/20261122020000"],
    ids=["configuration", "extra-segment", "short-stamp", "vm", "empty", "fragment"],
)
def test_what_is_not_a_run_id(text):
    assert configuration_of(text) is None
    assert schedule_stamp_of(text) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SUBSCRIPTION, True),
        (SUBSCRIPTION.upper(), True),
        (SUBSCRIPTION.replace("-", ""), False),
        ("{" + SUBSCRIPTION + "}", False),
        ("1234-5678-1234-5678-1234567812345678", False),  # 36 characters, hyphens misplaced
        ("not-a-guid", False),
        ("", False),
    ],
)
def test_is_guid(value, expected):
    assert is_guid(value) is expected


def test_run_key_is_stable_and_case_insensitive():
    camel = CORRELATION.replace("applyupdates", "applyUpdates")

    assert run_key(CORRELATION) == run_key(camel) == run_key(CORRELATION.upper()) == run_key(f"  {CORRELATION} ")


def test_run_key_is_readable_and_a_valid_table_key():
    key = run_key(CORRELATION)

    assert key.startswith(f"{configuration_of(CORRELATION).rsplit('/', 1)[-1]}-{schedule_stamp_of(CORRELATION)}-")
    assert not TABLE_KEY_FORBIDDEN.search(key)
    assert len(key) <= 1024


def test_different_runs_have_different_keys():
    next_week = CORRELATION[:-14] + "20261129020000"
    other_config = CORRELATION.replace("mc-weekly-linux", "mc-weekly-windows")

    assert len({run_key(CORRELATION), run_key(next_week), run_key(other_config)}) == 3


def test_run_key_of_a_configuration_with_odd_characters_is_still_a_table_key():
    odd = CORRELATION.replace("mc-weekly-linux", "mc weekly#linux?" + "x" * 100)

    key = run_key(odd)

    assert not TABLE_KEY_FORBIDDEN.search(key)
    assert key != run_key(CORRELATION)


def test_task_ids_are_stable_case_insensitive_and_table_keys():
    assert task_id(Phase.PRE, Action.START_VM, VM) == task_id(Phase.PRE, Action.START_VM, VM.lower())
    assert task_id(Phase.PRE, Action.START_VM, VM) != task_id(Phase.POST, Action.START_VM, VM)
    assert task_id(Phase.PRE, Action.START_VM, VM) != task_id(Phase.PRE, Action.SNAPSHOT_DISKS, VM)
    assert task_id(Phase.PRE, Action.SUPPRESS_ALERTS, SUBSCRIPTION.upper()) == task_id(
        Phase.PRE, Action.SUPPRESS_ALERTS, SUBSCRIPTION
    )
    assert not TABLE_KEY_FORBIDDEN.search(task_id(Phase.PRE, Action.START_VM, VM))
