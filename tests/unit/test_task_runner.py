"""The task runner: each task once, retries re-queued with a delay (never slept), failures recorded,
long operations followed up by scheduled messages that use no attempt."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from shared.errors import Deferred, PermanentError, Throttled, TransientError
from shared.models.events import format_time
from shared.models.messages import TaskMessage, TaskOutcome
from shared.models.retry import RetryPolicy
from shared.models.run import Action, Phase, TaskStatus
from shared.ports.idempotency import IdempotencyStatus
from shared.usecases.task_runner import (
    IN_PROGRESS_RECHECK,
    MAX_OPERATION_WAIT,
    RECHECK_LIMIT,
    Delivery,
    FollowUp,
    TaskResult,
    run_task,
)
from tests.fakes import FakeIdempotencyStore, FakeTransport
from tests.fakes_azure import FakeEstate

ESTATE = FakeEstate()
T0 = ESTATE.now
MAX_ATTEMPTS = 5
VM = ESTATE.add_vm("vm-web-01")
MESSAGE = TaskMessage(run_key=ESTATE.key, phase=Phase.PRE, action=Action.SNAPSHOT_DISKS, target=VM)
KEY = f"task:{MESSAGE.run_key}:{MESSAGE.task_id}"
CHECK_INTERVAL = timedelta(seconds=20)


class Clock:
    def __init__(self, start: datetime):
        self.value = start

    def __call__(self) -> datetime:
        current = self.value
        self.value += timedelta(seconds=1)  # every reading moves on, so start and finish differ
        return current


class ScriptedAction:
    """An action that answers from a script: a TaskResult, or an exception to raise."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[TaskMessage] = []

    def __call__(self, message: TaskMessage) -> TaskResult:
        self.calls.append(message)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


OK = TaskResult(TaskStatus.SUCCEEDED, "2 incremental snapshot(s)", {"snapshots": ["s1", "s2"]})


@pytest.fixture
def idempotency() -> FakeIdempotencyStore:
    return FakeIdempotencyStore()


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def reported() -> list[TaskOutcome]:
    """The outcomes the runner recorded, in order (the runner's ``report``)."""
    return []


RETRY = RetryPolicy(max_attempts=MAX_ATTEMPTS)


def run(message, action, idempotency, transport, *, reported=None, delivery=None, clock=None):
    return run_task(
        message,
        action,
        idempotency=idempotency,
        transport=transport,
        report=(reported if reported is not None else []).append,
        retry=RETRY,
        check_interval=CHECK_INTERVAL,
        now=clock or Clock(T0),
        delivery=delivery or Delivery(),
    )


def test_a_successful_action_records_its_outcome_and_is_remembered(idempotency, transport, reported):
    outcome = run(MESSAGE, ScriptedAction(OK), idempotency, transport, reported=reported)

    assert reported == [outcome]
    assert transport.sent == []  # recorded here, not sent on for another function to record
    assert outcome.status is TaskStatus.SUCCEEDED
    assert (outcome.detail, outcome.data) == (OK.detail, OK.data)
    assert (outcome.run_key, outcome.task_id, outcome.attempts) == (MESSAGE.run_key, MESSAGE.task_id, 1)
    assert outcome.started_at == format_time(T0 + timedelta(seconds=1))
    assert outcome.finished_at > outcome.started_at
    assert idempotency.records[KEY].status is IdempotencyStatus.COMPLETED


@pytest.mark.parametrize("status", [TaskStatus.SKIPPED, TaskStatus.FAILED])
def test_what_the_action_reports_is_the_outcome(idempotency, transport, status):
    outcome = run(MESSAGE, ScriptedAction(TaskResult(status, "because")), idempotency, transport)

    assert (outcome.status, outcome.detail) == (status, "because")


def test_a_task_already_done_is_not_done_again(idempotency, transport):
    run(MESSAGE, ScriptedAction(OK), idempotency, transport)
    transport.take()
    again = ScriptedAction(OK)

    assert run(MESSAGE, again, idempotency, transport) is None
    assert again.calls == []
    assert transport.sent == []


