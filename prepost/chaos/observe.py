"""What the drill sees: Azurite read directly (no fault proxy in between) and the simulator's state.

:class:`StorageView` reads the run records, the work queues, the poison queues and the events
log straight from Azurite: the truth, never faulted. :class:`SimulatorLog` follows the simulator's
request log and samples its alert processing rules while the drill runs, so rules that existed
only for a while are known too. :func:`build_observation` puts it together for one window.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from prepost.chaos.invariants import (
    ArmRequest,
    DeliveryObs,
    MessageObs,
    PhaseObs,
    RuleObs,
    ScriptRunObs,
    SnapshotObs,
    TaskObs,
    WindowObservation,
)
from prepost.chaos.timescale import ScaledClock
from shared.models.events import parse_time

PEEK_LIMIT = 32
POISON_HIDE_SECONDS = 30
RUN_TAG = "prepost-run"


def _body_fields(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def message_task_id(fields: dict[str, Any]) -> str | None:
    """The task a task, monitoring or outcome message belongs to (None for plan messages)."""
    from shared.models.run import Action, Phase, task_id

    if fields.get("kind") not in ("task", "monitoring", "outcome"):
        return None
    try:
        return task_id(Phase(fields.get("phase", "pre")), Action(fields["action"]), str(fields["target"]))
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class PoisonEntry:
    queue: str
    """The work queue the message came from (without ``-poison``)."""
    message_id: str
    pop_receipt: str
    body: str
    reason: str | None
    run_key: str
    task_id: str | None


class StorageView:
    """Azurite, read directly with the app's own record adapter."""

    def __init__(self, connection_string: str, clock: ScaledClock) -> None:
        from azure.storage.queue import QueueServiceClient

        from shared.adapters.storage_clients import StorageClients
        from shared.adapters.table_records import TableRunRecords
        from shared.settings import StorageConnection

        self.clock = clock
        self.clients = StorageClients(StorageConnection(connection_string=connection_string))
        self.clients.ensure_storage()
        self.records = TableRunRecords(self.clients)
        self.raw_queues = QueueServiceClient.from_connection_string(connection_string)
        self.poison_lock = threading.Lock()

    def close(self) -> None:
        self.clients.close()
        self.raw_queues.close()

    # -- records ------------------------------------------------------------------------------

    def run(self, run_key: str):
        from shared.ports.records import RunNotFound

        try:
            return self.records.get_run(run_key)
        except RunNotFound:
            return None

    def phases(self, run_key: str) -> dict[str, PhaseObs]:
        from shared.models.run import Phase

        found = {}
        for phase in Phase:
            record = self.records.get_phase(run_key, phase)
            if record is not None:
                found[phase.value] = PhaseObs(
                    phase=phase.value,
                    status=record.status.value,
                    received_at=record.received_at,
                    source=record.source.value,
                    planned_at=record.planned_at,
                    completed_at=record.completed_at,
                    findings=tuple(record.findings),
                )
        return found

    def tasks(self, run_key: str) -> list[TaskObs]:
        """The run's tasks (read with the app's own adapter), each with the virtual time its
        entity was last written: the ``Timestamp`` of the entity whose RowKey is the task id."""
        from shared.names import TableName

        # No $select: the service leaves Timestamp out of a projection that does not name it.
        entities = self.clients.table(TableName.TASKS).query_entities("PartitionKey eq @pk", parameters={"pk": run_key})
        stamps = {entity["RowKey"]: entity.metadata.get("timestamp") for entity in entities}
        tasks = []
        for record in self.records.list_tasks(run_key):
            stamp = stamps.get(record.task_id)
            tasks.append(
                TaskObs(
                    phase=record.phase.value,
                    action=record.action.value,
                    target=record.target,
                    status=record.status.value,
                    detail=record.detail,
                    recorded_at=self.clock.to_virtual(stamp) if stamp else None,
                    safety_critical=record.is_safety_critical,
                )
            )
        return sorted(tasks, key=lambda t: (t.phase, t.action, t.target.lower()))

    def recorded_deliveries(self) -> Counter:
        """(run key, phase) -> deliveries in the intake's events log."""
        counts: Counter = Counter()
        for delivery in self.records.list_deliveries(limit=100_000):
            counts[(delivery.run_key, delivery.phase)] += 1
        return counts

    # -- queues -------------------------------------------------------------------------------

    def visible_work(self) -> list[tuple[str, dict[str, Any], str]]:
        """Up to 32 visible messages per work queue: (queue, decoded fields, description)."""
        from prepost.replay import decode_queue_text, describe_body
        from shared.names import QueueName

        found = []
        for queue in QueueName:
            client = self.raw_queues.get_queue_client(queue.value)
            for message in client.peek_messages(max_messages=PEEK_LIMIT):
                text = decode_queue_text(message.content)
                found.append((queue.value, _body_fields(text), describe_body(text)))
        return found

    def poison(self) -> list[PoisonEntry]:
        """Every message of every poison queue: received (hidden), read, and made visible again.

        Peeking shows at most 32 messages; receiving them all and releasing them sees the whole
        queue. Nothing in the app reads the poison queues, so hiding them briefly changes nothing.
        Holds :attr:`poison_lock` (replays take it too).
        """
        with self.poison_lock:
            entries = self._receive_all_poison()
            self._release(entries)
        return entries

    def replay_poison(self, run_key: str) -> list[PoisonEntry]:
        """Send the run's poison messages back to their queues (as ``prepost replay poison``)."""
        with self.poison_lock:
            entries = self._receive_all_poison()
            mine = [entry for entry in entries if entry.run_key == run_key]
            self._release([entry for entry in entries if entry.run_key != run_key])
            replayed = []
            for entry in mine:
                poison = self.raw_queues.get_queue_client(f"{entry.queue}-poison")
                try:
                    self.clients.queue(entry.queue).send_message(entry.body, time_to_live=-1)
                except Exception:
                    self._release([entry])
                    continue
                poison.delete_message(entry.message_id, entry.pop_receipt)
                replayed.append(entry)
            return replayed

    def _receive_all_poison(self) -> list[PoisonEntry]:
        from prepost.replay import poison_message
        from shared.names import QueueName

        entries = []
        for queue in QueueName:
            client = self.raw_queues.get_queue_client(queue.poison)
            while True:
                batch = list(client.receive_messages(max_messages=PEEK_LIMIT, visibility_timeout=POISON_HIDE_SECONDS))
                if not batch:
                    break
                for received in batch:
                    message = poison_message(received.content, message_id=received.id)
                    fields = _body_fields(message.body)
                    entries.append(
                        PoisonEntry(
                            queue=queue.value,
                            message_id=received.id,
                            pop_receipt=received.pop_receipt,
                            body=message.body,
                            reason=str(message.note.get("reason") or "(parked)") if message.note else None,
                            run_key=str(fields.get("run_key", "")),
                            task_id=message_task_id(fields),
                        )
                    )
        return entries

    def _release(self, entries: list[PoisonEntry]) -> None:
        for entry in entries:
            client = self.raw_queues.get_queue_client(f"{entry.queue}-poison")
            # If this fails, the message becomes visible by itself after the hide time.
            with contextlib.suppress(Exception):
                client.update_message(entry.message_id, entry.pop_receipt, visibility_timeout=0)


