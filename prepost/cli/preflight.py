"""``prepost preflight``: check every machine assigned to a maintenance configuration now, and
say what the readiness gate would decide if the window started.

Exit codes: 0 the run would proceed; 3 the run would be cancelled; 1 the check could not be
made (Azure refused or failed); 2 a usage error. Meant for a CI pipeline or a daily timer
before a window (docs/preflight.md).
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import urlparse

EXIT_PROCEED, EXIT_ERROR, EXIT_USAGE, EXIT_WOULD_CANCEL = 0, 1, 2, 3
AZURE = "https://management.azure.com"
PROGRESS_ABOVE = 20
"""Machines above which progress is shown (on stderr, so --json stays clean)."""


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "preflight",
        help="check a configuration's machines now and say what the gate would decide (exit 3: it would cancel)",
        description=__doc__,
    )
    parser.add_argument("--configuration", required=True, help="the maintenance configuration's resource id")
    parser.add_argument(
        "--subscription",
        action="append",
        default=[],
        help="a subscription to look in for assignments and machines (repeatable); default: all the identity can read",
    )
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.add_argument(
        "--arm-endpoint",
        help="management endpoint; default: the running local stack's simulator, else PREPOST_ARM_ENDPOINT, else Azure",
    )
    parser.add_argument("--azure", action="store_true", help="use Azure even when a local stack is running")
    parser.add_argument("--workers", type=int, default=4, help="machines checked at once (default 4)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from shared.clock import utcnow
    from shared.errors import PermanentError, SettingsError, TransientError
    from shared.settings import read_policy_defaults
    from shared.usecases.readiness import preflight_configuration

    if not args.configuration.strip().lower().startswith("/subscriptions/"):
        print("prepost: --configuration must be a maintenance configuration resource id", file=sys.stderr)
        return EXIT_USAGE
    try:
        defaults = read_policy_defaults()
    except SettingsError as error:
        print(f"prepost: {error}", file=sys.stderr)
        return EXIT_USAGE
    endpoint = _endpoint(args)
    ports = _ports(endpoint)
    progress = None if args.json else _progress
    try:
        report = preflight_configuration(
            args.configuration.strip(),
            ports,
            now=utcnow(),
            subscription_ids=args.subscription,
            policy_defaults=defaults,
            progress=progress,
            workers=args.workers,
        )
    except (PermanentError, TransientError) as error:
        print(f"prepost: could not check {args.configuration}: {error}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({**report.to_dict(), "endpoint": endpoint}, indent=2))
    else:
        print(render(report, endpoint))
    return EXIT_WOULD_CANCEL if report.would_cancel else EXIT_PROCEED


def _endpoint(args) -> str:
    if args.arm_endpoint:
        return args.arm_endpoint.rstrip("/")
    if not args.azure:
        from prepost.local.state import StackState

        state = StackState.load()
        if state and state.simulator_url:
            return state.simulator_url.rstrip("/")
    return os.environ.get("PREPOST_ARM_ENDPOINT", AZURE).rstrip("/")


def _ports(endpoint: str):
    from shared.adapters.arm.arc import ArmArcMachines
    from shared.adapters.arm.assignments import ResourceGraphAssignments
    from shared.adapters.arm.clients import ArmClients
    from shared.adapters.arm.compute import ArmCompute
    from shared.adapters.arm.maintenance import ArmMaintenanceConfigurations
    from shared.settings import ArmAuth
    from shared.usecases.readiness import ReadinessPorts

    # A static token only ever goes to a loopback simulator; anything else gets real credentials.
    host = urlparse(endpoint).hostname or ""
    auth = ArmAuth.SIMULATOR if host in ("localhost", "127.0.0.1", "::1") else ArmAuth.AZURE
    clients = ArmClients(endpoint, auth)
    return ReadinessPorts(
        configurations=ArmMaintenanceConfigurations(clients),
        assignments=ResourceGraphAssignments(clients),
        compute=ArmCompute(clients),
        arc=ArmArcMachines(clients),
    )


def _progress(done: int, total: int) -> None:
    step = max(1, total // 20)
    if total > PROGRESS_ABOVE and (done % step == 0 or done == total):
        print(f"checked {done}/{total} machines", file=sys.stderr, flush=True)


def render(report, endpoint: str) -> str:
    policy = report.policy
    lines = [
        f"Configuration  {report.configuration_id}",
        f"Checked        {report.checked_at.isoformat()} against {endpoint}",
        f"Policy         error budget {policy.max_errors}; "
        f"safety-critical: {','.join(policy.safety_critical) or 'none'}; "
        f"cancel on failure: {'yes' if policy.cancel_on_failure else 'no'}",
        f"Assignments    {report.static_assignments} machine(s), {report.dynamic_scopes} dynamic scope(s) "
        f"-> {len(report.machines)} machine(s)",
    ]
    lines.extend(f"  ! {finding}" for finding in policy.findings)
    if report.machines:
        lines.append("")
        lines.append(f"{'MACHINE':<32} {'KIND':<5} {'WORST':<9} FINDINGS")
        for machine in report.machines:
            name = machine.machine_id.rstrip("/").rsplit("/", 1)[-1]
            ordered = sorted(machine.findings, key=lambda f: -f.severity.rank)
            worst = machine.worst.value if machine.worst else "ok"
            first = str(ordered[0]) if ordered else "-"
            lines.append(f"{name[:32]:<32} {machine.kind:<5} {worst:<9} {first}")
            lines.extend(f"{'':<48} {finding}" for finding in ordered[1:])
    lines.append("")
    lines.append(f"Gate           {report.summary}")
    for failing in report.assessment.failing[:50]:
        name = failing.machine.rstrip("/").rsplit("/", 1)[-1]
        lines.append(f"  x {name}: {'; '.join(failing.reasons)}")
    return "\n".join(lines)
