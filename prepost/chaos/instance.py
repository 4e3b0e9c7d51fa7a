"""One instance of the function app for the chaos drill, in its own process.

``python -m prepost.chaos.instance --settings FILE --scale 60 --origin ISO --ready-file PATH``

Installs the drill's scaled clock, applies the settings (what ``local.settings.json`` gives the
host), and runs the real app in the local runner (:class:`prepost.local.runner.FunctionAppRunner`)
with its Event Grid webhook on a free loopback port. The runner's own real-time constants are
scaled like the app's delays: the lease on received messages (10 minutes in Azure), host.json's
``visibilityTimeout`` after a failure (30 s) and its ``maxPollingInterval`` (2 s, though not below
a quarter of a real second: CPU is scarce when several instances share a small machine), and the
retries of the host's own queue client.

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
HOST_RETRY_DELAY = timedelta(seconds=0.8)
MIN_RETRY_BACKOFF = 0.1
START_ATTEMPTS = 10
DEFAULT_POLL_INTERVAL = 0.25
"""Real seconds: the longest an idle queue goes unpolled. host.json's 2 s scaled by 60 would be
33 ms: four pumps per instance polling that often through the fault proxies keep two cores busy
(measured: the drill then falls behind its own clock). 0.25 s is 15 virtual seconds at scale 60."""


def host_queue_client_options(scale: float) -> dict:
    """The host's queue listener retries storage calls itself (the .NET SDK: exponential from 0.8 s,
    3 retries); scaled, that is well under a second. The Python SDK's default (15 s, then more)
    would stall a pump for a quarter of a virtual hour."""
    from azure.storage.queue import LinearRetry

    backoff = max(HOST_RETRY_DELAY.total_seconds() / scale, MIN_RETRY_BACKOFF)
    return {
        "retry_policy": LinearRetry(backoff=backoff, retry_total=3, random_jitter_range=backoff / 2),  # type: ignore[arg-type]
        "connection_timeout": 5,
        "read_timeout": 10,
    }


def scaled_runner_options(scale: float, poll_interval: float = DEFAULT_POLL_INTERVAL):
    """The runner's lease and queue configuration for an app running ``scale`` times faster."""
    from prepost.local.host_config import load_queues_config

    queues = load_queues_config()
    lease = timedelta(seconds=max(1, math.ceil(HOST_LEASE.total_seconds() / scale)))
    visibility = timedelta(seconds=math.ceil(queues.visibility_timeout.total_seconds() / scale))
    if queues.visibility_timeout > timedelta(0):
        visibility = max(visibility, timedelta(seconds=1))  # whole seconds: the runner sends ints
    polling = max(queues.max_polling_interval / scale, timedelta(seconds=poll_interval))
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
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL)
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

    lease, queues = scaled_runner_options(clock.scale, args.poll_interval)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    log = logging.getLogger(__name__)
    for attempt in range(1, START_ATTEMPTS + 1):
        # A new app object each time: the runner discovers its functions once per app.
        runner = FunctionAppRunner(
            build_app(Transport.STORAGE),
            env=settings,
            queues=queues,
            lease=lease,
            wrap_transport=lambda inner: ScaledDelayTransport(inner, clock.scale),
            queue_client_options=host_queue_client_options(clock.scale),
        )
        try:
            runner.start(webhook_port=0)
            break
        except Exception as error:  # storage faults reach start-up too (creating tables and queues)
            runner.stop(timeout=1.0)
            if attempt == START_ATTEMPTS or stopped.is_set():
                raise
            log.warning("start-up attempt %d failed (%s); trying again", attempt, error)
            stopped.wait(0.5)
    log.info("%s ready: webhook %s, %s, lease %s, queues %s", args.name, runner.webhook_url, clock, lease, queues)
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
