"""Hostile and malformed deliveries through the local webhook, as Event Grid would post them.

GIVEN the real function app in the runner, Azurite and the simulator seeded with the sample run;
WHEN bodies are posted to ``/runtime/webhooks/EventGrid``; THEN every answer is JSON, a 5xx
never answers bad input, every delivered JSON value has its record in ``prepost events list``,
and nothing invalid creates a run, sends a message or calls Azure. The regression tests pin one
class of the issue each; the generated test (``tests/hostile.py``) covers many at once.
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import timedelta

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from prepost.cli import main
from prepost.local.webhook import MAX_BODY_BYTES
from shared.clock import utcnow
from shared.models.events import format_time
from shared.models.ids import run_key
from shared.models.messages import CheckPreDeadline, PlanPhase, PostFallback
from shared.models.run import Phase, PhaseStatus
from shared.names import INTAKE_FUNCTION
from shared.usecases.supervision import MAX_HOP
from tests.conftest import load_events
from tests.hostile import Body, bodies, hostile_settings
from tests.integration.conftest import sample_estate

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sample_clock")]

PRE = load_events("pre-eventgrid-camelcase.json")[0]
POST = load_events("post-eventgrid.json")[0]
RUN_KEY = run_key(PRE["data"]["correlationId"])


def post(app, body: bytes | str, *, kind: str = "Notification") -> requests.Response:
    return requests.post(
        f"{app.webhook_url}?functionName={INTAKE_FUNCTION}",
        data=body.encode() if isinstance(body, str) else body,
        headers={"Content-Type": "application/json", "aeg-event-type": kind},
        timeout=30,
    )


def answer(response: requests.Response) -> dict:
    """The JSON answer; fails the test on an HTML page or a stack trace."""
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:200]
    assert "Traceback" not in response.text
    return response.json()


def deliveries(app) -> list:
    """The delivery log, oldest first."""
    return list(reversed(app.records.list_deliveries(limit=1_000)))


def runs_list_works(capsys, connection: str) -> list:
    capsys.readouterr()
    assert main(["runs", "list", "--json", "--storage", connection]) == 0
    return json.loads(capsys.readouterr().out)


def tracebacks(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


# -- 6. the local webhook ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000 + "]" * 100_000, '[{"data": ' + "[" * 5_000 + "]" * 5_000 + "}]"],
    ids=["deep-array", "deep-inside-an-event"],
)
def test_a_deeply_nested_body_gets_a_json_400_not_an_html_500(start_app, caplog, body):
    app = start_app(sample_estate())

    response = post(app, body)

    assert response.status_code == 400
    assert "levels deep" in answer(response)["error"]
    [refused] = deliveries(app)  # not handed to the function, but recorded
    assert refused.outcome.value == "rejected" and "levels deep" in refused.reason
    assert tracebacks(caplog) == []


@pytest.mark.parametrize(
    "body",
    [[{"data": "a string"}], [{"data": {"validationCode": 42}}], [], "text", [{"data": [[]]}]],
    ids=["data-string", "code-number", "empty-array", "not-an-array", "data-array"],
)
def test_a_subscription_validation_without_a_code_gets_a_json_400(start_app, caplog, body):
    app = start_app(sample_estate())

    response = post(app, json.dumps(body), kind="SubscriptionValidation")

    assert response.status_code == 400
    assert "validationCode" in answer(response)["error"]
    assert tracebacks(caplog) == []


def test_a_subscription_validation_is_answered_with_its_code(start_app):
    app = start_app(sample_estate())

    response = post(app, json.dumps([{"data": {"validationCode": "512d38b6"}}]), kind="SubscriptionValidation")

    assert (response.status_code, answer(response)) == (200, {"validationResponse": "512d38b6"})


def test_a_batch_with_elements_that_are_not_objects_records_each_and_keeps_the_valid_event(start_app):
    app = start_app(sample_estate())
    unrelated = load_events("unrelated-resource-write.json")[0]

    response = post(app, json.dumps([2, PRE, "text", None, unrelated]))

    assert (response.status_code, answer(response)) == (200, {"delivered": 5})
    log = deliveries(app)
    assert [d.outcome.value for d in log] == ["rejected", "accepted", "rejected", "rejected", "ignored"]
    assert "got int" in log[0].reason and "got str" in log[2].reason and "got NoneType" in log[3].reason
    assert [r.run_key for r in app.records.list_runs()] == [RUN_KEY]
    app.wait_phase_final(Phase.PRE, RUN_KEY)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (json.dumps([{"id": "x" * MAX_BODY_BYTES}]), 413),
        (json.dumps([{}] * 101), 413),
        (b"\xff\xfe[]", 400),
        ("[NaN]", 400),
        ("", 400),
    ],
    ids=["over-1-mib", "over-100-events", "not-utf8", "nan", "empty"],
)
def test_bodies_that_are_not_events_get_a_json_4xx_and_one_rejected_record(start_app, body, status):
    app = start_app(sample_estate())

    response = post(app, body)

    assert response.status_code == status
    error = answer(response)["error"]
    assert error
    [refused] = deliveries(app)
    assert refused.outcome.value == "rejected"
    assert error in refused.reason and f"HTTP {status}" in refused.reason
    assert app.records.list_runs(limit=1) == []


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "", 405), ("POST", "/nowhere", 404)])
def test_other_requests_get_json_errors(start_app, method, path, status):
    app = start_app(sample_estate())
    url = app.webhook_url.replace("/runtime/webhooks/EventGrid", path or "/runtime/webhooks/EventGrid")

    response = requests.request(method, f"{url}?functionName={INTAKE_FUNCTION}", timeout=10)

    assert response.status_code == status
    assert answer(response)["error"]


# -- 1-5 through the webhook, with real Table storage -------------------------------------


def test_a_pre_event_eight_days_ahead_is_accepted_with_its_safety_nets_due_later(start_app):
    app = start_app(sample_estate())
    start = (utcnow() + timedelta(days=8)).replace(second=0, microsecond=0)
    raw = copy.deepcopy(PRE)
    data = raw["data"]
    data["correlationId"] = raw["id"] = data["correlationId"][:-14] + start.strftime("%Y%m%d%H%M%S")
    data["startDateTime"] = format_time(start)
    data["endDateTime"] = format_time(start + timedelta(hours=2))
    data["cancellationCutOffDateTime"] = format_time(start - timedelta(minutes=10))
    key = run_key(data["correlationId"])

    response = post(app, json.dumps([raw]))

    assert response.status_code == 200
    [delivery] = deliveries(app)
    assert delivery.outcome.value == "accepted"
    assert "before the start" in delivery.reason
    nets = app.recorder.of_kind(CheckPreDeadline) + app.recorder.of_kind(PostFallback)
    assert {type(sent.message) for sent in nets} == {CheckPreDeadline, PostFallback}
    assert all(sent.delay == MAX_HOP and sent.message.due_at() > start - timedelta(hours=1) for sent in nets)
    assert [sent.message.run_key for sent in app.recorder.of_kind(PlanPhase)] == [key]
    app.wait(lambda: app.phase(Phase.PRE, key).status is not PhaseStatus.RECEIVED, "pre phase planned")


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59Z", "9999-12-31T23:30:00-01:00"]
)
def test_a_time_at_the_edge_of_the_calendar_is_rejected_and_runs_list_still_works(
    start_app, storage_connection_string, capsys, caplog, value
):
    app = start_app(sample_estate())
    raw = copy.deepcopy(PRE)
    raw["data"]["startDateTime"] = value

    response = post(app, json.dumps([raw]))

    assert response.status_code == 200
    [delivery] = deliveries(app)
    assert delivery.outcome.value == "rejected"
    assert "data.startDateTime" in delivery.reason
    assert runs_list_works(capsys, storage_connection_string) == []
    assert app.recorder.sent == [] and app.sim.state.requests() == []
    assert tracebacks(caplog) == []


@pytest.mark.parametrize(
    ("sample", "field", "value", "reason"),
    [
        (POST, "status", "S" * 40_000, "data.status is 40,000 characters"),
        (PRE, "id", "x" * 33_000, "id is 33,000 characters"),
        (PRE, "resourceSubscriptionIds", [f"00000000-0000-0000-0000-{i:012d}" for i in range(5_000)], "5,000 entries"),
    ],
    ids=["status", "envelope-id", "subscriptions"],
)
def test_an_oversized_value_is_rejected_and_its_delivery_recorded(start_app, caplog, sample, field, value, reason):
    app = start_app(sample_estate())
    raw = copy.deepcopy(sample)
    (raw if field == "id" else raw["data"])[field] = value

    response = post(app, json.dumps([raw]))

    assert response.status_code == 200
    [delivery] = deliveries(app)  # stored by Azurite, which refuses properties over 64 KiB
    assert delivery.outcome.value == "rejected"
    assert reason in delivery.reason
    assert app.records.list_runs() == []
    assert tracebacks(caplog) == []


def test_the_long_s_spelling_of_a_run_does_not_become_a_second_run(start_app, storage_connection_string, capsys):
    app = start_app(sample_estate())
    respelled = copy.deepcopy(PRE)
    for key in ("correlationId", "maintenanceConfigurationId"):
        respelled["data"][key] = respelled["data"][key].replace("Microsoft", "Micro\u017foft")

    assert post(app, json.dumps([PRE])).status_code == 200
    assert post(app, json.dumps([respelled])).status_code == 200

    assert [d.outcome.value for d in deliveries(app)] == ["accepted", "rejected"]
    assert [run["runKey"] for run in runs_list_works(capsys, storage_connection_string)] == [RUN_KEY]
    app.wait_phase_final(Phase.PRE, RUN_KEY)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps([{**PRE, "eventTime": "now"}]),
        json.dumps([{**PRE, "eventTime": 0}]),
        json.dumps([{**PRE, "eventTime": "Sun, 22 Nov 2026 01:25:00 GMT"}]),
        json.dumps([{**load_events("pre-cloudevents.json")[0], "specversion": "2.0"}]),
        json.dumps([{**load_events("pre-cloudevents.json")[0], "eventType": "Other.Type"}]),
        json.dumps([POST]).replace('"status": "Succeeded"', '"status": "Failed", "status": "Succeeded"'),
        json.dumps([PRE]).replace('"eventType": ', '"eventType": "Other.Type", "eventType": '),
    ],
    ids=[
        "time-now",
        "time-zero",
        "time-rfc1123",
        "specversion-2",
        "conflicting-type",
        "repeated-data-key",
        "repeated-type",
    ],
)
def test_an_envelope_that_should_not_be_accepted_is_rejected_through_the_webhook(start_app, text):
    app = start_app(sample_estate())

    response = post(app, text)

    assert response.status_code == 200
    [delivery] = deliveries(app)
    assert delivery.outcome.value == "rejected", delivery.reason
    assert app.records.list_runs() == [] and app.recorder.sent == []


# -- generated -------------------------------------------------------------------------


@pytest.fixture
def hostile_app(start_app, monkeypatch):
    """The app, with every delivery record it writes also kept in ``app.written``."""
    app = start_app(sample_estate())
    records = app.records
    app.written = []
    write = records.record_delivery

    def record_delivery(delivery):
        write(delivery)
        app.written.append(delivery)

    monkeypatch.setattr(records, "record_delivery", record_delivery)
    return app


@hostile_settings(max_examples=300)
@given(body=bodies, validation=st.sampled_from([False, False, False, False, True]))
def test_generated_hostile_deliveries_are_answered_recorded_and_never_acted_on(
    hostile_app, caplog, body: Body, validation
):
    app = hostile_app
    written_before, logged_before = len(app.written), len(caplog.records)

    response = post(app, body.data, kind="SubscriptionValidation" if validation else "Notification")

    reply = answer(response)
    assert response.status_code < 500, (body.kind, reply)
    new = app.written[written_before:]
    if validation or body.elements is None or len(body.data) > MAX_BODY_BYTES:
        assert response.status_code in (200, 400, 413) if validation else response.status_code in (400, 413)
        # A handshake is not a delivery; a refused delivery is one rejected record.
        assert [d.outcome.value for d in new] == ([] if validation else ["rejected"])
    else:
        assert response.status_code == 200, (body.kind, reply)
        assert len(new) == len(body.elements), [element.kind for element in body.elements]
        for delivery, element in zip(new, body.elements, strict=True):
            assert delivery.outcome.value in ("rejected", "ignored"), (element.kind, delivery.reason)
            assert delivery.reason, element.kind
    assert app.records.list_runs(limit=1) == []
    assert app.recorder.sent == []
    assert app.sim.state.requests() == []
    assert [r for r in caplog.records[logged_before:] if r.exc_info or r.levelno >= logging.ERROR] == []


def test_the_records_the_generated_test_counts_are_the_ones_in_the_table(hostile_app):
    """The generated test counts records as they are written; the table must hold exactly those."""
    app = hostile_app
    for text in ([2, None], [{"eventType": 5}], {"specversion": "9"}):
        assert post(app, json.dumps(text)).status_code == 200

    assert len(deliveries(app)) == len(app.written) == 4
