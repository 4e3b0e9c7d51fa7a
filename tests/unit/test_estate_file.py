"""Estate files: the loader, its errors naming the field, the schema beside it, and the mapping
onto the simulator's seed."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from prepost.estate import SCHEMA_PATH, EstateFileError, load_estate, parse_estate, to_simulator
from prepost.estate.model import DynamicScopeSpec, VmSpec
from prepost.local.host_config import REPO_ROOT
from prepost.simulator.estate import PatchMode, PowerState, run_correlation_id

EXAMPLE = REPO_ROOT / "docs" / "examples" / "estate.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SUB = "6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40"
CONFIG = f"/subscriptions/{SUB}/resourceGroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations/mc"
VM = f"/subscriptions/{SUB}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm1"


def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def minimal(**extra) -> dict:
    return {
        "version": 1,
        "vms": [{"id": VM, "location": "westeurope", "osType": "Linux"}],
        "maintenanceConfigurations": [{"id": CONFIG, "maintenanceWindow": {"startDateTime": "2026-12-06 02:00"}}],
        **extra,
    }


def problems_of(data) -> list[str]:
    with pytest.raises(EstateFileError) as caught:
        parse_estate(data, source="estate.json")
    assert str(caught.value).startswith("estate.json: ")
    return caught.value.problems


def test_the_schema_is_a_valid_json_schema_and_the_example_follows_it():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    VALIDATOR.validate(example())
    estate = load_estate(EXAMPLE)
    assert estate.counts() == {"subscriptions": 2, "vms": 4, "arcServers": 1, "configurations": 1, "runs": 1}


def test_a_minimal_file_gets_defaults_and_one_configuration_covers_every_machine():
    estate = parse_estate(minimal(runs=[{"maintenanceConfigurationId": CONFIG, "startDateTime": "2026-12-06T02:00Z"}]))

    [vm] = estate.vms
    assert (vm.power_state, vm.patch_mode, vm.bypass_platform_safety_checks) == ("running", "AutomaticByPlatform", True)
    assert vm.os_disk.id.endswith("/resourceGroups/rg-app/providers/Microsoft.Compute/disks/vm1-osdisk")
    assert estate.machines_for(CONFIG) == [VM]
    [run] = estate.runs
    assert run.correlation_id.endswith("/providers/microsoft.maintenance/applyupdates/20261206020000")
    assert estate.run_machines(run) == [VM]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(version=2), "version: must be 1"),
        (lambda d: d.pop("version"), "version: must be 1"),
        (lambda d: d["vms"][0].update(powerState="runing"), "vms[0].powerState: 'runing' is not one of: running"),
        (
            lambda d: d["vms"][0].update(powerstate="running"),
            "vms[0].powerstate: unknown field (did you mean 'powerState'?)",
        ),
        (lambda d: d["vms"][0].pop("location"), "vms[0].location: is required"),
        (lambda d: d["vms"][0].update(osType="BeOS"), "vms[0].osType: 'BeOS' is not one of: Linux, Windows"),
        (lambda d: d["vms"][0].update(id=CONFIG), "vms[0].id: '/subscriptions/"),
        (
            lambda d: d["vms"][0].update(patchSettings={"patchMode": "Sometimes"}),
            "vms[0].patchSettings.patchMode: 'Sometimes' is not one of",
        ),
        (
            lambda d: d["vms"][0].update(dataDisks=[{"id": VM.replace("virtualMachines", "disks"), "sizeGb": 0}]),
            "vms[0].dataDisks[0].sizeGb: must be a whole number of at least 1, got 0",
        ),
        (lambda d: d["vms"][0].update(dataDisks=[{"sizeGb": 64}]), "vms[0].dataDisks[0].id: is required"),
        (
            lambda d: d["vms"].append(copy.deepcopy(d["vms"][0])),
            "vms[1].id: " + VM + " is declared twice (also at [0])",
        ),
        (
            lambda d: d["maintenanceConfigurations"][0]["maintenanceWindow"].update(startDateTime="sunday"),
            "maintenanceConfigurations[0].maintenanceWindow.startDateTime: 'sunday' is not a time",
        ),
        (
            lambda d: d.update(subscriptions=[{"id": "not-a-guid"}]),
            "subscriptions[0].id: 'not-a-guid' is not a subscription GUID",
        ),
        (
            lambda d: d.update(subscriptions=[{"id": "b3e8a912-4f6c-4d0b-8a21-7c5e9f3d2a18"}]),
            f"vms[0].id: its subscription {SUB} is not in subscriptions",
        ),
        (
            lambda d: d.update(
                configurationAssignments=[{"maintenanceConfigurationId": CONFIG, "resourceId": VM + "x"}]
            ),
            "configurationAssignments[0].resourceId: " + VM + "x is not in vms or arcServers",
        ),
        (
            lambda d: d.update(
                configurationAssignments=[{"maintenanceConfigurationId": CONFIG + "-other", "resourceId": VM}]
            ),
            "configurationAssignments[0].maintenanceConfigurationId: not in maintenanceConfigurations",
        ),
        (
            lambda d: d.update(
                dynamicScopes=[{"maintenanceConfigurationId": CONFIG, "name": "s", "subscriptions": []}]
            ),
            "dynamicScopes[0].subscriptions: is required",
        ),
        (
            lambda d: d.update(
                dynamicScopes=[
                    {
                        "maintenanceConfigurationId": CONFIG,
                        "name": "s",
                        "subscriptions": [SUB],
                        "filter": {"tagSettings": {"filterOperator": "Some"}},
                    }
                ]
            ),
            "dynamicScopes[0].filter.tagSettings.filterOperator: 'Some' is not one of: All, Any",
        ),
        (lambda d: d.update(runs=[{"correlationId": CONFIG}]), "runs[0].correlationId: "),
        (
            lambda d: d.update(runs=[{"correlationId": run_correlation_id(CONFIG, _start()), "startDateTime": "x"}]),
            "runs[0]: give either correlationId, or maintenanceConfigurationId with startDateTime",
        ),
        (
            lambda d: d.update(
                runs=[
                    {"maintenanceConfigurationId": CONFIG, "startDateTime": "2026-12-06T02:00Z", "machines": [VM + "2"]}
                ]
            ),
            "runs[0].machines[0]: " + VM + "2 is not in vms or arcServers",
        ),
        (lambda d: d.update(vms={}), "vms: must be an array, got an object"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None,
)
def test_a_bad_file_gets_an_error_naming_the_field(change, expected):
    data = minimal()
    change(data)

    problems = problems_of(data)

    assert any(problem.startswith(expected) for problem in problems), problems
    # The schema refuses the same files (references are beyond what a schema can say).
    if not any(word in expected for word in ("declared twice", "not in ", "give either")):
        assert list(VALIDATOR.iter_errors(data)), expected


def test_every_problem_is_reported_at_once():
    data = minimal()
    data["vms"][0].update(powerState="on", osType="Unix")
    data["maintenanceConfigurations"][0]["maintenanceWindow"]["duration"] = "forever"

    problems = problems_of(data)

    assert len(problems) == 3, problems


def test_a_file_that_is_not_json_names_the_file(tmp_path: Path):
    path = tmp_path / "estate.json"
    path.write_text("{not json")
    with pytest.raises(EstateFileError) as caught:
        load_estate(path)
    assert str(path) in str(caught.value) and "not JSON" in str(caught.value)
    with pytest.raises(EstateFileError, match="cannot be read"):
        load_estate(tmp_path / "missing.json")


def test_dynamic_scopes_match_as_azure_filters_do():
    vm = VmSpec(
        id=VM,
        location="westeurope",
        os_type="Linux",
        os_disk=None,  # type: ignore[arg-type]
        tags={"Environment": "prod", "tier": "web"},
    )

    def scope(**filters) -> DynamicScopeSpec:
        return DynamicScopeSpec(configuration_id=CONFIG, name="s", subscriptions=(SUB,), **filters)

    assert scope().matches(vm)
    assert not DynamicScopeSpec(CONFIG, "s", ("b3e8a912-4f6c-4d0b-8a21-7c5e9f3d2a18",)).matches(vm)
    assert scope(resource_groups=("RG-APP",), locations=("WestEurope",), os_types=("Linux",)).matches(vm)
    assert not scope(os_types=("Windows",)).matches(vm)
    assert not scope(resource_types=("Microsoft.HybridCompute/machines",)).matches(vm)
    assert scope(tags={"environment": ("prod",), "tier": ("db",)}, tag_operator="Any").matches(vm)
    assert not scope(tags={"environment": ("prod",), "tier": ("db",)}, tag_operator="All").matches(vm)
    assert scope(tags={"tier": ()}, tag_operator="All").matches(vm)


def test_the_example_maps_onto_the_simulator_seed():
    estate = load_estate(EXAMPLE)

    seed = to_simulator(estate)

    assert [vm.id for vm in seed.vms] == [vm.id for vm in estate.vms]
    sql = seed.vm("vm-win-sql-01")
    assert (sql.patch_mode, sql.bypass_platform_safety_checks) == (PatchMode.AUTOMATIC_BY_OS, False)
    assert sql.os_disk.id == estate.vms[2].os_disk.id
    assert seed.vm("vm-lnx-batch-02").power_state is PowerState.DEALLOCATED
    assert [d.name for d in seed.vm("vm-lnx-web-01").data_disks] == ["vm-lnx-web-01-data-0"]
    assert seed.arc_servers[0].agent_version == "1.47.02825.2025"
    assert seed.configuration.tags == {"prepost-snapshot": "true"}
    # The run covers the assigned Arc server and the prod VMs of the dynamic scope, not the test VM.
    [run] = seed.runs
    assert run.correlation_id == estate.runs[0].correlation_id
    assert sorted(m.rsplit("/", 1)[-1] for m in run.resource_ids) == [
        "arc-lnx-001",
        "vm-lnx-batch-02",
        "vm-lnx-web-01",
        "vm-win-sql-01",
    ]
    assert ("6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40", "rg-patching") in seed.extra_resource_groups
    # Same file, same GUIDs: a rehearsal can be repeated.
    assert [d.unique_id for d in to_simulator(estate).disks] == [d.unique_id for d in seed.disks]


def _start():
    from datetime import UTC, datetime

    return datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


ARC = f"/subscriptions/{SUB}/resourceGroups/rg-onprem/providers/Microsoft.HybridCompute/machines/arc1"
OTHER_SUB = "b3e8a912-4f6c-4d0b-8a21-7c5e9f3d2a18"


def readiness_file() -> dict:
    data = minimal()
    data["vms"][0].update(
        vmAgent={"status": "Not Ready", "version": "2.7.1", "message": "no heartbeat"},
        extensions=[
            {"name": "LinuxPatchExtension", "publisher": "Microsoft.CPlat.Core", "provisioningState": "Succeeded"},
            {"name": "CustomScript", "provisioningState": "Failed", "message": "exit 2"},
        ],
        osDisk={"existingSnapshots": 498},
        dataDisks=[{"id": VM.replace("virtualMachines/vm1", "disks/vm1-data"), "existingSnapshots": 3}],
    )
    data["arcServers"] = [
        {
            "id": ARC,
            "location": "westeurope",
            "osType": "Linux",
            "agentVersion": "1.36.02680.1549",
            "agentUpgrade": {"enableAutomaticUpgrade": True},
            "extensions": [{"name": "AzureMonitorLinuxAgent", "provisioningState": "Failed"}],
        }
    ]
    return data


def test_readiness_facts_map_onto_the_simulator_model():
    data = readiness_file()
    VALIDATOR.validate(data)

    seed = to_simulator(parse_estate(data))

    vm = seed.vm("vm1")
    assert (vm.agent_ready, vm.agent_status, vm.agent_version, vm.agent_message) == (
        False,
        "Not Ready",
        "2.7.1",
        "no heartbeat",
    )
    assert [(e.name, e.failed, e.message) for e in vm.reported_extensions()] == [
        ("LinuxPatchExtension", False, ""),
        ("CustomScript", True, "exit 2"),
    ]
    assert [d.existing_snapshots for d in vm.disks] == [498, 3]
    [arc] = seed.arc_servers
    assert (arc.agent_version, arc.automatic_upgrade) == ("1.36.02680.1549", True)
    assert [(e.name, e.failed) for e in arc.reported_extensions()] == [("AzureMonitorLinuxAgent", True)]


def test_a_machine_declaring_no_extensions_reports_none_and_an_undeclared_agent_is_ready():
    vm = to_simulator(parse_estate(minimal())).vms[0]

    assert vm.reported_extensions() == []
    assert vm.agent_ready and vm.agent_status is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["vms"][0]["osDisk"].update(existingSnapshots=-1), "vms[0].osDisk.existingSnapshots: must be"),
        (lambda d: d["arcServers"][0].update(agentUpgrade={"enableAutomaticUpgrade": "yes"}), "arcServers[0]"),
        (lambda d: d["arcServers"][0].update(agentUpgrade={"enabled": True}), "agentUpgrade.enabled: unknown field"),
    ],
)
def test_bad_readiness_facts_are_named(change, expected):
    data = readiness_file()
    change(data)

    assert any(expected in problem for problem in problems_of(data)), problems_of(data)
    assert not VALIDATOR.is_valid(data)


def test_assignments_and_dynamic_scopes_become_the_simulators_configuration_assignments():
    data = readiness_file()
    data["configurationAssignments"] = [{"maintenanceConfigurationId": CONFIG, "resourceId": ARC}]
    arm_filter = {"osTypes": ["Linux"], "tagSettings": {"tags": {"env": ["prod"]}, "filterOperator": "All"}}
    data["dynamicScopes"] = [
        {"maintenanceConfigurationId": CONFIG, "name": "prod", "subscriptions": [SUB, OTHER_SUB], "filter": arm_filter}
    ]

    seed = to_simulator(parse_estate(data))

    assert [(a.resource_id, a.filter) for a in seed.assignments] == [
        (ARC, None),
        (f"/subscriptions/{SUB}", arm_filter),
        (f"/subscriptions/{OTHER_SUB}", arm_filter),
    ]
    assert {a.name for a in seed.assignments[1:]} == {"prod"}
    assert all(a.configuration_id == CONFIG for a in seed.assignments)


def test_a_configuration_without_assignments_is_assigned_to_every_machine_of_the_file():
    seed = to_simulator(parse_estate(readiness_file()))

    assert [(a.configuration_id, a.resource_id, a.filter) for a in seed.assignments] == [
        (CONFIG, VM, None),
        (CONFIG, ARC, None),
    ]
