"""Operator replay against Azurite, through the command line as an operator types it.

Poison: the app's own ``prepost-vm-tasks`` queue and its ``-poison`` queue, emptied before and
after every test (the queues are shared by the session). Dead-lettered events: a container of
its own per test, and the Event Grid local webhook (:class:`EventGridWebhook`) in front of a
stub runner that records what it was given.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from azure.storage.blob import BlobServiceClient

from prepost.cli import main
from prepost.local.webhook import EventGridWebhook
from prepost.replay import MessageOutcome, poison_queue_clients, replay_poison
from shared.adapters.storage_clients import StorageClients
from shared.models.messages import TaskMessage, TaskOutcome
from shared.models.run import Action, Phase, TaskStatus
from shared.names import EVENTGRID_KEY_ENV, INTAKE_FUNCTION, QueueName
from tests.conftest import load_events

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sample_clock")]

QUEUE = QueueName.VM_TASKS
VM = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute"
    "/virtualMachines/vm-1"
)


@pytest.fixture(autouse=True)
def no_local_stack(tmp_path, monkeypatch):
    """The commands must use what the test passes, never a running stack or the environment."""
    monkeypatch.setenv("PREPOST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.delenv("PREPOST_TRANSPORT", raising=False)


# -- poison queues -------------------------------------------------------------------------


@pytest.fixture
def queues(storage) -> Iterator[StorageClients]:
    storage.ensure_storage(force=True)  # other modules delete and recreate the app's queues
    for name in (QUEUE.value, QUEUE.poison):
        storage.queue(name).clear_messages()
    yield storage
    for name in (QUEUE.value, QUEUE.poison):
        storage.queue(name).clear_messages()


def task_body(unique_suffix: str, target: str = VM) -> str:
    return TaskMessage(run_key=f"run-{unique_suffix}", phase=Phase.PRE, action=Action.START_VM, target=target).to_json()


def poison_two(storage: StorageClients, unique_suffix: str) -> tuple[str, str]:
    """One message parked by prepost, one poisoned by the host (its original body, base64)."""
    parked = task_body(unique_suffix, VM + "-parked")
    host_poisoned = task_body(unique_suffix, VM + "-failed")
    storage.park(QUEUE, parked, "InvalidMessage: a test reason")
    storage.queue(QUEUE.poison).send_message(host_poisoned)  # what the host does, base64 included
    return parked, host_poisoned


def bodies_in(storage: StorageClients, name: str) -> list[str]:
    return [m.content for m in storage.queue(name).peek_messages(max_messages=32)]


class TestReplayPoison:
    def test_parked_and_host_poisoned_messages_go_back_to_the_queue(
        self, queues, storage_connection_string, unique_suffix, capsys
    ):
        parked, host_poisoned = poison_two(queues, unique_suffix)

        code = main(["replay", "poison", QUEUE.value, "--storage", storage_connection_string])

        out = capsys.readouterr().out
        assert code == 0
        assert sorted(bodies_in(queues, QUEUE.value)) == sorted([parked, host_poisoned])
        assert bodies_in(queues, QUEUE.poison) == []
        assert "parked by prepost: InvalidMessage: a test reason" in out
        assert "poisoned by the Functions host after 5 failed deliveries" in out
        assert "2 replayed, 0 failed" in out

    def test_the_replayed_body_is_base64_as_the_host_expects(self, queues, storage_connection_string, unique_suffix):
        parked, _ = poison_two(queues, unique_suffix)

        main(["replay", "poison", QUEUE.value, "--storage", storage_connection_string, "--limit", "1"])

        raw = queues.queue_service.get_queue_client(QUEUE.value).peek_messages(max_messages=1)[0].content
        assert base64.b64decode(raw).decode() == parked

    def test_limit_leaves_the_rest_in_poison(self, queues, storage_connection_string, unique_suffix):
        poison_two(queues, unique_suffix)

        code = main(["replay", "poison", QUEUE.value, "--storage", storage_connection_string, "--limit", "1"])

        assert code == 0
        assert len(bodies_in(queues, QUEUE.value)) == 1
        assert len(bodies_in(queues, QUEUE.poison)) == 1

    def test_dry_run_changes_nothing(self, queues, storage_connection_string, unique_suffix, capsys):
        poison_two(queues, unique_suffix)
        before = bodies_in(queues, QUEUE.poison)

        code = main(["replay", "poison", QUEUE.value, "--storage", storage_connection_string, "--dry-run"])

        out = capsys.readouterr().out
        assert code == 0
        assert bodies_in(queues, QUEUE.poison) == before
        assert bodies_in(queues, QUEUE.value) == []
        assert out.count("would replay") == 3  # the heading and both messages
        assert f"task run-{unique_suffix} pre start-vm vm-1-parked" in out

    def test_a_failed_send_leaves_the_message_in_poison(self, queues, unique_suffix):
        poison_two(queues, unique_suffix)
        poison, _ = poison_queue_clients(queues, QUEUE)
        missing = queues.queue(f"prepost-missing-{unique_suffix}")  # no such queue: the send fails

        summary = replay_poison(poison, missing)

        assert [r.outcome for r in summary.results] == [MessageOutcome.FAILED]
        assert len(bodies_in(queues, QUEUE.poison)) == 2  # both, and visible again at once

    def test_poison_list_counts_and_tallies_reasons(self, queues, storage_connection_string, unique_suffix, capsys):
        poison_two(queues, unique_suffix)
        queues.queue(QUEUE.poison).send_message(
            TaskOutcome(run_key=f"run-{unique_suffix}", target=VM, status=TaskStatus.FAILED).to_json()
        )

        code = main(["poison", "list", QUEUE.value, "--storage", storage_connection_string, "--json"])

        [summary] = json.loads(capsys.readouterr().out)
        assert code == 0
        assert summary["poisonQueue"] == QUEUE.poison and summary["count"] == 3
        assert summary["reasons"] == {
            "parked by prepost: InvalidMessage: a test reason": 1,
            "poisoned by the Functions host after 5 failed deliveries (the exception is in the function's logs)": 2,
        }

    def test_poison_list_shows_every_queue(self, queues, storage_connection_string, capsys):
        assert main(["poison", "list", "--storage", storage_connection_string]) == 0

        out = capsys.readouterr().out
        for queue in QueueName:
            assert queue.poison in out


# -- dead-lettered events ------------------------------------------------------------------


@dataclass
class StubRunner:
    """What EventGridWebhook needs from a runner: the intake's name, and a deliver that records."""

    fail: bool = False
    delivered: list[list[dict]] = field(default_factory=list)

    @property
    def event_functions(self) -> dict[str, object]:
        return {INTAKE_FUNCTION: object()}

    def deliver(self, function_name: str, events: list[dict]) -> list[str | None]:
        if self.fail:
            return ["RuntimeError: storage is down" for _ in events]
        self.delivered.append(copy.deepcopy(events))
        return [None for _ in events]


