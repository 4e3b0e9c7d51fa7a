"""``prepost demo``: a whole maintenance window handled offline by the real function app.

Azurite, the management-API simulator with a seeded estate, and the in-process runner; a
pre-event and a post-event delivered through the Event Grid webhook; then a report of what the
pipeline did and what the simulated Azure holds at the end, checked against what should be.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import requests

from prepost.local.delivery import deliver
from prepost.local.events import build_event
from prepost.local.stack import LocalStack

DEMO_TAGS = {"prepost-snapshot-disks": "all"}


@dataclass(frozen=True)
class DemoOptions:
    machines: int = 50
    subscriptions: int = 2
    arc_servers: int = 3
    faults: str = ""
    deliver_twice: bool = False
    json_output: bool = False
    timeout: float = 240.0
    scenario: str = "normal"
    """``normal``, or a readiness-gate scenario of :mod:`prepost.demo_scenarios` (``cancel``, ``budget``)."""


def parse_faults(text: str) -> dict[str, float]:
    """``429=0.1,500=0.05,timeout=0.01`` → rates per fault kind."""
    rates: dict[str, float] = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        kind, _, rate = part.partition("=")
        try:
            value = float(rate)
        except ValueError:
            raise ValueError(f"fault rate {part!r} is not KIND=RATE") from None
        if kind not in {"429", "500", "timeout"} or not 0 <= value <= 1:
            raise ValueError(f"fault {part!r}: kind must be 429, 500 or timeout and rate within 0..1")
        rates[kind] = value
    return rates


def run_demo(options: DemoOptions, *, out=sys.stdout, err=sys.stderr) -> bool:
    """Run the demo; print the report; True if everything ended as expected."""
    from prepost import demo_scenarios as scenarios
    from shared.adapters.duplicating_transport import DuplicatingTransport

    faults = parse_faults(options.faults)
    progress = _Progress(err, quiet=False)
    progress.say(
        f"starting Azurite, the simulator ({options.machines} VMs, {options.arc_servers} Arc servers, "
        f"{options.subscriptions} subscriptions) and the function app"
    )
    stack = LocalStack(
        machines=options.machines,
        subscriptions=options.subscriptions,
        arc_servers=options.arc_servers,
        configuration_tags={**DEMO_TAGS, **scenarios.tags_for(options.scenario)},
        wrap_transport=DuplicatingTransport if options.deliver_twice else None,
        write_state=False,
    )
    with stack:
        sim = stack.simulator
        victims = scenarios.arrange(options.scenario, stack)
        if victims:
            progress.say(f"scenario {options.scenario}: snapshots refused for {len(victims)} VMs")
        before = _power_states(sim.url)
        if faults:
            _configure_faults(sim.url, faults)
            progress.say("fault injection: " + ", ".join(f"{k} at {v:.0%}" for k, v in faults.items()))
        records = stack.runner.container.records
        correlation = stack.estate.run.correlation_id
        times = 2 if options.deliver_twice else 1

        for kind in ("pre", "post"):
            event = build_event(kind, correlation_id=correlation, subscription_ids=stack.subscription_ids)
            for _ in range(times):
                result = deliver(stack.runner.webhook_url, [event])
                if not result.ok:
                    progress.say(f"{kind}-event delivery failed: HTTP {result.status} {result.body}")
                    return False
            progress.say(f"{kind}-event delivered" + (" twice" if times == 2 else ""))
            if not _wait_for_phase(records, correlation, kind, options.timeout, progress):
                break
        if faults:
            _configure_faults(sim.url, {})
        report = build_report(records, correlation, sim.url, before, stack)
        report["scenario"] = options.scenario
        report["checks"] = scenarios.checks(options.scenario, report, victims)
        report["ok"] = all(check["ok"] for check in report["checks"])
    if options.json_output:
        print(json.dumps(report, indent=2), file=out)
    else:
        print(render_demo(report), file=out)
    return report["ok"]


def _wait_for_phase(records, correlation: str, kind: str, timeout: float, progress) -> bool:
    from shared.models.ids import run_key
    from shared.models.run import Phase

    key = run_key(correlation)
    phase = Phase(kind)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        record = records.get_phase(key, phase)
        if record is not None:
            line = f"{kind}: {record.status.value}, {record.finished_tasks}/{record.expected_tasks} tasks finished"
            if line != last:
                progress.say(line)
                last = line
            if record.status.is_final:
                return True
        time.sleep(0.25)  # polling the records for progress output, not synchronising a test
    progress.say(f"{kind}: not finished within {timeout:.0f} s")
    return False


def _sim_get(url: str, path: str) -> Any:
    response = requests.get(f"{url}/_sim/{path}", timeout=10)
    response.raise_for_status()
    return response.json()


def _configure_faults(url: str, rates: dict[str, float]) -> None:
    from prepost.simulator_client import fault_config

    response = requests.post(f"{url}/_sim/faults", json=fault_config(rates), timeout=10)
    response.raise_for_status()


def _power_states(url: str) -> dict[str, str]:
    from prepost.simulator_client import power_states

    return power_states(_sim_get(url, "vms"))


def build_report(records, correlation: str, sim_url: str, before: dict[str, str], stack: LocalStack) -> dict[str, Any]:
    """The run as recorded, the simulator's end state, and the checks that decide the exit code."""
    from prepost.simulator_client import operation_counts, rules_of, snapshots_of
    from shared.models.ids import run_key
    from shared.usecases.run_report import run_report

    key = run_key(correlation)
    run = run_report(key, records)
    after = _power_states(sim_url)
    snapshots = snapshots_of(_sim_get(sim_url, "snapshots"))
    rules = rules_of(_sim_get(sim_url, "alert-rules"))
    cancellations = rules_of(_sim_get(sim_url, "cancellations"))
    counts = operation_counts(_sim_get(sim_url, "vms"))
    estate = stack.estate

    vm_disks = {vm.id.lower(): [d.id.lower() for d in vm.disks] for vm in estate.vms}
    expected_disks = {disk for disks in vm_disks.values() for disk in disks}
    snapshot_sources = [s["sourceDiskId"].lower() for s in snapshots]
    tasks = run["tasks"]

    def phase_tasks(phase: str) -> list[dict]:
        return [t for t in tasks if t["phase"] == phase]

    arc_ids = {arc.id.lower() for arc in estate.arc_servers}
    arc_skips = [t for t in tasks if t["resourceId"].lower() in arc_ids and t["action"] == "snapshot-disks"]
    was_deallocated = sorted(vm for vm, state in before.items() if state == "deallocated")
    checks = [
        _check(
            "every disk of every Azure VM has exactly one snapshot",
            set(snapshot_sources) == expected_disks and len(snapshot_sources) == len(expected_disks),
            f"{len(snapshot_sources)} snapshots for {len(expected_disks)} disks",
        ),
        _check(
            "Arc servers skipped for snapshots, with a reason",
            len(arc_skips) == len(arc_ids) and all(t["status"] == "skipped" and t["detail"] for t in arc_skips),
            f"{len(arc_skips)} of {len(arc_ids)} Arc servers",
        ),
        _check(
            "every VM deallocated before the run is deallocated after it",
            all(after.get(vm) == "deallocated" for vm in was_deallocated),
            f"{len(was_deallocated)} VMs were deallocated before",
        ),
        _check(
            "every VM running before the run is still running",
            all(after.get(vm) == "running" for vm, state in before.items() if state == "running"),
            f"{sum(1 for s in before.values() if s == 'running')} VMs were running",
        ),
        _check(
            "no VM was started or deallocated more than once",
            all(c.get("start", 0) <= 1 and c.get("deallocate", 0) <= 1 for c in counts.values()),
            f"{sum(c.get('start', 0) for c in counts.values())} starts, "
            f"{sum(c.get('deallocate', 0) for c in counts.values())} deallocations",
        ),
        _check("no alert processing rule left after the post-event", not rules, f"{len(rules)} rules left"),
        _check(
            "the run was not cancelled",
            not cancellations and run["cancellation"] is None,
            f"{len(cancellations)} cancel calls",
        ),
        _check(
            "both phases completed",
            [p["status"] for p in run["phases"]] == ["completed", "completed"],
            ", ".join(f"{p['phase']} {p['status']}" for p in run["phases"]) or "no phases",
        ),
        _check(
            "no task failed",
            all(t["status"] in ("succeeded", "skipped") for t in tasks),
            f"{sum(1 for t in tasks if t['status'] == 'failed')} failed",
        ),
    ]
    summary = {}
    for phase in ("pre", "post"):
        items = phase_tasks(phase)
        summary[phase] = {
            "machines": next((p["machines"] for p in run["phases"] if p["phase"] == phase), 0),
            "tasks": len(items),
            "byAction": _by_action(items),
            "failures": [
                {"resourceId": t["resourceId"], "action": t["action"], "detail": t["detail"]}
                for t in items
                if t["status"] == "failed"
            ],
            "retried": sum(1 for t in items if t["attempts"] > 1),
        }
    return {
        "ok": all(check["ok"] for check in checks),
        "generatedAt": datetime.now(timezone.utc).isoformat(),
        "correlationId": correlation,
        "summary": summary,
        "checks": checks,
        "run": run,
        "simulator": {
            "snapshots": snapshots,
            "alertRules": rules,
            "cancellations": cancellations,
            "powerStatesBefore": before,
            "powerStatesAfter": after,
            "operationCounts": counts,
        },
    }


