"""The ``prepost`` command: run the local stack, send events, inspect runs, replay dead letters, run the demo."""

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
    up.add_argument(
        "--ports",
        choices=["default", "random"],
        default="default",
        help="default: Azurite on 10000-10002, simulator on 7480, webhook on 7071 "
        "(what local.settings.sample.json expects); random: free ports",
    )
    up.add_argument("--machines", type=int, default=50, help="Azure VMs in the simulated estate")
    up.add_argument("--subscriptions", type=int, default=2, help="subscriptions in the simulated estate")
    up.add_argument("--arc", type=int, default=3, help="Arc-enabled servers in the simulated estate")
    up.add_argument(
        "--no-runner",
        action="store_true",
        help="start Azurite and the simulator only (to run the app under func start)",
    )
    up.set_defaults(handler=_local_up)

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
    send.add_argument("--schema", choices=["eventgrid", "cloudevents"], default="eventgrid")
    send.add_argument("--to", help="a func start host (http://localhost:7071) instead of the running local stack")
    send.add_argument("--print", dest="print_only", action="store_true", help="print the event instead of sending")
    send.set_defaults(handler=_send_event)

    runs = commands.add_parser("runs", help="what the pipeline recorded")
    runs_commands = runs.add_subparsers(title="runs commands")
    runs_list = runs_commands.add_parser("list", help="recent runs")
    runs_list.add_argument("--limit", type=int, default=20)
    runs_list.add_argument("--json", action="store_true")
    _storage_options(runs_list)
    runs_list.set_defaults(handler=_runs_list)
    runs_show = runs_commands.add_parser("show", help="one run: phases and every task")
    runs_show.add_argument("run", help="correlation id or run key")
    runs_show.add_argument("--json", action="store_true")
    _storage_options(runs_show)
    runs_show.set_defaults(handler=_runs_show)

    events = commands.add_parser("events", help="what the intake did with each delivered event")
    events_commands = events.add_subparsers(title="events commands")
    events_list = events_commands.add_parser("list", help="recent deliveries: accepted, duplicate, ignored, rejected")
    events_list.add_argument("--limit", type=int, default=20)
    events_list.add_argument("--json", action="store_true")
    _storage_options(events_list)
    events_list.set_defaults(handler=_events_list)

    _replay_parsers(commands)

    demo = commands.add_parser("demo", help="a whole maintenance window, offline, with a report")
    demo.add_argument("--machines", type=int, default=50, help="Azure VMs in the simulated estate")
    demo.add_argument("--subscriptions", type=int, default=2)
    demo.add_argument("--arc", type=int, default=3, help="Arc-enabled servers")
    demo.add_argument("--faults", default="", help="fault rates, e.g. 429=0.1,500=0.05")
    demo.add_argument("--deliver-twice", action="store_true", help="deliver every event and message twice")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for each phase")
    demo.add_argument(
        "--scenario",
        choices=("normal", "cancel", "budget"),
        default="normal",
        help="cancel: failures over the error budget cancel the run; budget: failures within it proceed, recorded",
    )
    demo.set_defaults(handler=_demo)

    _chaos_parser(commands)
    from prepost import preflight_command

    preflight_command.add_parser(commands)
    return parser


