"""In-memory fakes of the Azure ports (``shared/ports/azure.py``), for unit and functional tests.

``FakeEstate`` at the end puts them together with the sample run from ``tests/fixtures/events``.

Each fake keeps its state in plain dictionaries keyed by the lower-cased resource id (Azure
ids are case-insensitive), records every call in ``calls``, and can be told to fail: ``fail``
queues errors for the next calls of one method, so a test can say "the first snapshot call is
throttled with Retry-After 90 s, the second succeeds" without patching anything.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import PermanentError, TransientError
from shared.models.events import parse_event
from shared.models.ids import ResourceId, run_key
from shared.models.messages import PlanPhase, TaskMessage, TaskOutcome
from shared.models.policy import RunPolicy
from shared.models.run import Action, Phase, PhaseRecord, TaskRecord, TaskStatus, task_id
from shared.ports.azure import (
    AlertSuppression,
    ArcMachine,
    ArcMachines,
    Compute,
    ExtensionStatus,
    MachineInventory,
    MaintenanceConfigurations,
    PatchSettings,
    PowerState,
    RunCancellation,
    Snapshot,
    VirtualMachine,
)
from shared.ports.send_guard import check_before_sending
from shared.settings import AllowList
from shared.usecases.intake import IntakePolicy, IntakeResult, accept_event
from shared.usecases.planning import PlanningPorts, plan_phase
from shared.usecases.supervision import record_outcome
from tests.conftest import load_events
from tests.fakes import FakeRunRecords, FakeTransport

DEFAULT_NOW = datetime(2026, 11, 22, 1, 30, tzinfo=UTC)
CHANGING = ("begin_", "put_", "delete_", "cancel")
"""Fake methods that stand for requests changing something in Azure: the send guard looks at them."""


class FaultInjection:
    """Calls recorded per method, errors injected per method and call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._faults: dict[str, deque[BaseException | None]] = defaultdict(deque)
        self.before: dict[str, Callable[..., None]] = {}
        """Hooks run on a call before the fake acts (to observe state at that moment)."""
        self.before_sending: dict[str, Callable[..., None]] = {}
        """Hooks run on a changing call before the send guard looks: what happens while an adapter
        paces the request (a cancellation landing meanwhile)."""

    def fail(self, method: str, *errors: BaseException | None) -> None:
        """The next calls of ``method`` raise these errors in order (``None``: that call succeeds)."""
        self._faults[method].extend(errors)

    def calls_to(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    def _call(self, method: str, *args: Any) -> None:
        if method.startswith(CHANGING):
            # As the ARM adapters do once a request has waited for its token and slot: the
            # guarding use case's last look (shared.ports.send_guard); a refusal sends nothing.
            pacing = self.before_sending.get(method)
            if pacing is not None:
                pacing(*args)
            check_before_sending()
        self.calls.append((method, args))
        hook = self.before.get(method)
        if hook is not None:
            hook(*args)
        if self._faults[method]:
            error = self._faults[method].popleft()
            if error is not None:
                raise error


def _key(resource_id: str) -> str:
    return resource_id.rstrip("/").lower()


def vm_id(name: str, *, subscription: str, resource_group: str = "rg-app") -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.Compute/virtualMachines/{name}"
    )


def arc_id(name: str, *, subscription: str, resource_group: str = "rg-onprem") -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.HybridCompute/machines/{name}"
    )


def disk_id(name: str, *, subscription: str, resource_group: str = "rg-app") -> str:
    group = f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
    return f"{group}/providers/Microsoft.Compute/disks/{name}"


SAFE_PATCH = PatchSettings(os_type="Linux", patch_mode="AutomaticByPlatform", bypass_platform_safety_checks=True)


@dataclass
class FakeOperation:
    """A begun operation on one resource: it ends after ``looks_left`` looks, or when told to."""

    looks_left: int | None
    succeed: Callable[[], None]
    fail: Callable[[], None]


