"""The function app: assembles the blueprints, nothing else.

Which triggers carry plans and VM tasks depends on ``PREPOST_TRANSPORT`` (storage or
servicebus) and, on Service Bus, ``PREPOST_SERVICEBUS_SETTLEMENT`` (explicit or classic): the
only settings read at import. Everything heavy (Azure clients, settings validation) waits for
the first invocation; only the explicit Service Bus binding loads its package at import,
because the worker needs its types to index the functions.
"""

import azure.functions as func

from functions import intake, readiness_timer, storage_queues
from shared.settings import (
    DEFAULT_SETTLEMENT,
    ServiceBusSettlement,
    Transport,
    selected_servicebus_settlement,
    selected_transport,
)


def build_app(transport: Transport, settlement: ServiceBusSettlement = DEFAULT_SETTLEMENT) -> func.FunctionApp:
    """A new app object with every function registered for ``transport`` (and ``settlement``)."""
    app = func.FunctionApp()
    app.register_functions(intake.blueprint())
    app.register_functions(readiness_timer.blueprint())
    app.register_functions(storage_queues.always_storage())
    if transport is Transport.SERVICEBUS:
        from functions import servicebus_queues

        app.register_functions(servicebus_queues.work_on_servicebus(settlement))
    else:
        app.register_functions(storage_queues.work_on_storage())
    return app


def _observe() -> None:
    """Run, phase, task and queue on every log record (standard library only); OpenTelemetry
    only with PREPOST_TELEMETRY=on and a connection string: imported then, and at import so it
    sees the first invocation; when off it costs nothing."""
    import logging

    from shared.errors import SettingsError
    from shared.observability.context import install
    from shared.observability.telemetry import configure_telemetry

    install()
    try:
        configure_telemetry()
    except SettingsError as error:
        # Not a reason to index no function at all: the settings check names it on every invocation.
        logging.getLogger("shared.observability").error("%s", error)


_observe()

_transport = selected_transport()
app = build_app(
    _transport,
    selected_servicebus_settlement() if _transport is Transport.SERVICEBUS else DEFAULT_SETTLEMENT,
)
