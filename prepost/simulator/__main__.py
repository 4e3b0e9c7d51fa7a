"""``python -m prepost.simulator``: serve a generated estate, or an estate file, until Ctrl-C.

Prints the URL, the subscriptions and the seeded run's correlation id, so a demo can point the
function app at it (``PREPOST_ARM_ENDPOINT``) and fire a pre-event for that run, or run
``prepost preflight --arm-endpoint URL`` against the estate a file declares (``--estate FILE``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .config import LroConfig, LroTiming, SimulatorConfig
from .estate import Estate
from .server import SimulatorServer


def _next_hour_plus_one() -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now + timedelta(hours=2)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m prepost.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=50, help="Azure VMs to generate (default 50)")
    parser.add_argument("--subscriptions", type=int, default=2, help="subscriptions to spread them over (default 2)")
    parser.add_argument("--arc", type=int, default=3, help="Arc-enabled servers (default 3, the last one Disconnected)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated estate (default 1)")
    parser.add_argument(
        "--estate",
        type=Path,
        metavar="FILE",
        help="serve this estate file (prepost/estate/estate.schema.json) instead of a generated estate; "
        "--machines, --subscriptions, --arc, --seed, --run-start and --tag are then ignored",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument(
        "--run-start",
        type=datetime.fromisoformat,
        default=None,
        help="scheduled start of the seeded run, ISO 8601 (default: the top of the hour after next, UTC)",
    )
    parser.add_argument(
        "--tag", action="append", default=[], metavar="NAME=VALUE", help="maintenance configuration tag"
    )
    parser.add_argument(
        "--operation-seconds",
        type=float,
        default=None,
        help="make start/deallocate/snapshot operations take this long (default: done at the first poll)",
    )
    return parser.parse_args(argv)


def _estate(args: argparse.Namespace) -> Estate:
    if args.estate is not None:
        # Imported here: prepost.estate builds on this package.
        from prepost.estate import load_estate, to_simulator

        return to_simulator(load_estate(args.estate))
    run_start = args.run_start or _next_hour_plus_one()
    if run_start.tzinfo is None:
        run_start = run_start.replace(tzinfo=UTC)
    tags = dict(item.split("=", 1) for item in args.tag)
    return Estate.generate(
        machines=args.machines,
        subscriptions=args.subscriptions,
        arc_servers=args.arc,
        seed=args.seed,
        run_start=run_start,
        configuration_tags=tags,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from prepost.estate.loader import EstateFileError

    args = _parse(argv)
    try:
        estate = _estate(args)
    except EstateFileError as error:
        print(error, file=sys.stderr)
        return 2
    config = SimulatorConfig()
    if args.operation_seconds is not None:
        # Time-based only: the operation stays InProgress however often it is polled.
        config.lro = LroConfig(default=LroTiming(polls=10**9, seconds=args.operation_seconds, retry_after=1))
    server = SimulatorServer(estate, config, host=args.host, port=args.port).start()
    print(server.url, flush=True)
    print(
        json.dumps(
            {
                "url": server.url,
                "subscriptions": estate.subscription_ids,
                "maintenanceConfigurationIds": [config.id for config in estate.configurations],
                "maintenanceConfigurationId": estate.configurations[0].id if estate.configurations else None,
                "correlationId": estate.runs[0].correlation_id if estate.runs else None,
                "machines": len(estate.machine_ids),
                "inspect": f"{server.url}/_sim/state",
            },
            indent=2,
        ),
        file=sys.stderr,
        flush=True,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
