"""Maintenance configuration, run cancellation and Arc servers."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.resource.resources.models import GenericResource

from prepost.simulator import ArcStatus, Estate, ManualClock, ResourceLimits, SimulatorConfig, SimulatorServer

CANCEL_API = "2023-09-01-preview"
AUTH = {"Authorization": "Bearer test"}


def test_configuration_parses_with_the_maintenance_sdk(maintenance, estate: Estate) -> None:
    config = estate.configuration

    got = maintenance(config.subscription_id).maintenance_configurations.get(config.resource_group, config.name)

    assert got.id == config.id
    assert got.tags == {"prepost-snapshot": "true"}
    assert got.maintenance_scope == "InGuestPatch"
    assert (got.start_date_time, got.duration, got.time_zone) == ("2026-11-22 02:00", "03:55", "UTC")
    assert got.recur_every == "1Week Sunday"
    assert got.install_patches.reboot_setting == "IfRequired"


def test_missing_configuration_is_404(maintenance, estate: Estate) -> None:
    with pytest.raises(ResourceNotFoundError):
        maintenance(estate.configuration.subscription_id).maintenance_configurations.get("rg-patching", "nope")


def cancel(resources, correlation_id: str, subscription_id: str):
    return (
        resources(subscription_id)
        .resources.begin_create_or_update_by_id(
            correlation_id,
            api_version=CANCEL_API,
            parameters=GenericResource(properties={"status": "Cancel"}),
        )
        .result()
    )


def test_cancel_is_recorded_and_idempotent(resources, server: SimulatorServer, estate: Estate) -> None:
    run = estate.run
    sub = estate.configuration.subscription_id

    first = cancel(resources, run.correlation_id, sub)
    # Same run, other casing of the provider segment: ARM ids are case-insensitive.
    second = cancel(resources, run.correlation_id.replace("applyupdates", "applyUpdates"), sub)

    assert first.properties["status"] == second.properties["status"] == "Cancel"
    (record,) = server.state.cancellations()
    assert (record.correlation_id, record.count) == (run.correlation_id, 2)
    assert server.state.count("applyupdates.put", run.correlation_id) == 2
    status = requests.get(f"{server.url}{run.correlation_id}?api-version={CANCEL_API}", headers=AUTH, timeout=5)
    assert status.json()["properties"]["status"] == "Cancel"


def test_cancel_of_an_unknown_run_is_404(resources, server: SimulatorServer, estate: Estate) -> None:
    unknown = estate.run_correlation_id(estate.run.start + timedelta(days=7))

    with pytest.raises(ResourceNotFoundError):
        cancel(resources, unknown, estate.configuration.subscription_id)

    assert server.state.cancellations() == []


def test_only_cancel_is_accepted(server: SimulatorServer, estate: Estate) -> None:
    response = requests.put(
        f"{server.url}{estate.run.correlation_id}?api-version={CANCEL_API}",
        json={"properties": {"status": "InProgress"}},
        headers=AUTH,
        timeout=5,
    )

    assert response.status_code == 400
    assert server.state.cancellations() == []


def test_optional_cancellation_cutoff(estate: Estate, clock: ManualClock) -> None:
    config = SimulatorConfig(limits=ResourceLimits(cancellation_cutoff_minutes=10))
    clock.set(estate.run.start - timedelta(minutes=9))
    with SimulatorServer(estate, config, clock=clock) as server:
        response = requests.put(
            f"{server.url}{estate.run.correlation_id}?api-version={CANCEL_API}",
            json={"properties": {"status": "Cancel"}},
            headers=AUTH,
            timeout=5,
        )

    assert response.status_code == 409


def test_arc_server_through_get_by_id(resources, estate: Estate) -> None:
    connected, disconnected = estate.arc_servers

    client = resources(connected.subscription_id).resources
    online = client.get_by_id(connected.id, api_version="2024-07-10")
    offline = client.get_by_id(disconnected.id, api_version="2024-07-10")

    assert online.properties["status"] == ArcStatus.CONNECTED.value
    assert offline.properties["status"] == ArcStatus.DISCONNECTED.value
    assert offline.properties["agentVersion"] == disconnected.agent_version
    assert offline.properties["lastStatusChange"].startswith(disconnected.last_status_change.strftime("%Y-%m-%dT%H:%M"))
    assert online.properties["osType"] in ("linux", "windows")


def test_arc_status_can_change(resources, server: SimulatorServer, estate: Estate) -> None:
    arc = estate.arc_servers[0]
    server.state.set_arc_status(arc.id, ArcStatus.EXPIRED)

    got = resources(arc.subscription_id).resources.get_by_id(arc.id, api_version="2024-07-10")

    assert got.properties["status"] == "Expired"


def test_missing_arc_server_is_404(resources, estate: Estate) -> None:
    arc = estate.arc_servers[0]

    with pytest.raises(HttpResponseError) as raised:
        resources(arc.subscription_id).resources.get_by_id(arc.id + "x", api_version="2024-07-10")

    assert raised.value.status_code == 404
