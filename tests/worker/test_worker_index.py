"""The function app indexed by the Python worker's own library, in every transport and settlement mode.

``tests/worker/index_app.py`` runs in ``.venv-worker`` (Python 3.13, azure-functions-runtime,
built by :mod:`tests.worker.worker_venv`) and answers the host's ``WorkerInitRequest`` and
``FunctionsMetadataRequest`` exactly as the worker would, with the protocol's own messages. The
tests check the raw bindings the host receives, and what happens with a worker that has no
settlement client: its indexing fails for the whole app, the Event Grid intake included.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from shared.names import (
    INTAKE_FUNCTION,
    READINESS_FUNCTION,
    READINESS_SCHEDULE,
    SERVICEBUS_CONNECTION,
    STORAGE_CONNECTION,
    QueueName,
    SettingName,
)
from tests.worker import worker_venv

HERE = Path(__file__).resolve().parent
CURRENT = "current"
PRE_SETTLEMENT = "pre-settlement"

# Function names as the app registers them (functions/storage_queues.py, functions/servicebus_delivery.py).
PLAN_STORAGE, VM_TASKS_STORAGE = "plan_storage_queue", "vm_tasks_storage_queue"
PLAN_SERVICEBUS, VM_TASKS_SERVICEBUS = "plan_servicebus_queue", "vm_tasks_servicebus_queue"


@pytest.fixture(scope="session")
def worker_python() -> Path:
    return worker_venv.ensure()


def index(worker_python: Path, tmp_path: Path, *, runtime: str = CURRENT, **settings: str | None) -> dict:
    """What the worker answers the host for the app under ``settings`` (None: the setting unset)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREPOST_")}
    env.update({key: value for key, value in settings.items() if value is not None})
    out = tmp_path / f"index-{runtime}-{'-'.join(str(v) for v in settings.values())}.json"
    extra = [str(worker_venv.PRE_SETTLEMENT_PATH)] if runtime == PRE_SETTLEMENT else []
    done = subprocess.run(
        [str(worker_python), str(HERE / "index_app.py"), str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def settings(transport: str, settlement: str | None) -> dict[str, str | None]:
    return {SettingName.TRANSPORT.value: transport, SettingName.SERVICEBUS_SETTLEMENT.value: settlement}


def storage_trigger(queue: QueueName) -> dict:
    return {
        "direction": "IN",
        "type": "queueTrigger",
        "name": "msg",
        "queueName": queue.value,
        "connection": STORAGE_CONNECTION,
    }


ALWAYS = {
    INTAKE_FUNCTION: [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}],
    "monitoring_storage_queue": [storage_trigger(QueueName.MONITORING)],
    "outcomes_storage_queue": [storage_trigger(QueueName.OUTCOMES)],
    # The daily readiness check (functions/readiness_timer.py); the schedule lock (useMonitor)
    # keeps two instances from running it at once.
    READINESS_FUNCTION: [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": READINESS_SCHEDULE,
            "runOnStartup": False,
            "useMonitor": True,
        }
    ],
}
STORAGE_WORK = {
    PLAN_STORAGE: [storage_trigger(QueueName.PLAN)],
    VM_TASKS_STORAGE: [storage_trigger(QueueName.VM_TASKS)],
}


def classic_trigger(queue: QueueName) -> dict:
    """``func.ServiceBusMessage``: the host completes on return and abandons on error (auto-complete)."""
    return {
        "direction": "IN",
        "type": "serviceBusTrigger",
        "name": "msg",
        "connection": SERVICEBUS_CONNECTION,
        "queueName": queue.value,
    }


def explicit_trigger(queue: QueueName) -> dict:
    """The SDK-type binding: deferred binding, auto-complete off, the function settles."""
    return {
        "direction": "IN",
        "type": "serviceBusTrigger",
        "name": "message",
        "connection": SERVICEBUS_CONNECTION,
        "queueName": queue.value,
        "autoCompleteMessages": False,
        "properties": {"SupportsDeferredBinding": True},
    }


