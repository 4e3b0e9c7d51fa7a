"""End to end: a whole maintenance window through the real app, against the same ARM work done
directly.

The pipeline side is ``prepost demo`` (:func:`prepost.demo.run_demo`): a fresh Azurite, the
simulator with N VMs, the in-process runner of the function app, a pre-event and a post-event
through the Event Grid webhook, and every task through the queues until both phases are final.

The baseline is the ARM work of that window and nothing else: the same estate on a fresh
simulator, and the same calls made with the raw SDK clients (configuration tags, Resource Graph,
read each VM, start the deallocated ones, read and create a snapshot of every disk, read the
Arc servers, put one alert processing rule per subscription; then deallocate what was started
and delete the rules), from a pool of as many threads as the host runs VM tasks at once
(host.json ``batchSize``). The simulator answers at once, so this is the least time that work
can take here; the ratio is what the pipeline adds around it: queues and their polling, records,
idempotency locks, outcomes, planning. The two request logs are compared so that the baseline
is known to make the same calls.

Why not the simulator's own service time as the baseline: it leaves out the client side of the
calls (the SDK's pipeline, serialisation, polling), which any implementation pays; the direct
calls include it.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

from bench.measure import Result, Row, count_calls_by_resource, median, spread, timed
from bench.stack import raw_credential, raw_mgmt_options, simulator

NAME = "e2e"
TITLE = "End to end: run_demo (50 VMs) vs the same ARM calls made directly with the SDK"
TARGET_STORAGE_PER_TASK = 8
PROGRESS = re.compile(r"^\[\s*([\d.]+)s\] (.*)$")


def run(*, quick: bool) -> Result:
    from prepost.demo import DemoOptions

    machines = 50
    baseline_rounds = 2 if quick else 3
    options = DemoOptions(machines=machines, json_output=True)
    demo = _run_demo(options)
    direct_times, direct_counts, direct_throttled = _direct(
        demo["estate"], baseline_rounds, workers=_vm_task_concurrency()
    )

    report = demo["report"]
    pipeline_counts = Counter(record.operation for record in demo["requests"] if record.operation)
    pipeline_throttled = sum(1 for record in demo["requests"] if record.status == 429)
    window = demo["window_seconds"]
    direct = median(direct_times)
    machine_count = report["summary"]["pre"]["machines"]
    same_calls = dict(pipeline_counts) == dict(direct_counts[0])

    tasks_total = max(1, sum(report["summary"][phase]["tasks"] for phase in ("pre", "post")))
    storage_per_task = sum(demo["storage_requests"].values()) / tasks_total
    rows = [
        Row.cost(
            "window: pre-event to post done",
            "s",
            window,
            direct,
            f"{machine_count} machines; baseline median of {baseline_rounds}",
        ),
        Row.rate("machines per second", "machines/s", machine_count / window, machine_count / direct),
        Row.cost(
            "ARM calls",
            "calls",
            sum(pipeline_counts.values()),
            sum(direct_counts[0].values()),
            "same mix" if same_calls else "mix differs: see details",
        ),
        Row.cost(
            "storage round trips per task",
            "calls",
            storage_per_task,
            TARGET_STORAGE_PER_TASK,
            "the app's threads, queue polling included; baseline column: the target",
        ),
    ]
    details = {
        "machines": machine_count,
        "demo_ok": report["ok"],
        "failed_checks": [check["check"] for check in report["checks"] if not check["ok"]],
        "demo_wall_seconds": demo["wall_seconds"],
        "stack_start_and_intake_seconds": demo["delivered_at"],
        "window_seconds": window,
        "phase_done_at_seconds": demo["phase_done_at"],
        "direct_seconds": spread(direct_times),
        "direct_workers": _vm_task_concurrency(),
        "tasks": {phase: report["summary"][phase]["tasks"] for phase in ("pre", "post")},
        "retried_tasks": {phase: report["summary"][phase]["retried"] for phase in ("pre", "post")},
        "arm_calls_by_operation": {
            "pipeline": dict(sorted(pipeline_counts.items())),
            "baseline": dict(sorted(direct_counts[0].items())),
        },
        "storage_requests_during_demo": demo["storage_requests"],
        "storage_requests_per_task": round(storage_per_task, 1),
        "storage_requests_by_resource": demo["storage_requests_by_resource"],
        "throttled_429": {"pipeline": pipeline_throttled, "baseline": direct_throttled},
        "same_arm_calls": same_calls,
    }
    result = Result(NAME, TITLE, rows, details)
    if not report["ok"]:
        result.details["summary"] = "the demo did not end as expected: " + "; ".join(details["failed_checks"])
    return result


def _run_demo(options) -> dict:
    """Run the demo and keep what it does not report: its estate and the simulator's request log.

    ``run_demo`` builds its own stack and stops it before returning, so the stack class it uses
    is swapped for one that copies both out just before stopping. Nothing else changes.
    """
    import prepost.demo as demo_module
    from prepost.local.stack import LocalStack

    kept: dict = {}

    class KeepingStack(LocalStack):
        def stop(self) -> None:
            if self.simulator is not None:
                kept["requests"] = self.simulator.state.requests()
            if self.azurite is not None:
                kept["ports"] = {"table": self.azurite.endpoints.table_port, "queue": self.azurite.endpoints.queue_port}
            kept["estate"] = self.estate
            super().stop()

    out, err = io.StringIO(), io.StringIO()
    # Counting costs a few microseconds per request against milliseconds per round trip.
    # The demo's main thread polls the records to report progress: not the app's work, not counted.
    with (
        mock.patch.object(demo_module, "LocalStack", KeepingStack),
        count_calls_by_resource(exclude_threads=("MainThread",)) as calls,
    ):
        ok, wall = timed(lambda: demo_module.run_demo(options, out=out, err=err))
    by_port: Counter[int] = Counter()
    by_resource: Counter[str] = Counter()
    services = {port: name for name, port in kept.get("ports", {}).items()}
    for (port, method, resource), count in calls.items():
        by_port[port] += count
        if port in services:
            by_resource[f"{services[port]} {method} {resource}"] += count
    if not out.getvalue().strip():  # the demo gave up before its report (a delivery failed)
        raise RuntimeError("the demo ended without a report:\n" + err.getvalue()[-2000:])
    report = json.loads(out.getvalue())
    report["ok"] = ok and report["ok"]
    progress = [(float(match[1]), match[2]) for line in err.getvalue().splitlines() if (match := PROGRESS.match(line))]
    delivered = next((t for t, text in progress if text.startswith("pre-event delivered")), None)
    done = {
        phase: max((t for t, text in progress if text.startswith(f"{phase}: ")), default=None)
        for phase in ("pre", "post")
    }
    if delivered is None or done["post"] is None:
        raise RuntimeError("the demo's progress lines were not as expected:\n" + err.getvalue()[-2000:])
    return {
        "report": report,
        "requests": kept.get("requests", []),
        "estate": kept["estate"],
        "storage_requests": {name: by_port[port] for name, port in kept.get("ports", {}).items()},
        "storage_requests_by_resource": dict(by_resource.most_common()),
        "wall_seconds": wall,
        "delivered_at": delivered,
        "phase_done_at": done,
        "window_seconds": done["post"] - delivered,
    }


def _vm_task_concurrency() -> int:
    from prepost.local.host_config import load_queues_config

    return load_queues_config().batch_size


def _direct(estate, rounds: int, *, workers: int) -> tuple[list[float], list[Counter], int]:
    """The window's ARM calls made directly, ``rounds`` times on the same freshly reset simulator;
    the times, the calls made by operation, and how many were answered 429."""
    times: list[float] = []
    counts: list[Counter] = []
    throttled = 0
    with simulator(estate) as server:
        for _ in range(rounds):
            server.reset()
            clients = _RawClients(server.url)
            _, seconds = timed(lambda clients=clients: _window(estate, clients, workers))
            times.append(seconds)
            requests = server.state.requests()
            counts.append(Counter(record.operation for record in requests if record.operation))
            throttled += sum(1 for record in requests if record.status == 429)
            clients.close()
    return times, counts, throttled


class _RawClients:
    """Plain SDK clients, one per kind and subscription, created before the clock starts."""

    def __init__(self, url: str) -> None:
        from azure.mgmt.compute import ComputeManagementClient
        from azure.mgmt.maintenance import MaintenanceManagementClient
        from azure.mgmt.resource.resources import ResourceManagementClient
        from azure.mgmt.resourcegraph import ResourceGraphClient

        self.url = url
        credential = raw_credential()
        self._compute: dict[str, ComputeManagementClient] = {}
        self._resources: dict[str, ResourceManagementClient] = {}
        self._maintenance: dict[str, MaintenanceManagementClient] = {}
        self._factories = {
            "compute": lambda sub: ComputeManagementClient(credential, sub, **raw_mgmt_options(url)),
            "resources": lambda sub: ResourceManagementClient(credential, sub, **raw_mgmt_options(url)),
            "maintenance": lambda sub: MaintenanceManagementClient(credential, sub, **raw_mgmt_options(url)),
        }
        self.graph = ResourceGraphClient(credential, **raw_mgmt_options(url))

    def prepare(self, subscriptions: list[str]) -> None:
        for subscription in subscriptions:
            self._compute[subscription] = self._factories["compute"](subscription)
            self._resources[subscription] = self._factories["resources"](subscription)
            self._maintenance[subscription] = self._factories["maintenance"](subscription)

    def compute(self, subscription: str):
        return self._compute[subscription]

    def resources(self, subscription: str):
        return self._resources[subscription]

    def maintenance(self, subscription: str):
        return self._maintenance[subscription]

    def close(self) -> None:
        for group in (self._compute, self._resources, self._maintenance):
            for client in group.values():
                client.close()
        self.graph.close()


def _window(estate, clients: _RawClients, workers: int) -> None:
    """Pre then post, as the pipeline does them, without queues or records."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.core.rest import HttpRequest
    from azure.mgmt.compute.models import CreationData, Snapshot
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    from shared.adapters.arm.resource_graph import run_machines_query

    clients.prepare(list(estate.subscription_ids))
    configuration = estate.configuration
    run = estate.run
    clients.maintenance(configuration.subscription_id).maintenance_configurations.get(
        configuration.resource_group, configuration.name
    )
    page = clients.graph.resources(
        QueryRequest(
            subscriptions=list(estate.subscription_ids),
            query=run_machines_query(run.correlation_id),
            options=QueryRequestOptions(top=1000, result_format="objectArray"),
        )
    )
    listed = {row["resourceId"].lower() for row in page.data}
    vms = [vm for vm in estate.vms if vm.id.lower() in listed]
    arcs = [arc for arc in estate.arc_servers if arc.id.lower() in listed]
    started: list = []

    def start(vm) -> None:
        operations = clients.compute(vm.subscription_id).virtual_machines
        found = operations.get(vm.resource_group, vm.name, expand="instanceView")
        codes = [status.code for status in found.instance_view.statuses or []]
        if "PowerState/deallocated" in codes:
            operations.begin_start(vm.resource_group, vm.name).result()
            started.append(vm)

    def snapshot(vm) -> None:
        compute = clients.compute(vm.subscription_id)
        found = compute.virtual_machines.get(vm.resource_group, vm.name, expand="instanceView")
        for disk in vm.disks:
            name = f"direct-{disk.name}"[:80]
            try:
                compute.snapshots.get(disk.resource_group, name)
                continue
            except ResourceNotFoundError:
                pass
            body = Snapshot(
                location=found.location,
                incremental=True,
                creation_data=CreationData(create_option="Copy", source_resource_id=disk.id),
            )
            compute.snapshots.begin_create_or_update(disk.resource_group, name, body).result()

    def arm(method: str, resource_id: str, api_version: str, body=None) -> None:
        subscription = resource_id.split("/")[2]
        request = HttpRequest(method, f"{resource_id}?api-version={api_version}", json=body)
        clients.resources(subscription).send_request(request).raise_for_status()

    def rule_id(subscription: str) -> str:
        group = sorted((vm.resource_group for vm in vms if vm.subscription_id == subscription), key=str.lower)[0]
        return (
            f"/subscriptions/{subscription}/resourceGroups/{group}"
            f"/providers/Microsoft.AlertsManagement/actionRules/direct-{run.correlation_id.rsplit('/', 1)[-1]}"
        )

    subscriptions = sorted({vm.subscription_id for vm in vms} | {arc.subscription_id for arc in arcs})
    rules = [
        rule_id(subscription) for subscription in subscriptions if any(vm.subscription_id == subscription for vm in vms)
    ]

    def rule_body(scopes: list[str]) -> dict:
        return {
            "location": "Global",
            "properties": {
                "scopes": scopes,
                "enabled": True,
                "actions": [{"actionType": "RemoveAllActionGroups"}],
                "schedule": {
                    "effectiveFrom": "2026-01-01T00:00:00",
                    "effectiveUntil": "2036-01-01T00:00:00",
                    "timeZone": "UTC",
                },
            },
        }

    with ThreadPoolExecutor(max_workers=workers) as pool:
        work = [pool.submit(start, vm) for vm in vms]
        work += [pool.submit(snapshot, vm) for vm in vms]
        work += [pool.submit(arm, "GET", arc.id, "2024-07-10") for arc in arcs]
        work += [
            pool.submit(
                arm,
                "PUT",
                rule,
                "2021-08-08",
                rule_body([vm.id for vm in vms if vm.subscription_id == rule.split("/")[2]]),
            )
            for rule in rules
        ]
        for future in work:
            future.result()

    def deallocate(vm) -> None:
        operations = clients.compute(vm.subscription_id).virtual_machines
        operations.get(vm.resource_group, vm.name, expand="instanceView")
        operations.begin_deallocate(vm.resource_group, vm.name).result()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        work = [pool.submit(deallocate, vm) for vm in started]
        work += [pool.submit(arm, "DELETE", rule, "2021-08-08") for rule in rules]
        for future in work:
            future.result()
