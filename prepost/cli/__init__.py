"""The ``prepost`` command: run the local stack, send events, inspect runs, replay dead letters, run the demo.

Each command group lives in its own module exposing ``add_parser(commands)``, which adds its
sub-parser(s) to the top-level ``commands`` (an argparse sub-parsers action) and sets a
``handler(args) -> int`` default on each leaf. :data:`GROUPS` lists them: registering a group
is one line there.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from prepost.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, configure_logging

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "GROUPS", "CliError", "build_parser", "main"]

GROUPS: tuple[str, ...] = (
    "prepost.cli.local",
    "prepost.cli.send_event",
    "prepost.cli.runs",
    "prepost.cli.events",
    "prepost.cli.replay",
    "prepost.cli.queues",
    "prepost.cli.demo",
    "prepost.cli.chaos",
)
"""The command groups, in the order ``prepost --help`` lists them: modules with ``add_parser(commands)``."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except CliError as error:
        print(f"prepost: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prepost", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the function app does")
    commands = parser.add_subparsers(title="commands")
    for group in GROUPS:
        importlib.import_module(group).add_parser(commands)
    return parser
