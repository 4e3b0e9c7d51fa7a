"""The local runner feeds queue triggers from Azurite the way the Functions host does.

A tiny ``func.FunctionApp`` built here (a queue trigger that records what it gets, and can be
told to raise) shows the host behaviour the pipeline relies on: base64 bodies, dequeue counts,
retries after ``visibilityTimeout``, ``<queue>-poison`` after ``maxDequeueCount`` with the
original body. A ``host.json`` written per test sets the numbers, so retries take no time.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64EncodePolicy

from prepost.local.host_config import REPO_ROOT, load_queues_config
from prepost.local.runner import FunctionAppRunner, wait_for
from prepost.local.stack import app_settings
from shared.adapters.parking import unpark
from shared.models.messages import PlanPhase, TaskOutcome
from shared.names import STORAGE_CONNECTION, STORAGE_MAX_DEQUEUE_COUNT, QueueName

pytestmark = pytest.mark.integration

NO_ARM = "http://127.0.0.1:9"  # the functions under test here never call Azure
FUNCTION = "recorder"


def write_host_json(directory: Path, **queues) -> Path:
    path = directory / "host.json"
    path.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))
    return path


def settings(connection: str) -> dict[str, str]:
    return app_settings(connection, NO_ARM, ["*"], ["*"])


class Recorder:
    """A one-function app: records every delivery, raises while ``failing`` is set."""

    def __init__(self, queue_name: str, *, failing: bool):
        self.queue_name = queue_name
        self.failing = failing
        self.deliveries: list[tuple[bytes, int]] = []
        self._lock = threading.Lock()
        self.app = func.FunctionApp()

        @self.app.function_name(FUNCTION)
        @self.app.queue_trigger(arg_name="msg", queue_name=queue_name, connection=STORAGE_CONNECTION)
        def recorder(msg: func.QueueMessage) -> None:
            with self._lock:
                self.deliveries.append((msg.get_body(), msg.dequeue_count))
            if self.failing:
                raise RuntimeError(f"failing on purpose (delivery {msg.dequeue_count})")


@pytest.fixture
def queue_name(unique_suffix) -> str:
    return f"runner-test-{unique_suffix}"


@pytest.fixture
def queues(storage_connection_string, queue_name) -> Iterator[tuple[QueueClient, QueueClient]]:
    """The test's queue (base64, as the host expects) and its poison queue (raw text)."""
    service = QueueServiceClient.from_connection_string(storage_connection_string)
    queue = service.get_queue_client(queue_name, message_encode_policy=TextBase64EncodePolicy())
    poison = service.get_queue_client(f"{queue_name}-poison")
    yield queue, poison
    for client in (queue, poison):
        with contextlib.suppress(ResourceNotFoundError):
            client.delete_queue()


@pytest.fixture
def run_app(storage_connection_string) -> Iterator:
    runners: list[FunctionAppRunner] = []

    def run(app: func.FunctionApp, host_json: Path | None = None) -> FunctionAppRunner:
        queues = load_queues_config(host_json) if host_json else None
        runner = FunctionAppRunner(app, env=settings(storage_connection_string), queues=queues)
        runners.append(runner)
        return runner.start()

    yield run
    for runner in runners:
        runner.stop()


def poison_bodies(poison: QueueClient) -> list[str]:
    return [m.content for m in poison.peek_messages(max_messages=32)]


def test_the_repository_host_json_is_what_the_runner_reads():
    config = load_queues_config()
    assert config == load_queues_config(REPO_ROOT / "host.json")
    assert config.max_dequeue_count == STORAGE_MAX_DEQUEUE_COUNT
    assert config.message_encoding == "base64"
    assert config.batch_size == 8


def test_a_failing_message_is_retried_then_poisoned_with_its_original_body(tmp_path, queue_name, queues, run_app):
    queue, poison = queues
    recorder = Recorder(queue_name, failing=True)
    host_json = write_host_json(
        tmp_path, maxDequeueCount=3, visibilityTimeout="00:00:00", maxPollingInterval="00:00:00.200", batchSize=4
    )
    runner = run_app(recorder.app, host_json)
    body = json.dumps({"kind": "anything", "text": "grüße"})
    queue.send_message(body)

    wait_for(lambda: poison_bodies(poison), timeout=30, what="the message in the poison queue")

    # The host moves the message as it was sent: the same base64 text.
    assert poison_bodies(poison) == [base64.b64encode(body.encode()).decode()]
    assert [count for _, count in recorder.deliveries] == [1, 2, 3]
    assert all(delivered == body.encode() for delivered, _ in recorder.deliveries)
    assert list(queue.peek_messages()) == []
    stats = runner.stats.snapshot()
    assert stats["invocations"][FUNCTION] == 3
    assert stats["failures"][FUNCTION] == 3
    assert stats["poisoned"][FUNCTION] == 1


