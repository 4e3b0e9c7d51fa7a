"""``prepost chaos``: the chaos drill (docs/chaos.md)."""

from __future__ import annotations

from prepost.cli.common import CliError


def add_parser(commands) -> None:
    from prepost.chaos.defaults import DEFAULT_ARM_FAULTS, DEFAULT_STORAGE_FAULTS

    chaos = commands.add_parser(
        "chaos",
        help="the chaos drill: many maintenance windows through the app under faults, crashes and disorder",
        description="Run --windows maintenance windows, overlapped, through --instances instances of the app on a "
        "compressed clock, with storage faults (a fault proxy in front of Azurite's queue and table services), "
        "ARM faults (the simulator), instance crashes and disordered events, and check the invariants after "
        "every window. Exits 1 when an invariant was violated. See docs/chaos.md.",
    )
    chaos.add_argument("--seed", type=int, default=1, help="draws the plan, the faults and the crashes (default 1)")
    chaos.add_argument("--windows", type=int, default=20, help="maintenance windows (default 20)")
    chaos.add_argument("--instances", type=int, default=2, help="function-app instances (default 2)")
    chaos.add_argument(
        "--scale", type=float, default=60.0, help="virtual seconds per real second (default 60: 1 s is 1 minute)"
    )
    chaos.add_argument(
        "--storage-faults",
        default=DEFAULT_STORAGE_FAULTS,
        metavar="TEXT",
        help=f"the storage fault proxies' plan ('' for none; default {DEFAULT_STORAGE_FAULTS!r})",
    )
    chaos.add_argument(
        "--arm-faults",
        default=DEFAULT_ARM_FAULTS,
        metavar="TEXT",
        help=f"the simulator's random faults, KIND=RATE with 429, 500, timeout ('' for none; default "
        f"{DEFAULT_ARM_FAULTS!r})",
    )
    chaos.add_argument(
        "--crash-every",
        type=float,
        default=45.0,
        metavar="SECONDS",
        help="kill a random instance about every SECONDS real seconds, restart it a few seconds later (0: never)",
    )
    chaos.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    chaos.add_argument(
        "--keep-logs", metavar="DIR", help="keep the instances' logs in DIR (default: a temp dir, kept on failure)"
    )
    chaos.set_defaults(handler=chaos_command)


def chaos_command(args) -> int:
    from prepost.chaos.drill import DrillError, DrillOptions, run_chaos

    options = DrillOptions(
        seed=args.seed,
        windows=args.windows,
        instances=args.instances,
        scale=args.scale,
        storage_faults=args.storage_faults,
        arm_faults=args.arm_faults,
        crash_every=args.crash_every,
        json_path=args.json,
        keep_logs=args.keep_logs,
    )
    try:
        return run_chaos(options)
    except DrillError as error:
        raise CliError(str(error)) from error
