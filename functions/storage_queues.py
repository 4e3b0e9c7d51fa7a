"""Storage-queue triggers. Monitoring and outcomes always come this way; plans and VM tasks
too when ``PREPOST_TRANSPORT=storage`` (the local default)."""

from __future__ import annotations

import azure.functions as func

from shared.names import STORAGE_CONNECTION, STORAGE_MAX_DEQUEUE_COUNT, QueueName


def _handle(queue: QueueName, msg: func.QueueMessage) -> None:
    from shared.bootstrap import get_container
    from shared.handlers import handle_message
    from shared.usecases.task_runner import Delivery

    delivery = Delivery(count=msg.dequeue_count or 1, max_count=STORAGE_MAX_DEQUEUE_COUNT)
    handle_message(queue, msg.get_body(), get_container(), delivery)


def always_storage() -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name("monitoring_storage_queue")
    @bp.queue_trigger(arg_name="msg", queue_name=QueueName.MONITORING.value, connection=STORAGE_CONNECTION)
    def monitoring(msg: func.QueueMessage) -> None:
        _handle(QueueName.MONITORING, msg)

    @bp.function_name("outcomes_storage_queue")
    @bp.queue_trigger(arg_name="msg", queue_name=QueueName.OUTCOMES.value, connection=STORAGE_CONNECTION)
    def outcomes(msg: func.QueueMessage) -> None:
        _handle(QueueName.OUTCOMES, msg)

    return bp


def work_on_storage() -> func.Blueprint:
    """Plans and VM tasks on Storage queues."""
    bp = func.Blueprint()

    @bp.function_name("plan_storage_queue")
    @bp.queue_trigger(arg_name="msg", queue_name=QueueName.PLAN.value, connection=STORAGE_CONNECTION)
    def plan(msg: func.QueueMessage) -> None:
        _handle(QueueName.PLAN, msg)

    @bp.function_name("vm_tasks_storage_queue")
    @bp.queue_trigger(arg_name="msg", queue_name=QueueName.VM_TASKS.value, connection=STORAGE_CONNECTION)
    def vm_tasks(msg: func.QueueMessage) -> None:
        _handle(QueueName.VM_TASKS, msg)

    return bp
