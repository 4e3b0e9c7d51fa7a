"""``infra/modules/alerts.bicep``: the alerts match what the code logs.

Each log alert matches a record by its ``event`` attribute (OpenTelemetry on) or by its message
text (the text the Functions host forwards when it is off). Both are taken here from records
the code really writes, so renaming an event or rewording a message fails this test instead of
silently muting an alert. The regular expressions in the queries are simple enough to mean the
same in KQL (RE2) and Python.
"""

from __future__ import annotations

import logging
import re

import pytest

from shared.handlers import MESSAGE_PARKED, park
from shared.names import QueueName
from shared.observability import metrics
from shared.observability.context import DIMENSIONS
from tests.infra.test_bicep import body, main, module

ALERTS = {"poison-messages", "cancelled-runs", "failed-phases"}


def log_alerts() -> dict[str, dict]:
    return {alert["name"]: alert for alert in module("alerts")["variables"]["logAlerts"]["value"]}


def matches(query: str, record: logging.LogRecord) -> bool:
    """Whether ``query``'s where clause keeps ``record``, by its event attribute or its text."""
    event = getattr(record, "event", None)
    statuses = re.findall(r'customDimensions\.status\) != "([^"]+)"', query)
    by_event = any(
        event == wanted and not any(getattr(record, "status", None) == s for s in statuses)
        for wanted in re.findall(r'customDimensions\.event\) == "([^"]+)"', query)
    )
    text = record.getMessage()
    by_text = (
        any(text.startswith(prefix) for prefix in re.findall(r'message startswith "([^"]+)"', query))
        or any(re.search(pattern, text) for pattern in re.findall(r'message matches regex @"([^"]+)"', query))
        or any(word in text for word in re.findall(r'message has "([^"]+)"\n', query))
    )
    return by_event, by_text


class Storage:
    def park(self, queue, body, reason):
        pass


class Container:
    storage = Storage()


@pytest.fixture
def records(caplog) -> dict[str, list[logging.LogRecord]]:
    caplog.set_level(logging.INFO)
    park(QueueName.VM_TASKS, "{}", "task start-vm for run r-1: no task is recorded", Container())
    parked = caplog.records[-1:]
    metrics.run_cancellation("r-1", True, "Cancel")
    metrics.run_cancellation("r-2", False, "too late: the run had already started")
    cancelled = caplog.records[-2:]
    metrics.phase_finished("r-1", "pre", "completed-with-failures", *_times(), 2)
    metrics.phase_finished("r-1", "post", "failed", *_times(), 0)
    failed = caplog.records[-2:]
    metrics.phase_finished("r-3", "pre", "completed", *_times(), 0)
    metrics.task_finished("r-3", "pre", "start-vm", "failed", 8)
    fine = caplog.records[-2:]
    return {"poison-messages": parked, "cancelled-runs": cancelled, "failed-phases": failed, "fine": fine}


def _times():
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 11, 22, 1, 30, tzinfo=UTC)
    return start, start + timedelta(minutes=12)


def test_the_module_declares_the_three_log_alerts_and_main_deploys_it():
    assert set(log_alerts()) == ALERTS
    deployed = main()["modules"]["alerts"]
    assert deployed["detail"]["path"] == "modules/alerts.bicep"
    params = deployed["config"]["params"]
    assert "applicationInsightsId" in str(params["applicationInsightsId"])


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_each_alert_fires_on_the_records_the_code_writes_by_event_and_by_text(records, name):
    query = log_alerts()[name]["query"]
    for record in records[name]:
        by_event, by_text = matches(query, record)
        assert by_event, (name, record.getMessage())
        assert by_text, (name, record.getMessage())


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_no_alert_fires_on_records_of_other_alerts_or_of_work_that_went_well(records, name):
    query = log_alerts()[name]["query"]
    others = [r for key, group in records.items() if key != name for r in group]
    for record in others:
        assert matches(query, record) == (False, False), (name, record.getMessage())


def test_each_alert_splits_by_a_dimension_the_records_carry():
    for alert in log_alerts().values():
        assert alert["dimension"] in DIMENSIONS
        assert f"project timestamp, {alert['dimension']}" in alert["query"]


def test_the_events_in_the_queries_are_the_codes():
    queries = "\n".join(alert["query"] for alert in log_alerts().values())
    for event in (MESSAGE_PARKED, metrics.RUN_CANCELLED, metrics.PHASE_FINISHED):
        assert f'"{event}"' in queries


def test_rules_fire_above_zero_per_window_and_notify_the_given_action_groups():
    rules = body(module("alerts")["resources"]["logAlertRules"])
    assert rules["kind"] == "LogAlert"
    criterion = rules["properties"]["criteria"]["allOf"][0]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == ("Count", "GreaterThan", 0)
    assert rules["properties"]["actions"] == "actions"


def test_service_bus_dead_letter_depth_is_watched_on_the_transport_queues():
    alerts = module("alerts")
    metric = body(alerts["resources"]["deadLetterAlert"])["properties"]["criteria"]["allOf"][0]
    assert metric["metricName"] == "DeadletteredMessages"
    assert metric["metricNamespace"] == "Microsoft.ServiceBus/namespaces"
    assert (metric["operator"], metric["threshold"]) == ("GreaterThan", 0)
    assert metric["dimensions"][0]["name"] == "EntityName"
    watched = alerts["parameters"]["serviceBusQueueNames"]["default"]
    assert set(watched) == set(module("servicebus")["variables"]["queueNames"]["value"])
    assert set(watched) == {QueueName.PLAN.value, QueueName.VM_TASKS.value}
