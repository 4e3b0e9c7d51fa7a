"""The pieces around estate files: time options, allow-list precedence, anonymisation, the
writer's round trip, the read-only guard of the export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.transport import HttpRequest

from prepost.cli.send_event import correlation_of
from prepost.estate import load_estate, parse_estate
from prepost.estate.anonymise import anonymise
from prepost.estate.export import ExportError, ReadOnlyPolicy
from prepost.estate.writer import estate_to_json
from prepost.local.host_config import REPO_ROOT
from prepost.local.stack import choose_allow_lists
from prepost.local.when import WhenError, parse_duration, parse_when
from prepost.simulator import ids

EXAMPLE = REPO_ROOT / "docs" / "examples" / "estate.json"
NOW = datetime(2026, 11, 30, 10, 17, 42, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", datetime(2026, 11, 30, 10, 17, tzinfo=UTC)),
        ("in 30m", datetime(2026, 11, 30, 10, 47, tzinfo=UTC)),
        ("in 1h30m", datetime(2026, 11, 30, 11, 47, tzinfo=UTC)),
        ("+2d", datetime(2026, 12, 2, 10, 17, tzinfo=UTC)),
        ("2h ago", datetime(2026, 11, 30, 8, 17, tzinfo=UTC)),
        ("-15m", datetime(2026, 11, 30, 10, 2, tzinfo=UTC)),
        ("2026-12-01T02:00Z", datetime(2026, 12, 1, 2, 0, tzinfo=UTC)),
        ("2026-12-01 02:00", datetime(2026, 12, 1, 2, 0, tzinfo=UTC)),
        ("2026-12-01T03:00:59+01:00", datetime(2026, 12, 1, 2, 0, tzinfo=UTC)),
    ],
)
def test_time_options(text, expected):
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["soon", "in 30x", "", "tomorrow 2am", "in -5m"])
def test_time_options_that_are_not_times(text):
    with pytest.raises(WhenError, match="is not a time; say e.g. now, in 30m"):
        parse_when(text, NOW)


def test_durations():
    assert parse_duration("3h55m") == timedelta(hours=3, minutes=55)
    with pytest.raises(WhenError):
        parse_duration("long")


def test_allow_lists_an_option_beats_the_environment_which_beats_the_estate():
    estate = (["/sub/config"], ["sub-a", "sub-b"])
    env = {"PREPOST_ALLOWED_CONFIGURATIONS": "*", "PREPOST_ALLOWED_SUBSCRIPTIONS": " "}

    from_estate = choose_allow_lists(*estate)
    from_env = choose_allow_lists(*estate, environ=env)
    from_option = choose_allow_lists(*estate, configurations="/sub/other", subscriptions="", environ=env)

    assert (from_estate.configurations, from_estate.subscriptions) == ("/sub/config", "sub-a,sub-b")
    assert (from_estate.configurations_from, from_estate.subscriptions_from) == ("estate", "estate")
    # An exported value is kept (and said to be); an empty one does not count.
    assert (from_env.configurations, from_env.configurations_from) == (
        "*",
        "environment (PREPOST_ALLOWED_CONFIGURATIONS)",
    )
    assert (from_env.subscriptions, from_env.subscriptions_from) == ("sub-a,sub-b", "estate")
    assert (from_option.configurations, from_option.subscriptions) == ("/sub/other", "")
    assert from_option.configurations_from == from_option.subscriptions_from == "option"


def test_the_writer_writes_what_the_loader_reads_back():
    estate = load_estate(EXAMPLE)

    again = parse_estate(json.loads(json.dumps(estate_to_json(estate))))

    assert again.vms == estate.vms
    assert again.arc_servers == estate.arc_servers
    assert again.configurations == estate.configurations
    assert again.assignments == estate.assignments
    assert again.dynamic_scopes == estate.dynamic_scopes
    assert [(r.correlation_id, r.status) for r in again.runs] == [(r.correlation_id, r.status) for r in estate.runs]


def test_anonymising_is_consistent_and_keeps_what_selects_machines():
    estate = load_estate(EXAMPLE)

    first = anonymise(estate, salt="s")
    second = anonymise(estate, salt="s")
    other = anonymise(estate, salt="t")
    text = json.dumps(estate_to_json(first))

    assert estate_to_json(first) == estate_to_json(second)
    assert first.subscription_ids != other.subscription_ids
    for real in (*estate.subscription_ids, "prod-apps", "rg-app-01", "vm-lnx-web-01", "mc-weekly-linux", "web"):
        assert real not in text, real
    # The same things are selected, in the same order, under their new names.
    config = first.configurations[0].id
    assert [m.rsplit("/", 1)[-1] for m in first.machines_for(config)] == ["vm-001", "vm-002", "vm-003", "arc-001"]
    assert len(first.machines_for(config)) == len(estate.machines_for(estate.configurations[0].id))
    # A disk keeps its place in its VM's resource group; runs keep their start.
    web = first.vms[0]
    assert ids.resource_group_of(web.os_disk.id) == ids.resource_group_of(web.id)
    assert first.runs[0].correlation_id.endswith("/applyupdates/20261122020000")
    assert first.runs[0].configuration_id == config
    # What the pipeline's behaviour depends on is kept.
    assert [(v.power_state, v.patch_mode, v.os_type) for v in first.vms] == [
        (v.power_state, v.patch_mode, v.os_type) for v in estate.vms
    ]
    assert first.configurations[0].tags == {"prepost-snapshot": "true"}
    # And the result is a valid estate file.
    parse_estate(json.loads(text))


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("GET", "https://management.azure.com/subscriptions/s/resourceGroups/r/providers/x/y?api-version=1", True),
        (
            "POST",
            "https://management.azure.com/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01",
            True,
        ),
        ("PUT", "https://management.azure.com/subscriptions/s/resourceGroups/r/providers/x/y?api-version=1", False),
        (
            "POST",
            "https://management.azure.com/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/v/start",
            False,
        ),
        ("DELETE", "https://management.azure.com/subscriptions/s/resourceGroups/r", False),
        ("PATCH", "https://management.azure.com/subscriptions/s/resourceGroups/r", False),
    ],
)
def test_the_export_clients_refuse_anything_but_reads(method, url, allowed):
    request = PipelineRequest(HttpRequest(method, url), context=None)
    if allowed:
        ReadOnlyPolicy().on_request(request)
    else:
        with pytest.raises(ExportError, match="estate export only reads"):
            ReadOnlyPolicy().on_request(request)


def test_the_run_an_event_names_in_any_casing():
    run = (
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Maintenance/maintenanceConfigurations/c"
        "/providers/microsoft.maintenance/applyupdates/20261122020000"
    )
    assert correlation_of({"data": {"CorrelationId": run}}) == run
    assert correlation_of({"data": {"correlationid": run}}) == run
    assert correlation_of({"id": run, "data": {}}) == run
    assert correlation_of({"id": "not-a-run", "data": "x"}) is None
    assert correlation_of([run]) is None


def test_anonymising_keeps_readiness_states_and_drops_free_text():
    data = json.loads(EXAMPLE.read_text())
    data["vms"][0]["vmAgent"] = {"status": "Not Ready", "message": "host web01.corp.example.com unreachable"}
    data["vms"][0]["extensions"][0].update(provisioningState="Failed", message="/home/alice/run.sh failed")
    data["vms"][0]["osDisk"] = {"existingSnapshots": 499}
    data["arcServers"][0]["agentUpgrade"] = {"enableAutomaticUpgrade": True}
    estate = parse_estate(data)

    hidden = anonymise(estate, salt="s")
    text = json.dumps(estate_to_json(hidden))

    assert "web01.corp" not in text and "alice" not in text
    web = hidden.vms[0]
    assert (web.agent.status, web.agent.message) == ("Not Ready", "")
    assert [(e.name, e.provisioning_state, e.message) for e in web.extensions] == [
        ("AzureMonitorLinuxAgent", "Failed", "")
    ]
    assert web.os_disk.existing_snapshots == 499
    assert hidden.arc_servers[0].automatic_upgrade is True
    assert parse_estate(json.loads(text)).vms[0] == web
