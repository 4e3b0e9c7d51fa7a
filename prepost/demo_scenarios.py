"""The readiness gate in ``prepost demo --scenario cancel|budget``.

- ``cancel``: the snapshots of two running VMs are refused (HTTP 403) and the configuration
  tolerates one (``prepost-max-errors=1``): the gate cancels the run in the simulator as soon as
  the second fails, the report gives the reason and both machines, and the post phase undoes
  the pre-work at once.
- ``budget``: the snapshots of three running VMs are refused, and the configuration allows a
  quarter of its machines to fail (``prepost-max-errors=25%``; with 12 machines or more that
  covers three): the run proceeds, and the record names the machines that go ahead without
  their snapshot, and why.

The normal checks of the demo stay, except those a scenario breaks on purpose.
"""

from __future__ import annotations

from typing import Any

SCENARIOS = ("normal", "cancel", "budget")
FAILING = {"normal": 0, "cancel": 2, "budget": 3}
TAGS = {"normal": {}, "cancel": {"prepost-max-errors": "1"}, "budget": {"prepost-max-errors": "25%"}}
REPLACED = {
    "cancel": {
        "every disk of every Azure VM has exactly one snapshot",
        "the run was not cancelled",
        "both phases completed",
        "no task failed",
    },
    "budget": {"every disk of every Azure VM has exactly one snapshot", "both phases completed", "no task failed"},
}


def tags_for(scenario: str) -> dict[str, str]:
    return dict(TAGS[scenario])


def arrange(scenario: str, stack) -> list[str]:
    """Make the simulator refuse the OS disk snapshots of the scenario's victims; their VM ids."""
    running = [vm for vm in stack.estate.vms if vm.power_state.value == "running"]
    victims = running[: FAILING[scenario]]
    for vm in victims:
        stack.simulator.fail_matching("snapshots.create", f"{vm.name}-osdisk", 403)
    return [vm.id for vm in victims]


def checks(scenario: str, report: dict[str, Any], victims: list[str]) -> list[dict[str, Any]]:
    """The demo's checks for this scenario: the normal ones it keeps, and its own."""
    kept = [check for check in report["checks"] if check["check"] not in REPLACED.get(scenario, set())]
    if scenario == "normal":
        return kept
    run = report["run"]
    gate = run.get("gate") or {}
    failing = {m["machine"].lower() for m in gate.get("failing", [])}
    wanted = {victim.lower() for victim in victims}
    cancellation = run.get("cancellation") or {}
    names = [victim.rsplit("/", 1)[-1] for victim in victims]
    own = [
        _check(
            f"the gate named exactly the {len(victims)} machines whose snapshot was refused",
            failing == wanted,
            ", ".join(sorted(m.rsplit("/", 1)[-1] for m in failing)) or "none",
        )
    ]
    if scenario == "cancel":
        own += [
            _check(
                "the run was cancelled in the simulator, once",
                len(report["simulator"]["cancellations"]) == 1 and cancellation.get("accepted") is True,
                cancellation.get("result") or "no cancellation recorded",
            ),
            _check(
                "the reason names the failing machines and the budget",
                all(name in (cancellation.get("reason") or "") for name in names)
                and "error budget 1" in (cancellation.get("reason") or ""),
                cancellation.get("reason") or "-",
            ),
            _check("the gate decided to cancel", gate.get("verdict") == "cancel", gate.get("moment") or "-"),
        ]
    else:
        own += [
            _check(
                "the gate recorded that the run proceeds within its budget",
                gate.get("verdict") == "proceed" and gate.get("failingCount", 0) <= gate.get("allowed", -1),
                f"{gate.get('failingCount')} failing, budget {gate.get('budget')} allows {gate.get('allowed')}",
            ),
            _check(
                "every other VM has its snapshots",
                _others_snapshotted(report, wanted),
                f"{len(report['simulator']['snapshots'])} snapshots",
            ),
        ]
    return kept + own


def _others_snapshotted(report: dict[str, Any], victims: set[str]) -> bool:
    tasks = report["run"]["tasks"]
    snapshots = [t for t in tasks if t["phase"] == "pre" and t["action"] == "snapshot-disks"]
    vms = [t for t in snapshots if "/virtualmachines/" in t["resourceId"].lower()]
    others = [t for t in vms if t["resourceId"].lower() not in victims]
    return bool(others) and all(t["status"] == "succeeded" for t in others)


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": bool(ok), "detail": detail}
