"""Fan-out: planning the pre phase of a large run, against the raw storage writes it amounts to.

The pipeline side is :func:`shared.usecases.planning.plan_phase` for a run of N machines (by
default 1,000 VMs and 20 Arc servers in 4 subscriptions) with the app's real adapters: the
maintenance configuration's tags and Resource Graph's pages from the simulator, the task and
machine records in Azurite's tables (``add_tasks``, ``add_machines``), one message per task on
the Storage queues (``StorageQueueTransport.send``). The baseline is the same number of messages
with the same bodies sent with a raw ``QueueClient`` from a pool of as many threads as the
transport uses, and the same number of entities written with raw ``submit_transaction`` batches
of 100. Nothing is read and nothing is decided on the baseline side: the ratio is what the
planning adds to the unavoidable writes (queries, records checked before creation, Python).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlparse

from bench.measure import (
    Result,
    Row,
    Timing,
    alternate,
    count_http_requests,
    median,
    sampled_rss_peak,
    spread,
    timed_cpu,
    traced_peak,
)
from bench.stack import app_container, azurite, simulator_process, storage_ports
from shared.ports.transport import WorkTransport

NAME = "fanout"
TITLE = "Fan-out: plan_phase (Resource Graph, add_tasks, send) vs raw sends + batch inserts"
BATCH = 100


class RecordingTransport(WorkTransport):
    """Passes every send to the real transport and keeps what was sent, for the baseline to repeat.

    It keeps the message objects the plan holds anyway and encodes them only when asked, after
    the plan: the bench's own bookkeeping (some 20,000 encodings) is neither timed nor in the
    plan's memory peak.
    """

    def __init__(self, inner: WorkTransport) -> None:
        self.inner = inner
        self.messages: list = []

    def send(self, messages: Sequence, *, delay: timedelta | None = None) -> None:
        self.inner.send(messages, delay=delay)
        self.messages.extend(messages)

    @property
    def sent(self) -> list[tuple[str, str]]:
        """(queue, body) of every message sent."""
        return [(message.queue.value, message.to_json()) for message in self.messages]


def run(*, quick: bool) -> Result:
    from prepost.simulator import Estate

    # 10,000 machines in full: the fleet the issue asks about. One timed round each side (a
    # round is about a minute here); the traced run is smaller, tracing slows planning five-fold.
    machines = 300 if quick else 10_000
    traced_machines = 100 if quick else 1_000
    timed_rounds = 1
    run_start = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    estate = Estate.generate(machines=machines, subscriptions=4, arc_servers=20, run_start=run_start)
    vm_ids = [vm.id for vm in estate.vms]
    arc_ids = [arc.id for arc in estate.arc_servers]

    # One run per plan (a planned phase is never planned twice), an hour apart: a pre-event's
    # safety-net messages must fall within 7 days.
    def add_run(offset: timedelta, members: list[str]) -> str:
        return estate.add_run(estate.run_correlation_id(run_start + offset), members).correlation_id

    runs = Runs(
        warm_up=add_run(timedelta(minutes=30), vm_ids[:5]),
        traced=add_run(timedelta(minutes=45), vm_ids[:traced_machines] + arc_ids),
        timed=[estate.run.correlation_id]
        + [add_run(timedelta(hours=hour), vm_ids + arc_ids) for hour in range(1, timed_rounds)],
    )
    with azurite() as connection_string, simulator_process(estate) as simulator_url:
        return _measure(connection_string, simulator_url, estate, runs)


@dataclass(frozen=True)
class Runs:
    warm_up: str
    """Five VMs: imports, clients and connections are paid once per worker, not per plan."""
    traced: str
    """A smaller run planned under tracemalloc, which slows allocation about five-fold."""
    timed: list[str]


def _measure(connection_string: str, simulator_url: str, estate, runs: Runs) -> Result:
    from azure.data.tables import TableClient
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    from prepost.local.events import build_event
    from shared.clock import utcnow
    from shared.models.ids import run_key
    from shared.models.messages import PlanPhase
    from shared.models.run import Phase
    from shared.names import TableName
    from shared.usecases.intake import IntakePolicy, accept_event
    from shared.usecases.planning import PlanningPorts, plan_phase

    container = app_container(connection_string, simulator_url, estate)
    settings = container.settings
    policy = IntakePolicy(
        settings.allowed_configurations,
        settings.allowed_subscriptions,
        settings.cancel_margin,
        settings.suppression_grace,
    )
    workers = container.transport.max_workers

    def plan(correlation_id: str) -> tuple[Callable[[], Any], RecordingTransport]:
        """Record the run's pre-event (unmeasured); the plan itself is for the caller to run."""
        event = build_event("pre", correlation_id=correlation_id, subscription_ids=estate.subscription_ids)
        accept_event(event, records=container.records, transport=container.transport, policy=policy, now=utcnow())
        transport = RecordingTransport(container.transport)
        ports = PlanningPorts(
            records=container.records,
            transport=transport,
            inventory=container.inventory,
            configurations=container.configurations,
            allowed_subscriptions=settings.allowed_subscriptions,
            cancellation=container.cancellation,
        )
        message = PlanPhase(run_key=run_key(correlation_id), phase=Phase.PRE)
        return (lambda: plan_phase(message, ports, now=utcnow())), transport

    # Raw clients for the baseline, created once like the app's (a pool per service).
    tasks_table = TableClient.from_connection_string(connection_string, TableName.TASKS.value)
    machines_table = TableClient.from_connection_string(connection_string, TableName.MACHINES.value)
    queues: dict[str, QueueClient] = {}

    def queue(name: str) -> QueueClient:
        if name not in queues:
            queues[name] = QueueClient.from_connection_string(
                connection_string, name, message_encode_policy=TextBase64EncodePolicy()
            )
        return queues[name]

    def baseline(sent: Planned) -> Callable[[], None]:
        """The same writes as ``sent``, raw: batches of 100 entities, then the messages from a
        pool of as many threads as the transport uses."""

        def write() -> None:
            nonlocal send_seconds
            partition = f"bench-{uuid.uuid4().hex}"
            tasks = [_task_like(partition, index) for index in range(sent.tasks)]
            machines = [_machine_like(partition, index) for index in range(sent.machine_count)]
            for table, entities in ((tasks_table, tasks), (machines_table, machines)):
                for start in range(0, len(entities), BATCH):
                    table.submit_transaction([("create", entity) for entity in entities[start : start + BATCH]])
            began = time.perf_counter()
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(queue(name).send_message, body, time_to_live=-1) for name, body in sent.messages]
                for future in futures:
                    future.result()
            send_seconds.append(time.perf_counter() - began)

        return write

    send_seconds: list[float] = []
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = round(now - clock, 2)
        clock = now

    function, transport = plan(runs.warm_up)
    baseline(Planned.of(function(), transport))()
    stage("warm_up")

    # Memory and round trips on the smaller run; neither is timed (tracing and logging are slow).
    function, transport = plan(runs.traced)
    with count_http_requests() as pipeline_calls:
        phase, pipeline_peak = traced_peak(function)
    traced = Planned.of(phase, transport)
    with count_http_requests() as baseline_calls:
        _, baseline_peak = traced_peak(baseline(traced))
    stage("traced")

    # Timed rounds on the full run: the pipeline plans, then the baseline repeats its writes.
    pending = list(runs.timed)
    planned: list[Planned] = []

    rss: list[tuple[int, int]] = []

    def pipeline_round(_: int) -> Timing:
        function, transport = plan(pending.pop(0))
        (phase, timing), peak, start = sampled_rss_peak(lambda: timed_cpu(function))
        rss.append((peak, start))
        planned.append(Planned.of(phase, transport))
        return timing

    def baseline_round(_: int) -> Timing:
        return timed_cpu(baseline(planned[-1]))[1]

    pipeline_timings, baseline_timings = alternate(pipeline_round, baseline_round, len(runs.timed))
    stage("timed")
    for client in (tasks_table, machines_table, *queues.values()):
        client.close()

    full = planned[-1]
    pipeline_times = [timing.wall for timing in pipeline_timings]
    baseline_times = [timing.wall for timing in baseline_timings]
    pipeline_cpu = [timing.cpu for timing in pipeline_timings]
    baseline_cpu = [timing.cpu for timing in baseline_timings]
    ports = {**storage_ports(connection_string), "arm": urlparse(simulator_url).port}
    rows = [
        Row.cost(
            "plan wall time",
            "s",
            median(pipeline_times),
            median(baseline_times),
            f"{full.machine_count} machines: {len(full.messages)} messages, {full.writes} entities",
        ),
        Row.rate(
            "tasks fanned out",
            "tasks/s",
            full.tasks / median(pipeline_times),
            full.tasks / median(baseline_times),
            f"median of {len(runs.timed)}",
        ),
        Row.rate(
            "messages sent vs raw send rate",
            "msgs/s",
            len(full.messages) / median(pipeline_times),
            len(full.messages) / median(send_seconds[-len(runs.timed) :]),
            "whole plan vs the baseline's sends alone, same client and threads",
        ),
        Row.cost(
            "peak resident memory",
            "MiB",
            max(peak for peak, _ in rss) / 2**20,
            max(start for _, start in rss) / 2**20,
            f"RSS sampled during the {full.machine_count}-machine plan; baseline: RSS before it",
        ),
        Row.cost(
            "Python CPU per plan",
            "s",
            median(pipeline_cpu),
            median(baseline_cpu),
            "process_time (Azurite and the simulator run apart)",
        ),
        Row.cost(
            "heap peak",
            "MiB",
            pipeline_peak / 2**20,
            baseline_peak / 2**20,
            f"tracemalloc, {traced.machine_count}-machine plan",
        ),
    ]
    details = {
        "machines": full.machine_count,
        "tasks": full.tasks,
        "messages": len(full.messages),
        "messages_by_queue": dict(Counter(name for name, _ in full.messages)),
        "entities_written": full.writes,
        "timed_rounds": len(runs.timed),
        "seconds": {"pipeline": spread(pipeline_times), "baseline": spread(baseline_times)},
        "cpu_seconds": {"pipeline": spread(pipeline_cpu), "baseline": spread(baseline_cpu)},
        "traced_run": {
            "machines": traced.machine_count,
            "heap_peak_bytes": {"pipeline": pipeline_peak, "baseline": baseline_peak},
            "http_requests": {
                "pipeline": {name: pipeline_calls[port] for name, port in ports.items()},
                "baseline": {name: baseline_calls[port] for name, port in ports.items()},
            },
        },
        "transport_threads": workers,
        "phase_status": full.status,
        "stage_seconds": stages,
        "raw_send_seconds": [round(value, 2) for value in send_seconds],
        "rss_bytes": [{"peak": peak, "before": start} for peak, start in rss],
    }
    return Result(NAME, TITLE, rows, details)


