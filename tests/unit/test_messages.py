"""Work messages: every kind survives the queue, ids are deterministic, bad bodies are refused."""

from __future__ import annotations

import json

import pytest

from shared.errors import InvalidMessage
from shared.models.ids import run_key
from shared.models.messages import (
    SCHEMA_VERSION,
    CheckPreDeadline,
    MonitoringMessage,
    PlanPhase,
    PostFallback,
    TaskMessage,
    TaskOutcome,
    decode_message,
)
from shared.models.run import Action, Phase, TaskStatus, task_id
from shared.names import QueueName
from tests.conftest import load_events
from tests.fakes_azure import vm_id

CORRELATION = load_events("pre-eventgrid-camelcase.json")[0]["data"]["correlationId"]
KEY = run_key(CORRELATION)
SUBSCRIPTION = load_events("pre-eventgrid-camelcase.json")[0]["data"]["resourceSubscriptionIds"][0]
VM = vm_id("vm-web-01", subscription=SUBSCRIPTION)

EVERY_KIND = [
    PlanPhase(run_key=KEY, phase=Phase.POST, attempt=3),
    CheckPreDeadline(run_key=KEY),
    PostFallback(run_key=KEY),
    TaskMessage(
        run_key=KEY,
        phase=Phase.PRE,
        action=Action.SNAPSHOT_DISKS,
        target=VM,
        attempt=2,
        options={"disks": "all", "nested": {"list": [1, 2]}},
    ),
    MonitoringMessage(
        run_key=KEY,
        phase=Phase.POST,
        action=Action.REMOVE_SUPPRESSION,
        target=SUBSCRIPTION,
        options={"rule_id": "/subscriptions/x/resourceGroups/y/providers/a/b/c"},
    ),
    TaskOutcome(
        run_key=KEY,
        phase=Phase.PRE,
        action=Action.START_VM,
        target=VM,
        status=TaskStatus.RETRYING,
        detail="throttled",
        attempts=4,
        started_at="2026-11-22T01:30:00Z",
        finished_at="2026-11-22T01:30:02Z",
        data={"started_by_us": True},
    ),
]


@pytest.mark.parametrize("message", EVERY_KIND, ids=lambda m: m.kind)
def test_every_kind_survives_encoding(message):
    body = message.to_json()

    decoded = decode_message(body)

    assert type(decoded) is type(message)
    assert decoded == message
    assert decode_message(body.encode()) == message


@pytest.mark.parametrize("message", EVERY_KIND, ids=lambda m: m.kind)
def test_the_body_names_its_kind_and_schema_version(message):
    raw = json.loads(message.to_json())

    assert raw["kind"] == message.kind
    assert raw["v"] == SCHEMA_VERSION


def test_every_kind_is_covered_and_kinds_are_distinct():
    assert len({m.kind for m in EVERY_KIND}) == len(EVERY_KIND)


def test_each_kind_goes_to_its_queue():
    assert [m.queue for m in EVERY_KIND] == [
        QueueName.PLAN,
        QueueName.PLAN,
        QueueName.PLAN,
        QueueName.VM_TASKS,
        QueueName.MONITORING,
        QueueName.OUTCOMES,
    ]


@pytest.mark.parametrize("message", EVERY_KIND, ids=lambda m: m.kind)
def test_message_ids_are_deterministic(message):
    twin = decode_message(message.to_json())

    assert twin.message_id == message.message_id
    assert message.message_id.startswith(KEY)


def test_message_ids_tell_apart_what_must_not_be_dropped_as_duplicates():
    task = TaskMessage(run_key=KEY, phase=Phase.PRE, action=Action.START_VM, target=VM)
    ids = {
        task.message_id,
        task.next_attempt().message_id,
        TaskMessage(run_key=KEY, phase=Phase.PRE, action=Action.SNAPSHOT_DISKS, target=VM).message_id,
        TaskMessage(run_key=KEY, phase=Phase.POST, action=Action.START_VM, target=VM).message_id,
        PlanPhase(run_key=KEY, phase=Phase.PRE).message_id,
        PlanPhase(run_key=KEY, phase=Phase.POST).message_id,
        PlanPhase(run_key=KEY, phase=Phase.POST).next_attempt().message_id,
        CheckPreDeadline(run_key=KEY).message_id,
        PostFallback(run_key=KEY).message_id,
    }
    assert len(ids) == 9


