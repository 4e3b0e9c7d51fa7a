"""The drill's invariants: what must hold after every maintenance window, whatever went wrong.

Each invariant is a pure function of a :class:`WindowObservation` (gathered from the records in
Azurite and from the simulator by :mod:`prepost.chaos.observe`), so tests can feed it synthetic
observations. An invariant answers ``ok``, ``FAIL`` with readable messages (which VM, which
task, what time), or ``n/a`` when it does not apply to the window (I1 and I2 judge only runs on
their side of the cancellation deadline).

All times are virtual (the drill's scaled clock) and timezone-aware UTC.

| id | what must hold |
|----|----------------|
| I1 | pre-work that succeeded in time never leads to a cancellation |
| I2 | failed or unfinished pre-work leads to a cancel before the cut-off, or the record says why not |
| I3 | VMs prepost started end deallocated; no VM that was running before ends deallocated |
| I4 | no pre-phase action (start, snapshot, pre script) begins after the start, the post phase or the cancel |
| I5 | the run's alert processing rules are gone after the post phase and never outlast end + grace |
| I6 | exactly one snapshot per disk per run |
| I7 | every phase and task reaches a final status, and a post phase exists |
| I8 | nothing vanishes: no leftover messages, poisoned ones explain themselves, accepted events are logged |
| I9 | a script runs at most once per machine and phase; every machine whose pre script ran gets its post script |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.usecases.intake import LATE_PRE_EVENT_FINDING

INVARIANTS = ("I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8", "I9")
TITLES = {
    "I1": "no cancel after pre-work succeeded in time",
    "I2": "cancel (or a reason) when pre-work failed or was late",
    "I3": "started VMs deallocated, running VMs left running",
    "I4": "no pre-phase action after start, post or cancel",
    "I5": "alert rules removed and bounded by end + grace",
    "I6": "one snapshot per disk per run",
    "I7": "every phase and task final; a post phase exists",
    "I8": "nothing vanishes (queues, poison, events log)",
    "I9": "scripts run once; a pre script is followed by its post script",
}
OK, FAIL, NOT_APPLICABLE = "ok", "FAIL", "n/a"

SAFETY_ACTIONS = ("start-vm", "snapshot-disks")
FINAL_TASK = ("succeeded", "skipped", "failed")
SUCCESS_TASK = ("succeeded", "skipped")
FINAL_PHASE = ("completed", "completed-with-failures", "failed")
IN_FLIGHT_ALLOWANCE = timedelta(seconds=30)
"""I4: a request that began just before the boundary may be answered just after it."""


@dataclass(frozen=True)
class PhaseObs:
    phase: str
    status: str
    received_at: datetime
    source: str = "event"
    planned_at: datetime | None = None
    completed_at: datetime | None = None
    findings: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskObs:
    phase: str
    action: str
    target: str
    status: str
    detail: str = ""
    recorded_at: datetime | None = None
    """When the task entity was last written (its Table ``Timestamp``, in virtual time)."""
    safety_critical: bool = False
    """The task's own flag (a pre script declared ``cancel`` is; start and snapshot always are)."""

    @property
    def task_id(self) -> str:
        from shared.models.run import Action, Phase, task_id

        return task_id(Phase(self.phase), Action(self.action), self.target)

    @property
    def name(self) -> str:
        return f"{self.phase} {self.action} {_short(self.target)}"


@dataclass(frozen=True)
class ArmRequest:
    """One accepted management call on the window's machines, from the simulator's request log."""

    time: datetime
    operation: str
    """``vm.start``, ``snapshots.create`` or ``runcommands.put``."""
    target: str
    """The VM's or the snapshot's name."""
    status: int = 202


@dataclass(frozen=True)
class ScriptRunObs:
    """One script execution the simulator ran for the run (a run command PUT that ran it)."""

    machine: str
    phase: str
    time: datetime


