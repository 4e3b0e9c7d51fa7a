"""``prepost estate export|check`` and the estate options of ``prepost local up``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def add_local_up_options(up: argparse.ArgumentParser) -> None:
    up.add_argument(
        "--estate",
        type=Path,
        metavar="FILE",
        help="seed the simulator from this estate file (prepost estate export writes one; schema: "
        "prepost/estate/estate.schema.json) instead of generating --machines/--subscriptions/--arc",
    )
    up.add_argument(
        "--allow-configurations",
        metavar="IDS",
        help="PREPOST_ALLOWED_CONFIGURATIONS for the app, comma-separated or * (default: the exported variable, "
        "else the estate's configurations)",
    )
    up.add_argument(
        "--allow-subscriptions",
        metavar="IDS",
        help="PREPOST_ALLOWED_SUBSCRIPTIONS for the app, comma-separated or * (default: the exported variable, "
        "else the estate's subscriptions)",
    )


def local_up_options(args: argparse.Namespace) -> dict[str, Any]:
    """LocalStack keyword arguments for the estate options (the estate file read and checked here)."""
    from prepost.cli import CliError
    from prepost.estate import EstateFileError, load_estate, to_simulator

    options: dict[str, Any] = {
        "allowed_configurations": args.allow_configurations,
        "allowed_subscriptions": args.allow_subscriptions,
        # The user's exported PREPOST_ALLOWED_* count, unless an option overrides them.
        "environ": dict(os.environ),
    }
    if args.estate:
        try:
            estate = load_estate(args.estate)
        except EstateFileError as error:
            raise CliError(str(error)) from error
        options.update(
            estate=to_simulator(estate),
            estate_file=str(args.estate.resolve()),
        )
    return options


def add_parser(commands) -> None:
    estate = commands.add_parser("estate", help="estate files: export a real estate, check a file")
    estate_commands = estate.add_subparsers(title="estate commands")

    export = estate_commands.add_parser(
        "export",
        help="write the estate around maintenance configurations to an estate file (reads only)",
        description="Read the maintenance configurations, their assignments and dynamic scopes, the VMs and Arc "
        "servers they cover (OS, disks and their snapshot counts, power state, patch settings, tags, VM agent "
        "state, Arc status, agent version and automatic upgrade, extension states) and their most recent runs, "
        "with Resource Graph queries and ARM GETs only: Reader on the subscriptions is enough, and every other "
        "request is refused before it is sent. Then rehearse the window offline: prepost local up --estate FILE.",
    )
    export.add_argument(
        "--configuration",
        dest="configurations",
        action="append",
        required=True,
        metavar="ID",
        help="maintenance configuration resource id (repeat for several)",
    )
    export.add_argument("--out", type=Path, help="write the file here (default: print it)")
    export.add_argument("--anonymise", action="store_true", help="replace names and ids, consistently")
    export.add_argument("--salt", help="with --anonymise: the same salt anonymises the same ids alike")
    export.add_argument(
        "--subscriptions", nargs="+", metavar="ID", help="look for machines in these (default: those assigned)"
    )
    export.add_argument("--runs", type=int, default=1, metavar="N", help="the N most recent runs (default 1)")
    export.add_argument(
        "--all-machines", action="store_true", help="keep machines no assignment or dynamic scope covers"
    )
    export.add_argument(
        "--endpoint",
        default="https://management.azure.com",
        help="ARM endpoint (default Azure's, with your Azure login); --local reads the local stack's simulator",
    )
    export.add_argument("--local", action="store_true", help="read the running local stack's simulator")
    export.set_defaults(handler=run_export)

    check = estate_commands.add_parser("check", help="check an estate file and say what it declares")
    check.add_argument("file", type=Path, help="the estate file (JSON, see prepost/estate/estate.schema.json)")
    check.set_defaults(handler=run_check)


def run_export(args: argparse.Namespace) -> int:
    from prepost.cli import EXIT_OK, CliError
    from prepost.estate.anonymise import anonymise
    from prepost.estate.export import ExportError, export_estate, read_only_clients
    from prepost.estate.writer import estate_to_json
    from shared.settings import ArmAuth

    if args.local:
        from prepost.local.state import StackState

        state = StackState.load()
        if not state or not state.simulator_url:
            raise CliError("--local needs a running local stack (prepost local up)")
        clients = read_only_clients(state.simulator_url, ArmAuth.SIMULATOR)
    else:
        clients = read_only_clients(args.endpoint, ArmAuth.AZURE)
    try:
        estate, summary = export_estate(
            clients,
            args.configurations,
            subscriptions=args.subscriptions,
            recent_runs=max(0, args.runs),
            all_machines=args.all_machines,
        )
    except ExportError as error:
        raise CliError(str(error)) from error
    if args.anonymise:
        estate = anonymise(estate, salt=args.salt)
    text = json.dumps(estate_to_json(estate), indent=2) + "\n"
    report = (
        f"{summary.configurations} configuration(s), {summary.machines_kept} of {summary.machines_seen} machines "
        f"seen, {summary.runs} run(s), {summary.queries} Resource Graph queries, {summary.reads} ARM reads"
        + (", anonymised" if args.anonymise else "")
    )
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}: {report}")
    else:
        sys.stdout.write(text)
        print(report, file=sys.stderr)
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    from prepost.cli import EXIT_OK, CliError
    from prepost.estate import EstateFileError, load_estate

    try:
        estate = load_estate(args.file)
    except EstateFileError as error:
        raise CliError(str(error)) from error
    counts = ", ".join(f"{value} {name}" for name, value in estate.counts().items())
    print(f"{args.file}: valid ({counts})")
    for config in estate.configurations:
        print(f"  {config.name}: {len(estate.machines_for(config.id))} machines")
    return EXIT_OK
