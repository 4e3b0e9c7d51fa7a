"""Alert processing rules through the generic ResourceManagementClient, as the pipeline calls them."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.resource.resources.models import GenericResource

from prepost.simulator import Estate, SimulatorServer

API = "2021-08-08"


def rule_id(subscription_id: str, name: str = "prepost-suppress") -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/rg-prepost/providers/"
        f"Microsoft.AlertsManagement/actionRules/{name}"
    )


def rule(
    scopes: list[str],
    effective_from: str = "2026-11-22T01:30:00",
    until: str = "2026-11-22T07:00:00",
    **extra,
) -> GenericResource:
    return GenericResource(
        location=extra.pop("location", "Global"),
        tags={"prepost-run": "20261122020000"},
        properties={
            "scopes": scopes,
            "actions": [{"actionType": "RemoveAllActionGroups"}],
            "schedule": {"effectiveFrom": effective_from, "effectiveUntil": until, "timeZone": "UTC"},
            "description": "Suppress notifications during patching",
            "enabled": True,
            **extra,
        },
    )


def test_put_get_delete(resources, server: SimulatorServer, estate: Estate) -> None:
    sub = estate.subscription_ids[0]
    client = resources(sub).resources
    scopes = [vm.id for vm in estate.vms if vm.subscription_id == sub]
    statuses: list[int] = []

    created = client.begin_create_or_update_by_id(
        rule_id(sub),
        api_version=API,
        parameters=rule(scopes),
        raw_response_hook=lambda r: statuses.append(r.http_response.status_code),
    ).result()
    fetched = client.get_by_id(rule_id(sub), api_version=API)
    client.begin_delete_by_id(rule_id(sub), api_version=API).result()

    assert statuses[0] == 201
    assert created.location == "Global" and created.type == "Microsoft.AlertsManagement/actionRules"
    assert fetched.properties["scopes"] == scopes
    assert fetched.properties["actions"] == [{"actionType": "RemoveAllActionGroups"}]
    assert fetched.properties["schedule"]["effectiveUntil"] == "2026-11-22T07:00:00"
    assert fetched.tags == {"prepost-run": "20261122020000"}
    assert server.state.alert_rules() == []
    with pytest.raises(ResourceNotFoundError):
        client.get_by_id(rule_id(sub), api_version=API)


def test_put_again_updates_with_200(resources, server: SimulatorServer, estate: Estate) -> None:
    sub = estate.subscription_ids[0]
    client = resources(sub).resources
    statuses: list[int] = []

    def keep(response) -> None:
        if response.http_request.method == "PUT":
            statuses.append(response.http_response.status_code)

    client.begin_create_or_update_by_id(
        rule_id(sub), api_version=API, parameters=rule([f"/subscriptions/{sub}"]), raw_response_hook=keep
    ).result()
    client.begin_create_or_update_by_id(
        rule_id(sub),
        api_version=API,
        parameters=rule([f"/subscriptions/{sub}"], until="2026-11-22T08:00:00"),
        raw_response_hook=keep,
    ).result()

    assert statuses == [201, 200]
    (stored,) = server.state.alert_rules()
    assert stored.put_count == 2
    assert stored.properties["schedule"]["effectiveUntil"] == "2026-11-22T08:00:00"


def test_delete_of_a_missing_rule_is_204(resources, server: SimulatorServer, estate: Estate) -> None:
    sub = estate.subscription_ids[0]
    start = server.state.next_request_index

    resources(sub).resources.begin_delete_by_id(rule_id(sub, "never-made"), api_version=API).result()

    assert [r.status for r in server.state.requests(since=start)] == [204]


def test_scopes_in_another_subscription_are_rejected(resources, server: SimulatorServer, estate: Estate) -> None:
    sub, other = estate.subscription_ids
    other_vm = next(vm.id for vm in estate.vms if vm.subscription_id == other)

    with pytest.raises(HttpResponseError) as raised:
        resources(sub).resources.begin_create_or_update_by_id(
            rule_id(sub), api_version=API, parameters=rule([other_vm])
        )

    assert raised.value.status_code == 400
    assert server.state.alert_rules() == []


@pytest.mark.parametrize(
    ("effective_from", "until"),
    [
        ("2026-11-22T01:30:00Z", "2026-11-22T07:00:00Z"),  # a timezone suffix is not accepted
        ("2026-11-22T01:30:00+00:00", "2026-11-22T07:00:00"),
        ("2026-11-22T07:00:00", "2026-11-22T01:30:00"),  # until before from
    ],
)
def test_schedule_times_are_validated(resources, estate: Estate, effective_from: str, until: str) -> None:
    sub = estate.subscription_ids[0]

    with pytest.raises(HttpResponseError) as raised:
        resources(sub).resources.begin_create_or_update_by_id(
            rule_id(sub), api_version=API, parameters=rule([f"/subscriptions/{sub}"], effective_from, until)
        )

    assert raised.value.status_code == 400


def test_location_must_be_global(resources, estate: Estate) -> None:
    sub = estate.subscription_ids[0]

    with pytest.raises(HttpResponseError) as raised:
        resources(sub).resources.begin_create_or_update_by_id(
            rule_id(sub), api_version=API, parameters=rule([f"/subscriptions/{sub}"], location="westeurope")
        )

    assert raised.value.error.code == "LocationNotAvailableForResourceType"


def test_rule_needs_an_existing_resource_group(resources, estate: Estate) -> None:
    sub = estate.subscription_ids[0]
    missing_group = rule_id(sub).replace("rg-prepost", "rg-missing")

    with pytest.raises(ResourceNotFoundError) as raised:
        resources(sub).resources.begin_create_or_update_by_id(
            missing_group, api_version=API, parameters=rule([f"/subscriptions/{sub}"])
        )

    assert raised.value.error.code == "ResourceGroupNotFound"
