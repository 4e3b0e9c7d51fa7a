"""Release months of the Azure Connected Machine agent (Arc-enabled servers), to judge its age.

Microsoft supports only agent versions released within the last year, and ships a new
version about every month ("What's new with Azure Connected Machine agent",
https://learn.microsoft.com/azure/azure-arc/servers/agent-release-notes, and its archive).
Azure reports the version as ``MAJOR.MINOR.BUILD.REVISION`` (``1.47.02825.2025``); the release
notes are headed by ``MAJOR.MINOR`` and a month, which is what this table keeps.

How to update the table: when a new version appears in the release notes, add one line
``(1, NN): (YEAR, MONTH)`` below. Nothing breaks if the table falls behind: a version newer
than the last line is treated as current (never reported as unsupported), so an out-of-date
table can only miss an old agent, never invent one.
"""

from __future__ import annotations

from datetime import datetime

RELEASES: dict[tuple[int, int], tuple[int, int]] = {
    (1, 30): (2023, 5),
    (1, 31): (2023, 6),
    (1, 32): (2023, 7),
    (1, 33): (2023, 8),
    (1, 34): (2023, 9),
    (1, 35): (2023, 10),
    (1, 36): (2023, 11),
    (1, 37): (2023, 12),
    (1, 38): (2024, 2),
    (1, 39): (2024, 3),
    (1, 40): (2024, 4),
    (1, 41): (2024, 5),
    (1, 42): (2024, 6),
    (1, 43): (2024, 7),
    (1, 44): (2024, 7),
    (1, 45): (2024, 8),
    (1, 46): (2024, 9),
    (1, 47): (2024, 10),
    (1, 48): (2024, 11),
    (1, 49): (2024, 12),
    (1, 50): (2025, 1),
}
"""(major, minor) -> (year, month) of release."""

SUPPORT_MONTHS = 12


def parse_version(version: str | None) -> tuple[int, int] | None:
    """``(major, minor)`` of an agent version string, or None when it does not parse."""
    if not version:
        return None
    parts = version.strip().split(".")
    if len(parts) < 2 or not all(part.isascii() and part.isdigit() for part in parts[:2]):
        return None
    return int(parts[0]), int(parts[1])


def release_month(version: str | None) -> tuple[int, int] | None:
    """The (year, month) the version was released, when the table knows it."""
    parsed = parse_version(version)
    return RELEASES.get(parsed) if parsed else None


def months_old(version: str | None, now: datetime) -> int | None:
    """Whole months between the version's release month and ``now``; None when unknown.

    A version newer than every version in the table counts as current (0): the table may lag
    behind the releases, and a new agent must never be reported as old.
    """
    parsed = parse_version(version)
    if parsed is None:
        return None
    if parsed > max(RELEASES):
        return 0
    released = RELEASES.get(parsed)
    if released is None:
        # Older than the table's first line, or a gap in it: as old as the next known version at least.
        known = [month for key, month in sorted(RELEASES.items()) if key > parsed]
        if not known or parsed > min(RELEASES):
            return None
        released = known[0]
    year, month = released
    return (now.year - year) * 12 + (now.month - month)


def is_unsupported(version: str | None, now: datetime) -> bool:
    """True when the version was released more than :data:`SUPPORT_MONTHS` months before ``now``."""
    age = months_old(version, now)
    return age is not None and age > SUPPORT_MONTHS