@dataclass(frozen=True)
class Planned:
    """What one plan wrote: the baseline repeats exactly this much."""

    machine_count: int
    tasks: int
    messages: list[tuple[str, str]]
    status: str

    @property
    def writes(self) -> int:
        return self.tasks + self.machine_count

    @classmethod
    def of(cls, phase, transport: RecordingTransport) -> Planned:
        return cls(phase.machines, phase.expected_tasks, list(transport.sent), phase.status.value)


def _task_like(partition: str, index: int) -> dict:
    """About what a task record holds, for the baseline's inserts."""
    target = (
        f"/subscriptions/{uuid.UUID(int=index)}/resourceGroups/rg-bench/providers/Microsoft.Compute/"
        f"virtualMachines/vm-{index:05d}"
    )
    return {
        "PartitionKey": partition,
        "RowKey": f"pre:snapshot-disks:{index:08d}",
        "Phase": "pre",
        "Action": "snapshot-disks",
        "Target": target,
        "Status": "queued",
        "Attempts": 0,
    }


def _machine_like(partition: str, index: int) -> dict:
    resource_id = (
        f"/subscriptions/{uuid.UUID(int=index)}/resourceGroups/rg-bench/providers/"
        f"Microsoft.Compute/virtualMachines/vm-{index:05d}"
    )
    return {"PartitionKey": partition, "RowKey": f"{index:016x}", "ResourceId": resource_id}
