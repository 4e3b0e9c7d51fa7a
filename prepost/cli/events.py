"""``prepost events``: what the intake did with each delivered event."""

from __future__ import annotations

import json

from prepost.cli.common import EXIT_OK, records, storage_options, tables_must_exist


def add_parser(commands) -> None:
    events = commands.add_parser("events", help="what the intake did with each delivered event")
    events_commands = events.add_subparsers(title="events commands")
    events_list = events_commands.add_parser("list", help="recent deliveries: accepted, duplicate, ignored, rejected")
    events_list.add_argument("--limit", type=int, default=20, help="how many deliveries, newest first (default 20)")
    events_list.add_argument("--json", action="store_true", help="print the deliveries as JSON")
    storage_options(events_list)
    events_list.set_defaults(handler=events_list_command)


def events_list_command(args) -> int:
    with tables_must_exist():
        deliveries = records(args).list_deliveries(limit=args.limit)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "receivedAt": d.received_at.isoformat(),
                        "eventId": d.event_id,
                        "eventType": d.event_type,
                        "outcome": d.outcome.value,
                        "reason": d.reason,
                        "correlationId": d.correlation_id,
                        "runKey": d.run_key,
                        "phase": d.phase,
                    }
                    for d in deliveries
                ],
                indent=2,
            )
        )
        return EXIT_OK
    for d in deliveries:
        print(f"{d.received_at:%Y-%m-%d %H:%M:%S}  {d.outcome.value:<9} {d.event_type or '-':<45} {d.reason}")
    if not deliveries:
        print("no deliveries recorded")
    return EXIT_OK
