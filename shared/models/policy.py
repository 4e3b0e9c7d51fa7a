"""The per-run policy, read from the maintenance configuration's tags.

| tag | values | default |
|---|---|---|
| ``prepost-snapshot-disks`` | ``os``, ``all`` (OS and data disks), ``none`` | ``os`` |
| ``prepost-snapshot-retention-days`` | whole days; 0 keeps every snapshot | ``0`` |
| ``prepost-start-deallocated`` | ``true`` / ``false`` | ``true`` |
| ``prepost-suppress-alerts`` | ``true`` / ``false`` | ``true`` |
| ``prepost-suppression-grace-minutes`` | whole minutes after the window's end | the app setting (60) |
| ``prepost-cancel-on-failure`` | ``true`` / ``false`` | ``true`` |

A tag with a value that does not parse keeps the default and is reported as a finding, so a
typo never silently disables a safety feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

TAG_PREFIX = "prepost-"


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

        def whole(name: str, default: int | None) -> int | None:
            raw = lowered.get(TAG_PREFIX + name)
            if raw is None:
                return default
            if raw.isascii() and raw.isdigit():  # str.isdigit() also accepts "²", which int() refuses
                return int(raw)
            shown = "the app setting" if default is None else default
            findings.append(f"tag {TAG_PREFIX}{name}={raw!r} is not a whole number; using {shown}")
            return default

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
            if key.startswith(TAG_PREFIX) and key[len(TAG_PREFIX) :] not in known:
                findings.append(f"tag {key} is not a prepost policy tag; ignored")

        return cls(
            snapshot_disks=disks,
            snapshot_retention_days=whole("snapshot-retention-days", 0) or 0,
            start_deallocated=flag("start-deallocated", defaults.start_deallocated),
            suppress_alerts=flag("suppress-alerts", defaults.suppress_alerts),
            suppression_grace_minutes=whole("suppression-grace-minutes", None),
            cancel_on_failure=flag("cancel-on-failure", defaults.cancel_on_failure),
            findings=tuple(findings),
        )
