"""``prepost send-event``: build a maintenance event now and deliver it."""

from __future__ import annotations

import json
from pathlib import Path

from prepost.cli.common import EXIT_FAILED, EXIT_OK, CliError


def add_parser(commands) -> None:
    send = commands.add_parser("send-event", help="build a maintenance event now and deliver it")
    send.add_argument("kind", nargs="?", choices=["pre", "post"], help="which event to build")
    send.add_argument("--file", type=Path, help="deliver the events in this JSON file instead")
    send.add_argument("--config", dest="configuration_id", help="maintenance configuration resource id")
    send.add_argument("--correlation-id", help="the run the event belongs to (post defaults to the last pre sent)")
    send.add_argument("--subscriptions", nargs="+", help="resourceSubscriptionIds of the event")
    send.add_argument(
        "--machines",
        nargs="+",
        metavar="RESOURCE_ID",
        help="register these machines in the simulator's run before sending",
    )
    send.add_argument(
        "--schema",
        choices=["eventgrid", "cloudevents"],
        default="eventgrid",
        help="the event's schema, as the Event Grid subscription delivers it (default eventgrid)",
    )
    send.add_argument("--to", help="a func start host (http://localhost:7071) instead of the running local stack")
    send.add_argument("--print", dest="print_only", action="store_true", help="print the event instead of sending")
    send.set_defaults(handler=send_event)


def send_event(args) -> int:
    from prepost.local.delivery import deliver
    from prepost.local.events import DEFAULT_CONFIGURATION, build_event
    from prepost.local.state import StackState, last_run, remember_run

    state = StackState.load()
    if args.file:
        if args.kind:
            raise CliError("give either pre|post or --file, not both")
        try:
            body = json.loads(args.file.read_text())
        except (OSError, ValueError) as error:
            raise CliError(f"cannot read events from {args.file}: {error}") from error
        events = body if isinstance(body, list) else [body]
    elif args.kind:
        configuration = args.configuration_id or (state.configuration_id if state else None) or DEFAULT_CONFIGURATION
        correlation = args.correlation_id
        if args.kind == "post" and not correlation:
            correlation = last_run()
            if not correlation:
                raise CliError("no pre-event sent yet: pass --correlation-id for the post-event")
        subscriptions = args.subscriptions or (state.subscription_ids if state else None)
        events = [
            build_event(
                args.kind,
                configuration_id=configuration,
                correlation_id=correlation,
                subscription_ids=subscriptions,
                schema=args.schema,
            )
        ]
    else:
        raise CliError("say which event: send-event pre|post, or send-event --file FILE")

    if args.print_only:
        print(json.dumps(events, indent=2))
        return EXIT_OK
    url = args.to or (state.webhook_url if state else None)
    if not url:
        raise CliError("no local stack is running: start `prepost local up`, or pass --to http://localhost:7071")
    if args.machines:
        _register_machines(state, events, args.machines)
    result = deliver(url, events)
    for event in events:
        data = event.get("data") if isinstance(event, dict) else None
        # Data keys come in either casing (correlationId / CorrelationId).
        correlation = (
            next((v for k, v in data.items() if k.lower() == "correlationid"), None) if isinstance(data, dict) else None
        )
        event_type = str(event.get("eventType") or event.get("type") or "") if isinstance(event, dict) else ""
        if correlation and event_type.endswith("PreMaintenanceEvent"):
            remember_run(correlation)
        print(f"sent {event_type or 'event'} {correlation or ''}".rstrip())
    print(f"delivery: HTTP {result.status} {result.body}")
    return EXIT_OK if result.ok else EXIT_FAILED


def _register_machines(state, events, machines) -> None:
    import requests

    if not state or not state.simulator_url:
        raise CliError("--machines needs the local stack's management-API simulator (prepost local up)")
    for event in events:
        correlation = event["data"]["correlationId"]
        response = requests.post(
            f"{state.simulator_url}/_sim/runs", json={"correlationId": correlation, "resourceIds": machines}, timeout=10
        )
        if response.status_code >= 300:
            raise CliError(f"the simulator refused the machines: HTTP {response.status_code} {response.text}")
