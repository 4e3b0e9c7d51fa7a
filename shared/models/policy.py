"""The per-run policy, read from the maintenance configuration's tags.

| tag | values | default |
|---|---|---|
| ``prepost-snapshot-disks`` | ``os``, ``all`` (OS and data disks), ``none`` | ``os`` |
| ``prepost-snapshot-retention-days`` | whole days, 0 to 3650; 0 keeps every snapshot | ``0`` |
| ``prepost-start-deallocated`` | ``true`` / ``false`` | ``true`` |
| ``prepost-suppress-alerts`` | ``true`` / ``false`` | ``true`` |
| ``prepost-suppression-grace-minutes`` | whole minutes after the window's end, 0 to 1440 | the app setting (60) |
| ``prepost-cancel-on-failure`` | ``true`` / ``false`` | ``true`` |

A tag with a value that does not parse, or a number out of its range, keeps the default and is
reported as a finding, so a typo never silently disables a safety feature (and a grace of
99999999 minutes never mutes alerts for two centuries). When the tags cannot be read at all,
:meth:`RunPolicy.fail_safe` applies: the safety work only, nothing that changes how machines
run or what alerts reach people.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

TAG_PREFIX = "prepost-"
MAX_GRACE_MINUTES = 24 * 60
"""The longest alerts stay silenced after the window's end: one day."""
MAX_RETENTION_DAYS = 3650


class SnapshotDisks(str, Enum):
    OS = "os"
    ALL = "all"
    NONE = "none"


@dataclass(frozen=True)
class RunPolicy:
    snapshot_disks: SnapshotDisks = SnapshotDisks.OS
    snapshot_retention_days: int = 0
    start_deallocated: bool = True
    suppress_alerts: bool = True
    suppression_grace_minutes: int | None = None
    cancel_on_failure: bool = True
    findings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def fail_safe(cls) -> RunPolicy:
        """The policy when the configuration's tags cannot be read: snapshot the OS disks and
        cancel on failure, but start no VM and silence no alert."""
        return cls(start_deallocated=False, suppress_alerts=False)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["snapshot_disks"] = self.snapshot_disks.value
        values["findings"] = list(self.findings)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunPolicy:
        if not values:
            return cls()
        return cls(
            snapshot_disks=SnapshotDisks(values.get("snapshot_disks", "os")),
            snapshot_retention_days=int(values.get("snapshot_retention_days", 0)),
            start_deallocated=bool(values.get("start_deallocated", True)),
            suppress_alerts=bool(values.get("suppress_alerts", True)),
            suppression_grace_minutes=values.get("suppression_grace_minutes"),
            cancel_on_failure=bool(values.get("cancel_on_failure", True)),
            findings=tuple(values.get("findings", ())),
        )

    @classmethod
    def from_tags(cls, tags: Mapping[str, str] | None) -> RunPolicy:
        """Read the policy tags case-insensitively; unknown ``prepost-`` tags are findings too."""
        lowered = {key.lower(): str(value).strip() for key, value in (tags or {}).items()}
        findings: list[str] = []
        defaults = cls()

        def flag(name: str, default: bool) -> bool:
            raw = lowered.get(TAG_PREFIX + name)
            if raw is None:
                return default
            if raw.lower() in {"true", "yes", "1", "on"}:
                return True
            if raw.lower() in {"false", "no", "0", "off"}:
                return False
            findings.append(f"tag {TAG_PREFIX}{name}={raw!r} is not true/false; using {str(default).lower()}")
            return default

        def whole(name: str, default: int | None, maximum: int) -> int | None:
            raw = lowered.get(TAG_PREFIX + name)
            if raw is None:
                return default
            shown = "the app setting" if default is None else default
            # str.isdigit() also accepts "²", which int() refuses; the length check keeps int()
            # from parsing a thousand-digit number.
            if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
                findings.append(f"tag {TAG_PREFIX}{name}={raw[:40]!r} is not a whole number; using {shown}")
                return default
            if int(raw) > maximum:
                findings.append(f"tag {TAG_PREFIX}{name}={raw} is above its maximum {maximum}; using {shown}")
                return default
            return int(raw)

        disks = defaults.snapshot_disks
        raw_disks = lowered.get(TAG_PREFIX + "snapshot-disks")
        if raw_disks is not None:
            try:
                disks = SnapshotDisks(raw_disks.lower())
            except ValueError:
                findings.append(f"tag {TAG_PREFIX}snapshot-disks={raw_disks!r} is not os/all/none; using os")

        known = {
            "snapshot-disks",
            "snapshot-retention-days",
            "start-deallocated",
            "suppress-alerts",
            "suppression-grace-minutes",
            "cancel-on-failure",
        }
        for key in lowered:
            # prepost-hook-* tags declare scripts, read by shared.models.hooks.
            hook = key.startswith("prepost-hook-")
            if key.startswith(TAG_PREFIX) and key[len(TAG_PREFIX) :] not in known and not hook:
                findings.append(f"tag {key} is not a prepost policy tag; ignored")

        return cls(
            snapshot_disks=disks,
            snapshot_retention_days=whole("snapshot-retention-days", 0, MAX_RETENTION_DAYS) or 0,
            start_deallocated=flag("start-deallocated", defaults.start_deallocated),
            suppress_alerts=flag("suppress-alerts", defaults.suppress_alerts),
            suppression_grace_minutes=whole("suppression-grace-minutes", None, MAX_GRACE_MINUTES),
            cancel_on_failure=flag("cancel-on-failure", defaults.cancel_on_failure),
            findings=tuple(findings),
        )
