"""The sample estate behind the process-wide container, for calling functions as the host does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from shared.bootstrap import Container, set_container
from shared.clock import set_clock
from shared.names import QueueName
from shared.settings import Settings
from tests.fakes import FakeIdempotencyStore, FakeTransport
from tests.fakes_azure import FakeEstate


class FakeStorage:
    """The one storage method the handlers use directly: parking a message in its poison queue."""

    def __init__(self) -> None:
        self.parked: list[tuple[QueueName, str | bytes, str]] = []

    def park(self, queue: QueueName, body: str | bytes, reason: str) -> None:
        self.parked.append((queue, body, reason))


class _FrozenClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


@contextmanager
def estate_behind_the_app(settings: Settings) -> Iterator[FakeEstate]:
    """GIVEN the sample run's estate behind the process-wide container, at the pre-event's time.

    ``estate.storage`` records parked messages; ``estate.storage_transport`` is the Storage
    transport (the one Service Bus falls back to), apart from ``estate.transport``;
    ``estate.clock.moment`` is the app's time, for a test to move.
    """
    estate = FakeEstate()
    estate.storage = FakeStorage()
    estate.storage_transport = FakeTransport()
    container = Container(
        settings,
        records=estate.records,
        idempotency=FakeIdempotencyStore(),
        storage=estate.storage,
        storage_transport=estate.storage_transport,
        transport=estate.transport,
        inventory=estate.inventory,
        configurations=estate.configurations,
        compute=estate.compute,
        alerts=estate.alerts,
        arc=estate.arc,
        cancellation=estate.cancellation,
    )
    estate.clock = _FrozenClock(estate.now)
    set_clock(estate.clock)
    set_container(container)
    try:
        yield estate
    finally:
        set_container(None)
        set_clock(None)
