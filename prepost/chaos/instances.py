"""The function-app instances of a drill: child processes started, crashed and restarted by PID.

Each instance is ``python -m prepost.chaos.instance`` in its own session (process group), its
output in a log file of its own. :meth:`InstancePool.crash` sends SIGKILL to one instance's
process group, as a host crash would: no clean-up, messages it had received reappear after
their lease. :meth:`InstancePool.stop` stops every instance: SIGTERM to the group, SIGKILL after
a grace period, then reap. Instances still running when the interpreter exits are stopped by an
``atexit`` hook.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prepost.chaos.timescale import ScaledClock
from prepost.local.processes import ExitRegistry, kill_process, stop_processes

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0
SOURCE_ROOT = Path(__file__).resolve().parents[2]

#: Every pool not yet stopped when the interpreter exits is stopped then.
_pools = ExitRegistry()


class InstanceStartError(RuntimeError):
    """An instance exited or was not ready in time."""


@dataclass
class Instance:
    """One slot of the pool; each (re)start is a new generation with a new process and log."""

    index: int
    generation: int = 0
    process: subprocess.Popen[bytes] | None = None
    url: str | None = None
    log_path: Path | None = None
    ready_file: Path | None = None
    started: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"instance-{self.index}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and self.url is not None


@dataclass(frozen=True)
class CrashRecord:
    real_time: float
    """``time.time()`` when the instance was killed."""
    instance: str
    pid: int


class InstancePool:
    """``count`` instances of the app sharing one settings file and one scaled clock."""

    def __init__(
        self,
        count: int,
        *,
        settings_file: Path,
        clock: ScaledClock,
        log_dir: Path,
        poll_interval: float | None = None,
        python: str | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a drill needs at least one instance")
        self.settings_file = settings_file
        self.clock = clock
        self.log_dir = log_dir
        self.poll_interval = poll_interval
        self.python = python or sys.executable
        self.instances = [Instance(index) for index in range(1, count + 1)]
        self.crashes: list[CrashRecord] = []
        self._lock = threading.RLock()
        _pools.add(self)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every instance and wait until all are ready."""
        for instance in self.instances:
            self._launch(instance)
        for instance in self.instances:
            self._wait_ready(instance)

    def restart(self, instance: Instance) -> None:
        """Start a new generation of a (dead) instance and wait until it is ready."""
        with self._lock:
            if instance.alive:
                return
            self._reap(instance)
            self._launch(instance)
        self._wait_ready(instance)

    def crash(self, rng: random.Random) -> Instance | None:
        """SIGKILL one live instance at random, never the last one alive; None if none may die."""
        with self._lock:
            live = [instance for instance in self.instances if instance.alive]
            if len(live) < 2 and len(self.instances) > 1:
                return None
            if not live:
                return None
            victim = rng.choice(live)
            assert victim.process is not None
            kill_process(victim.process)
            self.crashes.append(CrashRecord(time.time(), victim.name, victim.process.pid))
            victim.url = None
            return victim

    def stop(self) -> None:
        """Stop every instance (SIGTERM to its group, SIGKILL after a grace period) and reap it."""
        with self._lock:
            stop_processes(
                [instance.process for instance in self.instances if instance.process is not None],
                timeout=STOP_TIMEOUT,
            )
            for instance in self.instances:
                if instance.process is not None:
                    instance.url = None
        _pools.discard(self)

    # -- for the drill --------------------------------------------------------------------------

    def live_urls(self) -> list[str]:
        with self._lock:
            return [instance.url for instance in self.instances if instance.alive and instance.url]

    def dead(self) -> list[Instance]:
        with self._lock:
            return [instance for instance in self.instances if not instance.alive]

    @property
    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("instance-*.log"))

    # -- internals ------------------------------------------------------------------------------

    def _launch(self, instance: Instance) -> None:
        instance.generation += 1
        stem = f"{instance.name}-gen{instance.generation}"
        instance.log_path = self.log_dir / f"{stem}.log"
        instance.ready_file = self.log_dir / f"{stem}.ready"
        instance.url = None
        args = [
            self.python,
            "-m",
            "prepost.chaos.instance",
            "--settings",
            str(self.settings_file),
            *self.clock.to_args(),
            "--ready-file",
            str(instance.ready_file),
            "--name",
            f"{instance.name}/{instance.generation}",
        ]
        if self.poll_interval is not None:
            args += ["--poll-interval", str(self.poll_interval)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")]))
        with open(instance.log_path, "wb") as log:
            instance.process = subprocess.Popen(
                args,
                cwd=SOURCE_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        instance.started.append(time.time())

    def _wait_ready(self, instance: Instance) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        waiter = threading.Event()
        assert instance.process is not None and instance.ready_file is not None
        while True:
            if instance.ready_file.is_file():
                instance.url = json.loads(instance.ready_file.read_text())["url"]
                return
            code = instance.process.poll()
            if code is not None:
                raise InstanceStartError(f"{instance.name} exited with code {code}; see {instance.log_path}")
            if time.monotonic() >= deadline:
                raise InstanceStartError(f"{instance.name} not ready within {STARTUP_TIMEOUT:g} s")
            waiter.wait(0.05)

    def _reap(self, instance: Instance) -> None:
        if instance.process is not None:
            kill_process(instance.process)
