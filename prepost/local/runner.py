"""An in-process runner of the function app: what ``func start`` does, on one machine, offline.

It discovers the functions the app registers (``app.get_functions()``), feeds each queue
trigger from a real (Azurite) Storage queue the way the Functions host does — batches, base64
bodies, dequeue counts, ``visibilityTimeout`` after a failure, the ``-poison`` queue after
``maxDequeueCount`` — and serves the Event Grid local webhook path
(``/runtime/webhooks/EventGrid?functionName=...``) so the same ``send-event`` works against
this runner and against ``func start``.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import azure.functions as func
from azure.functions.queue import QueueMessage

from prepost.local.host_config import QueuesConfig, load_queues_config

log = logging.getLogger(__name__)

MIN_POLL = timedelta(milliseconds=50)
LEASE = timedelta(minutes=10)


class RunnerError(Exception):
    """The app registers something the runner cannot feed, or a delivery was refused."""


@dataclass
class RegisteredFunction:
    name: str
    trigger_type: str
    binding: dict[str, Any]
    call: Callable[..., Any]


@dataclass
class RunnerStats:
    invocations: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    poisoned: Counter = field(default_factory=Counter)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "invocations": dict(self.invocations),
                "failures": dict(self.failures),
                "poisoned": dict(self.poisoned),
                "in_flight": self.in_flight,
            }


def discover(app: func.FunctionApp) -> list[RegisteredFunction]:
    """The app's functions with their trigger bindings (call once per app object)."""
    found = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        found.append(
            RegisteredFunction(
                name=function.get_function_name(),
                trigger_type=trigger.get_dict_repr()["type"],
                binding=trigger.get_dict_repr(),
                call=function.get_user_function(),
            )
        )
    return found


class DeliveredEventGridEvent(func.EventGridEvent):
    """The trigger input, carrying the event as it was delivered (``delivered_json``).

    Azure's Python worker hands the function only its own parse of the event: keys repeated in
    the text are merged by then, and an event time it cannot parse fails the invocation before
    the function runs (Event Grid retries it). This runner has the delivered JSON, so it hands
    that on as well, and the intake (``functions/intake.py``) checks the event as sent.
    """

    def __init__(self, delivered_json: Any, **fields: Any):
        super().__init__(**fields)
        self.delivered_json = delivered_json


def event_grid_event(raw: Any) -> DeliveredEventGridEvent:
    """Build the trigger input as the host does, from either envelope schema; never refuses ``raw``."""
    from shared.models.events import Envelope, parse_time

    envelope = Envelope.from_json(raw) if isinstance(raw, Mapping) else None
    event_time = None
    if envelope and envelope.time:
        try:
            event_time = parse_time(envelope.time)
        except ValueError:
            event_time = None  # the worker would fail here; the intake sees delivered_json instead
    version = (raw.get("dataVersion") or raw.get("specversion") or "") if isinstance(raw, Mapping) else ""
    return DeliveredEventGridEvent(
        raw,
        id=envelope.id if envelope else "",
        data=envelope.data if envelope else None,
        topic=envelope.source if envelope else "",
        subject=envelope.subject if envelope else "",
        event_type=envelope.event_type if envelope else "",
        event_time=event_time,
        data_version=str(version),
    )


