"""What each queue's trigger does with a message body: decode, dispatch, and settle the rest.

Trigger adapters in ``functions/`` stay a few lines: they hand the body and delivery facts
here. A message that cannot be decoded, or that arrived on the wrong queue, is parked in the
queue's poison queue at once with the reason: retrying cannot fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from shared.bootstrap import Container
from shared.clock import utcnow
from shared.errors import InvalidMessage, MessageRejected
from shared.models.messages import (
    CheckPreDeadline,
    MonitoringMessage,
    PlanPhase,
    PostFallback,
    TaskMessage,
    TaskOutcome,
    WorkMessage,
    decode_message,
)
from shared.models.run import TaskRecord
from shared.names import QueueName
from shared.observability.context import log_context
from shared.usecases.delivery_records import DeliveryRecords
from shared.usecases.intake import IntakeResult, accept_event
from shared.usecases.machine_actions import perform_machine_action
from shared.usecases.monitoring_actions import perform_monitoring_action
from shared.usecases.planning import plan_phase
from shared.usecases.supervision import check_pre_deadline, post_fallback, record_outcome
from shared.usecases.task_runner import Delivery, run_task

log = logging.getLogger(__name__)

MESSAGE_PARKED = "message-parked"
"""The ``event`` attribute of the log record of a parked message (infra/modules/alerts.bicep)."""


def handle_event(raw: Mapping[str, Any], container: Container) -> IntakeResult:
    """Accept one delivered event (see :func:`shared.usecases.intake.accept_event`)."""
    return accept_event(
        raw,
        records=container.records,
        transport=container.transport,
        policy=container.intake_policy,
        now=utcnow(),
    )


def handle_message(
    queue: QueueName,
    body: str | bytes,
    container: Container,
    delivery: Delivery,
    *,
    raise_invalid: bool = False,
) -> None:
    """Decode and dispatch one message from ``queue``. Raises to have the platform retry it.

    A body that is not a message for ``queue``, or a task message that disagrees with its task
    record (:class:`~shared.errors.MessageRejected`), is parked in ``<queue>-poison`` at once,
    or, with ``raise_invalid``, raised as :class:`~shared.errors.InvalidMessage` so the caller's
    settlement can dead-letter it (Service Bus).
    """
    with log_context(queue=queue.value):
        try:
            message = decode_message(body)
            if message.queue is not queue:
                raise InvalidMessage(f"a {message.kind} message does not belong on {queue.value}")
        except InvalidMessage as error:
            if raise_invalid:
                raise
            park(queue, body, str(error), container)
            return
        with log_context(**dimensions_of(message)):
            try:
                HANDLERS[type(message)](message, container, delivery)
            except MessageRejected as error:
                # Decoded, but not a message prepost sent (its task record says otherwise):
                # nothing was done on Azure and retrying cannot change the verdict.
                if raise_invalid:
                    raise
                park(queue, body, str(error), container)


def dimensions_of(message: WorkMessage) -> dict[str, str]:
    """The log dimensions a message gives: its run, and its phase and task when it has them."""
    phase = getattr(message, "phase", None)
    task = message.task_id if isinstance(message, TaskMessage | TaskOutcome) else ""
    return {"run_key": message.run_key, "phase": phase.value if phase else "", "task": task}


def park(queue: QueueName, body: str | bytes, reason: str, container: Container) -> None:
    """Move an unusable message to the poison queue with its reason, without burning retries."""
    log.error("message parked in %s: %s", queue.poison, reason, extra={"event": MESSAGE_PARKED})
    container.storage.park(queue, body, reason)


# -- one handler per message type ---------------------------------------------------------------


def _plan(message: PlanPhase, container: Container, delivery: Delivery) -> None:
    plan_phase(message, container.planning_ports, now=utcnow())


def _deadline(message: CheckPreDeadline, container: Container, delivery: Delivery) -> None:
    result = check_pre_deadline(
        message,
        records=container.records,
        cancellation=container.cancellation,
        transport=container.transport,
        now=utcnow(),
        margin=container.settings.cancel_margin,
    )
    log.info("deadline check for %s: %s", message.run_key, result)


def _fallback(message: PostFallback, container: Container, delivery: Delivery) -> None:
    result = post_fallback(message, records=container.records, transport=container.transport, now=utcnow())
    log.info("post fallback for %s: %s", message.run_key, result)


def _machine_task(message: TaskMessage, container: Container, delivery: Delivery) -> None:
    records = DeliveryRecords(container.records, message.run_key, message.task_id)
    ports = container.machine_ports
    scripts = replace(ports.scripts, records=records) if ports.scripts is not None else None
    ports = replace(ports, records=records, scripts=scripts)
    _run(message, lambda m: perform_machine_action(m, ports, now=utcnow()), container, delivery, records)


def _monitoring_task(message: MonitoringMessage, container: Container, delivery: Delivery) -> None:
    records = DeliveryRecords(container.records, message.run_key, message.task_id)
    ports = replace(container.monitoring_ports, records=records)
    _run(message, lambda m: perform_monitoring_action(m, ports, now=utcnow()), container, delivery, records)


def _outcome(message: TaskOutcome, container: Container, delivery: Delivery) -> None:
    # Outcomes are recorded by the task's own delivery (see _run); an outcome message still
    # comes from a version that sent them, or from an operator replaying a parked one.
    _record(message, container)


def _record(outcome: TaskOutcome, container: Container, known_task: TaskRecord | None = None) -> bool:
    return record_outcome(
        outcome,
        records=container.records,
        cancellation=container.cancellation,
        transport=container.transport,
        now=utcnow(),
        known_task=known_task,
    )


def _run(message: TaskMessage, action, container: Container, delivery: Delivery, records: DeliveryRecords) -> None:
    run_task(
        message,
        action,
        idempotency=container.idempotency,
        transport=container.transport,
        # The task as this delivery last read or wrote it: the recorder writes against it.
        report=lambda outcome: _record(outcome, container, records.own_task),
        retry=container.retry_policy,
        check_interval=container.settings.operation_check_interval,
        now=utcnow,
        delivery=delivery,
    )


Handler = Callable[[Any, Container, Delivery], None]

HANDLERS: dict[type[WorkMessage], Handler] = {
    PlanPhase: _plan,
    CheckPreDeadline: _deadline,
    PostFallback: _fallback,
    TaskMessage: _machine_task,
    MonitoringMessage: _monitoring_task,
    TaskOutcome: _outcome,
}
"""Every message type and its handler: the one dispatch table (the queue a message belongs on
is its class's ``queue``)."""