def _by_action(tasks: list[dict]) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    for task in tasks:
        bucket = result.setdefault(task["action"], {})
        bucket[task["status"]] = bucket.get(task["status"], 0) + 1
    return result


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": bool(ok), "detail": detail}


def render_demo(report: dict[str, Any]) -> str:
    lines = [f"Maintenance run {report['correlationId']}", ""]
    for phase, summary in report["summary"].items():
        lines.append(
            f"[{phase}] {summary['machines']} machines, {summary['tasks']} tasks, "
            f"{summary['retried']} needed more than one attempt"
        )
        for action, counts in sorted(summary["byAction"].items()):
            lines.append(f"    {action:<20} " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        for failure in summary["failures"][:20]:
            lines.append(
                f"    FAILED {failure['action']} {failure['resourceId'].rsplit('/', 1)[-1]}: {failure['detail']}"
            )
    run = report.get("run") or {}
    if run.get("cancellation"):
        cancellation = run["cancellation"]
        lines.append("")
        lines.append(f"Cancellation: {cancellation['result']}")
        lines.append(f"  because {cancellation['reason']}")
    if run.get("gate"):
        from prepost.render import render_gate

        lines.append("")
        lines.extend(render_gate(run["gate"]))
    sim = report["simulator"]
    lines.append("")
    lines.append(
        f"Simulated Azure at the end: {len(sim['snapshots'])} snapshots, {len(sim['alertRules'])} alert "
        f"processing rules, {len(sim['cancellations'])} cancellations"
    )
    lines.append("")
    for check in report["checks"]:
        lines.append(f"  [{'ok' if check['ok'] else 'FAIL'}] {check['check']} ({check['detail']})")
    lines.append("")
    lines.append("Everything ended as expected." if report["ok"] else "Something did not end as expected.")
    return "\n".join(lines)


class _Progress:
    def __init__(self, stream, *, quiet: bool):
        self.stream = stream
        self.quiet = quiet
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=self.stream, flush=True)