class FakeCompute(Compute, FaultInjection):
    """VMs and snapshots whose start, deallocation and creation are begun, not waited for.

    A begun operation shows its transitional state (``starting``, ``deallocating``,
    ``Creating``) and ends at a later look at the resource (``get_vm``, ``get_snapshot``):
    ``looks_to_finish`` is how many looks it lasts (1, the default, ends it at the next look,
    as the simulator does); None leaves it running until :meth:`finish` or :meth:`fail_operation`.
    """

    def __init__(self, *, now: datetime = DEFAULT_NOW, looks_to_finish: int | None = 1) -> None:
        FaultInjection.__init__(self)
        self.now = now
        self.looks_to_finish = looks_to_finish
        self.vms: dict[str, VirtualMachine] = {}
        self.disk_locations: dict[str, str] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.operations: dict[str, FakeOperation] = {}

    # -- arranging ---------------------------------------------------------------------

    def add_vm(
        self,
        resource_id: str,
        *,
        power_state: PowerState = PowerState.DEALLOCATED,
        location: str = "westeurope",
        data_disks: int = 0,
        os_disk: bool = True,
        patch: PatchSettings | None = SAFE_PATCH,
        agent_status: str | None = "Ready",
        extensions: tuple[ExtensionStatus, ...] = (),
    ) -> VirtualMachine:
        vm = ResourceId(resource_id)
        os_disk_id = (
            disk_id(f"{vm.name}_OsDisk_1", subscription=vm.subscription_id, resource_group=vm.resource_group or "")
            if os_disk
            else None
        )
        data_disk_ids = tuple(
            disk_id(
                f"{vm.name}_DataDisk_{index}",
                subscription=vm.subscription_id,
                resource_group=vm.resource_group or "",
            )
            for index in range(data_disks)
        )
        machine = VirtualMachine(
            resource_id,
            location,
            power_state,
            os_disk_id,
            data_disk_ids,
            patch,
            agent_status=agent_status,
            extensions=extensions,
        )
        self.vms[_key(resource_id)] = machine
        for disk in (os_disk_id, *data_disk_ids):
            if disk:
                self.disk_locations[_key(disk)] = location
        return machine

    def add_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots[_key(snapshot.resource_id)] = snapshot

    def power_state(self, resource_id: str) -> PowerState:
        return self.vms[_key(resource_id)].power_state

    def set_power(self, resource_id: str, state: PowerState) -> None:
        """Change a VM's power state as someone else would (no operation involved)."""
        self._set_power(resource_id, state)

    def finish(self, resource_id: str | None = None) -> None:
        """End the operation on ``resource_id`` (or every one) successfully."""
        for key in [_key(resource_id)] if resource_id else list(self.operations):
            self.operations.pop(key).succeed()

    def fail_operation(self, resource_id: str) -> None:
        """End the operation on ``resource_id`` as Azure does when it fails."""
        self.operations.pop(_key(resource_id)).fail()

    # -- the port ----------------------------------------------------------------------

    def get_vm(self, vm_id: str) -> VirtualMachine | None:
        self._call("get_vm", vm_id)
        self._look(vm_id)
        return self.vms.get(_key(vm_id))

    def begin_start_vm(self, vm_id: str) -> None:
        self._call("begin_start_vm", vm_id)
        self._begin_power(vm_id, PowerState.STARTING, PowerState.RUNNING)

    def begin_deallocate_vm(self, vm_id: str) -> None:
        self._call("begin_deallocate_vm", vm_id)
        self._begin_power(vm_id, PowerState.DEALLOCATING, PowerState.DEALLOCATED)

    def get_disk_location(self, disk_id: str) -> str | None:
        self._call("get_disk_location", disk_id)
        return self.disk_locations.get(_key(disk_id))

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        self._call("get_snapshot", snapshot_id)
        self._look(snapshot_id)
        return self.snapshots.get(_key(snapshot_id))

    def begin_create_incremental_snapshot(
        self, snapshot_id: str, *, source_disk_id: str, location: str, tags: Mapping[str, str]
    ) -> None:
        self._call("begin_create_incremental_snapshot", snapshot_id, source_disk_id, location, dict(tags))
        if _key(source_disk_id) not in self.disk_locations:
            raise PermanentError(f"disk {source_disk_id} not found")
        key = _key(snapshot_id)
        self._refuse_if_busy(snapshot_id)
        self.snapshots[key] = Snapshot(snapshot_id, source_disk_id, self.now, dict(tags), "Creating")

        def settle(state: str) -> None:
            self.snapshots[key] = replace(self.snapshots[key], provisioning_state=state)

        self._begin(snapshot_id, lambda: settle("Succeeded"), lambda: settle("Failed"))

    def list_snapshots(self, subscription_id: str, resource_group: str) -> list[Snapshot]:
        self._call("list_snapshots", subscription_id, resource_group)
        found = []
        for snapshot in self.snapshots.values():
            resource = ResourceId(snapshot.resource_id)
            if resource.subscription_id == subscription_id.lower() and (
                (resource.resource_group or "").lower() == resource_group.lower()
            ):
                found.append(snapshot)
        return found

    def begin_delete_snapshot(self, snapshot_id: str) -> None:
        self._call("begin_delete_snapshot", snapshot_id)
        self.snapshots.pop(_key(snapshot_id), None)

    def _set_power(self, resource_id: str, state: PowerState) -> None:
        key = _key(resource_id)
        if key not in self.vms:
            raise PermanentError(f"virtual machine {resource_id} not found")
        self.vms[key] = replace(self.vms[key], power_state=state)

    def _begin_power(self, vm_id: str, transition: PowerState, final: PowerState) -> None:
        self._refuse_if_busy(vm_id)
        before = self.power_state(vm_id) if _key(vm_id) in self.vms else None
        self._set_power(vm_id, transition)
        self._begin(vm_id, lambda: self._set_power(vm_id, final), lambda: self._set_power(vm_id, before))

    def _refuse_if_busy(self, resource_id: str) -> None:
        # Azure answers 409 OperationNotAllowed while another operation runs on the resource.
        if _key(resource_id) in self.operations:
            raise TransientError(f"{resource_id}: HTTP 409 OperationNotAllowed: another operation is in progress")

    def _begin(self, resource_id: str, succeed: Callable[[], None], fail: Callable[[], None]) -> None:
        self.operations[_key(resource_id)] = FakeOperation(self.looks_to_finish, succeed, fail)

    def _look(self, resource_id: str) -> None:
        operation = self.operations.get(_key(resource_id))
        if operation is None or operation.looks_left is None:
            return
        operation.looks_left -= 1
        if operation.looks_left <= 0:
            self.finish(resource_id)


