"""Preflight findings: what a check found about one machine, and how much it matters.

Every finding has a :class:`FindingKind` (what was found) and a :class:`Severity` (what the
gate makes of it). Each kind has a default severity (:data:`DEFAULT_SEVERITY`); the
configuration's policy can raise or lower it per kind (``prepost-severity-<kind>`` tags, see
:mod:`shared.models.policy`). Only ``blocking`` findings can make the gate cancel a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    BLOCKING = "blocking"
    """Patching this machine must not go ahead without it being fixed: counts against the error budget."""

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Severity.INFO: 0, Severity.WARNING: 1, Severity.BLOCKING: 2}


class FindingKind(str, Enum):
    """What a preflight check found. The values are the names used in policy tags."""

    PATCH_MODE_UNSAFE = "patch-mode-unsafe"
    """Not ``AutomaticByPlatform`` with ``bypassPlatformSafetyChecksOnUserSchedule``: Azure may
    patch the VM outside the schedule."""
    VM_AGENT_NOT_READY = "vm-agent-not-ready"
    """The VM agent does not report Ready: Update Manager cannot patch the VM."""
    VM_AGENT_UNKNOWN = "vm-agent-unknown"
    """A VM that is not running reports no agent status; it is known once the VM runs."""
    PATCH_EXTENSION_FAILED = "patch-extension-failed"
    """The Windows/Linux patch extension is in a failed state: patching will likely fail."""
    EXTENSION_FAILED = "extension-failed"
    """Another extension is in a failed state."""
    SNAPSHOT_LIMIT_NEAR = "snapshot-limit-near"
    """A disk has close to the 500 incremental snapshots Azure allows."""
    SNAPSHOT_LIMIT_REACHED = "snapshot-limit-reached"
    """A disk cannot take one more incremental snapshot: its pre-patch snapshot will fail."""
    ARC_DISCONNECTED = "arc-disconnected"
    """The Connected Machine agent is Disconnected or Expired: Update Manager cannot patch it."""
    ARC_AGENT_UNSUPPORTED = "arc-agent-unsupported"
    """The agent version was released more than a year ago (Microsoft supports one year)."""
    ARC_AUTO_UPGRADE_OFF = "arc-auto-upgrade-off"
    """Automatic agent upgrade is not enabled."""
    MACHINE_MISSING = "machine-missing"
    """The run lists a machine that no longer exists."""
    MACHINE_UNREADABLE = "machine-unreadable"
    """prepost may not read the machine, so it cannot do its safety work on it."""
    NOT_A_MACHINE = "not-a-machine"
    """A resource type prepost does not handle."""


DEFAULT_SEVERITY: Mapping[FindingKind, Severity] = {
    FindingKind.PATCH_MODE_UNSAFE: Severity.WARNING,
    FindingKind.VM_AGENT_NOT_READY: Severity.WARNING,
    FindingKind.VM_AGENT_UNKNOWN: Severity.INFO,
    FindingKind.PATCH_EXTENSION_FAILED: Severity.WARNING,
    FindingKind.EXTENSION_FAILED: Severity.INFO,
    FindingKind.SNAPSHOT_LIMIT_NEAR: Severity.WARNING,
    FindingKind.SNAPSHOT_LIMIT_REACHED: Severity.BLOCKING,
    FindingKind.ARC_DISCONNECTED: Severity.WARNING,
    FindingKind.ARC_AGENT_UNSUPPORTED: Severity.WARNING,
    FindingKind.ARC_AUTO_UPGRADE_OFF: Severity.INFO,
    FindingKind.MACHINE_MISSING: Severity.WARNING,
    FindingKind.MACHINE_UNREADABLE: Severity.BLOCKING,
    FindingKind.NOT_A_MACHINE: Severity.INFO,
}
"""Blocking by default only where the safety work itself cannot be done (the snapshot would
fail, the machine cannot be read); a machine Update Manager cannot patch is a warning, since
nothing is patched there without its safety work."""


@dataclass(frozen=True)
class Finding:
    """One thing a check found about one machine."""

    kind: FindingKind
    severity: Severity
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "severity": self.severity.value, "message": self.message}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Finding:
        return cls(FindingKind(values["kind"]), Severity(values["severity"]), str(values.get("message", "")))

    def __str__(self) -> str:
        return f"{self.severity.value}: {self.message}"


def finding(kind: FindingKind, message: str, overrides: Mapping[FindingKind, Severity] | None = None) -> Finding:
    """A finding with the severity the policy gives its kind (or the default)."""
    severity = (overrides or {}).get(kind, DEFAULT_SEVERITY[kind])
    return Finding(kind, severity, message)


def worst(findings: Iterable[Finding]) -> Severity | None:
    """The highest severity among ``findings``, or None when there are none."""
    return max((f.severity for f in findings), key=lambda severity: severity.rank, default=None)
