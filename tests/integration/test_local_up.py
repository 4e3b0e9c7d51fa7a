"""``prepost local up`` as a user runs it: a foreground process that Ctrl-C stops, cleanly.

The stack runs in a subprocess on random ports, with its state file in a directory of the
test's own (``PREPOST_STATE_DIR``), so the other CLI commands find it exactly as they would in
a second terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from prepost.cli import main
from prepost.local.host_config import REPO_ROOT
from prepost.local.runner import wait_for
from shared.adapters.storage_clients import StorageClients
from shared.adapters.table_records import TableRunRecords
from shared.models.ids import run_key
from shared.models.run import Phase, PhaseStatus
from shared.settings import StorageConnection

pytestmark = pytest.mark.integration

STARTUP_TIMEOUT = 60.0


class Output:
    """The lines a subprocess prints, collected by a thread so reading never blocks the test."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))

    def collected(self) -> list[str]:
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                return self.lines

    def find(self, pattern: str) -> re.Match | None:
        return next((m for m in (re.search(pattern, line) for line in self.collected()) if m), None)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_local_up_serves_the_pipeline_and_stops_everything_on_ctrl_c():
    state_dir = Path(os.environ["PREPOST_STATE_DIR"])  # the test's own, see conftest
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "prepost.cli", "local", "up", "--ports", "random", "--machines", "4", "--arc", "1"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process.stdout)
    azurite_pid = None
    try:
        webhook = wait_for(
            lambda: output.find(r"Event Grid webhook\s+(http://127\.0\.0\.1:\d+/\S+)") or process.poll() is not None,
            timeout=STARTUP_TIMEOUT,
            what="the webhook URL printed",
        )
        assert process.poll() is None, "\n".join(output.collected())
        webhook_url = webhook.group(1)
        azurite_pid = int(output.find(r"Azurite\s+\S+.*\(pid (\d+)\)").group(1))
        seeded_run = output.find(r"seeded run\s+(/subscriptions/\S+)").group(1)
        assert alive(azurite_pid)

        state = json.loads((state_dir / "local-stack.json").read_text())
        assert state["webhook_url"] == webhook_url.split("?")[0]
        assert state["pid"] == process.pid

        # `send-event pre` finds the stack through the state file, like a second terminal.
        assert main(["send-event", "pre", "--correlation-id", seeded_run]) == 0
        records = TableRunRecords(StorageClients(StorageConnection(connection_string=state["storage_connection"])))
        key = run_key(seeded_run)
        pre = wait_for(
            lambda: (p := records.get_phase(key, Phase.PRE)) and p.status.is_final and p,
            timeout=60,
            what="the pre phase finished in the local stack",
        )
        assert pre.status is PhaseStatus.COMPLETED
        assert pre.machines == 5
        assert records.get_run(key).correlation_id == seeded_run

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, "\n".join(output.collected())
        wait_for(lambda: "local stack stopped" in output.collected(), timeout=10, what="the goodbye line")
        assert not alive(azurite_pid), f"Azurite (pid {azurite_pid}) outlived prepost local up"
        assert not (state_dir / "local-stack.json").exists()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if azurite_pid is not None and alive(azurite_pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(azurite_pid, signal.SIGKILL)


def test_local_up_with_an_estate_keeps_an_exported_allow_list_and_accepts_the_sample_events():
    state_dir = Path(os.environ["PREPOST_STATE_DIR"])
    estate = REPO_ROOT / "docs" / "examples" / "estate.json"
    # Exported before `local up`: kept, and said to be (the configurations follow the estate).
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PREPOST_ALLOWED_SUBSCRIPTIONS": "*"}
    env.pop("PREPOST_ALLOWED_CONFIGURATIONS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "prepost.cli", "local", "up", "--ports", "random", "--estate", str(estate)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process.stdout)
    azurite_pid = None
    try:
        wait_for(
            lambda: output.find(r"PREPOST_ARM_AUTH=") or process.poll() is not None,
            timeout=STARTUP_TIMEOUT,
            what="the settings printed",
        )
        assert process.poll() is None, "\n".join(output.collected())
        azurite_pid = int(output.find(r"Azurite\s+\S+.*\(pid (\d+)\)").group(1))
        assert output.find(r"allowed subs\s+from the environment \(PREPOST_ALLOWED_SUBSCRIPTIONS\)")
        assert output.find(r"allowed configs\s+from the estate")
        assert output.find(r"^  PREPOST_ALLOWED_SUBSCRIPTIONS=\*$")
        assert output.find(r"^  PREPOST_ALLOWED_CONFIGURATIONS=/subscriptions/.*/mc-weekly-linux$")
        assert output.find(r"ARM simulator .*\(4 VMs, 1 Arc servers, 2 subscriptions\)")
        assert not output.find(r"not simulated")
        state = json.loads((state_dir / "local-stack.json").read_text())
        assert state["estate_file"] == str(estate)

        for sample in ("pre-eventgrid-pascalcase.json", "post-eventgrid.json"):
            assert main(["send-event", "--file", str(REPO_ROOT / "tests" / "fixtures" / "events" / sample)]) == 0
        records = TableRunRecords(StorageClients(StorageConnection(connection_string=state["storage_connection"])))
        outcomes = [d.outcome.value for d in reversed(records.list_deliveries(limit=10))]
        assert outcomes[0] == "accepted" and len(outcomes) == 2, outcomes

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, "\n".join(output.collected())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if azurite_pid is not None and alive(azurite_pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(azurite_pid, signal.SIGKILL)
