"""Text rendering of run reports for people."""

from __future__ import annotations

from typing import Any


def render_run(report: dict[str, Any], *, max_tasks: int = 400) -> str:
    lines = [
        f"Run        {report['correlationId']}",
        f"Key        {report['runKey']}",
        f"Window     {report['start']} .. {report['end']}",
        f"Cut-off    {report.get('cancellationCutoff') or '-'}",
    ]
    cancellation = report.get("cancellation")
    if cancellation:
        # The result says whether a cancel call was made and taken, or why not.
        lines.append(f"Cancel     {cancellation['result']} — {cancellation['reason']}")
    lines.extend(render_gate(report.get("gate")))
    for phase in report["phases"]:
        counts = ", ".join(f"{count} {status}" for status, count in phase.get("taskCounts", {}).items()) or "no tasks"
        lines.append("")
        lines.append(
            f"[{phase['phase']}] {phase['status']} ({phase['source']}): {phase['machines']} machines; {counts}"
        )
        for finding in phase["findings"]:
            lines.append(f"  ! {finding}")
    tasks = report["tasks"]
    if tasks:
        lines.append("")
        lines.append(f"{'PHASE':<5} {'ACTION':<18} {'STATUS':<11} {'TRIES':<5} {'TARGET':<28} DETAIL")
        for task in tasks[:max_tasks]:
            target = task["resourceId"].rstrip("/").rsplit("/", 1)[-1]
            lines.append(
                f"{task['phase']:<5} {task['action']:<18} {task['status']:<11} {task['attempts']:<5} "
                f"{target[:28]:<28} {task['detail']}"
            )
            lines.extend(_script_lines(task))
        if len(tasks) > max_tasks:
            lines.append(f"... {len(tasks) - max_tasks} more (use --json)")
    return "\n".join(lines)


def _script_lines(task: dict[str, Any]) -> list[str]:
    """A pre or post script's state, exit code, duration and the last lines of its streams."""
    data = task.get("data") or {}
    if task["action"] not in ("pre-script", "post-script") or "script_state" not in data:
        return []
    took = f", {data['duration_seconds']:g} s" if data.get("duration_seconds") is not None else ""
    exit_code = f", exit {data['exit_code']}" if data.get("exit_code") is not None else ""
    lines = [f"      script {data.get('script', '?')}: {data['script_state']}{exit_code}{took}"]
    for label, key in (("out", "output_tail"), ("err", "error_tail"), ("why", "execution_message")):
        tail = [line for line in str(data.get(key) or "").splitlines() if line.strip()][-3:]
        lines.extend(f"      {label}| {line[:160]}" for line in tail)
    return lines


def render_gate(gate: dict[str, Any] | None, *, max_machines: int = 20) -> list[str]:
    """The gate's decision and the machines that went ahead without their safety work (or cancelled it)."""
    if not gate:
        return []
    lines = [
        f"Gate       {gate['verdict']} at {gate['decidedAt']} ({gate.get('moment') or '-'}): "
        f"{gate.get('failingCount', len(gate.get('failing', [])))} of {gate['machines']} machines failing, "
        f"budget {gate['budget']} allows {gate['allowed']}"
    ]
    for machine in gate.get("failing", [])[:max_machines]:
        name = machine["machine"].rstrip("/").rsplit("/", 1)[-1]
        lines.append(f"  x {name}: {'; '.join(machine['reasons'])}")
    hidden = gate.get("failingCount", 0) - min(len(gate.get("failing", [])), max_machines)
    if hidden > 0:
        lines.append(f"  ... {hidden} more (use --json)")
    return lines
