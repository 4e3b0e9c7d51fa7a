"""``prepost preflight`` as a CI pipeline runs it: a separate process against the local stack's
management-API simulator, judged by its exit code and its output.

The estate's configuration has one machine assigned by name and a dynamic scope (one resource
group, Linux, tag ``patch-group=a``); the other machines must not be checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prepost.simulator import Estate, SimulatorServer
from prepost.simulator.estate import ConfigurationAssignment, OsType

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTION = "4a1c6e2b-9d3f-4b7a-8e5c-1f2a3b4c5d6e"


def vm(name: str, group: str, **spec) -> dict:
    resource_group = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}"
    return {"id": f"{resource_group}/providers/Microsoft.Compute/virtualMachines/{name}", **spec}


def estate_with(*, full_disk: bool, tags: dict[str, str] | None = None) -> Estate:
    machines = [
        vm("vm-named", "rg-other", osType="Windows"),
        vm("vm-tagged-1", "rg-app", tags={"patch-group": "a"}, existingSnapshots=500 if full_disk else 0),
        vm("vm-tagged-2", "rg-app", tags={"patch-group": "a"}, patchMode="ImageDefault"),
        vm("vm-other-tag", "rg-app", tags={"patch-group": "b"}),
        vm("vm-windows", "rg-app", osType="Windows", tags={"patch-group": "a"}),
        vm("vm-elsewhere", "rg-other", tags={"patch-group": "a"}),
    ]
    estate = Estate.from_machines(machines, configuration_tags=tags or {})
    configuration = estate.configuration.id
    estate.assignments = [
        ConfigurationAssignment(configuration, "named", machines[0]["id"]),
        ConfigurationAssignment(
            configuration,
            "dynamic-app",
            f"/subscriptions/{SUBSCRIPTION}",
            {
                "resourceTypes": ["Microsoft.Compute/virtualMachines"],
                "resourceGroups": ["rg-app"],
                "osTypes": [OsType.LINUX.value],
                "locations": ["West Europe"],
                "tagSettings": {"tags": {"patch-group": ["a"]}, "filterOperator": "Any"},
            },
        ),
    ]
    return estate


@pytest.fixture
def simulator() -> Iterator:
    servers = []

    def start(estate: Estate) -> tuple[SimulatorServer, str]:
        server = SimulatorServer(estate).start()
        servers.append(server)
        return server, estate.configuration.id

    yield start
    for server in servers:
        server.stop()


def preflight(url: str, configuration: str, *extra: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREPOST_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "prepost.cli",
            "preflight",
            "--configuration",
            configuration,
            "--arm-endpoint",
            url,
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_ready_configuration_exits_0_and_checks_exactly_its_assigned_machines(simulator):
    server, configuration = simulator(estate_with(full_disk=False))

    done = preflight(server.url, configuration, "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    names = {m["machine"].rsplit("/", 1)[-1] for m in report["machines"]}
    assert names == {"vm-named", "vm-tagged-1", "vm-tagged-2"}
    assert report["assignments"] == {"machines": 1, "dynamicScopes": 1}
    assert report["gate"]["verdict"] == "proceed" and report["gate"]["wouldCancel"] is False
    unsafe = next(m for m in report["machines"] if m["machine"].endswith("vm-tagged-2"))
    assert unsafe["worst"] == "warning" and unsafe["findings"][0]["kind"] == "patch-mode-unsafe"


def test_a_blocking_finding_exits_3_and_says_the_run_would_be_cancelled(simulator):
    server, configuration = simulator(estate_with(full_disk=True))

    done = preflight(server.url, configuration)

    assert done.returncode == 3, done.stderr
    assert "the run would be cancelled" in done.stdout
    assert "vm-tagged-1" in done.stdout and "500 incremental snapshots" in done.stdout


def test_a_blocking_finding_within_the_budget_exits_0(simulator):
    server, configuration = simulator(estate_with(full_disk=True, tags={"prepost-max-errors": "1"}))

    done = preflight(server.url, configuration, "--json")

    assert done.returncode == 0, done.stderr
    gate = json.loads(done.stdout)["gate"]
    assert gate["verdict"] == "proceed" and [m["machine"].rsplit("/", 1)[-1] for m in gate["failing"]] == [
        "vm-tagged-1"
    ]


def test_a_configuration_that_cannot_be_read_exits_1(simulator):
    server, configuration = simulator(estate_with(full_disk=False))

    done = preflight(server.url, configuration.replace("mc-weekly", "mc-gone"))

    assert done.returncode == 1
    assert "could not check" in done.stderr
