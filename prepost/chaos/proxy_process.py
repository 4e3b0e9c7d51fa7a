"""Run the storage fault proxy as a process of its own, started and stopped by PID.

A separate process is what the chaos drill needs: the function-app instances under test and the proxy do not
share an interpreter, and killing an instance must not take the proxy with it::

    with ProxyProcess(azurite.endpoints.queue_url, "queue", faults="queue.send=lost:0.05", seed=7) as proxy:
        connection = proxied_connection_string(connection, queue_endpoint=proxy.url)
        ...
        print(proxy.stats()["faults_by_kind"])

It mirrors :class:`prepost.local.azurite.AzuriteProcess`: the child runs ``python -m prepost.chaos.proxy`` in
its own session (Ctrl-C in the terminal does not reach it; an ``atexit`` hook stops it instead), with its
output in a temporary log. :meth:`ProxyProcess.start` waits for the ready file the child writes once it
listens, and :meth:`ProxyProcess.stop` sends SIGTERM, then SIGKILL after ``stop_timeout`` seconds, and reaps it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from prepost.chaos.proxy_faults import FaultPlan, Service
from prepost.local.processes import ExitRegistry, stop_process

__all__ = ["ProxyError", "ProxyProcess", "ProxyStartError"]

_POLL_INTERVAL = 0.02
_CONTROL_TIMEOUT = 5.0
_LOG_TAIL_LINES = 40
#: The directory holding the ``prepost`` package, put on the child's PYTHONPATH.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


class ProxyError(RuntimeError):
    """A proxy is not running, or its control API refused a request."""


class ProxyStartError(ProxyError):
    """The proxy process could not be launched, exited early, or was not ready before the deadline."""


#: Every proxy process still running when the interpreter exits is stopped then.
_live = ExitRegistry()


class ProxyProcess:
    """A storage fault proxy in a child process.

    Args:
        upstream: the Azurite service, ``127.0.0.1:PORT`` or its URL.
        service: ``"queue"`` or ``"table"``.
        faults: the fault plan, as a :class:`FaultPlan` or in the text form; none by default.
        seed: random seed, overriding the plan's.
        port: port to listen on (0: a free one).
        python: the interpreter to run the child with (default: this one).
        startup_timeout: seconds :meth:`start` waits for the ready file.
        stop_timeout: seconds :meth:`stop` waits after SIGTERM before sending SIGKILL.
        extra_args: further command-line options, e.g. ``("--log-level", "INFO")``.
    """

    def __init__(
        self,
        upstream: str,
        service: Service,
        *,
        faults: FaultPlan | str | None = None,
        seed: int | None = None,
        port: int = 0,
        python: str | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.upstream = upstream
        self.service = service
        # Parsed here, so a bad plan fails in the caller with the parser's message, not in the child.
        self.plan = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults or "")
        self.seed = seed
        self.port = port
        self.python = python or sys.executable
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._workdir: Path | None = None
        self._log_tail = ""
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running proxy."""
        if self._url is None or not self.running:
            raise ProxyError("the proxy process is not running")
        return self._url

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ProxyError("the proxy process has not been started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once stopped (0 after a clean SIGTERM), else None."""
        return None if self._proc is None else self._proc.returncode

    @property
    def log_path(self) -> Path | None:
        """The child's stdout and stderr while it runs (removed by :meth:`stop`)."""
        return self._workdir / "proxy.log" if self._workdir is not None else None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the child's output (kept after :meth:`stop`)."""
        path = self.log_path
        if path is not None and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return self._log_tail

    def start(self) -> str:
        """Launch the proxy and wait until it listens; returns its URL.

        Raises:
            ProxyStartError: if it cannot be launched, exits early, or is not ready within ``startup_timeout``;
                the message ends with the tail of its output.
        """
        with self._lock:
            if self.running:
                raise ProxyError(f"the proxy process is already running (pid {self.pid})")
            try:
                self._launch()
                self._url = self._wait_until_ready(time.monotonic() + self.startup_timeout)
            except BaseException:
                self._terminate()
                raise
            return self._url

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after ``stop_timeout``, then reap. Safe to call twice or before start."""
        with self._lock:
            self._terminate()

    def __enter__(self) -> ProxyProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid} url={self._url}" if self.running and self._proc else "stopped"
        return f"<ProxyProcess {self.service} {state}>"

    # -- control API ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """``GET /_proxy/stats``: the counts of :meth:`StorageFaultProxy.stats`."""
        return self._control("GET", "/_proxy/stats")

    def reset_stats(self) -> dict[str, Any]:
        return self._control("POST", "/_proxy/stats/reset")

    def set_plan(self, plan: FaultPlan | str) -> FaultPlan:
        """Replace the running proxy's plan (text form or :class:`FaultPlan`); returns the plan it now uses."""
        parsed = plan if isinstance(plan, FaultPlan) else FaultPlan.parse(plan)
        answer = self._control("POST", "/_proxy/faults", parsed.to_json())
        answer.pop("text", None)
        self.plan = FaultPlan.from_json(answer)
        return self.plan

    def pause(self) -> None:
        self._control("POST", "/_proxy/pause")

    def resume(self) -> None:
        self._control("POST", "/_proxy/resume")

    def _control(self, method: str, path: str, data: Any = None) -> dict[str, Any]:
        address = urlsplit(self.url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=_CONTROL_TIMEOUT)
        try:
            body = None if data is None else json.dumps(data).encode()
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise ProxyError(f"{method} {path} on the proxy at {self._url} failed: {error}") from error
        finally:
            connection.close()
        if response.status != 200:
            detail = payload.decode(errors="replace")
            raise ProxyError(f"{method} {path} on the proxy answered {response.status}: {detail}")
        return json.loads(payload)

    # -- internals --------------------------------------------------------------------

    def _launch(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="prepost-proxy-"))
        args = [
            self.python, "-m", "prepost.chaos.proxy",
            "--upstream", self.upstream,
            "--service", self.service,
            "--port", str(self.port),
            "--faults", self.plan.to_text(),
            "--ready-file", str(self._workdir / "ready"),
            *(["--seed", str(self.seed)] if self.seed is not None else []),
            *self.extra_args,
        ]  # fmt: skip
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SOURCE_ROOT), env.get("PYTHONPATH")]))
        assert self.log_path is not None
        with open(self.log_path, "wb") as log:
            try:
                self._proc = subprocess.Popen(
                    args,
                    cwd=self._workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=os.name != "nt",
                )
            except OSError as error:
                raise ProxyStartError(f"cannot run {self.python} -m prepost.chaos.proxy: {error}") from error
        _live.add(self)

    def _wait_until_ready(self, deadline: float) -> str:
        assert self._proc is not None and self._workdir is not None
        ready = self._workdir / "ready"
        while True:
            if ready.is_file():  # written atomically by the child: complete when it exists
                return ready.read_text(encoding="utf-8").strip()
            code = self._proc.poll()
            if code is not None:
                raise ProxyStartError(
                    f"the proxy exited with code {code} before it was ready.\n"
                    f"--- last lines of its output ---\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise ProxyStartError(
                    f"the proxy was not ready within {self.startup_timeout:g} s.\n"
                    f"--- last lines of its output ---\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _terminate(self) -> None:
        """Stop the process by its PID, reap it, keep its last output and delete the temp dir."""
        if self._proc is not None:
            # By PID, not by group: the proxy is a single process with no children of its own, and its
            # session exists only to keep Ctrl-C in the terminal away from it.
            stop_process(self._proc, timeout=self.stop_timeout, group=False)
        _live.discard(self)
        if self._workdir is not None:
            self._log_tail = self.log_tail()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