@dataclass(frozen=True)
class SnapshotObs:
    id: str
    source_disk_id: str
    provisioning_state: str = "Succeeded"


@dataclass(frozen=True)
class RuleObs:
    """An alert processing rule tagged with the run, as the drill saw it at any time."""

    id: str
    effective_until: datetime | None
    """The latest ``effectiveUntil`` seen on it (UTC), or None without a schedule."""
    exists_now: bool


@dataclass(frozen=True)
class MessageObs:
    """A message of the run found in a queue."""

    queue: str
    description: str
    reason: str | None = None
    """The parking note's reason (messages prepost parked itself); None when the host poisoned it."""
    task_id: str | None = None
    """The task a task, monitoring or outcome message belongs to."""


@dataclass(frozen=True)
class DeliveryObs:
    phase: str
    time: datetime
    status: int


@dataclass
class WindowObservation:
    """Everything the invariants look at for one window."""

    number: int
    run_key: str
    correlation_id: str
    start: datetime
    end: datetime
    cutoff: datetime
    """The cancellation cut-off: the earlier of the event's cut-off and start - 10 min."""
    deadline: datetime
    """When the app's deadline check is due: cut-off minus its safety margin."""
    grace: timedelta
    band_before: timedelta = timedelta(minutes=1)
    band_after: timedelta = timedelta(minutes=1)
    """Around the deadline, a task finishing is judged by neither I1 nor I2."""
    observed_at: datetime | None = None
    vms: dict[str, list[str]] = field(default_factory=dict)
    """Window VM id (lower case) -> the ids of its disks that must be snapshotted (lower case)."""
    power_before: dict[str, str] = field(default_factory=dict)
    power_after: dict[str, str] = field(default_factory=dict)
    vm_starts: list[ArmRequest] = field(default_factory=list)
    snapshot_puts: list[ArmRequest] = field(default_factory=list)
    script_puts: list[ArmRequest] = field(default_factory=list)
    """Accepted run command PUTs of the run's pre scripts (``runcommands.put``, target: the machine's name)."""
    run_found: bool = True
    cancel_requested_at: datetime | None = None
    cancel_reason: str | None = None
    cancel_result: str | None = None
    """What came of the decision to cancel: the call's answer, or why no call was made."""
    cancel_accepted: bool = False
    """Update Manager accepted the cancellation (nothing is patched; pre-work must stop)."""
    sim_cancellations: list[datetime] = field(default_factory=list)
    """When the simulator received cancel calls for the run (first and later ones)."""
    phases: dict[str, PhaseObs] = field(default_factory=dict)
    tasks: list[TaskObs] = field(default_factory=list)
    snapshots: list[SnapshotObs] = field(default_factory=list)
    rules: list[RuleObs] = field(default_factory=list)
    leftovers: list[MessageObs] = field(default_factory=list)
    poison: list[MessageObs] = field(default_factory=list)
    deliveries: list[DeliveryObs] = field(default_factory=list)
    """Deliveries the drill made, with the HTTP status it got (0: no answer)."""
    recorded_deliveries: dict[str, int] = field(default_factory=dict)
    """Phase -> how many deliveries of the run the intake's events log holds."""
    script_runs: list[ScriptRunObs] = field(default_factory=list)
    """Every pre and post script execution of the run, as the simulator counted them."""

    def when(self, moment: datetime | None) -> str:
        """A time as ``HH:MM:SS (T-12m00s)``: clock time and offset from the scheduled start."""
        if moment is None:
            return "never"
        offset = (moment - self.start).total_seconds()
        sign = "+" if offset >= 0 else "-"
        minutes, seconds = divmod(int(abs(offset)), 60)
        return f"{moment:%H:%M:%S} (T{sign}{minutes}m{seconds:02d}s)"


@dataclass
class InvariantResult:
    invariant: str
    status: str
    violations: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def to_json(self) -> dict:
        return {"status": self.status, "violations": list(self.violations), "note": self.note}


