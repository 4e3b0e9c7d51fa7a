"""The per-run policy, read from the maintenance configuration's tags.

| tag | values | default |
|---|---|---|
| ``prepost-snapshot-disks`` | ``os``, ``all`` (OS and data disks), ``none`` | ``os`` |
| ``prepost-snapshot-retention-days`` | whole days, 0 to 3650; 0 keeps every snapshot | ``0`` |
| ``prepost-start-deallocated`` | ``true`` / ``false`` | ``true`` |
| ``prepost-suppress-alerts`` | ``true`` / ``false`` | ``true`` |
| ``prepost-suppression-grace-minutes`` | whole minutes after the window's end, 0 to 1440 | the app setting (60) |
| ``prepost-cancel-on-failure`` | ``true`` / ``false`` | ``true`` (*) |
| ``prepost-max-errors`` | machines whose safety-critical work may fail: ``0``, ``3``, ``10%`` | ``0`` (*) |
| ``prepost-safety-critical`` | ``snapshot``, ``start``, ``preflight``, ``pre-script`` (a list); ``none`` | all (*) |
| ``prepost-severity-<finding kind>`` | ``info`` / ``warning`` / ``blocking`` | ``findings.DEFAULT_SEVERITY`` |

(*) or what the app settings ``PREPOST_CANCEL_ON_FAILURE``, ``PREPOST_MAX_ERRORS`` and
``PREPOST_SAFETY_CRITICAL`` say (:attr:`shared.settings.Settings.policy_defaults`).

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

from shared.models.findings import FindingKind, Severity
from shared.models.gate import ErrorBudget

TAG_PREFIX = "prepost-"
MAX_GRACE_MINUTES = 24 * 60
"""The longest alerts stay silenced after the window's end: one day."""
MAX_RETENTION_DAYS = 3650


class SnapshotDisks(str, Enum):
    OS = "os"
    ALL = "all"
    NONE = "none"


class SafetyCategory(str, Enum):
    """Kinds of pre-work whose failure counts against the error budget (when the policy says so)."""

    SNAPSHOT = "snapshot"
    START = "start"
    PREFLIGHT = "preflight"
    """A preflight finding of severity ``blocking``."""
    PRE_SCRIPT = "pre-script"
    """A script run on the machine before patching."""


DEFAULT_SAFETY_CRITICAL: tuple[str, ...] = tuple(category.value for category in SafetyCategory)


def parse_safety_critical(raw: str) -> tuple[str, ...]:
    """``"snapshot,start"`` or ``"none"``; raises ValueError on an unknown category."""
    text = raw.strip().lower()
    if text == "none":
        return ()
    values = [part.strip() for part in text.split(",") if part.strip()]
    known = {category.value for category in SafetyCategory}
    unknown = [value for value in values if value not in known]
    if unknown or not values:
        raise ValueError(f"{raw!r} is not a comma list of {', '.join(sorted(known))}, or none")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class RunPolicy:
    snapshot_disks: SnapshotDisks = SnapshotDisks.OS
    snapshot_retention_days: int = 0
    start_deallocated: bool = True
    suppress_alerts: bool = True
    suppression_grace_minutes: int | None = None
    cancel_on_failure: bool = True
    max_errors: str = "0"
    """The error budget as written (``"0"``, ``"3"``, ``"10%"``); see :class:`ErrorBudget`."""
    safety_critical: tuple[str, ...] = DEFAULT_SAFETY_CRITICAL
    """The :class:`SafetyCategory` values whose failures count against the budget."""
    severity: Mapping[str, str] = field(default_factory=dict)
    """Severity per finding kind where the policy changes the default (kind value -> severity value)."""
    findings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def error_budget(self) -> ErrorBudget:
        return ErrorBudget.parse(self.max_errors)

    def is_safety_critical(self, category: SafetyCategory) -> bool:
        return category.value in self.safety_critical

    @property
    def severity_overrides(self) -> dict[FindingKind, Severity]:
        return {FindingKind(kind): Severity(value) for kind, value in self.severity.items()}

    @classmethod
    def fail_safe(cls) -> RunPolicy:
        """The policy when the configuration's tags cannot be read: snapshot the OS disks and
        cancel on failure, but start no VM and silence no alert."""
        return cls(start_deallocated=False, suppress_alerts=False)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["snapshot_disks"] = self.snapshot_disks.value
        values["safety_critical"] = list(self.safety_critical)
        values["severity"] = dict(self.severity)
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
            # Records written before the gate existed hold neither: the defaults are what they meant.
            max_errors=str(values.get("max_errors", "0")),
            safety_critical=tuple(values.get("safety_critical", DEFAULT_SAFETY_CRITICAL)),
            severity=dict(values.get("severity", {})),
            findings=tuple(values.get("findings", ())),
        )

    @classmethod
    def from_tags(cls, tags: Mapping[str, str] | None, defaults: RunPolicy | None = None) -> RunPolicy:
        """Read the policy tags case-insensitively; unknown ``prepost-`` tags are findings too.

        ``defaults`` holds what the app settings say where a tag is absent (the gate's
        ``PREPOST_MAX_ERRORS``, ``PREPOST_SAFETY_CRITICAL``, ``PREPOST_CANCEL_ON_FAILURE``).
        """
        lowered = {key.lower(): str(value).strip() for key, value in (tags or {}).items()}
        findings: list[str] = []
        defaults = defaults or cls()

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

        max_errors = defaults.max_errors
        raw_budget = lowered.get(TAG_PREFIX + "max-errors")
        if raw_budget is not None:
            try:
                max_errors = str(ErrorBudget.parse(raw_budget))
            except ValueError as error:
                findings.append(f"tag {TAG_PREFIX}max-errors: {error}; using {defaults.max_errors}")

        safety_critical = defaults.safety_critical
        raw_critical = lowered.get(TAG_PREFIX + "safety-critical")
        if raw_critical is not None:
            try:
                safety_critical = parse_safety_critical(raw_critical)
            except ValueError as error:
                # The whole default, not the entries that parse: a typo must not drop "snapshot".
                findings.append(f"tag {TAG_PREFIX}safety-critical: {error}; using {','.join(safety_critical)}")

        severity = dict(defaults.severity)
        severity_prefix = TAG_PREFIX + "severity-"
        for key, raw in lowered.items():
            if not key.startswith(severity_prefix):
                continue
            kind = key[len(severity_prefix) :]
            try:
                FindingKind(kind)
                severity[kind] = Severity(raw.lower()).value
            except ValueError:
                findings.append(f"tag {key}={raw[:40]!r} is not a finding kind with info/warning/blocking; ignored")

        known = {
            "max-errors",
            "safety-critical",
            "snapshot-disks",
            "snapshot-retention-days",
            "start-deallocated",
            "suppress-alerts",
            "suppression-grace-minutes",
            "cancel-on-failure",
        }
        for key in lowered:
            if key.startswith(severity_prefix):
                continue
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
            max_errors=max_errors,
            safety_critical=safety_critical,
            severity=severity,
            findings=tuple(findings),
        )
