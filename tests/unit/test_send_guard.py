"""The fence's last look comes after any pacing wait, immediately before a request leaves.

Two levels: the ARM rate-control policy (the real azure-core policy, with a fake next policy
and a clock that only moves when slept on) orders pacing, slot, look and send; the actions
(start, snapshot, pre script) with the fake estate, whose changing calls look as the adapters
do, stop a request when a cancellation, a post phase or the start lands while it is paced.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from shared.adapters.arm.rate_control import ArmRatePolicy, Bucket, OperationClass, RateControl
from shared.clock import set_clock
from shared.models.messages import TaskMessage
from shared.models.run import Action, Phase, PhaseRecord, PhaseStatus, TaskStatus
from shared.ports.send_guard import check_before_sending, guarded
from shared.usecases.fences import FenceClosed, fenced_sending, mark_post_began
from shared.usecases.machine_actions import MachinePorts, perform_machine_action
from shared.usecases.task_runner import FollowUp
from tests.fakes_azure import FakeEstate

SUB = "00000000-0000-0000-0000-000000000001"
VM = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"


# -- the policy: pace, take a slot, look, send ----------------------------------------------------


class Events:
    """What happened, in order; the clock moves only when slept on."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.now = 1000.0
        self.refuse = False

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.log.append("pace")
        self.now += seconds

    def check(self) -> None:
        self.log.append("look")
        if self.refuse:
            raise RuntimeError("fence closed")


class Wire:
    """The rest of the pipeline: what went out."""

    def __init__(self, events: Events, rate: RateControl) -> None:
        self.events = events
        self.rate = rate
        self.slots_free_while_sending: list[int] = []

    def send(self, request):
        self.events.log.append(f"send {request.http_request.method}")
        self.slots_free_while_sending.append(self.rate._slots[SUB]._value)
        return SimpleNamespace(http_response=SimpleNamespace(status_code=200, headers={}))


def policy(events: Events, *, tokens: int = 10) -> tuple[ArmRatePolicy, Wire]:
    rate = RateControl(
        buckets={kind: Bucket(tokens, 1.0) for kind in OperationClass},
        reserve=0,
        max_in_flight=2,
        clock=events.clock,
        sleep=events.sleep,
        spread=lambda: 0.0,
    )
    arm = ArmRatePolicy(rate)
    wire = Wire(events, rate)
    arm.next = wire
    return arm, wire


def request(method: str, url: str = VM):
    return SimpleNamespace(http_request=SimpleNamespace(method=method, url=f"https://arm{url}?api-version=1"))


def test_a_paced_write_is_looked_at_after_its_wait_and_while_it_holds_its_slot():
    events = Events()
    arm, wire = policy(events, tokens=1)
    with guarded(events.check):
        arm.send(request("PUT"))  # spends the last token
        arm.send(request("PUT"))  # waits a second for the refill

    assert events.log == ["look", "send PUT", "pace", "look", "send PUT"]
    assert wire.slots_free_while_sending == [1, 1]  # one of two slots held by the request


def test_a_write_the_look_refuses_is_not_sent_and_frees_its_slot():
    events = Events()
    events.refuse = True
    arm, wire = policy(events)

    with guarded(events.check), pytest.raises(RuntimeError, match="fence closed"):
        arm.send(request("POST", VM + "/start"))

    assert events.log == ["look"]
    assert arm.control._slots[SUB]._value == 2


def test_each_retry_of_a_write_is_looked_at_again():
    """azure-core's retry policy sends again through this (per-retry) policy."""
    events = Events()
    arm, _ = policy(events)
    with guarded(events.check):
        arm.send(request("PUT"))
        events.refuse = True  # a cancellation landed during the backoff
        with pytest.raises(RuntimeError):
            arm.send(request("PUT"))

    assert events.log == ["look", "send PUT", "look"]


def test_reads_are_not_looked_at_and_writes_outside_any_budget_are():
    events = Events()
    arm, _ = policy(events)
    with guarded(events.check):
        arm.send(request("GET"))
        arm.send(request("POST", "/providers/Microsoft.Something/operations"))

    assert events.log == ["send GET", "look", "send POST"]


def test_outside_a_guarded_block_nothing_is_looked_at_and_guards_do_not_leak_between_threads():
    events = Events()
    arm, _ = policy(events)
    elsewhere: list[str] = []
    with guarded(events.check):
        thread = threading.Thread(target=lambda: (check_before_sending(), elsewhere.append("sent")))
        thread.start()
        thread.join()
    arm.send(request("PUT"))

    assert elsewhere == ["sent"] and events.log == ["send PUT"]


# -- the fence as the look --------------------------------------------------------------------------


class MovableClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def cancel(estate: FakeEstate) -> None:
    run = estate.records.get_run(estate.key)
    run.cancel_requested_at, run.cancel_accepted = estate.now, True
    estate.records.update_run(run)


def begin_post(estate: FakeEstate) -> None:
    """As the intake and the fallback do: the run is stamped, then the post phase recorded."""
    mark_post_began(estate.records.get_run(estate.key), estate.records, estate.now)
    estate.records.create_phase(
        PhaseRecord(estate.key, Phase.POST, PhaseStatus.RECEIVED, "post-event", received_at=estate.now)
    )


