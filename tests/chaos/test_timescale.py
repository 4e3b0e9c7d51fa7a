"""The scaled clock and the transport that scales the app's delays."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from prepost.chaos.timescale import ScaledClock, ScaledDelayTransport
from shared.models.messages import PlanPhase
from shared.ports.transport import WorkTransport

ORIGIN = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


class FrozenClock(ScaledClock):
    """A scaled clock whose real time is set by the test."""

    def __init__(self, scale: float, real: datetime) -> None:
        super().__init__(scale, ORIGIN)
        self.real = real

    def real_now(self) -> datetime:
        return self.real


class RecordingTransport(WorkTransport):
    def __init__(self) -> None:
        self.sent: list[tuple[list, timedelta | None]] = []
        self.closed = False

    def send(self, messages, *, delay=None) -> None:
        self.sent.append((list(messages), delay))

    def close(self) -> None:
        self.closed = True


def test_virtual_time_equals_real_time_at_the_origin():
    assert FrozenClock(60, ORIGIN).now() == ORIGIN


def test_virtual_time_runs_scale_times_faster_from_the_origin():
    clock = FrozenClock(60, ORIGIN + timedelta(seconds=10))
    assert clock.now() == ORIGIN + timedelta(minutes=10)


def test_a_real_timestamp_maps_to_virtual_time_with_the_same_formula():
    clock = ScaledClock(60, ORIGIN)
    assert clock.to_virtual(ORIGIN + timedelta(seconds=30)) == ORIGIN + timedelta(minutes=30)
    assert clock.to_virtual(ORIGIN - timedelta(seconds=1)) == ORIGIN - timedelta(minutes=1)


def test_a_naive_real_timestamp_is_taken_as_utc():
    clock = ScaledClock(60, ORIGIN)
    assert clock.to_virtual(datetime(2026, 11, 30, 8, 0, 2)) == ORIGIN + timedelta(minutes=2)


def test_to_real_inverts_to_virtual():
    clock = ScaledClock(120, ORIGIN)
    moment = ORIGIN + timedelta(hours=3, seconds=7)
    # timedelta division rounds to microseconds: equal within a millisecond of virtual time
    assert abs(clock.to_virtual(clock.to_real(moment)) - moment) < timedelta(milliseconds=1)
    assert clock.to_real(moment) == ORIGIN + timedelta(seconds=(3 * 3600 + 7) / 120)


def test_virtual_durations_convert_to_real_seconds_and_back():
    clock = ScaledClock(60, ORIGIN)
    assert clock.real_seconds(timedelta(minutes=10)) == pytest.approx(10.0)
    assert clock.virtual_delta(1.5) == timedelta(seconds=90)


def test_the_clock_travels_to_another_process_as_arguments():
    clock = ScaledClock(60, ORIGIN)
    args = clock.to_args()
    copy = ScaledClock.from_text(args[args.index("--scale") + 1], args[args.index("--origin") + 1])
    assert copy.scale == clock.scale and copy.origin == clock.origin


def test_a_scale_must_be_positive():
    with pytest.raises(ValueError):
        ScaledClock(0)
    with pytest.raises(ValueError):
        ScaledDelayTransport(RecordingTransport(), -1)


def test_the_transport_divides_delays_by_the_scale():
    inner = RecordingTransport()
    transport = ScaledDelayTransport(inner, 60)
    message = PlanPhase(run_key="run-1")
    transport.send([message], delay=timedelta(minutes=28))
    assert inner.sent == [([message], timedelta(seconds=28))]


@pytest.mark.parametrize("delay", [None, timedelta(0)])
def test_no_delay_stays_no_delay(delay):
    inner = RecordingTransport()
    ScaledDelayTransport(inner, 60).send([PlanPhase(run_key="run-1")], delay=delay)
    assert inner.sent[0][1] == delay


def test_the_transport_closes_the_inner_one():
    inner = RecordingTransport()
    ScaledDelayTransport(inner, 60).close()
    assert inner.closed


def test_the_runner_constants_of_an_instance_are_scaled():
    from prepost.chaos.instance import DEFAULT_POLL_INTERVAL, host_queue_client_options, scaled_runner_options

    lease, queues = scaled_runner_options(60)
    assert lease == timedelta(seconds=10)  # the host's 10-minute lease
    assert queues.visibility_timeout == timedelta(seconds=1)  # 30 s scaled, in whole seconds
    assert queues.max_polling_interval == timedelta(seconds=DEFAULT_POLL_INTERVAL)
    assert queues.max_dequeue_count == 5 and queues.batch_size == 8  # host.json, unchanged
    lease, queues = scaled_runner_options(1)
    assert lease == timedelta(minutes=10) and queues.visibility_timeout == timedelta(seconds=30)
    assert queues.max_polling_interval == timedelta(seconds=2)
    retry = host_queue_client_options(60)["retry_policy"]
    assert retry.backoff < 1 and retry.total_retries == 3