def _chaos_parser(commands) -> None:
    from prepost.chaos.defaults import DEFAULT_ARM_FAULTS, DEFAULT_STORAGE_FAULTS

    chaos = commands.add_parser(
        "chaos",
        help="the chaos drill: many maintenance windows through the app under faults, crashes and disorder",
        description="Run --windows maintenance windows, overlapped, through --instances instances of the app on a "
        "compressed clock, with storage faults (a fault proxy in front of Azurite's queue and table services), "
        "ARM faults (the simulator), instance crashes and disordered events, and check the invariants after "
        "every window. Exits 1 when an invariant was violated. See docs/chaos.md.",
    )
    chaos.add_argument("--seed", type=int, default=1, help="draws the plan, the faults and the crashes (default 1)")
    chaos.add_argument("--windows", type=int, default=20, help="maintenance windows (default 20)")
    chaos.add_argument("--instances", type=int, default=2, help="function-app instances (default 2)")
    chaos.add_argument(
        "--scale", type=float, default=60.0, help="virtual seconds per real second (default 60: 1 s is 1 minute)"
    )
    chaos.add_argument(
        "--storage-faults",
        default=DEFAULT_STORAGE_FAULTS,
        metavar="TEXT",
        help=f"the storage fault proxies' plan ('' for none; default {DEFAULT_STORAGE_FAULTS!r})",
    )
    chaos.add_argument(
        "--arm-faults",
        default=DEFAULT_ARM_FAULTS,
        metavar="TEXT",
        help=f"the simulator's random faults, KIND=RATE with 429, 500, timeout ('' for none; default "
        f"{DEFAULT_ARM_FAULTS!r})",
    )
    chaos.add_argument(
        "--crash-every",
        type=float,
        default=45.0,
        metavar="SECONDS",
        help="kill a random instance about every SECONDS real seconds, restart it a few seconds later (0: never)",
    )
    chaos.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    chaos.add_argument(
        "--keep-logs", metavar="DIR", help="keep the instances' logs in DIR (default: a temp dir, kept on failure)"
    )
    chaos.set_defaults(handler=_chaos)


def _replay_parsers(commands) -> None:
    from shared.names import QueueName

    queue_names = [queue.value for queue in QueueName]
    replay = commands.add_parser(
        "replay", help="send dead-lettered work back: poison-queue messages, dead-lettered Event Grid events"
    )
    replay_commands = replay.add_subparsers(title="replay commands")

    poison = replay_commands.add_parser(
        "poison",
        help="send the messages of QUEUE-poison back to QUEUE",
        description="Read QUEUE-poison, print each message's reason, send its original body back to QUEUE "
        "(base64, as the Functions host expects) and delete it from the poison queue once the send "
        "succeeded. Messages parked by prepost are unwrapped; messages poisoned by the host are "
        "sent as they are. Replaying is safe against repeats: every handler is idempotent (runs "
        "and phases are created only if absent, tasks have deterministic ids and idempotency records, "
        "outcomes of finished tasks are ignored, snapshots have deterministic names), so work that "
        "already took effect is not done again. A replayed task acts on the machine as it is now: "
        "check the run (prepost runs show) before replaying work of a window long past.",
    )
    poison.add_argument("queue", choices=queue_names, metavar="QUEUE", help=", ".join(queue_names))
    poison.add_argument(
        "--dry-run",
        action="store_true",
        help="only show what would be replayed (the first 32 messages); change nothing",
    )
    poison.add_argument("--limit", type=_positive, help="replay at most N messages")
    poison.add_argument(
        "--transport",
        choices=["storage", "servicebus"],
        help="the app's PREPOST_TRANSPORT (default: the environment's, else storage); with "
        "servicebus, prepost-plan and prepost-vm-tasks are Service Bus queues and are refused",
    )
    _storage_options(poison)
    poison.set_defaults(handler=_replay_poison)

    events = replay_commands.add_parser(
        "events",
        help="deliver Event Grid dead-lettered events to the intake again",
        description="Read dead-lettered events (a blob Event Grid wrote, saved as --file, or every blob of "
        "--container except replayed/...), remove the fields Event Grid added (deadLetterReason, "
        "deliveryAttempts, lastDeliveryOutcome, lastHttpStatusCode, publishTime, "
        "lastDeliveryAttemptTime), print each reason and deliver the events to the Event Grid "
        "webhook of the function app. With --container, a blob delivered with HTTP 2xx is moved "
        "to replayed/ (copy, then delete), so nothing is replayed twice by accident. Replaying is safe "
        "against repeats: the intake is idempotent, so an event it already handled is recorded as a "
        "duplicate and starts no work twice. A pre-event of a window already past still starts its "
        "pre-work late (see docs/operations.md).",
    )
    source = events.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="a dead-letter blob saved as a file (left as it is)")
    source.add_argument("--container", help="the dead-letter blob container (eventgrid-deadletter in infra/)")
    events.add_argument("--prefix", help="only blobs whose names start with this (e.g. the subscription's name)")
    events.add_argument(
        "--to",
        help="webhook: a func start host (http://localhost:7071) or the deployed app's "
        "https://<app>.azurewebsites.net/runtime/webhooks/eventgrid?functionName="
        "maintenance_event_intake&code=<system key> (default: the running local stack)",
    )
    events.add_argument("--dry-run", action="store_true", help="only show what would be replayed; change nothing")
    _storage_options(events)
    events.set_defaults(handler=_replay_events)

    servicebus_queues = _servicebus_queue_names()
    deadletter = replay_commands.add_parser(
        "deadletter",
        help="send the messages of a Service Bus queue's dead-letter queue back to it",
        description="Receive QUEUE/$deadletterqueue, print each message's DeadLetterReason and description, "
        "send its body back to QUEUE under a new deterministic MessageId with its retry counter reset, "
        "and complete the dead-lettered copy once the send succeeded. A failed send leaves the message "
        "where it is and stops. Replaying is safe against repeats: a task that already took effect is "
        "not done again. Check the run (prepost runs show) before replaying work of a window long past.",
    )
    deadletter.add_argument("queue", choices=servicebus_queues, metavar="QUEUE", help=", ".join(servicebus_queues))
    deadletter.add_argument(
        "--dry-run", action="store_true", help="only show what would be replayed (the first 32); change nothing"
    )
    deadletter.add_argument("--limit", type=_positive, help="replay at most N messages")
    deadletter.add_argument("--run", metavar="RUN_KEY", help="only the messages of this run (property runKey)")
    _servicebus_options(deadletter)
    deadletter.set_defaults(handler=_replay_deadletter)

    deadletter_parent = commands.add_parser("deadletter", help="what sits in the Service Bus dead-letter queues")
    deadletter_commands = deadletter_parent.add_subparsers(title="deadletter commands")
    deadletter_list = deadletter_commands.add_parser(
        "list", help="dead-lettered messages per Service Bus queue, with their reasons (the first 32)"
    )
    deadletter_list.add_argument(
        "queue", nargs="?", choices=servicebus_queues, metavar="QUEUE", help="one queue (default: both)"
    )
    deadletter_list.add_argument("--json", action="store_true")
    _servicebus_options(deadletter_list)
    deadletter_list.set_defaults(handler=_deadletter_list)

    poison_list_parent = commands.add_parser("poison", help="what sits in the -poison queues")
    poison_commands = poison_list_parent.add_subparsers(title="poison commands")
    poison_list = poison_commands.add_parser("list", help="message count and reasons per poison queue")
    poison_list.add_argument(
        "queue", nargs="?", choices=queue_names, metavar="QUEUE", help="one queue (default: all of them)"
    )
    poison_list.add_argument("--json", action="store_true")
    _storage_options(poison_list)
    poison_list.set_defaults(handler=_poison_list)


