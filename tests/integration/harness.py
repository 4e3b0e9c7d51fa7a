"""The real function app, fed by the in-process runner, against Azurite and the simulator.

:class:`AppHarness` starts a :class:`SimulatorServer` with an estate and a
:class:`FunctionAppRunner` of ``build_app(Transport.STORAGE)`` whose settings come from
:func:`prepost.local.stack.app_settings`, exactly as ``prepost local up`` wires them. Tests
wait on records or simulator state with :func:`prepost.local.runner.wait_for`, never sleep.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from prepost.local.delivery import DeliveryResult, deliver
from prepost.local.host_config import QueuesConfig
from prepost.local.runner import FunctionAppRunner, wait_for
from prepost.simulator import Clock, Estate, SimulatorConfig, SimulatorServer
from shared.adapters.storage_clients import StorageClients
from shared.models.ids import run_key
from shared.models.messages import WorkMessage
from shared.models.run import Phase, PhaseRecord, TaskRecord
from shared.names import QueueName, TableName
from shared.ports.transport import WorkTransport
from shared.settings import StorageConnection

PHASE_TIMEOUT = 45.0


def future_start(minutes: int = 30) -> datetime:
    """A run start ``minutes`` from now, on the minute, as Update Manager schedules them."""
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).replace(second=0, microsecond=0)


RECORD_TABLES = (TableName.RUNS, TableName.TASKS, TableName.MACHINES, TableName.EVENTS)


def empty_record_tables(clients: StorageClients) -> None:
    """Drop and recreate the run records' tables: Azurite does both at once (Azure takes ~40 s)."""
    for table in RECORD_TABLES:
        clients.table_service.delete_table(table.value)
        clients.table_service.create_table(table.value)


def reset_storage(connection_string: str) -> StorageClients:
    """Delete every table and queue of the app (and the poison queues), then create them empty.

    Tests share one Azurite: this gives each runner test the storage of a fresh account.
    """
    from azure.core.exceptions import ResourceNotFoundError

    clients = StorageClients(StorageConnection(connection_string=connection_string))
    for table in TableName:
        clients.table_service.delete_table(table.value)
    for queue in QueueName:
        for name in (queue.value, queue.poison):
            with contextlib.suppress(ResourceNotFoundError):
                clients.queue_service.delete_queue(name)
    clients.ensure_storage(force=True)
    return clients


@dataclass
class SentMessage:
    message: WorkMessage
    delay: timedelta | None


class RecordingTransport(WorkTransport):
    """Passes every message on, and remembers what was sent with which delay."""

    def __init__(self, inner: WorkTransport):
        self.inner = inner
        self.sent: list[SentMessage] = []
        self._lock = threading.Lock()

    def send(self, messages: Sequence[WorkMessage], *, delay: timedelta | None = None) -> None:
        self.inner.send(messages, delay=delay)
        with self._lock:
            self.sent.extend(SentMessage(message, delay) for message in messages)

    def of_kind(self, cls: type) -> list[SentMessage]:
        with self._lock:
            return [item for item in self.sent if type(item.message) is cls]

    def close(self) -> None:
        self.inner.close()


@dataclass
class AppHarness:
    connection_string: str
    estate: Estate
    config: SimulatorConfig | None = None
    clock: Clock | None = None
    """The simulator's clock (default: the system clock); a ManualClock lets a test decide when
    long operations finish."""
    allowed_configurations: list[str] | None = None
    allowed_subscriptions: list[str] | None = None
    extra_settings: Mapping[str, str] = field(default_factory=dict)
    queues: QueuesConfig | None = None
    simulator: SimulatorServer | None = None
    runner: FunctionAppRunner | None = None
    recorder: RecordingTransport | None = None

    def start(self) -> AppHarness:
        from function_app import build_app
        from prepost.local.stack import app_settings
        from shared.settings import Transport

        self.simulator = SimulatorServer(self.estate, self.config, clock=self.clock).start()
        env = app_settings(
            self.connection_string,
            self.simulator.url,
            self.allowed_configurations
            if self.allowed_configurations is not None
            else [c.id for c in self.estate.configurations],
            self.allowed_subscriptions if self.allowed_subscriptions is not None else self.estate.subscription_ids,
        )
        env.update(self.extra_settings)

        def record(inner: WorkTransport) -> WorkTransport:
            self.recorder = RecordingTransport(inner)
            return self.recorder

        self.runner = FunctionAppRunner(
            build_app(Transport.STORAGE), env=env, queues=self.queues, wrap_transport=record
        )
        self.runner.start(webhook_port=0)
        return self

    def stop(self) -> None:
        """Stop the runner, then the simulator; safe to call again."""
        if self.runner is not None:
            self.runner.stop()
        if self.simulator is not None:
            self.simulator.stop()

    # -- shortcuts ------------------------------------------------------------------------

    @property
    def sim(self) -> SimulatorServer:
        assert self.simulator is not None
        return self.simulator

    @property
    def records(self):
        return self.runner.container.records

    @property
    def webhook_url(self) -> str:
        return self.runner.webhook_url

    @property
    def correlation_id(self) -> str:
        return self.estate.run.correlation_id

    @property
    def run_key(self) -> str:
        return run_key(self.correlation_id)

    def deliver(self, *events: Mapping[str, Any]) -> DeliveryResult:
        return deliver(self.webhook_url, list(events))

    def send(self, message: WorkMessage, *, delay: timedelta | None = None) -> None:
        """Put a work message on its queue, as another function of the app would."""
        self.runner.container.transport.send([message], delay=delay)

    def phase(self, phase: Phase, key: str | None = None) -> PhaseRecord | None:
        return self.records.get_phase(key or self.run_key, phase)

    def tasks(self, phase: Phase | None = None, key: str | None = None) -> list[TaskRecord]:
        return self.records.list_tasks(key or self.run_key, phase)

    def wait_phase_final(self, phase: Phase, key: str | None = None, timeout: float = PHASE_TIMEOUT) -> PhaseRecord:
        def final() -> PhaseRecord | None:
            record = self.phase(phase, key)
            return record if record is not None and record.status.is_final else None

        return wait_for(final, timeout=timeout, what=f"{phase.value} phase final")

    def requests_of(self, operation: str) -> list:
        """The simulator's request log entries for one operation (e.g. ``resourcegraph.query``)."""
        return [r for r in self.sim.state.requests() if r.operation == operation]

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = PHASE_TIMEOUT) -> Any:
        return wait_for(condition, timeout=timeout, what=what)

    def quiesce(self, timeout: float = PHASE_TIMEOUT) -> None:
        """Wait until no function is running and the work queues hold nothing visible."""
        storage = self.runner.container.storage

        def idle() -> bool:
            if self.runner.stats.snapshot()["in_flight"]:
                return False
            return all(not list(storage.queue(q).peek_messages(max_messages=1)) for q in QueueName)

        wait_for(idle, timeout=timeout, what="runner idle")