def test_a_task_done_under_another_casing_of_the_target_is_not_done_again(idempotency, transport):
    run(MESSAGE, ScriptedAction(OK), idempotency, transport)
    transport.take()
    respelled = TaskMessage(run_key=MESSAGE.run_key, phase=MESSAGE.phase, action=MESSAGE.action, target=VM.lower())
    again = ScriptedAction(OK)

    assert run(respelled, again, idempotency, transport) is None
    assert again.calls == []


def test_a_task_in_progress_elsewhere_is_looked_at_again_later(idempotency, transport):
    idempotency.begin(KEY, now=T0)
    action = ScriptedAction(OK)

    assert run(MESSAGE, action, idempotency, transport) is None

    assert action.calls == []
    assert [(s.message, s.delay) for s in transport.sent] == [(MESSAGE.resent(), IN_PROGRESS_RECHECK)]
    # A fresh id: Service Bus drops a MessageId it saw within its duplicate-detection window.
    assert transport.sent[0].message.message_id != MESSAGE.message_id


def test_throttling_requeues_with_retry_after_and_reports_retrying(idempotency, transport, reported):
    retry_after = timedelta(seconds=90)

    outcome = run(
        MESSAGE,
        ScriptedAction(Throttled("429 Too Many Requests", retry_after=retry_after)),
        idempotency,
        transport,
        reported=reported,
    )

    [requeued] = transport.sent
    assert (requeued.message, requeued.delay) == (MESSAGE.next_attempt(), retry_after)
    assert requeued.message.attempt == 2
    assert reported == [outcome]
    assert outcome.status is TaskStatus.RETRYING
    assert "429" in outcome.detail and "90 s" in outcome.detail
    assert KEY not in idempotency.records  # released: the next attempt may run it


def test_work_the_rate_control_put_off_goes_again_with_the_same_attempt_and_no_outcome(
    idempotency, transport, reported
):
    """Nothing was sent to Azure: no attempt is spent and the task's record is left as it was."""
    wait = timedelta(seconds=7)
    on_last_attempt = replace(MESSAGE, attempt=MAX_ATTEMPTS)

    put_off = ScriptedAction(Deferred("writes spent", retry_after=wait))

    assert run(on_last_attempt, put_off, idempotency, transport, reported=reported) is None
    assert reported == []

    assert [(s.message, s.delay) for s in transport.sent] == [(on_last_attempt.resent(), wait)]
    assert transport.sent[0].message.attempt == MAX_ATTEMPTS
    assert KEY not in idempotency.records  # released: the resent message may run it


def test_the_requeued_attempt_runs_and_succeeds(idempotency, transport):
    run(MESSAGE, ScriptedAction(Throttled("429", retry_after=timedelta(seconds=5))), idempotency, transport)
    retry = transport.take()[0].message

    outcome = run(retry, ScriptedAction(OK), idempotency, transport)

    assert outcome.status is TaskStatus.SUCCEEDED
    assert outcome.attempts == 2


@pytest.mark.parametrize(
    ("asked", "used"),
    [
        (timedelta(seconds=1200), RETRY.max_retry_after),
        (timedelta(seconds=3600), RETRY.max_retry_after),
        (timedelta(0), RETRY.min_delay),
        (timedelta(seconds=-5), RETRY.min_delay),
    ],
    ids=["compute-1200s", "an-hour", "zero", "negative"],
)
def test_retry_after_is_kept_within_bounds(idempotency, transport, asked, used):
    run(MESSAGE, ScriptedAction(Throttled("429", retry_after=asked)), idempotency, transport)

    assert transport.sent[0].delay == used


