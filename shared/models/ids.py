"""Azure resource ids: parsed once, compared case-insensitively, displayed as given.

Azure treats resource ids as case-insensitive (``applyupdates`` and ``applyUpdates`` name the
same thing), so every comparison and every storage key uses :attr:`ResourceId.key`.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from enum import Enum

_CORRELATION = re.compile(
    r"^(?P<config>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Maintenance/"
    r"maintenanceConfigurations/[^/]+)/providers/Microsoft\.Maintenance/applyUpdates/(?P<stamp>\d{14})$",
    re.IGNORECASE,
)


class MachineKind(str, Enum):
    AZURE_VM = "azure-vm"
    ARC_SERVER = "arc-server"


@dataclass(frozen=True)
class ResourceId:
    """An ARM resource id. Equality and hashing ignore case; ``value`` keeps the original."""

    value: str

    def __post_init__(self) -> None:
        parts = self.value.strip("/").split("/")
        if len(parts) < 2 or parts[0].lower() != "subscriptions" or not parts[1]:
            raise ValueError(f"not an Azure resource id: {self.value!r}")

    @property
    def key(self) -> str:
        return self.value.rstrip("/").lower()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceId) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self.value

    def _segment_after(self, name: str) -> str | None:
        parts = self.value.strip("/").split("/")
        for index, part in enumerate(parts[:-1]):
            if part.lower() == name:
                return parts[index + 1]
        return None

    @property
    def subscription_id(self) -> str:
        return self.value.strip("/").split("/")[1].lower()

    @property
    def resource_group(self) -> str | None:
        return self._segment_after("resourcegroups")

    @property
    def name(self) -> str:
        return self.value.rstrip("/").split("/")[-1]

    @property
    def provider_type(self) -> str:
        """``microsoft.compute/virtualmachines`` style, lower case, for the last resource."""
        parts = self.value.strip("/").split("/")
        lowered = [part.lower() for part in parts]
        if "providers" not in lowered:
            return "microsoft.resources/resourcegroups" if len(parts) > 2 else "subscriptions"
        index = len(lowered) - 1 - lowered[::-1].index("providers")
        namespace = lowered[index + 1]
        types = lowered[index + 2 :: 2]
        return "/".join([namespace, *types])

    @property
    def machine_kind(self) -> MachineKind | None:
        kind = self.provider_type
        if kind == "microsoft.compute/virtualmachines":
            return MachineKind.AZURE_VM
        if kind == "microsoft.hybridcompute/machines":
            return MachineKind.ARC_SERVER
        return None

    def short_hash(self, length: int = 16) -> str:
        """A stable, case-insensitive digest for storage keys and resource names."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:length]


def configuration_of(correlation_id: str) -> str | None:
    """The maintenance configuration id a run id belongs to, or None if it is not a run id."""
    match = _CORRELATION.match(correlation_id.strip())
    return match.group("config") if match else None


def schedule_stamp_of(correlation_id: str) -> str | None:
    """The ``yyyyMMddHHmmss`` scheduled start at the end of a run id."""
    match = _CORRELATION.match(correlation_id.strip())
    return match.group("stamp") if match else None


def is_guid(value: str) -> bool:
    try:
        return len(value) == 36 and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def run_key(correlation_id: str) -> str:
    """The storage key of a run: readable, stable and case-insensitive.

    Table keys may not contain ``/``; a digest of the lower-cased id keeps it unique, the
    configuration name and schedule stamp keep it readable in Storage Explorer.
    """
    config = configuration_of(correlation_id)
    stamp = schedule_stamp_of(correlation_id) or "run"
    # Lower case: the same configuration may be spelled differently by two events.
    name = re.sub(r"[^a-z0-9-]", "-", config.rsplit("/", 1)[-1].lower()) if config else "unknown"
    digest = hashlib.sha256(correlation_id.strip().lower().encode()).hexdigest()[:12]
    return f"{name[:60]}-{stamp}-{digest}"
