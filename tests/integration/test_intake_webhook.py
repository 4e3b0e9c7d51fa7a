"""The Event Grid webhook of the local runner, fed with the sample events through the CLI.

GIVEN the real function app in the runner, Azurite and the simulator seeded with the run the
samples describe; WHEN ``prepost send-event --file`` delivers a sample; THEN the intake's
records (runs, phases, the delivery log read back with ``prepost events list --json``) say
what happened, and the HTTP answer is what Event Grid needs to decide about retrying.
"""

from __future__ import annotations

import json

import pytest
import requests

from prepost.cli import main
from shared.models.ids import run_key
from shared.models.messages import PlanPhase
from shared.models.run import Action, Phase, PhaseStatus, TaskStatus
from shared.names import INTAKE_FUNCTION
from tests.conftest import FIXTURES, load_events
from tests.integration.conftest import SAMPLE_SUBSCRIPTIONS, sample_estate
from tests.integration.harness import reset_storage

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sample_clock")]

EVENTS = FIXTURES / "events"
PRE_SAMPLES = ["pre-eventgrid-camelcase.json", "pre-eventgrid-pascalcase.json", "pre-cloudevents.json"]
CORRELATION_ID = load_events("pre-eventgrid-camelcase.json")[0]["data"]["correlationId"]
RUN_KEY = run_key(CORRELATION_ID)
VOLATILE = {"receivedAt", "plannedAt", "completedAt", "startedAt", "finishedAt", "createdAt"}


def send_file(name: str, url: str) -> int:
    return main(["send-event", "--file", str(EVENTS / name), "--to", url])


def cli_json(capsys, *argv: str):
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def deliveries(capsys, connection: str) -> list[dict]:
    """The delivery log, oldest first, as ``prepost events list --json`` prints it."""
    return list(reversed(cli_json(capsys, "events", "list", "--json", "--storage", connection)))


