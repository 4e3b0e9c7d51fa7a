"""``prepost demo --scenario cancel|budget``: the readiness gate end to end, judged by the report."""

from __future__ import annotations

import functools
import io
import json

import pytest

from prepost.demo import DemoOptions, render_demo, run_demo
from prepost.local.stack import LocalStack
from tests.integration.harness import future_start

pytestmark = pytest.mark.integration

SMALL = dict(machines=12, subscriptions=2, arc_servers=2, json_output=True, timeout=90.0)


def demo(monkeypatch: pytest.MonkeyPatch, scenario: str) -> tuple[bool, dict]:
    monkeypatch.setattr("prepost.demo.LocalStack", functools.partial(LocalStack, run_start=future_start(40)))
    out, err = io.StringIO(), io.StringIO()
    ok = run_demo(DemoOptions(**SMALL, scenario=scenario), out=out, err=err)
    report = json.loads(out.getvalue())
    assert ok is report["ok"], err.getvalue()
    return ok, report


def test_the_cancel_scenario_ends_with_the_run_cancelled_and_the_reason_in_the_report(monkeypatch):
    ok, report = demo(monkeypatch, "cancel")

    assert ok, [c for c in report["checks"] if not c["ok"]]
    run = report["run"]
    assert run["cancellation"]["accepted"] is True and len(report["simulator"]["cancellations"]) == 1
    assert run["gate"]["verdict"] == "cancel" and run["gate"]["failingCount"] == 2
    text = render_demo(report)
    assert "Cancellation: cancel requested" in text and "Gate       cancel" in text
    assert report["simulator"]["alertRules"] == []  # the post phase undid the suppression


def test_the_budget_scenario_proceeds_and_records_the_machines_without_their_snapshot(monkeypatch):
    ok, report = demo(monkeypatch, "budget")

    assert ok, [c for c in report["checks"] if not c["ok"]]
    run = report["run"]
    assert run["cancellation"] is None and report["simulator"]["cancellations"] == []
    gate = run["gate"]
    assert gate["verdict"] == "proceed" and gate["failingCount"] == 3
    assert (gate["budget"], gate["machines"], gate["allowed"]) == ("25%", 14, 3)
