"""The readiness gate through the whole pipeline, against Azurite and the simulator.

6 VMs in 2 subscriptions and 2 Arc servers (8 machines); the run starts in 30 minutes, so a
cancellation is still possible. Snapshots fail where the simulator is told to refuse them.
"""

from __future__ import annotations

import pytest

from shared.models.gate import GateDecision, GateVerdict
from shared.models.run import Action, Phase, PhaseStatus, TaskStatus
from shared.usecases.run_report import run_report
from tests.integration.test_pipeline import pre_event, small_estate

pytestmark = pytest.mark.integration


def refuse_snapshots(app, count: int) -> list:
    """The first ``count`` running VMs get their OS disk snapshot refused (HTTP 403)."""
    victims = [vm for vm in app.estate.vms if vm.power_state.value == "running"][:count]
    for vm in victims:
        app.sim.fail_matching("snapshots.create", f"{vm.name}-osdisk", 403)
    return victims


def decided(app) -> GateDecision:
    run = app.wait(lambda: (r := app.records.get_run(app.run_key)).gate and r, "the gate's decision recorded")
    return GateDecision.from_dict(run.gate)


@pytest.mark.parametrize(
    ("budget", "failures", "verdict"),
    [
        ("1", 1, GateVerdict.PROCEED),
        ("1", 2, GateVerdict.CANCEL),
        ("25%", 2, GateVerdict.PROCEED),  # 25% of 8 machines: 2 may fail
        ("25%", 3, GateVerdict.CANCEL),
    ],
    ids=["count-under", "count-over", "percent-under", "percent-over"],
)
def test_failures_under_and_over_the_budget(start_app, budget, failures, verdict):
    app = start_app(small_estate(**{"prepost-max-errors": budget}))
    victims = refuse_snapshots(app, failures)

    assert app.deliver(pre_event(app)).status == 200
    pre = app.wait_phase_final(Phase.PRE)
    decision = decided(app)
    app.quiesce()

    assert pre.status is PhaseStatus.COMPLETED_WITH_FAILURES
    assert decision.verdict is verdict
    assert decision.machines == 8 and decision.failing_count == failures
    assert {m.machine.lower() for m in decision.failing} == {vm.id.lower() for vm in victims}
    assert all("snapshot-disks failed" in m.reasons[0] for m in decision.failing)
    cancellations = app.sim.state.cancellations()
    run = app.records.get_run(app.run_key)
    if verdict is GateVerdict.CANCEL:
        assert len(cancellations) == 1 and cancellations[0].count == 1
        assert run.cancel_accepted
    else:
        assert cancellations == [] and run.cancel_requested_at is None
    # What operators read: runs show --json is this report.
    report = run_report(app.run_key, app.records)
    assert report["gate"]["verdict"] == verdict.value and len(report["gate"]["failing"]) == failures


def test_a_blocking_finding_cancels_the_run(start_app):
    estate = small_estate()
    full = estate.vms[0]
    full.os_disk.existing_snapshots = 500  # Azure's limit: its pre-patch snapshot cannot be taken
    app = start_app(estate)

    assert app.deliver(pre_event(app)).status == 200
    decision = decided(app)
    app.wait(lambda: app.sim.state.cancellations(), "the cancel call")
    app.quiesce()

    assert decision.verdict is GateVerdict.CANCEL
    [failing] = decision.failing
    assert failing.machine.lower() == full.id.lower()
    assert any(reason.startswith("preflight: 1 blocking finding(s)") for reason in failing.reasons)
    preflight = next(
        t for t in app.tasks(Phase.PRE) if t.action is Action.PREFLIGHT and t.target.lower() == full.id.lower()
    )
    assert preflight.status is TaskStatus.FAILED and "500 incremental snapshots" in preflight.detail
    assert app.sim.state.cancellations()[0].count == 1


def test_a_cancel_call_failing_transiently_is_retried_before_the_cutoff(start_app):
    app = start_app(small_estate())
    refuse_snapshots(app, 1)
    # More 503s than the client's own quick retries: the failure reaches the use case, which
    # gives its claim back and raises, so the outcome message is delivered again.
    app.sim.fail_next("applyupdates.put", times=4, status=503)

    assert app.deliver(pre_event(app)).status == 200
    run = app.wait(lambda: (r := app.records.get_run(app.run_key)).cancel_requested_at and r, "cancel recorded")
    app.quiesce()

    assert run.cancel_accepted and "cancel requested" in run.cancel_result
    assert run.cancel_requested_at < run.cancellation_cutoff
    attempts = app.requests_of("applyupdates.put")
    assert len(attempts) >= 5 and attempts[-1].status == 200
    (cancellation,) = app.sim.state.cancellations()
    assert cancellation.count == 1
