"""Stop child processes: by process group or by PID, SIGTERM first, SIGKILL after a timeout, always reaped.

Shared by :mod:`prepost.local.azurite`, :mod:`prepost.chaos.proxy_process` and :mod:`prepost.chaos.instances`,
which start their children in a session (process group) of their own so that Ctrl-C in the terminal does not
reach them, and stop them with these functions instead; an :class:`ExitRegistry` stops whatever is still
running when the interpreter exits.

With ``group=True`` (POSIX) the signals go to the child's process group, whose id is the child's PID. The child
is only reaped once the group is done with, and it stays a zombie until then, so its PID (the group id) cannot
have been reused by an unrelated process while it is being signalled. On Windows, and with ``group=False``, the
child alone is signalled, through :meth:`subprocess.Popen.terminate` and :meth:`~subprocess.Popen.kill`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["ExitRegistry", "kill_process", "signal_group", "stop_process", "stop_processes"]

_EXIT_POLL_INTERVAL = 0.02


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to process group ``pgid``; nothing happens if the group is gone.

    PermissionError is ignored too: some systems raise it for a group left with nothing but zombies.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_process(proc: subprocess.Popen[Any], *, timeout: float, group: bool = True) -> None:
    """Stop ``proc``: SIGTERM, SIGKILL if it has not exited within ``timeout`` seconds, then reap it.

    With ``group`` (POSIX only), both signals go to its process group, and once the child has exited a last
    SIGKILL clears out anything else left in the group. Does nothing to a process already reaped, so it is safe
    to call more than once.
    """
    stop_processes([proc], timeout=timeout, group=group)


def stop_processes(procs: Iterable[subprocess.Popen[Any]], *, timeout: float, group: bool = True) -> None:
    """:func:`stop_process` for several processes at once, all sent SIGTERM before any is waited for.

    ``timeout`` is shared: whichever has not exited ``timeout`` seconds after the SIGTERMs gets SIGKILL.
    """
    by_group = group and os.name != "nt"
    # ``returncode``, not ``poll()``: polling would reap an exited group leader, and its PID could then be
    # reused before the group is signalled.
    running = [proc for proc in procs if proc.returncode is None]
    for proc in running:
        if by_group:
            signal_group(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in running:
        remaining = max(0.0, deadline - time.monotonic())
        if by_group:
            if not _wait_for_exit(proc, remaining):
                signal_group(proc.pid, signal.SIGKILL)
                _wait_for_exit(proc, None)
            # The leader is a zombie until reaped, so its PID (= the group id) cannot have been reused:
            # clear out anything else left in the group, then reap.
            signal_group(proc.pid, signal.SIGKILL)
        else:
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()


def kill_process(proc: subprocess.Popen[Any], *, group: bool = True) -> None:
    """SIGKILL ``proc`` at once (its process group with ``group``, on POSIX), as a crash would, and reap it.

    Does nothing to a process already reaped.
    """
    if proc.returncode is not None:
        return
    if group and os.name != "nt":
        signal_group(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait()


def _wait_for_exit(proc: subprocess.Popen[Any], timeout: float | None) -> bool:
    """Wait until ``proc`` has exited, without reaping it; False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if proc.returncode is not None:
            return True
        if hasattr(os, "waitid"):
            try:
                info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return True
            if info is not None:
                return True
        elif proc.poll() is not None:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(_EXIT_POLL_INTERVAL)


class Stoppable(Protocol):
    def stop(self) -> None: ...


class ExitRegistry:
    """The owners of child processes to stop when the interpreter exits (including after Ctrl-C).

    An owner is added when it starts a child and discarded when it stops it; at exit, :meth:`stop_all` calls
    ``stop()`` on every owner still registered, ignoring its errors. A hard kill of the Python process (SIGKILL)
    cannot be intercepted: the children are then left running.
    """

    def __init__(self) -> None:
        self._owners: set[Stoppable] = set()
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def add(self, owner: Stoppable) -> None:
        with self._lock:
            self._owners.add(owner)

    def discard(self, owner: Stoppable) -> None:
        with self._lock:
            self._owners.discard(owner)

    def __contains__(self, owner: object) -> bool:
        with self._lock:
            return owner in self._owners

    def stop_all(self) -> None:
        """Stop every owner still registered."""
        with self._lock:
            leftovers = list(self._owners)
        for owner in leftovers:
            with contextlib.suppress(Exception):
                owner.stop()
