"""``prepost demo``: a whole maintenance window, offline, with a report."""

from __future__ import annotations

from prepost.cli.common import EXIT_FAILED, EXIT_OK


def add_parser(commands) -> None:
    demo = commands.add_parser("demo", help="a whole maintenance window, offline, with a report")
    demo.add_argument("--machines", type=int, default=50, help="Azure VMs in the simulated estate")
    demo.add_argument("--subscriptions", type=int, default=2, help="subscriptions in the simulated estate")
    demo.add_argument("--arc", type=int, default=3, help="Arc-enabled servers")
    demo.add_argument("--faults", default="", help="fault rates, e.g. 429=0.1,500=0.05")
    demo.add_argument("--deliver-twice", action="store_true", help="deliver every event and message twice")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for each phase")
    demo.add_argument(
        "--scenario",
        choices=("normal", "cancel", "budget", "hooks"),
        default="normal",
        help="cancel: failures over the error budget cancel the run; budget: failures within it proceed, "
        "recorded; hooks: pre and post scripts on every machine, one pre script failing",
    )
    demo.set_defaults(handler=demo_command)


def demo_command(args) -> int:
    from prepost.demo import DemoOptions, run_demo

    if args.scenario == "hooks":
        from prepost.demo_hooks import run_hooks_demo

        return EXIT_OK if run_hooks_demo(json_output=args.json, timeout=args.timeout) else EXIT_FAILED

    options = DemoOptions(
        machines=args.machines,
        subscriptions=args.subscriptions,
        arc_servers=args.arc,
        faults=args.faults,
        deliver_twice=args.deliver_twice,
        json_output=args.json,
        timeout=args.timeout,
        scenario=args.scenario,
    )
    return EXIT_OK if run_demo(options) else EXIT_FAILED
