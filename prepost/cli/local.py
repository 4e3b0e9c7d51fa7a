"""``prepost local``: the local stack (Azurite, the management-API simulator, the function app)."""

from __future__ import annotations

from prepost.cli.common import EXIT_OK


def add_parser(commands) -> None:
    local = commands.add_parser("local", help="the local stack (Azurite, management-API simulator, function app)")
    local_commands = local.add_subparsers(title="local commands")
    up = local_commands.add_parser("up", help="start the local stack in the foreground; Ctrl-C stops it")
    up.add_argument(
        "--ports",
        choices=["default", "random"],
        default="default",
        help="default: Azurite on 10000-10002, simulator on 7480, webhook on 7071 "
        "(what local.settings.sample.json expects); random: free ports",
    )
    up.add_argument("--machines", type=int, default=50, help="Azure VMs in the simulated estate")
    up.add_argument("--subscriptions", type=int, default=2, help="subscriptions in the simulated estate")
    up.add_argument("--arc", type=int, default=3, help="Arc-enabled servers in the simulated estate")
    up.add_argument(
        "--no-runner",
        action="store_true",
        help="start Azurite and the simulator only (to run the app under func start)",
    )
    from prepost.cli import estate

    estate.add_local_up_options(up)
    up.set_defaults(handler=local_up)


def local_up(args) -> int:
    from prepost.cli.estate import local_up_options
    from prepost.local.stack import LocalStack

    stack = LocalStack(
        fixed_ports=args.ports == "default",
        machines=args.machines,
        subscriptions=args.subscriptions,
        arc_servers=args.arc,
        with_runner=not args.no_runner,
        **local_up_options(args),
    )
    with stack:
        print(stack.describe(), flush=True)
        stack.wait_for_interrupt()
    print("local stack stopped")
    return EXIT_OK
