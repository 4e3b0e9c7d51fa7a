"""``prepost demo``: a whole window, offline, with the report that decides its exit code.

Each demo starts its own Azurite, simulator and runner (that is what ``run_demo`` does). The
runs share one scheduled start, so that a normal run and an at-least-once drill can be
compared resource by resource: same estate, same run, so the same snapshot names.
"""

from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Iterator

import pytest

from prepost.demo import DemoOptions, run_demo
from prepost.local.stack import LocalStack
from tests.integration.harness import future_start

pytestmark = pytest.mark.integration

START = future_start(40)
SMALL = dict(machines=6, subscriptions=2, arc_servers=2, json_output=True, timeout=90.0)


def demo(monkeypatch: pytest.MonkeyPatch, **options) -> tuple[bool, dict]:
    monkeypatch.setattr("prepost.demo.LocalStack", functools.partial(LocalStack, run_start=START))
    out, err = io.StringIO(), io.StringIO()
    ok = run_demo(DemoOptions(**{**SMALL, **options}), out=out, err=err)
    report = json.loads(out.getvalue())
    assert ok is report["ok"], err.getvalue()
    return ok, report


def end_state(report: dict) -> dict:
    """What the simulated Azure holds at the end, without times."""
    sim = report["simulator"]
    return {
        "snapshots": sorted(
            (
                s["id"].lower(),
                s["sourceDiskId"].lower(),
                s["provisioningState"],
                json.dumps(s["tags"], sort_keys=True),
                s["putCount"],
            )
            for s in sim["snapshots"]
        ),
        "alertRules": sim["alertRules"],
        "cancellations": sim["cancellations"],
        "powerStatesBefore": sim["powerStatesBefore"],
        "powerStatesAfter": sim["powerStatesAfter"],
        "operationCounts": sim["operationCounts"],
    }


@pytest.fixture(scope="module")
def normal_run() -> Iterator[tuple[bool, dict]]:
    saved = dict(os.environ)  # the runner applies its settings to the process, as the host does
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            yield demo(monkeypatch)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_a_small_demo_ends_ok(normal_run):
    ok, report = normal_run
    failed = [check for check in report["checks"] if not check["ok"]]
    assert ok, failed
    assert [p["status"] for p in report["run"]["phases"]] == ["completed", "completed"]
    assert report["summary"]["pre"]["machines"] == 8
    assert report["summary"]["pre"]["byAction"]["snapshot-disks"] == {"succeeded": 6, "skipped": 2}
    assert report["summary"]["post"]["failures"] == []


def test_delivering_everything_twice_ends_in_the_same_state(normal_run, monkeypatch):
    _, normal = normal_run
    ok, twice = demo(monkeypatch, deliver_twice=True)

    assert ok, [check for check in twice["checks"] if not check["ok"]]
    assert end_state(twice) == end_state(normal)
    # The same tasks, with the same results, were recorded.
    tasks = {(t["phase"], t["action"], t["resourceId"].lower(), t["status"]) for t in twice["run"]["tasks"]}
    assert tasks == {(t["phase"], t["action"], t["resourceId"].lower(), t["status"]) for t in normal["run"]["tasks"]}


def test_with_throttling_and_errors_every_task_still_succeeds(normal_run, monkeypatch):
    ok, report = demo(monkeypatch, faults="429=0.1,500=0.05")

    assert ok, [check for check in report["checks"] if not check["ok"]]
    assert all(t["status"] in ("succeeded", "skipped") for t in report["run"]["tasks"])
    assert all(t["status"] == "succeeded" for t in report["run"]["tasks"] if t["action"] != "snapshot-disks")
    # Retried calls may have repeated a snapshot PUT (same name, same disk): never a second snapshot.
    assert [s[:2] for s in end_state(report)["snapshots"]] == [s[:2] for s in end_state(normal_run[1])["snapshots"]]
    assert end_state(report)["powerStatesAfter"] == end_state(normal_run[1])["powerStatesAfter"]
