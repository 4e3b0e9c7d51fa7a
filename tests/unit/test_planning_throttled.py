"""A throttled plan is sent again after the wait Azure asked for, logged as one line, never raised."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from azure.core.exceptions import HttpResponseError

from shared.adapters.arm.errors import retry_after, translate
from shared.errors import Throttled
from shared.models.messages import PlanPhase
from shared.models.retry import DEFAULT_RETRY
from shared.models.run import Phase, PhaseStatus
from shared.usecases.planning import plan_phase
from tests.fakes_azure import FakeEstate


@pytest.fixture
def estate() -> FakeEstate:
    estate = FakeEstate()
    estate.add_vm("vm-web-01")
    estate.deliver()
    estate.transport.take()
    return estate


def test_a_throttled_plan_is_sent_again_after_the_wait_resource_graph_asked_for(estate, caplog):
    estate.inventory.fail(
        "list_run_machines", Throttled("Resource Graph query: HTTP 429", retry_after=timedelta(seconds=7))
    )

    with caplog.at_level(logging.INFO, logger="shared.usecases.planning"):
        phase = estate.plan()

    assert phase.status is PhaseStatus.RECEIVED
    [sent] = estate.transport.sent
    assert sent.message == PlanPhase(run_key=estate.key, phase=Phase.PRE).resent()
    assert sent.message.message_id != PlanPhase(run_key=estate.key, phase=Phase.PRE).message_id
    assert sent.delay == timedelta(seconds=7)
    [line] = [record for record in caplog.records if record.name == "shared.usecases.planning"]
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert "planning throttled; planning again in 7 s" in line.getMessage()


def test_the_plan_sent_again_plans_the_phase_once_the_quota_has_reset(estate):
    estate.inventory.fail("list_run_machines", Throttled("429", retry_after=timedelta(seconds=3)))
    estate.plan()
    [again] = estate.transport.take()

    phase = plan_phase(again.message, estate.planning(), now=estate.now + again.delay)

    assert phase.status is PhaseStatus.PLANNED
    assert phase.expected_tasks == len(estate.tasks(Phase.PRE)) > 0


def test_without_a_wait_from_azure_the_plan_backs_off(estate):
    estate.inventory.fail("list_run_machines", Throttled("429"), Throttled("429"))
    estate.plan()
    [first] = estate.transport.take()
    plan_phase(first.message, estate.planning(), now=estate.now)
    [second] = estate.transport.take()

    assert DEFAULT_RETRY.min_delay <= first.delay <= DEFAULT_RETRY.base
    assert second.message.resend == 2
    assert second.delay >= first.delay  # the wait grows with each throttled attempt


def test_a_throttled_policy_read_is_sent_again_too(estate):
    estate.configurations.fail("get_tags", Throttled("ARM: HTTP 429", retry_after=timedelta(seconds=20)))

    phase = estate.plan()

    assert phase.status is PhaseStatus.RECEIVED
    assert [(type(s.message), s.delay) for s in estate.transport.sent] == [(PlanPhase, timedelta(seconds=20))]


def throttled_response(headers: dict[str, str]) -> HttpResponseError:
    response = SimpleNamespace(status_code=429, headers=headers, reason="Too Many Requests", text=lambda: "")
    error = HttpResponseError(message="throttled", response=response)
    error.status_code = 429
    return error


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"x-ms-user-quota-resets-after": "00:00:07"}, 7),
        ({"Retry-After": "3", "x-ms-user-quota-resets-after": "00:00:07"}, 7),
        ({"Retry-After": "9", "x-ms-user-quota-resets-after": "00:00:02"}, 9),
        ({"x-ms-user-quota-resets-after": "00:01:30.5"}, 90.5),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
    ids=["quota-reset-only", "quota-reset-longer", "retry-after-longer", "minutes", "unreadable", "none"],
)
def test_the_wait_is_the_longest_any_throttling_header_asks_for(headers, seconds):
    expected = None if seconds is None else timedelta(seconds=seconds)

    assert retry_after(throttled_response(headers)) == expected


def test_a_resource_graph_429_becomes_throttled_with_the_quota_reset_as_its_wait():
    translated = translate(throttled_response({"x-ms-user-quota-resets-after": "00:00:04"}), "Resource Graph query")

    assert isinstance(translated, Throttled)
    assert translated.retry_after == timedelta(seconds=4)
