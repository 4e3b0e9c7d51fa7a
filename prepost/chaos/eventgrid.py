"""Event delivery with Event Grid's semantics, on the drill's scaled clock.

Each event is POSTed to the webhook of a live instance picked at random, as a load balancer
would. A non-2xx answer or no answer is retried on Event Grid's schedule (10 s, 30 s, 1 min,
5 min, 10 min, 30 min, then hourly: virtual time, so scaled down) until a 2xx or the event's
time to live runs out (docs/reference.md section 5).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prepost.chaos.timescale import ScaledClock

RETRY_SCHEDULE = tuple(
    timedelta(seconds=s) for s in (10, 30, 60, 300, 600, 1800, 3600)
)  # then hourly, as Event Grid does
EVENT_TTL = timedelta(minutes=60)
REQUEST_TIMEOUT = 10.0
"""Real seconds to wait for an answer (Event Grid waits 30 s; the intake answers in milliseconds)."""


@dataclass
class Attempt:
    time: datetime
    """Virtual time of the attempt."""
    status: int
    """HTTP status; 0 when no instance answered."""
    instance: str
    detail: str = ""


@dataclass
class Delivery:
    """One event on its way: every attempt, and how it ended."""

    label: str
    phase: str
    due: datetime
    event: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: str = "pending"
    """``pending``, ``delivered`` (2xx) or ``expired`` (TTL ran out)."""

    @property
    def delivered_at(self) -> datetime | None:
        return next((a.time for a in self.attempts if 200 <= a.status < 300), None)


class EventGridSender:
    """Delivers events at virtual times, each in a thread of its own."""

    def __init__(
        self,
        clock: ScaledClock,
        live_urls: Callable[[], list[str]],
        *,
        seed: int,
        stop: threading.Event,
        deliver: Callable[[str, list[dict[str, Any]]], tuple[int, str]] | None = None,
    ) -> None:
        self.clock = clock
        self.live_urls = live_urls
        self.stop = stop
        self._random = random.Random(f"eventgrid-{seed}")
        self._random_lock = threading.Lock()
        self._deliver = deliver or _post
        self._threads: list[threading.Thread] = []

    def send_at(self, due: datetime, event: dict[str, Any], *, phase: str, label: str) -> Delivery:
        delivery = Delivery(label=label, phase=phase, due=due, event=event)
        thread = threading.Thread(target=self._run, args=(delivery,), name=f"eventgrid-{label}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return delivery

    def _pick(self) -> str | None:
        urls = self.live_urls()
        if not urls:
            return None
        with self._random_lock:
            return self._random.choice(urls)

    def _run(self, delivery: Delivery) -> None:
        try:
            if not self.clock.wait_until(delivery.due, self.stop):
                return
            first = self.clock.now()
            retry = 0
            while not self.stop.is_set():
                url = self._pick()
                now = self.clock.now()
                if url is None:
                    status, detail = 0, "no live instance"
                else:
                    status, detail = self._deliver(url, [delivery.event])
                delivery.attempts.append(Attempt(now, status, url or "-", detail[:200]))
                if 200 <= status < 300:
                    delivery.outcome = "delivered"
                    return
                wait = RETRY_SCHEDULE[min(retry, len(RETRY_SCHEDULE) - 1)]
                retry += 1
                if self.clock.now() + wait > first + EVENT_TTL:
                    delivery.outcome = "expired"
                    return
                if not self.clock.wait_until(self.clock.now() + wait, self.stop):
                    return
        finally:
            delivery.done.set()


def _post(url: str, events: list[dict[str, Any]]) -> tuple[int, str]:
    from prepost.replay import deliverer

    result = deliverer(url, timeout=REQUEST_TIMEOUT)(events)
    return result.status, result.body
