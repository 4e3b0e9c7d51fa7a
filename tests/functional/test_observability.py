"""Log records carry the run, phase, task and queue as attributes; metrics are logged per run.

The functions are called as the host calls them (see test_functions.py), with the app's own
logging setup from ``function_app`` (the record factory is installed at its import).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from azure.functions.queue import QueueMessage

import function_app
from shared.handlers import MESSAGE_PARKED
from shared.models.messages import CheckPreDeadline, PlanPhase, TaskMessage
from shared.models.run import Action, Phase, TaskStatus
from shared.names import QueueName
from shared.observability.context import DIMENSIONS, current_dimensions, log_context
from shared.observability.metrics import PHASE_FINISHED, RUN_CANCELLED, TASK_FINISHED
from shared.ports.azure import PowerState
from shared.settings import Settings, Transport
from tests.fakes_azure import PRE_SAMPLE
from tests.functional.conftest import estate_behind_the_app
from tests.functional.test_functions import SETTINGS, call_intake, pump

FUNCTIONS = {f.get_function_name(): f for f in function_app.build_app(Transport.STORAGE).get_functions()}


@pytest.fixture
def estate():
    with estate_behind_the_app(SETTINGS) as estate:
        yield estate


def call_vm_tasks(body: str) -> None:
    FUNCTIONS["vm_tasks_storage_queue"].get_user_function()(QueueMessage(id="m-1", body=body, dequeue_count=1))


def of(caplog, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


def test_every_record_carries_the_dimensions_and_a_task_record_names_its_run_phase_task_and_queue(estate, caplog):
    vm = estate.add_vm("vm-web-01", power_state=PowerState.DEALLOCATED)
    caplog.set_level(logging.INFO)

    call_intake(PRE_SAMPLE)
    pump(estate)

    assert caplog.records
    for record in caplog.records:
        for name in DIMENSIONS:
            assert isinstance(getattr(record, name), str), (record.name, name)
    start = TaskMessage(run_key=estate.key, phase=Phase.PRE, action=Action.START_VM, target=vm)
    finished = [r for r in of(caplog, "shared.usecases.task_runner") if r.task == start.task_id]
    assert finished, "the task runner logged nothing for the VM start"
    for record in finished:
        assert (record.run_key, record.phase, record.queue) == (estate.key, "pre", QueueName.VM_TASKS.value)


def test_tasks_by_outcome_and_the_phase_duration_are_logged_as_metrics(estate, caplog):
    estate.add_vm("vm-web-01", power_state=PowerState.DEALLOCATED)
    caplog.set_level(logging.INFO)

    call_intake(PRE_SAMPLE)
    pump(estate)

    metrics = of(caplog, "shared.metrics")
    tasks = [r for r in metrics if r.event == TASK_FINISHED]
    recorded = [t for t in estate.tasks(Phase.PRE) if t.status.is_final]
    assert sorted((r.action, r.outcome) for r in tasks) == sorted((t.action.value, t.status.value) for t in recorded)
    assert all(r.run_key == estate.key and r.phase == "pre" for r in tasks)
    (phase,) = [r for r in metrics if r.event == PHASE_FINISHED]
    assert (phase.run_key, phase.phase, phase.status) == (estate.key, "pre", "completed")
    assert phase.duration_s >= 0 and phase.failed_tasks == 0
    assert all(t.status is not TaskStatus.FAILED for t in recorded)


def test_a_cancellation_is_logged_as_a_metric_with_its_run(estate, caplog):
    estate.add_vm("vm-web-01")
    call_intake(PRE_SAMPLE)
    call_queue = FUNCTIONS["plan_storage_queue"].get_user_function()
    call_queue(QueueMessage(id="p", body=PlanPhase(run_key=estate.key, phase=Phase.PRE).to_json(), dequeue_count=1))
    caplog.set_level(logging.INFO)
    estate.clock.moment = estate.event.cancel_deadline(timedelta(minutes=2))  # the default margin

    call_queue(QueueMessage(id="d", body=CheckPreDeadline(run_key=estate.key).to_json(), dequeue_count=1))

    (cancelled,) = [r for r in of(caplog, "shared.metrics") if r.event == RUN_CANCELLED]
    assert cancelled.run_key == estate.key and cancelled.accepted is True
    assert cancelled.queue == QueueName.PLAN.value


def test_a_parked_message_is_logged_with_its_queue_and_event(estate, caplog):
    caplog.set_level(logging.INFO)

    call_vm_tasks(TaskMessage(run_key="no-such-run", action=Action.START_VM, target="x").to_json())

    (parked,) = [r for r in caplog.records if getattr(r, "event", None) == MESSAGE_PARKED]
    assert parked.levelno == logging.ERROR
    assert (parked.queue, parked.run_key) == (QueueName.VM_TASKS.value, "no-such-run")
    assert estate.storage.parked and "no such run" in estate.storage.parked[0][2]


def test_dimensions_nest_and_are_restored_after_the_block():
    with log_context(queue="q"):
        with log_context(run_key="r", phase="pre"):
            assert current_dimensions() == {"run_key": "r", "phase": "pre", "task": "", "queue": "q"}
        assert current_dimensions() == {"run_key": "", "phase": "", "task": "", "queue": "q"}
    assert current_dimensions() == dict.fromkeys(DIMENSIONS, "")
    with pytest.raises(ValueError, match="unknown log dimensions"), log_context(colour="blue"):
        pass


def test_settings_refuse_a_telemetry_value_that_is_neither_on_nor_off():
    from shared.errors import SettingsError

    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PREPOST_ALLOWED_CONFIGURATIONS": "*"}
    base["PREPOST_ALLOWED_SUBSCRIPTIONS"] = "*"
    with pytest.raises(SettingsError, match="PREPOST_TELEMETRY"):
        Settings.from_environ({**base, "PREPOST_TELEMETRY": "maybe"})
    assert Settings.from_environ({**base, "PREPOST_TELEMETRY": "on"}).telemetry is False  # no connection string
    on = {**base, "PREPOST_TELEMETRY": "on", "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}
    assert Settings.from_environ(on).telemetry is True


def test_an_outcome_for_a_task_never_recorded_is_parked_at_once(estate):
    from shared.models.messages import TaskOutcome

    forged = TaskOutcome(
        run_key=estate.key,
        phase=Phase.PRE,
        action=Action.SNAPSHOT_DISKS,
        target="/subscriptions/x/vm",
        status=TaskStatus.FAILED,
    )
    FUNCTIONS["outcomes_storage_queue"].get_user_function()(
        QueueMessage(id="o", body=forged.to_json(), dequeue_count=1)
    )

    [(queue, _, reason)] = estate.storage.parked
    assert queue is QueueName.OUTCOMES and "unknown task" in reason
    assert estate.cancellation.calls == []
