"""The Service Bus trigger modules depend on the shared delivery path, never on each other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["functions.servicebus_explicit", "functions.servicebus_queues", "functions.servicebus_delivery"]


@pytest.mark.parametrize("module", MODULES)
def test_importing_one_service_bus_module_loads_no_other_trigger_module(module):
    # A fresh interpreter: in this process the modules may all be imported already.
    others = [other for other in MODULES if other not in (module, "functions.servicebus_delivery")]
    code = f"import sys, {module}; print(sorted(m for m in {others!r} if m in sys.modules))"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "[]"
