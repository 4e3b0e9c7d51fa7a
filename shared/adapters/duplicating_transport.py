"""A transport that sends everything twice: an at-least-once delivery drill.

Azure's queues may deliver a message more than once; this makes it happen every time, so the
demo and the tests can prove that duplicates change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from shared.models.messages import WorkMessage
from shared.ports.transport import WorkTransport


class DuplicatingTransport(WorkTransport):
    def __init__(self, inner: WorkTransport):
        self.inner = inner

    def send(self, messages: Sequence[WorkMessage], *, delay: timedelta | None = None) -> None:
        self.inner.send(messages, delay=delay)
        self.inner.send(messages, delay=delay)

    def close(self) -> None:
        self.inner.close()