CLASSIC_WORK = {
    PLAN_SERVICEBUS: [classic_trigger(QueueName.PLAN)],
    VM_TASKS_SERVICEBUS: [classic_trigger(QueueName.VM_TASKS)],
}
EXPLICIT_WORK = {
    PLAN_SERVICEBUS: [explicit_trigger(QueueName.PLAN)],
    VM_TASKS_SERVICEBUS: [explicit_trigger(QueueName.VM_TASKS)],
}

MODES = {
    # (PREPOST_TRANSPORT, PREPOST_SERVICEBUS_SETTLEMENT): what the host receives
    ("storage", None): {**ALWAYS, **STORAGE_WORK},
    ("storage", "explicit"): {**ALWAYS, **STORAGE_WORK},  # settlement only matters on Service Bus
    ("servicebus", "classic"): {**ALWAYS, **CLASSIC_WORK},
    ("servicebus", "explicit"): {**ALWAYS, **EXPLICIT_WORK},
    ("servicebus", None): {**ALWAYS, **CLASSIC_WORK},  # classic is the default
}


def raw_bindings(answer: dict) -> dict[str, list[dict]]:
    return {function["name"]: function["raw_bindings"] for function in answer["functions"]}


@pytest.mark.parametrize(("transport", "settlement"), list(MODES), ids=[f"{t}-{s or 'default'}" for t, s in MODES])
def test_the_worker_indexes_every_mode_and_the_host_receives_these_bindings(
    worker_python, tmp_path, transport, settlement
):
    answer = index(worker_python, tmp_path, **settings(transport, settlement))
    assert answer["runtime"] == "1.3.0"
    assert answer["init"] == {"status": "Success", "exception": ""}
    assert answer["metadataStatus"] == "Success"
    assert raw_bindings(answer) == MODES[(transport, settlement)]
    for function in answer["functions"]:
        # What the host loads: the script, the entry point, one BindingInfo per raw binding, worker-indexed.
        assert function["script_file"] == "function_app.py"
        assert function["entry_point"] == function["name"]
        assert function["language"] == "python"
        assert set(function["bindings"]) == {binding["name"] for binding in function["raw_bindings"]}
        assert {binding["direction"] for binding in function["bindings"].values()} == {"in"}
        assert function["properties"] == {"worker_indexed": "True"}


def test_function_ids_are_stable_across_modes(worker_python, tmp_path):
    """The worker derives ids from names: the intake keeps its id whatever the transport."""
    ids = [
        {f["name"]: f["function_id"] for f in index(worker_python, tmp_path, **settings(t, s))["functions"]}
        for t, s in [("storage", None), ("servicebus", "explicit")]
    ]
    assert ids[0][INTAKE_FUNCTION] == ids[1][INTAKE_FUNCTION]


def test_a_worker_without_settlement_client_fails_the_whole_explicit_app(worker_python, tmp_path):
    """All or nothing: one unbound parameter fails the init, and the host gets no function at all."""
    answer = index(worker_python, tmp_path, runtime=PRE_SETTLEMENT, **settings("servicebus", "explicit"))
    assert answer["runtime"] == worker_venv.PRE_SETTLEMENT_RUNTIME
    assert answer["init"]["status"] == "Failure"
    assert answer["init"]["exception"].startswith("FunctionLoadError: cannot load the ")
    assert (
        "declared in Python but missing from the function decorator: {'message_actions'}"
        in (answer["init"]["exception"])
    )
    assert answer["functions"] == []  # the Event Grid intake went down with it


@pytest.mark.parametrize(
    ("transport", "settlement"), [("servicebus", "classic"), ("servicebus", None), ("storage", None)]
)
def test_the_default_and_classic_modes_load_on_a_worker_without_settlement_client(
    worker_python, tmp_path, transport, settlement
):
    answer = index(worker_python, tmp_path, runtime=PRE_SETTLEMENT, **settings(transport, settlement))
    assert answer["runtime"] == worker_venv.PRE_SETTLEMENT_RUNTIME
    assert answer["init"] == {"status": "Success", "exception": ""}
    assert raw_bindings(answer) == MODES[(transport, settlement)]
