"""Idempotency: at-least-once delivery must never repeat a side effect.

The state machine lives here, in the port's base class; a backend implements four small
methods on records (get, create-if-absent, replace-if-unchanged, delete). Modelled on the
persistence layer of AWS Lambda Powertools' idempotency utility.

    (absent) --begin--> IN_PROGRESS --complete--> COMPLETED (result kept until it expires)
                             |  \\--release--> (absent)     (the work failed; a retry may run it)
                             \\--expires--> may be taken over by the next delivery

``complete`` and ``release`` are conditional on the etag ``begin`` got, so a delivery that
outlived its lock cannot undo the lock of the delivery that took over.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from shared.errors import PrepostError


class IdempotencyStatus(str, Enum):
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"


@dataclass
class IdempotencyRecord:
    key: str
    status: IdempotencyStatus
    expires_at: datetime
    result: str | None = None
    etag: str | None = None

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


class AlreadyInProgress(PrepostError):
    """Another delivery holds the lock for this key and it has not expired."""

    def __init__(self, key: str, expires_at: datetime):
        self.key = key
        self.expires_at = expires_at
        super().__init__(f"{key} is in progress elsewhere until {expires_at.isoformat()}")


class RecordChanged(PrepostError):
    """A conditional write lost a race (the record was created or changed meanwhile)."""


@dataclass(frozen=True)
class Begun:
    """The caller holds the lock and must call ``complete`` or ``release`` with this object.

    ``etag`` is the lock record's version when it was taken: completing or releasing is
    conditional on it, so a worker whose lock expired and was taken over by another delivery
    can neither overwrite nor delete its successor's lock.
    """

    key: str
    etag: str | None = None


@dataclass(frozen=True)
class AlreadyDone:
    """The work was done before; ``result`` is what it returned."""

    key: str
    result: Any


class IdempotencyStore(ABC):
    """Idempotency records with the state machine in the base class.

    Backends implement :meth:`_get`, :meth:`_create`, :meth:`_replace` and :meth:`_delete`.
    """

    def __init__(self, *, lock_timeout: timedelta = timedelta(minutes=10), keep_results: timedelta = timedelta(days=7)):
        self.lock_timeout = lock_timeout
        self.keep_results = keep_results

    # -- the state machine -------------------------------------------------------------

    def begin(self, key: str, *, now: datetime | None = None) -> Begun | AlreadyDone:
        """Take the lock for ``key``, or report the kept result when the work was done.

        Raises:
            AlreadyInProgress: another delivery holds an unexpired lock.
        """
        now = now or _utcnow()
        fresh = IdempotencyRecord(key, IdempotencyStatus.IN_PROGRESS, now + self.lock_timeout)
        # Most keys are new (a first delivery, or the next look after a release): try to create
        # first and read only when the record exists, one round trip instead of two.
        try:
            return Begun(key, self._create(fresh))
        except RecordChanged:
            pass
        for _ in range(3):
            existing = self._get(key)
            if existing is None:
                try:
                    return Begun(key, self._create(fresh))
                except RecordChanged:
                    continue  # someone created it first: look again
            if existing.status is IdempotencyStatus.COMPLETED and not existing.is_expired(now):
                return AlreadyDone(key, json.loads(existing.result) if existing.result else None)
            if existing.status is IdempotencyStatus.IN_PROGRESS and not existing.is_expired(now):
                raise AlreadyInProgress(key, existing.expires_at)
            # Expired: a crashed worker's lock, or an old result. Take it over, conditionally.
            fresh.etag = existing.etag
            try:
                return Begun(key, self._replace(fresh))
            except RecordChanged:
                continue
        raise AlreadyInProgress(key, now + self.lock_timeout)

    def complete(self, lock: Begun, result: Any = None, *, now: datetime | None = None) -> bool:
        """Mark the work done and keep its (JSON-serialisable) result.

        Returns False, writing nothing, when the lock is no longer ours (it expired and another
        delivery took it over): that delivery is doing the work now and will complete it.
        """
        now = now or _utcnow()
        record = IdempotencyRecord(
            lock.key,
            IdempotencyStatus.COMPLETED,
            now + self.keep_results,
            json.dumps(result, default=str),
            etag=lock.etag,
        )
        try:
            self._replace(record)
        except RecordChanged:
            return False
        return True

    def release(self, lock: Begun) -> bool:
        """Give the lock back after a failure, so the next delivery can run the work.

        Returns False, deleting nothing, when the lock is no longer ours (taken over, or gone).
        """
        try:
            self._delete(lock.key, lock.etag)
        except RecordChanged:
            return False
        return True

    # -- what a backend provides -------------------------------------------------------

    @abstractmethod
    def _get(self, key: str) -> IdempotencyRecord | None:
        """The record for ``key``, with its etag, or None."""

    @abstractmethod
    def _create(self, record: IdempotencyRecord) -> str:
        """Create the record and return its etag; raise :class:`RecordChanged` if it exists."""

    @abstractmethod
    def _replace(self, record: IdempotencyRecord) -> str:
        """Replace the record if its etag (``record.etag``) still matches and return the new etag;
        else raise :class:`RecordChanged` (also when the record is gone)."""

    @abstractmethod
    def _delete(self, key: str, etag: str | None) -> None:
        """Delete the record if its etag still matches; succeed when it is already gone; raise
        :class:`RecordChanged` when it exists with another etag."""


def _utcnow() -> datetime:
    from shared.clock import utcnow

    return utcnow()
