"""Maintenance events: both envelopes, both key casings, every validation reason.

The sample events in ``tests/fixtures/events`` are the ones the functional tests deliver
through the Event Grid trigger; here they are parsed directly.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import InvalidEvent, MalformedPayload, UnsupportedEventType
from shared.models.events import (
    DEFAULT_CUTOFF_BEFORE_START,
    EnvelopeSchema,
    EventType,
    PostMaintenance,
    PreMaintenance,
    format_time,
    parse_event,
    parse_time,
    split_payload,
)
from tests.conftest import load_events


def sample(name: str) -> dict:
    """A deep copy of the first event of a sample file, safe to change."""
    return copy.deepcopy(load_events(name)[0])


def pre() -> dict:
    return sample("pre-eventgrid-camelcase.json")


def reasons_of(raw: dict) -> list[str]:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reasons, "an InvalidEvent must say why"
    return caught.value.reasons


# -- envelopes and casing ----------------------------------------------------------------


def test_event_grid_and_cloudevents_envelopes_give_the_same_event():
    event_grid = parse_event(sample("pre-eventgrid-camelcase.json"))
    cloud = parse_event(sample("pre-cloudevents.json"))

    assert event_grid.schema is EnvelopeSchema.EVENT_GRID
    assert cloud.schema is EnvelopeSchema.CLOUD_EVENTS
    assert replace(cloud, schema=event_grid.schema) == event_grid


def test_camelcase_and_pascalcase_data_keys_give_the_same_event():
    assert parse_event(sample("pre-eventgrid-pascalcase.json")) == parse_event(sample("pre-eventgrid-camelcase.json"))


def test_a_pre_event_is_typed_with_utc_times_and_lower_case_subscriptions():
    raw = pre()
    event = parse_event(raw)

    assert isinstance(event, PreMaintenance)
    assert event.event_type is EventType.PRE
    assert event.correlation_id == raw["data"]["correlationId"]
    assert event.configuration_id == raw["data"]["maintenanceConfigurationId"]
    assert event.configuration_name == raw["subject"]
    assert event.start == datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    assert event.end == datetime(2026, 11, 22, 5, 55, tzinfo=UTC)
    assert event.cancellation_cutoff == datetime(2026, 11, 22, 1, 50, tzinfo=UTC)
    assert event.cutoff_was_given is True
    assert event.subscription_ids == tuple(s.lower() for s in raw["data"]["resourceSubscriptionIds"])
    for value in (event.start, event.end, event.cancellation_cutoff, event.event_time):
        assert value.utcoffset() == timedelta(0)


def test_a_post_event_carries_its_status():
    event = parse_event(sample("post-eventgrid.json"))

    assert isinstance(event, PostMaintenance)
    assert event.event_type is EventType.POST
    assert event.status == "Succeeded"


def test_a_post_event_without_status_is_unknown_rather_than_rejected():
    raw = sample("post-eventgrid.json")
    del raw["data"]["status"]

    assert parse_event(raw).status == "Unknown"


def test_the_cancellation_cutoff_of_a_post_event_is_not_required():
    raw = sample("post-eventgrid.json")
    assert "cancellationCutOffDateTime" not in raw["data"]

    assert isinstance(parse_event(raw), PostMaintenance)


def test_event_type_is_matched_regardless_of_case():
    raw = pre()
    raw["eventType"] = raw["eventType"].lower()

    assert parse_event(raw).event_type is EventType.PRE


def test_envelope_keys_are_read_regardless_of_case():
    raw = {key[0].upper() + key[1:]: value for key, value in pre().items()}

    assert parse_event(raw) == parse_event(pre())


def test_ids_differing_only_in_case_are_accepted_and_kept_as_given():
    raw = pre()
    correlation = raw["data"]["correlationId"].replace("applyupdates", "applyUpdates")
    configuration = raw["data"]["maintenanceConfigurationId"].upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")
    raw["data"]["correlationId"] = correlation
    raw["data"]["maintenanceConfigurationId"] = configuration

    event = parse_event(raw)

    assert event.correlation_id == correlation
    assert event.configuration_id == configuration


def test_upper_case_and_repeated_subscription_ids_are_normalised_once():
    raw = pre()
    first = raw["data"]["resourceSubscriptionIds"][0]
    raw["data"]["resourceSubscriptionIds"] = [first.upper(), first, f" {first} "]

    assert parse_event(raw).subscription_ids == (first.lower(),)


def test_the_event_id_falls_back_to_the_correlation_id():
    raw = pre()
    del raw["id"]

    assert parse_event(raw).event_id == raw["data"]["correlationId"]


# -- what is not a maintenance event -----------------------------------------------------


def test_an_unrelated_event_type_is_unsupported():
    raw = sample("unrelated-resource-write.json")

    with pytest.raises(UnsupportedEventType) as caught:
        parse_event(raw)

    assert caught.value.event_type == raw["eventType"]


def test_an_event_without_a_type_is_unsupported():
    raw = pre()
    del raw["eventType"]

    with pytest.raises(UnsupportedEventType):
        parse_event(raw)


@pytest.mark.parametrize("raw", ["text", 42, None, [{"id": "x"}]], ids=["text", "number", "null", "array"])
def test_an_event_that_is_not_an_object_is_malformed(raw):
    with pytest.raises(MalformedPayload):
        parse_event(raw)


@pytest.mark.parametrize("body", [b"not json", "{", b"\xff\xfe\x00", "42", "null", '"text"'])
def test_a_body_that_is_not_an_event_or_array_is_malformed(body):
    with pytest.raises(MalformedPayload):
        split_payload(body)


def test_a_body_may_be_an_array_or_a_single_event():
    events = load_events("pre-eventgrid-camelcase.json")
    text = json.dumps(events)

    assert split_payload(text) == events
    assert split_payload(text.encode()) == events
    assert split_payload(events[0]) == [events[0]]


# -- validation reasons ------------------------------------------------------------------


def test_data_that_is_not_an_object_is_invalid():
    raw = pre()
    raw["data"] = ["not", "an", "object"]

    assert any("data must be a JSON object" in reason for reason in reasons_of(raw))


def test_a_correlation_id_under_another_configuration_is_invalid():
    raw = pre()
    raw["data"]["correlationId"] = raw["data"]["correlationId"].replace("mc-weekly-linux", "mc-other")

    assert any("is not under maintenanceConfigurationId" in reason for reason in reasons_of(raw))


@pytest.mark.parametrize(
    "correlation",
    [
        "/subscriptions/6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40/resourceGroups/rg-patching",
        "{config}/providers/microsoft.maintenance/applyupdates/2026112202",
        "{config}/providers/microsoft.maintenance/somethingelse/20261122020000",
        "{config}",
    ],
    ids=["resource-group", "short-stamp", "wrong-type", "configuration-itself"],
)
def test_a_correlation_id_that_is_not_a_run_id_is_invalid(correlation):
    raw = pre()
    raw["data"]["correlationId"] = correlation.format(config=raw["data"]["maintenanceConfigurationId"])

    assert any("is not a run id" in reason for reason in reasons_of(raw))


@pytest.mark.parametrize(
    "subscriptions",
    [["not-a-guid"], ["6f1d2c4e8a7b4c219e3f2b5a7d9c1e40"], ["{6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40}"], [42]],
    ids=["text", "no-hyphens", "braces", "number"],
)
def test_subscription_ids_that_are_not_guids_are_invalid(subscriptions):
    raw = pre()
    raw["data"]["resourceSubscriptionIds"] = subscriptions

    assert any("is not a subscription id" in reason for reason in reasons_of(raw))


@pytest.mark.parametrize("value", [[], None, "6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40"], ids=["empty", "null", "string"])
def test_subscription_ids_must_be_a_non_empty_array(value):
    raw = pre()
    raw["data"]["resourceSubscriptionIds"] = value

    assert any("non-empty array" in reason for reason in reasons_of(raw))


@pytest.mark.parametrize("key", ["startDateTime", "endDateTime", "cancellationCutOffDateTime"])
def test_times_that_do_not_parse_are_invalid(key):
    raw = pre()
    raw["data"][key] = "next tuesday"

    assert any(key in reason and "ISO 8601" in reason for reason in reasons_of(raw))


def test_an_event_time_that_does_not_parse_is_invalid():
    raw = pre()
    raw["eventTime"] = "yesterday"

    assert any("event time" in reason for reason in reasons_of(raw))


@pytest.mark.parametrize("key", ["correlationId", "maintenanceConfigurationId", "startDateTime", "endDateTime"])
def test_missing_required_fields_are_invalid(key):
    raw = pre()
    del raw["data"][key]

    assert any(key in reason for reason in reasons_of(raw))


@pytest.mark.parametrize("end_offset", [timedelta(0), timedelta(hours=-1)], ids=["equal", "before"])
def test_an_end_not_after_the_start_is_invalid(end_offset):
    raw = pre()
    start = parse_time(raw["data"]["startDateTime"])
    raw["data"]["endDateTime"] = format_time(start + end_offset)

    assert any("is not after startDateTime" in reason for reason in reasons_of(raw))


def test_a_cutoff_after_the_start_is_invalid():
    raw = pre()
    start = parse_time(raw["data"]["startDateTime"])
    raw["data"]["cancellationCutOffDateTime"] = format_time(start + timedelta(minutes=1))

    assert any("is after startDateTime" in reason for reason in reasons_of(raw))


def test_every_problem_is_reported_at_once():
    raw = pre()
    raw["data"]["resourceSubscriptionIds"] = ["nope"]
    raw["data"]["endDateTime"] = "never"
    raw["data"]["correlationId"] = "/subscriptions/x/resourceGroups/y"

    reasons = reasons_of(raw)

    assert len(reasons) == 3
    assert str(InvalidEvent(reasons)) == "; ".join(reasons)


# -- the cut-off and the cancel deadline -------------------------------------------------


def test_a_missing_cutoff_defaults_to_ten_minutes_before_start():
    raw = pre()
    del raw["data"]["cancellationCutOffDateTime"]

    event = parse_event(raw)

    assert event.cutoff_was_given is False
    assert event.cancellation_cutoff == event.start - DEFAULT_CUTOFF_BEFORE_START
    assert timedelta(minutes=10) == DEFAULT_CUTOFF_BEFORE_START


@pytest.mark.parametrize(
    ("cutoff_before_start", "expected_before_start"),
    [
        (timedelta(minutes=1), timedelta(minutes=10)),  # the sample payloads' T-1: T-10 is earlier
        (timedelta(minutes=10), timedelta(minutes=10)),
        (timedelta(minutes=25), timedelta(minutes=25)),  # a cut-off earlier than T-10 wins
    ],
)
@pytest.mark.parametrize("margin", [timedelta(0), timedelta(minutes=2)])
def test_the_cancel_deadline_is_the_earlier_of_cutoff_and_t_minus_10_less_the_margin(
    cutoff_before_start, expected_before_start, margin
):
    raw = pre()
    start = parse_time(raw["data"]["startDateTime"])
    raw["data"]["cancellationCutOffDateTime"] = format_time(start - cutoff_before_start)

    event = parse_event(raw)

    assert event.cancel_deadline(margin) == start - expected_before_start - margin


# -- times -------------------------------------------------------------------------------


def test_seven_digit_fractions_are_cut_to_microseconds():
    parsed = parse_time("2026-11-22T01:25:00.3717473Z")

    assert parsed == datetime(2026, 11, 22, 1, 25, 0, 371747, tzinfo=UTC)


def test_the_sample_event_time_with_seven_digits_parses():
    assert parse_event(pre()).event_time == parse_time("2026-11-22T01:25:00.371747Z")


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22T03:00:00+01:00",
        "2026-11-22T02:00:00",
        "2026-11-22T02:00:00z",
        "2026-11-22T02:00:00.0000000Z",
    ],
    ids=["offset", "naive", "lower-z", "zero-fraction"],
)
def test_times_are_converted_to_utc(text):
    assert parse_time(text) == datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def test_format_time_round_trips():
    value = datetime(2026, 11, 22, 2, 0, 5, 123456, tzinfo=UTC)

    assert format_time(value).endswith("Z")
    assert parse_time(format_time(value)) == value
