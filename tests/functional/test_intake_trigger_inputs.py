"""The intake function with the trigger inputs Azure's Python worker builds, and their limits.

The worker parses each delivered event itself (``azure.functions.eventgrid``) before the
function runs; these tests feed the function what that parser produces from raw event text,
so they show what the intake can check in Azure and what is gone before it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import azure.functions as func
import pytest
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

import function_app
from shared.models.messages import PlanPhase
from shared.models.run import Phase
from shared.names import INTAKE_FUNCTION
from shared.ports.records import DeliveryOutcome
from shared.settings import Settings, Transport
from tests.conftest import load_events
from tests.fakes_azure import FakeEstate
from tests.functional.conftest import estate_behind_the_app

INTAKE = next(
    f.get_user_function()
    for f in function_app.build_app(Transport.STORAGE).get_functions()
    if f.get_function_name() == INTAKE_FUNCTION
)
SETTINGS = Settings.from_environ(
    {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "PREPOST_ALLOWED_CONFIGURATIONS": "*",
        "PREPOST_ALLOWED_SUBSCRIPTIONS": "*",
    }
)


@pytest.fixture
def estate() -> Iterator[FakeEstate]:
    with estate_behind_the_app(SETTINGS) as estate:
        yield estate


def as_the_worker_decodes(text: str) -> func.EventGridEvent | func.CloudEvent:
    """The trigger input the Python worker builds from one event's JSON text."""
    return EventGridEventInConverter.decode(Datum(type="json", value=text), trigger_metadata={})


def test_a_cloudevent_the_worker_hands_over_is_accepted(estate):
    trigger_input = as_the_worker_decodes(json.dumps(load_events("pre-cloudevents.json")[0]))
    assert isinstance(trigger_input, func.CloudEvent)  # whatever the function's annotation says

    INTAKE(trigger_input)

    assert estate.records.deliveries[-1].outcome is DeliveryOutcome.ACCEPTED
    assert PlanPhase(run_key=estate.key, phase=Phase.PRE) in estate.transport.of_kind(PlanPhase)


def test_a_cloudevent_with_a_conflicting_event_type_extension_is_rejected_in_azure_too(estate):
    raw = load_events("pre-cloudevents.json")[0]
    raw["eventType"] = "Microsoft.Maintenance.PostMaintenanceEvent"

    INTAKE(as_the_worker_decodes(json.dumps(raw)))

    [delivery] = estate.records.deliveries
    assert delivery.outcome is DeliveryOutcome.REJECTED
    assert "ambiguous" in delivery.reason
    assert estate.records.runs == {}


def test_a_cloudevent_of_another_specversion_is_rejected_in_azure_too(estate):
    raw = load_events("pre-cloudevents.json")[0]
    raw["specversion"] = "2.0"

    INTAKE(as_the_worker_decodes(json.dumps(raw)))

    assert estate.records.deliveries[0].outcome is DeliveryOutcome.REJECTED
    assert "specversion" in estate.records.deliveries[0].reason


def test_in_azure_a_repeated_key_is_merged_by_the_worker_before_the_intake_sees_it(estate):
    """The documented limit: the last value counts, and nothing is left to detect."""
    text = json.dumps(load_events("post-eventgrid.json")[0]).replace(
        '"status": "Succeeded"', '"status": "Failed", "status": "Succeeded"'
    )

    INTAKE(as_the_worker_decodes(text))

    assert estate.records.deliveries[0].outcome is DeliveryOutcome.ACCEPTED
    assert estate.records.get_phase(estate.key, Phase.POST).event_status == "Succeeded"


@pytest.mark.parametrize("value", ["now", "Sun, 22 Nov 2026 01:25:00 GMT"], ids=["now", "rfc1123"])
def test_in_azure_an_event_time_the_worker_cannot_parse_fails_before_the_function_runs(value):
    """The documented limit: the invocation fails in the worker, and Event Grid retries it."""
    raw = load_events("pre-eventgrid-camelcase.json")[0]
    raw["eventTime"] = value

    with pytest.raises(ValueError):
        as_the_worker_decodes(json.dumps(raw))


def test_in_azure_an_event_time_of_zero_becomes_no_time_and_the_rest_is_checked(estate):
    raw = load_events("pre-eventgrid-camelcase.json")[0]
    raw["eventTime"] = 0

    INTAKE(as_the_worker_decodes(json.dumps(raw)))

    assert estate.records.deliveries[0].outcome is DeliveryOutcome.ACCEPTED
