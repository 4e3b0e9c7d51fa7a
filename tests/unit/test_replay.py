"""Operator replay, the pure parts: unwrapping poison messages, stripping dead-letter fields.

The replay loop runs here against a fake queue (the few calls it makes), for the paths Azurite
cannot be made to fail on cue; tests/integration/test_replay.py runs it against Azurite.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from azure.core.exceptions import ServiceRequestError

from prepost.cli import main
from prepost.local.delivery import DeliveryResult
from prepost.replay import (
    DEAD_LETTER_FIELDS,
    HOST_POISON_REASON,
    DeadLetterFormatError,
    MessageOutcome,
    decode_queue_text,
    describe_body,
    describe_delivery,
    parse_dead_letter_events,
    poison_message,
    redact_url,
    replay_poison,
    strip_dead_letter_fields,
)
from shared.adapters.parking import parked_body
from shared.models.messages import TaskMessage
from shared.models.run import Action, Phase
from shared.names import QueueName
from tests.conftest import load_events

VM = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute"
    "/virtualMachines/vm-7"
)
TASK = TaskMessage(run_key="mc-weekly-20261122020000-abc", phase=Phase.PRE, action=Action.START_VM, target=VM)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def dead_lettered(event: dict, *, cloud_events: bool = False) -> dict:
    """``event`` as Event Grid writes it to a dead-letter blob."""
    facts = {
        "deadLetterReason": "MaxDeliveryAttemptsExceeded",
        "deliveryAttempts": 10,
        "lastDeliveryOutcome": "TimedOut",
        "lastHttpStatusCode": 408,
        "publishTime": "2026-11-22T01:25:00.4017Z",
        "lastDeliveryAttemptTime": "2026-11-22T01:44:10.1011Z",
    }
    if cloud_events:  # CloudEvents attribute names are lower case
        facts = {key.lower(): value for key, value in facts.items() if key != "lastDeliveryAttemptTime"}
    return {**copy.deepcopy(event), **facts}


# -- unwrapping poison messages ------------------------------------------------------------


class TestDecodeQueueText:
    def test_base64_text_is_decoded(self):
        assert decode_queue_text(b64(TASK.to_json())) == TASK.to_json()

    def test_bytes_are_accepted(self):
        assert decode_queue_text(b64("héllo").encode()) == "héllo"

    def test_plain_json_is_kept_as_it_is(self):
        # Not base64 ('{' is not in its alphabet): someone added it by hand, keep it readable.
        assert decode_queue_text(TASK.to_json()) == TASK.to_json()

    def test_base64_of_binary_is_kept_as_it_is(self):
        # "abcd" is valid base64, but of bytes that are not UTF-8 text.
        assert decode_queue_text("abcd") == "abcd"


class TestPoisonMessage:
    def test_a_parked_message_gives_the_original_body_and_the_reason(self):
        content = b64(parked_body(QueueName.VM_TASKS, TASK.to_json(), "InvalidMessage: unknown kind"))

        message = poison_message(content, message_id="m1")

        assert message.body == TASK.to_json()
        assert message.parked
        assert message.reason == "parked by prepost: InvalidMessage: unknown kind"
        assert message.note["queue"] == "prepost-vm-tasks"
        assert message.poisoned_at == message.note["at"]

    def test_a_parked_bytes_body_comes_back_as_text(self):
        content = b64(parked_body(QueueName.PLAN, b'{"kind":"plan-phase"}', "wrong queue"))

        assert poison_message(content).body == '{"kind":"plan-phase"}'

    def test_a_message_the_host_poisoned_is_the_original_body(self):
        inserted = datetime(2026, 11, 22, 1, 40, tzinfo=UTC)

        message = poison_message(b64(TASK.to_json()), inserted_on=inserted)

        assert message.body == TASK.to_json()
        assert not message.parked
        assert message.reason == HOST_POISON_REASON
        assert "5 failed deliveries" in message.reason
        assert message.poisoned_at == "2026-11-22T01:40:00Z"

    def test_a_json_body_that_merely_has_a_body_key_is_not_unwrapped(self):
        body = json.dumps({"body": "x", "kind": "task"})

        assert poison_message(b64(body)).body == body


class TestDescribeBody:
    def test_a_task_names_its_kind_run_phase_action_and_machine(self):
        assert describe_body(TASK.to_json()) == "task mc-weekly-20261122020000-abc pre start-vm vm-7"

    def test_a_retried_task_shows_its_attempt(self):
        assert describe_body(TASK.next_attempt().to_json()).endswith("vm-7 attempt 2")

    def test_a_body_that_is_not_json_is_shown_cut(self):
        text = describe_body("x" * 100)

        assert text.startswith("(not a work message) xxx")
        assert text.endswith("...")
        assert len(text) < 100


# -- stripping dead-letter fields ----------------------------------------------------------


class TestStripDeadLetterFields:
    @pytest.mark.parametrize(
        "name", ["pre-eventgrid-camelcase.json", "pre-eventgrid-pascalcase.json", "post-eventgrid.json"]
    )
    def test_event_grid_schema_gets_the_original_event_back(self, name):
        original = load_events(name)[0]

        stripped = strip_dead_letter_fields(dead_lettered(original))

        assert stripped.event == original
        assert set(stripped.facts) == {
            "deadLetterReason",
            "deliveryAttempts",
            "lastDeliveryOutcome",
            "lastHttpStatusCode",
            "publishTime",
            "lastDeliveryAttemptTime",
        }

    def test_cloudevents_lower_case_fields_are_stripped_too(self):
        original = load_events("pre-cloudevents.json")[0]

        stripped = strip_dead_letter_fields(dead_lettered(original, cloud_events=True))

        assert stripped.event == original
        assert {key.lower() for key in stripped.facts} <= DEAD_LETTER_FIELDS
        assert stripped.reason.startswith("MaxDeliveryAttemptsExceeded (10 attempts, last: TimedOut 408")

    def test_fields_inside_data_are_left_alone(self):
        original = copy.deepcopy(load_events("pre-eventgrid-camelcase.json")[0])
        original["data"]["publishTime"] = "kept"

        assert strip_dead_letter_fields(dead_lettered(original)).event["data"]["publishTime"] == "kept"

    def test_the_reason_says_why_how_often_and_when(self):
        stripped = strip_dead_letter_fields(dead_lettered(load_events("post-eventgrid.json")[0]))

        assert stripped.reason == (
            "MaxDeliveryAttemptsExceeded (10 attempts, last: TimedOut 408, at 2026-11-22T01:44:10.1011Z)"
        )
        assert stripped.describe().startswith("Microsoft.Maintenance.PostMaintenanceEvent /subscriptions/")

    def test_an_event_without_dead_letter_fields_says_so(self):
        stripped = strip_dead_letter_fields({"id": "1", "eventType": "Other"})

        assert stripped.reason == "(no deadLetterReason)"
        assert stripped.describe() == "Other 1"


class TestParseDeadLetterEvents:
    def test_an_array_gives_every_event(self):
        samples = load_events("pre-eventgrid-camelcase.json") + load_events("post-eventgrid.json")
        events = [dead_lettered(event) for event in samples]

        parsed = parse_dead_letter_events(json.dumps(events).encode())

        assert [p.event["eventType"] for p in parsed] == [
            "Microsoft.Maintenance.PreMaintenanceEvent",
            "Microsoft.Maintenance.PostMaintenanceEvent",
        ]

    def test_a_single_object_is_accepted(self):
        assert len(parse_dead_letter_events(json.dumps(dead_lettered({"id": "1"})))) == 1

    def test_an_empty_array_has_no_events(self):
        assert parse_dead_letter_events("[]") == []

    @pytest.mark.parametrize("content", [b"not json", b"\xff\xfe", b"42", b'[{"id": 1}, "text"]'])
    def test_anything_else_is_refused(self, content):
        with pytest.raises(DeadLetterFormatError):
            parse_dead_letter_events(content)


class TestRedactUrl:
    def test_the_function_key_is_hidden(self):
        url = "https://app.azurewebsites.net/runtime/webhooks/eventgrid?functionName=maintenance_event_intake&code=s3cr3t=="

        assert redact_url(url) == (
            "https://app.azurewebsites.net/runtime/webhooks/eventgrid?functionName=maintenance_event_intake&code=***"
        )

    def test_a_key_quoted_in_an_error_message_is_hidden(self):
        text = "Max retries exceeded with url: /runtime/webhooks/eventgrid?code=abc%3D%3D&functionName=x (Caused by"

        assert redact_url(text) == (
            "Max retries exceeded with url: /runtime/webhooks/eventgrid?code=***&functionName=x (Caused by"
        )

    def test_a_url_without_a_key_is_unchanged(self):
        assert (
            redact_url("http://127.0.0.1:7071/runtime/webhooks/EventGrid")
            == "http://127.0.0.1:7071/runtime/webhooks/EventGrid"
        )


class TestDescribeDelivery:
    def test_an_answer_shows_status_and_body(self):
        assert describe_delivery(DeliveryResult(500, '{"failed":\n ["boom"]}')) == 'HTTP 500 {"failed": ["boom"]}'

    def test_no_answer_shows_the_error_without_the_key(self):
        text = describe_delivery(DeliveryResult(0, "ConnectionError: url: /x?functionName=f&code=k3y"))

        assert text == "no answer: ConnectionError: url: /x?functionName=f&code=***"


# -- the replay loop, against a fake queue -------------------------------------------------


@dataclass
class FakeQueue:
    """The calls replay makes on a QueueClient, over a list; ``fail_sends`` makes sends fail."""

    queue_name: str
    messages: list[SimpleNamespace] = field(default_factory=list)
    fail_sends: bool = False
    made_visible: list[str] = field(default_factory=list)
    _next: int = 0

    def add(self, content: str) -> None:
        self._next += 1
        self.messages.append(
            SimpleNamespace(
                id=f"m{self._next}", content=content, pop_receipt=f"r{self._next}", inserted_on=None, visible=True
            )
        )

    def get_queue_properties(self):
        return SimpleNamespace(approximate_message_count=len(self.messages))

    def peek_messages(self, max_messages):
        return [m for m in self.messages if m.visible][:max_messages]

    def receive_messages(self, max_messages, visibility_timeout):
        batch = [m for m in self.messages if m.visible][:max_messages]
        for message in batch:
            message.visible = False
        return batch

    def send_message(self, content, time_to_live=None):
        if self.fail_sends:
            raise ServiceRequestError("connection refused")
        self.add(content)

    def delete_message(self, message_id, pop_receipt):
        self.messages = [m for m in self.messages if m.id != message_id]

    def update_message(self, message_id, pop_receipt, visibility_timeout):
        for message in self.messages:
            if message.id == message_id and visibility_timeout == 0:
                message.visible = True
                self.made_visible.append(message_id)


def poison_with(*bodies: str) -> FakeQueue:
    poison = FakeQueue("prepost-vm-tasks-poison")
    for body in bodies:
        poison.add(b64(body))
    return poison


class TestReplayPoison:
    def test_each_message_is_sent_back_then_deleted(self):
        poison, target = poison_with("a", "b", "c"), FakeQueue("prepost-vm-tasks")
        seen = []

        summary = replay_poison(poison, target, report=seen.append)

        assert [m.content for m in target.messages] == ["a", "b", "c"]
        assert poison.messages == []
        assert summary.count(MessageOutcome.REPLAYED) == 3 and summary.ok
        assert summary.remaining == 0
        assert [r.item.body for r in seen] == ["a", "b", "c"]

    def test_limit_replays_only_that_many(self):
        poison, target = poison_with("a", "b", "c"), FakeQueue("prepost-vm-tasks")

        summary = replay_poison(poison, target, limit=2)

        assert [m.content for m in target.messages] == ["a", "b"]
        assert len(poison.messages) == 1 and poison.messages[0].visible
        assert summary.remaining == 1

    def test_a_failed_send_keeps_the_message_visible_in_poison_and_stops(self):
        poison, target = poison_with("a", "b", "c"), FakeQueue("prepost-vm-tasks", fail_sends=True)

        summary = replay_poison(poison, target)

        assert len(poison.messages) == 3
        assert all(m.visible for m in poison.messages)  # not hidden until the receive's timeout
        assert [r.outcome for r in summary.results] == [MessageOutcome.FAILED]
        assert "send to prepost-vm-tasks failed" in summary.results[0].detail
        assert not summary.ok

    def test_a_message_poisoned_again_during_the_replay_is_not_taken_twice(self):
        poison, target = poison_with("a"), FakeQueue("prepost-vm-tasks")
        original_send = target.send_message

        def send_and_fail_again(content, time_to_live=None):
            original_send(content, time_to_live)
            poison.add(b64(content))  # the handler failed again and the host poisoned it anew

        target.send_message = send_and_fail_again

        summary = replay_poison(poison, target)

        assert summary.count(MessageOutcome.REPLAYED) == 1
        assert len(poison.messages) == 1

    def test_dry_run_only_peeks(self):
        poison, target = poison_with("a", "b"), FakeQueue("prepost-vm-tasks")

        summary = replay_poison(poison, target, dry_run=True)

        assert [r.outcome for r in summary.results] == [MessageOutcome.WOULD_REPLAY] * 2
        assert target.messages == []
        assert all(m.visible for m in poison.messages) and len(poison.messages) == 2


# -- command line ------------------------------------------------------------------------


class TestCommandLine:
    @pytest.mark.parametrize("queue", ["prepost-plan", "prepost-vm-tasks"])
    def test_service_bus_queues_are_refused_under_the_service_bus_transport(self, queue, capsys):
        code = main(["replay", "poison", queue, "--transport", "servicebus", "--storage", "UseDevelopmentStorage=true"])

        assert code == 2
        assert "is a Service Bus queue" in capsys.readouterr().err

    def test_a_limit_below_one_is_a_usage_error(self, capsys):
        with pytest.raises(SystemExit) as exit_info:
            main(["replay", "poison", "prepost-plan", "--limit", "0"])

        assert exit_info.value.code == 2

    def test_an_unknown_queue_is_a_usage_error(self):
        with pytest.raises(SystemExit):
            main(["replay", "poison", "prepost-nothing"])

    def test_events_need_a_file_or_a_container(self):
        with pytest.raises(SystemExit):
            main(["replay", "events", "--to", "http://localhost:7071"])

    def test_storage_and_account_together_are_refused(self, capsys):
        code = main(["poison", "list", "--storage", "UseDevelopmentStorage=true", "--account", "acct"])

        assert code == 2
        assert "either --storage or --account" in capsys.readouterr().err

    def test_a_dead_letter_file_can_be_shown_without_a_webhook(self, tmp_path, monkeypatch, capsys):
        monkeypatch.setenv("PREPOST_STATE_DIR", str(tmp_path / "state"))
        path = tmp_path / "dead.json"
        path.write_text(json.dumps([dead_lettered(load_events("post-eventgrid.json")[0])]))

        code = main(["replay", "events", "--file", str(path), "--dry-run"])

        out = capsys.readouterr().out
        assert code == 0
        assert "1 dead-lettered event(s)" in out
        assert "MaxDeliveryAttemptsExceeded (10 attempts" in out

    def test_delivering_without_a_webhook_is_a_usage_error(self, tmp_path, monkeypatch, capsys):
        monkeypatch.setenv("PREPOST_STATE_DIR", str(tmp_path / "state"))
        path = tmp_path / "dead.json"
        path.write_text("[]")

        assert main(["replay", "events", "--file", str(path)]) == 2
        assert "no webhook to deliver to" in capsys.readouterr().err
