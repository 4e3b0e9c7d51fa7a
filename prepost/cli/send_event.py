"""``prepost send-event``: build a maintenance event (or read one from a file) and deliver it.

The run an event names is registered with the local stack's simulator before delivery (its
machines from ``--machines``, the estate file, or the simulator's runs), so the pipeline finds
machines in Resource Graph as it would in Azure.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from prepost.cli.common import webhook_key
from prepost.local.when import EXAMPLES

PRE_LEAD = timedelta(minutes=30)
"""Where ``send-event pre`` puts a run it creates: Update Manager sends the pre-event 30 minutes ahead."""


def add_parser(commands) -> None:
    send = commands.add_parser(
        "send-event",
        help="build a maintenance event now and deliver it",
        description="Build a pre- or post-event (or read events from --file, either schema, any key casing) and "
        "deliver it as Event Grid does. With a local stack running, the run the event names is registered in "
        "its simulator first: `send-event pre` without --start or --correlation-id targets the next run of the "
        "configuration the simulator holds, or creates one 30 minutes from now, and says which.",
    )
    send.add_argument("kind", nargs="?", choices=["pre", "post"], help="which event to build")
    send.add_argument("--file", type=Path, help="deliver the events in this JSON file instead")
    send.add_argument("--config", dest="configuration_id", help="maintenance configuration resource id")
    send.add_argument("--correlation-id", help="the run the event belongs to (post defaults to the last pre sent)")
    send.add_argument(
        "--start",
        metavar="WHEN",
        help=f"the run's scheduled start, past or future ({EXAMPLES}); names the run of the configuration then",
    )
    send.add_argument(
        "--duration", default="2h", metavar="DURATION", help="the window's length, e.g. 2h, 3h55m (default 2h)"
    )
    send.add_argument("--status", default="Succeeded", help="a post-event's status (default Succeeded)")
    send.add_argument("--subscriptions", nargs="+", help="resourceSubscriptionIds of the event")
    send.add_argument(
        "--machines",
        nargs="+",
        metavar="RESOURCE_ID",
        help="register these machines in the simulator's run before sending (replacing what it held)",
    )
    send.add_argument(
        "--schema",
        choices=["eventgrid", "cloudevents"],
        default="eventgrid",
        help="the event's schema, as the Event Grid subscription delivers it (default eventgrid)",
    )
    send.add_argument(
        "--to",
        help="a func start host (http://localhost:7071) or an https:// webhook instead of the running local stack; "
        "a deployed app's system key comes from PREPOST_EVENTGRID_KEY or a prompt, never the URL",
    )
    send.add_argument("--print", dest="print_only", action="store_true", help="print the event instead of sending")
    send.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from prepost.cli import EXIT_FAILED, EXIT_OK, CliError
    from prepost.local.delivery import deliver
    from prepost.local.runs import RunRegistryError
    from prepost.local.state import StackState, remember_run

    state = StackState.load()
    registry = _registry(state)
    if args.machines and registry is None:
        raise CliError("--machines needs the local stack's management-API simulator (prepost local up)")
    if args.file:
        if args.kind or args.start or args.correlation_id:
            raise CliError("--file delivers the events as they are: give no pre|post, --start or --correlation-id")
        events = _read_events(args.file)
    elif args.kind:
        events = [_build(args, state, registry)]
    else:
        raise CliError("say which event: send-event pre|post, or send-event --file FILE")

    if args.print_only:
        print(json.dumps(events, indent=2))
        return EXIT_OK
    url = args.to or (state.webhook_url if state else None)
    if not url:
        raise CliError("no local stack is running: start `prepost local up`, or pass --to http://localhost:7071")
    key = webhook_key(url)
    if registry is not None:
        try:
            _register_runs(events, registry, state, args.machines)
        except RunRegistryError as error:
            raise CliError(str(error)) from error
    result = deliver(url, events, key=key)
    for event in events:
        correlation = correlation_of(event)
        event_type = str(event.get("eventType") or event.get("type") or "") if isinstance(event, Mapping) else ""
        if correlation and event_type.endswith("PreMaintenanceEvent"):
            remember_run(correlation)
        print(f"sent {event_type or 'event'} {correlation or ''}".rstrip())
    print(f"delivery: HTTP {result.status} {result.body}")
    return EXIT_OK if result.ok else EXIT_FAILED


def correlation_of(event: Any) -> str | None:
    """The run an event names: ``data.correlationId`` in any key casing, else the event's id."""
    if not isinstance(event, Mapping):
        return None
    data = event.get("data")
    if isinstance(data, Mapping):
        found = next((v for k, v in data.items() if isinstance(k, str) and k.lower() == "correlationid"), None)
        if isinstance(found, str) and found:
            return found
    event_id = event.get("id")
    return event_id if isinstance(event_id, str) and "/applyupdates/" in event_id.lower() else None