def test_the_fence_is_asked_at_each_look_and_says_whether_a_request_went_out_before():
    estate = FakeEstate()
    estate.add_vm("vm-web-01")
    estate.planned_pre()
    run = estate.records.get_run(estate.key)

    with pytest.raises(FenceClosed) as closed, fenced_sending(run, estate.records, estate.now):
        check_before_sending()  # the first request goes out
        cancel(estate)
        check_before_sending()  # its retry, or the next disk's PUT

    assert closed.value.after_sending and not closed.value.fence.missed


def test_the_look_counts_the_time_the_request_waited():
    estate = FakeEstate()
    estate.add_vm("vm-web-01")
    estate.planned_pre()
    run = estate.records.get_run(estate.key)
    clock = MovableClock(estate.now)

    with pytest.raises(FenceClosed) as closed, fenced_sending(run, estate.records, estate.now, clock=clock.now):
        check_before_sending()
        clock.moment = run.start  # the delivery's ``now`` is older than the request by then
        check_before_sending()

    assert closed.value.fence.missed and "started" in closed.value.fence.reason


# -- the actions -----------------------------------------------------------------------------------


def planned(**vm) -> tuple[FakeEstate, str]:
    estate = FakeEstate()
    estate.compute.looks_to_finish = 1
    machine = estate.add_vm("vm-web-01", **vm)
    estate.planned_pre()
    return estate, machine


def act(estate: FakeEstate, action: Action, target: str, *, options=None):
    message = estate.as_planned(TaskMessage(run_key=estate.key, action=action, target=target), options=options)
    ports = MachinePorts(
        records=estate.records,
        compute=estate.compute,
        arc=estate.arc,
        allowed_subscriptions=estate.allowed_subscriptions,
    )
    return perform_machine_action(message, ports, now=estate.now)


@pytest.mark.parametrize(("lands", "status"), [(cancel, TaskStatus.SKIPPED), (begin_post, TaskStatus.SKIPPED)])
def test_a_start_paced_while_the_run_is_cancelled_or_its_post_phase_begins_is_not_sent(lands, status):
    estate, vm = planned()
    estate.compute.before_sending["begin_start_vm"] = lambda *_: lands(estate)

    result = act(estate, Action.START_VM, vm)

    assert result.status is status
    assert estate.compute.calls_to("begin_start_vm") == []
    assert estate.task(Phase.PRE, Action.START_VM, vm).data["start_requested"] is False


def test_a_start_paced_past_the_run_s_start_is_not_sent_and_fails():
    estate, vm = planned()
    clock = MovableClock(estate.now)
    set_clock(clock)
    try:
        estate.compute.before_sending["begin_start_vm"] = lambda *_: setattr(
            clock, "moment", estate.records.get_run(estate.key).start + timedelta(seconds=1)
        )
        result = act(estate, Action.START_VM, vm)
    finally:
        set_clock(None)

    assert result.status is TaskStatus.FAILED and "the run started" in result.detail
    assert estate.compute.calls_to("begin_start_vm") == []


def test_a_second_disk_s_snapshot_paced_while_the_run_is_cancelled_is_not_sent():
    estate, vm = planned(data_disks=2)
    puts: list[str] = []

    def paced(snapshot_id, *_):
        puts.append(snapshot_id)
        if len(puts) == 2:
            cancel(estate)

    estate.compute.before_sending["begin_create_incremental_snapshot"] = paced

    result = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"})

    sent = [call[0] for call in estate.compute.calls_to("begin_create_incremental_snapshot")]
    assert sent == puts[:1]
    assert result.status is TaskStatus.SKIPPED and "cancelled" in result.detail
    assert result.data["snapshots"] == sent  # the one that went out stays this task's


def test_without_a_cancellation_every_snapshot_is_sent_and_the_fence_is_read_once_per_put():
    estate, vm = planned(data_disks=1)
    reads = {"get_run": 0, "get_phase": 0}
    for name in reads:
        original = getattr(estate.records, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            reads[_name] += 1
            return _original(*args, **kwargs)

        setattr(estate.records, name, counted)

    result = act(estate, Action.SNAPSHOT_DISKS, vm, options={"disks": "all"})

    assert isinstance(result, FollowUp)
    assert len(estate.compute.calls_to("begin_create_incremental_snapshot")) == 2
    # The delivery's own read of the run, then the run (stamped when the post phase begins) before each PUT.
    assert reads == {"get_run": 1 + 2, "get_phase": 0}


def test_records_that_cannot_be_read_at_the_last_look_stop_the_request_as_a_transient_error():
    from azure.core.exceptions import ServiceRequestError

    from shared.errors import TransientError

    estate, vm = planned()

    def unreadable(*_):
        estate.records.get_run = lambda *a, **k: (_ for _ in ()).throw(ServiceRequestError("connection reset"))

    estate.compute.before_sending["begin_start_vm"] = unreadable

    with pytest.raises(TransientError, match="could not be read right before the request"):
        act(estate, Action.START_VM, vm)

    assert estate.compute.calls_to("begin_start_vm") == []


def test_the_start_passing_while_the_last_look_reads_the_records_still_stops_the_request():
    estate, vm = planned()
    run = estate.records.get_run(estate.key)
    clock = MovableClock(estate.now)
    get_run = estate.records.get_run

    def slow_read(*args, **kwargs):
        clock.moment = run.start  # a storage timeout and its retry
        return get_run(*args, **kwargs)

    estate.records.get_run = slow_read

    with pytest.raises(FenceClosed) as closed, fenced_sending(run, estate.records, estate.now, clock=clock.now):
        check_before_sending()

    assert closed.value.fence.missed and "started" in closed.value.fence.reason
