"""The idempotency state machine (in the port's base class), driven through the in-memory fake.

Every call passes ``now=`` explicitly: expiry is about time, and the tests must not depend on
the clock. The same behaviour against Table storage is in
``tests/integration/test_table_idempotency.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.ports.idempotency import (
    AlreadyDone,
    AlreadyInProgress,
    Begun,
    IdempotencyRecord,
    IdempotencyStatus,
    RecordChanged,
)
from tests.fakes import FakeIdempotencyStore

T0 = datetime(2026, 11, 15, 14, 30, tzinfo=timezone.utc)
LOCK = timedelta(minutes=10)
KEEP = timedelta(days=7)
KEY = "run-a:pre-snapshot-disks-0123456789abcdef"


@pytest.fixture
def store() -> FakeIdempotencyStore:
    return FakeIdempotencyStore(lock_timeout=LOCK, keep_results=KEEP)


def test_begin_on_a_new_key_takes_the_lock(store):
    lock = store.begin(KEY, now=T0)

    assert isinstance(lock, Begun) and lock.key == KEY
    assert lock.etag == store.records[KEY].etag
    record = store.records[KEY]
    assert record.status is IdempotencyStatus.IN_PROGRESS
    assert record.expires_at == T0 + LOCK


def test_complete_keeps_the_result_and_the_next_begin_returns_it(store):
    lock = store.begin(KEY, now=T0)
    assert store.complete(lock, {"snapshots": ["s1", "s2"]}, now=T0 + timedelta(minutes=1)) is True

    outcome = store.begin(KEY, now=T0 + timedelta(minutes=2))

    assert outcome == AlreadyDone(KEY, {"snapshots": ["s1", "s2"]})
    assert store.records[KEY].expires_at == T0 + timedelta(minutes=1) + KEEP


def test_a_result_of_none_is_still_done(store):
    store.complete(store.begin(KEY, now=T0), now=T0)

    assert store.begin(KEY, now=T0 + timedelta(seconds=1)) == AlreadyDone(KEY, None)


def test_results_that_are_not_json_are_kept_as_text(store):
    store.complete(store.begin(KEY, now=T0), {"at": T0}, now=T0)

    assert store.begin(KEY, now=T0).result == {"at": str(T0)}


def test_a_second_delivery_while_in_progress_is_refused_until_the_lock_expires(store):
    store.begin(KEY, now=T0)

    with pytest.raises(AlreadyInProgress) as raised:
        store.begin(KEY, now=T0 + LOCK - timedelta(seconds=1))

    assert raised.value.key == KEY
    assert raised.value.expires_at == T0 + LOCK


def test_an_expired_lock_is_taken_over(store):
    """A worker that crashed never releases its lock: the next delivery after expiry runs the work."""
    store.begin(KEY, now=T0)

    assert isinstance(store.begin(KEY, now=T0 + LOCK), Begun)
    assert store.records[KEY].expires_at == T0 + LOCK + LOCK


def test_the_new_holder_of_a_taken_over_lock_can_complete(store):
    first = store.begin(KEY, now=T0)
    second = store.begin(KEY, now=T0 + LOCK)

    assert store.complete(second, "second", now=T0 + LOCK + timedelta(minutes=1)) is True
    assert store.begin(KEY, now=T0 + LOCK + timedelta(minutes=2)) == AlreadyDone(KEY, "second")
    assert store.complete(first, "first", now=T0 + LOCK + timedelta(minutes=3)) is False


def test_a_worker_whose_lock_was_taken_over_cannot_complete_or_release_it(store):
    """Its lock expired while it worked; the successor's lock must survive whatever it does."""
    slow = store.begin(KEY, now=T0)
    successor = store.begin(KEY, now=T0 + LOCK)

    assert store.release(slow) is False
    assert store.complete(slow, "late", now=T0 + LOCK) is False

    assert store.records[KEY].status is IdempotencyStatus.IN_PROGRESS
    assert store.records[KEY].etag == successor.etag