@pytest.mark.parametrize("attempt", range(1, MAX_ATTEMPTS))
def test_a_transient_error_without_retry_after_backs_off_within_bounds(attempt, idempotency, transport):
    message = TaskMessage(
        run_key=MESSAGE.run_key, phase=MESSAGE.phase, action=MESSAGE.action, target=VM, attempt=attempt
    )
    nominal = min(RETRY.base * 2 ** (attempt - 1), RETRY.cap)
    delays = set()
    for index in range(20):
        other_vm = ESTATE.add_vm(f"vm-jitter-{index:02d}", in_run=False)
        store, sent = FakeIdempotencyStore(), FakeTransport()
        run(replace(message, target=other_vm), ScriptedAction(TransientError("503")), store, sent)
        requeued = sent.sent[0]
        assert requeued.message.attempt == attempt + 1
        assert nominal * (1 - RETRY.jitter) <= requeued.delay <= nominal
        delays.add(requeued.delay)
    assert len(delays) > 1  # jittered per task: retries of many tasks do not line up


def test_backoff_never_exceeds_the_maximum_even_for_late_attempts(idempotency, transport):
    message = TaskMessage(run_key=MESSAGE.run_key, action=MESSAGE.action, target=VM, attempt=40)
    run_task(
        message,
        ScriptedAction(TransientError("503")),
        idempotency=idempotency,
        transport=transport,
        report=[].append,
        retry=RetryPolicy(max_attempts=50),
        check_interval=CHECK_INTERVAL,
        now=Clock(T0),
    )

    assert transport.sent[0].delay <= RETRY.cap


def test_the_last_attempt_fails_the_task_instead_of_requeueing(idempotency, transport, reported):
    last = TaskMessage(
        run_key=MESSAGE.run_key, phase=MESSAGE.phase, action=MESSAGE.action, target=VM, attempt=MAX_ATTEMPTS
    )

    throttled = ScriptedAction(Throttled("429", retry_after=timedelta(seconds=30)))
    outcome = run(last, throttled, idempotency, transport, reported=reported)

    assert reported == [outcome] and transport.sent == []
    assert outcome.status is TaskStatus.FAILED
    assert f"gave up after {MAX_ATTEMPTS} attempts" in outcome.detail
    assert idempotency.records[KEY].status is IdempotencyStatus.COMPLETED


def test_a_permanent_error_fails_the_task_once(idempotency, transport, reported):
    missing = ScriptedAction(PermanentError("virtual machine does not exist"))
    outcome = run(MESSAGE, missing, idempotency, transport, reported=reported)

    assert reported == [outcome]
    assert outcome.status is TaskStatus.FAILED
    assert outcome.detail == "virtual machine does not exist"
    assert run(MESSAGE, ScriptedAction(OK), idempotency, transport, reported=reported) is None  # already done
    assert reported == [outcome] and transport.sent == []


def test_an_unexpected_error_is_raised_and_nothing_recorded_before_the_last_delivery(
    idempotency, transport, reported
):
    with pytest.raises(KeyError):
        run(
            MESSAGE,
            ScriptedAction(KeyError("bug")),
            idempotency,
            transport,
            reported=reported,
            delivery=Delivery(count=1, max_count=5),
        )

    assert transport.sent == [] and reported == []
    assert KEY not in idempotency.records  # the next delivery may run it


def test_an_unexpected_error_on_the_last_delivery_is_recorded_failed_then_raised(idempotency, transport, reported):
    with pytest.raises(KeyError):
        run(
            MESSAGE,
            ScriptedAction(KeyError("bug")),
            idempotency,
            transport,
            reported=reported,
            delivery=Delivery(count=5, max_count=5),
        )

    [failed] = reported
    assert failed.status is TaskStatus.FAILED
    assert "KeyError" in failed.detail and "delivery 5" in failed.detail
    assert transport.sent == []


@pytest.mark.parametrize(("count", "last"), [(1, False), (4, False), (5, True), (6, True)])
def test_delivery_knows_the_last_one(count, last):
    assert Delivery(count=count, max_count=5).is_last is last


# -- long operations: follow-ups ----------------------------------------------------------

BEGUN = FollowUp("snapshot disks", "0 of 2 snapshot(s) ready", {"note": "kept"})


