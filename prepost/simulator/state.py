"""The simulator's mutable state, seeded from an :class:`~prepost.simulator.estate.Estate`.

One re-entrant lock guards everything. Request handlers run with the lock held (the app takes
it); the public accessors here take it themselves and return copies, so tests can read the
state from any thread while requests are in flight.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from . import ids
from .clock import Clock, iso
from .estate import ArcServer, ArcStatus, Disk, Estate, MaintenanceConfiguration, PowerState, Run
from .lro import AsyncOperation, OperationBook
from .records import (
    AlertRuleRecord,
    CancellationRecord,
    RequestRecord,
    SnapshotRecord,
    VmRecord,
    arc_json,
    run_json,
)
from .run_command_records import RunCommandBook

__all__ = [
    "AlertRuleRecord",
    "CancellationRecord",
    "RequestRecord",
    "SimulatorState",
    "SnapshotRecord",
    "VmRecord",
]


class SimulatorState:
    """All mutable state. ``lock`` guards it; the public methods are safe from any thread."""

    def __init__(self, estate: Estate, clock: Clock, *, request_log_limit: int = 100_000) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self._request_log_limit = request_log_limit
        self.reset(estate)

    # ------------------------------------------------------------------ seeding
    def reset(self, estate: Estate) -> None:
        """Forget everything and start again from ``estate`` (which is copied, not shared)."""
        seed = copy.deepcopy(estate)
        with self.lock:
            self.estate = seed
            self.subscriptions: dict[str, str] = {sub.lower(): sub for sub in seed.subscription_ids}
            self.resource_groups: set[tuple[str, str]] = set(seed.resource_groups)
            self.vm_records: dict[str, VmRecord] = {
                ids.key(vm.id): VmRecord(vm=vm, power_state=vm.power_state) for vm in seed.vms
            }
            self.disks: dict[str, Disk] = {ids.key(disk.id): disk for disk in seed.disks}
            self.arc_servers: dict[str, ArcServer] = {ids.key(arc.id): arc for arc in seed.arc_servers}
            self.configurations: dict[str, MaintenanceConfiguration] = {
                ids.key(config.id): config for config in seed.configurations
            }
            self.runs: dict[str, Run] = {ids.key(run.correlation_id): run for run in seed.runs}
            self.snapshot_records: dict[str, SnapshotRecord] = _seeded_snapshots(seed, self.clock.now())
            self.snapshot_creations: dict[str, list[datetime]] = {}
            """Creation times of incremental snapshots per source disk key (the 7-per-5-minutes window)."""
            self.alert_rule_records: dict[str, AlertRuleRecord] = {}
            self.cancellation_records: dict[str, CancellationRecord] = {}
            self.operation_book = OperationBook()
            self.run_commands = RunCommandBook()
            """Run commands on VMs and Arc servers, their scripts' executions and programmed outcomes."""
            self._counts: dict[str, dict[str, int]] = {}
            self._count_names: dict[str, str] = {}
            self._requests: deque[RequestRecord] = deque(maxlen=self._request_log_limit)
            self._next_request = 0

    # ------------------------------------------------------------------ used by handlers
    def settle(self) -> None:
        """Finish long-running operations whose time has come."""
        with self.lock:
            self.operation_book.settle(self.clock.now())

    def has_subscription(self, subscription_id: str) -> bool:
        return subscription_id.lower() in self.subscriptions

    def has_resource_group(self, subscription_id: str, resource_group: str) -> bool:
        return (subscription_id.lower(), resource_group.lower()) in self.resource_groups

    def increment(self, operation: str, resource_id: str) -> None:
        """Count one successful call of ``operation`` on ``resource_id``."""
        with self.lock:
            key = ids.key(resource_id)
            self._count_names.setdefault(key, resource_id)
            per_resource = self._counts.setdefault(operation, {})
            per_resource[key] = per_resource.get(key, 0) + 1

    def log_request(
        self, method: str, path: str, operation: str | None, status: int, fault: str | None = None
    ) -> RequestRecord:
        with self.lock:
            record = RequestRecord(self._next_request, self.clock.now(), method, path, operation, status, fault)
            self._next_request += 1
            self._requests.append(record)
            return record

    # ------------------------------------------------------------------ public accessors
    def vms(self) -> list[VmRecord]:
        """Every VM (copies)."""
        with self.lock:
            self.settle()
            return [copy.deepcopy(record) for record in self.vm_records.values()]

    def vm(self, vm_id: str) -> VmRecord:
        """One VM by id (case-insensitive); KeyError when unknown."""
        with self.lock:
            self.settle()
            return copy.deepcopy(self.vm_records[ids.key(vm_id)])

    def power_state(self, vm_id: str) -> PowerState:
        return self.vm(vm_id).power_state

    def set_power_state(self, vm_id: str, power_state: PowerState) -> None:
        """Change a VM's power state directly (as if someone used the portal)."""
        with self.lock:
            record = self.vm_records[ids.key(vm_id)]
            record.power_state = PowerState(power_state)
            record.power_changed = self.clock.now()

    def set_arc_status(self, arc_id: str, status: ArcStatus) -> None:
        """Change an Arc server's connection status."""
        with self.lock:
            arc = self.arc_servers[ids.key(arc_id)]
            arc.status = ArcStatus(status)
            arc.last_status_change = self.clock.now()

    def snapshots(self) -> list[SnapshotRecord]:
        with self.lock:
            self.settle()
            return [replace(record, tags=dict(record.tags)) for record in self.snapshot_records.values()]

    def alert_rules(self) -> list[AlertRuleRecord]:
        with self.lock:
            return [copy.deepcopy(record) for record in self.alert_rule_records.values()]

    def cancellations(self) -> list[CancellationRecord]:
        with self.lock:
            return [replace(record) for record in self.cancellation_records.values()]

    def runs_list(self) -> list[Run]:
        with self.lock:
            return [copy.deepcopy(run) for run in self.runs.values()]

    def add_run(self, correlation_id: str, resource_ids: list[str], status: str = "Pending") -> Run:
        """Register a run (``maintenanceresources`` rows) while the server is running."""
        with self.lock:
            run = self.estate.add_run(correlation_id, resource_ids, status)
            self.runs[ids.key(correlation_id)] = copy.deepcopy(run)
            return copy.deepcopy(run)

    def operations(self) -> list[AsyncOperation]:
        with self.lock:
            return [copy.copy(record) for record in self.operation_book.all()]

    def requests(self, since: int = 0) -> list[RequestRecord]:
        """Request log entries with ``index >= since`` (oldest first)."""
        with self.lock:
            return [record for record in self._requests if record.index >= since]

    @property
    def next_request_index(self) -> int:
        with self.lock:
            return self._next_request

    def count(self, operation: str, resource_id: str | None = None) -> int:
        """Successful calls of ``operation`` (on ``resource_id``, or in total)."""
        with self.lock:
            self.settle()
            per_resource = self._counts.get(str(getattr(operation, "value", operation)), {})
            if resource_id is None:
                return sum(per_resource.values())
            return per_resource.get(ids.key(resource_id), 0)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{operation: {resource id: successful calls}}``."""
        with self.lock:
            self.settle()
            return {
                operation: {self._count_names[key]: value for key, value in per_resource.items()}
                for operation, per_resource in self._counts.items()
            }

    def to_json(self) -> dict[str, Any]:
        """Everything, as ``GET /_sim/state`` answers it."""
        with self.lock:
            self.settle()
            return {
                "time": iso(self.clock.now()),
                "subscriptions": list(self.subscriptions.values()),
                "vms": self.vms_json(),
                "arcServers": [arc_json(arc) for arc in self.arc_servers.values()],
                "snapshots": [record.to_json() for record in self.snapshot_records.values()],
                "alertRules": [record.to_json() for record in self.alert_rule_records.values()],
                "cancellations": [record.to_json() for record in self.cancellation_records.values()],
                "runs": [run_json(run) for run in self.runs.values()],
                "operations": [record.to_json() for record in self.operation_book.all()],
                "counts": self.counts(),
                "requestCount": self._next_request,
            }

    def vms_json(self) -> list[dict[str, Any]]:
        with self.lock:
            self.settle()
            return [record.to_json(self.operation_book.pending_for(record.id)) for record in self.vm_records.values()]


def _seeded_snapshots(estate: Estate, now: datetime) -> dict[str, SnapshotRecord]:
    """Incremental snapshots that existed before the simulation (``Disk.existing_snapshots``):
    beside their disk, untagged, one a day back from ``now``."""
    records: dict[str, SnapshotRecord] = {}
    for disk in estate.disks:
        for index in range(disk.existing_snapshots):
            record = SnapshotRecord(
                subscription_id=disk.subscription_id,
                resource_group=disk.resource_group,
                name=f"{disk.name}-daily-{index:04d}",
                location=disk.location,
                source_resource_id=disk.id,
                source_unique_id=disk.unique_id,
                incremental=True,
                time_created=now - timedelta(days=index + 1),
                disk_size_gb=disk.size_gb,
                os_type=disk.os_type.value if disk.os_type else None,
                unique_id=f"{disk.unique_id}-{index:04d}",
                provisioning_state="Succeeded",
            )
            records[ids.key(record.id)] = record
    return records