@pytest.fixture
def webhook() -> Iterator[tuple[EventGridWebhook, StubRunner]]:
    runner = StubRunner()
    server = EventGridWebhook(runner)
    server.start()
    yield server, runner
    server.stop()


@pytest.fixture
def container(storage_connection_string, unique_suffix):
    service = BlobServiceClient.from_connection_string(storage_connection_string)
    client = service.create_container(f"deadletter-{unique_suffix}")
    yield client
    client.delete_container()
    service.close()


def dead_lettered(name: str, *, cloud_events: bool = False) -> tuple[dict, dict]:
    """(the original event, the event as Event Grid dead-letters it)."""
    original = load_events(name)[0]
    facts = {
        "deadLetterReason": "MaxDeliveryAttemptsExceeded",
        "deliveryAttempts": 6,
        "lastDeliveryOutcome": "GenericError",
        "lastHttpStatusCode": 500,
        "publishTime": "2026-11-22T01:25:00.40Z",
        "lastDeliveryAttemptTime": "2026-11-22T01:45:01.10Z",
    }
    if cloud_events:
        facts = {key.lower(): value for key, value in facts.items()}
    return original, {**copy.deepcopy(original), **facts}


def blob_name(subscription: str = "PREPOST-INTAKE") -> str:
    # Event Grid's layout: the subscription's name in upper case, then a date not zero-padded.
    return f"{subscription}/2026/11/22/1/{uuid.uuid4()}.json"


def replay_container(container, storage_connection_string: str, to: str, *options: str) -> int:
    """``prepost replay events --container ... --storage ... --to ...`` with extra options."""
    arguments = ["replay", "events", "--container", container.container_name, "--storage", storage_connection_string]
    return main([*arguments, "--to", to, *options])


def names_in(container) -> list[str]:
    return sorted(blob.name for blob in container.list_blobs())


