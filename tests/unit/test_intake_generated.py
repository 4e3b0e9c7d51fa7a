"""Generated hostile deliveries through the intake use case: one record each, nothing else.

The strategies (``tests/hostile.py``) make only elements prepost must not act on. For each, the
intake must not raise, must write exactly one delivery record with a reason, and must create no
run and send no message. Fixed seed, bounded examples; ``PREPOST_HOSTILE_EXAMPLES`` for more.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import event, given

from shared.models import json_text
from shared.models.events import parse_time
from shared.ports.records import DeliveryOutcome
from shared.settings import AllowList
from shared.usecases.intake import IntakePolicy, accept_event
from tests.fakes import FakeRunRecords, FakeTransport
from tests.hostile import SAMPLES, Element, elements, hostile_settings

POLICY = IntakePolicy(
    allowed_configurations=AllowList.parse("*"),
    allowed_subscriptions=AllowList.parse("*"),
    cancel_margin=timedelta(minutes=2),
    post_fallback_after=timedelta(minutes=60),
)
NOW = parse_time(SAMPLES["pre"]["eventTime"])


@hostile_settings(max_examples=1000)
@given(element=elements)
def test_a_hostile_element_is_recorded_once_and_creates_nothing(element: Element):
    records, transport = FakeRunRecords(), FakeTransport()
    event(element.kind)
    raw = json_text.loads(element.text)  # as the local webhook parses it: repeated keys stay visible

    result = accept_event(raw, records=records, transport=transport, policy=POLICY, now=NOW)

    assert result.outcome in (DeliveryOutcome.REJECTED, DeliveryOutcome.IGNORED), (element.kind, result.reason)
    assert result.reason
    assert [d.outcome for d in records.deliveries] == [result.outcome]
    assert records.runs == {} and records.phases == {}
    assert transport.sent == []


def test_the_unbroken_samples_the_mutations_start_from_are_accepted():
    """The strategies break valid events: were the samples not valid, the test above would prove nothing."""
    for name, sample in SAMPLES.items():
        records, transport = FakeRunRecords(), FakeTransport()

        result = accept_event(sample, records=records, transport=transport, policy=POLICY, now=NOW)

        assert result.outcome is DeliveryOutcome.ACCEPTED, (name, result.reason)
