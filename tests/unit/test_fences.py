"""The fence on pre-work: one read of the run record, which is stamped before the post phase exists."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.errors import MessageRejected
from shared.models.messages import PostFallback
from shared.models.run import Phase, PhaseRecord, PhaseStatus, TaskStatus
from shared.ports.idempotency import RecordChanged
from shared.usecases.fences import mark_post_began, pre_work_fence
from shared.usecases.supervision import post_fallback
from tests.fakes import FakeRunRecords
from tests.fakes_azure import POST_SAMPLE, FakeEstate


class CountingRecords(FakeRunRecords):
    """The fake records, counting reads and remembering the order of writes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.writes: list[str] = []

    def get_run(self, run_key):
        self.reads.append("run")
        return super().get_run(run_key)

    def get_phase(self, run_key, phase):
        self.reads.append(f"phase-{phase.value}")
        return super().get_phase(run_key, phase)

    def update_run(self, run):
        stored = super().update_run(run)
        self.writes.append("run" if run.post_began_at is None else "run stamped")
        return stored

    def create_phase(self, phase):
        stored, created = super().create_phase(phase)
        if created:
            self.writes.append(f"phase-{phase.phase.value}")
        return stored, created


@pytest.fixture
def estate() -> FakeEstate:
    estate = FakeEstate()
    estate.add_vm("vm-web-01")
    estate.records = CountingRecords()
    estate.planned_pre()
    return estate


def before_start(estate: FakeEstate):
    run = estate.records.get_run(estate.key)
    return run, run.start - timedelta(minutes=30)


def test_an_open_fence_costs_one_read_of_the_run(estate):
    run, now = before_start(estate)
    estate.records.reads.clear()

    assert pre_work_fence(run, estate.records, now) is None
    assert estate.records.reads == ["run"]


def test_the_post_event_stamps_the_run_before_it_records_the_post_phase(estate):
    estate.records.writes.clear()

    estate.deliver(POST_SAMPLE)

    assert estate.records.writes[:2] == ["run stamped", "phase-post"]
    run = estate.records.get_run(estate.key)
    assert run.post_began_at == estate.records.get_phase(estate.key, Phase.POST).received_at


def test_the_fallback_stamps_the_run_before_it_records_the_post_phase(estate):
    run, _ = before_start(estate)
    estate.records.writes.clear()

    post_fallback(PostFallback(run_key=estate.key), records=estate.records, transport=estate.transport, now=run.end)

    assert estate.records.writes[:2] == ["run stamped", "phase-post"]


def test_a_fallback_for_a_run_never_recorded_is_rejected_and_records_nothing():
    records = FakeRunRecords()

    with pytest.raises(MessageRejected, match="no such run"):
        post_fallback(PostFallback(run_key="run-forged"), records=records, transport=None, now=None)
    assert records.phases == {}


def test_once_the_post_phase_exists_no_pre_work_begins(estate):
    run, now = before_start(estate)
    estate.deliver(POST_SAMPLE, now=now)
    estate.records.reads.clear()

    fence = pre_work_fence(run, estate.records, now)  # the caller's copy predates the post-event

    assert fence is not None and fence.status is TaskStatus.SKIPPED
    assert "post phase began" in fence.reason
    assert estate.records.reads == ["run"]


def test_a_run_recorded_by_an_earlier_version_is_fenced_by_its_post_phase(estate):
    run, now = before_start(estate)
    legacy = replace(run, stamps_post_start=False)
    estate.records.runs[estate.key] = legacy
    estate.records.create_phase(PhaseRecord(estate.key, Phase.POST, PhaseStatus.RECEIVED, "post", received_at=now))

    fence = pre_work_fence(legacy, estate.records, now)

    assert fence is not None and fence.status is TaskStatus.SKIPPED


def test_a_first_look_without_rereading_judges_the_copy_and_reads_nothing(estate):
    """The look before a marker write: fenced_sending reads afresh before anything is sent."""
    run, now = before_start(estate)
    estate.deliver(POST_SAMPLE, now=now)
    estate.records.reads.clear()

    assert pre_work_fence(run, estate.records, now, reread=False) is None  # the copy: not yet stamped
    stamped = estate.records.get_run(estate.key)
    assert pre_work_fence(stamped, estate.records, now, reread=False) is not None
    assert estate.records.reads == ["run"]  # only the test's own read


def test_the_first_stamp_stands(estate):
    run, now = before_start(estate)
    first = mark_post_began(run, estate.records, now)

    again = mark_post_began(estate.records.get_run(estate.key), estate.records, now + timedelta(hours=1))

    assert again.post_began_at == first.post_began_at == now


def test_a_stamp_that_loses_a_race_reads_the_run_again_and_keeps_the_other_writers_change(estate):
    run, now = before_start(estate)
    other = estate.records.get_run(estate.key)
    other.cancel_reason = "written by another handler meanwhile"
    estate.records.update_run(other)

    stamped = mark_post_began(run, estate.records, now)  # ``run`` is stale: its etag no longer matches

    assert stamped.post_began_at == now
    assert estate.records.get_run(estate.key).cancel_reason == "written by another handler meanwhile"


def test_a_stale_copy_cannot_be_written_over_the_stamp(estate):
    run, now = before_start(estate)
    mark_post_began(run, estate.records, now)

    with pytest.raises(RecordChanged):
        estate.records.update_run(replace(run, cancel_reason="from a stale copy"))
    assert estate.records.get_run(estate.key).post_began_at == now
