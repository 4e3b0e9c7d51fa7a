"""The function app: assembles the blueprints, nothing else.

Which triggers carry plans and VM tasks depends on ``PREPOST_TRANSPORT`` (storage or
servicebus); it is the only setting read at import. Everything heavy (Azure clients,
settings validation) waits for the first invocation.
"""

import azure.functions as func

from functions import intake, storage_queues
from shared.settings import Transport, selected_transport


def build_app(transport: Transport) -> func.FunctionApp:
    """A new app object with every function registered for ``transport``."""
    app = func.FunctionApp()
    app.register_functions(intake.blueprint())
    app.register_functions(storage_queues.always_storage())
    if transport is Transport.SERVICEBUS:
        from functions import servicebus_queues

        app.register_functions(servicebus_queues.work_on_servicebus())
    else:
        app.register_functions(storage_queues.work_on_storage())
    return app


app = build_app(selected_transport())
