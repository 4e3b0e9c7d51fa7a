"""The ``prepost`` command: run the local stack, send events, inspect runs, run the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prepost", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the function app does")
    commands = parser.add_subparsers(title="commands")

    local = commands.add_parser("local", help="the local stack (Azurite, management-API simulator, function app)")
    local_commands = local.add_subparsers(title="local commands")
    up = local_commands.add_parser("up", help="start the local stack in the foreground; Ctrl-C stops it")
    up.add_argument("--ports", choices=["default", "random"], default="default",
                    help="default: Azurite on 10000-10002, simulator on 7480, webhook on 7071 "
                         "(what local.settings.sample.json expects); random: free ports")
    up.add_argument("--machines", type=int, default=50, help="Azure VMs in the simulated estate")
    up.add_argument("--subscriptions", type=int, default=2, help="subscriptions in the simulated estate")
    up.add_argument("--arc", type=int, default=3, help="Arc-enabled servers in the simulated estate")
    up.add_argument("--no-runner", action="store_true",
                    help="start Azurite and the simulator only (to run the app under func start)")
    up.set_defaults(handler=_local_up)

    send = commands.add_parser("send-event", help="build a maintenance event now and deliver it")
    send.add_argument("kind", nargs="?", choices=["pre", "post"], help="which event to build")
    send.add_argument("--file", type=Path, help="deliver the events in this JSON file instead")
    send.add_argument("--config", dest="configuration_id", help="maintenance configuration resource id")
    send.add_argument("--correlation-id", help="the run the event belongs to (post defaults to the last pre sent)")
    send.add_argument("--subscriptions", nargs="+", help="resourceSubscriptionIds of the event")
    send.add_argument("--machines", nargs="+", metavar="RESOURCE_ID",
                      help="register these machines in the simulator's run before sending")
    send.add_argument("--schema", choices=["eventgrid", "cloudevents"], default="eventgrid")
    send.add_argument("--to", help="a func start host (http://localhost:7071) instead of the running local stack")
    send.add_argument("--print", dest="print_only", action="store_true", help="print the event instead of sending")
    send.set_defaults(handler=_send_event)

    runs = commands.add_parser("runs", help="what the pipeline recorded")
    runs_commands = runs.add_subparsers(title="runs commands")
    runs_list = runs_commands.add_parser("list", help="recent runs")
    runs_list.add_argument("--limit", type=int, default=20)
    runs_list.add_argument("--json", action="store_true")
    _storage_option(runs_list)
    runs_list.set_defaults(handler=_runs_list)
    runs_show = runs_commands.add_parser("show", help="one run: phases and every task")
    runs_show.add_argument("run", help="correlation id or run key")
    runs_show.add_argument("--json", action="store_true")
    _storage_option(runs_show)
    runs_show.set_defaults(handler=_runs_show)

    events = commands.add_parser("events", help="what the intake did with each delivered event")
    events_commands = events.add_subparsers(title="events commands")
    events_list = events_commands.add_parser("list", help="recent deliveries: accepted, duplicate, ignored, rejected")
    events_list.add_argument("--limit", type=int, default=20)
    events_list.add_argument("--json", action="store_true")
    _storage_option(events_list)
    events_list.set_defaults(handler=_events_list)

    demo = commands.add_parser("demo", help="a whole maintenance window, offline, with a report")
    demo.add_argument("--machines", type=int, default=50, help="Azure VMs in the simulated estate")
    demo.add_argument("--subscriptions", type=int, default=2)
    demo.add_argument("--arc", type=int, default=3, help="Arc-enabled servers")
    demo.add_argument("--faults", default="", help="fault rates, e.g. 429=0.1,500=0.05")
    demo.add_argument("--deliver-twice", action="store_true", help="deliver every event and message twice")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for each phase")
    demo.set_defaults(handler=_demo)
    return parser


def _configure_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Library chatter that says nothing about the pipeline: HTTP access lines, pool reuse.
    for name in ("werkzeug", "urllib3.connectionpool", "azure.core.pipeline.policies.http_logging_policy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("root").addFilter(lambda record: "Auth level is not applied" not in record.getMessage())


def _storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help="storage connection string (default: AzureWebJobsStorage, "
                                          "or the running local stack)")


def _records(args):
    from prepost.local.state import StackState
    from shared.adapters.storage_clients import StorageClients
    from shared.adapters.table_records import TableRunRecords
    from shared.names import STORAGE_CONNECTION
    from shared.settings import StorageConnection

    connection = args.storage or os.environ.get(STORAGE_CONNECTION)
    if not connection:
        state = StackState.load()
        connection = state.storage_connection if state else None
    if not connection:
        raise CliError("no storage to read: pass --storage, set AzureWebJobsStorage, or start `prepost local up`")
    return TableRunRecords(StorageClients(StorageConnection(connection_string=connection)))


def _runs_list(args) -> int:
    records = _records(args)
    runs = records.list_runs(limit=args.limit)
    if args.json:
        from shared.usecases.run_report import run_report

        print(json.dumps([run_report(run.run_key, records) for run in runs], indent=2))
        return EXIT_OK
    if not runs:
        print("no runs recorded")
        return EXIT_OK
    from shared.models.run import Phase

    print(f"{'START (UTC)':<20} {'CONFIGURATION':<24} {'PRE':<24} {'POST':<24} CANCELLED  RUN KEY")
    for run in runs:
        cells = []
        for phase in Phase:
            record = records.get_phase(run.run_key, phase)
            cells.append(f"{record.status.value} ({record.finished_tasks}/{record.expected_tasks})" if record else "-")
        cancelled = "yes" if run.cancel_requested_at else "no"
        print(f"{run.start:%Y-%m-%d %H:%M}     {run.configuration_name[:24]:<24} {cells[0]:<24} {cells[1]:<24} "
              f"{cancelled:<10} {run.run_key}")
    return EXIT_OK


def _runs_show(args) -> int:
    from shared.ports.records import RunNotFound
    from shared.usecases.run_report import resolve_run_key, run_report

    records = _records(args)
    try:
        report = run_report(resolve_run_key(args.run, records), records)
    except RunNotFound as error:
        raise CliError(str(error)) from error
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    from prepost.render import render_run

    print(render_run(report))
    return EXIT_OK


def _events_list(args) -> int:
    records = _records(args)
    deliveries = records.list_deliveries(limit=args.limit)
    if args.json:
        print(json.dumps([
            {"receivedAt": d.received_at.isoformat(), "eventId": d.event_id, "eventType": d.event_type,
             "outcome": d.outcome.value, "reason": d.reason, "correlationId": d.correlation_id,
             "runKey": d.run_key, "phase": d.phase}
            for d in deliveries
        ], indent=2))
        return EXIT_OK
    for d in deliveries:
        print(f"{d.received_at:%Y-%m-%d %H:%M:%S}  {d.outcome.value:<9} {d.event_type or '-':<45} {d.reason}")
    if not deliveries:
        print("no deliveries recorded")
    return EXIT_OK


def _send_event(args) -> int:
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
        events = [build_event(args.kind, configuration_id=configuration, correlation_id=correlation,
                              subscription_ids=subscriptions, schema=args.schema)]
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
        correlation = (data or {}).get("correlationId") if isinstance(data, dict) else None
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
        response = requests.post(f"{state.simulator_url}/_sim/runs",
                                 json={"correlationId": correlation, "resourceIds": machines}, timeout=10)
        if response.status_code >= 300:
            raise CliError(f"the simulator refused the machines: HTTP {response.status_code} {response.text}")


def _local_up(args) -> int:
    from prepost.local.stack import LocalStack

    stack = LocalStack(
        fixed_ports=args.ports == "default",
        machines=args.machines,
        subscriptions=args.subscriptions,
        arc_servers=args.arc,
        with_runner=not args.no_runner,
    )
    with stack:
        print(stack.describe(), flush=True)
        stack.wait_for_interrupt()
    print("local stack stopped")
    return EXIT_OK


def _demo(args) -> int:
    from prepost.demo import DemoOptions, run_demo

    options = DemoOptions(
        machines=args.machines,
        subscriptions=args.subscriptions,
        arc_servers=args.arc,
        faults=args.faults,
        deliver_twice=args.deliver_twice,
        json_output=args.json,
        timeout=args.timeout,
    )
    return EXIT_OK if run_demo(options) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
