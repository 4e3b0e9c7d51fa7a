"""The custom roles in infra/ hold exactly the actions the ARM adapters' requests need.

Every ARM adapter (every class in ``shared/adapters/arm`` that implements a port) is driven,
method by method, against the management-API simulator with the real Azure SDK clients. Each
request the simulator logged (method and path) is turned into the RBAC action ARM checks for it
(:mod:`prepost.permissions`), and that action must be in the Bicep role that covers where the
request goes; in the other direction, a role may hold no action that no request needs.

Some roles exist only when a deployment turns them on (the script runner role with
``enableHooks``, the Automation job runner role with ``hookAutomationAccountId``). The drivers
call every adapter, so the requests are those of a deployment with everything enabled: the union
of all roles must grant them, and each role, conditional or not, must hold only actions its
requests need. A conditional role must be off by default, and the actions that run code inside
a machine must be in no role that every deployment assigns.

A new adapter method fails ``test_every_adapter_method_is_driven`` until a driver below calls
it; its requests then fail ``test_every_request_is_granted_by_its_role`` until the role (and the
table in docs/deploy.md) grants their action. docs/deploy.md, "Adding a call", walks through it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pycep
import pytest
import requests as http

import shared.adapters.arm
import shared.ports
from prepost.permissions import (
    DOCUMENTED_ACTIONS,
    GRANT_BY_ACTION_PREFIX,
    Grant,
    Permission,
    UndocumentedAction,
    UnmappedRequest,
    documented,
    required_permissions,
)
from prepost.simulator import Estate, ManualClock, PowerState, SimulatorServer
from prepost.simulator.estate import ArcStatus
from shared.adapters.arm.clients import ArmClients
from shared.models.hooks import ScriptOs
from shared.ports.scripts import ScriptTarget
from shared.settings import ArmAuth

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"


class Role(NamedTuple):
    """The Bicep role definition that grants a Grant."""

    template: str
    """File in infra/modules, without ``.bicep``."""
    symbol: str
    """The role definition resource in it."""
    module: str
    """The module of main.bicep that deploys the template."""
    switch: str | None = None
    """The parameter of main.bicep that turns the role on (off by default); None: always there."""


ROLES = {
    Grant.TARGET: Role("target-subscription-roles", "machineOperatorRole", "targetRoles"),
    Grant.SUPPRESSION: Role("target-subscription-roles", "alertSuppressorRole", "targetRoles"),
    Grant.CONFIGURATION: Role("maintenance-access", "cancelRunRole", "maintenanceAccess"),
    Grant.SCRIPTS: Role("target-subscription-roles", "scriptRunnerRole", "targetRoles", switch="enableHooks"),
    Grant.AUTOMATION: Role(
        "automation-access", "automationJobRunnerRole", "automationAccess", switch="hookAutomationAccountId"
    ),
}

RUN_START = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


# --- what the adapters are, and how each method is driven ----------------------------------------


def adapter_classes() -> dict[str, type]:
    """Every class defined in shared/adapters/arm that implements a port from shared/ports."""
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(shared.adapters.arm.__path__):
        module = importlib.import_module(f"shared.adapters.arm.{info.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            ports = [base for base in cls.__mro__[1:] if base.__module__.startswith(shared.ports.__name__ + ".")]
            if ports:
                found[name] = cls
    return found


def adapter_methods() -> set[str]:
    """``Class.method`` for every public method of every adapter (its own and its ports')."""
    methods = set()
    for name, cls in adapter_classes().items():
        for method, _ in inspect.getmembers(cls, inspect.isfunction):
            if not method.startswith("_"):
                methods.add(f"{name}.{method}")
    return methods


@dataclass
class Facts:
    """The simulated estate's facts the drivers need."""

    server: SimulatorServer
    clients: ArmClients

    @property
    def estate(self) -> Estate:
        return self.server.estate

    def adapter(self, name: str, *args: Any) -> Any:
        return adapter_classes()[name](self.clients, *args)

    @property
    def automation_account_id(self) -> str:
        configuration = self.estate.configuration
        return (
            f"/subscriptions/{configuration.subscription_id}/resourceGroups/{configuration.resource_group}"
            "/providers/Microsoft.Automation/automationAccounts/prepost-roles-test"
        )

    def script_targets(self) -> list[ScriptTarget]:
        """A running VM and a connected Arc server, as ArmScriptTargets would describe them."""
        # Not the VM the deallocate driver stops (the first running one): the last running one.
        vm = [vm for vm in self.estate.vms if vm.power_state is PowerState.RUNNING][-1]
        arc = self.estate.arc_servers[0]  # connected by the requests fixture
        return [
            ScriptTarget(vm.id, vm.location, ScriptOs.LINUX, running=True, state="running"),
            ScriptTarget(arc.id, arc.location, ScriptOs.LINUX, running=True, state="agent Connected", is_arc=True),
        ]

    def vm(self, state: PowerState):
        return next(vm for vm in self.estate.vms if vm.power_state is state)

    @property
    def disk(self):
        return self.vm(PowerState.RUNNING).disks[0]

    @property
    def snapshot_id(self) -> str:
        disk = self.disk
        return (
            f"/subscriptions/{disk.subscription_id}/resourceGroups/{disk.resource_group}"
            "/providers/Microsoft.Compute/snapshots/prepost-roles-test"
        )

    @property
    def rule_id(self) -> str:
        vm = self.vm(PowerState.RUNNING)
        return (
            f"/subscriptions/{vm.subscription_id}/resourceGroups/{vm.resource_group}"
            "/providers/Microsoft.AlertsManagement/actionRules/prepost-roles-test"
        )


def _create_snapshot(e: Facts) -> None:
    e.adapter("ArmCompute").begin_create_incremental_snapshot(
        e.snapshot_id, source_disk_id=e.disk.id, location=e.disk.location, tags={"prepost": "roles-test"}
    )


def _put_rule(e: Facts) -> None:
    vm = e.vm(PowerState.RUNNING)
    e.adapter("ArmAlertSuppression").put_rule(
        e.rule_id,
        scopes=[vm.id],
        effective_from=RUN_START,
        effective_until=RUN_START + timedelta(hours=2),
        description="prepost roles test",
        tags={"prepost": "roles-test"},
    )


SCRIPT = "prepost-roles-test"
# Runbook jobs: one that completes (the simulator's default outcome) and one that runs until it is
# stopped (programmed on its worker group in the requests fixture).
JOB_DONE, JOB_FOREVER = ("prepost-roles-done", "prepost-roles-hwg"), ("prepost-roles-forever", "prepost-roles-slow-hwg")


def _begin_run_commands(e: Facts) -> None:
    for target in e.script_targets():
        e.adapter("ArmRunCommands").begin_script(
            target, SCRIPT, script="echo roles", parameters={"PREPOST_PHASE": "pre"}, timeout_seconds=60, tags={}
        )


def _follow_run_commands(e: Facts) -> None:
    for target in e.script_targets():
        assert e.adapter("ArmRunCommands").get_execution(target, SCRIPT) is not None


def _delete_run_commands(e: Facts) -> None:
    for target in e.script_targets():
        e.adapter("ArmRunCommands").delete_execution(target, SCRIPT)


def _begin_jobs(e: Facts) -> None:
    jobs = e.adapter("AutomationJobs", e.automation_account_id)
    target = e.script_targets()[0]
    for name, group in (JOB_DONE, JOB_FOREVER):
        jobs.begin_script(target, name, script="Stop-App", parameters={}, timeout_seconds=60, tags={}, run_on=group)


def _follow_finished_job(e: Facts) -> None:
    e.server.clock.advance(5)
    execution = e.adapter("AutomationJobs", e.automation_account_id).get_execution(e.script_targets()[0], JOB_DONE[0])
    # A finished job: its output is read too.
    assert execution is not None and execution.is_finished


def _stop_running_job(e: Facts) -> None:
    jobs = e.adapter("AutomationJobs", e.automation_account_id)
    target = e.script_targets()[0]
    jobs.delete_execution(target, JOB_FOREVER[0])  # still running: stopped
    assert jobs.get_execution(target, JOB_FOREVER[0]).execution_state == "Canceled"


# One driver per adapter method, in the order they run (a snapshot is created before it is
# read and deleted, a rule put before it is read and deleted). Add one for every new method.
DRIVERS: dict[str, Callable[[Facts], object]] = {
    "ResourceGraphInventory.list_run_machines": lambda e: e.adapter("ResourceGraphInventory").list_run_machines(
        e.estate.run.correlation_id, e.estate.subscription_ids
    ),
    "ArmMaintenanceConfigurations.get_tags": lambda e: e.adapter("ArmMaintenanceConfigurations").get_tags(
        e.estate.configuration.id
    ),
    "ArmCompute.get_vm": lambda e: e.adapter("ArmCompute").get_vm(e.vm(PowerState.RUNNING).id),
    "ArmCompute.begin_start_vm": lambda e: e.adapter("ArmCompute").begin_start_vm(e.vm(PowerState.DEALLOCATED).id),
    "ArmCompute.begin_deallocate_vm": lambda e: e.adapter("ArmCompute").begin_deallocate_vm(
        e.vm(PowerState.RUNNING).id
    ),
    "ArmCompute.get_disk_location": lambda e: e.adapter("ArmCompute").get_disk_location(e.disk.id),
    "ArmCompute.begin_create_incremental_snapshot": _create_snapshot,
    "ArmCompute.get_snapshot": lambda e: e.adapter("ArmCompute").get_snapshot(e.snapshot_id),
    "ArmCompute.list_snapshots": lambda e: e.adapter("ArmCompute").list_snapshots(
        e.disk.subscription_id, e.disk.resource_group
    ),
    "ArmCompute.begin_delete_snapshot": lambda e: e.adapter("ArmCompute").begin_delete_snapshot(e.snapshot_id),
    "ArmArcMachines.get_machine": lambda e: e.adapter("ArmArcMachines").get_machine(e.estate.arc_servers[0].id),
    "ArmArcMachines.list_extensions": lambda e: e.adapter("ArmArcMachines").list_extensions(
        e.estate.arc_servers[0].id
    ),
    "ResourceGraphAssignments.list_assignments": lambda e: e.adapter("ResourceGraphAssignments").list_assignments(
        e.estate.configuration.id, e.estate.subscription_ids
    ),
    "ResourceGraphAssignments.list_machines": lambda e: e.adapter("ResourceGraphAssignments").list_machines(
        e.estate.subscription_ids
    ),
    "ArmAlertSuppression.put_rule": _put_rule,
    "ArmAlertSuppression.get_rule": lambda e: e.adapter("ArmAlertSuppression").get_rule(e.rule_id),
    "ArmAlertSuppression.delete_rule": lambda e: e.adapter("ArmAlertSuppression").delete_rule(e.rule_id),
    "ArmRunCancellation.cancel": lambda e: e.adapter("ArmRunCancellation").cancel(e.estate.run.correlation_id),
    "ArmScriptTargets.get_target": lambda e: [
        e.adapter("ArmScriptTargets").get_target(target.resource_id) for target in e.script_targets()
    ],
    "ArmRunCommands.begin_script": _begin_run_commands,
    "ArmRunCommands.get_execution": _follow_run_commands,
    "ArmRunCommands.delete_execution": _delete_run_commands,
    "AutomationJobs.begin_script": _begin_jobs,
    "AutomationJobs.get_execution": _follow_finished_job,
    "AutomationJobs.delete_execution": _stop_running_job,
}


@dataclass(frozen=True)
class Request:
    driver: str
    method: str
    path: str
    operation: str | None
    status: int


@pytest.fixture(scope="module")
def requests() -> Iterator[list[Request]]:
    """Every request the drivers made, in order, each with the driver that made it."""
    estate = Estate.generate(machines=4, subscriptions=1, arc_servers=1, seed=3, run_start=RUN_START)
    clock = ManualClock(RUN_START - timedelta(minutes=40))
    with SimulatorServer(estate, clock=clock) as server:
        facts = Facts(server, ArmClients(server.url, ArmAuth.SIMULATOR))
        server.state.set_arc_status(estate.arc_servers[0].id, ArcStatus.CONNECTED)
        programmed = http.post(
            f"{server.url}/_sim/run-commands", json={"id": JOB_FOREVER[1], "timeout": True}, timeout=5
        )
        assert programmed.ok, programmed.text
        made: list[Request] = []
        for driver, drive in DRIVERS.items():
            since = len(server.state.requests())
            drive(facts)
            made.extend(
                Request(driver, record.method, record.path, record.operation, record.status)
                for record in server.state.requests()[since:]
            )
        yield made


# --- the roles in Bicep ----------------------------------------------------------------------------


@cache
def bicep(path: Path) -> dict[str, Any]:
    return pycep.BicepParser().parse(file_path=path)


def mentions(tree: Any, name: str) -> bool:
    """Whether a parsed Bicep expression refers to the symbol ``name`` anywhere."""
    if isinstance(tree, str):
        return tree == name
    if isinstance(tree, dict):
        return any(mentions(value, name) for value in tree.values())
    if isinstance(tree, list | tuple):
        return any(mentions(value, name) for value in tree)
    return False


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's properties, inside any ``if`` or ``for``."""
    config = resource["config"]
    while "config" in config:
        config = config["config"]
    return config


def condition(resource: dict[str, Any]) -> Any:
    """The ``if (...)`` of a resource or module, or None."""
    return resource["config"].get("condition")


@cache
def role_actions(grant: Grant) -> tuple[str, ...]:
    role = ROLES[grant]
    config = bicep(MODULES / f"{role.template}.bicep")["resources"][role.symbol]["config"]
    while "condition" in config:
        config = config["config"]
    permissions = config["properties"]["permissions"]
    assert len(permissions) == 1, f"{role.symbol}: one permission block expected"
    assert permissions[0]["notActions"] == [] and permissions[0]["dataActions"] == []
    return tuple(permissions[0]["actions"])


def needed(requests: list[Request]) -> dict[Grant, dict[str, list[Request]]]:
    """Per grant, each action the requests need and the requests that need it."""
    result: dict[Grant, dict[str, list[Request]]] = {grant: {} for grant in Grant}
    for request in requests:
        for permission in required_permissions(request.method, request.path):
            result[permission.grant].setdefault(documented(permission.action).action, []).append(request)
    return result


# --- tests -------------------------------------------------------------------------------------------


def test_the_adapters_are_found():
    assert {"ArmCompute", "ArmAlertSuppression", "ResourceGraphInventory", "ArmRunCancellation"} <= set(
        adapter_classes()
    )


def test_every_adapter_method_is_driven():
    missing = sorted(adapter_methods() - set(DRIVERS))
    assert not missing, f"add a driver to DRIVERS in {Path(__file__).name} for: {missing}"
    assert not set(DRIVERS) - adapter_methods(), "a driver names a method that no longer exists"


def test_every_driver_reaches_a_route_the_simulator_serves(requests: list[Request]):
    for driver in DRIVERS:
        made = [request for request in requests if request.driver == driver]
        assert made, f"{driver} made no request: its driver tests nothing"
        for request in made:
            # operation None: a path the simulator does not serve (404 InvalidResourceType or 405).
            assert request.operation is not None, (
                f"{driver}: the simulator does not serve {request.method} {request.path}"
            )
            assert request.status < 500, f"{driver}: {request.method} {request.path} answered {request.status}"


def test_every_request_is_granted_by_its_role(requests: list[Request]):
    missing = []
    for grant, actions in needed(requests).items():
        granted = {action.lower() for action in role_actions(grant)}
        for action, by in actions.items():
            if action.lower() not in granted:
                template, symbol = ROLES[grant][:2]
                example = by[0]
                missing.append(
                    f"{action} ({example.driver}: {example.method} {example.path}) "
                    f"is not in {symbol} of {template}.bicep"
                )
    assert not missing, "\n".join(missing)


def test_roles_hold_no_action_that_no_request_needs(requests: list[Request]):
    for grant, actions in needed(requests).items():
        extra = {action.lower() for action in role_actions(grant)} - {action.lower() for action in actions}
        assert not extra, f"{ROLES[grant][1]} grants {sorted(extra)}, which no adapter request needs"


def test_conditional_roles_are_off_by_default_and_on_only_with_their_switch():
    main = bicep(INFRA / "main.bicep")
    for role in ROLES.values():
        if role.switch is None:
            continue
        parameter = main["parameters"][role.switch]
        assert not parameter["default"], f"{role.switch} must be off by default (it turns on {role.symbol})"
        module = main["modules"][role.module]
        template = bicep(MODULES / f"{role.template}.bicep")["resources"]
        if mentions(condition(module), role.switch):
            continue  # the whole module, role and assignment, is deployed only with the switch on
        # Otherwise the module passes the switch on, and the role and every assignment of it are
        # conditional on that parameter of the template.
        passed = [name for name, value in body(module)["params"].items() if mentions(value, role.switch)]
        assert passed, f"{role.module} neither depends on nor passes {role.switch}: {role.symbol} is always there"
        assert any(mentions(condition(template[role.symbol]), name) for name in passed), role.symbol
        assignments = [
            symbol
            for symbol, resource in template.items()
            if symbol != role.symbol and mentions(resource["config"], role.symbol)
        ]
        assert assignments, f"nothing assigns {role.symbol}"
        for symbol in assignments:
            assert any(mentions(condition(template[symbol]), name) for name in passed), (
                f"{symbol} assigns {role.symbol} even when {role.switch} is off"
            )


def test_code_execution_is_granted_only_by_a_role_a_deployment_turns_on():
    for grant, role in ROLES.items():
        runs_code = [
            action
            for action in role_actions(grant)
            if any(action.lower().startswith(prefix) for prefix in GRANT_BY_ACTION_PREFIX)
        ]
        if role.switch is None:
            assert not runs_code, f"{role.symbol} is always assigned, yet grants {runs_code}"


def test_the_hooks_container_is_the_one_the_app_reads_and_only_with_hooks():
    from shared.names import HOOKS_CONTAINER

    main = bicep(INFRA / "main.bicep")
    assert main["variables"]["names"]["value"]["hooksContainer"] == HOOKS_CONTAINER
    storage_params = body(main["modules"]["storage"])["params"]
    assert mentions(storage_params["hooksContainerName"], "enableHooks")
    assert mentions(condition(main["modules"]["hooksAccess"]), "enableHooks")
    storage = bicep(MODULES / "storage.bicep")["resources"]["hooksContainer"]
    assert mentions(condition(storage), "hooksContainerName")
    reader = body(bicep(MODULES / "hooks-access.bicep")["resources"]["reader"])
    # Storage Blob Data Reader, on the container alone.
    assert reader["scope"] == "container"
    assert bicep(MODULES / "hooks-access.bicep")["variables"]["storageBlobDataReader"]["value"] == (
        "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    )


def test_the_automation_role_is_assigned_on_the_account_alone():
    resources = bicep(MODULES / "automation-access.bicep")["resources"]
    assert body(resources["automationJobRunnerAssignment"])["scope"] == "account"
    assert mentions(body(resources["automationJobRunnerAssignment"])["properties"], "automationJobRunnerRole")


def test_role_actions_are_spelled_as_microsoft_documents_them():
    for grant in Grant:
        for action in role_actions(grant):
            assert documented(action).action == action


def test_roles_exist_for_every_grant_and_none_is_empty():
    for grant in Grant:
        assert role_actions(grant), f"{ROLES[grant][1]} holds no action"


DOC_TABLE = re.compile(r"^\|\s*`(Microsoft\.[A-Za-z]+/[^`]+)`\s*\|", re.MULTILINE)


def test_deploy_doc_maps_every_role_action():
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("### Actions of the custom roles", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    in_doc = DOC_TABLE.findall(section)
    assert len(in_doc) == len(set(in_doc)), "an action is listed twice in docs/deploy.md"
    in_roles = {action for grant in Grant for action in role_actions(grant)}
    assert set(in_doc) == in_roles


# --- the derivation itself ---------------------------------------------------------------------------

SUB = "/subscriptions/11111111-1111-1111-1111-111111111111"
RG = SUB + "/resourceGroups/rg-app"
CONFIG = RG + "/providers/microsoft.maintenance/maintenanceconfigurations/mc"


@pytest.mark.parametrize(
    ("method", "path", "action", "grant"),
    [
        (
            "GET",
            RG + "/providers/Microsoft.Compute/virtualMachines/vm1?$expand=instanceView",
            "Microsoft.Compute/virtualMachines/read",
            Grant.TARGET,
        ),
        (
            "POST",
            RG + "/providers/Microsoft.Compute/virtualMachines/vm1/deallocate",
            "Microsoft.Compute/virtualMachines/deallocate/action",
            Grant.TARGET,
        ),
        ("GET", RG + "/providers/Microsoft.Compute/snapshots", "Microsoft.Compute/snapshots/read", Grant.TARGET),
        (
            "DELETE",
            RG + "/providers/Microsoft.Compute/snapshots/s1",
            "Microsoft.Compute/snapshots/delete",
            Grant.TARGET,
        ),
        (
            "PUT",
            CONFIG + "/providers/microsoft.maintenance/applyupdates/20261122020000",
            "Microsoft.Maintenance/applyUpdates/write",
            Grant.CONFIGURATION,
        ),
        (
            "PUT",
            RG + "/providers/Microsoft.AlertsManagement/actionRules/r1",
            "Microsoft.AlertsManagement/actionRules/write",
            Grant.SUPPRESSION,
        ),
        # Calls other parts of prepost are adding derive correctly too:
        (
            "POST",
            RG + "/providers/Microsoft.Compute/virtualMachines/vm1/runCommand",
            "Microsoft.Compute/virtualMachines/runCommand/action",
            Grant.SCRIPTS,
        ),
        (
            "PUT",
            RG + "/providers/Microsoft.Compute/virtualMachines/vm1/runCommands/pre",
            "Microsoft.Compute/virtualMachines/runCommands/write",
            Grant.SCRIPTS,
        ),
        (
            "DELETE",
            RG + "/providers/Microsoft.HybridCompute/machines/arc1/runCommands/pre",
            "Microsoft.HybridCompute/machines/runcommands/delete",
            Grant.SCRIPTS,
        ),
        (
            "GET",
            RG + "/providers/Microsoft.Automation/automationAccounts/aa/jobs/0f1e/output",
            "Microsoft.Automation/automationAccounts/jobs/output/read",
            Grant.AUTOMATION,
        ),
        (
            "POST",
            RG + "/providers/Microsoft.Automation/automationAccounts/aa/jobs/0f1e/stop",
            "Microsoft.Automation/automationAccounts/jobs/stop/action",
            Grant.AUTOMATION,
        ),
        (
            "GET",
            RG + "/providers/Microsoft.Compute/virtualMachines/vm1/instanceView",
            "Microsoft.Compute/virtualMachines/instanceView/read",
            Grant.TARGET,
        ),
        (
            "GET",
            RG + "/providers/Microsoft.Compute/virtualMachines/vm1/extensions",
            "Microsoft.Compute/virtualMachines/extensions/read",
            Grant.TARGET,
        ),
        (
            "GET",
            RG + "/providers/Microsoft.HybridCompute/machines/arc1/extensions/x",
            "Microsoft.HybridCompute/machines/extensions/read",
            Grant.TARGET,
        ),
        (
            "GET",
            RG + "/providers/Microsoft.Maintenance/configurationAssignments/a1",
            "Microsoft.Maintenance/configurationAssignments/read",
            Grant.TARGET,
        ),
    ],
)
def test_action_follows_from_method_and_path(method: str, path: str, action: str, grant: Grant):
    assert required_permissions(method, "https://management.azure.com" + path) == (Permission(action, grant),)
    assert documented(action).action == action


def test_resource_graph_query_needs_read_on_the_rows_it_should_return():
    permissions = required_permissions("POST", "/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01")
    assert {p.action for p in permissions} == {
        "Microsoft.ResourceGraph/resources/read",
        "Microsoft.Maintenance/applyUpdates/read",
        "Microsoft.Maintenance/configurationAssignments/read",
    }
    assert {p.grant for p in permissions} == {Grant.TARGET}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", RG + "/providers/Microsoft.Compute/virtualMachines/vm1"),
        ("PUT", RG + "/providers/Microsoft.Compute/snapshots"),
        ("GET", RG + "/providers"),
    ],
)
def test_a_request_without_a_derivable_action_is_refused(method: str, path: str):
    with pytest.raises(UnmappedRequest):
        required_permissions(method, path)


def test_an_undocumented_action_is_refused():
    with pytest.raises(UndocumentedAction):
        documented("Microsoft.Compute/virtualMachines/doSomething/action")
    assert all(key == value.action.lower() for key, value in DOCUMENTED_ACTIONS.items())


def test_creating_a_snapshot_needs_begin_get_access_on_its_source_disk():
    permissions = required_permissions("PUT", RG + "/providers/Microsoft.Compute/snapshots/s1")
    assert [p.action for p in permissions] == [
        "Microsoft.Compute/snapshots/write",
        "Microsoft.Compute/disks/beginGetAccess/action",
    ]
