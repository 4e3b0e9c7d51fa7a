"""The work transport port: how use cases hand work to the next handler."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import timedelta

from shared.models.messages import WorkMessage


class WorkTransport(ABC):
    """Sends work messages to their queue (``message.queue``).

    Handlers never know which transport carried their message: the trigger adapter decodes the
    body into a :class:`WorkMessage` and the use case answers with more messages.
    """

    @abstractmethod
    def send(self, messages: Sequence[WorkMessage], *, delay: timedelta | None = None) -> None:
        """Send every message, each to its own queue, visible after ``delay`` (default: now).

        Sends in batches where the service allows. Raises on the first failure so the caller's
        delivery is retried; senders use deterministic message ids so a repeat is harmless.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most transports hold nothing
        """Release connections."""
