"""Starting and stopping: the Python API and ``python -m prepost.simulator``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from urllib.request import urlopen

import pytest

from prepost.simulator import Estate, SimulatorServer

ROOT = Path(__file__).resolve().parents[2]


def test_port_zero_picks_a_free_port_and_stop_is_idempotent() -> None:
    first = SimulatorServer(Estate.generate(machines=1, arc_servers=0)).start()
    second = SimulatorServer(Estate.generate(machines=1, arc_servers=0)).start()
    try:
        assert first.url != second.url
        assert first.url.startswith("http://127.0.0.1:")
    finally:
        first.stop()
        second.stop()
        second.stop()
    with pytest.raises(RuntimeError):
        _ = first.url


def test_one_estate_seeds_independent_servers() -> None:
    estate = Estate.generate(machines=2, arc_servers=0)
    with SimulatorServer(estate) as one, SimulatorServer(estate) as two:
        one.state.add_run(estate.run.correlation_id[:-1] + "1", [])

        assert len(one.state.runs_list()) == 2
        assert len(two.state.runs_list()) == 1
    assert len(estate.runs) == 1


def test_command_line_prints_its_url_and_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prepost.simulator",
            "--machines",
            "5",
            "--subscriptions",
            "2",
            "--arc",
            "1",
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        with urlopen(f"{url}/_sim/state", timeout=5) as response:
            state = json.load(response)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)

    assert url.startswith("http://127.0.0.1:")
    assert len(state["vms"]) == 5
    assert len(state["subscriptions"]) == 2
    assert process.returncode == 0
