"""OpenTelemetry is behind a setting: off, importing the app imports nothing of it.

Each case imports ``function_app`` in a fresh interpreter (``sys.modules`` of this one has
seen other tests), then reports which OpenTelemetry modules are loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.observability.telemetry import telemetry_wanted

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
import function_app
from shared.observability import metrics, telemetry
metrics.task_finished("run-1", "pre", "start-vm", "succeeded", 1)
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry" or m.startswith("azure.monitor"))
print(json.dumps({"enabled": telemetry.telemetry_enabled(), "loaded": loaded}))
"""
# Ingestion goes to a closed loopback port: nothing leaves the machine.
CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"


def import_app(tmp_path: Path, **settings: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREPOST_", "APPLICATIONINSIGHTS_"))}
    # The exporter keeps unsent telemetry in the temp directory: this test's own.
    env.update(settings, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"PREPOST_TELEMETRY": "off", "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION},
        {"PREPOST_TELEMETRY": "on"},  # no connection string: nowhere to send
    ],
    ids=["unset", "off", "on-without-connection-string"],
)
def test_telemetry_off_imports_nothing_of_opentelemetry(tmp_path, settings):
    result = import_app(tmp_path, **settings)
    assert result == {"enabled": False, "loaded": []}


def test_telemetry_on_configures_the_azure_monitor_distro_and_records_metrics(tmp_path):
    result = import_app(tmp_path, PREPOST_TELEMETRY="on", APPLICATIONINSIGHTS_CONNECTION_STRING=CONNECTION)
    assert result["enabled"] is True
    assert "azure.monitor.opentelemetry" in result["loaded"]
    assert "opentelemetry.sdk.metrics" in result["loaded"]


def test_a_telemetry_value_that_is_neither_on_nor_off_is_an_error():
    with pytest.raises(SettingsError, match="PREPOST_TELEMETRY"):
        telemetry_wanted({"PREPOST_TELEMETRY": "sometimes"})
    assert telemetry_wanted({"PREPOST_TELEMETRY": "ON", "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})


def test_an_invalid_telemetry_value_does_not_stop_the_app_from_indexing(tmp_path):
    result = import_app(tmp_path, PREPOST_TELEMETRY="sometimes")
    assert result == {"enabled": False, "loaded": []}