class FakeInventory(MachineInventory, FaultInjection):
    """Answers what the test put there for a run, whatever the scope (tests check the scope passed)."""

    def __init__(self, machines: Mapping[str, Iterable[str]] | None = None) -> None:
        FaultInjection.__init__(self)
        self.machines: dict[str, list[str]] = {_key(k): list(v) for k, v in (machines or {}).items()}

    def set_machines(self, correlation_id: str, machines: Iterable[str]) -> None:
        self.machines[_key(correlation_id)] = list(machines)

    def list_run_machines(self, correlation_id: str, subscription_ids: Sequence[str]) -> list[str]:
        self._call("list_run_machines", correlation_id, tuple(subscription_ids))
        return list(self.machines.get(_key(correlation_id), []))


class FakeConfigurations(MaintenanceConfigurations, FaultInjection):
    def __init__(self, tags: Mapping[str, Mapping[str, str]] | None = None) -> None:
        FaultInjection.__init__(self)
        self.tags: dict[str, dict[str, str]] = {_key(k): dict(v) for k, v in (tags or {}).items()}

    def set_tags(self, configuration_id: str, tags: Mapping[str, str]) -> None:
        self.tags[_key(configuration_id)] = dict(tags)

    def get_tags(self, configuration_id: str) -> dict[str, str]:
        self._call("get_tags", configuration_id)
        if _key(configuration_id) not in self.tags:
            raise PermanentError(f"maintenance configuration {configuration_id} not found")
        return dict(self.tags[_key(configuration_id)])


