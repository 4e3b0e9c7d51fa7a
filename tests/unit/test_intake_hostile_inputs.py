"""Hostile and malformed events at the intake: each class the generated payloads found, one regression each.

Every rejected event must leave exactly one delivery record with its reason, no run, no phase and
no message; nothing may raise, because Event Grid retries every failure for up to 24 hours.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.adapters.table_codecs import delivery_entity, phase_entity, run_entity
from shared.adapters.table_values import MAX_PROPERTY_UNITS
from shared.errors import PermanentError
from shared.models import json_text
from shared.models.event_fields import STATUS_LIMIT, TEXT_LIMIT
from shared.models.events import MAX_SUBSCRIPTIONS, START_AHEAD, START_BEHIND, format_time, parse_time
from shared.models.ids import run_key
from shared.models.messages import CheckPreDeadline, PlanPhase, PostFallback
from shared.models.run import Phase
from shared.ports.records import DeliveryOutcome
from shared.settings import AllowList
from shared.usecases.intake import IntakePolicy, accept_event
from shared.usecases.supervision import MAX_HOP, wait_until_due
from tests.conftest import load_events
from tests.fakes import FakeRunRecords, FakeTransport

MARGIN = timedelta(minutes=2)
FALLBACK_AFTER = timedelta(minutes=60)
POLICY = IntakePolicy(
    allowed_configurations=AllowList.parse("*"),
    allowed_subscriptions=AllowList.parse("*"),
    cancel_margin=MARGIN,
    post_fallback_after=FALLBACK_AFTER,
)
PRE = load_events("pre-eventgrid-camelcase.json")[0]
POST = load_events("post-eventgrid.json")[0]
CLOUD = load_events("pre-cloudevents.json")[0]
NOW = parse_time(PRE["eventTime"])
KEY = run_key(PRE["data"]["correlationId"])
LONG_S = "\u017f"  # LATIN SMALL LETTER LONG S: re.IGNORECASE takes it for "s"
KELVIN = "\u212a"  # KELVIN SIGN: str.lower() makes it "k"
ARABIC_INDIC = "".maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")


@pytest.fixture
def records() -> FakeRunRecords:
    return FakeRunRecords()


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


def event(sample: dict = PRE, **data: Any) -> dict:
    raw = copy.deepcopy(sample)
    raw["data"].update(data)
    return raw


def with_times(raw: dict, start: datetime, *, window: timedelta = timedelta(hours=2)) -> dict:
    """``raw`` moved to a run starting at ``start``: its run id, start, end and cut-off agree."""
    data = raw["data"]
    data["correlationId"] = data["correlationId"][:-14] + start.strftime("%Y%m%d%H%M%S")
    raw["id"] = data["correlationId"]
    data["startDateTime"] = format_time(start)
    data["endDateTime"] = format_time(start + window)
    if "cancellationCutOffDateTime" in data:
        data["cancellationCutOffDateTime"] = format_time(start - timedelta(minutes=10))
    return raw


def accept(raw: Any, records: FakeRunRecords, transport: FakeTransport, now: datetime = NOW):
    return accept_event(raw, records=records, transport=transport, policy=POLICY, now=now)


def assert_rejected_without_effect(result, records: FakeRunRecords, transport: FakeTransport, *reason_parts: str):
    assert result.outcome is DeliveryOutcome.REJECTED, result.reason
    for part in reason_parts:
        assert part in result.reason
    assert records.runs == {} and records.phases == {}
    assert transport.sent == []
    [delivery] = records.deliveries
    assert delivery.outcome is DeliveryOutcome.REJECTED
    assert delivery.reason == result.reason


# -- 1. a pre-event days ahead ------------------------------------------------------------


def test_a_pre_event_eight_days_ahead_is_accepted_with_its_nets_due_at_their_time(records, transport):
    start = (NOW + timedelta(days=8)).replace(second=0, microsecond=0)

    result = accept(with_times(event(), start), records, transport)

    assert result.outcome is DeliveryOutcome.ACCEPTED
    assert "before the start" in result.reason  # the finding: pre-work is done now, days early
    deadline, fallback = transport.of_kind(CheckPreDeadline)[0], transport.of_kind(PostFallback)[0]
    assert deadline.due_at() == start - timedelta(minutes=10) - MARGIN
    assert fallback.due_at() == start + timedelta(hours=2) + FALLBACK_AFTER
    nets = [sent for sent in transport.sent if isinstance(sent.message, CheckPreDeadline | PostFallback)]
    assert [sent.delay for sent in nets] == [MAX_HOP, MAX_HOP]  # hidden as long as a queue allows
    assert transport.of_kind(PlanPhase) == [PlanPhase(run_key=result.run_key, phase=Phase.PRE)]

    # WHEN the first hop ends, the net is not lost: it is sent on for the rest of its wait
    transport.take()
    assert wait_until_due(deadline, transport=transport, now=NOW + MAX_HOP) is True
    [hop] = transport.sent
    assert hop.message.due_at() == deadline.due_at()
    assert NOW + MAX_HOP + hop.delay == deadline.due_at()


# -- 2. dates at the edges of the calendar ----------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:30:00-01:00",
        "1601-01-01T00:00:00Z",
        "2026-02-30T02:00:00Z",
        "2026-11-22T24:00:00Z",
    ],
    ids=["year-1", "year-1-offset", "year-9999", "year-9999-offset", "year-1601", "feb-30", "hour-24"],
)
@pytest.mark.parametrize("key", ["startDateTime", "endDateTime", "cancellationCutOffDateTime"])
def test_a_time_at_the_edge_of_the_calendar_is_rejected_with_a_reason(records, transport, key, value):
    result = accept(event(**{key: value}), records, transport)

    assert_rejected_without_effect(result, records, transport, f"data.{key}", repr(value))


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(START_AHEAD + timedelta(days=1), "days from now"), (-START_BEHIND - timedelta(days=1), "days ago")],
    ids=["years-ahead", "long-ago"],
)
def test_a_run_far_from_now_is_rejected_before_anything_is_written(records, transport, offset, reason):
    start = (NOW + offset).replace(second=0, microsecond=0)

    result = accept(with_times(event(), start), records, transport)

    assert_rejected_without_effect(result, records, transport, "startDateTime", reason)
    assert records.deliveries[0].correlation_id  # the record says which run it was about


def test_a_window_longer_than_a_day_is_rejected(records, transport):
    start = parse_time(PRE["data"]["startDateTime"])

    result = accept(with_times(event(), start, window=timedelta(days=400)), records, transport)

    assert_rejected_without_effect(result, records, transport, "endDateTime", "more than 24 hours after")


def test_a_cutoff_days_before_the_start_is_rejected(records, transport):
    start = parse_time(PRE["data"]["startDateTime"])

    result = accept(event(cancellationCutOffDateTime=format_time(start - timedelta(days=3))), records, transport)

    assert_rejected_without_effect(result, records, transport, "cancellationCutOffDateTime", "before startDateTime")


def test_every_time_an_accepted_event_stores_reads_back_from_a_table_entity(records, transport):
    start = (NOW + START_AHEAD - timedelta(days=1)).replace(second=0, microsecond=0)
    accept(with_times(event(), start, window=timedelta(hours=24)), records, transport)

    [run] = records.runs.values()
    entity = run_entity(run)
    for name in ("Start", "End", "CreatedAt", "CancellationCutoff"):
        # Edm.DateTime holds 1601..9999: these are well inside it, and no arithmetic on them overflows.
        assert datetime(1601, 1, 2, tzinfo=timezone.utc) < entity[name] < datetime(9998, 1, 1, tzinfo=timezone.utc)


# -- 3. oversized values ------------------------------------------------------------------


def test_a_post_status_of_forty_thousand_characters_is_rejected(records, transport):
    result = accept(event(POST, status="S" * 40_000), records, transport)

    assert_rejected_without_effect(result, records, transport, "data.status", "40,000 characters")
    assert len(result.reason) < 1_000  # the value is not copied into the reason


def test_an_envelope_id_over_32k_characters_is_rejected(records, transport):
    raw = event()
    raw["id"] = "x" * 33_000

    result = accept(raw, records, transport)

    assert_rejected_without_effect(result, records, transport, "id is 33,000 characters")
    assert len(records.deliveries[0].event_id) < 2 * TEXT_LIMIT


def test_five_thousand_subscription_ids_are_rejected(records, transport):
    subscriptions = [f"00000000-0000-0000-0000-{index:012d}" for index in range(5_000)]

    result = accept(event(resourceSubscriptionIds=subscriptions), records, transport)

    assert_rejected_without_effect(result, records, transport, "5,000 entries", f"at most {MAX_SUBSCRIPTIONS}")


def test_the_largest_accepted_values_fit_their_table_properties(records, transport):
    """Every string property of every record the intake writes stays within 64 KiB."""
    subscriptions = [f"00000000-0000-0000-0000-{index:012d}" for index in range(MAX_SUBSCRIPTIONS)]
    raw = event(POST, status="S" * STATUS_LIMIT, resourceSubscriptionIds=subscriptions)
    raw["id"] = "i" * TEXT_LIMIT
    raw["subject"] = "s" * TEXT_LIMIT
    raw["data"]["padding"] = "p" * 200_000  # unknown keys are kept only in the cut payload

    result = accept(raw, records, transport)

    assert result.outcome is DeliveryOutcome.ACCEPTED, result.reason
    entities = [run_entity(run) for run in records.runs.values()]
    entities += [phase_entity(phase) for phase in records.phases.values()]
    entities += [delivery_entity(delivery) for delivery in records.deliveries]
    for entity in entities:
        for name, value in entity.items():
            if isinstance(value, str):
                assert len(value.encode("utf-16-le")) // 2 <= MAX_PROPERTY_UNITS, name
    assert records.phases[(result.run_key, Phase.POST)].event_status == "S" * STATUS_LIMIT


# -- 4. ids that are not Azure ids ----------------------------------------------------------


def respelled(transform) -> dict:
    raw = event()
    for key in ("correlationId", "maintenanceConfigurationId"):
        raw["data"][key] = transform(raw["data"][key])
    raw["id"] = raw["data"]["correlationId"]
    return raw


@pytest.mark.parametrize(
    "transform",
    [
        lambda text: text.replace("Microsoft.Maintenance", f"Micro{LONG_S}oft.Maintenance"),
        lambda text: text.replace("mc-weekly-linux", f"mc-wee{KELVIN}ly-linux"),
        lambda text: text.replace("rg-patching", "rg-p\u0430tching"),  # Cyrillic a
        lambda text: text.replace("6f1d2c4e-", "6f1d2c4e-".translate(ARABIC_INDIC)),
    ],
    ids=["long-s-provider", "kelvin-in-name", "cyrillic-in-group", "arabic-indic-in-subscription"],
)
def test_an_id_spelled_with_non_ascii_look_alikes_is_rejected(records, transport, transform):
    result = accept(respelled(transform), records, transport)

    assert_rejected_without_effect(result, records, transport, "is not ASCII")


@pytest.mark.parametrize(
    "stamp",
    ["20261122020000".translate(ARABIC_INDIC), "20261322020000", "20261122250000", "2026112202000"],
    ids=["arabic-indic-digits", "month-13", "hour-25", "13-digits"],
)
def test_a_run_id_whose_stamp_is_not_a_moment_is_rejected(records, transport, stamp):
    raw = event()
    raw["data"]["correlationId"] = raw["data"]["correlationId"][:-14] + stamp

    result = accept(raw, records, transport)

    assert_rejected_without_effect(result, records, transport, "correlationId is not a run id")


def test_the_long_s_spelling_of_an_existing_run_does_not_become_a_second_run(records, transport):
    assert accept(event(), records, transport).outcome is DeliveryOutcome.ACCEPTED
    transport.take()

    result = accept(respelled(lambda text: text.replace("applyupdates", f"applyupdate{LONG_S}")), records, transport)

    assert result.outcome is DeliveryOutcome.REJECTED
    assert list(records.runs) == [KEY]
    assert transport.sent == []


def test_a_subscription_id_with_unicode_digits_is_rejected(records, transport):
    guid = PRE["data"]["resourceSubscriptionIds"][0]

    result = accept(event(resourceSubscriptionIds=[guid.translate(ARABIC_INDIC)]), records, transport)

    assert_rejected_without_effect(result, records, transport, "not a subscription id", "is not ASCII")


# -- 5. envelopes that should not be accepted ----------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["now", 0, "Sun, 22 Nov 2026 01:25:00 GMT", "2026-11-22", "", "2026-W47-7T01:25:00Z", 1.5e9],
    ids=["now", "zero", "rfc1123", "date-only", "empty", "week-date", "epoch-seconds"],
)
def test_an_event_time_that_is_not_an_rfc3339_time_is_rejected(records, transport, value):
    raw = event()
    raw["eventTime"] = value

    result = accept(raw, records, transport)

    assert_rejected_without_effect(result, records, transport, "event time (eventTime)")


@pytest.mark.parametrize("version", ["2.0", "0.3", 1.0, None], ids=["2.0", "0.3", "number", "null"])
def test_a_cloudevent_of_another_specversion_is_rejected(records, transport, version):
    raw = copy.deepcopy(CLOUD)
    raw["specversion"] = version

    result = accept(raw, records, transport)

    assert_rejected_without_effect(result, records, transport, "specversion", "only CloudEvents 1.0")


def test_a_cloudevent_carrying_a_conflicting_event_type_is_rejected(records, transport):
    raw = copy.deepcopy(CLOUD)
    raw["eventType"] = "Microsoft.Maintenance.PostMaintenanceEvent"

    result = accept(raw, records, transport)

    assert_rejected_without_effect(result, records, transport, "both type", "and eventType", "ambiguous")


def test_an_event_grid_event_carrying_a_conflicting_type_is_rejected(records, transport):
    raw = event()
    raw["type"] = "Microsoft.Resources.ResourceWriteSuccess"

    assert_rejected_without_effect(accept(raw, records, transport), records, transport, "both eventType")


def test_a_cloudevent_repeating_its_own_type_as_event_type_is_accepted(records, transport):
    raw = copy.deepcopy(CLOUD)
    raw["eventType"] = raw["type"]

    assert accept(raw, records, transport).outcome is DeliveryOutcome.ACCEPTED


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('"status": "Succeeded", "status": "Failed"', "data.status"),
        ('"status": 1, "status": true', "data.status"),
    ],
    ids=["strings", "number-and-boolean"],
)
def test_a_key_repeated_in_data_with_different_values_is_rejected(records, transport, text, path):
    raw_text = json.dumps(POST).replace('"status": "Succeeded"', text)

    result = accept(json_text.loads(raw_text), records, transport)

    assert_rejected_without_effect(result, records, transport, repr(path), "appears more than once")


def test_a_key_repeated_in_the_envelope_with_different_values_is_rejected(records, transport):
    raw_text = json.dumps(PRE).replace(
        '"eventType": ', '"eventType": "Microsoft.Resources.ResourceWriteSuccess", "eventType": ', 1
    )

    result = accept(json_text.loads(raw_text), records, transport)

    assert_rejected_without_effect(result, records, transport, "'eventType' appears more than once")


def test_a_key_repeated_with_the_same_value_is_harmless(records, transport):
    raw_text = json.dumps(POST).replace('"status": "Succeeded"', '"status": "Succeeded", "status": "Succeeded"')

    assert accept(json_text.loads(raw_text), records, transport).outcome is DeliveryOutcome.ACCEPTED


def test_two_casings_of_one_key_with_different_values_are_rejected(records, transport):
    raw = event(POST, Status="Failed")

    result = accept(raw, records, transport)

    assert_rejected_without_effect(result, records, transport, "'status' and 'Status' name the same field")


# -- whatever is delivered, one record -----------------------------------------------------


@pytest.mark.parametrize(
    "raw", [2, None, "event", [PRE], True, {}], ids=["number", "null", "string", "array", "boolean", "empty"]
)
def test_anything_delivered_gets_one_record_and_no_run(records, transport, raw):
    result = accept(raw, records, transport)

    assert result.outcome in (DeliveryOutcome.REJECTED, DeliveryOutcome.IGNORED)
    assert records.runs == {} and transport.sent == []
    assert [d.outcome for d in records.deliveries] == [result.outcome]


def test_an_event_nested_too_deeply_is_rejected_and_its_payload_not_serialised(records, transport):
    deep: Any = "bottom"
    for _ in range(5_000):
        deep = [deep]
    raw = event(extra=deep)

    result = accept(raw, records, transport)

    assert_rejected_without_effect(result, records, transport, f"more than {json_text.MAX_DEPTH} levels")
    assert records.deliveries[0].payload.startswith("(not kept")


def test_a_record_the_store_refuses_is_answered_and_recorded_not_retried(records, transport, monkeypatch):
    def refuse(run):
        raise PermanentError("run key 'x' contains '/', which table keys may not contain")

    monkeypatch.setattr(records, "create_run", refuse)

    result = accept(event(), records, transport)

    assert result.outcome is DeliveryOutcome.REJECTED
    assert result.reason.startswith("could not be recorded: run key")
    assert [d.outcome for d in records.deliveries] == [DeliveryOutcome.REJECTED]
    assert transport.sent == []


def test_deeply_nested_values_the_worker_could_hand_over_never_make_the_intake_recurse(records, transport):
    """In Azure the worker parses the body, so the webhook's depth check has not run."""

    def nested(depth: int, leaf: object) -> object:
        value = leaf
        for _ in range(depth):
            value = [value]
        return value

    raw = {"id": nested(50_000, 1), "ID": nested(50_000, 2), "eventType": nested(50_000, "x"), "data": {}}

    result = accept(raw, records, transport)

    assert result.outcome is DeliveryOutcome.REJECTED
    assert [d.event_id for d in records.deliveries] == ["(list)"]