def test_a_failure_waits_for_the_visibility_timeout(tmp_path, queue_name, queues, run_app):
    """After a failure the message stays invisible for ``visibilityTimeout``, then comes back."""
    queue, _ = queues
    recorder = Recorder(queue_name, failing=True)
    host_json = write_host_json(
        tmp_path, maxDequeueCount=2, visibilityTimeout="00:00:30", maxPollingInterval="00:00:00.200"
    )
    run_app(recorder.app, host_json)
    queue.send_message("once")

    wait_for(lambda: recorder.deliveries, timeout=20, what="the first delivery")
    # Invisible now: a peek sees nothing, although the message was not deleted.
    wait_for(lambda: not list(queue.peek_messages()), timeout=10, what="the message hidden after its failure")
    props = queue.get_queue_properties()
    assert props.approximate_message_count == 1
    assert [count for _, count in recorder.deliveries] == [1]


def test_base64_bodies_reach_the_function_decoded(tmp_path, queue_name, queues, run_app):
    queue, _ = queues
    recorder = Recorder(queue_name, failing=False)
    run_app(recorder.app, write_host_json(tmp_path, maxPollingInterval="00:00:00.200"))
    bodies = [json.dumps({"n": n, "text": "Ærø ✓"}) for n in range(5)]
    for body in bodies:
        queue.send_message(body)

    wait_for(lambda: len(recorder.deliveries) == len(bodies), timeout=20, what="every message delivered")

    assert sorted(delivered for delivered, _ in recorder.deliveries) == sorted(b.encode() for b in bodies)
    assert all(count == 1 for _, count in recorder.deliveries)
    wait_for(lambda: not list(queue.peek_messages()), timeout=10, what="messages deleted after success")


def test_a_message_that_is_not_base64_goes_to_poison_at_once(
    tmp_path, queue_name, queues, run_app, storage_connection_string
):
    """As the host's queue extension does: retrying cannot decode it, and it must not hold up
    the messages received in the same batch."""
    queue, poison = queues
    recorder = Recorder(queue_name, failing=False)
    raw_queue = QueueClient.from_connection_string(storage_connection_string, queue_name)
    raw_queue.create_queue()
    raw_queue.send_message("this is not base64 {")
    queue.send_message("a good message")
    run_app(recorder.app, write_host_json(tmp_path, batchSize=4, maxPollingInterval="00:00:00.200"))

    wait_for(lambda: poison_bodies(poison), timeout=20, what="the undecodable message in the poison queue")
    wait_for(lambda: recorder.deliveries, timeout=20, what="the good message delivered")

    assert poison_bodies(poison) == ["this is not base64 {"]
    assert recorder.deliveries == [(b"a good message", 1)]
    wait_for(lambda: not list(queue.peek_messages()), timeout=10, what="the queue emptied")


@pytest.mark.parametrize(
    ("queue", "body", "reason"),
    [
        (QueueName.PLAN, "definitely not json", "not JSON"),
        (QueueName.PLAN, TaskOutcome(run_key="r1").to_json(), "does not belong on prepost-plan"),
        (QueueName.OUTCOMES, json.dumps({"kind": "outcome", "v": 99, "run_key": "r1"}), "schema version"),
        (QueueName.VM_TASKS, PlanPhase(run_key="r1").to_json(), "does not belong on prepost-vm-tasks"),
    ],
    ids=["not-json", "wrong-queue", "newer-schema", "plan-on-vm-tasks"],
)
def test_an_undecodable_work_message_is_parked_on_its_first_delivery(
    clean_storage, storage_connection_string, queue, body, reason
):
    from function_app import build_app
    from shared.settings import Transport

    runner = FunctionAppRunner(build_app(Transport.STORAGE), env=settings(storage_connection_string))
    runner.start()
    try:
        clean_storage.queue(queue).send_message(body)
        poison = clean_storage.queue(queue.poison)
        parked = wait_for(
            lambda: [m.content for m in poison.peek_messages()],
            timeout=20,
            what=f"the message parked in {queue.poison}",
        )
        stats = runner.stats.snapshot()
    finally:
        runner.stop()

    original, note = unpark(parked[0])
    assert len(parked) == 1
    assert original == body
    assert note is not None and note["queue"] == queue.value and reason in note["reason"]
    # Parked by the function on its first delivery, not poisoned by the host after five.
    assert sum(stats["invocations"].values()) == 1
    assert sum(stats["failures"].values()) == 0
    assert sum(stats["poisoned"].values()) == 0
    assert list(clean_storage.queue(queue).peek_messages()) == []
