"""One name per concept: bindings, ``shared/names.py``, the sample settings and host.json agree.

Also the cold-start contract: importing the function app loads no Azure management, identity
or storage SDK (they are imported on first use).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import function_app
from shared.names import (
    INTAKE_FUNCTION,
    SERVICEBUS_CONNECTION,
    STORAGE_CONNECTION,
    STORAGE_MAX_DEQUEUE_COUNT,
    QueueName,
    SettingName,
)
from shared.settings import ServiceBusSettlement, Transport

ROOT = Path(function_app.__file__).resolve().parent
LOCAL_SETTINGS = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
HOST = json.loads((ROOT / "host.json").read_text())
QUEUE_NAMES = {queue.value for queue in QueueName}


def bindings_of(
    transport: Transport, settlement: ServiceBusSettlement = ServiceBusSettlement.EXPLICIT
) -> dict[str, list[dict]]:
    """Binding dicts per function, from a new app object (get_functions() once per app)."""
    app = function_app.build_app(transport, settlement)
    return {
        function.get_function_name(): [binding.get_dict_repr() for binding in function.get_bindings()]
        for function in app.get_functions()
    }


STORAGE_APP = bindings_of(Transport.STORAGE)
SERVICEBUS_APP = bindings_of(Transport.SERVICEBUS)
SERVICEBUS_CLASSIC_APP = bindings_of(Transport.SERVICEBUS, ServiceBusSettlement.CLASSIC)
ALL_APPS = pytest.mark.parametrize(
    "app", [STORAGE_APP, SERVICEBUS_APP, SERVICEBUS_CLASSIC_APP], ids=["storage", "servicebus", "servicebus-classic"]
)


def triggers(app: dict[str, list[dict]]) -> dict[str, dict]:
    found = {}
    for name, bindings in app.items():
        [trigger] = [b for b in bindings if str(b["type"]).endswith("Trigger")]
        found[name] = trigger
    return found


def queues_by_trigger_type(app: dict[str, list[dict]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for trigger in triggers(app).values():
        if "queueName" in trigger:
            found.setdefault(trigger["type"], []).append(trigger["queueName"])
    return {kind: sorted(names) for kind, names in found.items()}


def is_set(name: str, values: dict[str, str]) -> bool:
    """A connection is set by its own name or by identity-based ``NAME__...`` settings."""
    return bool(values.get(name)) or any(key.startswith(f"{name}__") and values[key] for key in values)


@ALL_APPS
def test_every_queue_binding_names_a_queue_from_names(app):
    for name, trigger in triggers(app).items():
        if trigger["type"] in ("queueTrigger", "serviceBusTrigger"):
            assert trigger["queueName"] in QUEUE_NAMES, name


@ALL_APPS
def test_every_connection_is_the_one_for_its_service(app):
    expected = {"queueTrigger": STORAGE_CONNECTION, "serviceBusTrigger": SERVICEBUS_CONNECTION}
    for name, trigger in triggers(app).items():
        if trigger["type"] in expected:
            assert trigger["connection"] == expected[trigger["type"]], name


def test_storage_transport_listens_to_every_queue_once_on_storage():
    assert queues_by_trigger_type(STORAGE_APP) == {"queueTrigger": sorted(QUEUE_NAMES)}


@pytest.mark.parametrize("app", [SERVICEBUS_APP, SERVICEBUS_CLASSIC_APP], ids=["explicit", "classic"])
def test_servicebus_transport_moves_plans_and_vm_tasks_only(app):
    assert queues_by_trigger_type(app) == {
        "queueTrigger": sorted([QueueName.MONITORING.value, QueueName.OUTCOMES.value]),
        "serviceBusTrigger": sorted([QueueName.PLAN.value, QueueName.VM_TASKS.value]),
    }


def test_explicit_settlement_turns_auto_complete_off_on_service_bus_triggers_only():
    flags = {name: t.get("autoCompleteMessages") for name, t in triggers(SERVICEBUS_APP).items()}
    assert {name: flag for name, flag in flags.items() if flag is not None} == {
        "plan_servicebus_queue": False,
        "vm_tasks_servicebus_queue": False,
    }


@ALL_APPS
def test_the_intake_is_an_event_grid_trigger_under_its_documented_name(app):
    assert triggers(app)[INTAKE_FUNCTION]["type"] == "eventGridTrigger"


def test_poison_queue_names_follow_the_host_convention():
    for queue in QueueName:
        assert queue.poison == f"{queue.value}-poison"


def test_queue_names_are_valid_for_storage_and_service_bus():
    for name in QUEUE_NAMES:
        # Storage: 3-63 lower-case letters, digits and single hyphens, not at either end.
        assert 3 <= len(name) <= 63
        assert name == name.lower() and name.replace("-", "").isalnum()
        assert "--" not in name and not name.startswith("-") and not name.endswith("-")
        assert len(f"{name}-poison") <= 63


def test_every_connection_named_by_a_binding_is_set_in_the_sample_settings():
    sample_transport = Transport(LOCAL_SETTINGS[SettingName.TRANSPORT.value])
    app = STORAGE_APP if sample_transport is Transport.STORAGE else SERVICEBUS_APP

    connections = {t["connection"] for t in triggers(app).values() if "connection" in t}

    assert connections
    missing = sorted(name for name in connections if not is_set(name, LOCAL_SETTINGS))
    assert missing == [], f"local.settings.sample.json does not set {missing}"


def test_every_setting_name_is_in_the_sample_settings():
    missing = sorted(name.value for name in SettingName if name.value not in LOCAL_SETTINGS)

    assert missing == [], f"local.settings.sample.json lacks {missing}"


def test_the_sample_settings_are_valid():
    from shared.settings import Settings

    Settings.from_environ(LOCAL_SETTINGS)


def test_host_json_max_dequeue_count_matches_names():
    assert HOST["extensions"]["queues"]["maxDequeueCount"] == STORAGE_MAX_DEQUEUE_COUNT


def test_host_json_expects_the_base64_messages_the_transport_sends():
    assert HOST["extensions"]["queues"].get("messageEncoding", "base64") == "base64"


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"PREPOST_TRANSPORT": "servicebus"},
        {"PREPOST_TRANSPORT": "servicebus", "PREPOST_SERVICEBUS_SETTLEMENT": "classic"},
    ],
    ids=["storage", "servicebus-explicit", "servicebus-classic"],
)
def test_importing_the_function_app_loads_no_heavy_sdk(settings):
    # A fresh interpreter: this test process has imported everything already. The explicit
    # Service Bus binding loads azure.servicebus (the worker needs its types), nothing else.
    code = (
        "import function_app, sys; print(sorted(m for m in sys.modules if m.startswith('azure.mgmt') or "
        "m.startswith('azure.identity') or m.startswith('azure.data') or m.startswith('azure.storage')))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREPOST_")}
    env.update(settings)
    env["PYTHONPATH"] = str(ROOT)
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    loaded = ast.literal_eval(completed.stdout.strip().splitlines()[-1])
    assert loaded == [], f"imported at cold start: {loaded}"
