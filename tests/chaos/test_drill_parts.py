"""The drill's plan, its Event Grid delivery and its report, without starting anything."""

from __future__ import annotations

import threading
from datetime import timedelta

from prepost.chaos.eventgrid import EVENT_TTL, EventGridSender
from prepost.chaos.plan import DISORDERS, POWER_MIX, build_estate, make_plan, slots_needed
from prepost.chaos.report import render, summary_line
from prepost.chaos.timescale import ScaledClock

FAST = 1e6
"""A scale at which the retry schedule's minutes pass in microseconds."""


def plan(seed: int = 3, windows: int = 20, crash_every: float = 45.0):
    estate = build_estate(slots_needed(), seed)
    return estate, make_plan(seed=seed, windows=windows, estate=estate, crash_every=crash_every, expected_seconds=480)


def test_the_same_seed_gives_the_same_plan_and_another_seed_another():
    assert plan(5)[1].describe() == plan(5)[1].describe()
    assert plan(5)[1].describe() != plan(6)[1].describe()


def test_windows_alive_at_the_same_time_use_disjoint_machines():
    estate, drawn = plan()
    slots = {slot.index: set(slot.machine_ids) for slot in estate.slots}
    for window in drawn.windows:
        for other in drawn.windows:
            if window.number < other.number < window.number + len(estate.slots):
                assert not slots[window.slot] & slots[other.slot]


def test_every_window_gets_the_power_mix_and_valid_disorder():
    _, drawn = plan()
    for window in drawn.windows:
        assert sorted(window.power.values()) == sorted(POWER_MIX)
        assert set(window.disorder) <= set(DISORDERS)
        assert window.disorder == ("a",) or "a" not in window.disorder
        assert not {"b", "e"} <= set(window.disorder)
        assert (window.late_by is not None) == ("f" in window.disorder)


def test_twenty_windows_draw_every_kind_of_disorder():
    _, drawn = plan(seed=1)
    drawn_codes = {code for window in drawn.windows for code in window.disorder}
    assert drawn_codes == set(DISORDERS)


def test_crashes_are_planned_about_every_crash_every_seconds_and_not_at_all_with_zero():
    _, drawn = plan(crash_every=45.0)
    gaps = [b.after - a.after for a, b in zip(drawn.crashes, drawn.crashes[1:], strict=False)]
    assert drawn.crashes and all(22.5 <= gap <= 67.5 for gap in gaps)
    assert plan(crash_every=0)[1].crashes == []


def _sender(answers: list[int], urls=lambda: ["http://127.0.0.1:1/webhook"]):
    calls: list[str] = []

    def deliver(url, events):
        calls.append(url)
        return (answers.pop(0) if answers else 200), ""

    clock = ScaledClock(FAST)
    return clock, calls, EventGridSender(clock, urls, seed=1, stop=threading.Event(), deliver=deliver)


def test_a_delivery_is_retried_until_it_is_answered_2xx():
    clock, calls, sender = _sender([500, 0, 503])
    delivery = sender.send_at(clock.now(), {"id": "e"}, phase="pre", label="w1-pre")
    assert delivery.done.wait(10)
    assert delivery.outcome == "delivered"
    assert [a.status for a in delivery.attempts] == [500, 0, 503, 200]
    assert delivery.delivered_at == delivery.attempts[-1].time
    assert [
        b.time - a.time >= timedelta(seconds=10) for a, b in zip(delivery.attempts, delivery.attempts[1:], strict=False)
    ] == [True] * 3


def test_a_delivery_expires_after_the_time_to_live():
    clock, calls, sender = _sender([500] * 100)
    delivery = sender.send_at(clock.now(), {"id": "e"}, phase="post", label="w1-post")
    assert delivery.done.wait(10)
    assert delivery.outcome == "expired"
    assert delivery.attempts[-1].time - delivery.attempts[0].time <= EVENT_TTL
    assert 4 <= len(delivery.attempts) < 10


def test_without_a_live_instance_an_attempt_counts_as_no_answer():
    clock, calls, sender = _sender([], urls=lambda: [])
    delivery = sender.send_at(clock.now(), {"id": "e"}, phase="pre", label="w1-pre")
    assert delivery.done.wait(10)
    assert calls == [] and delivery.outcome == "expired"
    assert {a.status for a in delivery.attempts} == {0}


def test_the_report_ends_with_the_summary_line_and_counts_violations():
    report = {
        "seed": 1,
        "scale": 60.0,
        "windows": 1,
        "instances": 2,
        "durationSeconds": 12.0,
        "error": None,
        "totals": {
            "faults": 7,
            "storageFaults": {"error500": 3},
            "armFaults": {"429": 2},
            "crashes": 2,
            "disorderEvents": 1,
            "violations": 1,
            "violationsByInvariant": {"I4": 1},
        },
        "windowReports": [
            {
                "window": 1,
                "slot": 1,
                "disorderText": "b(post first)",
                "settled": "settled",
                "faults": {"storage": {"error500": 3}, "arm": {"429": 2}, "crashes": 2},
                "invariants": {
                    "I1": {"status": "n/a", "violations": [], "note": ""},
                    "I4": {"status": "FAIL", "violations": ["VM start of vm-1 at 10:02"], "note": ""},
                },
                "error": None,
            }
        ],
    }
    text = render(report)
    assert text.splitlines()[-1] == "chaos: 1 windows, 7 faults injected, 1 invariant violations"
    assert summary_line(report) == text.splitlines()[-1]
    assert "window 1 I4: VM start of vm-1 at 10:02" in text
    assert "3/0/0/0/0" in text
