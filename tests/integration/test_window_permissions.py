"""Every ARM request a whole maintenance window makes is granted by the custom roles.

tests/infra/test_roles.py drives each ARM adapter method; this drives the app itself (intake,
planner, VM tasks, monitoring, outcomes, supervision) through a pre- and a post-event against the
simulator, and maps every request the simulator logged to its action. A call made outside the
adapters, or a code path no adapter driver imitates, fails here. A window with pre/post scripts
needs the roles a deployment turns on for them (``enableHooks``) and nothing more.
"""

from __future__ import annotations

import pytest

from prepost.local.events import build_event
from prepost.permissions import Grant, documented, required_permissions
from prepost.simulator import Estate
from shared.models.run import Phase, PhaseStatus
from tests.infra.test_roles import ROLES, role_actions
from tests.integration.harness import future_start
from tests.integration.test_hooks import hooks_estate, post_event, pre_event, start_hooks_app  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def test_a_whole_window_makes_only_requests_its_roles_grant(start_app):
    estate = Estate.generate(
        machines=4,
        subscriptions=2,
        arc_servers=1,
        run_start=future_start(30),
        configuration_tags={"prepost-snapshot-disks": "all"},
    )
    app = start_app(estate)
    ids = dict(correlation_id=app.correlation_id, subscription_ids=estate.subscription_ids)
    assert app.deliver(build_event("pre", **ids)).status == 200
    assert app.wait_phase_final(Phase.PRE).status is PhaseStatus.COMPLETED
    assert app.deliver(build_event("post", **ids)).status == 200
    assert app.wait_phase_final(Phase.POST).status is PhaseStatus.COMPLETED

    requests = app.sim.state.requests()
    operations = {record.operation for record in requests}
    # The window did the work whose permissions matter: Resource Graph, VM start, snapshots,
    # alert rules, Arc, deallocation.
    assert {
        "resourcegraph.query",
        "vm.start",
        "snapshots.create",
        "alertrules.put",
        "alertrules.delete",
        "arc.get",
        "vm.deallocate",
    } <= operations
    assert_granted(requests)


def test_a_window_with_scripts_needs_only_the_script_runner_role_besides(start_hooks_app):  # noqa: F811
    app, _ = start_hooks_app(hooks_estate())
    assert app.deliver(pre_event(app)).status == 200
    assert app.wait_phase_final(Phase.PRE).status is PhaseStatus.COMPLETED
    assert app.deliver(post_event(app)).status == 200
    assert app.wait_phase_final(Phase.POST).status is PhaseStatus.COMPLETED

    requests = app.sim.state.requests()
    operations = {record.operation for record in requests}
    assert {"runcommands.put", "runcommands.get", "runcommands.delete"} <= operations
    grants = assert_granted(requests)
    assert Grant.SCRIPTS in grants and Grant.AUTOMATION not in grants


def assert_granted(requests) -> set[Grant]:
    """Every request's actions are in their roles; the grants the requests used."""
    missing, used = set(), set()
    for record in requests:
        assert record.operation is not None, f"the simulator does not serve {record.method} {record.path}"
        for permission in required_permissions(record.method, record.path):
            used.add(permission.grant)
            action = documented(permission.action).action
            if action not in role_actions(permission.grant):
                missing.add(f"{action} ({record.method} {record.path}) not in {ROLES[permission.grant][1]}")
    assert not missing, "\n".join(sorted(missing))
    return used