class QueuePump:
    """Feeds one queue-triggered function from its Storage queue, as the host would."""

    def __init__(
        self,
        function: RegisteredFunction,
        service,
        config: QueuesConfig,
        stats: RunnerStats,
        stop: threading.Event,
        *,
        lease: timedelta = LEASE,
    ):
        self.function = function
        self.queue_name = function.binding["queueName"]
        self.config = config
        # How long a received message stays invisible while its function runs; a message of an
        # instance that died reappears after it (the host's lease, 10 minutes).
        self.lease = lease
        self.stats = stats
        self._stop = stop
        # Raw message text, decoded per message in _invoke: with a decode policy on the client,
        # one message that is not base64 fails the whole receive, after every message of the
        # batch was already leased.
        self.queue = service.get_queue_client(self.queue_name)
        self.poison = service.get_queue_client(f"{self.queue_name}-poison")
        self._pool = ThreadPoolExecutor(max_workers=config.batch_size, thread_name_prefix=f"fn-{function.name}")
        self._thread = threading.Thread(target=self._loop, name=f"pump-{self.queue_name}", daemon=True)

    def start(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        for client in (self.queue, self.poison):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=False)

    def _loop(self) -> None:
        delay = MIN_POLL
        while not self._stop.is_set():
            try:
                handled = self._poll_once()
            except Exception:  # a storage hiccup must not kill the pump; the host keeps polling too
                log.exception("polling %s failed", self.queue_name)
                handled = 0
            # Back off while the queue is empty, like the host, up to maxPollingInterval.
            delay = MIN_POLL if handled else min(delay * 2, self.config.max_polling_interval)
            self._stop.wait(0 if handled else delay.total_seconds())

    def _poll_once(self) -> int:
        messages = list(
            self.queue.receive_messages(
                max_messages=self.config.batch_size, visibility_timeout=max(1, math.ceil(self.lease.total_seconds()))
            )
        )
        futures = [self._pool.submit(self._invoke, message) for message in messages]
        for future in futures:
            future.result()
        return len(messages)

    def _invoke(self, message) -> None:
        try:
            body = self._decode(message.content)
        except ValueError as error:
            self._poison_undecodable(message, error)
            return
        trigger_input = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        name = self.function.name
        with self.stats.lock:
            self.stats.in_flight += 1
            self.stats.invocations[name] += 1
        try:
            self.function.call(trigger_input)
        except Exception as error:
            with self.stats.lock:
                self.stats.failures[name] += 1
            log.warning("%s failed on delivery %s: %s", name, message.dequeue_count, error, exc_info=True)
            self._after_failure(message)
        else:
            self.queue.delete_message(message.id, message.pop_receipt)
        finally:
            with self.stats.lock:
                self.stats.in_flight -= 1

    def _decode(self, content: str | bytes | None) -> bytes:
        raw = content.encode() if isinstance(content, str) else (content or b"")
        if self.config.message_encoding.lower() == "base64":
            return base64.b64decode(raw, validate=True)
        return raw

    def _poison_undecodable(self, message, error: Exception) -> None:
        # As the host's queue extension does: no delivery can decode it, so it goes to
        # <queue>-poison at once, as it was sent, without invoking the function.
        log.error(
            "%s: message %s is not %s-encoded (%s); moved to %s-poison",
            self.function.name,
            message.id,
            self.config.message_encoding,
            error,
            self.queue_name,
        )
        self.poison.send_message(message.content, time_to_live=-1)
        self.queue.delete_message(message.id, message.pop_receipt)
        with self.stats.lock:
            self.stats.poisoned[self.function.name] += 1

    def _after_failure(self, message) -> None:
        if message.dequeue_count >= self.config.max_dequeue_count:
            # As the host does: copy to <queue>-poison, then delete the original.
            self.poison.send_message(message.content, time_to_live=-1)
            self.queue.delete_message(message.id, message.pop_receipt)
            with self.stats.lock:
                self.stats.poisoned[self.function.name] += 1
        else:
            self.queue.update_message(
                message.id, message.pop_receipt, visibility_timeout=int(self.config.visibility_timeout.total_seconds())
            )


