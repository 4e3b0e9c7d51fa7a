"""ARM rate control through the real app: a window under small token buckets ends with no task
failed by throttling.

GIVEN the simulator's subscription buckets shrunk to a few tokens refilling a few per second (and
the app told the same sizes through ``PREPOST_ARM_BUCKETS``, as an operator would for a trial
subscription); WHEN a window with more work than the buckets hold runs, pre then post; THEN
every task ends succeeded or skipped, the app's rate control paced or put work off along the way,
and the machines end as they should.
"""

from __future__ import annotations

import pytest

from prepost.local.events import build_event
from prepost.simulator import Estate, PowerState, SimulatorConfig, ThrottleConfig
from prepost.simulator.throttling import BucketConfig
from shared.models.run import Phase, PhaseStatus, TaskStatus
from tests.integration.harness import future_start

pytestmark = pytest.mark.integration

BUCKETS = {"reads": (12, 6.0), "writes": (4, 2.0), "deletes": (4, 2.0)}


def test_a_window_under_small_buckets_ends_with_no_task_failed_by_throttling(start_app):
    estate = Estate.generate(
        machines=16,
        subscriptions=2,
        arc_servers=1,
        run_start=future_start(30),
        configuration_tags={"prepost-snapshot-disks": "all"},
    )
    throttling = ThrottleConfig(
        reads=BucketConfig(*BUCKETS["reads"]),
        writes=BucketConfig(*BUCKETS["writes"]),
        deletes=BucketConfig(*BUCKETS["deletes"]),
    )
    setting = ",".join(f"{name}={capacity}/{refill:g}" for name, (capacity, refill) in BUCKETS.items())
    app = start_app(
        estate,
        config=SimulatorConfig(throttling=throttling),
        extra_settings={"PREPOST_ARM_BUCKETS": setting, "PREPOST_OPERATION_CHECK_SECONDS": "1"},
    )
    deallocated = [vm for vm in estate.vms if vm.power_state is PowerState.DEALLOCATED]

    subscriptions = estate.subscription_ids
    assert app.deliver(build_event("pre", correlation_id=app.correlation_id, subscription_ids=subscriptions)).ok
    pre = app.wait_phase_final(Phase.PRE, timeout=180)
    assert app.deliver(build_event("post", correlation_id=app.correlation_id, subscription_ids=subscriptions)).ok
    post = app.wait_phase_final(Phase.POST, timeout=180)

    tasks = app.tasks()
    failed = [(t.action.value, t.target, t.detail) for t in tasks if t.status is TaskStatus.FAILED]
    assert failed == []
    assert all(t.status in (TaskStatus.SUCCEEDED, TaskStatus.SKIPPED) for t in tasks)
    assert (pre.status, post.status) == (PhaseStatus.COMPLETED, PhaseStatus.COMPLETED)
    assert app.sim.state.cancellations() == []
    for vm in estate.vms:
        assert app.sim.state.power_state(vm.id) is vm.power_state  # started ones deallocated again
    assert deallocated and all(app.sim.state.count("vm.start", vm.id) == 1 for vm in deallocated)
    # The work did not fit the buckets: the rate control had to slow it down.
    rate = app.runner.container.arm.rate
    assert rate.waited > 0 or rate.deferred > 0
