"""10,000 machines in 10 subscriptions: does the pre phase finish inside its 20 minutes?

This machine cannot run 10,000 machines through Azurite in real time, so this scenario runs on a
virtual clock (a discrete-event simulation: no sleeping, time jumps to the next event). What is
real and what is modelled:

- **real code**: the app's ARM rate control (:class:`shared.adapters.arm.rate_control.RateControl`,
  one per function-app instance, on the virtual clock), and the simulator's token buckets
  (:class:`prepost.simulator.throttling.Throttler`, Azure's sizes, per subscription) answering
  every call with the headers the rate control reads; 429 answers re-queue the task with its
  ``Retry-After`` and spend an attempt (8 at most), ``Deferred`` re-queues it without one, as the
  task runner does.
- **modelled from the code, call for call** (``shared.usecases.machine_actions``): a preflight
  task per VM reads the VM and lists its disks' snapshots, in one delivery; a snapshot task
  reads the VM and each disk's snapshot, begins the missing snapshots, and looks again every
  ``PREPOST_OPERATION_CHECK_SECONDS`` (20 s) reading the VM and the snapshots until all are done;
  a start task reads the VM, begins the start, and reads the VM on each look; one alert rule per
  subscription. Planning: Resource Graph pages of 1,000 rows on the caller's quota, then task
  records and messages.
- **stated assumptions** (virtual seconds): ARM latency and operation durations as in
  :mod:`prepost.simulator.profiles`; per task delivery the storage round trips measured by the
  e2e scenario, at 10 ms each (Azure Storage in the same region), a final outcome recorded by the
  delivery that makes the task final; messages sent at 2,000/s (a
  Storage queue's scalability target); a message is picked up 0-1 s after it becomes visible;
  10 instances, 12 tasks at once each (host.json ``batchSize`` 8 + ``newBatchThreshold`` 4).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bench.measure import Result, Row

NAME = "fleet"
TITLE = "10,000 machines, 10 subscriptions, pre phase on a virtual clock: vs the 20-minute budget"

BUDGET = 20 * 60.0
CHECK_INTERVAL = 20.0
STORAGE_ROUND_TRIP = 0.010
STORAGE_PER_DELIVERY = {"first": 10, "look": 8, "record": 3}
"""Storage round trips by delivery, from the e2e measurement (about 16 per task in all): a first
delivery, a later look, and what recording a final outcome adds to the delivery that makes the
task final (it is recorded there, with no message of its own: the phase and its counter shard
read, the task and shard written together, the phase read again)."""
SEND_RATE = 2000.0
TABLE_BATCH_SECONDS = 0.02
INSTANCES = 10
SLOTS = 12
"""host.json: batchSize 8, and a new batch fetched when 4 are left (newBatchThreshold)."""
MAX_ATTEMPTS = 8
DEALLOCATED_EVERY = 4
DISKS = 2
ORIGIN = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def run(*, quick: bool) -> Result:
    machines, subscriptions = (2_000, 2) if quick else (10_000, 10)
    model = FleetModel(machines=machines, subscriptions=subscriptions, seed=7)
    outcome = model.run()
    minimum = outcome["bucket_minimum_seconds"]
    rows = [
        Row.cost(
            "pre-event to gate decision",
            "s",
            outcome["seconds"],
            BUDGET,
            f"{machines} machines; margin {BUDGET - outcome['seconds']:.0f} s of the 20 min (target: 300 s or more)",
        ),
        Row.cost("vs token-bucket minimum", "s", outcome["seconds"], minimum, outcome["binding"]),
    ]
    details = {
        **outcome,
        "budget_seconds": BUDGET,
        "margin_seconds": round(BUDGET - outcome["seconds"], 1),
        "simulated": __doc__.split("\n\n", 1)[1].strip(),
        "assumptions": {
            "instances": INSTANCES,
            "tasks_at_once_per_instance": SLOTS,
            "check_interval_seconds": CHECK_INTERVAL,
            "storage_round_trip_seconds": STORAGE_ROUND_TRIP,
            "storage_round_trips_per_delivery": STORAGE_PER_DELIVERY,
            "send_rate_per_second": SEND_RATE,
            "disks_per_vm": DISKS,
            "deallocated_every": DEALLOCATED_EVERY,
        },
        "summary": (
            f"virtual clock; {outcome['failed_by_throttling']} task(s) failed by throttling, "
            f"{outcome['throttled_429']} answers 429, {outcome['deferred']} put off by the rate control"
        ),
    }
    return Result(NAME, TITLE, rows, details)


@dataclass
class Task:
    kind: str  # "preflight", "snapshot", "start", "rule"
    subscription: str
    vm: str
    attempt: int = 1
    begun: bool = False
    done_at: list[float] = field(default_factory=list)
    """When each operation this task began finishes (virtual seconds)."""
    final: bool = False
    failed: str = ""


class _Clock:
    """The simulator's clock protocol over the model's time."""

    def __init__(self, model: FleetModel) -> None:
        self.model = model

    def now(self) -> datetime:
        return ORIGIN + timedelta(seconds=self.model.now)


class FleetModel:
    def __init__(self, *, machines: int, subscriptions: int, seed: int) -> None:
        from prepost.simulator.throttling import ThrottleConfig, Throttler
        from shared.adapters.arm.rate_control import RateControl

        self.machines = machines
        self.subscriptions = [f"{index:08d}-0000-0000-0000-000000000000" for index in range(subscriptions)]
        self.random = random.Random(seed)
        self.now = 0.0
        self._events: list = []
        self._sequence = itertools.count()
        self.throttler = Throttler(ThrottleConfig(), _Clock(self))
        self.rates = [
            RateControl(clock=lambda: self.now, sleep=lambda _: None, spread=self.random.random, max_in_flight=10**6)
            for _ in range(INSTANCES)
        ]
        self.free = [SLOTS] * INSTANCES
        self.ready: list[tuple[float, int, Task]] = []
        self.tasks: list[Task] = []
        self.charged: Counter[tuple[str, str]] = Counter()
        self.calls: Counter[str] = Counter()
        self.throttled = 0
        self.deferred = 0
        self.final_at = 0.0

    # -- the event loop -------------------------------------------------------------------

    def at(self, moment: float, action) -> None:
        heapq.heappush(self._events, (moment, next(self._sequence), action))

    def run(self) -> dict:
        self._plan()
        while self._events:
            self.now, _, action = heapq.heappop(self._events)
            action()
        unfinished = [task for task in self.tasks if not task.final]
        if unfinished:
            raise RuntimeError(f"{len(unfinished)} tasks never finished")
        minimum, binding = self._bucket_minimum()
        failed = [task for task in self.tasks if task.failed]
        return {
            "seconds": round(self.final_at, 1),
            "machines": self.machines,
            "subscriptions": len(self.subscriptions),
            "tasks": len(self.tasks),
            "failed": len(failed),
            "failed_by_throttling": sum(1 for task in failed if "throttl" in task.failed),
            "throttled_429": self.throttled,
            "deferred": self.deferred,
            "arm_calls": dict(self.calls),
            "bucket_minimum_seconds": round(minimum, 1),
            "binding": binding,
        }

    # -- planning --------------------------------------------------------------------------

    def _plan(self) -> None:
        pages = math.ceil(self.machines / 1000)
        moment = 0.0
        for _ in range(pages):
            verdict = self.throttler.charge_graph("app")
            while not verdict.allowed:  # planning sends itself again after the quota resets
                moment += verdict.retry_after
                self.now = moment
                verdict = self.throttler.charge_graph("app")
            moment += self.random.uniform(0.3, 1.0)
            self.now = moment
        per_subscription = self.machines // len(self.subscriptions)
        for subscription in self.subscriptions:
            for index in range(per_subscription):
                vm = f"{subscription}/vm{index}"
                self.tasks.append(Task("preflight", subscription, vm))
                self.tasks.append(Task("snapshot", subscription, vm))
                if index % DEALLOCATED_EVERY == DEALLOCATED_EVERY - 1:
                    self.tasks.append(Task("start", subscription, vm))
            self.tasks.append(Task("rule", subscription, "-"))
        self.random.shuffle(self.tasks)  # messages from all subscriptions interleave on the queue
        moment += math.ceil(len(self.tasks) / 100) * TABLE_BATCH_SECONDS
        for index, task in enumerate(self.tasks):
            self._enqueue(task, moment + index / SEND_RATE)
        self.now = 0.0

    # -- deliveries ------------------------------------------------------------------------

    def _enqueue(self, task: Task, visible: float) -> None:
        pickup = visible + self.random.uniform(0.0, 1.0)
        self.at(pickup, lambda: self._arrive(task))

    def _arrive(self, task: Task) -> None:
        self.ready.append((self.now, next(self._sequence), task))
        self._dispatch()

    def _dispatch(self) -> None:
        while self.ready and max(self.free) > 0:
            instance = max(range(INSTANCES), key=lambda i: self.free[i])
            _, _, task = self.ready.pop(0)
            self.free[instance] -= 1
            storage = STORAGE_PER_DELIVERY["look" if task.begun else "first"] * STORAGE_ROUND_TRIP
            steps = iter(self._calls_of(task))
            half = storage / 2  # storage round trips before the ARM calls (lock, records) and after
            self.at(self.now + half, lambda t=task, i=instance, s=steps, h=half: self._next_call(t, i, s, h))

    def _calls_of(self, task: Task) -> list[tuple[str, str, str]]:
        """(method, path, operation) of each ARM call of this delivery, as machine_actions makes them."""
        base = f"/subscriptions/{task.subscription}/resourceGroups/rg/providers/Microsoft.Compute"
        vm = (f"{base}/virtualMachines/{task.vm}", "vm.get")
        if task.kind == "rule":
            rules = f"/subscriptions/{task.subscription}/resourceGroups/rg/providers/Microsoft.AlertsManagement"
            return [("PUT", f"{rules}/actionRules/r", "alertrules.put")]
        # A delivery put off halfway is run again from the start, as the task runner does; what it
        # began already (recorded in done_at) is found begun and not asked for again.
        if task.kind == "preflight":
            # Read-only checks, in one delivery: the VM with its instance view, the disks' snapshots.
            return [("GET", *vm), ("GET", f"{base}/snapshots", "snapshots.list")]
        if task.kind == "start":
            begin = [] if task.begun or task.done_at else [("POST", f"{vm[0]}/start", "vm.start")]
            return [("GET", *vm), *begin]
        reads = [("GET", *vm)] + [("GET", f"{base}/snapshots/{task.vm}-{d}", "snapshots.get") for d in range(DISKS)]
        missing = 0 if task.begun else DISKS - len(task.done_at)
        return reads + [("PUT", f"{base}/snapshots/{task.vm}-{d}", "snapshots.create") for d in range(missing)]

    def _next_call(self, task: Task, instance: int, steps, storage_after: float) -> None:
        from shared.adapters.arm.rate_control import Target
        from shared.errors import Deferred

        step = next(steps, None)
        if step is None:
            self._finish_delivery(task, instance, storage_after)
            return
        method, path, operation = step
        target = Target.of(method, f"https://management.azure.com{path}")
        rate = self.rates[instance]
        try:
            wait = rate.reserve_token(target)
        except Deferred as error:
            self.deferred += 1
            self._release(instance)
            self._enqueue(task, self.now + error.retry_after.total_seconds())
            return
        self.at(self.now + wait, lambda: self._send(task, instance, steps, storage_after, method, path, operation))

    def _send(self, task, instance, steps, storage_after, method, path, operation) -> None:
        subscription = path.split("/")[2]
        verdict = self.throttler.charge_arm(subscription, method, operation)
        latency = self.random.uniform(*({"GET": (0.05, 0.2)}.get(method, (0.1, 0.5))))
        from shared.adapters.arm.rate_control import Target

        rate = self.rates[instance]
        target_key = Target.of(method, f"https://management.azure.com{path}")
        if not verdict.allowed:
            self.throttled += 1
            rate.observe(target_key, 429, verdict.headers)
            self._release(instance)
            if task.attempt >= MAX_ATTEMPTS:
                task.final, task.failed = True, f"throttled after {task.attempt} attempts"
                self._record_final(task)
            else:
                task.attempt += 1
                self._enqueue(task, self.now + latency + verdict.retry_after)
            return
        self.charged[(subscription, "reads" if method == "GET" else "writes")] += 1
        self.calls[operation] += 1
        rate.observe(target_key, 200, verdict.headers)
        if operation in ("snapshots.create", "vm.start"):
            low, high = (5.0, 60.0) if operation == "snapshots.create" else (15.0, 60.0)
            task.done_at.append(self.now + math.exp(self.random.uniform(math.log(low), math.log(high))))
        self.at(self.now + latency, lambda: self._next_call(task, instance, steps, storage_after))

    def _finish_delivery(self, task: Task, instance: int, storage_after: float) -> None:
        def end() -> None:
            if task.kind in ("rule", "preflight") or (task.begun and all(done <= self.now for done in task.done_at)):
                task.final = True
                # Recorded by this delivery, which holds its slot until the record is written.
                self.at(self.now + self._record_seconds(), lambda: self._recorded(instance))
            else:
                self._release(instance)
                task.begun = True
                self._enqueue(task, self.now + CHECK_INTERVAL)

        self.at(self.now + storage_after, end)

    def _release(self, instance: int) -> None:
        self.free[instance] += 1
        self._dispatch()

    @staticmethod
    def _record_seconds() -> float:
        return STORAGE_PER_DELIVERY["record"] * STORAGE_ROUND_TRIP

    def _recorded(self, instance: int) -> None:
        self.final_at = max(self.final_at, self.now)
        self._release(instance)

    def _record_final(self, task: Task) -> None:
        """A task failed by throttling: its delivery records that before it ends."""
        self.final_at = max(self.final_at, self.now + self._record_seconds())

    def _bucket_minimum(self) -> tuple[float, str]:
        from prepost.simulator.throttling import RequestKind, ThrottleConfig

        config = ThrottleConfig()
        seconds, binding = 0.0, "none"
        for (_, kind), calls in self.charged.items():
            bucket = config.bucket(RequestKind(kind))
            needed = max(0, calls - bucket.capacity) / bucket.refill_per_second
            if needed > seconds:
                seconds, binding = needed, f"{kind} of one subscription ({calls} calls)"
        return seconds, binding
