"""Pre phase at fleet size: 1,000 VMs x 2 disks in 2 subscriptions against a realistic ARM with
Azure's token buckets, as a ratio to the least time the buckets allow and to a sample-style run.

Everything runs on one virtual clock ``scale`` times faster than real time
(:class:`prepost.chaos.timescale.ScaledClock`): the simulator (latency, operation durations,
bucket refill; :mod:`prepost.simulator.profiles`), the app (its clock, its delays through
``ScaledDelayTransport``, the rate control's waits) and the baseline (its SDK retry waits).
Times are virtual seconds; so every ratio is what it would be at real speed, as long as this
machine keeps up with the scale (the storage work is real: the printout says how busy).

- **pipeline**: the real function app in the in-process runner, Azurite and the simulator; a
  pre-event through the webhook; the time from the pre phase being recorded to it being final,
  read from the phase record (the app's clock).
- **token-bucket minimum**: for each subscription and class, the calls the pipeline made that the
  buckets charged (polling included, 429 answers not), ``max(0, calls - capacity) / refill``;
  the largest of them. The longest operation is not added: it is reported beside it.
- **sample-style baseline**: what Microsoft's published pre-event sample does, on a fresh
  simulator with the same estate: the Resource Graph query, then one status read per VM in
  sequence, then every action in parallel at once (start the deallocated VMs, snapshot every
  disk, waiting on each with the SDK's poller), the SDK's default retry obeying ``Retry-After``.
  "At once" is 512 threads here: this machine's stand-in for unbounded.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

from bench.measure import Result, Row

NAME = "prephase"
TITLE = "Pre phase, VMs x 2 disks, 2 subscriptions, Azure's buckets: vs bucket minimum and sample-style"
BASELINE_THREADS = 512
RUNNER_BATCH = 32


def run(*, quick: bool) -> Result:
    from prepost.simulator.profiles import describe

    # Real time for the full run: the storage work is real (Azurite on this machine), and on a
    # compressed clock every real second of it would count several virtual seconds against the
    # pipeline. The quick run compresses time to stay short; its ratios lean against the pipeline.
    machines, scale = (200, 4.0) if quick else (1000, 1.0)
    pipeline = _pipeline(machines, scale)
    baseline = _sample_style(machines, scale)
    minimum = pipeline["bucket_minimum"]
    rows = [
        Row.cost(
            "pre phase vs bucket minimum",
            "s",
            pipeline["seconds"],
            minimum["seconds"],
            f"{machines} VMs; binding budget {minimum['binding']}",
        ),
        Row.cost(
            "pre phase vs sample-style",
            "s",
            pipeline["seconds"],
            baseline["seconds"],
            "sequential reads, then every action at once",
        ),
    ]
    details = {
        "machines": machines,
        "disks": pipeline["disks"],
        "scale": scale,
        "simulated": describe(scale),
        "pipeline": pipeline,
        "baseline": baseline,
        "summary": (
            f"virtual time at scale {scale:g}; {pipeline['failed_by_throttling']} task(s) failed by throttling, "
            f"{pipeline['throttled_429']} answers 429 (pipeline) vs {baseline['throttled_429']} (sample-style); "
            f"longest operation {pipeline['longest_operation_seconds']:.0f} s"
        ),
    }
    return Result(NAME, TITLE, rows, details)


def _estate(machines: int, clock):
    from prepost.simulator import Estate

    return Estate.generate(
        machines=machines,
        subscriptions=2,
        arc_servers=0,
        data_disks_every=1,
        run_start=(clock.now() + timedelta(minutes=40)).replace(second=0, microsecond=0),
        configuration_tags={"prepost-snapshot-disks": "all"},
    )


def _pipeline(machines: int, scale: float) -> dict:
    from bench.stack import azurite
    from function_app import build_app
    from prepost.chaos.timescale import ScaledClock, ScaledDelayTransport
    from prepost.local.delivery import deliver
    from prepost.local.events import build_event
    from prepost.local.host_config import load_queues_config
    from prepost.local.runner import FunctionAppRunner
    from prepost.local.stack import app_settings
    from prepost.simulator import SimulatorServer
    from prepost.simulator.profiles import realistic
    from shared.clock import set_clock
    from shared.models.ids import run_key
    from shared.models.run import Phase, TaskStatus
    from shared.names import SettingName
    from shared.settings import Transport

    clock = ScaledClock(scale)
    estate = _estate(machines, clock)
    with contextlib.ExitStack() as stack:
        connection = stack.enter_context(azurite())
        server = stack.enter_context(SimulatorServer(estate, realistic(scale), clock=clock))
        set_clock(clock)
        stack.callback(set_clock, None)
        env = app_settings(connection, server.url, [estate.configuration.id], list(estate.subscription_ids))
        env[SettingName.OPERATION_CHECK_SECONDS.value] = "20"  # the production default, in virtual seconds
        # The host's idle polling (host.json maxPollingInterval) is real time: scaled like the rest.
        # One instance here, at the largest batchSize the host allows (32), stands in for the
        # instances Azure adds as the queue grows (measured: at host.json's 8, this one instance,
        # not ARM, set the pace).
        host = load_queues_config()
        queues = replace(host, max_polling_interval=host.max_polling_interval / scale, batch_size=RUNNER_BATCH)
        runner = FunctionAppRunner(
            build_app(Transport.STORAGE),
            env=env,
            queues=queues,
            wrap_transport=lambda inner: ScaledDelayTransport(inner, scale),
        )
        runner.start(webhook_port=0)
        stack.callback(runner.stop)
        records = runner.container.records
        key = run_key(estate.run.correlation_id)
        event = build_event(
            "pre", correlation_id=estate.run.correlation_id, subscription_ids=estate.subscription_ids, now=clock.now()
        )
        cpu_started = time.process_time()
        real_started = time.perf_counter()
        if not deliver(runner.webhook_url, [event]).ok:
            raise RuntimeError("the pre-event was not accepted")
        deadline = time.monotonic() + 3600 / scale
        phase = None
        while time.monotonic() < deadline:
            phase = records.get_phase(key, Phase.PRE)
            if phase is not None and phase.status.is_final:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the pre phase was not final within an hour of virtual time: {phase}")
        real_seconds = time.perf_counter() - real_started
        cpu_seconds = time.process_time() - cpu_started
        tasks = records.list_tasks(key, Phase.PRE)
        requests = server.state.requests()
        operations = server.state.operation_book.all()
        rate = runner.container.arm.rate
        failed = [task for task in tasks if task.status is TaskStatus.FAILED]
        return {
            "seconds": (phase.completed_at - phase.received_at).total_seconds(),
            "real_seconds": round(real_seconds, 1),
            "process_cpu_share": round(cpu_seconds / real_seconds, 2),
            "phase": phase.status.value,
            "tasks": len(tasks),
            "failed": len(failed),
            "failed_by_throttling": sum(1 for task in failed if "429" in task.detail or "throttl" in task.detail),
            "disks": sum(len(vm.disks) for vm in estate.vms),
            "arm_calls": _calls(requests),
            "throttled_429": sum(1 for r in requests if r.status == 429),
            "bucket_minimum": bucket_minimum(requests),
            "longest_operation_seconds": max((op.duration or 0.0 for op in operations), default=0.0),
            "rate_control": {"waited_seconds": round(rate.waited, 1), "deferred": rate.deferred},
        }


def _calls(requests) -> dict[str, int]:
    return dict(sorted(Counter(r.operation for r in requests if r.operation and r.status != 429).items()))


def bucket_minimum(requests) -> dict:
    """The least time ARM's buckets allow for the calls they charged (Azure's sizes)."""
    from prepost.simulator.throttling import RequestKind, ThrottleConfig

    config = ThrottleConfig()
    charged: Counter[tuple[str, str]] = Counter()
    for record in requests:
        parts = record.path.split("/")
        if record.status == 429 or len(parts) < 3 or parts[1].lower() != "subscriptions":
            continue  # Resource Graph has its own quota, and a 429 spends no token
        charged[(parts[2].lower(), RequestKind.of(record.method).value)] += 1
    seconds, binding = 0.0, "none"
    for (subscription, kind), calls in charged.items():
        bucket = config.bucket(RequestKind(kind))
        needed = max(0, calls - bucket.capacity) / bucket.refill_per_second
        if needed > seconds:
            seconds, binding = needed, f"{kind} of {subscription[:8]} ({calls} calls)"
    return {"seconds": seconds, "binding": binding, "charged": {f"{s[:8]}/{k}": n for (s, k), n in charged.items()}}


# -- the sample-style baseline ---------------------------------------------------------------


def _sample_style(machines: int, scale: float) -> dict:
    from azure.core.pipeline.policies import RetryPolicy
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.compute.models import CreationData, Snapshot
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    from bench.stack import raw_credential, raw_mgmt_options
    from prepost.chaos.timescale import ScaledClock
    from prepost.simulator import SimulatorServer
    from prepost.simulator.profiles import realistic
    from shared.adapters.arm.resource_graph import run_machines_query

    class ScaledRetry(RetryPolicy):
        """The SDK's default retry, its waits on the virtual clock."""

        def get_retry_after(self, response):
            value = super().get_retry_after(response)
            return None if value is None else value / scale

        def get_backoff_time(self, settings):
            return super().get_backoff_time(settings) / scale

    clock = ScaledClock(scale)
    estate = _estate(machines, clock)
    with SimulatorServer(estate, realistic(scale), clock=clock) as server:
        options = {**raw_mgmt_options(server.url), "retry_policy": ScaledRetry(), "polling_interval": 30 / scale}
        compute = {s: ComputeManagementClient(raw_credential(), s, **options) for s in estate.subscription_ids}
        graph = ResourceGraphClient(raw_credential(), **options)
        started = clock.now()
        page = graph.resources(
            QueryRequest(
                subscriptions=list(estate.subscription_ids),
                query=run_machines_query(estate.run.correlation_id),
                options=QueryRequestOptions(top=1000, result_format="objectArray"),
            )
        )
        listed = {row["resourceId"].lower() for row in page.data}
        vms = [vm for vm in estate.vms if vm.id.lower() in listed]
        states = {}
        for vm in vms:  # the sample reads each VM's status in turn
            found = compute[vm.subscription_id].virtual_machines.get(vm.resource_group, vm.name, expand="instanceView")
            states[vm.id] = [status.code for status in found.instance_view.statuses or []]

        def start(vm) -> None:
            compute[vm.subscription_id].virtual_machines.begin_start(vm.resource_group, vm.name).result()

        def snapshot(vm, disk) -> None:
            body = Snapshot(
                location=vm.location,
                incremental=True,
                creation_data=CreationData(create_option="Copy", source_resource_id=disk.id),
            )
            name = f"sample-{disk.name}"[:80]
            compute[vm.subscription_id].snapshots.begin_create_or_update(disk.resource_group, name, body).result()

        with ThreadPoolExecutor(max_workers=BASELINE_THREADS) as pool:
            work = [pool.submit(start, vm) for vm in vms if "PowerState/deallocated" in states[vm.id]]
            work += [pool.submit(snapshot, vm, disk) for vm in vms for disk in vm.disks]
            errors = [future.exception() for future in work]
        seconds = (clock.now() - started).total_seconds()
        requests = server.state.requests()
        for client in (*compute.values(), graph):
            client.close()
    failed = [error for error in errors if error is not None]
    return {
        "seconds": seconds,
        "actions": len(errors),
        "failed_actions": len(failed),
        "first_failure": repr(failed[0])[:300] if failed else None,
        "arm_calls": _calls(requests),
        "throttled_429": sum(1 for r in requests if r.status == 429),
        "threads": BASELINE_THREADS,
    }