def _result(invariant: str, violations: list[str], note: str = "") -> InvariantResult:
    return InvariantResult(invariant, FAIL if violations else OK, violations, note)


def _short(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


# -- I1 and I2: the cancellation decision ----------------------------------------------------


@dataclass(frozen=True)
class PreWorkVerdict:
    """How the safety-critical pre-work stood at the deadline."""

    kind: str
    """``in-time`` (I1 judges), ``failed-or-late`` (I2 judges) or ``band`` (neither)."""
    reason: str


def pre_work_verdict(obs: WindowObservation) -> PreWorkVerdict:
    low, high = obs.deadline - obs.band_before, obs.deadline + obs.band_after
    pre = obs.phases.get("pre")
    if pre is not None and pre.status == "failed":
        return PreWorkVerdict("failed-or-late", f"the pre phase could not be planned ({obs.when(pre.planned_at)})")
    if pre is None or pre.planned_at is None or pre.planned_at > high:
        planned = "never" if pre is None or pre.planned_at is None else f"only at {obs.when(pre.planned_at)}"
        return PreWorkVerdict(
            "failed-or-late", f"the pre phase was not planned by the deadline {obs.when(obs.deadline)} ({planned})"
        )
    safety = [t for t in obs.tasks if t.phase == "pre" and (t.action in SAFETY_ACTIONS or t.safety_critical)]
    failed = [t for t in safety if t.status == "failed"]
    if failed:
        first = failed[0]
        return PreWorkVerdict(
            "failed-or-late",
            f"{len(failed)} safety task(s) failed, e.g. {first.name} at {obs.when(first.recorded_at)}: {first.detail}",
        )
    late = [t for t in safety if t.status not in FINAL_TASK or t.recorded_at is None or t.recorded_at > high]
    if late:
        first = late[0]
        return PreWorkVerdict(
            "failed-or-late",
            f"{len(late)} safety task(s) unfinished at the deadline {obs.when(obs.deadline)}, e.g. {first.name} "
            f"({first.status}, recorded {obs.when(first.recorded_at)})",
        )
    in_band = [t for t in safety if t.recorded_at is not None and t.recorded_at > low]
    if in_band or pre.planned_at > low:
        return PreWorkVerdict(
            "band", f"pre-work finished within the tolerance around the deadline {obs.when(obs.deadline)}"
        )
    last = max((t.recorded_at for t in safety if t.recorded_at), default=pre.planned_at)
    return PreWorkVerdict(
        "in-time", f"{len(safety)} safety task(s) succeeded or skipped by {obs.when(last)}, before the deadline"
    )


def _cancelled(obs: WindowObservation) -> str:
    """Why the run counts as cancelled ('' when it does not)."""
    parts = []
    if obs.sim_cancellations:
        parts.append(f"Update Manager received a cancel at {obs.when(min(obs.sim_cancellations))}")
    if obs.cancel_requested_at is not None:
        parts.append(f"the run record has cancel_requested_at {obs.when(obs.cancel_requested_at)}")
    if parts and obs.cancel_reason:
        parts.append(f"reason: {obs.cancel_reason}")
    return "; ".join(parts)


def check_i1(obs: WindowObservation) -> InvariantResult:
    verdict = pre_work_verdict(obs)
    if verdict.kind != "in-time":
        return InvariantResult("I1", NOT_APPLICABLE, note=verdict.reason)
    cancelled = _cancelled(obs)
    violations = [f"run cancelled although {verdict.reason}: {cancelled}"] if cancelled else []
    return _result("I1", violations, verdict.reason)


def check_i2(obs: WindowObservation) -> InvariantResult:
    verdict = pre_work_verdict(obs)
    if verdict.kind != "failed-or-late":
        return InvariantResult("I2", NOT_APPLICABLE, note=verdict.reason)
    in_time = [moment for moment in obs.sim_cancellations if moment <= obs.cutoff]
    if in_time:
        return _result("I2", [], f"{verdict.reason}; cancelled at {obs.when(min(in_time))}")
    if obs.cancel_result:
        return _result("I2", [], f"{verdict.reason}; not cancelled in time: {obs.cancel_result}")
    pre = obs.phases.get("pre")
    late = next((f for f in (pre.findings if pre else ()) if f.startswith(LATE_PRE_EVENT_FINDING)), None)
    if late:
        # The pre-event itself came after the deadline: the record says so, and why no
        # cancellation could be made in time.
        return _result("I2", [], f"{verdict.reason}; the record says why: {late}")
    late = f" (a cancel came only at {obs.when(min(obs.sim_cancellations))})" if obs.sim_cancellations else ""
    return _result(
        "I2",
        [
            f"{verdict.reason}, but the run was not cancelled before the cut-off {obs.when(obs.cutoff)}{late} "
            "and its record gives no reason (cancel_result empty)"
        ],
    )


# -- I3: power states --------------------------------------------------------------------------


def check_i3(obs: WindowObservation) -> InvariantResult:
    started: dict[str, list[datetime]] = {}
    for request in obs.vm_starts:
        started.setdefault(request.target.lower(), []).append(request.time)
    violations = []
    for vm_id in sorted(obs.vms):
        name = _short(vm_id)
        before = obs.power_before.get(vm_id)
        after = obs.power_after.get(vm_id, "unknown")
        starts = started.get(name.lower(), [])
        by_us = f" (prepost started it at {', '.join(obs.when(t) for t in starts)})" if starts else ""
        if before == "deallocated" and after != "deallocated":
            violations.append(f"{name} was deallocated before the window and is {after} after it{by_us}")
        elif before == "running" and after != "running":
            violations.append(
                f"{name} was running before the window and is {after} after it: "
                f"only VMs prepost started may be deallocated{by_us}"
            )
        elif before == "stopped" and after not in ("stopped", "deallocated"):
            violations.append(f"{name} was stopped before the window and is {after} after it{by_us}")
    names = sorted(started)
    note = f"started by prepost: {', '.join(names)}" if names else "no VM started"
    return _result("I3", violations, note)


# -- I4: no pre-phase work once it must stop ---------------------------------------------------


def _machine_of(obs: WindowObservation, request: ArmRequest) -> str:
    """The VM a request acted on: the VM itself, or the VM whose disk a snapshot copies."""
    if request.operation in ("vm.start", "runcommands.put"):
        return request.target
    best, machine = "", request.target
    for vm_id, disks in obs.vms.items():
        for disk in disks:
            name = _short(disk)
            if name.lower() in request.target.lower() and len(name) > len(best):
                best, machine = name, _short(vm_id)
    return machine


def check_i4(obs: WindowObservation) -> InvariantResult:
    limits = [(obs.start, "the run's scheduled start")]
    post = obs.phases.get("post")
    if post is not None:
        limits.append((post.received_at, f"the post phase began ({post.source})"))
    if obs.cancel_requested_at is not None and obs.cancel_accepted:
        # Only a cancellation Update Manager accepted stops the run; a refused or too-late one
        # leaves patching going ahead, and the pre-work with it.
        limits.append((obs.cancel_requested_at, "the run was cancelled"))
    limit, what = min(limits, key=lambda item: item[0])
    late: dict[str, list[ArmRequest]] = {}
    for request in sorted([*obs.vm_starts, *obs.snapshot_puts, *obs.script_puts], key=lambda r: r.time):
        if request.time > limit + IN_FLIGHT_ALLOWANCE:
            late.setdefault(_machine_of(obs, request), []).append(request)
    violations = []
    for machine, requests in sorted(late.items()):
        starts = [r for r in requests if r.operation == "vm.start"]
        scripts = [r for r in requests if r.operation == "runcommands.put"]
        snapshots = [r for r in requests if r.operation == "snapshots.create"]
        parts = []
        if starts:
            parts.append(f"started at {', '.join(obs.when(r.time) for r in starts)}")
        if scripts:
            parts.append(f"its pre script begun at {', '.join(obs.when(r.time) for r in scripts)}")
        if snapshots:
            parts.append(f"{len(snapshots)} snapshot PUT(s) from {obs.when(snapshots[0].time)}")
        violations.append(f"{machine}: {' and '.join(parts)}, after {what} at {obs.when(limit)}")
    return _result("I4", violations, f"pre-phase actions must stop at {what} ({obs.when(limit)})")


# -- I5: alert suppression ---------------------------------------------------------------------


def _rule_name(rule_id: str) -> str:
    """``name`` (subscription ``1234abcd``): one rule per subscription, all with the same name."""
    parts = rule_id.strip("/").split("/")
    subscription = parts[1][:8] if len(parts) > 1 and parts[0].lower() == "subscriptions" else "?"
    return f"{_short(rule_id)} (subscription {subscription})"


def check_i5(obs: WindowObservation) -> InvariantResult:
    bound = obs.end + obs.grace
    violations = []
    for rule in sorted(obs.rules, key=lambda r: r.id.lower()):
        name = _rule_name(rule.id)
        if rule.exists_now:
            post = obs.phases.get("post")
            where = f"post phase {post.status} ({post.source})" if post else "no post phase"
            violations.append(f"alert processing rule {name} still exists at {obs.when(obs.observed_at)} ({where})")
        if rule.effective_until is not None and rule.effective_until > bound:
            violations.append(
                f"alert processing rule {name} is effective until {obs.when(rule.effective_until)}, "
                f"later than the window's end + grace {obs.when(bound)}"
            )
    return _result("I5", violations, f"{len(obs.rules)} rule(s) seen")


# -- I6: snapshots -----------------------------------------------------------------------------


def check_i6(obs: WindowObservation) -> InvariantResult:
    by_disk: dict[str, list[SnapshotObs]] = {}
    for snapshot in obs.snapshots:
        by_disk.setdefault(snapshot.source_disk_id.lower(), []).append(snapshot)
    violations = []
    for disk, snapshots in sorted(by_disk.items()):
        if len(snapshots) > 1:
            names = ", ".join(sorted(_short(s.id) for s in snapshots))
            violations.append(f"disk {_short(disk)} has {len(snapshots)} snapshots for this run: {names}")
    for task in obs.tasks:
        if task.phase != "pre" or task.action != "snapshot-disks" or task.status != "succeeded":
            continue
        for disk in obs.vms.get(task.target.lower(), []):
            found = by_disk.get(disk.lower(), [])
            if not found:
                violations.append(
                    f"the snapshot task of {_short(task.target)} succeeded at {obs.when(task.recorded_at)} "
                    f"but disk {_short(disk)} has no snapshot of this run"
                )
            elif all(s.provisioning_state.lower() != "succeeded" for s in found):
                violations.append(
                    f"the snapshot task of {_short(task.target)} succeeded but the snapshot of disk {_short(disk)} "
                    f"is {found[0].provisioning_state}"
                )
    return _result("I6", violations, f"{len(obs.snapshots)} snapshot(s) of {len(by_disk)} disk(s)")


# -- I7: everything ends -----------------------------------------------------------------------


def check_i7(obs: WindowObservation) -> InvariantResult:
    violations = []
    if not obs.run_found:
        violations.append("no run record")
    for name in ("pre", "post"):
        phase = obs.phases.get(name)
        if phase is not None and phase.status not in FINAL_PHASE:
            violations.append(f"{name} phase is still {phase.status} at {obs.when(obs.observed_at)}")
    if "post" not in obs.phases:
        violations.append(f"no post phase at {obs.when(obs.observed_at)}: neither the post-event nor the fallback ran")
    for task in obs.tasks:
        if task.status not in FINAL_TASK:
            detail = f": {task.detail}" if task.detail else ""
            violations.append(f"task {task.name} is still {task.status}{detail}")
    return _result("I7", violations, f"{len(obs.phases)} phase(s), {len(obs.tasks)} task(s)")


# -- I8: nothing vanishes ----------------------------------------------------------------------


def check_i8(obs: WindowObservation) -> InvariantResult:
    violations = [f"message left in {m.queue}: {m.description}" for m in obs.leftovers]
    tasks = {task.task_id: task for task in obs.tasks}
    for message in obs.poison:
        if message.reason:
            continue
        task = tasks.get(message.task_id) if message.task_id else None
        if task is not None and task.status in FINAL_TASK and task.detail:
            continue
        state = f"its task is {task.status}" if task else "it belongs to no task"
        violations.append(f"{message.queue} holds {message.description} without a reason, and {state}")
    accepted: dict[str, int] = {}
    for delivery in obs.deliveries:
        if 200 <= delivery.status < 300:
            accepted[delivery.phase] = accepted.get(delivery.phase, 0) + 1
    for phase, count in sorted(accepted.items()):
        recorded = obs.recorded_deliveries.get(phase, 0)
        if recorded < count:
            violations.append(
                f"{count} {phase}-event deliver{'y' if count == 1 else 'ies'} answered 2xx, "
                f"but the events log records {recorded}"
            )
    note = f"{len(obs.poison)} poisoned, {sum(accepted.values())} deliveries accepted"
    return _result("I8", violations, note)


# -- I9: scripts inside the machines -------------------------------------------------------------


def check_i9(obs: WindowObservation) -> InvariantResult:
    """Never twice (a script stops services: running it again is not harmless), and whatever a
    pre script stopped is started again: its post script runs, also after a cancelled run."""
    if not obs.script_runs and not any(t.action == "pre-script" for t in obs.tasks):
        return InvariantResult("I9", NOT_APPLICABLE, note="no scripts declared")
    runs: dict[tuple[str, str], list[datetime]] = {}
    for run in obs.script_runs:
        runs.setdefault((run.machine.lower(), run.phase), []).append(run.time)
    violations = []
    for (machine, phase), times in sorted(runs.items()):
        if len(times) > 1:
            violations.append(
                f"{_short(machine)}: its {phase} script ran {len(times)} times "
                f"({', '.join(obs.when(t) for t in sorted(times))})"
            )
    for (machine, phase), times in sorted(runs.items()):
        if phase == "pre" and (machine, "post") not in runs:
            post = obs.phases.get("post")
            where = f"post phase {post.status} ({post.source})" if post else "no post phase"
            violations.append(
                f"{_short(machine)}: its pre script ran at {obs.when(min(times))} but no post script ran "
                f"by {obs.when(obs.observed_at)} ({where})"
            )
    pre = sum(1 for machine, phase in runs if phase == "pre")
    post = sum(1 for machine, phase in runs if phase == "post")
    return _result("I9", violations, f"pre scripts ran on {pre} machine(s), post scripts on {post}")


CHECKS: dict[str, Callable[[WindowObservation], InvariantResult]] = {
    "I1": check_i1,
    "I2": check_i2,
    "I3": check_i3,
    "I4": check_i4,
    "I5": check_i5,
    "I6": check_i6,
    "I7": check_i7,
    "I8": check_i8,
    "I9": check_i9,
}


def check_all(obs: WindowObservation) -> dict[str, InvariantResult]:
    """Every invariant, in order. A check that raises is reported as a failure, not swallowed."""
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check(obs)
        except Exception as error:  # a checker bug must show, but not hide the other invariants
            results[name] = InvariantResult(name, FAIL, [f"the check itself failed: {type(error).__name__}: {error}"])
    return results