def test_a_follow_up_is_scheduled_after_the_check_interval_and_reported_in_progress(
    idempotency, transport, reported
):
    outcome = run(MESSAGE, ScriptedAction(BEGUN), idempotency, transport, reported=reported)

    [follow_up] = transport.sent
    assert follow_up.delay == CHECK_INTERVAL
    assert follow_up.message == MESSAGE.follow_up(waiting_since=format_time(T0 + timedelta(seconds=1)))
    assert (follow_up.message.attempt, follow_up.message.checks) == (1, 1)  # no attempt used
    assert follow_up.message.waiting_since == outcome.started_at  # when the operation began
    assert reported == [outcome]
    assert outcome.status is TaskStatus.IN_PROGRESS and not outcome.status.is_final
    assert outcome.detail == "snapshot disks: 0 of 2 snapshot(s) ready; looking again in 20 s"
    assert (outcome.attempts, outcome.data) == (1, {"note": "kept"})
    assert KEY not in idempotency.records  # released: the follow-up delivery may begin


@pytest.mark.parametrize(
    ("recheck", "expected"),
    [
        (timedelta(minutes=10), CHECK_INTERVAL * RECHECK_LIMIT),  # capped: a lost nudge costs a few checks
        (timedelta(seconds=5), timedelta(seconds=5)),  # shorter than the check interval: as asked
    ],
)
def test_a_recheck_is_looked_at_no_later_than_a_few_operation_checks(idempotency, transport, recheck, expected):
    waiting = FollowUp("wait for start-vm", "waiting", recheck=recheck)

    run(MESSAGE, ScriptedAction(waiting), idempotency, transport)

    assert transport.sent[0].delay == expected


def test_later_follow_ups_count_on_and_keep_when_the_operation_began(idempotency, transport):
    first = MESSAGE.follow_up(waiting_since="2026-11-22T01:31:00Z")

    run(first, ScriptedAction(BEGUN), idempotency, transport)

    second = transport.sent[0].message
    assert (second.attempt, second.checks, second.waiting_since) == (1, 2, "2026-11-22T01:31:00Z")


def test_follow_up_message_ids_are_deterministic_and_differ_from_the_original(idempotency, transport):
    ids = []
    message = MESSAGE
    for _ in range(3):
        run(message, ScriptedAction(BEGUN), idempotency, transport)
        message = transport.take()[0].message
        ids.append(message.message_id)

    base = f"{MESSAGE.run_key}:{MESSAGE.task_id}:1"
    assert MESSAGE.message_id == base
    assert ids == [f"{base}:check:1", f"{base}:check:2", f"{base}:check:3"]


def test_the_follow_up_that_finds_the_operation_done_finishes_the_task(idempotency, transport, reported):
    run(MESSAGE, ScriptedAction(BEGUN), idempotency, transport)
    follow_up = transport.take()[0].message

    outcome = run(follow_up, ScriptedAction(OK), idempotency, transport, reported=reported)

    assert reported == [outcome] and transport.sent == []
    assert (outcome.status, outcome.attempts) == (TaskStatus.SUCCEEDED, 1)
    assert idempotency.records[KEY].status is IdempotencyStatus.COMPLETED


def test_a_follow_up_of_a_task_finished_by_a_duplicate_is_ignored(idempotency, transport):
    run(MESSAGE, ScriptedAction(BEGUN), idempotency, transport)
    follow_up = transport.take()[0].message
    run(MESSAGE, ScriptedAction(OK), idempotency, transport)  # the original, delivered again
    late = ScriptedAction(OK)

    assert run(follow_up, late, idempotency, transport) is None
    assert late.calls == [] and transport.sent == []


@pytest.mark.parametrize("waited", [timedelta(minutes=29), MAX_OPERATION_WAIT - timedelta(seconds=2)])
def test_an_operation_within_the_wait_limit_is_followed_up_again(idempotency, transport, reported, waited):
    message = MESSAGE.follow_up(waiting_since=format_time(T0 - waited))

    outcome = run(message, ScriptedAction(BEGUN), idempotency, transport, reported=reported)

    # Reported in-progress on the first look already: a later look sends only the next one.
    assert outcome is None and reported == []
    assert [s.message.checks for s in transport.sent] == [2]


