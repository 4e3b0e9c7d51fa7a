"""The drill's report as text: one row per window, the violations, the totals, one summary line."""

from __future__ import annotations

from typing import Any

from prepost.chaos.invariants import INVARIANTS, TITLES

STORAGE_COLUMNS = (("error500", "500"), ("error503", "503"), ("reset_before", "rst"), ("lost_response", "lost"),
                   ("timeout", "tmo"))  # fmt: skip
ARM_COLUMNS = (("429", "429"), ("500", "500"), ("timeout", "tmo"), ("failed-op", "fop"))


def _counts(values: dict[str, int], columns) -> str:
    return "/".join(str(values.get(key, 0)) for key, _ in columns)


def summary_line(report: dict[str, Any]) -> str:
    totals = report["totals"]
    return (
        f"chaos: {report['windows']} windows, {totals['faults']} faults injected, "
        f"{totals['violations']} invariant violations"
    )


def render(report: dict[str, Any]) -> str:
    totals = report["totals"]
    lines = [
        f"chaos drill: seed {report['seed']}, {report['windows']} windows, {report['instances']} instance(s), "
        f"time scale {report['scale']:g} (1 real s = {report['scale']:g} virtual s), {report['durationSeconds']} s",
        "",
    ]
    storage_head = "storage " + "/".join(label for _, label in STORAGE_COLUMNS)
    arm_head = "ARM " + "/".join(label for _, label in ARM_COLUMNS)
    header = (
        f"{'win':>3} {'slot':>4}  {'disorder':<16} {'settled':<9} {storage_head:<24} {arm_head:<18} {'crash':>5}  "
        + " ".join(f"{name:<4}" for name in INVARIANTS)
    )
    lines.append(header)
    lines.append("-" * len(header))
    for window in report["windowReports"]:
        faults = window["faults"]
        cells = []
        for name in INVARIANTS:
            result = window["invariants"].get(name)
            cells.append(f"{(result['status'] if result else 'skip'):<4}")
        lines.append(
            f"{window['window']:>3} {window['slot']:>4}  {window['disorderText']:<16} {window['settled']:<9} "
            f"{_counts(faults['storage'], STORAGE_COLUMNS):<24} {_counts(faults['arm'], ARM_COLUMNS):<18} "
            f"{faults['crashes']:>5}  " + " ".join(cells)
        )
    lines.append("")
    lines.append("(fault counts per window are those injected while it was alive; windows overlap)")
    lines.append("")
    violations = [
        (window["window"], name, message)
        for window in report["windowReports"]
        for name, result in window["invariants"].items()
        for message in result["violations"]
    ]
    errors = [(window["window"], window["error"]) for window in report["windowReports"] if window.get("error")]
    if violations:
        lines.append("Violations:")
        for number, name, message in violations:
            lines.append(f"  window {number} {name}: {message}")
        lines.append("")
    if errors:
        lines.append("Windows the drill could not run:")
        for number, error in errors:
            lines.append(f"  window {number}: {error}")
        lines.append("")
    storage = totals["storageFaults"]
    arm = totals["armFaults"]
    lines.append(
        f"faults injected: storage {sum(storage.values())} ("
        + ", ".join(f"{label} {storage.get(key, 0)}" for key, label in STORAGE_COLUMNS)
        + f"), ARM {sum(arm.values())} ("
        + ", ".join(f"{label} {arm.get(key, 0)}" for key, label in ARM_COLUMNS)
        + f"), crashes {totals['crashes']}; disorder events {totals['disorderEvents']}"
    )
    lines.append(
        "violations by invariant: "
        + ", ".join(f"{name} {totals['violationsByInvariant'].get(name, 0)}" for name in INVARIANTS)
    )
    lines.append("invariants: " + "; ".join(f"{name} {TITLES[name]}" for name in INVARIANTS))
    if report.get("error"):
        lines.append(f"the drill stopped early: {report['error']}")
    lines.append(summary_line(report))
    return "\n".join(lines)
