"""Is this task message one prepost sent? Checked against its task record before any action.

Anyone who can write to a queue can write a message that decodes. The planner records every
task (target and options) before it sends the task's message, so a message is acted on only
when it agrees with that record, and its target lies in the subscriptions prepost may act in.
A message that disagrees is :class:`~shared.errors.MessageRejected`: nothing is done on Azure,
the task record is left alone (the genuine message still does the task), and the message is
parked or dead-lettered with the reason.

The check reuses the task record the action reads anyway (its idempotency markers), so it
costs no storage round trip of its own.
"""

from __future__ import annotations

import json
from typing import Any

from shared.errors import InvalidIdentifier, MessageRejected
from shared.models.arm_names import check_resource_id, check_subscription_id
from shared.models.bounds import cut_text
from shared.models.ids import MachineKind, ResourceId
from shared.models.messages import TaskMessage
from shared.models.run import RunRecord, TaskRecord
from shared.settings import AllowList


def check_task_message(
    message: TaskMessage, task: TaskRecord | None, run: RunRecord, allowed_subscriptions: AllowList
) -> TaskRecord:
    """The task record ``message`` belongs to, once the message agrees with it.

    Raises:
        MessageRejected: no such task, a different target or options, a target that is not a
            valid id, or one outside the allowed subscriptions or the run's subscriptions.
    """
    where = f"{message.kind} {message.action.value} for run {message.run_key}"
    if task is None:
        raise MessageRejected(f"{where}: no task {message.task_id} is recorded; the message was not sent by prepost")
    if task.run_key != message.run_key or task.phase is not message.phase or task.action is not message.action:
        raise MessageRejected(f"{where}: the task record {task.task_id} is of another run, phase or action")
    if task.target.lower() != message.target.lower():
        raise MessageRejected(f"{where}: target {cut_text(message.target, 300)!r} is not the recorded target")
    if _canonical(message.options) != _canonical(task.options):
        # Cut: the reason travels with the parked message, which must still fit a queue message.
        shown, recorded = cut_text(_canonical(message.options), 200), cut_text(_canonical(task.options), 200)
        raise MessageRejected(f"{where}: options {shown} differ from the recorded {recorded}")
    subscription = _target_subscription(message, where)
    if not allowed_subscriptions.allows(subscription):
        raise MessageRejected(f"{where}: subscription {subscription} is not in PREPOST_ALLOWED_SUBSCRIPTIONS")
    if subscription not in {sub.lower() for sub in run.subscription_ids}:
        raise MessageRejected(f"{where}: subscription {subscription} is not one of the run's subscriptions")
    return task


def _target_subscription(message: TaskMessage, where: str) -> str:
    try:
        if message.action.is_monitoring:
            return check_subscription_id(message.target).lower()
        resource = ResourceId(check_resource_id(message.target))
    except (InvalidIdentifier, ValueError) as error:
        raise MessageRejected(f"{where}: {error}") from error
    if resource.machine_kind not in (MachineKind.AZURE_VM, MachineKind.ARC_SERVER):
        raise MessageRejected(f"{where}: {message.target!r} is not a virtual machine or an Arc-enabled server")
    return resource.subscription_id


def _canonical(options: dict[str, Any]) -> str:
    # As stored: a table round trip keeps JSON values, and key order carries no meaning.
    return json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