def test_task_ids_ignore_the_case_of_the_target():
    upper = TaskMessage(
        run_key=KEY, action=Action.START_VM, target=VM.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")
    )
    lower = TaskMessage(run_key=KEY, action=Action.START_VM, target=VM.lower())

    assert upper.task_id == lower.task_id == task_id(Phase.PRE, Action.START_VM, VM)
    assert upper.message_id == lower.message_id


def test_outcome_ids_differ_by_status_and_attempt_so_retries_are_not_dropped():
    base = dict(run_key=KEY, action=Action.START_VM, target=VM)
    ids = {
        TaskOutcome(**base, status=TaskStatus.RETRYING, attempts=1).message_id,
        TaskOutcome(**base, status=TaskStatus.RETRYING, attempts=2).message_id,
        TaskOutcome(**base, status=TaskStatus.SUCCEEDED, attempts=2).message_id,
    }
    assert len(ids) == 3
    assert TaskOutcome(**base).task_id == TaskMessage(**base).task_id


@pytest.mark.parametrize("message", [m for m in EVERY_KIND if hasattr(m, "next_attempt")], ids=lambda m: m.kind)
def test_next_attempt_keeps_everything_but_the_attempt(message):
    following = message.next_attempt()

    assert type(following) is type(message)
    assert following.attempt == message.attempt + 1
    assert {k: v for k, v in vars(following).items() if k != "attempt"} == {
        k: v for k, v in vars(message).items() if k != "attempt"
    }


def test_properties_let_an_operator_filter_without_decoding():
    task = EVERY_KIND[3]

    assert task.properties == {
        "kind": "task",
        "runKey": KEY,
        "phase": "pre",
        "action": "snapshot-disks",
        "target": VM,
        "attempt": 2,
    }
    assert PlanPhase(run_key=KEY, phase=Phase.POST).properties["phase"] == "post"


def body(**fields) -> str:
    return json.dumps({"kind": "task", "v": SCHEMA_VERSION, "run_key": KEY, **fields})


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('"text"', "JSON object"),
        (json.dumps({"v": SCHEMA_VERSION, "run_key": KEY}), "unknown message kind"),
        (json.dumps({"kind": "explode", "v": SCHEMA_VERSION, "run_key": KEY}), "unknown message kind"),
        (json.dumps({"kind": "task", "run_key": KEY}), "schema version"),
        (body(v=SCHEMA_VERSION + 1), "schema version"),
        (body(colour="blue"), "unknown fields"),
        (body(action="reboot"), "malformed"),
        (body(phase="during"), "malformed"),
        (json.dumps({"kind": "outcome", "v": SCHEMA_VERSION, "run_key": KEY, "status": "done"}), "malformed"),
        (json.dumps({"kind": "check-pre-deadline", "v": SCHEMA_VERSION}), "malformed"),
        (json.dumps({"kind": "check-pre-deadline", "v": SCHEMA_VERSION, "run_key": ""}), "no run_key"),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "array",
        "string",
        "no-kind",
        "unknown-kind",
        "no-version",
        "newer-version",
        "unknown-field",
        "unknown-action",
        "unknown-phase",
        "unknown-status",
        "missing-run-key",
        "empty-run-key",
    ],
)
def test_bodies_that_cannot_be_decoded_are_invalid(raw, why):
    with pytest.raises(InvalidMessage, match=why):
        decode_message(raw)


@pytest.mark.parametrize(
    "fields",
    [
        {"run_key": 42},
        {"attempt": "2"},
        {"attempt": True},
        {"attempt": None},
        {"target": None},
        {"target": ["/subscriptions/x"]},
        {"options": None},
        {"options": ["disks", "all"]},
    ],
    ids=[
        "run-key-number",
        "attempt-text",
        "attempt-bool",
        "attempt-null",
        "target-null",
        "target-list",
        "options-null",
        "options-list",
    ],
)
def test_fields_of_the_wrong_type_are_invalid(fields):
    # Caught here, the message is parked at once; missed, it would fail on every delivery.
    with pytest.raises(InvalidMessage, match="malformed"):
        decode_message(body(**{"action": "start-vm", "target": VM, **fields}))


