"""Intake: events in, one recorded run and phase per event, plan messages out."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from shared.models.events import parse_event, parse_time
from shared.models.ids import run_key
from shared.models.messages import CheckPreDeadline, PlanPhase, PostFallback
from shared.models.run import Phase, PhaseSource, PhaseStatus
from shared.ports.records import DeliveryOutcome
from shared.settings import AllowList
from shared.usecases.intake import IntakePolicy, accept_event
from shared.usecases.supervision import post_fallback
from tests.conftest import load_events
from tests.fakes import FakeRunRecords, FakeTransport

MARGIN = timedelta(minutes=2)
FALLBACK_AFTER = timedelta(minutes=60)


def sample(name: str = "pre-eventgrid-camelcase.json") -> dict:
    return copy.deepcopy(load_events(name)[0])


PRE = sample()
KEY = run_key(PRE["data"]["correlationId"])
RECEIVED = parse_time(PRE["eventTime"])  # handled the moment it was sent


def policy(configurations: str = "*", subscriptions: str = "*") -> IntakePolicy:
    return IntakePolicy(
        allowed_configurations=AllowList.parse(configurations),
        allowed_subscriptions=AllowList.parse(subscriptions),
        cancel_margin=MARGIN,
        post_fallback_after=FALLBACK_AFTER,
    )


@pytest.fixture
def records() -> FakeRunRecords:
    return FakeRunRecords()


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


def accept(raw, records, transport, *, now=RECEIVED, intake_policy=None):
    return accept_event(raw, records=records, transport=transport, policy=intake_policy or policy(), now=now)


def test_a_pre_event_records_the_run_and_its_phase_and_queues_the_plan(records, transport):
    result = accept(sample(), records, transport)

    event = parse_event(sample())
    assert result.outcome is DeliveryOutcome.ACCEPTED
    assert result.run_key == KEY
    assert result.phase is Phase.PRE
    run = records.get_run(KEY)
    assert run.correlation_id == event.correlation_id
    assert (run.start, run.end, run.cancellation_cutoff) == (
        event.start,
        event.end,
        event.cancellation_cutoff,
    )
    assert run.subscription_ids == event.subscription_ids
    phase = records.get_phase(KEY, Phase.PRE)
    assert phase.status is PhaseStatus.RECEIVED
    assert phase.event_id == event.event_id
    plans = [s for s in transport.sent if isinstance(s.message, PlanPhase)]
    assert [(s.message, s.delay) for s in plans] == [(PlanPhase(run_key=KEY, phase=Phase.PRE), None)]
    [delivery] = records.deliveries
    assert delivery.outcome is DeliveryOutcome.ACCEPTED
    assert delivery.run_key == KEY
    assert delivery.phase == "pre"
    assert PRE["data"]["correlationId"] in delivery.payload


def test_the_same_event_twice_records_one_run_and_one_plan(records, transport):
    first = accept(sample(), records, transport)
    second = accept(sample(), records, transport)

    assert (first.outcome, second.outcome) == (DeliveryOutcome.ACCEPTED, DeliveryOutcome.DUPLICATE)
    assert list(records.runs) == [KEY]
    assert list(records.phases) == [(KEY, Phase.PRE)]
    # The plan may be re-sent (the first delivery could have died before sending) but under the
    # same message id, so the transport drops it and planning runs once.
    plan_ids = {m.message_id for m in transport.of_kind(PlanPhase)}
    assert plan_ids == {PlanPhase(run_key=KEY, phase=Phase.PRE).message_id}
    assert len({m.message_id for m in transport.of_kind(CheckPreDeadline)}) == 1
    assert [d.outcome for d in records.deliveries] == [DeliveryOutcome.ACCEPTED, DeliveryOutcome.DUPLICATE]


def test_a_duplicate_of_a_planned_phase_sends_its_safety_nets_again_but_no_plan(records, transport):
    """The first delivery may have died after the plan went out and before the nets did."""
    accept(sample(), records, transport)
    first_nets = {m.message_id for m in transport.of_kind(CheckPreDeadline) + transport.of_kind(PostFallback)}
    phase = records.get_phase(KEY, Phase.PRE)
    phase.status = PhaseStatus.PLANNED
    records.replace_phase(phase)
    transport.take()

    result = accept(sample(), records, transport)

    assert result.outcome is DeliveryOutcome.DUPLICATE
    assert "already received" in result.reason
    assert transport.of_kind(PlanPhase) == []
    nets = {m.message_id for m in transport.of_kind(CheckPreDeadline) + transport.of_kind(PostFallback)}
    assert nets == first_nets and len(nets) == 2
    assert records.deliveries[-1].outcome is DeliveryOutcome.DUPLICATE


def test_both_envelopes_and_both_casings_of_one_run_make_one_run(records, transport):
    outcomes = [
        accept(sample(name), records, transport).outcome
        for name in ("pre-eventgrid-camelcase.json", "pre-eventgrid-pascalcase.json", "pre-cloudevents.json")
    ]

    assert outcomes == [DeliveryOutcome.ACCEPTED, DeliveryOutcome.DUPLICATE, DeliveryOutcome.DUPLICATE]
    assert list(records.runs) == [KEY]


def test_a_run_id_spelled_differently_is_the_same_run(records, transport):
    accept(sample(), records, transport)
    respelled = sample()
    data = respelled["data"]
    data["correlationId"] = data["correlationId"].replace("applyupdates", "applyUpdates")
    for key in ("correlationId", "maintenanceConfigurationId"):
        data[key] = data[key].replace("mc-weekly-linux", "MC-Weekly-Linux")

    result = accept(respelled, records, transport)

    assert result.outcome is DeliveryOutcome.DUPLICATE
    assert result.run_key == KEY
    assert list(records.runs) == [KEY]


def test_an_unrelated_event_is_ignored_visibly(records, transport):
    raw = sample("unrelated-resource-write.json")

    result = accept(raw, records, transport)

    assert result.outcome is DeliveryOutcome.IGNORED
    assert raw["eventType"] in result.reason
    assert transport.sent == []
    assert records.runs == {}
    [delivery] = records.deliveries
    assert (delivery.outcome, delivery.event_id, delivery.event_type) == (
        DeliveryOutcome.IGNORED,
        raw["id"],
        raw["eventType"],
    )


def test_an_invalid_event_is_rejected_with_its_reason(records, transport):
    raw = sample()
    raw["data"]["resourceSubscriptionIds"] = ["not-a-guid"]

    result = accept(raw, records, transport)

    assert result.outcome is DeliveryOutcome.REJECTED
    assert "not-a-guid" in result.reason
    assert transport.sent == []
    assert records.runs == {}
    assert records.deliveries[0].outcome is DeliveryOutcome.REJECTED
    assert records.deliveries[0].reason == result.reason
    assert "not-a-guid" in records.deliveries[0].payload  # kept to replay


@pytest.mark.parametrize("raw", ["text", None, [1, 2]], ids=["text", "null", "array"])
def test_a_malformed_event_is_rejected(records, transport, raw):
    result = accept(raw, records, transport)

    assert result.outcome is DeliveryOutcome.REJECTED
    assert transport.sent == []
    assert len(records.deliveries) == 1


def test_a_configuration_not_allowed_is_rejected(records, transport):
    other = "/subscriptions/x/resourceGroups/y/providers/Microsoft.Maintenance/maintenanceConfigurations/z"

    result = accept(sample(), records, transport, intake_policy=policy(configurations=other))

    assert result.outcome is DeliveryOutcome.REJECTED
    assert "PREPOST_ALLOWED_CONFIGURATIONS" in result.reason
    assert transport.sent == []
    assert records.runs == {}
    assert records.deliveries[0].correlation_id == PRE["data"]["correlationId"]


def test_an_allowed_configuration_matches_whatever_the_case(records, transport):
    allowed = PRE["data"]["maintenanceConfigurationId"].upper()

    result = accept(sample(), records, transport, intake_policy=policy(configurations=allowed))

    assert result.outcome is DeliveryOutcome.ACCEPTED


def test_a_configuration_in_a_subscription_not_allowed_is_rejected(records, transport):
    other_subscription = PRE["data"]["resourceSubscriptionIds"][1]

    result = accept(sample(), records, transport, intake_policy=policy(subscriptions=other_subscription))

    assert result.outcome is DeliveryOutcome.REJECTED
    assert "PREPOST_ALLOWED_SUBSCRIPTIONS" in result.reason
    assert records.runs == {}


def test_a_pre_event_schedules_the_deadline_check_and_the_post_fallback(records, transport):
    accept(sample(), records, transport)

    event = parse_event(sample())
    delays = {type(s.message): s.delay for s in transport.sent}
    assert delays[CheckPreDeadline] == event.cancel_deadline(MARGIN) - RECEIVED
    assert delays[PostFallback] == event.end + FALLBACK_AFTER - RECEIVED
    assert delays[CheckPreDeadline] > timedelta(0)


def test_a_pre_event_after_the_deadline_is_recorded_but_cannot_be_cancelled(records, transport):
    event = parse_event(sample())
    late = event.cancel_deadline(MARGIN) + timedelta(seconds=1)

    result = accept(sample(), records, transport, now=late)

    assert result.outcome is DeliveryOutcome.ACCEPTED
    assert transport.of_kind(CheckPreDeadline) == []
    assert len(transport.of_kind(PlanPhase)) == 1
    assert len(transport.of_kind(PostFallback)) == 1
    assert any("cancellation deadline" in f for f in records.get_phase(KEY, Phase.PRE).findings)
    assert "cancellation deadline" in result.reason


def test_a_post_fallback_past_due_is_sent_without_a_delay_below_zero(records, transport):
    event = parse_event(sample())

    accept(sample(), records, transport, now=event.end + FALLBACK_AFTER + timedelta(hours=1))

    [fallback] = [s for s in transport.sent if isinstance(s.message, PostFallback)]
    assert fallback.delay == timedelta(0)


def test_a_missing_cutoff_is_a_finding(records, transport):
    raw = sample()
    del raw["data"]["cancellationCutOffDateTime"]

    accept(raw, records, transport)

    assert any("cancellationCutOffDateTime missing" in f for f in records.get_phase(KEY, Phase.PRE).findings)
    assert records.get_run(KEY).cancellation_cutoff == parse_event(raw).cancellation_cutoff


def test_a_post_event_records_its_status_and_schedules_nothing_else(records, transport):
    raw = sample("post-eventgrid.json")

    result = accept(raw, records, transport, now=parse_time(raw["eventTime"]))

    assert result.outcome is DeliveryOutcome.ACCEPTED
    phase = records.get_phase(KEY, Phase.POST)
    assert phase.event_status == raw["data"]["status"]
    assert phase.source is PhaseSource.EVENT
    assert [s.message for s in transport.sent] == [PlanPhase(run_key=KEY, phase=Phase.POST)]


def test_a_post_event_first_then_the_pre_event_keeps_the_cutoff(records, transport):
    post = sample("post-eventgrid.json")
    accept(post, records, transport)
    assert records.get_run(KEY).cancellation_cutoff is None

    result = accept(sample(), records, transport)

    assert result.outcome is DeliveryOutcome.ACCEPTED
    assert records.get_run(KEY).cancellation_cutoff == parse_event(sample()).cancellation_cutoff


def test_a_post_event_after_the_fallback_ran_is_a_duplicate(records, transport):
    accept(sample(), records, transport)
    post_fallback(PostFallback(run_key=KEY), records=records, transport=transport, now=RECEIVED + timedelta(hours=6))
    phase = records.get_phase(KEY, Phase.POST)
    phase.status = PhaseStatus.PLANNED
    records.replace_phase(phase)
    transport.take()

    result = accept(sample("post-eventgrid.json"), records, transport)

    assert result.outcome is DeliveryOutcome.DUPLICATE
    assert "after prepost's fallback had begun the post phase" in result.reason
    assert "'Succeeded'" in result.reason
    assert transport.sent == []
    stored = records.get_phase(KEY, Phase.POST)
    assert stored.event_status == "Succeeded"
    assert any("arrived after the fallback" in finding for finding in stored.findings)


def test_a_post_event_right_after_the_fallback_began_keeps_its_status_once(records, transport):
    # A window already over when the pre-event came: the fallback begins the post phase at once,
    # and the real post-event arrives while that phase is still RECEIVED (not yet planned).
    accept(sample(), records, transport)
    post_fallback(PostFallback(run_key=KEY), records=records, transport=transport, now=RECEIVED + timedelta(hours=6))
    transport.take()
    post = sample("post-eventgrid.json")
    post["data"]["status"] = "Failed"

    results = [accept(copy.deepcopy(post), records, transport) for _ in range(3)]

    assert {r.outcome for r in results} == {DeliveryOutcome.DUPLICATE}
    assert all("'Failed'" in r.reason and "fallback" in r.reason for r in results)
    stored = records.get_phase(KEY, Phase.POST)
    assert stored.source is PhaseSource.FALLBACK
    assert stored.event_status == "Failed"
    assert sum("arrived after the fallback" in finding for finding in stored.findings) == 1
    # Only the (idempotent) plan of the phase the fallback began, never a second post phase.
    assert {type(s.message) for s in transport.sent} == {PlanPhase}
    assert {s.message for s in transport.sent} == {PlanPhase(run_key=KEY, phase=Phase.POST)}
    assert [d.outcome for d in records.deliveries][-3:] == [DeliveryOutcome.DUPLICATE] * 3


class BrokenTransport(FakeTransport):
    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures

    def send(self, messages, *, delay=None):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("queue unavailable")
        super().send(messages, delay=delay)


def test_a_transport_failure_is_raised_and_the_retry_still_sends_the_plan(records):
    transport = BrokenTransport(failures=1)

    with pytest.raises(ConnectionError):
        accept(sample(), records, transport)
    result = accept(sample(), records, transport)

    assert result.outcome is DeliveryOutcome.DUPLICATE
    assert "plan re-sent" in result.reason
    assert transport.of_kind(PlanPhase) == [PlanPhase(run_key=KEY, phase=Phase.PRE)]
    assert len(transport.of_kind(CheckPreDeadline)) == 1
