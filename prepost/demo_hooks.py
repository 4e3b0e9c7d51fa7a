"""``prepost demo --scenario hooks``: a window with pre and post scripts on every machine, one
machine's pre script failing, and what follows from it (docs/hooks.md).

The sample scripts (nginx on Linux, an IIS pool on Windows) are uploaded to the ``prepost-hooks``
container of the local Azurite and declared with configuration tags; the simulator is told that
the first Linux VM's script exits 2 with ``nginx still active`` on its error stream. The
pre-event is delivered; the failed pre script cancels the run; the cancellation starts the post
phase at once, and every machine gets its post script. The report shows each machine's scripts
and checks what must hold.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import requests

from prepost.demo import DEMO_TAGS, _Progress, _sim_get
from prepost.local.delivery import deliver
from prepost.local.events import build_event
from prepost.local.hook_scripts import SAMPLE_HOOK_TAGS, upload_scripts
from prepost.local.stack import LocalStack

FAILING_OUTPUT = {"exitCode": 2, "durationSeconds": 1, "output": "stopping nginx\n", "error": "nginx still active\n"}


def run_hooks_demo(
    *,
    machines: int = 8,
    arc_servers: int = 2,
    json_output: bool = False,
    timeout: float = 240.0,
    out=sys.stdout,
    err=sys.stderr,
) -> bool:
    """Run the scenario; print the report; True if everything ended as expected."""
    progress = _Progress(err, quiet=False)
    progress.say(f"starting Azurite, the simulator ({machines} VMs, {arc_servers} Arc servers) and the function app")
    stack = LocalStack(
        machines=machines,
        arc_servers=arc_servers,
        configuration_tags={**DEMO_TAGS, **SAMPLE_HOOK_TAGS},
        write_state=False,
    )
    with stack:
        sim = stack.simulator.url
        upload_scripts(stack.azurite.endpoints.connection_string)
        progress.say("scripts uploaded to prepost-hooks: " + ", ".join(sorted(_script_names())))
        for arc in stack.estate.arc_servers:  # only the programmed script fails in this scenario
            requests.post(f"{sim}/_sim/arc-servers", json={"id": arc.id, "status": "Connected"}, timeout=10)
        failing = next(vm for vm in stack.estate.vms if vm.os_type.value == "Linux")
        program = {"id": failing.id, "nameContains": "-pre-", **FAILING_OUTPUT}
        requests.post(f"{sim}/_sim/run-commands", json=program, timeout=10).raise_for_status()
        progress.say(f"{failing.name}: its pre script will exit 2 (nginx still active)")

        correlation = stack.estate.run.correlation_id
        event = build_event("pre", correlation_id=correlation, subscription_ids=stack.subscription_ids)
        result = deliver(stack.runner.webhook_url, [event])
        if not result.ok:
            progress.say(f"pre-event delivery failed: HTTP {result.status} {result.body}")
            return False
        progress.say("pre-event delivered")
        records = stack.runner.container.records
        ended = _wait(records, correlation, timeout, progress)
        report = build_hooks_report(records, correlation, sim, failing.id, stack, ended)
    print(json.dumps(report, indent=2) if json_output else render_hooks_demo(report), file=out)
    return report["ok"]


def _script_names() -> list[str]:
    from prepost.local.hook_scripts import SAMPLE_SCRIPTS

    return list(SAMPLE_SCRIPTS)


def _wait(records, correlation: str, timeout: float, progress) -> bool:
    """Until the post phase (started by the cancellation) is final."""
    from shared.models.ids import run_key
    from shared.models.run import Phase

    key = run_key(correlation)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        pre, post = records.get_phase(key, Phase.PRE), records.get_phase(key, Phase.POST)
        run = records.get_run(key)
        line = (
            f"pre: {pre.status.value if pre else '-'}; "
            f"cancel: {'requested' if run.cancel_requested_at else '-'}; "
            f"post: {post.status.value if post else '-'}"
        )
        if line != last:
            progress.say(line)
            last = line
        if post is not None and post.status.is_final:
            return True
        time.sleep(0.25)  # polling the records for progress output, not synchronising a test
    progress.say(f"not finished within {timeout:.0f} s")
    return False


def build_hooks_report(records, correlation: str, sim: str, failing_id: str, stack, ended: bool) -> dict[str, Any]:
    from shared.models.ids import run_key
    from shared.usecases.run_report import run_report

    run = run_report(run_key(correlation), records)
    book = _sim_get(sim, "run-commands")
    executions: dict[tuple[str, str], int] = {}
    for execution in book["executions"]:
        key = (execution["machineId"].lower(), str(execution["parameters"].get("PREPOST_PHASE")))
        executions[key] = executions.get(key, 0) + 1
    machines = [*stack.estate.vms, *stack.estate.arc_servers]
    rows = []
    for machine in machines:
        scripts = {
            t["action"]: t
            for t in run["tasks"]
            if t["resourceId"].lower() == machine.id.lower() and "script" in t["action"]
        }
        rows.append(
            {
                "machine": machine.name,
                "os": machine.os_type.value,
                "pre": _summary(scripts.get("pre-script")),
                "post": _summary(scripts.get("post-script")),
                "runs": {phase: executions.get((machine.id.lower(), phase), 0) for phase in ("pre", "post")},
            }
        )
    failing_pre = next(
        (t for t in run["tasks"] if t["action"] == "pre-script" and t["resourceId"].lower() == failing_id.lower()),
        None,
    )
    cancellation = run["cancellation"] or {}
    pre_ran = [row for row in rows if row["runs"]["pre"]]
    checks = [
        _check("both phases ended", ended, ", ".join(f"{p['phase']} {p['status']}" for p in run["phases"])),
        _check(
            "the failing machine's pre script is recorded failed, with its exit code and error stream",
            bool(failing_pre)
            and failing_pre["status"] == "failed"
            and failing_pre["data"].get("exit_code") == 2
            and "nginx still active" in failing_pre["data"].get("error_tail", ""),
            failing_pre["detail"] if failing_pre else "no pre-script task",
        ),
        _check(
            "the run was cancelled because of it",
            bool(cancellation.get("accepted")) and "pre tasks failed" in (cancellation.get("reason") or ""),
            cancellation.get("reason") or "not cancelled",
        ),
        _check(
            "every machine whose pre script ran got its post script",
            all(row["runs"]["post"] == 1 for row in pre_ran),
            f"{len(pre_ran)} machines ran a pre script",
        ),
        _check(
            "no script ran twice on a machine",
            all(count == 1 for count in executions.values()),
            f"{sum(executions.values())} script runs",
        ),
        _check("no run command left on any machine", not book["value"], f"{len(book['value'])} left"),
    ]
    return {
        "ok": all(check["ok"] for check in checks),
        "correlationId": correlation,
        "machines": rows,
        "checks": checks,
        "run": run,
    }


def _summary(task: dict | None) -> dict[str, Any] | None:
    if task is None:
        return None
    data = task["data"]
    return {
        "status": task["status"],
        "script": data.get("script"),
        "exitCode": data.get("exit_code"),
        "seconds": data.get("duration_seconds"),
        "detail": task["detail"],
    }


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": bool(ok), "detail": detail}


def render_hooks_demo(report: dict[str, Any]) -> str:
    lines = [f"Maintenance run {report['correlationId']} with pre and post scripts", ""]
    lines.append(f"{'MACHINE':<14} {'OS':<8} {'PRE SCRIPT':<38} POST SCRIPT")

    def cell(summary: dict | None) -> str:
        if summary is None:
            return "-"
        code = f" exit {summary['exitCode']}" if summary["exitCode"] is not None else ""
        return f"{summary['status']}{code} {summary['script'] or ''}".strip()

    for row in report["machines"]:
        lines.append(f"{row['machine']:<14} {row['os']:<8} {cell(row['pre'])[:38]:<38} {cell(row['post'])}")
    cancellation = report["run"]["cancellation"]
    lines.append("")
    lines.append(f"Cancel: {cancellation['result']} ({cancellation['reason']})" if cancellation else "Cancel: none")
    lines.append("")
    for check in report["checks"]:
        lines.append(f"  [{'ok' if check['ok'] else 'FAIL'}] {check['check']} ({check['detail']})")
    lines.append("")
    lines.append("Everything ended as expected." if report["ok"] else "Something did not end as expected.")
    return "\n".join(lines)