def _servicebus_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--servicebus",
        metavar="CONNECTION_STRING",
        help="Service Bus connection string (default: ServiceBusConnection)",
    )
    parser.add_argument(
        "--namespace",
        help="fully qualified namespace (NAME.servicebus.windows.net), reached with your Entra ID login "
        "(DefaultAzureCredential; default: ServiceBusConnection__fullyQualifiedNamespace)",
    )


def _servicebus_queue_names() -> list[str]:
    from shared.adapters.servicebus_transport import SERVICEBUS_QUEUES

    return sorted(queue.value for queue in SERVICEBUS_QUEUES)


def _servicebus_client(args):
    """A Service Bus client from --servicebus, --namespace or the ServiceBusConnection settings."""
    from shared.adapters.servicebus_transport import create_servicebus_client
    from shared.names import SERVICEBUS_CONNECTION
    from shared.settings import ServiceBusConnection

    if args.servicebus and args.namespace:
        raise CliError("give either --servicebus or --namespace, not both")
    connection_string = args.servicebus or (None if args.namespace else os.environ.get(SERVICEBUS_CONNECTION))
    namespace = args.namespace or os.environ.get(f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace")
    if not connection_string and not namespace:
        raise CliError(
            f"no Service Bus to read: give --servicebus or --namespace, or set {SERVICEBUS_CONNECTION} "
            f"or {SERVICEBUS_CONNECTION}__fullyQualifiedNamespace"
        )
    return create_servicebus_client(ServiceBusConnection(connection_string, None if connection_string else namespace))


def _replay_deadletter(args) -> int:
    from azure.servicebus.exceptions import ServiceBusError

    from prepost.deadletter import DeadLetterOutcome, replay_dead_letters

    verb = "would replay (dry run: nothing changes)" if args.dry_run else "replaying"
    print(f"{verb} {args.queue}/$deadletterqueue -> {args.queue}")
    try:
        with _servicebus_client(args) as client:
            summary = replay_dead_letters(
                client,
                args.queue,
                dry_run=args.dry_run,
                limit=args.limit,
                run_key=args.run,
                report=_print_dead_letter_result,
            )
    except ServiceBusError as error:
        print(f"prepost: reading {args.queue}/$deadletterqueue failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        print(f"{len(summary.results)} shown (a dry run shows at most 32)")
    else:
        print(
            f"{summary.count(DeadLetterOutcome.REPLAYED)} replayed, "
            f"{summary.count(DeadLetterOutcome.FAILED)} failed (replay {summary.replay_id})"
        )
    return EXIT_OK if summary.ok else EXIT_FAILED


def _print_dead_letter_result(result) -> None:
    from prepost.replay import describe_body

    message = result.message
    print(f"  {result.outcome.value:<13} {describe_body(message.body.decode('utf-8', 'replace'))}")
    enqueued = f"{message.enqueued_at:%Y-%m-%d %H:%M:%S}" if message.enqueued_at else "-"
    print(f"  {'':<13} #{message.sequence_number} enqueued {enqueued}: {message.explanation}")
    if result.detail:
        print(f"  {'':<13} {result.detail}")


def _deadletter_list(args) -> int:
    from azure.servicebus.exceptions import ServiceBusError

    from prepost.deadletter import PEEK_LIMIT, peek_dead_letters

    queues = [args.queue] if args.queue else _servicebus_queue_names()
    found = {}
    try:
        with _servicebus_client(args) as client:
            for queue in queues:
                found[queue] = peek_dead_letters(client, queue)
    except ServiceBusError as error:
        print(f"prepost: reading the dead-letter queues failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(
            json.dumps(
                {
                    queue: [
                        {
                            "messageId": m.message_id,
                            "sequenceNumber": m.sequence_number,
                            "enqueuedAt": m.enqueued_at.isoformat() if m.enqueued_at else None,
                            "reason": m.reason,
                            "description": m.description,
                            "deliveryCount": m.delivery_count,
                            "properties": dict(m.application_properties),
                        }
                        for m in messages
                    ]
                    for queue, messages in found.items()
                },
                indent=2,
            )
        )
        return EXIT_OK
    for queue, messages in found.items():
        more = "+" if len(messages) >= PEEK_LIMIT else ""
        print(f"{queue}/$deadletterqueue  {len(messages)}{more}")
        for message in messages:
            print(f"    #{message.sequence_number} {message.message_id}: {message.explanation}")
    return EXIT_OK


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return number


def _configure_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Library chatter that says nothing about the pipeline: HTTP access lines, pool reuse.
    for name in ("werkzeug", "urllib3.connectionpool", "azure.core.pipeline.policies.http_logging_policy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("root").addFilter(lambda record: "Auth level is not applied" not in record.getMessage())


def _storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        help="storage connection string (default: AzureWebJobsStorage, "
        "AzureWebJobsStorage__accountName, or the running local stack)",
    )
    parser.add_argument(
        "--account",
        help="storage account name, reached with your Entra ID login "
        "(DefaultAzureCredential): for accounts that refuse shared keys",
    )


def _storage_connection(args):
    """--storage, --account, AzureWebJobsStorage(__accountName), or the running local stack."""
    from prepost.local.state import StackState
    from shared.names import STORAGE_CONNECTION
    from shared.settings import StorageConnection

    if args.storage and args.account:
        raise CliError("give either --storage or --account, not both")
    if args.storage:
        return StorageConnection(connection_string=args.storage)
    if args.account:
        return StorageConnection(account_name=args.account)
    if os.environ.get(STORAGE_CONNECTION):
        return StorageConnection(connection_string=os.environ[STORAGE_CONNECTION])
    if os.environ.get(f"{STORAGE_CONNECTION}__accountName"):
        return StorageConnection(account_name=os.environ[f"{STORAGE_CONNECTION}__accountName"])
    state = StackState.load()
    if state:
        return StorageConnection(connection_string=state.storage_connection)
    raise CliError(
        "no storage to read: pass --storage or --account, set AzureWebJobsStorage, or start `prepost local up`"
    )


def _records(args):
    from shared.adapters.storage_clients import StorageClients
    from shared.adapters.table_records import TableRunRecords

    return TableRunRecords(StorageClients(_storage_connection(args)))


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
        # "needed" when prepost decided the run must be cancelled but no cancel call was made or taken.
        cancelled = "yes" if run.cancel_accepted else "needed" if run.cancel_requested_at else "no"
        print(
            f"{run.start:%Y-%m-%d %H:%M}     {run.configuration_name[:24]:<24} {cells[0]:<24} {cells[1]:<24} "
            f"{cancelled:<10} {run.run_key}"
        )
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


def _replay_poison(args) -> int:
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    from prepost.replay import MessageOutcome, poison_queue_clients, replay_poison
    from shared.adapters.storage_clients import StorageClients
    from shared.names import QueueName

    queue = QueueName(args.queue)
    if not args.dry_run:
        _refuse_servicebus_queue(queue, args.transport)
    storage = StorageClients(_storage_connection(args))
    poison, target = poison_queue_clients(storage, queue)
    verb = "would replay (dry run: nothing changes)" if args.dry_run else "replaying"
    print(f"{verb} {queue.poison} -> {queue.value}")
    try:
        summary = replay_poison(poison, target, dry_run=args.dry_run, limit=args.limit, report=_print_poison_result)
    except ResourceNotFoundError as error:
        raise CliError(f"{queue.poison} does not exist in this storage account") from error
    except AzureError as error:
        print(f"prepost: reading {queue.poison} failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        shown = len(summary.results)
        print(
            f"{shown} shown, {summary.remaining} in {queue.poison}"
            + (" (a dry run shows at most 32)" if (summary.remaining or 0) > shown else "")
        )
    else:
        print(
            f"{summary.count(MessageOutcome.REPLAYED)} replayed, {summary.count(MessageOutcome.FAILED)} failed, "
            f"about {summary.remaining} left in {queue.poison}"
        )
    return EXIT_OK if summary.ok else EXIT_FAILED


def _refuse_servicebus_queue(queue, transport: str | None) -> None:
    from shared.adapters.servicebus_transport import SERVICEBUS_QUEUES
    from shared.errors import SettingsError
    from shared.settings import Transport, selected_transport

    try:
        chosen = Transport(transport) if transport else selected_transport()
    except SettingsError as error:
        raise CliError(str(error)) from error
    if chosen is Transport.SERVICEBUS and queue in SERVICEBUS_QUEUES:
        raise CliError(
            f"with PREPOST_TRANSPORT=servicebus, {queue.value} is a Service Bus queue that no Storage "
            f"trigger reads: replaying into the Storage queue would strand the messages. With explicit "
            f"settlement (the default) failed messages are in {queue.value}/$deadletterqueue: use "
            f"'prepost replay deadletter {queue.value}' (see docs/operations.md)"
        )


def _print_poison_result(result) -> None:
    from prepost.replay import describe_body

    message = result.message
    print(f"  {result.outcome.value:<13} {describe_body(message.body)}")
    print(f"  {'':<13} poisoned {message.poisoned_at}: {message.reason}")
    if result.detail:
        print(f"  {'':<13} {result.detail}")


def _poison_list(args) -> int:
    from azure.core.exceptions import AzureError

    from prepost.replay import summarize_poison
    from shared.adapters.storage_clients import StorageClients
    from shared.names import QueueName

    storage = StorageClients(_storage_connection(args))
    queues = [QueueName(args.queue)] if args.queue else list(QueueName)
    try:
        summaries = [
            summarize_poison(queue.value, storage.queue_service.get_queue_client(queue.poison)) for queue in queues
        ]
    except AzureError as error:
        print(f"prepost: reading the poison queues failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "queue": s.queue,
                        "poisonQueue": s.poison_queue,
                        "exists": s.exists,
                        "count": s.count,
                        "peeked": s.peeked,
                        "reasons": s.reasons,
                    }
                    for s in summaries
                ],
                indent=2,
            )
        )
        return EXIT_OK
    for summary in summaries:
        count = str(summary.count) if summary.exists else "(no such queue)"
        print(f"{summary.poison_queue:<28} {count}")
        for reason, times in sorted(summary.reasons.items(), key=lambda item: -item[1]):
            print(f"    {times:>3}  {reason}")
        if summary.count > summary.peeked:
            print(f"         (reasons of the first {summary.peeked} only)")
    return EXIT_OK


