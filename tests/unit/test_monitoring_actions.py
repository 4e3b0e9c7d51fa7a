"""Alert suppression: one rule per subscription, ending by itself, removed without fuss."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import MessageRejected, PermanentError, Throttled
from shared.models.ids import ResourceId
from shared.models.messages import MonitoringMessage
from shared.models.run import Action, Phase, TaskStatus
from shared.usecases.monitoring_actions import MonitoringPorts, perform_monitoring_action, rule_name
from tests.fakes_azure import FakeEstate

GRACE = timedelta(minutes=60)


def estate_with_machines(tags=None) -> tuple[FakeEstate, dict[str, list[str]]]:
    estate = FakeEstate(tags=tags)
    sub_a, sub_b = estate.subscriptions
    machines = {
        sub_a: [
            estate.add_vm("vm-web-01", subscription=sub_a, resource_group="rg-web"),
            estate.add_vm("vm-app-01", subscription=sub_a, resource_group="rg-app"),
            estate.add_arc("srv-01", subscription=sub_a),
        ],
        sub_b: [estate.add_vm("vm-db-01", subscription=sub_b, resource_group="rg-db")],
    }
    estate.planned_pre()
    return estate, machines


def act(estate: FakeEstate, action: Action, target: str, *, options=None, now=None, resource_group=None):
    phase = Phase.PRE if action is Action.SUPPRESS_ALERTS else Phase.POST
    message = MonitoringMessage(run_key=estate.key, phase=phase, action=action, target=target)
    message = estate.as_planned(message, options=options)
    ports = MonitoringPorts(
        records=estate.records,
        alerts=estate.alerts,
        default_grace=GRACE,
        rule_resource_group=resource_group,
        allowed_subscriptions=estate.allowed_subscriptions,
    )
    return perform_monitoring_action(message, ports, now=now or estate.now)


def test_one_rule_per_subscription_scoped_to_that_subscriptions_machines():
    estate, machines = estate_with_machines()
    sub_a, sub_b = estate.subscriptions

    result_a = act(estate, Action.SUPPRESS_ALERTS, sub_a)
    result_b = act(estate, Action.SUPPRESS_ALERTS, sub_b)

    assert len(estate.alerts.rules) == 2
    for subscription, result in ((sub_a, result_a), (sub_b, result_b)):
        rule = estate.alerts.rules[result.data["rule_id"].lower()]
        assert ResourceId(rule["id"]).subscription_id == subscription
        assert sorted(rule["scopes"], key=str.lower) == sorted(machines[subscription], key=str.lower)
        assert all(ResourceId(scope).subscription_id == subscription for scope in rule["scopes"])
        assert result.status is TaskStatus.SUCCEEDED
        assert result.data["machines"] == len(machines[subscription])


def test_the_rule_lives_in_a_resource_group_of_its_machines_unless_one_is_set():
    estate, machines = estate_with_machines()
    sub_a = estate.subscriptions[0]
    groups = sorted((ResourceId(m).resource_group for m in machines[sub_a]), key=str.lower)

    default = ResourceId(act(estate, Action.SUPPRESS_ALERTS, sub_a).data["rule_id"])
    chosen = ResourceId(act(estate, Action.SUPPRESS_ALERTS, sub_a, resource_group="rg-ops").data["rule_id"])

    assert default.resource_group == groups[0]
    assert chosen.resource_group == "rg-ops"
    assert default.provider_type == "microsoft.alertsmanagement/actionrules"
    assert default.name == chosen.name == rule_name(estate.records.get_run(estate.key))


def test_the_rule_is_effective_until_the_window_end_plus_grace():
    estate, _ = estate_with_machines()

    result = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0])

    rule = estate.alerts.rules[result.data["rule_id"].lower()]
    assert rule["effective_until"] == estate.event.end + GRACE
    assert rule["effective_from"] == min(estate.now, estate.event.start)
    assert result.data["effective_until"] == (estate.event.end + GRACE).isoformat()
    assert rule["tags"]["prepost-run"] == estate.key


def test_the_policy_tag_overrides_the_grace():
    estate, _ = estate_with_machines(tags={"prepost-suppression-grace-minutes": "15"})

    result = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0])

    rule = estate.alerts.rules[result.data["rule_id"].lower()]
    assert rule["effective_until"] == estate.event.end + timedelta(minutes=15)


def test_a_late_suppression_starts_now():
    estate, _ = estate_with_machines()
    during = estate.event.start + timedelta(minutes=30)

    result = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0], now=during)

    assert estate.alerts.rules[result.data["rule_id"].lower()]["effective_from"] == estate.event.start


@pytest.mark.parametrize("after", [timedelta(0), timedelta(minutes=1)], ids=["exactly", "after"])
def test_no_rule_when_the_window_and_grace_are_already_over(after):
    estate, _ = estate_with_machines()

    result = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0], now=estate.event.end + GRACE + after)

    assert result.status is TaskStatus.SKIPPED
    assert estate.alerts.calls_to("put_rule") == []


def test_a_subscription_outside_the_run_is_rejected_and_no_rule_is_made():
    estate, _ = estate_with_machines()

    with pytest.raises(MessageRejected, match="not one of the run's subscriptions"):
        act(estate, Action.SUPPRESS_ALERTS, "00000000-0000-0000-0000-000000000001")

    assert estate.alerts.calls == []


def test_the_subscription_target_is_matched_whatever_the_case():
    estate, machines = estate_with_machines()
    sub_b = estate.subscriptions[1]

    result = act(estate, Action.SUPPRESS_ALERTS, sub_b.upper())

    assert result.status is TaskStatus.SUCCEEDED
    assert estate.alerts.rules[result.data["rule_id"].lower()]["scopes"] == machines[sub_b]


def test_suppressing_twice_replaces_the_same_rule():
    estate, _ = estate_with_machines()

    first = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0])
    second = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0])

    assert first.data["rule_id"] == second.data["rule_id"]
    assert len(estate.alerts.rules) == 1


def test_throttling_is_raised_for_the_runner_to_requeue():
    estate, _ = estate_with_machines()
    estate.alerts.fail("put_rule", Throttled("429", retry_after=timedelta(seconds=20)))

    with pytest.raises(Throttled):
        act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0])


def test_the_recorded_rule_is_removed():
    estate, _ = estate_with_machines()
    rule_id = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0]).data["rule_id"]

    result = act(estate, Action.REMOVE_SUPPRESSION, estate.subscriptions[0], options={"rule_id": rule_id})

    assert estate.alerts.rules == {}
    assert result.status is TaskStatus.SUCCEEDED
    assert result.data == {"rule_id": rule_id, "existed": True}


def test_removing_a_rule_already_gone_succeeds():
    estate, _ = estate_with_machines()
    rule_id = act(estate, Action.SUPPRESS_ALERTS, estate.subscriptions[0]).data["rule_id"]
    act(estate, Action.REMOVE_SUPPRESSION, estate.subscriptions[0], options={"rule_id": rule_id})

    result = act(estate, Action.REMOVE_SUPPRESSION, estate.subscriptions[0], options={"rule_id": rule_id})

    assert result.status is TaskStatus.SUCCEEDED
    assert result.data["existed"] is False
    assert "already gone" in result.detail


def test_a_rule_whose_outcome_was_lost_is_removed_by_its_known_name():
    estate, _ = estate_with_machines()
    for subscription in estate.subscriptions:
        act(estate, Action.SUPPRESS_ALERTS, subscription)

    result = act(estate, Action.REMOVE_SUPPRESSION, estate.subscriptions[1])

    assert result.data["existed"] is True
    assert [ResourceId(rule["id"]).subscription_id for rule in estate.alerts.rules.values()] == [
        estate.subscriptions[0]
    ]


def test_a_removal_in_a_subscription_outside_the_run_is_rejected_and_nothing_is_deleted():
    estate, _ = estate_with_machines()

    with pytest.raises(MessageRejected, match="not one of the run's subscriptions"):
        act(estate, Action.REMOVE_SUPPRESSION, "00000000-0000-0000-0000-000000000001")

    assert estate.alerts.calls == []


def test_a_machine_action_is_not_a_monitoring_action():
    estate, machines = estate_with_machines()
    message = MonitoringMessage(run_key=estate.key, action=Action.START_VM, target=machines[estate.subscriptions[0]][0])
    ports = MonitoringPorts(
        records=estate.records,
        alerts=estate.alerts,
        default_grace=GRACE,
        rule_resource_group=None,
        allowed_subscriptions=estate.allowed_subscriptions,
    )

    with pytest.raises(PermanentError):
        perform_monitoring_action(message, ports, now=estate.now)
