"""The readiness timer as the host calls it: every configuration listed is checked, each result kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

import function_app
from shared.bootstrap import Container, set_container
from shared.clock import set_clock
from shared.names import READINESS_FUNCTION, READINESS_SCHEDULE
from shared.ports.azure import PowerState, Snapshot
from shared.ports.readiness import ReadinessRecords
from shared.settings import Settings, Transport
from shared.usecases.readiness import ReadinessPorts
from tests.fakes_azure import FakeArc, FakeCompute, FakeConfigurations, vm_id
from tests.unit.test_readiness import CONFIG, SUB, FakeAssignments

NOW = datetime.fromisoformat("2026-11-20T05:00:00+00:00")
GONE = CONFIG.replace("/mc", "/mc-gone")
FUNCTIONS = {f.get_function_name(): f for f in function_app.build_app(Transport.STORAGE).get_functions()}


class FakeReadinessRecords(ReadinessRecords):
    def __init__(self) -> None:
        self.results = []

    def add(self, result) -> None:
        self.results.append(result)

    def list_results(self, configuration_id, *, limit=20):
        return [r for r in reversed(self.results) if r.configuration_id == configuration_id][:limit]


class _Clock:
    def now(self) -> datetime:
        return NOW


@pytest.fixture
def records() -> Iterator[FakeReadinessRecords]:
    settings = Settings.from_environ(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "PREPOST_ALLOWED_CONFIGURATIONS": "*",
            "PREPOST_ALLOWED_SUBSCRIPTIONS": "*",
            "PREPOST_READINESS_CONFIGURATIONS": f"{CONFIG}; {GONE}",
        }
    )
    compute = FakeCompute(now=NOW)
    vm = compute.add_vm(vm_id("vm-full", subscription=SUB), power_state=PowerState.RUNNING)
    for n in range(500):
        snapshot = f"/subscriptions/{SUB}/resourceGroups/rg-app/providers/Microsoft.Compute/snapshots/s-{n}"
        compute.add_snapshot(Snapshot(snapshot, vm.os_disk_id, NOW))
    ports = ReadinessPorts(
        FakeConfigurations({CONFIG: {}}), FakeAssignments(static=[vm.resource_id]), compute, FakeArc()
    )
    kept = FakeReadinessRecords()
    set_container(Container(settings, readiness_ports=ports, readiness_records=kept))
    set_clock(_Clock())
    try:
        yield kept
    finally:
        set_container(None)
        set_clock(None)


def test_the_timer_is_registered_on_its_documented_schedule():
    function = FUNCTIONS[READINESS_FUNCTION]
    trigger = function.get_trigger()

    assert trigger.get_binding_name() == "timerTrigger"
    assert trigger.get_dict_repr()["schedule"] == READINESS_SCHEDULE


def test_each_configuration_is_checked_and_its_result_kept_even_when_one_cannot_be(records):
    FUNCTIONS[READINESS_FUNCTION].get_user_function()(None)

    ready, gone = records.results
    assert (ready.configuration_id, ready.verdict, ready.would_cancel, ready.machines) == (CONFIG, "cancel", True, 1)
    assert ready.severities == {"blocking": 1} and ready.failing[0]["machine"].endswith("vm-full")
    assert ready.checked_at == NOW
    assert gone.verdict is None and gone.error and gone.summary == "the check could not be made"
