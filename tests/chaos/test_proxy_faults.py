"""Tests of the fault plans of the storage fault proxy: classification, text and JSON forms, decisions."""

from __future__ import annotations

import json

import pytest

from prepost.chaos.proxy_faults import (
    OPERATIONS,
    FaultDecider,
    FaultKind,
    FaultPlan,
    FaultRates,
    FaultRule,
    classify,
)

ACCOUNT = "/devstoreaccount1"

# -- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "operation"),
    [
        ("POST", f"{ACCOUNT}/Tables", "table.create"),
        ("GET", f"{ACCOUNT}/Tables?$filter=TableName%20eq%20%27t%27", "table.query"),
        ("DELETE", f"{ACCOUNT}/Tables('jobs')", "table.other"),
        ("POST", f"{ACCOUNT}/jobs", "table.insert"),
        ("GET", f"{ACCOUNT}/jobs()?$filter=PartitionKey%20eq%20%27p%27", "table.query"),
        ("GET", f"{ACCOUNT}/jobs(PartitionKey=%27p%27,RowKey=%27r%27)", "table.query"),
        ("PUT", f"{ACCOUNT}/jobs(PartitionKey='p',RowKey='r')", "table.update"),
        ("MERGE", f"{ACCOUNT}/jobs(PartitionKey='p',RowKey='r')", "table.update"),
        ("PATCH", f"{ACCOUNT}/jobs(PartitionKey='p',RowKey='r')", "table.update"),
        ("DELETE", f"{ACCOUNT}/jobs(PartitionKey='p',RowKey='r')", "table.delete"),
        ("POST", f"{ACCOUNT}/$batch", "table.batch"),
        ("GET", f"{ACCOUNT}/jobs?comp=acl", "table.other"),
        ("GET", f"{ACCOUNT}/?restype=service&comp=properties", "table.other"),
    ],
)
def test_table_requests_are_classified(method: str, target: str, operation: str) -> None:
    assert classify("table", method, target) == operation


@pytest.mark.parametrize(
    ("method", "target", "operation"),
    [
        ("POST", f"{ACCOUNT}/jobs/messages", "queue.send"),
        ("GET", f"{ACCOUNT}/jobs/messages?numofmessages=32", "queue.receive"),
        ("GET", f"{ACCOUNT}/jobs/messages?peekonly=true&numofmessages=1", "queue.peek"),
        ("DELETE", f"{ACCOUNT}/jobs/messages/abc-123?popreceipt=AgAAAA%3D%3D", "queue.delete"),
        ("PUT", f"{ACCOUNT}/jobs/messages/abc-123?popreceipt=AgAAAA%3D%3D&visibilitytimeout=0", "queue.update"),
        ("DELETE", f"{ACCOUNT}/jobs/messages", "queue.other"),
        ("PUT", f"{ACCOUNT}/jobs", "queue.other"),
        ("GET", f"{ACCOUNT}/jobs?comp=metadata", "queue.other"),
        ("GET", f"{ACCOUNT}?comp=list", "queue.other"),
    ],
)
def test_queue_requests_are_classified(method: str, target: str, operation: str) -> None:
    assert classify("queue", method, target) == operation


def test_classifying_for_an_unknown_service_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown service 'blob'"):
        classify("blob", "GET", f"{ACCOUNT}/c")  # type: ignore[arg-type]


# -- text form ----------------------------------------------------------------------------


def test_the_documented_example_parses() -> None:
    plan = FaultPlan.parse("*=500:0.02,503:0.02,reset:0.01,lost:0.01,timeout:0.005;table.batch=lost:0.05;latency=20")

    assert plan.rates["*"] == FaultRates(
        error500=0.02, error503=0.02, reset_before=0.01, lost_response=0.01, timeout=0.005
    )
    assert plan.rates_for("table.batch") == FaultRates(lost_response=0.05)
    assert plan.rates_for("queue.send") is plan.rates["*"]
    assert plan.latency_ms == 20
    assert plan.latency_ms_for("table.batch") == 20


def test_the_most_specific_entry_wins_and_sets_its_own_latency() -> None:
    plan = FaultPlan.parse("* = 503:0.1 ; queue.* = reset:0.2, latency:5 ; queue.send = lost:0.3 ; latency=50")

    assert plan.rates_for("queue.send") == FaultRates(lost_response=0.3)
    assert plan.rates_for("queue.receive") == FaultRates(reset_before=0.2, latency_ms=5)
    assert plan.rates_for("table.insert") == FaultRates(error503=0.1)
    assert plan.latency_ms_for("queue.receive") == 5
    assert plan.latency_ms_for("queue.send") == 50


