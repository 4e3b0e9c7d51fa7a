"""The /_sim/ inspection and control API, and ARM's front-door checks (auth, api-version, routes)."""

from __future__ import annotations

import pytest
import requests
from azure.mgmt.compute.models import CreationData, Snapshot
from azure.mgmt.resource.resources.models import GenericResource

from prepost.simulator import Estate, ManualClock, PowerState, SimulatorServer

AUTH = {"Authorization": "Bearer test"}


def sim(server: SimulatorServer, path: str, body: dict | None = None) -> requests.Response:
    if body is None:
        return requests.get(f"{server.url}/_sim/{path}", timeout=5)
    return requests.post(f"{server.url}/_sim/{path}", json=body, timeout=5)


def test_missing_bearer_token_is_401(server: SimulatorServer, estate: Estate) -> None:
    vm = estate.vms[0]

    response = requests.get(f"{server.url}{vm.id}?api-version=2024-07-01", timeout=5)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_missing_api_version_is_400(server: SimulatorServer, estate: Estate) -> None:
    response = requests.get(f"{server.url}{estate.vms[0].id}", headers=AUTH, timeout=5)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


def test_any_api_version_is_accepted(server: SimulatorServer, estate: Estate) -> None:
    response = requests.get(f"{server.url}{estate.vms[0].id}?api-version=1999-01-01", headers=AUTH, timeout=5)

    assert response.status_code == 200


def test_unknown_paths_and_methods(server: SimulatorServer, estate: Estate) -> None:
    vm = estate.vms[0]
    unknown = requests.get(f"{server.url}{vm.id}/extensions/x?api-version=1", headers=AUTH, timeout=5)
    wrong_method = requests.delete(f"{server.url}{vm.id}?api-version=1", headers=AUTH, timeout=5)

    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "InvalidResourceType")
    assert (wrong_method.status_code, wrong_method.headers["Allow"]) == (405, "GET")


