"""A short chaos drill end to end, through the real entry point: three windows, every kind of fault.

This is the test that holds the pipeline to its invariants under faults: it asserts that the
drill ran as planned (three windows, all eight invariants evaluated, storage faults, crashes and
disorder injected) and that no invariant was violated.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prepost.chaos.invariants import INVARIANTS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEED = 6
"""Its plan gives every window disorder: d+e (no post-event, the pre-event replayed after the
fallback's post phase), b (the post-event right after the pre-event) and f (the pre-event only
two minutes after the start)."""
SCALE = 120
"""Twice the default compression: one real second is two virtual minutes. The app's own
deadlines are minutes apart, so the timeline stays honest; the drill takes about a minute."""
CRASH_EVERY = 15
DRILL_TIMEOUT = 600


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    work = tmp_path_factory.mktemp("chaos")
    report_file = work / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "prepost.cli",
            "chaos",
            "--windows",
            "3",
            "--seed",
            str(SEED),
            "--scale",
            str(SCALE),
            "--crash-every",
            str(CRASH_EVERY),
            "--json",
            str(report_file),
            "--keep-logs",
            str(work / "logs"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT,
    )
    assert report_file.is_file(), f"no report; stderr:\n{completed.stderr[-4000:]}"
    return completed, json.loads(report_file.read_text())


def test_the_drill_runs_three_windows_and_evaluates_every_invariant(drill):
    completed, report = drill
    assert report["error"] is None, completed.stderr[-4000:]
    assert report["windows"] == 3 and len(report["windowReports"]) == 3
    for window in report["windowReports"]:
        assert window["error"] is None
        assert sorted(window["invariants"]) == sorted(INVARIANTS)
        assert {result["status"] for result in window["invariants"].values()} <= {"ok", "FAIL", "n/a"}
    assert completed.stdout.splitlines()[-1] == (
        f"chaos: 3 windows, {report['totals']['faults']} faults injected, "
        f"{report['totals']['violations']} invariant violations"
    )


def test_the_drill_injected_storage_faults_crashes_and_disorder(drill):
    _, report = drill
    totals = report["totals"]
    assert sum(totals["storageFaults"].values()) > 0
    assert totals["crashes"] > 0
    assert totals["disorderEvents"] > 0
    assert any(window["disorder"] != ["a"] for window in report["windowReports"])
    assert (
        totals["faults"]
        == sum(totals["storageFaults"].values()) + sum(totals["armFaults"].values()) + totals["crashes"]
    )


def test_no_invariant_is_violated(drill):
    completed, report = drill
    violations = [
        f"window {window['window']} {name}: {message}"
        for window in report["windowReports"]
        for name, result in window["invariants"].items()
        for message in result["violations"]
    ]
    assert violations == [], "\n".join(violations)
    assert report["totals"]["violations"] == 0
    assert completed.returncode == 0
