"""The seeded estate: deterministic generation, explicit construction, runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from prepost.simulator import ArcStatus, Estate, OsType, PatchMode, PowerState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def test_generate_is_deterministic_for_a_seed() -> None:
    assert Estate.generate(seed=5) == Estate.generate(seed=5)
    assert Estate.generate(seed=5).subscription_ids != Estate.generate(seed=6).subscription_ids


def test_generate_spreads_machines_and_varies_them() -> None:
    estate = Estate.generate(machines=50, subscriptions=2, arc_servers=3, seed=1)

    assert len(estate.vms) == 50
    assert len(estate.subscription_ids) == 2
    assert {vm.subscription_id for vm in estate.vms} == set(estate.subscription_ids)
    assert len({(vm.subscription_id, vm.resource_group) for vm in estate.vms}) > 2
    assert sum(vm.power_state is PowerState.DEALLOCATED for vm in estate.vms) == 12  # every 4th
    assert all(vm.data_disks for index, vm in enumerate(estate.vms, 1) if index % 3 == 0)
    unsafe = [vm for vm in estate.vms if not vm.safe_for_scheduled_patching]
    assert len(unsafe) == 5  # every 10th
    for vm in unsafe:
        if vm.os_type is OsType.LINUX:
            assert vm.patch_mode in (PatchMode.IMAGE_DEFAULT, PatchMode.AUTOMATIC_BY_PLATFORM)
    assert [arc.status for arc in estate.arc_servers] == [
        ArcStatus.CONNECTED,
        ArcStatus.CONNECTED,
        ArcStatus.DISCONNECTED,
    ]


def test_generate_seeds_configuration_and_run() -> None:
    start = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    estate = Estate.generate(machines=4, arc_servers=1, run_start=start, configuration_tags={"owner": "ops"})

    config = estate.configuration
    assert (config.resource_group, config.name, config.tags) == ("rg-patching", "mc-weekly", {"owner": "ops"})
    assert config.subscription_id == estate.subscription_ids[0]
    assert estate.run.correlation_id == (f"{config.id}/providers/microsoft.maintenance/applyupdates/20261206030000")
    assert estate.run.start == start
    assert estate.run.resource_ids == estate.machine_ids
    assert len(estate.machine_ids) == 5


def test_subscription_ids_can_be_given() -> None:
    subs = ["6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40", "b3e8a912-4f6c-4d0b-8a21-7c5e9f3d2a18"]
    estate = Estate.generate(machines=4, subscription_ids=subs, configuration_name="mc-weekly-linux")

    assert estate.subscription_ids == subs
    assert estate.configuration.name == "mc-weekly-linux"


def test_from_machines_builds_an_explicit_estate() -> None:
    sub = "11111111-1111-4111-8111-111111111111"
    estate = Estate.from_machines(
        [
            f"/subscriptions/{sub}/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/web-1",
            {
                "id": f"/subscriptions/{sub}/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/db-1",
                "powerState": "deallocated",
                "osType": "Windows",
                "patchMode": "AutomaticByOS",
                "dataDisks": 2,
            },
            {
                "id": f"/subscriptions/{sub}/resourceGroups/rg-onprem/providers/Microsoft.HybridCompute/machines/arc-1",
                "status": "Disconnected",
            },
        ],
        configuration_tags={"snapshot": "yes"},
    )

    web, db = estate.vms
    assert web.power_state is PowerState.RUNNING and web.safe_for_scheduled_patching
    assert db.power_state is PowerState.DEALLOCATED and not db.safe_for_scheduled_patching
    assert [disk.name for disk in db.disks] == ["db-1-osdisk", "db-1-data-0", "db-1-data-1"]
    assert estate.arc_servers[0].status is ArcStatus.DISCONNECTED
    assert estate.configuration.id.endswith(
        "/resourceGroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations/mc-weekly"
    )
    assert estate.configuration.tags == {"snapshot": "yes"}
    assert len(estate.run.resource_ids) == 3


def test_from_machines_rejects_other_resource_types() -> None:
    with pytest.raises(ValueError):
        Estate.from_machines(["/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app"])


def test_add_run_registers_and_replaces_runs() -> None:
    estate = Estate.generate(machines=3, arc_servers=0)
    later = estate.run_correlation_id(datetime(2026, 11, 29, 2, 0, tzinfo=UTC))

    estate.add_run(later, estate.machine_ids[:1])
    estate.add_run(later.replace("applyupdates", "applyUpdates"), estate.machine_ids[:2])

    assert len(estate.runs) == 2
    assert estate.runs[-1].resource_ids == estate.machine_ids[:2]
    with pytest.raises(ValueError):
        estate.add_run("/subscriptions/s/resourceGroups/rg", [])


def test_an_estate_can_match_the_sample_events() -> None:
    (event,) = json.loads((FIXTURES / "pre-eventgrid-camelcase.json").read_text())
    data = event["data"]

    estate = Estate.generate(
        machines=6,
        subscription_ids=data["resourceSubscriptionIds"],
        configuration_name=event["subject"],
        run_start=datetime.fromisoformat(data["startDateTime"].replace("Z", "+00:00")),
    )

    assert estate.run.correlation_id == data["correlationId"]
    assert estate.configuration.id == data["maintenanceConfigurationId"]
