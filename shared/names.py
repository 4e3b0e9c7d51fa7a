"""Every queue, table, connection and setting name, defined once.

Bindings in ``functions/``, the settings module, ``local.settings.sample.json``, the infra
templates and the docs all use these names; ``tests/functional/test_binding_contract.py``
checks that they agree.
"""

from __future__ import annotations

from enum import Enum


class QueueName(str, Enum):
    """Work queues. The same names are used for Storage queues and Service Bus queues."""

    PLAN = "prepost-plan"
    """Plans and supervision: plan a phase, check the pre-phase deadline, fall back to post."""
    VM_TASKS = "prepost-vm-tasks"
    """One message per machine and action (start, snapshot, deallocate, prune, agent check)."""
    MONITORING = "prepost-monitoring"
    """Alert suppression per subscription (always a Storage queue)."""
    OUTCOMES = "prepost-outcomes"
    """Task outcomes to record (always a Storage queue)."""

    @property
    def poison(self) -> str:
        """The queue the Functions host moves a Storage message to after maxDequeueCount."""
        return f"{self.value}-poison"


class TableName(str, Enum):
    """Table storage tables (alphanumeric only, as Azure requires)."""

    RUNS = "PrepostRuns"
    """One row per run, and one per phase of that run."""
    TASKS = "PrepostTasks"
    """One row per machine (or subscription) and action: the per-machine record."""
    MACHINES = "PrepostMachines"
    """The machines a run was planned for, as Resource Graph returned them."""
    IDEMPOTENCY = "PrepostIdempotency"
    """Locks and completed results that keep at-least-once delivery from repeating work."""
    EVENTS = "PrepostEvents"
    """Every delivery the intake saw: accepted, duplicate, ignored or rejected, with reason."""


HOOKS_CONTAINER = "prepost-hooks"
"""Blob container, in the app's own storage account, holding the pre and post scripts (docs/hooks.md)."""

# Connection setting names, as bindings name them. Identity-based connections use the same
# prefix with ``__accountName`` / ``__fullyQualifiedNamespace`` suffixes.
STORAGE_CONNECTION = "AzureWebJobsStorage"
SERVICEBUS_CONNECTION = "ServiceBusConnection"


class SettingName(str, Enum):
    """Application settings read by :mod:`shared.settings`."""

    TRANSPORT = "PREPOST_TRANSPORT"
    ALLOWED_CONFIGURATIONS = "PREPOST_ALLOWED_CONFIGURATIONS"
    ALLOWED_SUBSCRIPTIONS = "PREPOST_ALLOWED_SUBSCRIPTIONS"
    ARM_ENDPOINT = "PREPOST_ARM_ENDPOINT"
    ARM_AUTH = "PREPOST_ARM_AUTH"
    SUPPRESSION_GRACE_MINUTES = "PREPOST_SUPPRESSION_GRACE_MINUTES"
    CANCEL_MARGIN_MINUTES = "PREPOST_CANCEL_MARGIN_MINUTES"
    MAX_TASK_ATTEMPTS = "PREPOST_MAX_TASK_ATTEMPTS"
    SUPPRESSION_RESOURCE_GROUP = "PREPOST_SUPPRESSION_RESOURCE_GROUP"
    SERVICEBUS_SETTLEMENT = "PREPOST_SERVICEBUS_SETTLEMENT"
    OPERATION_CHECK_SECONDS = "PREPOST_OPERATION_CHECK_SECONDS"
    TELEMETRY = "PREPOST_TELEMETRY"
    """``on``: export logs and metrics with OpenTelemetry (needs APPLICATIONINSIGHTS_CONNECTION_STRING)."""
    ARM_BUCKETS = "PREPOST_ARM_BUCKETS"
    MAX_ERRORS = "PREPOST_MAX_ERRORS"
    SAFETY_CRITICAL = "PREPOST_SAFETY_CRITICAL"
    CANCEL_ON_FAILURE = "PREPOST_CANCEL_ON_FAILURE"
    READINESS_CONFIGURATIONS = "PREPOST_READINESS_CONFIGURATIONS"


# Environment variables of the ``prepost`` command (not app settings).
EVENTGRID_KEY_ENV = "PREPOST_EVENTGRID_KEY"
"""The Event Grid webhook's system key (``eventgrid_extension``) for ``send-event`` and ``replay
events`` to a deployed app: read from the environment (or a prompt), never from the command line."""

# Function names, used by the Event Grid webhook path (?functionName=...) and the docs.
INTAKE_FUNCTION = "maintenance_event_intake"
READINESS_FUNCTION = "readiness_check"
READINESS_SCHEDULE = "0 0 5 * * *"
"""When the readiness timer runs (NCRONTAB, UTC): daily at 05:00, days before most windows."""

# host.json extensions.queues.maxDequeueCount; the binding-contract test keeps them equal.
STORAGE_MAX_DEQUEUE_COUNT = 5