def test_kinds_may_be_written_as_their_values() -> None:
    short = FaultPlan.parse("*=500:0.1,503:0.1,reset:0.1,lost:0.1,timeout:0.1")
    long = FaultPlan.parse("*=error500:0.1,error503:0.1,reset_before:0.1,lost_response:0.1,timeout:0.1")
    assert short == long


def test_rules_settings_and_an_empty_plan_parse() -> None:
    plan = FaultPlan.parse("seed=7;timeout_seconds=0.2;queue.send=lost@1-2,503:0.5;table.*=reset@3;*=timeout@4-")

    assert plan.seed == 7
    assert plan.timeout_seconds == 0.2
    assert plan.rules == (
        FaultRule("queue.send", FaultKind.LOST_RESPONSE, 1, 2),
        FaultRule("table.*", FaultKind.RESET_BEFORE, 3, 3),
        FaultRule("*", FaultKind.TIMEOUT, 4, None),
    )
    # A rule alone makes no rates entry, which would otherwise switch off the wildcards' random faults.
    assert set(plan.rates) == {"queue.send"}
    assert FaultPlan.parse("") == FaultPlan.parse(" ; ") == FaultPlan()


def test_probabilities_adding_up_to_exactly_one_are_accepted() -> None:
    assert FaultPlan.parse("*=500:0.1,503:0.2,lost:0.7").rates["*"].total == pytest.approx(1.0)


@pytest.mark.parametrize(
    "text",
    [
        "*=500:0.02,503:0.02,reset:0.01,lost:0.01,timeout:0.005;table.batch=lost:0.05;latency=20",
        "seed=3;timeout_seconds=0.25;queue.*=latency:10;queue.send=lost@2;*=503@1-;table.insert=500:0.5,lost@1-3",
        "table.query=500:0",
    ],
)
def test_the_text_form_round_trips(text: str) -> None:
    plan = FaultPlan.parse(text)
    assert FaultPlan.parse(plan.to_text()) == plan


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("*=boom:0.1", r"unknown fault kind 'boom'"),
        ("queue.sned=500:0.1", r"unknown operation 'queue.sned'"),
        ("*=500:0.6,503:0.6", r"\*: fault probabilities add up to 1.2, more than 1"),
        ("*=500:1.5", r"probability of error500 must be between 0 and 1, got 1.5"),
        ("*=lost:-0.1", r"probability of lost_response must be between 0 and 1, got -0.1"),
        ("*=500:abc", r"'abc' is not a number"),
        ("*=500:nan", r"probability of error500 must be between 0 and 1"),
        ("*=500", r"expected KIND:PROBABILITY, KIND@RANGE or latency:MS"),
        ("*=500:0.1,500:0.2", r"500 is given twice"),
        ("*=latency:-5", r"latency must be 0 or more"),
        ("latency=-1", r"latency must be 0 or more"),
        ("latency=1;latency=2", r"'latency' is given twice"),
        ("seed=x", r"seed=x"),
        ("queue.send=lost@0", r"first must be a whole number from 1"),
        ("queue.send=lost@3-2", r"last must be a whole number >= first \(3\)"),
        ("queue.send=lost@first", r"the range must be N, N-M or N-"),
        ("queue.send", r"expected NAME=VALUE"),
    ],
)
def test_bad_text_is_rejected_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FaultPlan.parse(text)


# -- JSON form ----------------------------------------------------------------------------