class FunctionAppRunner:
    """Runs a function app in this process against real Storage queues.

    ``env`` is what ``local.settings.json`` would give the host: it is applied to the process
    environment and a fresh container is installed, so the functions see the same settings as
    under ``func start``.
    """

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        env: Mapping[str, str],
        queues: QueuesConfig | None = None,
        wrap_transport: Callable[[Any], Any] | None = None,
        lease: timedelta = LEASE,
        queue_client_options: Mapping[str, Any] | None = None,
    ):
        self.functions = discover(app)
        self.lease = lease
        # Keyword arguments for the pumps' QueueServiceClient (e.g. a retry policy): the host's
        # queue listener has storage retries of its own, apart from the app's clients.
        self.queue_client_options = dict(queue_client_options or {})
        self._wrap_transport = wrap_transport
        self.env = dict(env)
        self.queues_config = queues or load_queues_config()
        self.stats = RunnerStats()
        self._stop = threading.Event()
        self._pumps: list[QueuePump] = []
        self._webhook = None
        # Timers are not fired here (the daily readiness check runs as `prepost preflight`).
        unsupported = [
            f for f in self.functions if f.trigger_type not in ("eventGridTrigger", "queueTrigger", "timerTrigger")
        ]
        if unsupported:
            names = ", ".join(f"{f.name} ({f.trigger_type})" for f in unsupported)
            raise RunnerError(
                f"the local runner feeds Storage queues and Event Grid only; set PREPOST_TRANSPORT=storage "
                f"(found {names})"
            )

    @property
    def event_functions(self) -> dict[str, RegisteredFunction]:
        return {f.name: f for f in self.functions if f.trigger_type == "eventGridTrigger"}

    def start(self, *, webhook_port: int | None = None, webhook_host: str = "127.0.0.1") -> FunctionAppRunner:
        import os

        from azure.storage.queue import QueueServiceClient

        from shared.bootstrap import Container, set_container
        from shared.settings import Settings

        os.environ.update(self.env)
        settings = Settings.from_environ(self.env)
        container = Container(settings)
        container.storage.ensure_storage()
        if self._wrap_transport is not None:
            # For the demo's at-least-once drill: every message the app sends is sent twice.
            container = Container(
                settings, storage=container.storage, transport=self._wrap_transport(container.transport)
            )
        set_container(container)
        self.container = container

        for function in self.functions:
            if function.trigger_type != "queueTrigger":
                continue
            connection = self.env[function.binding["connection"]]
            service = QueueServiceClient.from_connection_string(connection, **self.queue_client_options)
            pump = QueuePump(function, service, self.queues_config, self.stats, self._stop, lease=self.lease)
            pump.start()
            self._pumps.append(pump)
        if webhook_port is not None:
            from prepost.local.webhook import EventGridWebhook

            self._webhook = EventGridWebhook(self, host=webhook_host, port=webhook_port)
            self._webhook.start()
        return self

    @property
    def webhook_url(self) -> str | None:
        return self._webhook.url if self._webhook else None

    def deliver(self, function_name: str, events: Sequence[Any]) -> list[str | None]:
        """Invoke an Event Grid function once per delivered JSON value, as the host does; errors per event.

        Every element of the delivered array is handed on, objects or not: the intake records
        each one, so one bad element does not drop the others unrecorded.
        """
        function = self.event_functions.get(function_name)
        if function is None:
            raise RunnerError(f"no Event Grid function named {function_name!r}; have {sorted(self.event_functions)}")
        errors: list[str | None] = []
        for raw in events:
            with self.stats.lock:
                self.stats.invocations[function_name] += 1
            try:
                function.call(event_grid_event(raw))
                errors.append(None)
            except Exception as error:  # reported to the sender, who retries like Event Grid
                with self.stats.lock:
                    self.stats.failures[function_name] += 1
                log.warning("%s failed: %s", function_name, error, exc_info=True)
                errors.append(f"{type(error).__name__}: {error}")
        return errors

    def record_refused_delivery(self, reason: str, body: bytes) -> None:
        """Record a delivery refused before any function ran (not JSON, not events, too large) as
        rejected, with the start of its body, so the delivery log misses nothing."""
        from shared.clock import utcnow
        from shared.ports.records import DeliveryOutcome, DeliveryRecord
        from shared.usecases.intake import PAYLOAD_LIMIT

        text = body[: PAYLOAD_LIMIT * 4].decode("utf-8", errors="replace")
        if len(text) > PAYLOAD_LIMIT:
            text = text[:PAYLOAD_LIMIT] + f"...(cut from {len(body):,} bytes)"
        log.warning("delivery refused by the webhook: %s", reason)
        self.container.records.record_delivery(
            DeliveryRecord(
                received_at=utcnow(),
                event_id="",
                event_type="",
                outcome=DeliveryOutcome.REJECTED,
                reason=f"not delivered to the function: {reason}",
                payload=text,
            )
        )

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._webhook:
            self._webhook.stop()
        for pump in self._pumps:
            pump.join(timeout)
        from shared.bootstrap import set_container

        set_container(None)

    def __enter__(self) -> FunctionAppRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy, or raise TimeoutError at the deadline."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        threading.Event().wait(interval)
