"""What every command group shares: exit codes, the user's error, storage and Service Bus options."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def positive(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return number


def storage_options(parser: argparse.ArgumentParser) -> None:
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


def storage_connection(args):
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


def records(args):
    """The run records in the storage the options (or the environment) name."""
    from shared.adapters.storage_clients import StorageClients
    from shared.adapters.table_records import TableRunRecords

    return TableRunRecords(StorageClients(storage_connection(args)))


@contextlib.contextmanager
def tables_must_exist() -> Iterator[None]:
    """A missing table means the wrong account (or an app that never ran there), not a fault of Azure."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        yield
    except ResourceNotFoundError as error:
        raise CliError(
            "this storage account has no prepost tables: is it the function app's storage "
            "(AzureWebJobsStorage), and has the app run there yet?"
        ) from error


def servicebus_options(parser: argparse.ArgumentParser) -> None:
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


def servicebus_queue_names() -> list[str]:
    from shared.adapters.servicebus_transport import SERVICEBUS_QUEUES

    return sorted(queue.value for queue in SERVICEBUS_QUEUES)


def servicebus_client(args):
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


def configure_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Library chatter that says nothing about the pipeline: HTTP access lines, pool reuse.
    for name in ("werkzeug", "urllib3.connectionpool", "azure.core.pipeline.policies.http_logging_policy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("root").addFilter(lambda record: "Auth level is not applied" not in record.getMessage())


def webhook_key(url: str) -> str | None:
    """The webhook's system key (``PREPOST_EVENTGRID_KEY`` or a prompt); a refused target is a usage error."""
    from prepost.webhook_auth import TargetRefused
    from prepost.webhook_auth import webhook_key as read_key

    try:
        return read_key(url)
    except TargetRefused as error:
        raise CliError(f"cannot deliver to {url.split('?', 1)[0]}: {error}") from error