def test_an_expired_result_lets_the_work_run_again(store):
    store.complete(store.begin(KEY, now=T0), "old", now=T0)

    assert store.begin(KEY, now=T0 + KEEP - timedelta(seconds=1)) == AlreadyDone(KEY, "old")
    assert isinstance(store.begin(KEY, now=T0 + KEEP), Begun)
    assert store.records[KEY].status is IdempotencyStatus.IN_PROGRESS


def test_release_gives_the_lock_back_for_a_retry(store):
    assert store.release(store.begin(KEY, now=T0)) is True

    assert KEY not in store.records
    assert isinstance(store.begin(KEY, now=T0 + timedelta(seconds=1)), Begun)


def test_release_of_an_unknown_key_succeeds(store):
    assert store.release(Begun("never-begun", etag='W/"0"')) is True

    assert store.records == {}


def test_keys_are_independent(store):
    store.begin("run-a:x", now=T0)

    assert store.begin("run-a:y", now=T0).key == "run-a:y"
    assert store.begin("run-b:x", now=T0).key == "run-b:x"


class _RacingStore(FakeIdempotencyStore):
    """A fake where another delivery writes between this one's read and its write."""

    def __init__(self, rival: IdempotencyRecord | None, **kwargs):
        super().__init__(**kwargs)
        self.rival = rival
        self.creates = 0
        self.replaces = 0

    def _interfere(self) -> None:
        if self.rival is not None:
            self.records[self.rival.key] = self.rival
            self.rival = None
            raise RecordChanged("lost the race")

    def _create(self, record):
        self.creates += 1
        if record.key in self.records:  # refused whatever the rival does: no race to lose here
            raise RecordChanged("exists")
        self._interfere()
        super()._create(record)

    def _replace(self, record, *, unconditional=False):
        self.replaces += 1
        if not unconditional:
            self._interfere()
        super()._replace(record, unconditional=unconditional)


def test_losing_the_create_race_to_a_fresh_lock_reports_in_progress():
    rival = IdempotencyRecord(KEY, IdempotencyStatus.IN_PROGRESS, T0 + LOCK, etag="rival")
    store = _RacingStore(rival, lock_timeout=LOCK)

    with pytest.raises(AlreadyInProgress):
        store.begin(KEY, now=T0)

    assert store.creates == 1


def test_losing_the_create_race_to_a_completed_result_reports_done():
    rival = IdempotencyRecord(KEY, IdempotencyStatus.COMPLETED, T0 + KEEP, result='"theirs"', etag="rival")
    store = _RacingStore(rival, lock_timeout=LOCK, keep_results=KEEP)

    assert store.begin(KEY, now=T0) == AlreadyDone(KEY, "theirs")


def test_losing_the_takeover_race_reports_in_progress():
    """Two deliveries find the same expired lock; only the first conditional replace wins."""
    store = _RacingStore(None, lock_timeout=LOCK)
    store.begin(KEY, now=T0)
    later = T0 + LOCK + timedelta(seconds=5)
    store.rival = IdempotencyRecord(KEY, IdempotencyStatus.IN_PROGRESS, later + LOCK, etag="rival")

    with pytest.raises(AlreadyInProgress) as raised:
        store.begin(KEY, now=later)

    assert raised.value.expires_at == later + LOCK
    assert store.replaces == 1


def test_endless_contention_gives_up_as_in_progress():
    class AlwaysLosing(FakeIdempotencyStore):
        def _create(self, record):
            raise RecordChanged(record.key)

    store = AlwaysLosing(lock_timeout=LOCK)

    with pytest.raises(AlreadyInProgress) as raised:
        store.begin(KEY, now=T0)

    assert raised.value.expires_at == T0 + LOCK


def test_a_new_key_is_locked_without_reading_first():
    """One round trip for the common case: create, and read only when the record exists."""

    class Counting(FakeIdempotencyStore):
        reads = 0

        def _get(self, key):
            Counting.reads += 1
            return super()._get(key)

    store = Counting(lock_timeout=LOCK)
    lock = store.begin(KEY, now=T0)
    assert Counting.reads == 0
    store.release(lock)
    store.begin(KEY, now=T0)  # the next look after a release: a new record again
    assert Counting.reads == 0
    with pytest.raises(AlreadyInProgress):
        store.begin(KEY, now=T0)
    assert Counting.reads == 1
