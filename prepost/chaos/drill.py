"""``prepost chaos``: many maintenance windows through the real app while things go wrong.

The drill starts Azurite, one storage fault proxy for its queue service and one for its table
service (:mod:`prepost.chaos.proxy`), the management-API simulator with an estate of machine
slots, and ``--instances`` function-app instances in processes of their own, all on one scaled
clock (:mod:`prepost.chaos.timescale`). Then it runs ``--windows`` maintenance windows,
overlapped, each with disorder drawn from the seed, while instances are killed and restarted and
the proxies and the simulator inject faults. After each window settles it checks the invariants
(:mod:`prepost.chaos.invariants`) against Azurite read directly and the simulator's state.

See ``docs/chaos.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from prepost.chaos import plan as timeline
from prepost.chaos.defaults import DEFAULT_ARM_FAULTS, DEFAULT_STORAGE_FAULTS
from prepost.chaos.eventgrid import Delivery, EventGridSender
from prepost.chaos.invariants import (
    INVARIANTS,
    DeliveryObs,
    InvariantResult,
    MessageObs,
    check_all,
)
from prepost.chaos.observe import SimulatorLog, StorageView, WindowFacts, build_observation
from prepost.chaos.plan import DrillPlan, WindowPlan, build_estate, make_plan
from prepost.chaos.timescale import ScaledClock

ARM_TIMEOUT_HOLD_SECONDS = 3.0
"""Real seconds the simulator holds a request it times out (then drops the connection)."""
ARM_RETRY_AFTER = 30
"""Virtual seconds asked for by an injected 429."""
CANCEL_MARGIN = timedelta(minutes=2)
"""The app's PREPOST_CANCEL_MARGIN_MINUTES default: its deadline check is due this long before the cut-off."""
OPERATION_SECONDS = {"vm.start": 90.0, "vm.deallocate": 60.0, "snapshots.create": 60.0, "snapshots.delete": 30.0}
"""Virtual seconds the simulator's long-running operations take."""
SETTLED_AFTER_END = timeline.GRACE + timedelta(minutes=2)
"""A window is not checked before its end plus this: the app's post fallback is due at end + grace."""
MONITOR_INTERVAL = 0.5
"""Real seconds between samples of the simulator and peeks at the work queues."""


class DrillError(RuntimeError):
    """The drill itself could not run (not a violation by the app)."""


@dataclass(frozen=True)
class DrillOptions:
    seed: int = 1
    windows: int = 20
    instances: int = 2
    scale: float = 60.0
    storage_faults: str = DEFAULT_STORAGE_FAULTS
    arm_faults: str = DEFAULT_ARM_FAULTS
    crash_every: float = 45.0
    json_path: str | None = None
    keep_logs: str | None = None
    poll_interval: float | None = None


@dataclass
class WindowRun:
    """One window while the drill runs it, and its result."""

    plan: WindowPlan
    start: datetime
    end: datetime
    cutoff: datetime
    deadline: datetime
    correlation_id: str
    run_key: str
    stamp: str
    deliveries: list[Delivery] = field(default_factory=list)
    disorder_events: list[str] = field(default_factory=list)
    prepared_at: datetime | None = None
    checked_at: datetime | None = None
    settled: str = "not run"
    storage_before: Counter = field(default_factory=Counter)
    storage_faults: Counter = field(default_factory=Counter)
    arm_faults: Counter = field(default_factory=Counter)
    crashes: int = 0
    results: dict[str, InvariantResult] = field(default_factory=dict)
    error: str | None = None
    observation: Any = None
    first_final: dict[tuple[str, str, str], datetime | None] = field(default_factory=dict)
    """Task -> the Timestamp of its entity when the drill first saw it final."""
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def violations(self) -> list[tuple[str, str]]:
        return [(name, message) for name, result in self.results.items() for message in result.violations]

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.plan.number,
            "slot": self.plan.slot,
            "runKey": self.run_key,
            "correlationId": self.correlation_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "disorder": list(self.plan.disorder),
            "disorderText": self.plan.describe_disorder(),
            "disorderEvents": list(self.disorder_events),
            "settled": self.settled,
            "checkedAt": self.checked_at.isoformat() if self.checked_at else None,
            "deliveries": [
                {
                    "label": d.label,
                    "phase": d.phase,
                    "due": d.due.isoformat(),
                    "outcome": d.outcome,
                    "attempts": [{"time": a.time.isoformat(), "status": a.status} for a in d.attempts],
                }
                for d in self.deliveries
            ],
            "faults": {
                "storage": dict(self.storage_faults),
                "arm": dict(self.arm_faults),
                "crashes": self.crashes,
            },
            "invariants": {name: result.to_json() for name, result in self.results.items()},
            "error": self.error,
        }


