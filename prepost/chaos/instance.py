"""One instance of the function app for the chaos drill, in its own process.

``python -m prepost.chaos.instance --settings FILE --scale 60 --origin ISO --ready-file PATH``

Installs the drill's scaled clock, applies the settings (what ``local.settings.json`` gives the
host), and runs the real app in the local runner (:class:`prepost.local.runner.FunctionAppRunner`)
with its Event Grid webhook on a free loopback port. The runner's own real-time constants are
scaled like the app's delays: the lease on received messages (10 minutes in Azure), host.json's
``visibilityTimeout`` after a failure (30 s) and its ``maxPollingInterval`` (2 s, capped further
because CPU is scarce when several instances share a small machine).

When ready, writes ``{"url": webhook URL, "pid": pid}`` to the ready file (atomically). Stops
on SIGTERM or SIGINT; the drill kills it with SIGKILL to simulate a crash.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

# The host's real-time constants, scaled for the drill (see prepost.local.runner and host.json).
HOST_LEASE = timedelta(minutes=10)
HOST_VISIBILITY_TIMEOUT = timedelta(seconds=30)
HOST_MAX_POLLING_INTERVAL = timedelta(seconds=2)
DEFAULT_POLL_CAP = 0.25
"""Real seconds: the longest an idle queue goes unpolled. Measured on 2 cores with two instances
and the drill: 0.25 s keeps the idle polling through the fault proxies at a few percent of CPU."""


def scaled_runner_options(scale: float, poll_cap: float = DEFAULT_POLL_CAP):
    """The runner's lease and queue configuration for an app running ``scale`` times faster."""
    from prepost.local.host_config import load_queues_config

    queues = load_queues_config()
    lease = timedelta(seconds=max(1, math.ceil(HOST_LEASE.total_seconds() / scale)))
    visibility = timedelta(seconds=math.ceil(queues.visibility_timeout.total_seconds() / scale))
    if queues.visibility_timeout > timedelta(0):
        visibility = max(visibility, timedelta(seconds=1))  # whole seconds: the runner sends ints
    polling = min(queues.max_polling_interval / scale, timedelta(seconds=poll_cap))
    polling = max(polling, timedelta(milliseconds=50))
    return lease, replace(queues, visibility_timeout=visibility, max_polling_interval=polling)


class _VirtualTimeFormatter(logging.Formatter):
    """Log lines with the real and the virtual time, so they can be matched with the drill's report."""

    def __init__(self, clock, name: str) -> None:
        super().__init__(f"%(asctime)s [virtual %(virtual)s] {name} %(levelname)s %(name)s: %(message)s")
        self.clock = clock

    def format(self, record: logging.LogRecord) -> str:
        from datetime import datetime, timezone

        real = datetime.fromtimestamp(record.created, timezone.utc)
        record.virtual = f"{self.clock.to_virtual(real):%H:%M:%S}"
        return super().format(record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prepost.chaos.instance", description=__doc__)
    parser.add_argument("--settings", required=True, help="JSON file: the app settings (name -> value)")
    parser.add_argument("--scale", required=True, type=float)
    parser.add_argument("--origin", required=True, help="the scaled clock's origin (ISO 8601, UTC)")
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--name", default="instance")
    parser.add_argument("--poll-cap", type=float, default=DEFAULT_POLL_CAP)
    args = parser.parse_args(argv)

    from prepost.chaos.timescale import ScaledClock, ScaledDelayTransport
    from shared.clock import set_clock

    clock = ScaledClock.from_text(args.scale, args.origin)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_VirtualTimeFormatter(clock, args.name))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for noisy in ("azure", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    set_clock(clock)
    settings = json.loads(Path(args.settings).read_text())
    os.environ.update(settings)  # before the app is imported: it reads the transport at import

    from function_app import build_app
    from prepost.local.runner import FunctionAppRunner
    from shared.settings import Transport

    lease, queues = scaled_runner_options(clock.scale, args.poll_cap)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    runner = FunctionAppRunner(
        build_app(Transport.STORAGE),
        env=settings,
        queues=queues,
        lease=lease,
        wrap_transport=lambda inner: ScaledDelayTransport(inner, clock.scale),
    )
    runner.start(webhook_port=0)
    logging.getLogger(__name__).info(
        "%s ready: webhook %s, %s, lease %s, queues %s", args.name, runner.webhook_url, clock, lease, queues
    )
    ready = Path(args.ready_file)
    partial = ready.with_suffix(".tmp")
    partial.write_text(json.dumps({"url": runner.webhook_url, "pid": os.getpid()}))
    partial.replace(ready)
    try:
        while not stopped.wait(1.0):
            pass
    finally:
        runner.stop(timeout=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
