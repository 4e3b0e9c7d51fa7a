"""Resource Graph throttling during planning, through the real app: re-planned, one log line, no traceback.

GIVEN the runner with the simulator's Resource Graph quota at one query per window, used up;
WHEN the pre-event arrives; THEN the plan is sent again after the quota resets (the simulator
answers ``x-ms-user-quota-resets-after``), the phase is planned, and the throttling shows as one
warning, not as a failed function with a traceback.
"""

from __future__ import annotations

import logging

import pytest

from prepost.simulator.throttling import GraphQuota, ThrottleConfig
from shared.models.messages import PlanPhase
from shared.models.run import Phase
from tests.conftest import load_events
from tests.integration.conftest import SAMPLE_SUBSCRIPTIONS, sample_estate

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sample_clock")]


def test_a_throttled_plan_is_planned_after_the_quota_resets_without_a_traceback(start_app, caplog):
    app = start_app(sample_estate())
    app.sim.configure_throttling(ThrottleConfig(resource_graph=GraphQuota(queries=1, window_seconds=2)))
    # The app's own identity uses the window's one query up.
    app.runner.container.inventory.list_run_machines(app.correlation_id, SAMPLE_SUBSCRIPTIONS)

    with caplog.at_level(logging.INFO):
        assert app.deliver(*load_events("pre-eventgrid-camelcase.json")).ok
        pre = app.wait_phase_final(Phase.PRE)

    assert pre.expected_tasks > 0
    plans = [sent for sent in app.recorder.of_kind(PlanPhase) if sent.message.phase is Phase.PRE]
    assert [sent.message.resend for sent in plans] == [0, 1]
    assert plans[1].delay is not None and plans[1].delay.total_seconds() >= 1
    throttled = [record for record in caplog.records if "planning throttled" in record.getMessage()]
    assert len(throttled) == 1 and throttled[0].levelno == logging.WARNING
    assert [record for record in caplog.records if record.exc_info] == []
    assert app.runner.stats.snapshot()["failures"] == {}