def task_key(task) -> tuple[str, str, str]:
    return (task.phase, task.action, task.target.lower())


def _sum_storage(stats: list[dict[str, Any]]) -> Counter:
    total: Counter = Counter()
    for item in stats:
        for kind, count in (item.get("faults_by_kind") or {}).items():
            total[kind] += int(count)
    return total


class Drill:
    def __init__(self, options: DrillOptions, *, err: TextIO = sys.stderr) -> None:
        if options.windows < 1:
            raise DrillError("--windows must be at least 1")
        if options.instances < 1:
            raise DrillError("--instances must be at least 1")
        if options.scale < 1:
            raise DrillError("--scale must be at least 1")
        _validate_faults(options)
        self.options = options
        self.err = err
        self.clock = ScaledClock(options.scale)
        self.stop_event = threading.Event()
        self.started = time.monotonic()
        self.log_dir = Path(options.keep_logs or tempfile.mkdtemp(prefix="prepost-chaos-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._drill_log = open(self.log_dir / "drill.log", "a", encoding="utf-8")  # noqa: SIM115 - closed in run()
        self._say_lock = threading.Lock()
        self.azurite = None
        self.proxies: list[Any] = []
        self.simulator = None
        self.pool = None
        self.estate = None
        self.sender: EventGridSender | None = None
        self.storage: StorageView | None = None
        self.simulator_log: SimulatorLog | None = None
        self.windows: list[WindowRun] = []
        self.plan: DrillPlan | None = None
        self.visible_work: list[tuple[str, dict[str, Any], str]] = []
        self.crash_times: list[datetime] = []
        self.restarts = 0
        self.error: str | None = None
        self.final_storage_faults: Counter = Counter()

    # -- output ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f}s {self.clock.now():%H:%M}] {text}"
        with self._say_lock:
            print(line, file=self.err, flush=True)
            with contextlib.suppress(ValueError):
                self._drill_log.write(line + "\n")
                self._drill_log.flush()

    # -- the whole drill ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from shared.clock import set_clock

        set_clock(self.clock)
        try:
            self._start_everything()
            self._run_windows()
        except KeyboardInterrupt:
            self.error = "interrupted"
            self.say("interrupted: stopping everything")
            raise
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            self.say(f"the drill failed: {self.error}")
            raise
        finally:
            self.stop_event.set()
            self._stop_everything()
            set_clock(None)
            self._drill_log.close()
        return self.report()

    def _start_everything(self) -> None:
        from prepost.local.azurite import AzuriteProcess
        from prepost.local.stack import app_settings
        from prepost.simulator import SimulatorServer
        from shared.names import SettingName

        options = self.options
        self.say(f"time scale {options.scale:g}: one real second is {options.scale:g} virtual seconds")
        self.azurite = AzuriteProcess()
        endpoints = self.azurite.start()
        self.say(f"Azurite on ports {endpoints.ports}")
        connection = self._start_proxies(endpoints)
        from prepost.local.hook_scripts import upload_scripts

        upload_scripts(endpoints.connection_string)  # blobs are read directly, not through the proxies

        estate = build_estate(timeline.slots_needed(), options.seed)
        self.estate = estate
        self.simulator = SimulatorServer(estate.estate, self._simulator_config(), clock=self.clock).start()
        self.simulator_log = SimulatorLog(self.simulator)
        self.say(
            f"simulator {self.simulator.url}: {len(estate.estate.vms)} VMs, {len(estate.estate.arc_servers)} Arc "
            f"servers in {len(estate.slots)} slots; ARM faults {options.arm_faults or 'none'}"
        )
        settings = app_settings(connection, self.simulator.url, [estate.configuration_id], estate.subscription_ids)
        settings[SettingName.SUPPRESSION_GRACE_MINUTES.value] = str(int(timeline.GRACE.total_seconds() // 60))
        settings[SettingName.CANCEL_MARGIN_MINUTES.value] = str(int(CANCEL_MARGIN.total_seconds() // 60))
        settings[SettingName.OPERATION_CHECK_SECONDS.value] = "20"  # the production default, in virtual seconds
        settings_file = self.log_dir / "settings.json"
        settings_file.write_text(json.dumps(settings, indent=2))

        self.storage = StorageView(endpoints.connection_string, self.clock)
        from prepost.chaos.instances import InstancePool

        self.pool = InstancePool(
            options.instances,
            settings_file=settings_file,
            clock=self.clock,
            log_dir=self.log_dir,
            poll_interval=options.poll_interval,
        )
        self.pool.start()
        self.say(f"{options.instances} instance(s) ready: {', '.join(self.pool.live_urls())}")

    def _start_proxies(self, endpoints) -> str:
        from prepost.chaos.proxy import ProxyProcess, proxied_connection_string

        queue = ProxyProcess(
            f"127.0.0.1:{endpoints.queue_port}", "queue", faults=self.options.storage_faults, seed=self.options.seed
        )
        self.proxies.append(queue)
        queue.start()
        table = ProxyProcess(
            f"127.0.0.1:{endpoints.table_port}",
            "table",
            faults=self.options.storage_faults,
            seed=self.options.seed + 1,
        )
        self.proxies.append(table)
        table.start()
        self.say(f"storage fault proxies: queue {queue.url}, table {table.url}; faults {self.options.storage_faults!r}")
        return proxied_connection_string(
            endpoints.connection_string, queue_endpoint=queue.url, table_endpoint=table.url
        )

    def _simulator_config(self):
        from prepost.demo import parse_faults
        from prepost.simulator import LroConfig, LroTiming, SimulatorConfig
        from prepost.simulator.faults import FaultConfig, FaultSpec

        rates = parse_faults(self.options.arm_faults)
        faults = FaultConfig(seed=self.options.seed)
        if rates:
            faults = FaultConfig(
                operations={
                    "*": FaultSpec(
                        throttle=rates.get("429", 0.0),
                        error=rates.get("500", 0.0),
                        timeout=rates.get("timeout", 0.0),
                        retry_after=ARM_RETRY_AFTER,
                        timeout_seconds=ARM_TIMEOUT_HOLD_SECONDS,
                    )
                },
                seed=self.options.seed,
            )
        # prepost never polls an operation (it begins and looks again later): they end by time.
        lro = LroConfig(
            per_operation={name: LroTiming(polls=10**9, seconds=seconds) for name, seconds in OPERATION_SECONDS.items()}
        )
        return SimulatorConfig(faults=faults, lro=lro, seed=self.options.seed)

    def _stop_everything(self) -> None:
        self.final_storage_faults = self._proxy_faults()
        for name, stop in (
            ("instances", lambda: self.pool and self.pool.stop()),
            ("simulator", lambda: self.simulator and self.simulator.stop()),
            ("storage view", lambda: self.storage and self.storage.close()),
            ("proxies", lambda: [proxy.stop() for proxy in self.proxies]),
            ("Azurite", lambda: self.azurite and self.azurite.stop()),
        ):
            try:
                stop()
            except Exception as error:  # keep stopping the rest
                self.say(f"stopping {name} failed: {error}")

    # -- windows --------------------------------------------------------------------------------

    def expected_real_seconds(self) -> float:
        last = timeline.WINDOW_SPACING * (self.options.windows - 1)
        virtual = timeline.PREPARE_LEAD + last + timeline.WINDOW_LENGTH + SETTLED_AFTER_END + timedelta(minutes=5)
        return self.clock.real_seconds(virtual)

    def _run_windows(self) -> None:
        from shared.models.ids import run_key, schedule_stamp_of

        self.plan = make_plan(
            seed=self.options.seed,
            windows=self.options.windows,
            estate=self.estate,
            crash_every=self.options.crash_every,
            expected_seconds=self.expected_real_seconds(),
        )
        for line in self.plan.describe().splitlines():
            self.say(line)
        first = self.clock.now() + timeline.PREPARE_LEAD + timedelta(minutes=1)
        first = (first + timedelta(minutes=1)).replace(second=0, microsecond=0)
        configuration = self.estate.configuration_id
        for window in self.plan.windows:
            start = first + window.offset
            correlation = f"{configuration}/providers/microsoft.maintenance/applyupdates/{start:%Y%m%d%H%M%S}"
            end = start + timeline.WINDOW_LENGTH
            cutoff = start - timeline.CUTOFF_BEFORE_START
            self.windows.append(
                WindowRun(
                    plan=window,
                    start=start,
                    end=end,
                    cutoff=cutoff,
                    deadline=cutoff - CANCEL_MARGIN,
                    correlation_id=correlation,
                    run_key=run_key(correlation),
                    stamp=schedule_stamp_of(correlation) or f"{start:%Y%m%d%H%M%S}",
                )
            )
        self.sender = EventGridSender(self.clock, self.pool.live_urls, seed=self.options.seed, stop=self.stop_event)
        threads = [
            threading.Thread(target=self._monitor, name="chaos-monitor", daemon=True),
            threading.Thread(target=self._crasher, name="chaos-crasher", daemon=True),
        ]
        threads += [
            threading.Thread(target=self._window, args=(run,), name=f"chaos-window-{run.plan.number}", daemon=True)
            for run in self.windows
        ]
        for thread in threads:
            thread.start()
        waiter = threading.Event()
        for run in self.windows:
            while not run.done.is_set():
                if not any(thread.is_alive() for thread in threads[2:]):
                    break
                waiter.wait(0.5)
        self.stop_event.set()
        for thread in threads[:2]:
            thread.join(timeout=30)

    def _monitor(self) -> None:
        while not self.stop_event.wait(MONITOR_INTERVAL):
            try:
                self.simulator_log.sample()
                self.visible_work = self.storage.visible_work()
            except Exception as error:  # the drill reads Azurite directly; keep going
                self.say(f"monitor: {type(error).__name__}: {error}")

    def _crasher(self) -> None:
        rng = random.Random(f"crashes-{self.options.seed}")
        origin = time.monotonic()
        waiter = self.stop_event
        for crash in self.plan.crashes:
            if waiter.wait(max(0.0, origin + crash.after - time.monotonic())):
                return
            victim = self.pool.crash(rng)
            if victim is None:
                continue
            self.crash_times.append(self.clock.now())
            self.say(f"crash: {victim.name} killed (SIGKILL); back in {crash.restart_after:.1f} s")
            if waiter.wait(crash.restart_after):
                return
            try:
                self.pool.restart(victim)
                self.restarts += 1
                self.say(f"crash: {victim.name} restarted")
            except Exception as error:
                self.say(f"crash: restarting {victim.name} failed: {error}")
        # Instances that died on their own are restarted too.
        while not waiter.wait(1.0):
            for instance in self.pool.dead():
                with contextlib.suppress(Exception):
                    self.pool.restart(instance)

    def _proxy_faults(self) -> Counter:
        stats = []
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                stats.append(proxy.stats())
        return _sum_storage(stats)

    def _window(self, run: WindowRun) -> None:
        try:
            self._drive(run)
        except Exception as error:
            run.error = f"{type(error).__name__}: {error}"
            self.say(f"window {run.plan.number}: the drill failed on it: {run.error}")
        finally:
            run.done.set()

    def _drive(self, run: WindowRun) -> None:
        from prepost.simulator import PowerState

        plan = run.plan
        slots = len(self.estate.slots)
        if plan.number > slots:
            previous = self.windows[plan.number - slots - 1]
            while not previous.done.wait(0.5):
                if self.stop_event.is_set():
                    return
        if not self.clock.wait_until(run.start - timeline.PREPARE_LEAD, self.stop_event):
            return
        slot = self.estate.slots[plan.slot - 1]
        state = self.simulator.state
        for vm_id, power in plan.power.items():
            state.set_power_state(vm_id, PowerState(power))
        state.add_run(run.correlation_id, slot.machine_ids)
        run.prepared_at = self.clock.now()
        run.storage_before = self._proxy_faults()
        crashes_before = len(self.crash_times)
        self._schedule_events(run)
        self.say(
            f"window {plan.number}: run {run.stamp} slot {plan.slot}, disorder {plan.describe_disorder()}, "
            f"start {run.start:%H:%M}"
        )

        if "d" in plan.disorder:
            self._replay_pre_after_post(run)
        settled = self._wait_settled(run, run.start + timeline.CHECK_DEADLINE)
        if "g" in plan.disorder and not self.stop_event.is_set():
            replayed = self.storage.replay_poison(run.run_key)
            run.disorder_events.append(f"g: {len(replayed)} poison message(s) replayed at {self.clock.now():%H:%M}")
            if replayed:
                self.say(f"window {plan.number}: {len(replayed)} poison message(s) replayed")
                settled = self._wait_settled(run, run.start + timeline.REPLAY_DEADLINE, minimum=self.clock.now())
        if self.stop_event.is_set():
            return
        run.settled = "settled" if settled else "deadline"
        self._check(run)
        run.storage_faults = self._proxy_faults() - run.storage_before
        run.arm_faults = self.simulator_log.arm_faults(run.prepared_at, run.checked_at)
        run.crashes = len(self.crash_times) - crashes_before
        failed = [name for name, result in run.results.items() if not result.ok]
        self.say(
            f"window {plan.number}: checked ({run.settled}): "
            + (f"violations of {', '.join(failed)}" if failed else "all invariants hold")
        )

    def _event(self, run: WindowRun, kind: str, *, status: str = "Succeeded") -> dict[str, Any]:
        from prepost.local.events import build_event

        return build_event(
            kind,
            correlation_id=run.correlation_id,
            subscription_ids=self.estate.subscription_ids,
            now=self.clock.now(),
            end=run.end,
            status=status,
        )

    def _send(self, run: WindowRun, kind: str, due: datetime, label: str) -> Delivery:
        # Built when due: eventTime is then the time of sending, as Update Manager's would be.
        from shared.models.events import format_time

        event = self._event(run, kind)
        event["eventTime"] = format_time(due)
        delivery = self.sender.send_at(due, event, phase=kind, label=f"w{run.plan.number}-{label}")
        run.deliveries.append(delivery)
        return delivery

    def _schedule_events(self, run: WindowRun) -> None:
        plan = run.plan
        pre_at = run.start - timeline.PRE_LEAD
        if plan.late_by is not None:
            pre_at = run.start + plan.late_by
            run.disorder_events.append(f"f: pre-event first delivered at {pre_at:%H:%M} (cut-off {run.cutoff:%H:%M})")
        post_at = None if "e" in plan.disorder else run.end
        if "b" in plan.disorder:
            first, second = ("post", "pre") if plan.post_first else ("pre", "post")
            self._send(run, first, pre_at, first)
            self._send(run, second, pre_at + timedelta(seconds=1), second)
            run.disorder_events.append(f"b: {first} then {second} at {pre_at:%H:%M}")
            post_at = None
        else:
            self._send(run, "pre", pre_at, "pre")
        if post_at is not None:
            self._send(run, "post", post_at, "post")
        if "e" in plan.disorder:
            run.disorder_events.append("e: no post-event")
        if "c" in plan.disorder:
            self._send(run, "pre", pre_at + timeline.DUPLICATE_PRE_AFTER, "pre-again")
            first_post = pre_at if "b" in plan.disorder else post_at
            if first_post is not None:
                self._send(run, "post", first_post + timeline.DUPLICATE_POST_AFTER, "post-again")
            run.disorder_events.append("c: duplicates of the pre-event" + (" and post-event" if first_post else ""))

    def _track(self, run: WindowRun) -> list:
        """The run's tasks now; remembers when each was first seen final (its entity's Timestamp then).

        A task entity can be written again after it became final (a duplicate delivery marking
        its data); I1 and I2 judge when the final status was recorded, not the last write.
        """
        tasks = self.storage.tasks(run.run_key)
        for task in tasks:
            key = task_key(task)
            if task.status in ("succeeded", "skipped", "failed") and key not in run.first_final:
                run.first_final[key] = task.recorded_at
        return tasks

    def _replay_pre_after_post(self, run: WindowRun) -> None:
        deadline = run.start + timeline.CHECK_DEADLINE - timedelta(minutes=10)
        while not self.stop_event.is_set() and self.clock.now() < deadline:
            self._track(run)
            post = self.storage.phases(run.run_key).get("post")
            if post is not None and post.status in ("completed", "completed-with-failures", "failed"):
                break
            self.stop_event.wait(1.0)
        else:
            if self.stop_event.is_set():
                return
        self._send(run, "pre", self.clock.now(), "pre-replayed")
        run.disorder_events.append(f"d: pre-event replayed at {self.clock.now():%H:%M}")

    def _wait_settled(self, run: WindowRun, deadline: datetime, *, minimum: datetime | None = None) -> bool:
        not_before = max(run.end + SETTLED_AFTER_END, minimum or run.end)
        if minimum is not None:
            not_before = max(not_before, minimum + timedelta(minutes=3))
        while not self.stop_event.is_set():
            now = self.clock.now()
            tasks = self._track(run)
            if now >= not_before and self._settled(run, tasks):
                return True
            if now >= deadline:
                return False
            self.stop_event.wait(1.0)
        return False

    def _settled(self, run: WindowRun, tasks: list) -> bool:
        if not all(delivery.done.is_set() for delivery in run.deliveries):
            return False
        phases = self.storage.phases(run.run_key)
        final = ("completed", "completed-with-failures", "failed")
        if set(phases) != {"pre", "post"} or any(p.status not in final for p in phases.values()):
            return False
        if any(task.status not in ("succeeded", "skipped", "failed") for task in tasks):
            return False
        return not any(fields.get("run_key") == run.run_key for _, fields, _ in self.visible_work)

    def _check(self, run: WindowRun) -> None:
        server = self.simulator
        vm_disks = {}
        slot = self.estate.slots[run.plan.slot - 1]
        for vm_id in slot.vm_ids:
            vm = self.estate.estate.vm(vm_id)
            vm_disks[vm_id.lower()] = [disk.id.lower() for disk in vm.disks]
        deliveries = [
            DeliveryObs(delivery.phase, attempt.time, attempt.status)
            for delivery in run.deliveries
            for attempt in delivery.attempts
        ]
        facts = WindowFacts(
            number=run.plan.number,
            run_key=run.run_key,
            correlation_id=run.correlation_id,
            start=run.start,
            end=run.end,
            cutoff=run.cutoff,
            deadline=run.deadline,
            grace=timeline.GRACE,
            band_before=timedelta(minutes=1),
            band_after=self.band_after(),
            prepared_at=run.prepared_at or run.start - timeline.PREPARE_LEAD,
            vm_disks=vm_disks,
            power_before={vm_id.lower(): power for vm_id, power in run.plan.power.items()},
            schedule_stamp=run.stamp,
            deliveries=deliveries,
        )
        self.simulator_log.sample()
        leftovers = [
            MessageObs(queue, description)
            for queue, fields, description in self.storage.visible_work()
            if fields.get("run_key") == run.run_key
        ]
        now = self.clock.now()
        observation = build_observation(
            facts,
            storage=self.storage,
            simulator_log=self.simulator_log,
            server=server,
            leftovers=leftovers,
            poison=self.storage.poison(),
            recorded=self.storage.recorded_deliveries(),
            now=now,
        )
        observation.tasks = [
            dataclasses.replace(task, recorded_at=run.first_final.get(task_key(task), task.recorded_at))
            for task in observation.tasks
        ]
        run.checked_at = now
        run.results = check_all(observation)
        run.observation = observation

    def band_after(self) -> timedelta:
        """The tolerance after the deadline: one virtual minute, plus what compression adds.

        A queue delays in whole real seconds, so the app's deadline check can come up to one
        real second (``scale`` virtual seconds) late, plus one polling interval.
        """
        from prepost.chaos.instance import DEFAULT_POLL_INTERVAL

        poll = self.options.poll_interval or DEFAULT_POLL_INTERVAL
        return timedelta(minutes=1) + self.clock.virtual_delta(1.0 + poll)

    # -- the report -----------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        storage_total = self.final_storage_faults
        arm_total = Counter()
        if self.simulator_log is not None:
            arm_total = self.simulator_log.arm_faults(self.clock.origin, self.clock.now() + timedelta(days=1))
        crashes = len(self.crash_times)
        by_invariant = {name: 0 for name in INVARIANTS}
        for run in self.windows:
            for name, _ in run.violations:
                by_invariant[name] += 1
        faults = sum(storage_total.values()) + sum(arm_total.values()) + crashes
        return {
            "seed": self.options.seed,
            "scale": self.options.scale,
            "windows": len(self.windows),
            "instances": self.options.instances,
            "storageFaultPlan": self.options.storage_faults,
            "armFaultPlan": self.options.arm_faults,
            "crashEvery": self.options.crash_every,
            "durationSeconds": round(time.monotonic() - self.started, 1),
            "plan": self.plan.describe() if self.plan else "",
            "error": self.error,
            "logs": str(self.log_dir),
            "totals": {
                "faults": faults,
                "storageFaults": dict(storage_total),
                "armFaults": dict(arm_total),
                "crashes": crashes,
                "restarts": self.restarts,
                "disorderEvents": sum(len(run.disorder_events) for run in self.windows),
                "violations": sum(by_invariant.values()),
                "violationsByInvariant": by_invariant,
                "windowsChecked": sum(1 for run in self.windows if run.results),
                "windowsSettled": sum(1 for run in self.windows if run.settled == "settled"),
            },
            "windowReports": [run.to_json() for run in self.windows],
        }


def _validate_faults(options: DrillOptions) -> None:
    from prepost.demo import parse_faults

    try:
        parse_faults(options.arm_faults)
    except ValueError as error:
        raise DrillError(f"--arm-faults: {error}") from None
    from prepost.chaos.proxy_faults import FaultPlan

    try:
        FaultPlan.parse(options.storage_faults)
    except ValueError as error:
        raise DrillError(f"--storage-faults: {error}") from None


def run_chaos(options: DrillOptions, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the drill, print the report, write ``--json``; the exit status (0: no violations).

    SIGTERM is handled like Ctrl-C, so everything the drill started is stopped either way.
    """
    from prepost.chaos.report import render

    drill = Drill(options, err=err)
    failed = True
    previous = _terminate_as_interrupt()
    try:
        try:
            report = drill.run()
        except KeyboardInterrupt:
            raise
        except Exception:
            traceback.print_exc(file=err)
            report = drill.report()
        print(render(report), file=out)
        if options.json_path:
            Path(options.json_path).write_text(json.dumps(report, indent=2))
        failed = report["totals"]["violations"] > 0 or bool(report["error"]) or any(run.error for run in drill.windows)
        return 1 if failed else 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if failed or options.keep_logs:
            print(f"chaos: logs in {drill.log_dir}", file=err)
        else:
            shutil.rmtree(drill.log_dir, ignore_errors=True)


def _terminate_as_interrupt():
    """Raise KeyboardInterrupt on SIGTERM (main thread only); returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