@dataclass(frozen=True)
class LoggedRequest:
    time: datetime
    method: str
    path: str
    operation: str | None
    status: int
    fault: str | None

    @property
    def name(self) -> str:
        """The last path segment that names a resource (``.../virtualMachines/vm-1/start`` -> ``vm-1``)."""
        parts = [part for part in self.path.split("?")[0].split("/") if part]
        if self.operation in ("vm.start", "vm.deallocate") and len(parts) >= 2:
            return parts[-2]
        return parts[-1] if parts else ""


INJECTED_ARM_FAULTS = {"throttle": "429", "error": "500", "timeout": "timeout", "failedOperation": "failed-op"}


class SimulatorLog:
    """Follows the simulator's request log and samples its alert rules (in-process, no HTTP)."""

    def __init__(self, server) -> None:
        self.server = server
        self.requests: list[LoggedRequest] = []
        self.rules: dict[str, dict[str, RuleObs]] = {}
        """Run key -> rule id -> the latest effectiveUntil seen (exists_now False: as last seen)."""
        self._next = 0
        self._lock = threading.Lock()

    def sample(self) -> None:
        state = self.server.state
        records = state.requests(self._next)
        rules = state.alert_rules()
        with self._lock:
            for record in records:
                logged = LoggedRequest(
                    record.time, record.method, record.path, record.operation, record.status, record.fault
                )
                self.requests.append(logged)
                self._next = record.index + 1
            for rule in rules:
                tags = {key.lower(): value for key, value in rule.tags.items()}
                run = tags.get(RUN_TAG)
                if not run:
                    continue
                until = _schedule_time((rule.properties.get("schedule") or {}).get("effectiveUntil"))
                known = self.rules.setdefault(run, {}).get(rule.id)
                if known is not None and known.effective_until is not None and until is not None:
                    until = max(until, known.effective_until)
                self.rules[run][rule.id] = RuleObs(rule.id, until, exists_now=False)

    def requests_between(self, start: datetime, end: datetime) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if start <= r.time <= end]

    def rules_of(self, run_key: str) -> list[RuleObs]:
        """Every rule of the run seen so far, ``exists_now`` from the simulator's state now."""
        self.sample()
        existing = {rule.id.lower() for rule in self.server.state.alert_rules()}
        with self._lock:
            seen = list(self.rules.get(run_key, {}).values())
        return [RuleObs(rule.id, rule.effective_until, rule.id.lower() in existing) for rule in seen]

    def arm_faults(self, start: datetime, end: datetime) -> Counter:
        counts: Counter = Counter()
        for request in self.requests_between(start, end):
            if request.fault in INJECTED_ARM_FAULTS:
                counts[INJECTED_ARM_FAULTS[request.fault]] += 1
        return counts


