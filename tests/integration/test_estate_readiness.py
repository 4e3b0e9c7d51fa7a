"""An estate file's readiness facts, seen by ``prepost preflight`` on a stack seeded from it.

GIVEN an estate file declaring an unready VM agent, a failed extension, an old Arc agent, a disk
at the snapshot limit, a machine assigned by name and a dynamic scope, loaded into a stack as
``prepost local up --estate`` loads it (Azurite, the simulator, the app in the runner, the
state file); WHEN ``prepost preflight --configuration ID`` runs against it; THEN exactly the
machines the file assigns are checked, each with the findings the file declares, and the exit
code says whether the gate would cancel. ``prepost estate export`` of that stack, plain or
anonymised, rehearses the same findings in a fresh stack.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prepost.cli import main
from prepost.estate import load_estate, to_simulator
from prepost.estate.anonymise import anonymise
from prepost.estate.export import export_estate, read_only_clients
from prepost.estate.writer import estate_to_json
from prepost.local.host_config import REPO_ROOT
from prepost.local.state import StackState
from shared.settings import ArmAuth

pytestmark = pytest.mark.integration

SUB = "7c3e9a1b-2d4f-4e6a-9b8c-0d1e2f3a4b5c"
RG = f"/subscriptions/{SUB}/resourceGroups"
CONFIG = f"{RG}/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations/mc-app"
OLD_ARC_AGENT = "1.36.02680.1549"  # released November 2023: unsupported a year later


def vm(name: str, group: str = "rg-app", os_type: str = "Linux", tags: dict | None = None, **extra) -> dict:
    return {
        "id": f"{RG}/{group}/providers/Microsoft.Compute/virtualMachines/{name}",
        "location": "westeurope",
        "osType": os_type,
        "tags": {"patch-group": "a"} if tags is None else tags,
        **extra,
    }


def arc(name: str, **extra) -> dict:
    return {
        "id": f"{RG}/rg-onprem/providers/Microsoft.HybridCompute/machines/{name}",
        "location": "westeurope",
        "osType": "Linux",
        **extra,
    }


def estate_file(*, snapshots_on_full_disk: int = 500) -> dict:
    failed = {
        "name": "CustomScript",
        "type": "CustomScript",
        "publisher": "Microsoft.Azure.Extensions",
        "provisioningState": "Failed",
        "message": "Enable failed: /opt/app/configure.sh exited with code 2",
    }
    return {
        "version": 1,
        "subscriptions": [{"id": SUB}],
        "vms": [
            vm("vm-agent", vmAgent={"status": "Not Ready", "message": "guest agent heartbeat lost"}),
            vm("vm-ext", extensions=[failed]),
            vm("vm-full", osDisk={"existingSnapshots": snapshots_on_full_disk}),
            vm("vm-ok"),
            # Left out by the dynamic scope (another tag, Windows, another group), whatever they hold.
            vm("vm-tag-b", tags={"patch-group": "b"}, vmAgent={"status": "Not Ready"}),
            vm("vm-windows", os_type="Windows", extensions=[failed]),
            vm("vm-elsewhere", group="rg-other", osDisk={"existingSnapshots": 500}),
        ],
        "arcServers": [
            arc("arc-old", agentVersion=OLD_ARC_AGENT),
            arc("arc-new", agentVersion="1.60.03000.100", agentUpgrade={"enableAutomaticUpgrade": True}),
            arc("arc-unassigned", status="Disconnected", agentVersion=OLD_ARC_AGENT),
        ],
        "maintenanceConfigurations": [
            {"id": CONFIG, "location": "westeurope", "maintenanceWindow": {"startDateTime": "2026-12-06 02:00"}}
        ],
        "configurationAssignments": [
            {"maintenanceConfigurationId": CONFIG, "resourceId": arc("arc-old")["id"]},
            {"maintenanceConfigurationId": CONFIG, "resourceId": arc("arc-new")["id"]},
        ],
        "dynamicScopes": [
            {
                "maintenanceConfigurationId": CONFIG,
                "name": "app-linux",
                "subscriptions": [SUB],
                "filter": {
                    "resourceTypes": ["Microsoft.Compute/virtualMachines"],
                    "resourceGroups": ["rg-app"],
                    "osTypes": ["Linux"],
                    "tagSettings": {"tags": {"patch-group": ["a"]}, "filterOperator": "All"},
                },
            }
        ],
    }


EXPECTED = {
    "vm-agent": {"vm-agent-not-ready"},
    "vm-ext": {"extension-failed"},
    "vm-full": {"snapshot-limit-reached"},
    "vm-ok": set(),
    "arc-old": {"arc-agent-unsupported", "arc-auto-upgrade-off"},
    "arc-new": set(),
}


def up(start_app, path: Path):
    """What ``prepost local up --estate path`` starts, in process, with the state file it writes."""
    estate = load_estate(path)
    app = start_app(to_simulator(estate))
    StackState(
        storage_connection=app.connection_string,
        webhook_url=app.webhook_url,
        simulator_url=app.sim.url,
        configuration_id=estate.configurations[0].id,
        subscription_ids=estate.subscription_ids,
        estate_file=str(path),
    ).save()
    return app


def write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def preflight(capsys, configuration: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["preflight", "--configuration", configuration, "--json"])
    return code, json.loads(capsys.readouterr().out)


def findings_by_machine(report: dict) -> dict[str, set[str]]:
    return {m["machine"].rsplit("/", 1)[-1]: {f["kind"] for f in m["findings"]} for m in report["machines"]}


def test_preflight_sees_exactly_the_declared_estate_and_exits_3_on_the_full_disk(start_app, tmp_path, capsys):
    up(start_app, write(tmp_path, "estate.json", estate_file()))

    code, report = preflight(capsys, CONFIG)

    assert code == 3
    assert report["assignments"] == {"machines": 2, "dynamicScopes": 1}
    assert findings_by_machine(report) == EXPECTED
    assert [m["machine"].rsplit("/", 1)[-1] for m in report["gate"]["failing"]] == ["vm-full"]
    assert report["gate"]["verdict"] == "cancel" and report["gate"]["wouldCancel"] is True
    messages = {m["machine"].rsplit("/", 1)[-1]: [f["message"] for f in m["findings"]] for m in report["machines"]}
    # The file's own words reach the findings: the agent's status and message, the extension's failure.
    assert any("Not Ready" in text and "guest agent heartbeat lost" in text for text in messages["vm-agent"])
    assert any("CustomScript" in text and "configure.sh exited with code 2" in text for text in messages["vm-ext"])
    assert any(OLD_ARC_AGENT in text for text in messages["arc-old"])
    assert any("500 incremental snapshots" in text for text in messages["vm-full"])


def test_warnings_alone_let_the_run_proceed_with_exit_0(start_app, tmp_path, capsys):
    up(start_app, write(tmp_path, "estate.json", estate_file(snapshots_on_full_disk=495)))

    code, report = preflight(capsys, CONFIG)

    assert code == 0
    assert findings_by_machine(report) == {**EXPECTED, "vm-full": {"snapshot-limit-near"}}
    assert report["gate"]["failing"] == [] and report["gate"]["verdict"] == "proceed"


def test_the_export_round_trip_keeps_the_findings_plain_and_anonymised(start_app, tmp_path, capsys):
    app = up(start_app, write(tmp_path, "estate.json", estate_file()))
    exported, summary = export_estate(read_only_clients(app.sim.url, ArmAuth.SIMULATOR), [CONFIG])
    # Reads only: GETs, and Resource Graph queries (a POST that reads).
    methods = {(r.method, r.operation) for r in app.sim.state.requests()}
    assert {m for m, op in methods if op != "resourcegraph.query"} == {"GET"}, methods
    assert {"vm.get", "arc.extensions.list", "snapshots.list"} <= {op for _, op in methods}
    assert summary.machines_kept == len(EXPECTED) and summary.machines_seen == 10
    plain = write(tmp_path, "exported.json", estate_to_json(exported))
    hidden = write(tmp_path, "anonymised.json", estate_to_json(anonymise(exported, salt="s")))
    assert "configure.sh" not in hidden.read_text() and "vm-agent" not in hidden.read_text()

    up(start_app, plain)
    code, report = preflight(capsys, CONFIG)
    assert code == 3 and findings_by_machine(report) == EXPECTED
    assert report["assignments"] == {"machines": 2, "dynamicScopes": 1}

    anonymised = load_estate(hidden)
    up(start_app, hidden)
    code, report = preflight(capsys, anonymised.configurations[0].id)
    assert code == 3
    # Names are replaced; each machine keeps its findings.
    assert sorted(map(sorted, findings_by_machine(report).values())) == sorted(map(sorted, EXPECTED.values()))
    assert len(report["gate"]["failing"]) == 1


# -- python -m prepost.simulator --estate FILE, and preflight from a separate process ----------


def test_the_simulator_command_serves_an_estate_file_to_a_preflight_in_another_process(tmp_path):
    path = write(tmp_path, "estate.json", estate_file())
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREPOST_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "prepost.simulator", "--estate", str(path), "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), url
        done = subprocess.run(
            [sys.executable, "-m", "prepost.cli", "preflight", "--configuration", CONFIG, "--arm-endpoint", url]
            + ["--json"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)

    assert done.returncode == 3, done.stderr
    assert findings_by_machine(json.loads(done.stdout)) == EXPECTED
    assert server.returncode == 0


def test_the_simulator_command_refuses_a_bad_estate_file_naming_the_field(tmp_path):
    data = estate_file()
    data["vms"][0]["osDisk"] = {"existingSnapshots": "many"}
    path = write(tmp_path, "estate.json", data)

    done = subprocess.run(
        [sys.executable, "-m", "prepost.simulator", "--estate", str(path), "--port", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2 and done.stdout == ""
    assert "vms[0].osDisk.existingSnapshots: must be a whole number" in done.stderr