def _replay_events(args) -> int:
    from prepost.local.state import StackState
    from prepost.replay import (
        DeadLetterFormatError,
        deliverer,
        describe_delivery,
        read_dead_letter_file,
        redact_url,
    )

    state = StackState.load()
    url = args.to or (state.webhook_url if state else None)
    if not url and not args.dry_run:
        raise CliError("no webhook to deliver to: start `prepost local up`, or pass --to URL")
    target = redact_url(url) if url else "(none: dry run)"
    if args.file:
        try:
            events = read_dead_letter_file(str(args.file))
        except (OSError, DeadLetterFormatError) as error:
            raise CliError(f"cannot read dead-lettered events from {args.file}: {error}") from error
        print(f"{len(events)} dead-lettered event(s) in {args.file}")
        for event in events:
            print(f"  {event.describe()}")
            print(f"      {event.reason}")
        if args.dry_run or not events:
            return EXIT_OK
        result = deliverer(url)([event.event for event in events])
        print(f"{'delivered' if result.ok else 'not delivered'} to {target}: {describe_delivery(result)}")
        return EXIT_OK if result.ok else EXIT_FAILED
    return _replay_container(args, url, target)


def _replay_container(args, url: str | None, target: str) -> int:
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    from prepost.replay import BlobOutcome, blob_container, deliverer, replay_dead_letter_blobs

    container = blob_container(_storage_connection(args), args.container)

    def unreachable(events):  # dry runs never deliver
        raise AssertionError("a dry run delivered events")

    verb = "would replay (dry run: nothing changes)" if args.dry_run else "replaying"
    print(f"{verb} dead-lettered events from container {args.container} to {target}")
    try:
        results = replay_dead_letter_blobs(
            container,
            unreachable if args.dry_run else deliverer(url),
            destination=url or "",
            dry_run=args.dry_run,
            prefix=args.prefix,
            report=_print_blob_result,
        )
    except ResourceNotFoundError as error:
        raise CliError(f"container {args.container} does not exist in this storage account") from error
    except AzureError as error:
        print(f"prepost: reading container {args.container} failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    counts = {outcome: sum(1 for r in results if r.outcome is outcome) for outcome in BlobOutcome}
    print(", ".join(f"{n} {outcome.value}" for outcome, n in counts.items() if n) or "no dead-letter blobs")
    if counts[BlobOutcome.REPLAYED] or counts[BlobOutcome.MOVE_FAILED]:
        print("what the intake did with them: prepost events list")
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAILED


def _print_blob_result(result) -> None:
    from prepost.replay import REPLAYED_PREFIX, BlobOutcome

    moved = f" -> {REPLAYED_PREFIX}{result.name}" if result.outcome is BlobOutcome.REPLAYED else ""
    print(f"  {result.outcome.value:<20} {result.name}{moved}")
    for event in result.events:
        print(f"  {'':<20}   {event.describe()}")
        print(f"  {'':<20}     {event.reason}")
    if result.detail:
        print(f"  {'':<20} {result.detail}")


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


def _chaos(args) -> int:
    from prepost.chaos.drill import DrillError, DrillOptions, run_chaos

    options = DrillOptions(
        seed=args.seed,
        windows=args.windows,
        instances=args.instances,
        scale=args.scale,
        storage_faults=args.storage_faults,
        arm_faults=args.arm_faults,
        crash_every=args.crash_every,
        json_path=args.json,
        keep_logs=args.keep_logs,
    )
    try:
        return run_chaos(options)
    except DrillError as error:
        raise CliError(str(error)) from error


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
        scenario=args.scenario,
    )
    return EXIT_OK if run_demo(options) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