def test_an_operation_past_the_wait_limit_fails_the_task(idempotency, transport, reported):
    message = MESSAGE.follow_up(waiting_since=format_time(T0 - MAX_OPERATION_WAIT))
    still = FollowUp("start VM", "starting", {"power_state_before": "deallocated"})

    outcome = run(message, ScriptedAction(still), idempotency, transport, reported=reported)

    assert reported == [outcome] and transport.sent == []  # no further follow-up
    assert outcome.status is TaskStatus.FAILED
    assert outcome.detail == "start VM did not finish within 30 minutes; last seen: starting"
    assert outcome.data == {"power_state_before": "deallocated"}
    assert idempotency.records[KEY].status is IdempotencyStatus.COMPLETED


def test_an_operation_that_finished_late_still_succeeds(idempotency, transport):
    message = MESSAGE.follow_up(waiting_since=format_time(T0 - 2 * MAX_OPERATION_WAIT))

    outcome = run(message, ScriptedAction(OK), idempotency, transport)

    assert outcome.status is TaskStatus.SUCCEEDED


def test_a_transient_error_on_a_follow_up_uses_an_attempt_and_starts_the_next_afresh(idempotency, transport):
    message = MESSAGE.follow_up(waiting_since="2026-11-22T01:31:00Z").follow_up(waiting_since="ignored")

    outcome = run(message, ScriptedAction(TransientError("the VM is deallocated again")), idempotency, transport)

    requeued = transport.sent[0].message
    assert (requeued.attempt, requeued.checks, requeued.waiting_since) == (2, 0, None)
    assert requeued.message_id == f"{MESSAGE.run_key}:{MESSAGE.task_id}:2"
    assert outcome.status is TaskStatus.RETRYING and outcome.attempts == 1


# -- recording the outcome ------------------------------------------------------------------


class FailingRecorder:
    """A recorder whose storage fails the first ``failures`` times, then records."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.recorded: list[TaskOutcome] = []

    def __call__(self, outcome: TaskOutcome) -> None:
        if self.failures:
            self.failures -= 1
            raise TransientError("table storage answered 503")
        self.recorded.append(outcome)


def _run_with(recorder, message, action, idempotency, transport, delivery=None):
    return run_task(
        message,
        action,
        idempotency=idempotency,
        transport=transport,
        report=recorder,
        retry=RETRY,
        check_interval=CHECK_INTERVAL,
        now=Clock(T0),
        delivery=delivery or Delivery(),
    )


def test_a_final_outcome_that_cannot_be_recorded_is_raised_and_the_redelivery_records_it(idempotency, transport):
    recorder = FailingRecorder(failures=1)
    action = ScriptedAction(OK, OK)

    with pytest.raises(TransientError):
        _run_with(recorder, MESSAGE, action, idempotency, transport)

    assert KEY not in idempotency.records  # released: not remembered as done, so not lost
    outcome = _run_with(recorder, MESSAGE, action, idempotency, transport)  # the platform's redelivery
    assert len(action.calls) == 2  # the (idempotent) action is done again
    assert recorder.recorded == [outcome] and outcome.status is TaskStatus.SUCCEEDED
    assert idempotency.records[KEY].status is IdempotencyStatus.COMPLETED


@pytest.mark.parametrize(
    "answer", [BEGUN, Throttled("429", retry_after=timedelta(seconds=5))], ids=["follow-up", "retry"]
)
def test_a_passing_state_that_cannot_be_recorded_sends_nothing_on(idempotency, transport, answer):
    """The next message goes only once the state before it is recorded: the redelivery of this one
    carries the task on instead, so no delivery runs beside a second copy of itself."""
    recorder = FailingRecorder(failures=1)

    with pytest.raises(TransientError):
        _run_with(recorder, MESSAGE, ScriptedAction(answer), idempotency, transport)

    assert transport.sent == [] and recorder.recorded == []
    assert KEY not in idempotency.records


def test_a_failure_on_the_last_delivery_that_cannot_be_recorded_raises_the_actions_error(idempotency, transport):
    recorder = FailingRecorder(failures=1)

    with pytest.raises(KeyError):
        _run_with(recorder, MESSAGE, ScriptedAction(KeyError("bug")), idempotency, transport, Delivery(5, 5))

    assert KEY not in idempotency.records
