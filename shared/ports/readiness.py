"""Port: where the scheduled readiness checks keep their results."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ReadinessResult:
    """One scheduled check of one configuration: what the gate would decide, or why no check was made."""

    configuration_id: str
    checked_at: datetime
    verdict: str | None
    """``proceed`` or ``cancel``; None when the check could not be made (``error`` says why)."""
    would_cancel: bool = False
    machines: int = 0
    severities: dict[str, int] = field(default_factory=dict)
    """Machines per worst severity (``info``, ``warning``, ``blocking``, ``ok``)."""
    failing: list[dict[str, Any]] = field(default_factory=list)
    """The machines that would fail the gate, with their reasons (the first 50)."""
    summary: str = ""
    error: str | None = None


class ReadinessRecords(ABC):
    @abstractmethod
    def add(self, result: ReadinessResult) -> None:
        """Keep one result (results are never overwritten)."""

    @abstractmethod
    def list_results(self, configuration_id: str, *, limit: int = 20) -> list[ReadinessResult]:
        """The configuration's results, newest first."""