def without_volatile(value):
    if isinstance(value, dict):
        return {key: without_volatile(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(item) for item in value]
    return value


def test_the_seeded_run_is_the_one_the_samples_describe():
    assert sample_estate().run.correlation_id.lower() == CORRELATION_ID.lower()


def test_each_pre_sample_records_the_same_run(start_app, storage_connection_string, capsys):
    """PascalCase, camelCase and CloudEvents: three spellings of one event, one recorded run."""
    reports = {}
    for name in PRE_SAMPLES:
        reset_storage(storage_connection_string)
        app = start_app(sample_estate())
        assert send_file(name, app.webhook_url) == 0
        app.wait_phase_final(Phase.PRE, RUN_KEY)
        report = cli_json(capsys, "runs", "show", CORRELATION_ID, "--json", "--storage", storage_connection_string)
        report["phases"] = [p for p in report["phases"] if p["phase"] == "pre"]
        report["tasks"] = [t for t in report["tasks"] if t["phase"] == "pre"]
        reports[name] = without_volatile(report)
        app.stop()

    first = reports[PRE_SAMPLES[0]]
    assert first["correlationId"].lower() == CORRELATION_ID.lower()
    assert first["configuration"] == "mc-weekly-linux"
    assert sorted(first["subscriptionIds"]) == sorted(SAMPLE_SUBSCRIPTIONS)
    assert first["start"].startswith("2026-11-22T02:00:00")
    assert first["cancellationCutoff"].startswith("2026-11-22T01:50:00")
    assert first["tasks"], "the pre phase was planned from the simulator's run"
    for name in PRE_SAMPLES[1:]:
        assert reports[name] == first, f"{name} recorded another run than {PRE_SAMPLES[0]}"


def test_redelivered_pre_events_are_recorded_as_duplicates(start_app, storage_connection_string, capsys):
    app = start_app(sample_estate())
    for name in PRE_SAMPLES:
        assert send_file(name, app.webhook_url) == 0

    runs = cli_json(capsys, "runs", "list", "--json", "--storage", storage_connection_string)
    assert [r["correlationId"].lower() for r in runs] == [CORRELATION_ID.lower()]
    assert [p["phase"] for p in runs[0]["phases"]][:1] == ["pre"]
    log = deliveries(capsys, storage_connection_string)
    assert [d["outcome"] for d in log] == ["accepted", "duplicate", "duplicate"]
    assert all(d["runKey"] == RUN_KEY and d["phase"] == "pre" for d in log)
    assert all(d["reason"] for d in log[1:])
    app.wait_phase_final(Phase.PRE, RUN_KEY)


def test_the_same_event_twice_records_one_run_and_one_plan(start_app, storage_connection_string, capsys):
    """At-least-once delivery: two deliveries back to back, one run, one plan, each side effect once."""
    app = start_app(sample_estate())
    name = "pre-eventgrid-pascalcase.json"
    assert send_file(name, app.webhook_url) == 0
    assert send_file(name, app.webhook_url) == 0
    pre = app.wait_phase_final(Phase.PRE, RUN_KEY)
    app.quiesce()

    assert [d["outcome"] for d in deliveries(capsys, storage_connection_string)] == ["accepted", "duplicate"]
    runs = cli_json(capsys, "runs", "list", "--json", "--storage", storage_connection_string)
    assert [r["runKey"] for r in runs] == [RUN_KEY]
    # The second delivery re-sends the plan message when it finds the phase still "received"
    # (the first delivery may have died before sending). Each plan message may query Resource
    # Graph, but the plan is recorded once (the phase is replaced on its etag) ...
    plan_messages = [m for m in app.recorder.of_kind(PlanPhase) if m.message.phase is Phase.PRE]
    assert 1 <= len(plan_messages) <= 2
    assert 1 <= len(app.requests_of("resourcegraph.query")) <= len(plan_messages)
    tasks = app.tasks(Phase.PRE, RUN_KEY)
    assert pre.expected_tasks == len(tasks) == len({t.task_id for t in tasks})
    # ... and every side effect happens once: one snapshot per disk, one start per stopped VM.
    estate = app.estate
    snapshots = app.sim.state.snapshots()
    assert sorted(s.source_resource_id.lower() for s in snapshots) == sorted(
        d.id.lower() for d in estate.disks if d.os_type is not None
    )
    assert all(s.put_count == 1 for s in snapshots)
    assert all(app.sim.state.count("vm.start", vm.id) == (vm.power_state.value == "deallocated") for vm in estate.vms)
    suppressed = [t for t in tasks if t.action is Action.SUPPRESS_ALERTS and t.status is TaskStatus.SUCCEEDED]
    assert len(app.sim.state.alert_rules()) == len(suppressed)
    assert all(rule.put_count == 1 for rule in app.sim.state.alert_rules())


def test_a_duplicate_after_planning_sends_no_plan(start_app, storage_connection_string, capsys):
    app = start_app(sample_estate())
    name = "pre-eventgrid-camelcase.json"
    assert send_file(name, app.webhook_url) == 0
    app.wait(lambda: app.phase(Phase.PRE, RUN_KEY).status is not PhaseStatus.RECEIVED, "pre phase planned")
    assert send_file(name, app.webhook_url) == 0

    plan_messages = [m for m in app.recorder.of_kind(PlanPhase) if m.message.phase is Phase.PRE]
    assert len(plan_messages) == 1
    log = deliveries(capsys, storage_connection_string)
    assert [d["outcome"] for d in log] == ["accepted", "duplicate"]
    assert "already received" in log[1]["reason"]
    # The log says which run and phase the duplicate belonged to, as for the first delivery.
    assert [(d["runKey"], d["phase"]) for d in log] == [(RUN_KEY, "pre"), (RUN_KEY, "pre")]
    app.wait_phase_final(Phase.PRE, RUN_KEY)


def test_an_unrelated_event_is_ignored_visibly(start_app, storage_connection_string, capsys):
    app = start_app(sample_estate())
    assert send_file("unrelated-resource-write.json", app.webhook_url) == 0
    assert "HTTP 200" in capsys.readouterr().out

    log = deliveries(capsys, storage_connection_string)
    assert len(log) == 1
    assert log[0]["outcome"] == "ignored"
    assert log[0]["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert "Microsoft.Resources.ResourceWriteSuccess" in log[0]["reason"]
    assert cli_json(capsys, "runs", "list", "--json", "--storage", storage_connection_string) == []


def test_an_event_outside_the_allow_list_is_rejected_and_not_retried(start_app, storage_connection_string, capsys):
    other = sample_estate(configuration_name="mc-other").configuration.id
    app = start_app(sample_estate(), allowed_configurations=[other])
    assert send_file("pre-eventgrid-camelcase.json", app.webhook_url) == 0  # 200: Event Grid does not retry
    assert "HTTP 200" in capsys.readouterr().out

    log = deliveries(capsys, storage_connection_string)
    assert [d["outcome"] for d in log] == ["rejected"]
    assert "PREPOST_ALLOWED_CONFIGURATIONS" in log[0]["reason"]
    assert "mc-weekly-linux" in log[0]["reason"]
    assert log[0]["correlationId"].lower() == CORRELATION_ID.lower()
    assert cli_json(capsys, "runs", "list", "--json", "--storage", storage_connection_string) == []
    assert app.recorder.sent == []


@pytest.mark.parametrize(
    "body", [b"{not json", b'"an event"', b"[" * 40 + b"]" * 40], ids=["not-json", "string", "deep"]
)
def test_a_body_that_is_not_events_gets_400(start_app, storage_connection_string, capsys, body):
    app = start_app(sample_estate())
    response = requests.post(
        f"{app.webhook_url}?functionName={INTAKE_FUNCTION}",
        data=body,
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
        timeout=10,
    )
    assert response.status_code == 400
    # Not handed to the function, but recorded: the delivery log misses nothing.
    [refused] = deliveries(capsys, storage_connection_string)
    assert refused["outcome"] == "rejected"
    assert refused["reason"].startswith("not delivered to the function: ")
    assert "HTTP 400" in refused["reason"]
    assert refused["runKey"] == "" and refused["correlationId"] == ""
    assert app.runner.stats.snapshot()["invocations"].get(INTAKE_FUNCTION, 0) == 0
    assert cli_json(capsys, "runs", "list", "--json", "--storage", storage_connection_string) == []


def test_too_many_events_in_one_delivery_get_413_and_are_recorded(start_app, storage_connection_string, capsys):
    from prepost.local.webhook import MAX_EVENTS

    app = start_app(sample_estate())
    events = load_events("pre-eventgrid-camelcase.json") * (MAX_EVENTS + 1)
    response = requests.post(
        f"{app.webhook_url}?functionName={INTAKE_FUNCTION}",
        data=json.dumps(events),
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
        timeout=10,
    )
    assert response.status_code == 413
    [refused] = deliveries(capsys, storage_connection_string)
    assert refused["outcome"] == "rejected"
    assert f"at most {MAX_EVENTS}" in refused["reason"] and "HTTP 413" in refused["reason"]
    assert app.runner.stats.snapshot()["invocations"].get(INTAKE_FUNCTION, 0) == 0


def test_an_unknown_function_gets_404(start_app):
    app = start_app(sample_estate())
    response = requests.post(
        f"{app.webhook_url}?functionName=no_such_function",
        data=json.dumps(load_events("pre-eventgrid-camelcase.json")),
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
        timeout=10,
    )
    assert response.status_code == 404
    assert "no_such_function" in response.text


def test_runs_show_json_prints_one_object_with_every_task(start_app, storage_connection_string, capsys):
    app = start_app(sample_estate())
    assert send_file("pre-cloudevents.json", app.webhook_url) == 0
    app.wait_phase_final(Phase.PRE, RUN_KEY)

    capsys.readouterr()
    assert main(["runs", "show", CORRELATION_ID, "--json", "--storage", storage_connection_string]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)  # one JSON document, nothing before or after it
    assert isinstance(report, dict)
    assert report["correlationId"].lower() == CORRELATION_ID.lower()
    assert report["configuration"] == "mc-weekly-linux"
    assert [p["phase"] for p in report["phases"]][0] == "pre"
    pre_tasks = [t for t in report["tasks"] if t["phase"] == "pre"]
    estate = sample_estate()
    # One preflight and one snapshot task per machine, one start task per VM, alert suppression
    # per subscription.
    assert len(pre_tasks) == 3 * len(estate.vms) + 2 * len(estate.arc_servers) + len(SAMPLE_SUBSCRIPTIONS)
    for task in report["tasks"]:
        assert {"resourceId", "action", "phase", "status", "detail"} <= task.keys()
    for task in pre_tasks:
        assert task["status"] in {"succeeded", "skipped"}, task
        assert task["detail"]
    # The run key works as well as the correlation id.
    assert (
        cli_json(capsys, "runs", "show", RUN_KEY, "--json", "--storage", storage_connection_string)["runKey"] == RUN_KEY
    )