def test_vms_endpoint_reports_power_and_counts(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = next(v for v in estate.vms if v.power_state is PowerState.DEALLOCATED)
    compute(vm.subscription_id).virtual_machines.begin_start(vm.resource_group, vm.name).result()

    listed = {item["id"]: item for item in sim(server, "vms").json()["value"]}

    assert len(listed) == len(estate.vms)
    assert listed[vm.id]["powerState"] == "running"
    assert (listed[vm.id]["startCount"], listed[vm.id]["deallocateCount"]) == (1, 0)
    assert listed[vm.id]["pendingOperation"] is None


def test_snapshots_rules_and_cancellations_endpoints(
    compute, resources, server: SimulatorServer, estate: Estate
) -> None:
    vm = estate.vms[0]
    compute(vm.subscription_id).snapshots.begin_create_or_update(
        vm.resource_group,
        "snap",
        Snapshot(
            location=vm.location,
            creation_data=CreationData(create_option="Copy", source_resource_id=vm.os_disk.id),
            incremental=True,
        ),
    ).result()
    rule_id = (
        f"/subscriptions/{vm.subscription_id}/resourceGroups/rg-prepost"
        "/providers/Microsoft.AlertsManagement/actionRules/r"
    )
    resources(vm.subscription_id).resources.begin_create_or_update_by_id(
        rule_id,
        api_version="2021-08-08",
        parameters=GenericResource(
            location="Global",
            properties={"scopes": [vm.id], "actions": [{"actionType": "RemoveAllActionGroups"}]},
        ),
    ).result()
    requests.put(
        f"{server.url}{estate.run.correlation_id}?api-version=2023-09-01-preview",
        json={"properties": {"status": "Cancel"}},
        headers=AUTH,
        timeout=5,
    )

    (snapshot,) = sim(server, "snapshots").json()["value"]
    (rule,) = sim(server, "alert-rules").json()["value"]
    (cancellation,) = sim(server, "cancellations").json()["value"]

    assert (snapshot["name"], snapshot["sourceResourceId"], snapshot["provisioningState"]) == (
        "snap",
        vm.os_disk.id,
        "Succeeded",
    )
    assert (rule["id"], rule["properties"]["scopes"], rule["putCount"]) == (rule_id, [vm.id], 1)
    assert (cancellation["correlationId"], cancellation["count"]) == (estate.run.correlation_id, 1)


def test_request_log_with_since(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = estate.vms[0]
    client = compute(vm.subscription_id).virtual_machines
    client.get(vm.resource_group, vm.name)
    mark = sim(server, "requests").json()["next"]
    client.get(vm.resource_group, vm.name, expand="instanceView")

    page = sim(server, f"requests?since={mark}").json()

    assert [(e["method"], e["operation"], e["status"]) for e in page["value"]] == [("GET", "vm.get", 200)]
    assert page["value"][0]["index"] == mark
    assert page["next"] == mark + 1
    assert page["value"][0]["path"] == vm.id


def test_state_has_everything(server: SimulatorServer, estate: Estate) -> None:
    state = sim(server, "state").json()

    assert set(state) >= {
        "vms",
        "arcServers",
        "snapshots",
        "alertRules",
        "cancellations",
        "runs",
        "operations",
        "counts",
    }
    assert len(state["arcServers"]) == len(estate.arc_servers)
    assert state["runs"][0]["correlationId"] == estate.run.correlation_id


def test_post_faults_replaces_the_configuration(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = estate.vms[0]
    answer = sim(server, "faults", {"rules": [{"operation": "vm.get", "status": 503, "times": 1}]})

    response = requests.get(f"{server.url}{vm.id}?api-version=1", headers=AUTH, timeout=5)
    after = requests.get(f"{server.url}{vm.id}?api-version=1", headers=AUTH, timeout=5)

    assert answer.json()["rules"][0]["operation"] == "vm.get"
    assert (response.status_code, response.json()["error"]["code"]) == (503, "ServiceUnavailable")
    assert after.status_code == 200
    assert sim(server, "faults").json()["rules"][0]["fired"] == 1
    assert sim(server, "faults", {"rules": [{"operation": "nope"}]}).status_code == 400


def test_post_throttling_scales_buckets(server: SimulatorServer, estate: Estate) -> None:
    vm = estate.vms[0]
    sim(server, "throttling", {"reads": {"capacity": 1, "refillPerSecond": 0.001}})

    statuses = [
        requests.get(f"{server.url}{vm.id}?api-version=1", headers=AUTH, timeout=5).status_code for _ in range(2)
    ]

    assert statuses == [200, 429]
    assert sim(server, "throttling").json()["reads"] == {"capacity": 1, "refillPerSecond": 0.001}


def test_post_runs_registers_a_run(server: SimulatorServer, estate: Estate) -> None:
    correlation_id = estate.run.correlation_id[:-6] + "030000"

    created = sim(server, "runs", {"correlationId": correlation_id, "resourceIds": estate.machine_ids[:2]})
    listed = sim(server, "runs").json()["value"]

    assert created.status_code == 201
    assert [run["correlationId"] for run in listed] == [estate.run.correlation_id, correlation_id]


def test_post_vms_sets_power_state(server: SimulatorServer, estate: Estate) -> None:
    vm = estate.vms[0]

    sim(server, "vms", {"id": vm.id, "powerState": "stopped"})

    assert server.state.power_state(vm.id) is PowerState.STOPPED


def test_clock_endpoint_moves_a_manual_clock(server: SimulatorServer, clock: ManualClock) -> None:
    before = clock.now()

    moved = sim(server, "clock", {"advanceSeconds": 90}).json()

    assert moved["manual"] is True
    assert (clock.now() - before).total_seconds() == 90


def test_reset_returns_to_the_seed(compute, server: SimulatorServer, estate: Estate) -> None:
    vm = next(v for v in estate.vms if v.power_state is PowerState.DEALLOCATED)
    compute(vm.subscription_id).virtual_machines.begin_start(vm.resource_group, vm.name).result()
    sim(server, "faults", {"rules": [{"operation": "*", "status": 500, "times": None}]})

    assert requests.post(f"{server.url}/_sim/reset", timeout=5).status_code == 204

    assert server.state.power_state(vm.id) is PowerState.DEALLOCATED
    assert server.state.requests() == []
    assert requests.get(f"{server.url}{vm.id}?api-version=1", headers=AUTH, timeout=5).status_code == 200


@pytest.mark.parametrize("path", ["nothing", "vms/extra"])
def test_unknown_control_endpoints_are_404(server: SimulatorServer, path: str) -> None:
    assert sim(server, path).status_code == 404


def test_post_lro_and_latency(server: SimulatorServer, estate: Estate) -> None:
    lro = sim(server, "lro", {"operations": {"vm.start": {"polls": 2, "seconds": None}}}).json()
    latency = sim(server, "latency", {"operations": {"vm.get": 0.0, "*": [0.0, 0.0]}}).json()

    assert lro["operations"]["vm.start"]["polls"] == 2
    assert lro["default"]["polls"] == 1
    assert latency == {"operations": {"vm.get": [0.0, 0.0], "*": [0.0, 0.0]}}
    assert server.app.config.lro.timing("vm.start").seconds is None


def test_table_result_format(server: SimulatorServer, estate: Estate) -> None:
    body = {
        "subscriptions": estate.subscription_ids,
        "query": "maintenanceresources | project name, resourceId = properties.resourceId | limit 2",
        "options": {"resultFormat": "table"},
    }

    response = requests.post(
        f"{server.url}/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01",
        json=body,
        headers=AUTH,
        timeout=5,
    ).json()

    assert [c["name"] for c in response["data"]["columns"]] == ["name", "resourceId"]
    assert len(response["data"]["rows"]) == 2