def _schedule_time(value: Any) -> datetime | None:
    """An alert rule's schedule time: ISO 8601 without a zone, in UTC (``timeZone: UTC``)."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", ""))
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@dataclass
class WindowFacts:
    """What the drill itself knows about a window (not read from the app)."""

    number: int
    run_key: str
    correlation_id: str
    start: datetime
    end: datetime
    cutoff: datetime
    deadline: datetime
    grace: timedelta
    band_before: timedelta
    band_after: timedelta
    prepared_at: datetime
    vm_disks: dict[str, list[str]]
    power_before: dict[str, str]
    schedule_stamp: str
    deliveries: list[DeliveryObs]


def build_observation(
    facts: WindowFacts,
    *,
    storage: StorageView,
    simulator_log: SimulatorLog,
    server,
    leftovers: list[MessageObs],
    poison: list[PoisonEntry],
    recorded: Counter,
    now: datetime,
) -> WindowObservation:
    """One window's observation from the records, the queues and the simulator, now."""
    run = storage.run(facts.run_key)
    vm_names = {vm_id.rstrip("/").rsplit("/", 1)[-1].lower() for vm_id in facts.vm_disks}
    requests = simulator_log.requests_between(facts.prepared_at, now)
    snapshot_prefix = f"prepost-{facts.schedule_stamp}-".lower()
    vm_starts = [
        ArmRequest(r.time, "vm.start", r.name, r.status)
        for r in requests
        if r.operation == "vm.start" and 200 <= r.status < 300 and r.name.lower() in vm_names
    ]
    snapshot_puts = [
        ArmRequest(r.time, "snapshots.create", r.name, r.status)
        for r in requests
        if r.operation == "snapshots.create" and 200 <= r.status < 300 and r.name.lower().startswith(snapshot_prefix)
    ]
    # Pre scripts begun (run command PUTs named prepost-pre-<stamp>-...), by the machine's name.
    pre_script_prefix = f"prepost-pre-{facts.schedule_stamp}-".lower()
    script_puts = [
        ArmRequest(r.time, "runcommands.put", r.path.split("?")[0].rstrip("/").split("/")[-3], r.status)
        for r in requests
        if r.operation == "runcommands.put" and 200 <= r.status < 300 and r.name.lower().startswith(pre_script_prefix)
    ]
    power_after = {
        record.vm.id.lower(): record.power_state.value
        for record in server.state.vms()
        if record.vm.id.lower() in facts.vm_disks
    }
    snapshots = [
        SnapshotObs(s.id, s.source_resource_id, s.provisioning_state)
        for s in server.state.snapshots()
        if {k.lower(): v for k, v in s.tags.items()}.get(RUN_TAG) == facts.run_key
    ]
    cancellations = [
        moment
        for record in server.state.cancellations()
        if record.correlation_id.lower() == facts.correlation_id.lower()
        for moment in ((record.first, record.last) if record.count > 1 else (record.first,))
    ]
    return WindowObservation(
        number=facts.number,
        run_key=facts.run_key,
        correlation_id=facts.correlation_id,
        start=facts.start,
        end=facts.end,
        cutoff=facts.cutoff,
        deadline=facts.deadline,
        grace=facts.grace,
        band_before=facts.band_before,
        band_after=facts.band_after,
        observed_at=now,
        vms=facts.vm_disks,
        power_before=facts.power_before,
        power_after=power_after,
        vm_starts=vm_starts,
        snapshot_puts=snapshot_puts,
        script_puts=script_puts,
        run_found=run is not None,
        cancel_requested_at=run.cancel_requested_at if run else None,
        cancel_reason=run.cancel_reason if run else None,
        cancel_result=run.cancel_result if run else None,
        cancel_accepted=bool(run and run.cancel_accepted),
        sim_cancellations=cancellations,
        phases=storage.phases(facts.run_key),
        tasks=storage.tasks(facts.run_key),
        snapshots=snapshots,
        rules=simulator_log.rules_of(facts.run_key),
        leftovers=leftovers,
        poison=[
            MessageObs(f"{entry.queue}-poison", _describe(entry.body), entry.reason, entry.task_id)
            for entry in poison
            if entry.run_key == facts.run_key
        ],
        deliveries=facts.deliveries,
        recorded_deliveries={phase: count for (run_key, phase), count in recorded.items() if run_key == facts.run_key},
        script_runs=_script_runs(server, facts.run_key),
    )


def _script_runs(server, run_key: str) -> list[ScriptRunObs]:
    """The run's script executions from the simulator's book (kept after their run commands are deleted)."""
    runs = []
    for execution in server.state.run_commands.executions_of():
        parameters = execution.get("parameters") or {}
        if parameters.get("PREPOST_RUN") != run_key:
            continue
        phase = str(parameters.get("PREPOST_PHASE"))
        runs.append(ScriptRunObs(execution["machineId"], phase, parse_time(execution["startedAt"])))
    return runs


def _describe(body: str) -> str:
    from prepost.replay import describe_body

    return describe_body(body)
