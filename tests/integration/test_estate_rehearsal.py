"""Rehearsing a window with one's own estate: export it, load it into a fresh stack, send events.

GIVEN the real function app in the runner, Azurite and the simulator seeded from an estate file
(docs/examples/estate.json, the estate the sample events describe); WHEN events are sent with
``prepost send-event`` as a user would (the CLI finds the stack through its state file); THEN
the run each event names is registered with the estate's machines, and the pipeline works on
exactly those.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from prepost.cli import main
from prepost.estate import load_estate, to_simulator
from prepost.estate.anonymise import anonymise
from prepost.estate.export import export_estate, read_only_clients
from prepost.estate.writer import estate_to_json
from prepost.local.host_config import REPO_ROOT
from prepost.local.state import StackState
from prepost.simulator import SimulatorServer
from prepost.simulator import ids as sim_ids
from shared.clock import OffsetClock
from shared.models.ids import run_key
from shared.models.run import Action, Phase, PhaseStatus
from shared.settings import ArmAuth
from tests.conftest import FIXTURES
from tests.integration.conftest import SAMPLE_NOW

pytestmark = pytest.mark.integration

EXAMPLE = REPO_ROOT / "docs" / "examples" / "estate.json"
EVENTS = FIXTURES / "events"
CONFIG = load_estate(EXAMPLE).configurations[0].id
SAMPLE_RUN = load_estate(EXAMPLE).runs[0].correlation_id


def start_stack(start_app, estate_path: Path, **options):
    """The app on the estate of ``estate_path``, with the state file ``local up`` would write."""
    estate = load_estate(estate_path)
    app = start_app(to_simulator(estate), **options)
    StackState(
        storage_connection=app.connection_string,
        webhook_url=app.webhook_url,
        simulator_url=app.sim.url,
        configuration_id=estate.configurations[0].id,
        subscription_ids=estate.subscription_ids,
        estate_file=str(estate_path),
    ).save()
    return app, estate


def deliveries(app) -> list:
    return list(reversed(app.records.list_deliveries(limit=100)))


def machines_of(app, correlation_id: str) -> set[str]:
    run = next(r for r in app.sim.state.runs_list() if sim_ids.same(r.correlation_id, correlation_id))
    return {sim_ids.key(m) for m in run.resource_ids}


def covered(estate) -> set[str]:
    return {sim_ids.key(m) for m in estate.machines_for(CONFIG)}


# -- the project's own sample events, against a stack on a matching estate ------------------


@pytest.fixture
def at_sample_time():
    from shared.clock import set_clock

    set_clock(OffsetClock(SAMPLE_NOW))
    yield
    set_clock(None)


@pytest.mark.parametrize(
    "sample",
    ["pre-eventgrid-camelcase.json", "pre-eventgrid-pascalcase.json", "pre-cloudevents.json", "post-eventgrid.json"],
)
def test_each_sample_event_is_accepted_by_a_stack_on_the_matching_estate(start_app, at_sample_time, capsys, sample):
    app, estate = start_stack(start_app, EXAMPLE)

    assert main(["send-event", "--file", str(EVENTS / sample)]) == 0

    out = capsys.readouterr().out
    assert f"run {SAMPLE_RUN} is in the simulator (4 machines)" in out
    [delivery] = deliveries(app)
    assert delivery.outcome.value == "accepted", delivery.reason
    phase = Phase.POST if sample.startswith("post") else Phase.PRE
    record = app.wait_phase_final(phase, run_key(SAMPLE_RUN))
    assert record.status is PhaseStatus.COMPLETED
    if phase is Phase.POST:  # alone, a post-event has no pre-work to undo, and says so
        assert any("nothing to undo" in finding for finding in record.findings), record.findings
        return
    # The estate's machines for the configuration, not the test VM its dynamic scope leaves out.
    assert record.machines == len(covered(estate)) == 4
    targets = {sim_ids.key(t.target) for t in app.tasks(phase, run_key(SAMPLE_RUN)) if "/providers/" in t.target}
    assert targets and targets <= covered(estate)


def test_the_unrelated_sample_is_recorded_as_ignored(start_app, at_sample_time):
    app, _ = start_stack(start_app, EXAMPLE)

    assert main(["send-event", "--file", str(EVENTS / "unrelated-resource-write.json")]) == 0

    assert [d.outcome.value for d in deliveries(app)] == ["ignored"]


def test_a_pascalcase_file_with_machines_registers_them(start_app, at_sample_time, capsys):
    app, estate = start_stack(start_app, EXAMPLE)
    machine = estate.vms[0].id

    assert main(["send-event", "--file", str(EVENTS / "pre-eventgrid-pascalcase.json"), "--machines", machine]) == 0

    assert "1 machines from --machines" in capsys.readouterr().out
    assert machines_of(app, SAMPLE_RUN) == {sim_ids.key(machine)}
    assert app.wait_phase_final(Phase.PRE, run_key(SAMPLE_RUN)).machines == 1


# -- the time options and the run `send-event pre` targets (real clock) -----------------------


def test_send_event_pre_start_in_45m_registers_the_run_with_the_estates_machines(start_app, capsys):
    app, estate = start_stack(start_app, EXAMPLE)

    assert main(["send-event", "pre", "--start", "in 45m", "--duration", "3h55m"]) == 0

    out = capsys.readouterr().out
    correlation = next(line.split()[2] for line in out.splitlines() if line.startswith("registered run"))
    start = datetime.strptime(correlation.rsplit("/", 1)[-1], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    assert timedelta(minutes=44) <= start - datetime.now(timezone.utc) <= timedelta(minutes=45)
    assert machines_of(app, correlation) == covered(estate)
    pre = app.wait_phase_final(Phase.PRE, run_key(correlation))
    assert pre.status is PhaseStatus.COMPLETED and pre.machines == 4
    run = app.records.get_run(run_key(correlation))
    assert run.end - run.start == timedelta(hours=3, minutes=55)
    [delivery] = deliveries(app)
    assert delivery.outcome.value == "accepted" and delivery.reason == ""
    # The deallocated VM of the estate is started for the window.
    started = {vm.id.rsplit("/", 1)[-1] for vm in estate.vms if app.sim.state.count("vm.start", vm.id)}
    assert started == {"vm-lnx-batch-02"}
    assert {t.action for t in app.tasks(Phase.PRE, run_key(correlation))} >= {Action.START_VM}


def test_send_event_pre_with_an_absolute_start_and_a_window_in_the_past(start_app, capsys):
    app, _ = start_stack(start_app, EXAMPLE)
    ahead = (datetime.now(timezone.utc) + timedelta(days=2)).replace(hour=2, minute=0, second=0, microsecond=0)

    assert main(["send-event", "pre", "--start", ahead.strftime("%Y-%m-%dT%H:%MZ")]) == 0
    assert main(["send-event", "pre", "--start", "3h ago", "--schema", "cloudevents"]) == 0

    out = capsys.readouterr().out
    assert f"applyupdates/{ahead:%Y%m%d%H%M%S}" in out
    future, past = deliveries(app)
    assert (future.outcome.value, past.outcome.value) == ("accepted", "accepted")
    assert "handled after the cancellation deadline" in past.reason
    assert app.records.get_run(future.run_key).start == ahead


def test_a_bare_send_event_pre_targets_the_next_run_the_simulator_holds(start_app, capsys, tmp_path):
    data = json.loads(EXAMPLE.read_text())
    soon = (datetime.now(timezone.utc) + timedelta(minutes=40)).replace(second=0, microsecond=0)
    later = soon + timedelta(days=7)
    data["runs"] = [
        {"maintenanceConfigurationId": CONFIG, "startDateTime": later.isoformat()},
        {"maintenanceConfigurationId": CONFIG, "startDateTime": soon.isoformat()},
        {"maintenanceConfigurationId": CONFIG, "startDateTime": "2026-01-04T02:00:00Z"},
    ]
    path = tmp_path / "estate.json"
    path.write_text(json.dumps(data))
    app, _ = start_stack(start_app, path)

    assert main(["send-event", "pre"]) == 0

    out = capsys.readouterr().out
    assert f"targets run {CONFIG}/providers/microsoft.maintenance/applyupdates/{soon:%Y%m%d%H%M%S}" in out
    assert "registered run" not in out
    [delivery] = deliveries(app)
    assert delivery.outcome.value == "accepted"
    assert app.records.get_run(delivery.run_key).start == soon


def test_a_bare_send_event_pre_without_a_run_ahead_creates_one_and_says_so(start_app, capsys):
    app, estate = start_stack(start_app, EXAMPLE)  # its only run is in the past

    assert main(["send-event", "pre"]) == 0

    out = capsys.readouterr().out
    assert "targets a new run" in out and "(30 minutes from now)" in out
    assert "4 machines from the estate file" in out
    [delivery] = deliveries(app)
    assert delivery.outcome.value == "accepted"
    assert app.wait_phase_final(Phase.PRE, delivery.run_key).machines == 4


def test_bad_time_options_are_usage_errors(start_app, capsys):
    start_stack(start_app, EXAMPLE)

    assert main(["send-event", "pre", "--start", "soonish"]) == 2
    assert "'soonish' is not a time; say e.g. now, in 30m" in capsys.readouterr().err
    assert main(["send-event", "pre", "--start", "in 5m", "--correlation-id", SAMPLE_RUN]) == 2
    assert main(["send-event", "pre", "--duration", "long"]) == 2


# -- the round trip: export from the simulator as if it were Azure, load, rehearse ----------


def test_an_exported_estate_rehearses_the_same_window_in_a_fresh_stack(start_app, tmp_path, capsys):
    source = load_estate(EXAMPLE)
    with SimulatorServer(to_simulator(source)) as azure:
        estate, summary = export_estate(read_only_clients(azure.url, ArmAuth.SIMULATOR), [CONFIG])
        requests_made = azure.state.requests()
    # Reads only: ARM GETs (the configuration; instance views, Arc extensions and snapshot lists,
    # as preflight reads them) and Resource Graph queries, nothing else reached "Azure".
    assert {(r.method, r.operation) for r in requests_made} <= {
        ("GET", "maintenanceconfigurations.get"),
        ("GET", "vm.get"),
        ("GET", "arc.extensions.list"),
        ("GET", "snapshots.list"),
        ("POST", "resourcegraph.query"),
    }, {(r.method, r.operation) for r in requests_made}
    assert summary.machines_kept == 4 and summary.machines_seen == 5 and summary.runs == 1
    path = tmp_path / "exported.json"
    path.write_text(json.dumps(estate_to_json(estate)))

    loaded = load_estate(path)
    assert {sim_ids.key(m) for m in loaded.machines_for(CONFIG)} == covered(source)
    assert [r.correlation_id for r in loaded.runs] == [SAMPLE_RUN]
    assert loaded.configurations[0].tags == source.configurations[0].tags
    sql = next(vm for vm in loaded.vms if vm.id.endswith("vm-win-sql-01"))
    assert (sql.patch_mode, sql.bypass_platform_safety_checks, sql.os_disk.id) == (
        "AutomaticByOS",
        False,
        source.vms[2].os_disk.id,
    )
    assert next(vm for vm in loaded.vms if vm.id.endswith("vm-lnx-batch-02")).power_state == "deallocated"
    assert loaded.arc_servers[0].agent_version == source.arc_servers[0].agent_version

    app, _ = start_stack(start_app, path)
    assert main(["send-event", "pre", "--start", "in 40m"]) == 0
    assert "4 machines from the estate file" in capsys.readouterr().out
    [delivery] = deliveries(app)
    pre = app.wait_phase_final(Phase.PRE, delivery.run_key)
    assert pre.status is PhaseStatus.COMPLETED and pre.machines == 4


def test_an_anonymised_export_keeps_the_shape_and_drops_every_name(start_app, tmp_path, capsys):
    source = load_estate(EXAMPLE)
    with SimulatorServer(to_simulator(source)) as azure:
        estate, _ = export_estate(read_only_clients(azure.url, ArmAuth.SIMULATOR), [CONFIG])
    text = json.dumps(estate_to_json(anonymise(estate, salt="rehearsal")))
    for secret in (*source.subscription_ids, "rg-app-01", "vm-lnx-web-01", "mc-weekly-linux", "arc-lnx-001", "web"):
        assert secret not in text, secret
    path = tmp_path / "anonymised.json"
    path.write_text(text)
    loaded = load_estate(path)
    assert len(loaded.machines_for(loaded.configurations[0].id)) == 4
    assert loaded.configurations[0].tags == {"prepost-snapshot": "true"}  # prepost's own tags are kept

    app, _ = start_stack(start_app, path)
    assert main(["send-event", "pre", "--start", "in 40m"]) == 0
    [delivery] = deliveries(app)
    assert delivery.outcome.value == "accepted"
    assert app.wait_phase_final(Phase.PRE, delivery.run_key).machines == 4


# -- bad estates ----------------------------------------------------------------------------


def test_local_up_refuses_a_bad_estate_naming_the_field_and_starts_nothing(tmp_path, capsys):
    data = json.loads(EXAMPLE.read_text())
    data["vms"][1]["powerState"] = "sleeping"
    data["runs"][0]["machines"] = [
        "/subscriptions/6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40/resourceGroups/x/providers/Microsoft.Compute/virtualMachines/gone"
    ]
    path = tmp_path / "estate.json"
    path.write_text(json.dumps(data))

    assert main(["local", "up", "--ports", "random", "--estate", str(path)]) == 2

    err = capsys.readouterr().err
    assert f"{path}: 1 problem(s) in the estate file" in err
    assert "vms[1].powerState: 'sleeping' is not one of: running, deallocated" in err
    assert StackState.load() is None