class FakeAlerts(AlertSuppression, FaultInjection):
    def __init__(self) -> None:
        FaultInjection.__init__(self)
        self.rules: dict[str, dict[str, Any]] = {}

    def put_rule(
        self,
        rule_id: str,
        *,
        scopes: Sequence[str],
        effective_from: datetime,
        effective_until: datetime,
        description: str,
        tags: Mapping[str, str],
    ) -> None:
        self._call("put_rule", rule_id)
        self.rules[_key(rule_id)] = {
            "id": rule_id,
            "scopes": list(scopes),
            "effective_from": effective_from,
            "effective_until": effective_until,
            "description": description,
            "tags": dict(tags),
        }

    def get_rule(self, rule_id: str) -> dict | None:
        self._call("get_rule", rule_id)
        return self.rules.get(_key(rule_id))

    def delete_rule(self, rule_id: str) -> bool:
        self._call("delete_rule", rule_id)
        return self.rules.pop(_key(rule_id), None) is not None


class FakeArc(ArcMachines, FaultInjection):
    def __init__(self) -> None:
        FaultInjection.__init__(self)
        self.machines: dict[str, ArcMachine] = {}
        self.extensions: dict[str, list[ExtensionStatus]] = {}

    def add_machine(
        self,
        resource_id: str,
        *,
        status: str = "Connected",
        agent_version: str | None = "1.48",
        last_status_change: datetime | None = None,
        automatic_upgrade: bool | None = True,
        extensions: tuple[ExtensionStatus, ...] = (),
    ) -> ArcMachine:
        machine = ArcMachine(resource_id, status, agent_version, last_status_change, automatic_upgrade)
        self.machines[_key(resource_id)] = machine
        self.extensions[_key(resource_id)] = list(extensions)
        return machine

    def get_machine(self, machine_id: str) -> ArcMachine | None:
        self._call("get_machine", machine_id)
        return self.machines.get(_key(machine_id))

    def list_extensions(self, machine_id: str) -> list[ExtensionStatus]:
        self._call("list_extensions", machine_id)
        return list(self.extensions.get(_key(machine_id), []))


class FakeCancellation(RunCancellation, FaultInjection):
    def __init__(self, status: str = "Cancel") -> None:
        FaultInjection.__init__(self)
        self.status = status
        self.cancelled: list[str] = []

    def cancel(self, correlation_id: str) -> str:
        self._call("cancel", correlation_id)
        self.cancelled.append(correlation_id)
        return self.status


# -- the sample run, end to end in memory ---------------------------------------------------

PRE_SAMPLE = "pre-eventgrid-camelcase.json"
POST_SAMPLE = "post-eventgrid.json"
CANCEL_MARGIN = timedelta(minutes=2)
GRACE = timedelta(minutes=60)


