"""Port: which machines a maintenance configuration is assigned to (Resource Graph)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from shared.models.scopes import CandidateMachine, DynamicScope


@dataclass(frozen=True)
class Assignments:
    """A configuration's assignments: machines named one by one, and dynamic scopes."""

    static: tuple[str, ...]
    scopes: tuple[DynamicScope, ...]


class AssignmentInventory(ABC):
    """Configuration assignments from ``maintenanceresources``, candidate machines from ``resources``.

    Both read only the subscriptions given (all the caller can read when empty). A missing
    Reader role reads as no rows: callers must say how many they found, never "all is well".
    """

    @abstractmethod
    def list_assignments(self, configuration_id: str, subscription_ids: Sequence[str]) -> Assignments:
        """Every assignment of the configuration (all pages)."""

    @abstractmethod
    def list_machines(self, subscription_ids: Sequence[str]) -> list[CandidateMachine]:
        """Every Azure VM and Arc-enabled server in the subscriptions (all pages)."""
