"""Alert suppression: one alert processing rule per subscription and run.

The rule's schedule ends at the window's end plus a grace period, so alerts come back by
themselves even if the post-event and the fallback were both lost. Rules must be scoped
within their own subscription, hence one per subscription.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.errors import MessageRejected, PermanentError
from shared.models.ids import ResourceId
from shared.models.messages import TaskMessage
from shared.models.policy import RunPolicy
from shared.models.run import Action, Phase, RunRecord, TaskStatus
from shared.ports.azure import AlertSuppression
from shared.ports.records import RunNotFound, RunRecords
from shared.settings import AllowList
from shared.usecases.fences import pre_work_fence
from shared.usecases.message_checks import check_task_message
from shared.usecases.task_runner import TaskResult

RULE_NAME_LIMIT = 260


@dataclass(frozen=True)
class MonitoringPorts:
    records: RunRecords
    alerts: AlertSuppression
    default_grace: timedelta
    rule_resource_group: str | None
    """Where rules live; None puts each in the resource group of the subscription's first machine."""
    allowed_subscriptions: AllowList
    """PREPOST_ALLOWED_SUBSCRIPTIONS: a message for a subscription outside them is rejected."""


def perform_monitoring_action(message: TaskMessage, ports: MonitoringPorts, *, now: datetime) -> TaskResult:
    """Silence or unsilence the alerts of one subscription for the run.

    Raises :class:`~shared.errors.MessageRejected` (before any Azure call) for a message that
    does not agree with its task record or the allowed subscriptions.
    """
    try:
        run = ports.records.get_run(message.run_key)
    except RunNotFound as error:
        raise MessageRejected(f"{message.kind} for run {message.run_key}: no such run is recorded") from error
    task = check_task_message(
        message, ports.records.get_task(message.run_key, message.task_id), run, ports.allowed_subscriptions
    )
    if message.action is Action.SUPPRESS_ALERTS:
        return _suppress(message, run, ports, now)
    if message.action is Action.REMOVE_SUPPRESSION:
        return _remove(message, run, task.options.get("rule_id"), ports)
    raise PermanentError(f"{message.action.value} is not a monitoring action")


def rule_name(run: RunRecord) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"prepost-{run.run_key}")[:RULE_NAME_LIMIT]


def _rule_id(run: RunRecord, subscription: str, machines: list[str], resource_group: str | None) -> str:
    group = resource_group or sorted((ResourceId(m).resource_group or "" for m in machines), key=str.lower)[0]
    return (
        f"/subscriptions/{subscription}/resourceGroups/{group}"
        f"/providers/Microsoft.AlertsManagement/actionRules/{rule_name(run)}"
    )


def _suppress(message: TaskMessage, run: RunRecord, ports: MonitoringPorts, now: datetime) -> TaskResult:
    subscription = message.target.lower()
    machines = sorted(
        (m.resource_id for m in ports.records.list_machines(run.run_key) if m.subscription_id == subscription),
        key=str.lower,
    )
    if not machines:
        return TaskResult(TaskStatus.SKIPPED, f"no machines of this run in subscription {subscription}")
    pre = ports.records.get_phase(run.run_key, Phase.PRE)
    policy = RunPolicy.from_dict(pre.policy if pre else {})
    grace = (
        timedelta(minutes=policy.suppression_grace_minutes)
        if policy.suppression_grace_minutes is not None
        else ports.default_grace
    )
    until = run.end + grace
    if until <= now:
        return TaskResult(TaskStatus.SKIPPED, f"the window and its grace ended at {until.isoformat()}")
    fence = pre_work_fence(run, ports.records, now)
    if fence is not None and not fence.missed:
        # Cancelled, or the post phase began: a rule made now would outlive the undoing of it.
        # (After the start the window is still on: silencing it is still wanted.)
        return TaskResult(fence.status, fence.detail("alert suppression"))
    rule_id = _rule_id(run, subscription, machines, ports.rule_resource_group)
    ports.alerts.put_rule(
        rule_id,
        scopes=machines,
        effective_from=min(now, run.start),
        effective_until=until,
        description=f"prepost: alerts silenced for maintenance run {run.correlation_id}",
        tags={"prepost-run": run.run_key, "prepost-configuration": run.configuration_name},
    )
    return TaskResult(
        TaskStatus.SUCCEEDED,
        f"alert processing rule for {len(machines)} machine(s) until {until.isoformat()}",
        {"rule_id": rule_id, "effective_until": until.isoformat(), "machines": len(machines)},
    )


def _remove(message: TaskMessage, run: RunRecord, recorded_rule: str | None, ports: MonitoringPorts) -> TaskResult:
    # The rule to delete comes from the task record, and must be a rule of this run in this
    # subscription: a damaged record must not delete someone else's rule.
    rule_id = recorded_rule
    if rule_id and not _is_rule_of(rule_id, run, message.target):
        raise PermanentError(f"recorded rule {rule_id!r} is not this run's rule in subscription {message.target}")
    if not rule_id:
        machines = [
            m.resource_id
            for m in ports.records.list_machines(run.run_key)
            if m.subscription_id == message.target.lower()
        ]
        if not machines:
            return TaskResult(TaskStatus.SKIPPED, "no rule recorded and no machines in this subscription")
        rule_id = _rule_id(run, message.target.lower(), machines, ports.rule_resource_group)
    existed = ports.alerts.delete_rule(rule_id)
    detail = "alert processing rule removed" if existed else "alert processing rule already gone"
    return TaskResult(TaskStatus.SUCCEEDED, detail, {"rule_id": rule_id, "existed": existed})


def _is_rule_of(rule_id: str, run: RunRecord, subscription: str) -> bool:
    try:
        rule = ResourceId(rule_id)
    except ValueError:
        return False
    return (
        rule.subscription_id == subscription.lower()
        and rule.provider_type == "microsoft.alertsmanagement/actionrules"
        and rule.name.lower() == rule_name(run).lower()
    )
