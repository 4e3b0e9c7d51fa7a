"""Service Bus triggers with explicit settlement (``PREPOST_SERVICEBUS_SETTLEMENT=explicit``).

The SDK-type binding hands the function an ``azure.servicebus.ServiceBusReceivedMessage`` and
the host's ``ServiceBusMessageActions``; ``autoCompleteMessages`` is off, so the function
completes, re-schedules or dead-letters every message itself
(:class:`~shared.adapters.servicebus_message_actions.ExplicitSettler`).

No ``from __future__ import annotations`` here: the Python worker reads these annotations as
classes when it indexes the functions, to recognise the SDK type and the settlement client.
"""

import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus

from functions.servicebus_delivery import PLAN_FUNCTION, VM_TASKS_FUNCTION, handle_delivery
from shared.names import SERVICEBUS_CONNECTION, QueueName


def settle_explicitly(
    queue: QueueName,
    message: servicebus.ServiceBusReceivedMessage,
    actions: servicebus.ServiceBusMessageActions,
) -> None:
    """Handle one received message and settle it through the host's message actions."""
    from shared.adapters.servicebus_message_actions import ExplicitSettler
    from shared.adapters.servicebus_settlement import ReceivedDelivery

    handle_delivery(
        queue,
        ReceivedDelivery.from_received_message(message),
        lambda container: ExplicitSettler(actions=actions, message=message, resender=container.transport),
    )


def blueprint() -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name(PLAN_FUNCTION)
    @bp.service_bus_queue_trigger(
        arg_name="message",
        queue_name=QueueName.PLAN.value,
        connection=SERVICEBUS_CONNECTION,
        auto_complete_messages=False,
    )
    def plan(
        message: servicebus.ServiceBusReceivedMessage,
        message_actions: servicebus.ServiceBusMessageActions,
    ) -> None:
        settle_explicitly(QueueName.PLAN, message, message_actions)

    @bp.function_name(VM_TASKS_FUNCTION)
    @bp.service_bus_queue_trigger(
        arg_name="message",
        queue_name=QueueName.VM_TASKS.value,
        connection=SERVICEBUS_CONNECTION,
        auto_complete_messages=False,
    )
    def vm_tasks(
        message: servicebus.ServiceBusReceivedMessage,
        message_actions: servicebus.ServiceBusMessageActions,
    ) -> None:
        settle_explicitly(QueueName.VM_TASKS, message, message_actions)

    return bp
