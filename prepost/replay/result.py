"""The one result type of every replay: what happened to each item sent back, and the tally."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

Item = TypeVar("Item")


class ReplayOutcome(str, Enum):
    """What a replay did with one item (a poison message, a dead-letter blob, a dead-lettered message)."""

    REPLAYED = "replayed"
    WOULD_REPLAY = "would replay"
    FAILED = "failed"
    """The send back failed; the item stays where it was."""
    DELIVERY_FAILED = "delivery failed"
    """The webhook refused or did not answer; the blob stays where it was."""
    UNREADABLE = "unreadable"
    """Not something that can be sent back (a blob that is not a JSON array of events)."""
    MOVE_FAILED = "delivered, not moved"
    """Delivered, but the blob could not be moved to ``replayed/``: it would be replayed again."""


SUCCEEDED = frozenset({ReplayOutcome.REPLAYED, ReplayOutcome.WOULD_REPLAY})


@dataclass(frozen=True)
class ReplayResult(Generic[Item]):
    """One item of a replay and what happened to it."""

    item: Item
    outcome: ReplayOutcome
    detail: str = ""
    """Why it failed, when it did."""

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCEEDED


@dataclass
class ReplaySummary(Generic[Item]):
    """Every result of one replay, in order."""

    queue: str
    """Where the items were sent back to (a queue, or the container read)."""
    results: list[ReplayResult[Item]] = field(default_factory=list)

    def count(self, outcome: ReplayOutcome) -> int:
        return sum(1 for result in self.results if result.outcome is outcome)

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    def record(self, result: ReplayResult[Item], report: Callable[[ReplayResult[Item]], None]) -> None:
        """Keep ``result`` and report it at once, so a long replay shows progress."""
        self.results.append(result)
        report(result)
