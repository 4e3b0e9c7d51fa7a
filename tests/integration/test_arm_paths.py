"""Resource ids in request paths, against the simulator: quoted segment by segment, and an id
that breaks ARM's naming rules is refused before any request leaves.

The generic requests (run cancellation, alert processing rules, Arc machines) build their paths
themselves; the management SDKs quote their path parameters, but take ``..`` as it is.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prepost.simulator import Estate, SimulatorServer
from shared.adapters.arm.alerts import ArmAlertSuppression
from shared.adapters.arm.arc import ArmArcMachines
from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.compute import ArmCompute
from shared.adapters.arm.maintenance import ArmRunCancellation
from shared.errors import InvalidIdentifier, PermanentError
from shared.settings import ArmAuth
from tests.integration.harness import future_start

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    estate = Estate.generate(
        machines=1,
        subscriptions=1,
        arc_servers=1,
        run_start=future_start(60),
        configuration_name="mc.weekly_(linux)",
        configuration_resource_group="rg(patching).1",
    )
    with SimulatorServer(estate) as running:
        yield running


@pytest.fixture
def clients(server) -> ArmClients:
    return ArmClients(server.url, ArmAuth.SIMULATOR)


def test_a_run_in_a_group_and_configuration_with_parentheses_and_dots_is_cancelled(server, clients):
    correlation_id = server.estate.run.correlation_id
    assert "(" in correlation_id

    assert ArmRunCancellation(clients).cancel(correlation_id) == "Cancel"

    assert [c.correlation_id.lower() for c in server.state.cancellations()] == [correlation_id.lower()]


def odd_ids(server: SimulatorServer) -> list[str]:
    sub = server.estate.subscription_ids[0]
    base = f"/subscriptions/{sub}/resourceGroups"
    return [
        f"{base}/../providers/Microsoft.HybridCompute/machines/arc-1",
        f"{base}/rg/providers/Microsoft.HybridCompute/machines/arc-1?api-version=1#",
        f"{base}/rg/providers/Microsoft.HybridCompute/machines/arc'1",
        f"{base}/rg/providers/Microsoft.HybridCompute/machines/%2E%2E",
        f"/subscriptions/{sub.replace('-', '')}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/arc-1",
    ]


def test_odd_ids_reach_no_api(server, clients):
    arc, alerts, compute = ArmArcMachines(clients), ArmAlertSuppression(clients), ArmCompute(clients)
    sub = server.estate.subscription_ids[0]
    before = len(server.state.requests())

    for odd in odd_ids(server):
        with pytest.raises(InvalidIdentifier):
            arc.get_machine(odd)
        rule = odd.replace("Microsoft.HybridCompute/machines", "Microsoft.AlertsManagement/actionRules")
        with pytest.raises(InvalidIdentifier):
            alerts.delete_rule(rule)
        vm = odd.replace("Microsoft.HybridCompute/machines", "Microsoft.Compute/virtualMachines")
        with pytest.raises(InvalidIdentifier):
            compute.get_vm(vm)
        with pytest.raises(InvalidIdentifier):
            compute.begin_start_vm(vm)
    with pytest.raises(InvalidIdentifier):
        compute.list_snapshots(sub, "..")
    with pytest.raises(PermanentError):
        ArmRunCancellation(clients).cancel(server.estate.run.correlation_id.replace("rg(patching).1", ".."))

    assert server.state.requests()[before:] == []


def test_a_valid_arc_id_still_reaches_the_api(server, clients):
    machine = server.estate.arc_servers[0]
    found = ArmArcMachines(clients).get_machine(machine.id)
    assert found is not None and found.resource_id.lower() == machine.id.lower()
