"""One contract for the idempotency store, run against the in-memory fake and Table storage.

Each test in ``TestContract`` runs on :class:`tests.fakes.FakeIdempotencyStore` and on
:class:`TableIdempotencyStore` against Azurite: the state machine (in the port's base class)
must behave the same on both, and so must the four backend methods it is built on. Keys are
unique per test because the Azurite tables are shared by the whole session.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from shared.adapters.table_idempotency import RESULT_CHUNKS, TableIdempotencyStore
from shared.errors import PermanentError
from shared.names import TableName
from shared.ports.idempotency import (
    AlreadyDone,
    AlreadyInProgress,
    Begun,
    IdempotencyRecord,
    IdempotencyStatus,
    IdempotencyStore,
    RecordChanged,
)
from tests.fakes import FakeIdempotencyStore

T0 = datetime(2026, 11, 15, 14, 30, tzinfo=timezone.utc)
LOCK = timedelta(minutes=10)
KEEP = timedelta(days=7)

StoreFactory = Callable[[], IdempotencyStore]


@pytest.fixture(params=["fake", pytest.param("table", marks=pytest.mark.integration)])
def make_store(request) -> StoreFactory:
    """Stores over one backend: each call is another worker looking at the same records."""
    if request.param == "fake":
        shared: dict[str, IdempotencyRecord] = {}

        def fake() -> IdempotencyStore:
            store = FakeIdempotencyStore(lock_timeout=LOCK, keep_results=KEEP)
            store.records = shared
            return store

        return fake
    clients = request.getfixturevalue("storage")
    return lambda: TableIdempotencyStore(clients, lock_timeout=LOCK, keep_results=KEEP)


@pytest.fixture
def store(make_store) -> IdempotencyStore:
    return make_store()


@pytest.fixture
def key(unique_suffix) -> str:
    return f"run-{unique_suffix}:pre-snapshot-disks-0123456789abcdef"


class TestContract:
    # -- the state machine --------------------------------------------------------------

    def test_begin_complete_then_already_done(self, store, key):
        lock = store.begin(key, now=T0)
        assert isinstance(lock, Begun) and lock.key == key and lock.etag
        assert store.complete(lock, {"snapshots": ["s1"], "count": 1}, now=T0 + timedelta(minutes=1)) is True

        assert store.begin(key, now=T0 + timedelta(minutes=2)) == AlreadyDone(key, {"snapshots": ["s1"], "count": 1})

    def test_in_progress_until_the_lock_expires_then_taken_over(self, make_store, key):
        first, second = make_store(), make_store()
        first.begin(key, now=T0)

        with pytest.raises(AlreadyInProgress) as raised:
            second.begin(key, now=T0 + LOCK - timedelta(seconds=1))
        assert raised.value.expires_at == T0 + LOCK

        assert isinstance(second.begin(key, now=T0 + LOCK), Begun)
        with pytest.raises(AlreadyInProgress):
            first.begin(key, now=T0 + LOCK + timedelta(seconds=1))

    def test_a_worker_whose_lock_was_taken_over_cannot_complete_or_release_it(self, make_store, key):
        slow, successor = make_store(), make_store()
        slow_lock = slow.begin(key, now=T0)
        successor_lock = successor.begin(key, now=T0 + LOCK)

        assert slow.release(slow_lock) is False
        assert slow.complete(slow_lock, "late", now=T0 + LOCK) is False

        with pytest.raises(AlreadyInProgress):  # the successor's lock is intact
            slow.begin(key, now=T0 + LOCK + timedelta(seconds=1))
        assert successor.complete(successor_lock, "done", now=T0 + LOCK) is True
        assert slow.begin(key, now=T0 + LOCK + timedelta(seconds=2)) == AlreadyDone(key, "done")

    def test_an_expired_result_lets_the_work_run_again(self, store, key):
        store.complete(store.begin(key, now=T0), "old", now=T0)

        assert store.begin(key, now=T0 + KEEP - timedelta(seconds=1)) == AlreadyDone(key, "old")
        assert isinstance(store.begin(key, now=T0 + KEEP), Begun)

    def test_release_lets_the_next_delivery_run_the_work(self, make_store, key):
        first, second = make_store(), make_store()
        assert first.release(first.begin(key, now=T0)) is True

        assert isinstance(second.begin(key, now=T0 + timedelta(seconds=1)), Begun)

    def test_release_of_an_unknown_key_succeeds(self, store, key):
        assert store.release(Begun(key, 'W/"1"')) is True
        assert store.release(Begun(key, 'W/"1"')) is True

    def test_keys_with_characters_table_keys_forbid(self, store, unique_suffix):
        keys = [
            f"run-{unique_suffix}:/subscriptions/s/resourceGroups/rg/providers/x/vm#1?a=b\\c",
            f"/subscriptions/{unique_suffix}:leading-slash",
            f"no-separator-{unique_suffix}",
            f"run-{unique_suffix}:ünïcödé \U0001f4a5 and a tab\t",
            f"run-{unique_suffix}:" + "long" * 500,
        ]
        for index, key in enumerate(keys):
            lock = store.begin(key, now=T0)
            assert isinstance(lock, Begun)
            store.complete(lock, index, now=T0)
        for index, key in enumerate(keys):
            assert store.begin(key, now=T0) == AlreadyDone(key, index)

    def test_a_large_result_is_kept_whole(self, store, key):
        result = {"snapshots": [f"/subscriptions/s/snapshots/snap-{index:05d}" for index in range(5_000)]}
        store.complete(store.begin(key, now=T0), result, now=T0)

        assert store.begin(key, now=T0) == AlreadyDone(key, result)

    def test_a_shorter_result_replaces_a_longer_one(self, store, key):
        store.complete(store.begin(key, now=T0), "x" * 100_000, now=T0)
        store.complete(store.begin(key, now=T0 + KEEP), "short", now=T0 + KEEP)

        assert store.begin(key, now=T0 + KEEP) == AlreadyDone(key, "short")

    # -- what a backend provides ----------------------------------------------------------

    def test_create_twice_raises_record_changed(self, store, key):
        record = IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + LOCK)
        store._create(record)

        with pytest.raises(RecordChanged):
            store._create(record)

    def test_get_returns_the_record_with_an_etag(self, store, key):
        assert store._get(key) is None
        store._create(IdempotencyRecord(key, IdempotencyStatus.COMPLETED, T0 + KEEP, result='{"a": 1}'))

        record = store._get(key)

        assert record.etag
        assert (record.key, record.status, record.expires_at, record.result) == (
            key,
            IdempotencyStatus.COMPLETED,
            T0 + KEEP,
            '{"a": 1}',
        )

    def test_replace_needs_the_current_etag(self, store, key):
        created = store._create(IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + LOCK))
        read = store._get(key)
        assert read.etag == created
        replaced = store._replace(IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + 2 * LOCK, etag=read.etag))

        with pytest.raises(RecordChanged):  # the etag it read is stale now
            store._replace(IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + 3 * LOCK, etag=read.etag))
        with pytest.raises(RecordChanged):  # no etag at all
            store._replace(IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + 3 * LOCK))
        assert store._get(key).expires_at == T0 + 2 * LOCK

        store._replace(IdempotencyRecord(key, IdempotencyStatus.COMPLETED, T0 + KEEP, "1", etag=replaced))
        assert store._get(key).status is IdempotencyStatus.COMPLETED

    def test_conditional_replace_of_a_missing_record_raises(self, store, key):
        store._create(IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + LOCK))
        etag = store._get(key).etag
        store._delete(key, etag)

        with pytest.raises(RecordChanged):
            store._replace(IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + LOCK, etag=etag))

    def test_delete_succeeds_when_gone(self, store, key):
        etag = store._create(IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + LOCK))
        store._delete(key, etag)
        store._delete(key, etag)

        assert store._get(key) is None

    def test_delete_with_a_stale_etag_raises_and_keeps_the_record(self, store, key):
        stale = store._create(IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + LOCK))
        store._replace(IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, T0 + 2 * LOCK, etag=stale))

        with pytest.raises(RecordChanged):
            store._delete(key, stale)
        assert store._get(key).expires_at == T0 + 2 * LOCK


# -- only the table adapter ---------------------------------------------------------------


@pytest.fixture
def table_store(storage) -> TableIdempotencyStore:
    return TableIdempotencyStore(storage, lock_timeout=LOCK, keep_results=KEEP)


def test_only_one_of_many_concurrent_deliveries_begins(storage, key):
    """The conditional create is what makes the lock a lock: eight workers, one winner."""
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def deliver() -> None:
        store = TableIdempotencyStore(storage, lock_timeout=LOCK)
        barrier.wait()
        try:
            outcomes.append(store.begin(key, now=T0))
        except AlreadyInProgress as error:
            outcomes.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(isinstance(outcome, Begun) for outcome in outcomes) == 1
    assert sum(isinstance(outcome, AlreadyInProgress) for outcome in outcomes) == 7


def test_records_are_keyed_by_run_and_digest(table_store, storage, unique_suffix):
    key = f"run-{unique_suffix}:/subscriptions/s/vm#1"
    table_store.begin(key, now=T0)
    table_store.begin(f"bare-{unique_suffix}", now=T0)

    entity = storage.table(TableName.IDEMPOTENCY).get_entity(
        f"run-{unique_suffix}", hashlib.sha256(key.encode()).hexdigest()
    )
    bare = storage.table(TableName.IDEMPOTENCY).get_entity(
        "default", hashlib.sha256(f"bare-{unique_suffix}".encode()).hexdigest()
    )

    assert entity["Key"] == key and entity["Status"] == "in-progress"
    assert bare["Key"] == f"bare-{unique_suffix}"


def test_a_result_too_large_for_an_entity_is_refused(table_store, key):
    lock = table_store.begin(key, now=T0)

    with pytest.raises(PermanentError, match="keeps at most"):
        table_store.complete(lock, "x" * (RESULT_CHUNKS * 32 * 1024), now=T0)
