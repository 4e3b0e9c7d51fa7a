"""What the gate must always do, whatever the outcomes, their order and their duplicates.

Generated runs: 1 to 6 VMs, a budget, each VM's start, snapshot and preflight succeeding or
failing (a preflight failing with a blocking finding), outcomes delivered in any order, some
twice, and the deadline check at the end. Then:

- the cancel call is made at most once;
- the run is cancelled exactly when the machines that failed exceed the budget;
- a decision is recorded exactly when some machine failed; to proceed, it names them all; to
  cancel, it names more than the budget allows, and only machines that failed.
"""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.models.gate import ErrorBudget, GateDecision, GateVerdict
from shared.models.messages import CheckPreDeadline
from shared.models.run import Action, Phase, TaskStatus
from shared.usecases.supervision import check_pre_deadline
from tests.fakes_azure import FakeEstate

BLOCKING = {"blocking_findings": 1, "findings": [{"kind": "machine-unreadable", "severity": "blocking"}]}
machines = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.booleans()),  # start, snapshot, preflight fail?
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(
    plan=machines,
    budget=st.sampled_from(["0", "1", "2", "20%", "50%", "100%"]),
    seed=st.integers(0, 2**16),
)
def test_the_gate_cancels_exactly_when_the_budget_is_exceeded(plan, budget, seed):
    estate = FakeEstate(tags={"prepost-max-errors": budget})
    vms = [estate.add_vm(f"vm-{index}") for index in range(len(plan))]
    estate.planned_pre()
    outcomes = []
    expected_failing = set()
    for vm, (start_fails, snapshot_fails, blocked) in zip(vms, plan, strict=True):
        if start_fails or snapshot_fails or blocked:
            expected_failing.add(vm)
        outcomes.append((Action.START_VM, vm, TaskStatus.FAILED if start_fails else TaskStatus.SUCCEEDED, {}))
        outcomes.append((Action.SNAPSHOT_DISKS, vm, TaskStatus.FAILED if snapshot_fails else TaskStatus.SUCCEEDED, {}))
        outcomes.append(
            (Action.PREFLIGHT, vm, TaskStatus.FAILED if blocked else TaskStatus.SUCCEEDED, BLOCKING if blocked else {})
        )
    outcomes.append((Action.SUPPRESS_ALERTS, estate.subscriptions[0], TaskStatus.SUCCEEDED, {"rule_id": "/r"}))
    rng = random.Random(seed)
    deliveries = outcomes + rng.sample(outcomes, k=rng.randrange(len(outcomes)))  # some twice
    rng.shuffle(deliveries)

    for action, target, status, data in deliveries:
        estate.report(action, target, status, data=data, detail=f"{action.value} {status.value}")
    check_pre_deadline(
        CheckPreDeadline(run_key=estate.key),
        records=estate.records,
        cancellation=estate.cancellation,
        transport=estate.transport,
        now=estate.event.cancel_deadline(timedelta(minutes=2)),
    )

    allowed = ErrorBudget.parse(budget).allowed(len(vms))
    run = estate.records.get_run(estate.key)
    calls = estate.cancellation.calls_to("cancel")
    exceeded = len(expected_failing) > allowed
    assert len(calls) == (1 if exceeded else 0)
    assert run.cancel_accepted is exceeded
    if not expected_failing:
        assert run.gate is None
        return
    decision = GateDecision.from_dict(run.gate)
    named = {machine.machine for machine in decision.failing}
    if exceeded:
        assert decision.verdict is GateVerdict.CANCEL
        assert named <= expected_failing and len(named) > allowed
    else:
        assert decision.verdict is GateVerdict.PROCEED and named == expected_failing
    assert estate.phase(Phase.PRE).status.is_final