class FakeEstate:
    """The sample run (``tests/fixtures/events``) with its machines, policy and records in memory.

    Use cases are driven through it exactly as the handlers drive them; ``now`` defaults to the
    pre-event's own time, so nothing depends on the clock.
    """

    def __init__(
        self,
        *,
        tags: Mapping[str, str] | None = None,
        allowed_subscriptions: str = "*",
        now: datetime | None = None,
    ) -> None:
        self.event = parse_event(load_events(PRE_SAMPLE)[0])
        self.key = run_key(self.event.correlation_id)
        self.now = now or self.event.event_time
        self.records = FakeRunRecords()
        self.transport = FakeTransport()
        self.compute = FakeCompute(now=self.now)
        self.inventory = FakeInventory({self.event.correlation_id: []})
        self.configurations = FakeConfigurations({self.event.configuration_id: dict(tags or {})})
        self.alerts = FakeAlerts()
        self.arc = FakeArc()
        self.cancellation = FakeCancellation()
        self.allowed_subscriptions = AllowList.parse(allowed_subscriptions)
        self.policy_defaults = RunPolicy()

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return self.event.subscription_ids

    # -- machines ------------------------------------------------------------------------

    def add_vm(
        self,
        name: str,
        *,
        subscription: str | None = None,
        resource_group: str = "rg-app",
        in_run: bool = True,
        **kwargs: Any,
    ) -> str:
        resource_id = vm_id(name, subscription=subscription or self.subscriptions[0], resource_group=resource_group)
        self.compute.add_vm(resource_id, **kwargs)
        if in_run:
            self.inventory.machines[_key(self.event.correlation_id)].append(resource_id)
        return resource_id

    def add_arc(self, name: str, *, subscription: str | None = None, **kwargs: Any) -> str:
        resource_id = arc_id(name, subscription=subscription or self.subscriptions[0])
        self.arc.add_machine(resource_id, **kwargs)
        self.inventory.machines[_key(self.event.correlation_id)].append(resource_id)
        return resource_id

    # -- the pipeline --------------------------------------------------------------------

    def deliver(self, name: str = PRE_SAMPLE, *, now: datetime | None = None) -> IntakeResult:
        policy = IntakePolicy(
            allowed_configurations=AllowList.parse("*"),
            allowed_subscriptions=AllowList.parse("*"),
            cancel_margin=CANCEL_MARGIN,
            post_fallback_after=GRACE,
        )
        return accept_event(
            load_events(name)[0],
            records=self.records,
            transport=self.transport,
            policy=policy,
            now=now or self.now,
        )

    def planning(self) -> PlanningPorts:
        return PlanningPorts(
            self.records,
            self.transport,
            self.inventory,
            self.configurations,
            self.allowed_subscriptions,
            self.cancellation,
            self.policy_defaults,
        )

    def plan(self, phase: Phase = Phase.PRE, *, attempt: int = 1, now: datetime | None = None) -> PhaseRecord:
        return plan_phase(
            PlanPhase(run_key=self.key, phase=phase, attempt=attempt), self.planning(), now=now or self.now
        )

    def pass_preflight(self) -> None:
        """Report every unfinished preflight task of the pre phase as succeeded, with no findings."""
        for task in self.records.list_tasks(self.key, Phase.PRE):
            if task.action is Action.PREFLIGHT and not task.status.is_final:
                self.report(Action.PREFLIGHT, task.target, TaskStatus.SUCCEEDED, data={"findings": []})

    def planned_pre(self) -> PhaseRecord:
        """Deliver the pre-event and plan it; the transport is emptied afterwards."""
        self.deliver()
        phase = self.plan()
        self.transport.take()
        return phase

    def report(
        self,
        action: Action,
        target: str,
        status: TaskStatus,
        *,
        phase: Phase = Phase.PRE,
        data: Mapping[str, Any] | None = None,
        detail: str = "",
        attempts: int = 1,
        now: datetime | None = None,
    ) -> bool:
        """Deliver a task outcome to the recorder, as the outcomes queue would."""
        outcome = TaskOutcome(
            run_key=self.key,
            phase=phase,
            action=action,
            target=target,
            status=status,
            detail=detail,
            attempts=attempts,
            data=dict(data or {}),
        )
        return record_outcome(
            outcome, records=self.records, cancellation=self.cancellation, transport=self.transport, now=now or self.now
        )

    def task(self, phase: Phase, action: Action, target: str) -> TaskRecord | None:
        return self.records.get_task(self.key, task_id(phase, action, target))

    def as_planned(self, message: TaskMessage, *, options: Mapping[str, Any] | None = None) -> TaskMessage:
        """``message`` as a planner would have sent it: its task recorded with the same options.

        Actions check a message against its task record; a test that sends a task its fixture
        did not plan (a prune, a removal) records it first, as the post planner would. Without
        ``options`` the message carries the recorded task's options.
        """
        task = self.records.get_task(message.run_key, message.task_id)
        if options is None and task is not None:
            return replace(message, options=dict(task.options))
        wanted = dict(options or {})
        if task is None:
            self.records.add_tasks(
                [TaskRecord(message.run_key, message.phase, message.action, message.target, TaskStatus.QUEUED)]
            )
            task = self.records.get_task(message.run_key, message.task_id)
        if task.options != wanted:
            task.options = wanted
            self.records.replace_task(task)
        return replace(message, options=wanted)

    def tasks(self, phase: Phase | None = None) -> list[TaskRecord]:
        return self.records.list_tasks(self.key, phase)

    def phase(self, phase: Phase = Phase.PRE) -> PhaseRecord | None:
        return self.records.get_phase(self.key, phase)
