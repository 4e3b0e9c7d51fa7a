"""Service Bus triggers for plans and VM tasks (``PREPOST_TRANSPORT=servicebus``).

Two bindings, chosen by ``PREPOST_SERVICEBUS_SETTLEMENT`` (docs/servicebus.md, "Settlement"):

- ``classic`` (default): ``func.ServiceBusMessage``; the host completes the message on return, so
  failures are settled by re-sending (transient) or parking in Storage (permanent);
- ``explicit`` (opt-in): the SDK-type binding (:mod:`functions.servicebus_explicit`); the
  function settles each message itself and dead-letters permanent failures with a reason. It
  needs a worker with the settlement client: without one the whole app fails to index.

Either way the decision is the same :func:`~shared.adapters.servicebus_settlement.decide_settlement`.
"""

from __future__ import annotations

import azure.functions as func

from functions.servicebus_delivery import PLAN_FUNCTION, VM_TASKS_FUNCTION, handle_delivery
from shared.names import SERVICEBUS_CONNECTION, QueueName
from shared.settings import DEFAULT_SETTLEMENT, ServiceBusSettlement


def _handle_classic(queue: QueueName, msg: func.ServiceBusMessage) -> None:
    from shared.adapters.servicebus_settlement import ClassicBindingSettler, ReceivedDelivery

    handle_delivery(
        queue,
        ReceivedDelivery.from_trigger(msg),
        lambda container: ClassicBindingSettler(resender=container.transport, parking=container.storage),
    )


def work_on_servicebus(settlement: ServiceBusSettlement = DEFAULT_SETTLEMENT) -> func.Blueprint:
    """The plan and VM-task triggers on Service Bus, with the binding ``settlement`` needs."""
    if settlement is ServiceBusSettlement.EXPLICIT:
        # Imported only here: the SDK-type binding package (and azure.servicebus) loads only
        # when this binding is selected.
        from functions import servicebus_explicit

        return servicebus_explicit.blueprint()
    return _classic_blueprint()


def _classic_blueprint() -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name(PLAN_FUNCTION)
    @bp.service_bus_queue_trigger(arg_name="msg", queue_name=QueueName.PLAN.value, connection=SERVICEBUS_CONNECTION)
    def plan(msg: func.ServiceBusMessage) -> None:
        _handle_classic(QueueName.PLAN, msg)

    @bp.function_name(VM_TASKS_FUNCTION)
    @bp.service_bus_queue_trigger(arg_name="msg", queue_name=QueueName.VM_TASKS.value, connection=SERVICEBUS_CONNECTION)
    def vm_tasks(msg: func.ServiceBusMessage) -> None:
        _handle_classic(QueueName.VM_TASKS, msg)

    return bp
