"""Azure resource ids: parsed once, compared case-insensitively, displayed as given.

Azure treats resource ids as case-insensitive (``applyupdates`` and ``applyUpdates`` name the
same thing), so every comparison and every storage key uses :attr:`ResourceId.key`.

The ids an event brings (run, configuration, subscriptions) are checked as **ASCII** against
ARM's naming rules and compared with :func:`ascii_fold`. Python's ``\\d``, ``re.IGNORECASE`` and
``str.lower`` are Unicode-aware: ``\\d`` takes Arabic-Indic digits, ``re.IGNORECASE`` takes the
long s (U+017F) for ``s``, and ``str.lower`` turns the Kelvin sign (U+212A) into ``k``. Any of
them would let two different spellings name one run, or one spelling slip past an allow-list.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

# ARM's rules, ASCII only: resource group names are 1-90 letters, digits, '-', '_', '.', '(' or
# ')' and do not end in '.'; resource names at most 260 characters. (ARM also allows non-ASCII
# letters in resource group names; prepost does not, see docs/events.md.)
_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_RESOURCE_GROUP = r"[-\w.()]{0,89}[-\w()]"
_NAME = r"[-\w.()]{0,259}[-\w()]"
_CONFIGURATION = (
    rf"/subscriptions/{_GUID}/resourceGroups/{_RESOURCE_GROUP}/providers/Microsoft\.Maintenance/"
    rf"maintenanceConfigurations/{_NAME}"
)
# re.ASCII: \w is [A-Za-z0-9_] and IGNORECASE folds ASCII letters only.
_FLAGS = re.ASCII | re.IGNORECASE
_CORRELATION = re.compile(
    rf"(?P<config>{_CONFIGURATION})/providers/Microsoft\.Maintenance/applyUpdates/(?P<stamp>[0-9]{{14}})", _FLAGS
)
_CONFIGURATION_ID = re.compile(_CONFIGURATION, _FLAGS)
_GUID_TEXT = re.compile(_GUID, _FLAGS)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_fold(text: str) -> str:
    """``text`` with ASCII capitals made lower case, and nothing else changed.

    The case folding for ids: it cannot merge two different characters, as ``str.lower`` and
    ``str.casefold`` can (the Kelvin sign becomes ``k``, ``ß`` becomes ``ss``).
    """
    return text.translate(_ASCII_LOWER)


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
    match = _run_id(correlation_id)
    return match.group("config") if match else None


def schedule_stamp_of(correlation_id: str) -> str | None:
    """The ``yyyyMMddHHmmss`` scheduled start at the end of a run id."""
    match = _run_id(correlation_id)
    return match.group("stamp") if match else None


def is_configuration_id(value: str) -> bool:
    """True for a maintenance configuration's resource id, spelled in ASCII."""
    return _CONFIGURATION_ID.fullmatch(value) is not None


def is_guid(value: str) -> bool:
    """True for a GUID in its 36-character form (``8-4-4-4-12`` ASCII hex digits, any case)."""
    return _GUID_TEXT.fullmatch(value) is not None


def run_key(correlation_id: str) -> str:
    """The storage key of a run: readable, stable and case-insensitive.

    Table keys may not contain ``/``; a digest of the ASCII-folded id keeps it unique, the
    configuration name and schedule stamp keep it readable in Storage Explorer.
    """
    config = configuration_of(correlation_id)
    stamp = schedule_stamp_of(correlation_id) or "run"
    # Folded: the same configuration may be spelled differently by two events.
    name = re.sub(r"[^a-z0-9-]", "-", ascii_fold(config.rsplit("/", 1)[-1])) if config else "unknown"
    digest = hashlib.sha256(ascii_fold(correlation_id.strip()).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{name[:60]}-{stamp}-{digest}"


def _run_id(text: str) -> re.Match[str] | None:
    match = _CORRELATION.fullmatch(text.strip())
    if match is None:
        return None
    try:
        # The stamp is a moment: 14 digits that are not a date (month 13) do not name a run.
        datetime.strptime(match.group("stamp"), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return match
