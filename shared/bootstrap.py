"""The composition root: the one place where ports meet their adapters.

Nothing is created at import: the first invocation builds what it needs, and later
invocations in the same worker reuse it (cold start is paid on every scale-out).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shared.ports.azure import (
    AlertSuppression,
    ArcMachines,
    Compute,
    MachineInventory,
    MaintenanceConfigurations,
    RunCancellation,
)
from shared.ports.idempotency import IdempotencyStore
from shared.ports.records import RunRecords
from shared.ports.transport import WorkTransport
from shared.settings import Settings, Transport, get_settings

if TYPE_CHECKING:
    from shared.models.retry import RetryPolicy
    from shared.usecases.intake import IntakePolicy
    from shared.usecases.machine_actions import MachinePorts
    from shared.usecases.monitoring_actions import MonitoringPorts
    from shared.usecases.planning import PlanningPorts
    from shared.usecases.script_actions import ScriptPorts

T = TypeVar("T")


class Container:
    """Lazily built, reused adapters. Tests pass ``overrides`` to swap any of them."""

    def __init__(self, settings: Settings | None = None, **overrides: Any):
        self._settings = settings
        self._built: dict[str, Any] = dict(overrides)
        self._lock = threading.RLock()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    def _get(self, name: str, build: Callable[[], T]) -> T:
        if name in self._built:
            return self._built[name]
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    # -- storage -------------------------------------------------------------------------

    @property
    def storage(self):
        from shared.adapters.storage_clients import StorageClients

        return self._get("storage", lambda: StorageClients(self.settings.storage))

    @property
    def records(self) -> RunRecords:
        from shared.adapters.table_records import TableRunRecords

        return self._get("records", lambda: TableRunRecords(self.storage))

    @property
    def idempotency(self) -> IdempotencyStore:
        from shared.adapters.table_idempotency import TableIdempotencyStore

        return self._get("idempotency", lambda: TableIdempotencyStore(self.storage))

    @property
    def storage_transport(self) -> WorkTransport:
        from shared.adapters.storage_queue_transport import StorageQueueTransport

        return self._get("storage_transport", lambda: StorageQueueTransport(self.storage))

    @property
    def transport(self) -> WorkTransport:
        def build() -> WorkTransport:
            if self.settings.transport is Transport.SERVICEBUS:
                from shared.adapters.servicebus_transport import ServiceBusTransport

                return ServiceBusTransport(self.settings.servicebus, fallback=self.storage_transport)
            return self.storage_transport

        return self._get("transport", build)

    # -- Azure management ------------------------------------------------------------------

    @property
    def arm(self):
        from shared.adapters.arm.clients import ArmClients
        from shared.adapters.arm.rate_control import RateControl, buckets_from

        settings = self.settings
        return self._get(
            "arm",
            lambda: ArmClients(
                settings.arm_endpoint,
                settings.arm_auth,
                rate=RateControl(buckets=buckets_from(settings.arm_buckets)),
            ),
        )

    @property
    def inventory(self) -> MachineInventory:
        from shared.adapters.arm.resource_graph import ResourceGraphInventory

        return self._get("inventory", lambda: ResourceGraphInventory(self.arm))

    @property
    def configurations(self) -> MaintenanceConfigurations:
        from shared.adapters.arm.maintenance import ArmMaintenanceConfigurations

        return self._get("configurations", lambda: ArmMaintenanceConfigurations(self.arm))

    @property
    def cancellation(self) -> RunCancellation:
        from shared.adapters.arm.maintenance import ArmRunCancellation

        return self._get("cancellation", lambda: ArmRunCancellation(self.arm))

    @property
    def compute(self) -> Compute:
        from shared.adapters.arm.compute import ArmCompute

        return self._get("compute", lambda: ArmCompute(self.arm))

    @property
    def alerts(self) -> AlertSuppression:
        from shared.adapters.arm.alerts import ArmAlertSuppression

        return self._get("alerts", lambda: ArmAlertSuppression(self.arm))

    @property
    def arc(self) -> ArcMachines:
        from shared.adapters.arm.arc import ArmArcMachines

        return self._get("arc", lambda: ArmArcMachines(self.arm))

    # -- what the use cases take ------------------------------------------------------------

    @property
    def retry_policy(self) -> RetryPolicy:
        """The one retry policy, for the task runner and the Service Bus settlement alike."""
        from shared.models.retry import RetryPolicy

        return self._get("retry_policy", lambda: RetryPolicy(max_attempts=self.settings.max_task_attempts))

    @property
    def intake_policy(self) -> IntakePolicy:
        from shared.usecases.intake import IntakePolicy

        settings = self.settings
        return self._get(
            "intake_policy",
            lambda: IntakePolicy(
                allowed_configurations=settings.allowed_configurations,
                allowed_subscriptions=settings.allowed_subscriptions,
                cancel_margin=settings.cancel_margin,
                post_fallback_after=settings.suppression_grace,
            ),
        )

    @property
    def planning_ports(self) -> PlanningPorts:
        from shared.usecases.planning import PlanningPorts

        return self._get(
            "planning_ports",
            lambda: PlanningPorts(
                records=self.records,
                transport=self.transport,
                inventory=self.inventory,
                configurations=self.configurations,
                allowed_subscriptions=self.settings.allowed_subscriptions,
                cancellation=self.cancellation,
                policy_defaults=self.settings.policy_defaults,
            ),
        )

    @property
    def script_ports(self) -> ScriptPorts:
        """Pre and post scripts: Run Command on VMs and Arc servers, scripts from blobs (docs/hooks.md)."""
        from shared.adapters.arm.automation_jobs import AutomationJobs
        from shared.adapters.arm.run_commands import ArmRunCommands, ArmScriptTargets
        from shared.adapters.blob_scripts import BlobScriptStore
        from shared.usecases.script_actions import ScriptPorts

        return self._get(
            "script_ports",
            lambda: ScriptPorts(
                records=self.records,
                targets=ArmScriptTargets(self.arm),
                runner=ArmRunCommands(self.arm),
                store=BlobScriptStore(self.settings.storage),
                automation=lambda account: AutomationJobs(self.arm, account),
            ),
        )

    @property
    def machine_ports(self) -> MachinePorts:
        from shared.usecases.machine_actions import MachinePorts

        return self._get(
            "machine_ports",
            lambda: MachinePorts(
                records=self.records,
                compute=self.compute,
                arc=self.arc,
                allowed_subscriptions=self.settings.allowed_subscriptions,
                scripts=self.script_ports,
            ),
        )

    @property
    def readiness_ports(self):
        from shared.adapters.arm.assignments import ResourceGraphAssignments
        from shared.usecases.readiness import ReadinessPorts

        return self._get(
            "readiness_ports",
            lambda: ReadinessPorts(
                configurations=self.configurations,
                assignments=ResourceGraphAssignments(self.arm),
                compute=self.compute,
                arc=self.arc,
            ),
        )

    @property
    def readiness_records(self):
        from shared.adapters.table_readiness import TableReadinessRecords

        return self._get("readiness_records", lambda: TableReadinessRecords(self.storage))

    @property
    def monitoring_ports(self) -> MonitoringPorts:
        from shared.usecases.monitoring_actions import MonitoringPorts

        return self._get(
            "monitoring_ports",
            lambda: MonitoringPorts(
                records=self.records,
                alerts=self.alerts,
                default_grace=self.settings.suppression_grace,
                rule_resource_group=self.settings.suppression_resource_group,
                allowed_subscriptions=self.settings.allowed_subscriptions,
            ),
        )


_container: Container | None = None
_container_lock = threading.Lock()


def get_container() -> Container:
    """The process-wide container used by the trigger adapters."""
    global _container
    if _container is None:
        with _container_lock:
            if _container is None:
                _container = Container()
    return _container


def set_container(container: Container | None) -> None:
    """Replace the process-wide container (the local runner and tests do this)."""
    global _container
    with _container_lock:
        _container = container