def test_the_json_form_round_trips_through_json_text() -> None:
    plan = FaultPlan.parse("seed=9;latency=15;timeout_seconds=0.5;*=500:0.1;table.batch=lost@2-")
    data = json.loads(json.dumps(plan.to_json()))

    assert data["rates"] == {"*": {"error500": 0.1}}
    assert data["rules"] == [{"operation": "table.batch", "kind": "lost_response", "first": 2, "last": None}]
    assert FaultPlan.from_json(data) == plan
    assert FaultPlan.from_json(json.dumps(data)) == plan


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("{not json", r"fault plan is not valid JSON"),
        ("[1]", r"a fault plan must be a JSON object, got list"),
        ({"seeds": 1}, r"unknown plan field\(s\) 'seeds'"),
        ({"rates": {"queue.nope": {}}}, r"unknown operation 'queue.nope'"),
        ({"rates": {"*": {"error502": 0.1}}}, r"unknown rates field\(s\) 'error502'"),
        ({"rates": {"*": {"error500": "0.1"}}}, r"probability of error500 must be a number"),
        ({"rates": {"*": {"error500": 0.7, "timeout": 0.7}}}, r"add up to 1.4"),
        ({"rules": [{"operation": "*"}]}, r"a rule needs an operation and a kind"),
        ({"rules": [{"operation": "*", "kind": "lost", "first": 0}]}, r"first must be a whole number from 1"),
        ({"timeout_seconds": -1}, r"timeout_seconds must be 0 or more"),
    ],
)
def test_bad_json_is_rejected_naming_the_problem(data: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FaultPlan.from_json(data)  # type: ignore[arg-type]


# -- decisions ----------------------------------------------------------------------------

MIXED = "*=500:0.1,503:0.1,reset:0.1,lost:0.1,timeout:0.1;latency=20"
SEQUENCE = [sorted(OPERATIONS)[i % len(OPERATIONS)] for i in range(400)]


def _decisions(plan: FaultPlan, operations: list[str]) -> list[tuple[str, FaultKind | None, float]]:
    decider = FaultDecider(plan)
    return [(d.operation, d.fault, d.delay_seconds) for d in map(decider.decide, operations)]


def test_the_same_seed_and_request_order_give_the_same_decisions() -> None:
    first = _decisions(FaultPlan.parse(MIXED).with_seed(7), SEQUENCE)
    again = _decisions(FaultPlan.parse(MIXED).with_seed(7), SEQUENCE)
    other_seed = _decisions(FaultPlan.parse(MIXED).with_seed(8), SEQUENCE)

    assert first == again
    assert first != other_seed
    assert {fault for _, fault, _ in first} == {*FaultKind, None}  # every kind shows up at these rates
    assert all(0.0 <= delay <= 0.020 for _, _, delay in first)
    assert any(delay > 0 for _, _, delay in first)


def test_setting_the_plan_again_restarts_the_sequence() -> None:
    decider = FaultDecider(FaultPlan.parse(MIXED))
    first = [decider.decide(op).fault for op in SEQUENCE[:50]]
    decider.set_plan(FaultPlan.parse(MIXED))
    assert [decider.decide(op).fault for op in SEQUENCE[:50]] == first


def test_a_rule_does_not_shift_the_random_faults_of_other_requests() -> None:
    random_only = _decisions(FaultPlan.parse(MIXED), SEQUENCE)
    with_rule = _decisions(FaultPlan.parse(MIXED + ";queue.send=lost@1-"), SEQUENCE)

    for (operation, fault, delay), (_, ruled_fault, ruled_delay) in zip(random_only, with_rule, strict=True):
        assert ruled_delay == delay
        assert ruled_fault == (FaultKind.LOST_RESPONSE if operation == "queue.send" else fault)


def test_rules_fault_exactly_the_numbered_requests_of_their_target() -> None:
    decider = FaultDecider(FaultPlan.parse("queue.send=lost@2-3;queue.*=503@4-5;table.insert=reset@2-"))
    operations = ["queue.send", "table.insert", "queue.receive", "queue.send", "queue.send", "queue.send"]
    operations += ["table.insert", "table.insert"]

    faults = [decider.decide(operation).fault for operation in operations]

    assert faults == [
        None,  # 1st send
        None,  # 1st insert
        None,  # queue request 2
        FaultKind.LOST_RESPONSE,  # 2nd send
        FaultKind.LOST_RESPONSE,  # 3rd send and queue request 4: the first rule that covers it wins
        FaultKind.ERROR503,  # 4th send, queue request 5
        FaultKind.RESET_BEFORE,  # 2nd insert
        FaultKind.RESET_BEFORE,  # 3rd insert
    ]


def test_a_timeout_decision_carries_the_plans_hold_time() -> None:
    decider = FaultDecider(FaultPlan.parse("timeout_seconds=0.2;table.batch=timeout@1"))
    decision = decider.decide("table.batch")
    assert (decision.fault, decision.hold_seconds) == (FaultKind.TIMEOUT, 0.2)
    assert decider.decide("table.batch").hold_seconds == 0.0


def test_deciding_for_an_unknown_operation_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown operation 'table.upsert'"):
        FaultDecider().decide("table.upsert")