def _registry(state):
    from prepost.local.runs import SimulatorRuns

    return SimulatorRuns(state.simulator_url) if state and state.simulator_url else None


def _read_events(path: Path) -> list[Any]:
    from prepost.cli import CliError

    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read events from {path}: {error}") from error
    return body if isinstance(body, list) else [body]


def _build(args: argparse.Namespace, state, registry) -> dict[str, Any]:
    from prepost.cli import CliError
    from prepost.local.events import DEFAULT_CONFIGURATION, build_event, correlation_id_for
    from prepost.local.runs import RunRegistryError
    from prepost.local.state import last_run
    from prepost.local.when import WhenError, parse_duration, parse_when
    from shared.models.ids import configuration_of

    now = datetime.now(timezone.utc)
    if args.start and args.correlation_id:
        raise CliError("give either --start or --correlation-id: a correlation id holds its run's start")
    configuration = (
        args.configuration_id
        or (configuration_of(args.correlation_id) if args.correlation_id else None)
        or (state.configuration_id if state else None)
        or DEFAULT_CONFIGURATION
    )
    try:
        window = parse_duration(args.duration)
        start = parse_when(args.start, now) if args.start else None
    except WhenError as error:
        raise CliError(str(error)) from error
    correlation = args.correlation_id or (correlation_id_for(configuration, start) if start else None)
    if not correlation and args.kind == "post":
        correlation = last_run()
        if not correlation:
            raise CliError("no pre-event sent yet: pass --correlation-id or --start for the post-event")
    if not correlation and registry is not None:
        # The run a user means by a bare `send-event pre`: the next one the simulator holds.
        try:
            upcoming = registry.next_run(configuration, now)
        except RunRegistryError as error:
            raise CliError(str(error)) from error
        if upcoming is not None:
            correlation = upcoming.correlation_id
            print(f"targets run {correlation}, the next of {configuration.rsplit('/', 1)[-1]} in the simulator")
    if not correlation:
        correlation = correlation_id_for(configuration, (now + PRE_LEAD).replace(second=0, microsecond=0))
        print(f"targets a new run {correlation} (30 minutes from now)")
    run_start = datetime.strptime(correlation.rstrip("/").rsplit("/", 1)[-1], "%Y%m%d%H%M%S").replace(
        tzinfo=timezone.utc
    )
    subscriptions = args.subscriptions or (state.subscription_ids if state else None)
    return build_event(
        args.kind,
        configuration_id=configuration,
        correlation_id=correlation,
        subscription_ids=subscriptions,
        schema=args.schema,
        status=args.status,
        end=run_start + window,
        now=now,
    )


def _register_runs(events: list[Any], registry, state, machines: list[str] | None) -> None:
    from prepost.cli import CliError

    estate = _estate_file(state)
    seen: set[str] = set()
    for index, event in enumerate(events):
        correlation = correlation_of(event)
        if not correlation:
            if machines:
                raise CliError(f"event {index} names no run (no data.correlationId): cannot register --machines")
            continue  # the intake records why it is not a maintenance event
        if correlation.lower() in seen:
            continue
        seen.add(correlation.lower())
        estate_machines = None
        if estate is not None:
            from prepost.simulator.estate import parse_run_id

            try:
                estate_machines = estate.machines_for(parse_run_id(correlation))
            except ValueError:
                estate_machines = None  # not a run id: the intake rejects the event and says why
        try:
            registration = registry.ensure(correlation, machines=machines, estate_machines=estate_machines)
        except ValueError:
            continue  # not a run id: nothing to register; the intake rejects the event and says why
        print(registration.describe())


def _estate_file(state):
    """The estate file the stack was started with, if any (read again from the path `local up` recorded)."""
    from prepost.cli import CliError
    from prepost.estate import EstateFileError, load_estate

    if not state or not state.estate_file:
        return None
    try:
        return load_estate(state.estate_file)
    except EstateFileError as error:
        raise CliError(str(error)) from error
