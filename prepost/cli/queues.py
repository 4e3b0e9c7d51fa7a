"""``prepost deadletter list`` and ``prepost poison list``: what sits in the dead-letter and poison queues."""

from __future__ import annotations

import json

from prepost.cli.common import (
    EXIT_OK,
    servicebus_client,
    servicebus_options,
    servicebus_queue_names,
    storage_connection,
    storage_options,
)
from prepost.cli.errors import AzureFailure


def add_parser(commands) -> None:
    from shared.names import QueueName

    queue_names = [queue.value for queue in QueueName]
    servicebus_queues = servicebus_queue_names()
    deadletter_parent = commands.add_parser("deadletter", help="what sits in the Service Bus dead-letter queues")
    deadletter_commands = deadletter_parent.add_subparsers(title="deadletter commands")
    deadletter_list = deadletter_commands.add_parser(
        "list", help="dead-lettered messages per Service Bus queue, with their reasons (the first 32)"
    )
    deadletter_list.add_argument(
        "queue", nargs="?", choices=servicebus_queues, metavar="QUEUE", help="one queue (default: both)"
    )
    deadletter_list.add_argument("--json", action="store_true", help="print the messages as JSON")
    servicebus_options(deadletter_list)
    deadletter_list.set_defaults(handler=deadletter_list_command)

    poison_list_parent = commands.add_parser("poison", help="what sits in the -poison queues")
    poison_commands = poison_list_parent.add_subparsers(title="poison commands")
    poison_list = poison_commands.add_parser("list", help="message count and reasons per poison queue")
    poison_list.add_argument(
        "queue", nargs="?", choices=queue_names, metavar="QUEUE", help="one queue (default: all of them)"
    )
    poison_list.add_argument("--json", action="store_true", help="print the counts and reasons as JSON")
    storage_options(poison_list)
    poison_list.set_defaults(handler=poison_list_command)


def deadletter_list_command(args) -> int:
    from azure.servicebus.exceptions import ServiceBusError

    from prepost.deadletter import PEEK_LIMIT, peek_dead_letters

    queues = [args.queue] if args.queue else servicebus_queue_names()
    found = {}
    try:
        with servicebus_client(args) as client:
            for queue in queues:
                found[queue] = peek_dead_letters(client, queue)
    except ServiceBusError as error:
        raise AzureFailure("reading the dead-letter queues", error) from error
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


def poison_list_command(args) -> int:
    from azure.core.exceptions import AzureError

    from prepost.replay import summarize_poison
    from shared.adapters.storage_clients import StorageClients
    from shared.names import QueueName

    storage = StorageClients(storage_connection(args))
    queues = [QueueName(args.queue)] if args.queue else list(QueueName)
    try:
        summaries = [
            summarize_poison(queue.value, storage.queue_service.get_queue_client(queue.poison)) for queue in queues
        ]
    except AzureError as error:
        raise AzureFailure("reading the poison queues", error) from error
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
