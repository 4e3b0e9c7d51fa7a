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
from prepost.cli.errors import EXIT_AUTH, EXIT_AZURE, AzureFailure, describe

__all__ = [
    "EXIT_AUTH",
    "EXIT_AZURE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "GROUPS",
    "AzureFailure",
    "CliError",
    "build_parser",
    "main",
]

EXIT_INTERRUPTED = 130

_DEBUG_HELP = "print the traceback of an Azure or network error, not only its line"

GROUPS: tuple[str, ...] = (
    "prepost.cli.local",
    "prepost.cli.send_event",
    "prepost.cli.runs",
    "prepost.cli.events",
    "prepost.cli.replay",
    "prepost.cli.queues",
    "prepost.cli.demo",
    "prepost.cli.chaos",
    "prepost.cli.estate",
    "prepost.cli.preflight",
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
        return EXIT_INTERRUPTED
    except Exception as error:
        found = describe(error)
        if found is None:
            raise  # a bug: the traceback is what is needed
        line, code = found
        if args.debug:
            import traceback

            traceback.print_exception(error)
        print(f"prepost: {line}" + ("" if args.debug else " (--debug shows the traceback)"), file=sys.stderr)
        return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepost",
        description=__doc__.split("\n\n")[0],
        epilog=f"exit codes: {EXIT_OK} done, {EXIT_FAILED} some work failed, {EXIT_USAGE} usage or setup error, "
        f"{EXIT_AZURE} Azure or storage unreachable or refusing, {EXIT_AUTH} authentication or permission refused, "
        f"{EXIT_INTERRUPTED} interrupted",
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the function app does")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    commands = parser.add_subparsers(title="commands")
    for group in GROUPS:
        importlib.import_module(group).add_parser(commands)
    _debug_anywhere(parser)
    return parser


def _debug_anywhere(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the command too (``prepost runs list --debug``), as the error line suggests.

    SUPPRESS as the default: a sub-command's parser would otherwise reset the top-level value.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
                _debug_anywhere(command)


def _version() -> str:
    """The installed distribution's version; the source tree's when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prepost")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["version"]
