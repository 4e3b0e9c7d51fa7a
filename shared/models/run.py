"""Runs, phases and tasks: what prepost records about every maintenance window."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from shared.models.ids import ResourceId


class Phase(str, Enum):
    PRE = "pre"
    POST = "post"


class Action(str, Enum):
    """One kind of work on one target (a machine, or a subscription for alert suppression)."""

    START_VM = "start-vm"
    SNAPSHOT_DISKS = "snapshot-disks"
    CHECK_ARC_AGENT = "check-arc-agent"
    """Superseded by PREFLIGHT (which checks Arc servers too); still handled for messages in flight."""
    PREFLIGHT = "preflight"
    """Read-only readiness checks of one machine, recorded as findings with a severity."""
    SUPPRESS_ALERTS = "suppress-alerts"
    DEALLOCATE_VM = "deallocate-vm"
    PRUNE_SNAPSHOTS = "prune-snapshots"
    REMOVE_SUPPRESSION = "remove-suppression"
    PRE_SCRIPT = "pre-script"
    """The configuration's pre script inside the machine (docs/hooks.md)."""
    POST_SCRIPT = "post-script"
    """The configuration's post script inside the machine; runs also after a cancelled run."""

    @property
    def is_monitoring(self) -> bool:
        return self in (Action.SUPPRESS_ALERTS, Action.REMOVE_SUPPRESSION)

    @property
    def is_safety_critical(self) -> bool:
        """Pre-work without which patching should not go ahead (the run is cancelled on failure).

        The default for the action; a task can say otherwise (:attr:`TaskRecord.is_safety_critical`).
        """
        return self in (Action.SNAPSHOT_DISKS, Action.START_VM, Action.PRE_SCRIPT)

    @property
    def is_script(self) -> bool:
        return self in (Action.PRE_SCRIPT, Action.POST_SCRIPT)


class TaskStatus(str, Enum):
    QUEUED = "queued"
    RETRYING = "retrying"
    """Waiting for its next attempt after a throttled or transient failure."""
    IN_PROGRESS = "in-progress"
    """A long Azure operation (VM start or deallocation, snapshots) was begun; the task looks again later."""
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.SKIPPED, TaskStatus.FAILED)


class PhaseStatus(str, Enum):
    RECEIVED = "received"
    PLANNED = "planned"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed-with-failures"
    FAILED = "failed"
    """The phase could not be planned at all (for example Resource Graph refused)."""

    @property
    def is_final(self) -> bool:
        return self in (PhaseStatus.COMPLETED, PhaseStatus.COMPLETED_WITH_FAILURES, PhaseStatus.FAILED)


class PhaseSource(str, Enum):
    EVENT = "event"
    FALLBACK = "fallback"
    """The post phase run by prepost itself because no post-event arrived in time."""


@dataclass
class RunRecord:
    """One scheduled run of a maintenance configuration, keyed by its correlation id."""

    run_key: str
    correlation_id: str
    configuration_id: str
    start: datetime
    end: datetime
    subscription_ids: tuple[str, ...]
    created_at: datetime
    cancellation_cutoff: datetime | None = None
    cancel_requested_at: datetime | None = None
    """When prepost decided the run must be cancelled (whether or not the call could be made)."""
    cancel_reason: str | None = None
    cancel_result: str | None = None
    """What came of it: the call's answer, or why no call was made (too late, policy off, ...)."""
    cancel_accepted: bool = False
    """Update Manager accepted the cancellation: nothing will be patched, pre-work stops."""
    gate: dict[str, Any] | None = None
    """The readiness gate's decision (:class:`shared.models.gate.GateDecision` as a dict): proceed
    or cancel, when, and the machines whose safety work failed with their reasons."""
    post_began_at: datetime | None = None
    """When the post phase began (its event came, or the fallback began it). Written before the
    post phase's record, so that the fence on pre-work (:mod:`shared.usecases.fences`) sees it in
    the one record it reads anyway."""
    stamps_post_start: bool = False
    """This run's record gets :attr:`post_began_at`. A run recorded by an earlier version does
    not: its fence still reads the post phase's record."""
    etag: str | None = None

    @property
    def configuration_name(self) -> str:
        return self.configuration_id.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class PhaseRecord:
    """One phase (pre or post) of a run: when it arrived, what was planned, how it ended."""

    run_key: str
    phase: Phase
    status: PhaseStatus
    event_id: str
    received_at: datetime
    source: PhaseSource = PhaseSource.EVENT
    event_status: str | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    planned_at: datetime | None = None
    expected_tasks: int = 0
    finished_tasks: int = 0
    failed_tasks: int = 0
    machines: int = 0
    completed_at: datetime | None = None
    findings: list[str] = field(default_factory=list)
    etag: str | None = None
    storage_view: Any = field(default=None, compare=False, repr=False)
    """What the storage adapter saw when it read this record, kept for its next write of it
    (the Table adapter: the counter rows beside the phase row and their etags, see
    :mod:`shared.adapters.table_records`). Private to that adapter: never compared or shown,
    and None on a record not read from storage."""


@dataclass
class TaskRecord:
    """The record of one action on one target: the per-machine outcome operators look at."""

    run_key: str
    phase: Phase
    action: Action
    target: str
    """A machine's resource id, or a subscription id for monitoring actions."""
    status: TaskStatus
    detail: str = ""
    attempts: int = 0
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    """Facts later phases rely on: ``started_by_us``, ``snapshots``, ``rule_id``, ..."""
    options: dict[str, Any] = field(default_factory=dict)
    """The options its message carries, so the message can be sent again from the record."""
    safety_critical: bool | None = None
    """Whether its failure counts against the run's error budget, as the policy said when the
    phase was planned. None (records from before the gate) means the action's default. Any kind
    of task can set it; the gate counts failed safety-critical tasks per machine, whatever they do."""
    etag: str | None = None

    @property
    def task_id(self) -> str:
        return task_id(self.phase, self.action, self.target)

    @property
    def is_safety_critical(self) -> bool:
        """Whether its failure counts against the run's error budget: the task's own flag
        (``safety_critical``, set when the phase is planned from the policy), else its options'
        (``safety_critical``, e.g. a pre script declared ``prepost-hook-pre-failure=warn``), else
        the action's default."""
        flag = self.safety_critical
        if flag is None:
            flag = self.options.get(SAFETY_CRITICAL_OPTION)
        return self.action.is_safety_critical if flag is None else bool(flag)


SAFETY_CRITICAL_OPTION = "safety_critical"
AFTER_OPTION = "after"
"""Task option: ids of tasks of the same run and phase that must be final before this one begins."""
THEN_OPTION = "then"
"""Task option: ids of the tasks waiting for this one (their ``after``); the outcome recorder sends
them on as soon as this task is final, so they need not wait for their next look."""
PREFLIGHT_SEVERITY = "severity"
"""Preflight task option: the policy's severity per finding kind (kind value -> severity value)."""
PREFLIGHT_START = "start"
"""Preflight task option: whether a start task was planned for the machine (the check then asks it
for the power state the VM had before prepost started it)."""


@dataclass(frozen=True)
class MachineRecord:
    """A machine in the run's scope, as Resource Graph listed it."""

    run_key: str
    resource_id: str

    @property
    def subscription_id(self) -> str:
        return ResourceId(self.resource_id).subscription_id


def task_id(phase: Phase, action: Action, target: str) -> str:
    """The stable id of a task: the same phase, action and target always give the same id."""
    target_part = ResourceId(target).short_hash() if target.startswith("/") else target.lower()
    return f"{phase.value}-{action.value}-{target_part}"
