"""The settlement decision and the classic-binding settler, without a network."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.servicebus import ServiceBusMessage as FunctionServiceBusMessage

from shared.adapters.servicebus_settlement import (
    ORIGINAL_ID_PROPERTY,
    RETRY_PROPERTY,
    Abandon,
    ClassicBindingSettler,
    Complete,
    DeadLetter,
    DeadLetterReason,
    ReceivedDelivery,
    SettlementPolicy,
    decide_settlement,
    is_permanent,
    process_delivery,
    retry_message_id,
)
from shared.adapters.servicebus_transport import MAX_MESSAGE_ID_LENGTH, MessageTooLarge
from shared.errors import (
    InvalidMessage,
    MalformedPayload,
    NotAllowed,
    PermanentError,
    SettingsError,
    Throttled,
    TransientError,
)
from shared.models.messages import TaskMessage, decode_message
from shared.models.retry import RetryPolicy
from shared.names import QueueName

NOW = datetime(2026, 11, 15, 14, 30, tzinfo=UTC)
POLICY = SettlementPolicy(retry=RetryPolicy(max_attempts=8), max_delivery_count=10)
BODY = TaskMessage(run_key="weekly-20261115150000-0123456789ab", target="vm-1").to_json().encode()


# -- the decision --------------------------------------------------------------------------------


def test_success_completes():
    assert decide_settlement(None, 1, policy=POLICY) == Complete()


def test_an_invalid_message_is_dead_lettered_on_its_first_delivery_with_a_readable_reason():
    settlement = decide_settlement(InvalidMessage("unknown message kind 'bogus'"), 1, policy=POLICY)

    assert settlement == DeadLetter(DeadLetterReason.INVALID_MESSAGE, "unknown message kind 'bogus'")
    assert settlement.text == "InvalidMessage: unknown message kind 'bogus'"


@pytest.mark.parametrize("error", [PermanentError("disk not found"), NotAllowed("subscription not allowed")])
def test_a_permanent_error_is_dead_lettered_at_once_naming_the_error(error):
    settlement = decide_settlement(error, 1, policy=POLICY)

    assert isinstance(settlement, DeadLetter)
    assert settlement.reason is DeadLetterReason.PERMANENT_ERROR
    assert settlement.description == f"{type(error).__name__}: {error}"


def test_a_transient_error_is_retried_later_with_backoff_not_at_once():
    settlement = decide_settlement(TransientError("table busy"), 1, policy=POLICY, key="m-1")

    assert isinstance(settlement, Abandon)
    assert timedelta(seconds=5) <= settlement.retry_after <= timedelta(seconds=10)
    assert "table busy" in settlement.detail


def test_an_unknown_error_is_retried_too_because_it_may_be_an_outage():
    assert isinstance(decide_settlement(RuntimeError("boom"), 1, policy=POLICY), Abandon)
    assert isinstance(decide_settlement(SettingsError("missing"), 1, policy=POLICY), Abandon)


def test_the_retry_after_azure_asked_for_wins_over_the_backoff():
    settlement = decide_settlement(Throttled("429", retry_after=timedelta(seconds=90)), 1, policy=POLICY)

    assert settlement == Abandon(retry_after=timedelta(seconds=90), detail="Throttled: 429")


def test_a_very_long_retry_after_is_capped_so_the_work_is_not_forgotten():
    settlement = decide_settlement(Throttled("429", retry_after=timedelta(hours=2)), 1, policy=POLICY)

    assert settlement.retry_after == RetryPolicy().max_retry_after


def test_the_last_attempt_counts_re_sends_and_redeliveries_and_dead_letters():
    # Six scheduled re-sends, and this copy is on its second delivery: attempt 8 of 8.
    settlement = decide_settlement(TransientError("still busy"), 2, retries=6, policy=POLICY)

    assert isinstance(settlement, DeadLetter)
    assert settlement.reason is DeadLetterReason.MAX_ATTEMPTS_EXCEEDED
    assert "attempt 8" in settlement.description and "still busy" in settlement.description


def test_one_attempt_before_the_last_is_still_retried():
    assert isinstance(decide_settlement(TransientError("busy"), 1, retries=6, policy=POLICY), Abandon)


def test_the_queues_max_delivery_count_is_the_last_attempt_whatever_the_attempt_budget():
    policy = SettlementPolicy(retry=RetryPolicy(max_attempts=50), max_delivery_count=10)

    settlement = decide_settlement(RuntimeError("boom"), 10, policy=policy)

    assert isinstance(settlement, DeadLetter)
    assert settlement.reason is DeadLetterReason.MAX_ATTEMPTS_EXCEEDED


def test_a_long_error_text_is_truncated_in_the_description():
    settlement = decide_settlement(PermanentError("x" * 5000), 1, policy=POLICY)

    assert len(settlement.description) <= 1024


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (InvalidMessage("bad"), True),
        (PermanentError("gone"), True),
        (NotAllowed("no"), True),
        (MalformedPayload("not json"), True),
        (MessageTooLarge("prepost-plan", "id", size_limit=1024), True),
        (TransientError("later"), False),
        (Throttled("429"), False),
        (RuntimeError("?"), False),
        (ValueError("?"), False),
    ],
)
def test_what_counts_as_permanent(error, permanent):
    assert is_permanent(error) is permanent


# -- backoff ----------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_with_jitter_below_the_nominal_delay():
    backoff = RetryPolicy(base=timedelta(seconds=10), cap=timedelta(minutes=5), jitter=0.5)

    for attempt, nominal in [(1, 10), (2, 20), (3, 40), (4, 80), (6, 300), (12, 300)]:
        delay = backoff.delay(attempt, key="m-1").total_seconds()
        assert nominal / 2 <= delay <= nominal, (attempt, delay)


def test_backoff_is_deterministic_per_message_and_spread_across_messages():
    backoff = RetryPolicy()

    assert backoff.delay(3, key="m-1") == backoff.delay(3, key="m-1")
    assert len({backoff.delay(3, key=f"m-{i}") for i in range(20)}) > 10


def test_backoff_without_jitter_is_exact():
    assert RetryPolicy(jitter=0).delay(3) == timedelta(seconds=40)


# -- deliveries and attempts -------------------------------------------------------------------------


def test_a_delivery_is_read_from_the_classic_binding_message():
    message = FunctionServiceBusMessage(
        body=BODY,
        message_id="run:task:1:retry:2",
        delivery_count=3,
        application_properties={"kind": "task", RETRY_PROPERTY: "2", ORIGINAL_ID_PROPERTY: "run:task:1"},
        user_properties={"legacy": "yes", "kind": "ignored"},
        content_type="application/json",
        subject="task",
    )

    delivery = ReceivedDelivery.from_trigger(message)

    assert delivery.body == BODY
    assert delivery.message_id == "run:task:1:retry:2"
    assert delivery.delivery_count == 3
    assert delivery.application_properties["kind"] == "task"  # application properties win
    assert delivery.application_properties["legacy"] == "yes"
    assert (delivery.retries, delivery.attempt) == (2, 5)
    assert delivery.original_message_id == "run:task:1"
    assert (delivery.content_type, delivery.subject) == ("application/json", "task")


def test_a_first_delivery_without_properties_is_attempt_one():
    message = FunctionServiceBusMessage(body=BODY, message_id="m", application_properties={}, user_properties={})

    delivery = ReceivedDelivery.from_trigger(message)

    assert (delivery.delivery_count, delivery.retries, delivery.attempt) == (1, 0, 1)
    assert delivery.original_message_id == "m"


def test_a_garbled_retry_counter_counts_as_no_retry():
    delivery = ReceivedDelivery(body=b"{}", application_properties={RETRY_PROPERTY: "many"})

    assert delivery.retries == 0


@pytest.mark.parametrize(
    ("retries", "delivery_count", "last"),
    [(0, 1, False), (6, 1, False), (7, 1, True), (6, 2, True), (0, 10, True)],
)
def test_attempt_info_agrees_with_the_decision_on_which_attempt_is_last(retries, delivery_count, last):
    delivery = ReceivedDelivery(
        body=b"{}", delivery_count=delivery_count, application_properties={RETRY_PROPERTY: retries}
    )

    info = POLICY.attempt_info(delivery)
    decided = decide_settlement(RuntimeError("x"), delivery_count, retries=retries, policy=POLICY)

    assert POLICY.is_last(delivery) is last
    assert info.is_last is last
    assert isinstance(decided, DeadLetter) is last


def test_a_policy_needs_at_least_one_attempt():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


# -- the settler ---------------------------------------------------------------------------------------


@dataclass
class FakeResender:
    sent: list[tuple[str, list]] = field(default_factory=list)
    error: Exception | None = None

    def send_servicebus_messages(self, queue_name, messages) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((queue_name, list(messages)))


@dataclass
class FakeParking:
    parked: list[tuple[QueueName, bytes, str]] = field(default_factory=list)

    def park(self, queue, body, reason) -> None:
        self.parked.append((queue, body, reason))


def make_settler(resender=None, parking=None):
    resender, parking = resender or FakeResender(), parking or FakeParking()
    return ClassicBindingSettler(resender=resender, parking=parking, clock=lambda: NOW), resender, parking


def first_delivery(**overrides) -> ReceivedDelivery:
    values = {
        "body": BODY,
        "message_id": "run:task:1",
        "delivery_count": 1,
        "application_properties": {"kind": "task", "runKey": "run", "attempt": 1},
        "content_type": "application/json",
        "subject": "task",
    }
    values.update(overrides)
    return ReceivedDelivery(**values)


def test_complete_sends_and_parks_nothing():
    settler, resender, parking = make_settler()

    settler.settle(QueueName.VM_TASKS, first_delivery(), Complete())

    assert resender.sent == [] and parking.parked == []


def test_abandon_schedules_a_copy_of_the_same_body_on_the_same_queue_with_a_new_stable_id():
    settler, resender, _ = make_settler()

    settler.settle(QueueName.VM_TASKS, first_delivery(), Abandon(retry_after=timedelta(seconds=40)))

    [(queue_name, [copy])] = resender.sent
    assert queue_name == "prepost-vm-tasks"
    assert b"".join(copy.body) == BODY
    assert decode_message(b"".join(copy.body)) == decode_message(BODY)
    assert copy.message_id == retry_message_id("run:task:1", 1) == "run:task:1:retry:1"
    assert copy.scheduled_enqueue_time_utc == NOW + timedelta(seconds=40)
    assert copy.application_properties == {
        "kind": "task",
        "runKey": "run",
        "attempt": 1,
        RETRY_PROPERTY: 1,
        ORIGINAL_ID_PROPERTY: "run:task:1",
    }
    assert (copy.content_type, copy.subject) == ("application/json", "task")


def test_a_second_retry_keeps_the_original_id_and_counts_on():
    settler, resender, _ = make_settler()
    delivery = first_delivery(
        message_id="run:task:1:retry:1",
        application_properties={"kind": "task", RETRY_PROPERTY: 1, ORIGINAL_ID_PROPERTY: "run:task:1"},
    )

    settler.settle(QueueName.VM_TASKS, delivery, Abandon(retry_after=timedelta(seconds=80)))

    [(_, [copy])] = resender.sent
    assert copy.message_id == "run:task:1:retry:2"
    assert copy.application_properties[RETRY_PROPERTY] == 2
    assert copy.application_properties[ORIGINAL_ID_PROPERTY] == "run:task:1"


def test_retry_ids_stay_within_the_service_bus_limit_and_are_stable():
    long_id = "k" * 127

    assert len(retry_message_id(long_id, 3)) <= MAX_MESSAGE_ID_LENGTH
    assert retry_message_id(long_id, 3) == retry_message_id(long_id, 3)
    assert retry_message_id(long_id, 3) != retry_message_id(long_id, 4)


def test_dead_letter_parks_the_body_in_the_queues_poison_queue_with_the_reason():
    settler, resender, parking = make_settler()

    settler.settle(QueueName.PLAN, first_delivery(), DeadLetter(DeadLetterReason.INVALID_MESSAGE, "not JSON"))

    assert parking.parked == [(QueueName.PLAN, BODY, "InvalidMessage: not JSON")]
    assert resender.sent == []


# -- process_delivery: what the trigger adapter calls ------------------------------------------------


def test_a_handled_message_completes():
    settler, resender, parking = make_settler()
    seen = []

    settlement = process_delivery(QueueName.VM_TASKS, first_delivery(), seen.append, settler=settler, policy=POLICY)

    assert settlement == Complete()
    assert len(seen) == 1 and resender.sent == [] and parking.parked == []


def test_a_permanent_failure_reaches_the_poison_queue_on_the_first_delivery_without_raising():
    settler, resender, parking = make_settler()

    def handle(delivery):
        decode_message(b"not json")

    settlement = process_delivery(
        QueueName.PLAN, first_delivery(body=b"not json"), handle, settler=settler, policy=POLICY
    )

    assert isinstance(settlement, DeadLetter) and settlement.reason is DeadLetterReason.INVALID_MESSAGE
    [(queue, body, reason)] = parking.parked
    assert (queue, body) == (QueueName.PLAN, b"not json")
    assert reason.startswith("InvalidMessage: message is not JSON")
    assert resender.sent == []


def test_a_transient_failure_is_rescheduled_with_backoff_and_the_function_returns():
    settler, resender, _ = make_settler()

    def handle(delivery):
        raise TransientError("records busy")

    settlement = process_delivery(QueueName.VM_TASKS, first_delivery(), handle, settler=settler, policy=POLICY)

    assert isinstance(settlement, Abandon)
    [(_, [copy])] = resender.sent
    assert copy.scheduled_enqueue_time_utc == NOW + settlement.retry_after


def test_the_handler_sees_which_attempt_it_is():
    settler, _, _ = make_settler()
    infos = []
    delivery = first_delivery(application_properties={RETRY_PROPERTY: 7})

    process_delivery(
        QueueName.VM_TASKS,
        delivery,
        lambda d: infos.append(POLICY.attempt_info(d)),
        settler=settler,
        policy=POLICY,
    )

    assert infos[0].is_last and infos[0].count == 8


def test_if_settling_fails_the_error_escapes_so_the_host_abandons_and_service_bus_redelivers():
    settler, _, _ = make_settler(resender=FakeResender(error=TransientError("Service Bus down")))

    def handle(delivery):
        raise RuntimeError("boom")

    with pytest.raises(TransientError, match="Service Bus down"):
        process_delivery(QueueName.VM_TASKS, first_delivery(), handle, settler=settler, policy=POLICY)
