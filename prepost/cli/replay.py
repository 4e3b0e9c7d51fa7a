"""``prepost replay``: send dead-lettered work back (poison queues, Event Grid dead letters, Service Bus)."""

from __future__ import annotations

from pathlib import Path

from prepost.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    positive,
    servicebus_client,
    servicebus_options,
    servicebus_queue_names,
    storage_connection,
    storage_options,
    webhook_key,
)
from prepost.cli.errors import AzureFailure


def add_parser(commands) -> None:
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
    poison.add_argument("--limit", type=positive, help="replay at most N messages")
    poison.add_argument(
        "--transport",
        choices=["storage", "servicebus"],
        help="the app's PREPOST_TRANSPORT (default: the environment's, else storage); with "
        "servicebus, prepost-plan and prepost-vm-tasks are Service Bus queues and are refused",
    )
    storage_options(poison)
    poison.set_defaults(handler=replay_poison_command)

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
        "https://<app>.azurewebsites.net/runtime/webhooks/eventgrid?functionName=maintenance_event_intake; "
        "its system key comes from PREPOST_EVENTGRID_KEY or a prompt, never the URL "
        "(default: the running local stack)",
    )
    events.add_argument("--dry-run", action="store_true", help="only show what would be replayed; change nothing")
    storage_options(events)
    events.set_defaults(handler=replay_events_command)

    servicebus_queues = servicebus_queue_names()
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
    deadletter.add_argument("--limit", type=positive, help="replay at most N messages")
    deadletter.add_argument("--run", metavar="RUN_KEY", help="only the messages of this run (property runKey)")
    servicebus_options(deadletter)
    deadletter.set_defaults(handler=replay_deadletter_command)


def replay_poison_command(args) -> int:
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    from prepost.replay import MessageOutcome, poison_queue_clients, replay_poison
    from shared.adapters.storage_clients import StorageClients
    from shared.names import QueueName

    queue = QueueName(args.queue)
    if not args.dry_run:
        _refuse_servicebus_queue(queue, args.transport)
    storage = StorageClients(storage_connection(args))
    poison, target = poison_queue_clients(storage, queue)
    verb = "would replay (dry run: nothing changes)" if args.dry_run else "replaying"
    print(f"{verb} {queue.poison} -> {queue.value}")
    try:
        summary = replay_poison(poison, target, dry_run=args.dry_run, limit=args.limit, report=_print_poison_result)
    except ResourceNotFoundError as error:
        raise CliError(f"{queue.poison} does not exist in this storage account") from error
    except AzureError as error:
        raise AzureFailure(f"reading {queue.poison}", error) from error
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
            f"trigger reads: replaying into the Storage queue would strand the messages. Messages the "
            f"broker or explicit settlement dead-lettered are in {queue.value}/$deadletterqueue: use "
            f"'prepost replay deadletter {queue.value}' (see docs/operations.md)"
        )


def _print_poison_result(result) -> None:
    from prepost.replay import describe_body

    message = result.item
    print(f"  {result.outcome.value:<13} {describe_body(message.body)}")
    print(f"  {'':<13} poisoned {message.poisoned_at}: {message.reason}")
    if result.detail:
        print(f"  {'':<13} {result.detail}")


def replay_events_command(args) -> int:
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
    key = webhook_key(url) if url and not args.dry_run else None
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
        result = deliverer(url, key=key)([event.event for event in events])
        print(f"{'delivered' if result.ok else 'not delivered'} to {target}: {describe_delivery(result)}")
        return EXIT_OK if result.ok else EXIT_FAILED
    return _replay_container(args, url, target, key)


def _replay_container(args, url: str | None, target: str, key: str | None = None) -> int:
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    from prepost.replay import BlobOutcome, blob_container, deliverer, replay_dead_letter_blobs

    container = blob_container(storage_connection(args), args.container)

    def unreachable(events):  # dry runs never deliver
        raise AssertionError("a dry run delivered events")

    verb = "would replay (dry run: nothing changes)" if args.dry_run else "replaying"
    print(f"{verb} dead-lettered events from container {args.container} to {target}")
    try:
        results = replay_dead_letter_blobs(
            container,
            unreachable if args.dry_run else deliverer(url, key=key),
            destination=url or "",
            dry_run=args.dry_run,
            prefix=args.prefix,
            report=_print_blob_result,
        )
    except ResourceNotFoundError as error:
        raise CliError(f"container {args.container} does not exist in this storage account") from error
    except AzureError as error:
        raise AzureFailure(f"reading container {args.container}", error) from error
    counts = {outcome: sum(1 for r in results if r.outcome is outcome) for outcome in BlobOutcome}
    print(", ".join(f"{n} {outcome.value}" for outcome, n in counts.items() if n) or "no dead-letter blobs")
    if counts[BlobOutcome.REPLAYED] or counts[BlobOutcome.MOVE_FAILED]:
        print("what the intake did with them: prepost events list")
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAILED


def _print_blob_result(result) -> None:
    from prepost.replay import REPLAYED_PREFIX, BlobOutcome

    moved = f" -> {REPLAYED_PREFIX}{result.item.name}" if result.outcome is BlobOutcome.REPLAYED else ""
    print(f"  {result.outcome.value:<20} {result.item.name}{moved}")
    for event in result.item.events:
        print(f"  {'':<20}   {event.describe()}")
        print(f"  {'':<20}     {event.reason}")
    if result.detail:
        print(f"  {'':<20} {result.detail}")


def replay_deadletter_command(args) -> int:
    from azure.servicebus.exceptions import ServiceBusError

    from prepost.deadletter import DeadLetterOutcome, replay_dead_letters

    verb = "would replay (dry run: nothing changes)" if args.dry_run else "replaying"
    print(f"{verb} {args.queue}/$deadletterqueue -> {args.queue}")
    try:
        with servicebus_client(args) as client:
            summary = replay_dead_letters(
                client,
                args.queue,
                dry_run=args.dry_run,
                limit=args.limit,
                run_key=args.run,
                report=_print_dead_letter_result,
            )
    except ServiceBusError as error:
        raise AzureFailure(f"reading {args.queue}/$deadletterqueue", error) from error
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

    message = result.item
    print(f"  {result.outcome.value:<13} {describe_body(message.body.decode('utf-8', 'replace'))}")
    enqueued = f"{message.enqueued_at:%Y-%m-%d %H:%M:%S}" if message.enqueued_at else "-"
    print(f"  {'':<13} #{message.sequence_number} enqueued {enqueued}: {message.explanation}")
    if result.detail:
        print(f"  {'':<13} {result.detail}")
