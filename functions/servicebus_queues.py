"""Service Bus triggers for plans and VM tasks (``PREPOST_TRANSPORT=servicebus``).

Classic binding: the host completes the message when the function returns. Failures are
settled here instead of by abandoning (which redelivers at once, with no backoff): a transient
failure is re-sent as a scheduled copy with backoff, a permanent one is parked with its reason.
See docs/servicebus.md.
"""

from __future__ import annotations

import azure.functions as func

from shared.names import SERVICEBUS_CONNECTION, QueueName


def _handle(queue: QueueName, msg: func.ServiceBusMessage) -> None:
    from shared.adapters.servicebus_settlement import (
        ClassicBindingSettler,
        ReceivedDelivery,
        SettlementPolicy,
        process_delivery,
    )
    from shared.bootstrap import get_container
    from shared.handlers import handle_message
    from shared.usecases.task_runner import Delivery

    container = get_container()
    policy = SettlementPolicy(max_attempts=container.settings.max_task_attempts)
    settler = ClassicBindingSettler(resender=container.transport, parking=container.storage)

    def handle(delivery: ReceivedDelivery) -> None:
        info = policy.attempt_info(delivery)
        handle_message(queue, delivery.body, container, Delivery(count=info.count, max_count=info.max_count))

    process_delivery(queue, ReceivedDelivery.from_trigger(msg), handle, settler=settler, policy=policy)


def work_on_servicebus() -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name("plan_servicebus_queue")
    @bp.service_bus_queue_trigger(arg_name="msg", queue_name=QueueName.PLAN.value, connection=SERVICEBUS_CONNECTION)
    def plan(msg: func.ServiceBusMessage) -> None:
        _handle(QueueName.PLAN, msg)

    @bp.function_name("vm_tasks_servicebus_queue")
    @bp.service_bus_queue_trigger(arg_name="msg", queue_name=QueueName.VM_TASKS.value, connection=SERVICEBUS_CONNECTION)
    def vm_tasks(msg: func.ServiceBusMessage) -> None:
        _handle(QueueName.VM_TASKS, msg)

    return bp