class TestReplayEvents:
    def test_a_blob_is_delivered_without_dead_letter_fields_and_moved(
        self, container, webhook, storage_connection_string, capsys
    ):
        server, runner = webhook
        pre, pre_dead = dead_lettered("pre-eventgrid-camelcase.json")
        post, post_dead = dead_lettered("post-eventgrid.json")
        name = blob_name()
        container.upload_blob(name, json.dumps([pre_dead, post_dead]))

        code = replay_container(container, storage_connection_string, server.url)

        out = capsys.readouterr().out
        assert code == 0
        assert runner.delivered == [[pre, post]]
        assert names_in(container) == [f"replayed/{name}"]
        moved = container.get_blob_client(f"replayed/{name}")
        assert json.loads(moved.download_blob().readall()) == [pre_dead, post_dead]  # kept as Event Grid wrote it
        assert moved.get_blob_properties().metadata["prepost_replayed_to"] == server.url
        assert "MaxDeliveryAttemptsExceeded (6 attempts, last: GenericError 500" in out
        assert "1 replayed" in out

    def test_cloudevents_blobs_are_stripped_too(self, container, webhook, storage_connection_string):
        server, runner = webhook
        original, dead = dead_lettered("pre-cloudevents.json", cloud_events=True)
        container.upload_blob(blob_name(), json.dumps([dead]))

        assert replay_container(container, storage_connection_string, server.url) == 0

        assert runner.delivered == [[original]]

    def test_replayed_blobs_are_not_replayed_again(self, container, webhook, storage_connection_string):
        server, runner = webhook
        container.upload_blob(blob_name(), json.dumps([dead_lettered("post-eventgrid.json")[1]]))
        assert replay_container(container, storage_connection_string, server.url) == 0
        assert replay_container(container, storage_connection_string, server.url) == 0

        assert len(runner.delivered) == 1

    def test_a_failed_delivery_leaves_the_blob_where_it_was(
        self, container, webhook, storage_connection_string, capsys
    ):
        server, runner = webhook
        runner.fail = True
        name = blob_name()
        container.upload_blob(name, json.dumps([dead_lettered("post-eventgrid.json")[1]]))

        code = replay_container(container, storage_connection_string, server.url)

        out = capsys.readouterr().out
        assert code == 1
        assert names_in(container) == [name]
        assert "delivery failed" in out and "HTTP 500" in out

    def test_an_unreachable_webhook_leaves_the_blob_too(
        self, container, storage_connection_string, capsys, monkeypatch
    ):
        name = blob_name()
        container.upload_blob(name, json.dumps([dead_lettered("post-eventgrid.json")[1]]))
        monkeypatch.setenv(EVENTGRID_KEY_ENV, "k3y")

        code = replay_container(container, storage_connection_string, "http://127.0.0.1:9")

        out = capsys.readouterr().out
        assert code == 1
        assert names_in(container) == [name]
        assert "no answer: ConnectionError" in out
        assert "k3y" not in out

    def test_an_unreadable_blob_is_reported_and_left_while_the_others_go(
        self, container, webhook, storage_connection_string, capsys
    ):
        server, runner = webhook
        broken, good = blob_name("A"), blob_name("B")
        container.upload_blob(broken, b"not json")
        container.upload_blob(good, json.dumps([dead_lettered("post-eventgrid.json")[1]]))

        code = replay_container(container, storage_connection_string, server.url)

        assert code == 1
        assert names_in(container) == [broken, f"replayed/{good}"]
        assert len(runner.delivered) == 1
        assert "unreadable" in capsys.readouterr().out

    def test_prefix_limits_the_blobs(self, container, webhook, storage_connection_string):
        server, runner = webhook
        mine, other = blob_name("PREPOST-INTAKE"), blob_name("OTHER-SUBSCRIPTION")
        for name in (mine, other):
            container.upload_blob(name, json.dumps([dead_lettered("post-eventgrid.json")[1]]))

        code = replay_container(container, storage_connection_string, server.url, "--prefix", "PREPOST-INTAKE/")
        assert code == 0

        assert names_in(container) == [other, f"replayed/{mine}"]

    def test_dry_run_changes_nothing(self, container, webhook, storage_connection_string, capsys):
        server, runner = webhook
        name = blob_name()
        container.upload_blob(name, json.dumps([dead_lettered("post-eventgrid.json")[1]]))

        code = replay_container(container, storage_connection_string, server.url, "--dry-run")

        assert code == 0
        assert runner.delivered == []
        assert names_in(container) == [name]
        assert "would replay" in capsys.readouterr().out

    def test_a_saved_blob_file_is_delivered_and_left_as_it_is(self, tmp_path, webhook):
        server, runner = webhook
        original, dead = dead_lettered("pre-eventgrid-pascalcase.json")
        path = tmp_path / "dead.json"
        path.write_text(json.dumps([dead]))

        assert main(["replay", "events", "--file", str(path), "--to", server.url]) == 0

        assert runner.delivered == [[original]]
        assert json.loads(path.read_text()) == [dead]
