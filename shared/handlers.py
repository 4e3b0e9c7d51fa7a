"""What each queue's trigger does with a message body: decode, dispatch, and settle the rest.

Trigger adapters in ``functions/`` stay a few lines: they hand the body and delivery facts
here. A message that cannot be decoded, or that arrived on the wrong queue, is parked in the
queue's poison queue at once with the reason: retrying cannot fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from shared.bootstrap import Container
from shared.clock import utcnow
from shared.errors import InvalidMessage
from shared.models.messages import (
    CheckPreDeadline,
    MonitoringMessage,
    PlanPhase,
    PostFallback,
    TaskMessage,
    TaskOutcome,
    decode_message,
)
from shared.names import QueueName
from shared.usecases.intake import IntakePolicy, IntakeResult, accept_event
from shared.usecases.machine_actions import MachinePorts, perform_machine_action
from shared.usecases.monitoring_actions import MonitoringPorts, perform_monitoring_action
from shared.usecases.planning import PlanningPorts, plan_phase
from shared.usecases.supervision import check_pre_deadline, post_fallback, record_outcome
from shared.usecases.task_runner import Delivery, run_task

log = logging.getLogger(__name__)


def handle_event(raw: Mapping[str, Any], container: Container) -> IntakeResult:
    settings = container.settings
    policy = IntakePolicy(
        allowed_configurations=settings.allowed_configurations,
        allowed_subscriptions=settings.allowed_subscriptions,
        cancel_margin=settings.cancel_margin,
        post_fallback_after=settings.suppression_grace,
    )
    return accept_event(raw, records=container.records, transport=container.transport, policy=policy, now=utcnow())


def handle_message(
    queue: QueueName,
    body: str | bytes,
    container: Container,
    delivery: Delivery,
    *,
    raise_invalid: bool = False,
) -> None:
    """Decode and dispatch one message from ``queue``. Raises to have the platform retry it.

    A body that is not a message for ``queue`` is parked in ``<queue>-poison`` at once, or,
    with ``raise_invalid``, raised as :class:`~shared.errors.InvalidMessage` so the caller's
    settlement can dead-letter it (Service Bus).
    """
    try:
        message = decode_message(body)
        expected = _EXPECTED[queue]
        if not isinstance(message, expected) or (
            queue is QueueName.VM_TASKS and isinstance(message, MonitoringMessage)
        ):
            raise InvalidMessage(f"a {message.kind} message does not belong on {queue.value}")
    except InvalidMessage as error:
        if raise_invalid:
            raise
        park(queue, body, str(error), container)
        return
    now = utcnow()
    if isinstance(message, PlanPhase):
        plan_phase(message, _planning(container), now=now)
    elif isinstance(message, CheckPreDeadline):
        result = check_pre_deadline(
            message.run_key, records=container.records, cancellation=container.cancellation, now=now
        )
        log.info("deadline check for %s: %s", message.run_key, result)
    elif isinstance(message, PostFallback):
        result = post_fallback(message.run_key, records=container.records, transport=container.transport, now=now)
        log.info("post fallback for %s: %s", message.run_key, result)
    elif isinstance(message, MonitoringMessage):
        ports = MonitoringPorts(
            records=container.records,
            alerts=container.alerts,
            default_grace=container.settings.suppression_grace,
            rule_resource_group=container.settings.suppression_resource_group,
        )
        _run(message, lambda m: perform_monitoring_action(m, ports, now=utcnow()), container, delivery)
    elif isinstance(message, TaskMessage):
        ports = MachinePorts(records=container.records, compute=container.compute, arc=container.arc)
        _run(message, lambda m: perform_machine_action(m, ports, now=utcnow()), container, delivery)
    elif isinstance(message, TaskOutcome):
        record_outcome(message, records=container.records, cancellation=container.cancellation, now=now)


def park(queue: QueueName, body: str | bytes, reason: str, container: Container) -> None:
    """Move an unusable message to the poison queue with its reason, without burning retries."""
    log.error("message parked in %s: %s", queue.poison, reason)
    container.storage.park(queue, body, reason)


def _run(message: TaskMessage, action, container: Container, delivery: Delivery) -> None:
    run_task(
        message,
        action,
        idempotency=container.idempotency,
        transport=container.transport,
        max_attempts=container.settings.max_task_attempts,
        check_interval=container.settings.operation_check_interval,
        now=utcnow,
        delivery=delivery,
    )


def _planning(container: Container) -> PlanningPorts:
    return PlanningPorts(
        records=container.records,
        transport=container.transport,
        inventory=container.inventory,
        configurations=container.configurations,
        allowed_subscriptions=container.settings.allowed_subscriptions,
        cancellation=container.cancellation,
    )


_EXPECTED: dict[QueueName, tuple[type, ...]] = {
    QueueName.PLAN: (PlanPhase, CheckPreDeadline, PostFallback),
    QueueName.VM_TASKS: (TaskMessage,),
    QueueName.MONITORING: (MonitoringMessage,),
    QueueName.OUTCOMES: (TaskOutcome,),
}