@pytest.mark.parametrize(
    "fields",
    [{"detail": 5}, {"attempts": "1"}, {"started_at": 1700000000}, {"data": "started"}],
    ids=["detail", "attempts", "started-at", "data"],
)
def test_outcome_fields_of_the_wrong_type_are_invalid(fields):
    raw = json.dumps({"kind": "outcome", "v": SCHEMA_VERSION, "run_key": KEY, "target": VM, **fields})

    with pytest.raises(InvalidMessage, match="malformed"):
        decode_message(raw)


def test_optional_outcome_times_may_be_null():
    raw = json.dumps(
        {
            "kind": "outcome",
            "v": SCHEMA_VERSION,
            "run_key": KEY,
            "target": VM,
            "started_at": None,
            "finished_at": None,
        }
    )

    assert decode_message(raw).started_at is None


# -- follow-ups of long operations ---------------------------------------------------------

TASK = EVERY_KIND[3]
SINCE = "2026-11-22T01:30:05.123456Z"


@pytest.mark.parametrize("cls", [TaskMessage, MonitoringMessage])
def test_a_follow_up_survives_encoding(cls):
    follow_up = cls(run_key=KEY, action=Action.START_VM, target=VM, attempt=2).follow_up(waiting_since=SINCE)

    decoded = decode_message(follow_up.to_json())

    assert type(decoded) is cls
    assert decoded == follow_up
    assert (decoded.checks, decoded.waiting_since, decoded.attempt) == (1, SINCE, 2)


def test_a_first_delivery_leaves_the_follow_up_fields_out_of_the_body():
    # An instance still running the code before follow-ups existed can read it during a deployment.
    raw = json.loads(TASK.to_json())

    assert "checks" not in raw and "waiting_since" not in raw


def test_a_task_body_without_the_follow_up_fields_decodes_as_a_first_delivery():
    older = body(phase="pre", action="start-vm", target=VM, attempt=3, options={})

    decoded = decode_message(older)

    assert (decoded.checks, decoded.waiting_since, decoded.is_follow_up) == (0, None, False)
    assert decoded.message_id == f"{KEY}:{task_id(Phase.PRE, Action.START_VM, VM)}:3"


def test_follow_ups_keep_when_the_operation_began_and_count_on():
    first = TASK.follow_up(waiting_since=SINCE)
    second = first.follow_up(waiting_since="2026-11-22T01:31:00Z")

    assert (first.checks, second.checks) == (1, 2)
    assert first.waiting_since == second.waiting_since == SINCE
    assert second.attempt == TASK.attempt
    assert second.is_follow_up and not TASK.is_follow_up


def test_follow_up_ids_are_deterministic_and_distinct_from_the_original_and_each_other():
    first = TASK.follow_up(waiting_since=SINCE)
    second = first.follow_up(waiting_since=SINCE)

    assert TASK.message_id == f"{KEY}:{TASK.task_id}:2"
    assert first.message_id == f"{KEY}:{TASK.task_id}:2:check:1"
    assert second.message_id == f"{KEY}:{TASK.task_id}:2:check:2"
    assert decode_message(second.to_json()).message_id == second.message_id


def test_the_next_attempt_begins_without_follow_ups():
    following = TASK.follow_up(waiting_since=SINCE).follow_up(waiting_since=SINCE).next_attempt()

    assert (following.attempt, following.checks, following.waiting_since) == (TASK.attempt + 1, 0, None)
    assert following.message_id == f"{KEY}:{TASK.task_id}:3"


def test_properties_name_the_follow_up():
    assert TASK.follow_up(waiting_since=SINCE).properties["checks"] == 1
    assert "checks" not in TASK.properties


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"checks": "1"}, "wrong type"),
        ({"checks": True}, "wrong type"),
        ({"checks": None}, "wrong type"),
        ({"checks": -1}, "must not be negative"),
        ({"checks": 1, "waiting_since": 1700000000}, "wrong type"),
        ({"checks": 1, "waiting_since": "yesterday"}, "not an ISO 8601 time"),
    ],
    ids=["checks-text", "checks-bool", "checks-null", "checks-negative", "since-number", "since-not-a-time"],
)
def test_follow_up_fields_that_do_not_fit_are_invalid(fields, why):
    with pytest.raises(InvalidMessage, match=why):
        decode_message(body(action="start-vm", target=VM, **fields))
