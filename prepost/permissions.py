"""The Azure RBAC action every ARM request of prepost needs, and which custom role grants it.

ARM authorizes a request by its method and path; query parameters such as
``$expand=instanceView`` do not change the action. The action follows from the path:

=============================================  ===============================================
``GET .../providers/NS/type/name[/child/n]``   ``NS/type[/child]/read``
``GET .../providers/NS/type`` (a list)          ``NS/type/read``
``GET .../NS/type/name/sub`` (``instanceView``) ``NS/type/sub/read``
``PUT`` or ``PATCH`` on a resource              ``NS/type[/child]/write``
``DELETE`` on a resource                        ``NS/type[/child]/delete``
``POST .../NS/type/name/verb``                  ``NS/type/verb/action``
=============================================  ===============================================

For an extension resource (a second ``/providers/`` in the path, e.g. a run's
``applyUpdates`` under a maintenance configuration) the action is the extension's. The one
exception prepost meets is Resource Graph, in :data:`SPECIAL_REQUESTS`; a request whose body
refers to another resource may need an action there too (:data:`LINKED_PERMISSIONS`).

Every action derived this way must be one of :data:`DOCUMENTED_ACTIONS`, checked against
Microsoft's list of resource provider operations, and must be in the Bicep role of its
:class:`Grant` (``tests/infra/test_roles.py``; ``docs/deploy.md`` says how to add a call).
https://learn.microsoft.com/azure/role-based-access-control/resource-provider-operations
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

PERMISSIONS_DOCS = "https://learn.microsoft.com/azure/role-based-access-control/permissions"
COMPUTE = f"{PERMISSIONS_DOCS}/compute"
HYBRID = f"{PERMISSIONS_DOCS}/hybrid-multicloud"
GOVERNANCE = f"{PERMISSIONS_DOCS}/management-and-governance"
MONITOR = f"{PERMISSIONS_DOCS}/monitor"
AUTOMATION_ROLE_DOCS = "https://learn.microsoft.com/azure/automation/automation-role-based-access-control"
ARC_RUN_COMMAND_DOCS = "https://learn.microsoft.com/azure/azure-arc/servers/run-command"
RESOURCE_GRAPH_PERMISSIONS = (
    "https://learn.microsoft.com/azure/governance/resource-graph/overview#permissions-in-azure-resource-graph"
)


class Grant(str, Enum):
    """Where an action is granted: one custom role each (see docs/deploy.md)."""

    TARGET = "target"
    """Machine operator role, on every target subscription (target-subscription-roles.bicep)."""
    SUPPRESSION = "suppression"
    """Alert suppressor role, on the suppression resource group if set, else the target subscription."""
    CONFIGURATION = "configuration"
    """Run canceller role, on the maintenance configuration (maintenance-access.bicep)."""
    SCRIPTS = "scripts"
    """Script runner role, on every target subscription, only when hooks are enabled
    (``enableHooks``): Run Command runs code as root / SYSTEM, so the always-assigned machine
    operator role never holds it."""
    AUTOMATION = "automation"
    """Automation job runner role, on the Automation account named by ``hookAutomationAccountId``
    (automation-access.bicep), only when that account is given."""


@dataclass(frozen=True)
class DocumentedAction:
    action: str
    description: str
    source: str


def _documented(source: str, *rows: tuple[str, str]) -> dict[str, DocumentedAction]:
    return {action.lower(): DocumentedAction(action, description, source) for action, description in rows}


# Actions as Microsoft's operations lists spell them (with their descriptions there). Only the
# ones prepost's calls derive, or are about to: add a row when a new call derives a new action.
DOCUMENTED_ACTIONS: dict[str, DocumentedAction] = {
    **_documented(
        COMPUTE,
        ("Microsoft.Compute/virtualMachines/read", "Get the properties of a virtual machine"),
        ("Microsoft.Compute/virtualMachines/start/action", "Starts the virtual machine"),
        (
            "Microsoft.Compute/virtualMachines/deallocate/action",
            "Powers off the virtual machine and releases the compute resources",
        ),
        (
            "Microsoft.Compute/virtualMachines/instanceView/read",
            "Gets the detailed runtime status of the virtual machine and its resources",
        ),
        ("Microsoft.Compute/virtualMachines/extensions/read", "Get the properties of a virtual machine extension"),
        ("Microsoft.Compute/virtualMachines/runCommand/action", "Executes a predefined script on the virtual machine"),
        ("Microsoft.Compute/virtualMachines/runCommands/read", "Get the properties of a virtual machine run command"),
        (
            "Microsoft.Compute/virtualMachines/runCommands/write",
            "Creates a new virtual machine run command or updates an existing one",
        ),
        ("Microsoft.Compute/virtualMachines/runCommands/delete", "Deletes the virtual machine run command"),
        ("Microsoft.Compute/disks/read", "Get the properties of a Disk"),
        ("Microsoft.Compute/disks/beginGetAccess/action", "Get the SAS URI of the Disk for blob access"),
        ("Microsoft.Compute/snapshots/read", "Get the properties of a Snapshot"),
        ("Microsoft.Compute/snapshots/write", "Create a new Snapshot or update an existing one"),
        ("Microsoft.Compute/snapshots/delete", "Delete a Snapshot"),
    ),
    **_documented(
        HYBRID,
        ("Microsoft.HybridCompute/machines/read", "Read any Azure Arc machines"),
        ("Microsoft.HybridCompute/machines/extensions/read", "Reads any Azure Arc extensions"),
        # Spelled "runcommands" in the operations list; ARM compares actions without regard to
        # case, and ARC_RUN_COMMAND_DOCS spells the same actions "runCommands".
        ("Microsoft.HybridCompute/machines/runcommands/read", "Reads any Azure Arc runcommands"),
        ("Microsoft.HybridCompute/machines/runcommands/write", "Installs or Updates an Azure Arc runcommands"),
        ("Microsoft.HybridCompute/machines/runcommands/delete", "Deletes an Azure Arc runcommands"),
    ),
    **_documented(
        GOVERNANCE,
        ("Microsoft.Maintenance/maintenanceConfigurations/read", "Read maintenance configuration."),
        ("Microsoft.Maintenance/configurationAssignments/read", "Read maintenance configuration assignment."),
        ("Microsoft.Maintenance/applyUpdates/read", "Read apply updates to a resource."),
        ("Microsoft.Maintenance/applyUpdates/write", "Write apply updates to a resource."),
        (
            "Microsoft.ResourceGraph/resources/read",
            "Submits a query on resources within specified subscriptions, management groups or tenant scope",
        ),
        # Runbook jobs on hybrid worker groups: the actions of the built-in Automation Job
        # Operator role that prepost's calls need (AUTOMATION_ROLE_DOCS).
        ("Microsoft.Automation/automationAccounts/jobs/write", "Creates an Azure Automation job"),
        ("Microsoft.Automation/automationAccounts/jobs/read", "Gets an Azure Automation job"),
        ("Microsoft.Automation/automationAccounts/jobs/output/read", "Gets the output of a job"),
        ("Microsoft.Automation/automationAccounts/jobs/stop/action", "Stops an Azure Automation job"),
    ),
    **_documented(
        MONITOR,
        ("Microsoft.AlertsManagement/actionRules/read", "Get all the action rules for the input filters."),
        ("Microsoft.AlertsManagement/actionRules/write", "Create or update action rule in a given subscription"),
        ("Microsoft.AlertsManagement/actionRules/delete", "Delete action rule in a given subscription."),
    ),
}

# Where a request is granted, by the type of the resource its path starts in; TARGET otherwise.
GRANT_BY_RESOURCE_TYPE = {
    "microsoft.maintenance/maintenanceconfigurations": Grant.CONFIGURATION,
    "microsoft.alertsmanagement/actionrules": Grant.SUPPRESSION,
    "microsoft.automation/automationaccounts": Grant.AUTOMATION,
}

# Actions that run code inside a machine, whatever resource they are on: granted by the script
# runner role alone (a prefix of the lower-cased action). The machine itself stays TARGET.
GRANT_BY_ACTION_PREFIX = {
    "microsoft.compute/virtualmachines/runcommand/": Grant.SCRIPTS,
    "microsoft.compute/virtualmachines/runcommands/": Grant.SCRIPTS,
    "microsoft.hybridcompute/machines/runcommands/": Grant.SCRIPTS,
}


@dataclass(frozen=True)
class Permission:
    """One action a request needs, where it is granted, and why when the path does not say it."""

    action: str
    grant: Grant
    reason: str = ""


@dataclass(frozen=True)
class SpecialRequest:
    method: str
    path: re.Pattern[str]
    permissions: tuple[Permission, ...]


# Requests whose action does not follow from the path.
SPECIAL_REQUESTS: tuple[SpecialRequest, ...] = (
    SpecialRequest(
        "POST",
        re.compile(r"^/providers/microsoft\.resourcegraph/resources$", re.IGNORECASE),
        (
            Permission("Microsoft.ResourceGraph/resources/read", Grant.TARGET, "a Resource Graph query"),
            # Resource Graph returns only what the caller may read (RESOURCE_GRAPH_PERMISSIONS):
            # the maintenanceresources rows of a run are applyUpdates resources under each
            # machine, so without this read a run silently looks like "no machines".
            Permission(
                "Microsoft.Maintenance/applyUpdates/read",
                Grant.TARGET,
                "Resource Graph returns a run's maintenanceresources rows only to a caller who may read them",
            ),
            # The same rule for the configuration assignments preflight and the readiness timer
            # resolve a configuration's machines from (maintenanceresources, ResourceGraphAssignments).
            Permission(
                "Microsoft.Maintenance/configurationAssignments/read",
                Grant.TARGET,
                "Resource Graph returns configuration assignments only to a caller who may read them",
            ),
        ),
    ),
)


# Linked access checks: ARM also checks an action on a resource a request's body refers to.
# Creating a snapshot whose creationData.sourceResourceId is a managed disk is refused with
# LinkedAuthorizationFailed unless the caller may begin access on that disk, as Azure reports
# ("does not have permission to perform action 'Microsoft.Compute/disks/beginGetAccess/action'
# on the linked scope(s)", https://github.com/Azure/OpenShift/issues/186). prepost never calls
# beginGetAccess itself; the action is granted only because snapshot creation requires it.
LINKED_PERMISSIONS: dict[str, tuple[Permission, ...]] = {
    "microsoft.compute/snapshots/write": (
        Permission(
            "Microsoft.Compute/disks/beginGetAccess/action",
            Grant.TARGET,
            "linked access check on the source disk of a snapshot (LinkedAuthorizationFailed without it)",
        ),
    ),
}


class UnmappedRequest(ValueError):
    """A request whose action cannot be derived: add it to SPECIAL_REQUESTS."""


class UndocumentedAction(KeyError):
    """An action not in DOCUMENTED_ACTIONS: check Microsoft's operations list and add it."""


def required_permissions(method: str, url: str) -> tuple[Permission, ...]:
    """The permissions an ARM request needs. Raises :class:`UnmappedRequest` when unknown."""
    method = method.upper()
    path = _path(url)
    for special in SPECIAL_REQUESTS:
        if special.method == method and special.path.match(path):
            return special.permissions
    action = _derived_action(method, path)
    known = DOCUMENTED_ACTIONS.get(action.lower())
    return (
        Permission(known.action if known else action, _grant(path, action)),
        *LINKED_PERMISSIONS.get(action.lower(), ()),
    )


def documented(action: str) -> DocumentedAction:
    """The action as Microsoft documents it (its spelling, description and page)."""
    try:
        return DOCUMENTED_ACTIONS[action.lower()]
    except KeyError:
        raise UndocumentedAction(
            f"{action} is not in prepost.permissions.DOCUMENTED_ACTIONS: find it in {PERMISSIONS_DOCS} "
            "(or the resource provider's REST reference) and add it"
        ) from None


def _path(url: str) -> str:
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    return "/" + "/".join(segment for segment in path.split("/") if segment)


def _derived_action(method: str, path: str) -> str:
    segments = path.strip("/").split("/")
    providers = [index for index, segment in enumerate(segments) if segment.lower() == "providers"]
    if providers:
        last = providers[-1]
        if last + 1 >= len(segments):
            raise UnmappedRequest(f"{method} {path}: no resource provider namespace after /providers/")
        namespace, tail = segments[last + 1], segments[last + 2 :]
    else:
        # Resource groups and subscriptions themselves belong to Microsoft.Resources.
        namespace, tail = "Microsoft.Resources", segments
    if not tail:
        raise UnmappedRequest(f"{method} {path}: no resource type in the path")
    types = tail[0::2]
    addressed = len(tail) % 2 == 0  # type/name pairs only: one resource
    if addressed and method == "GET":
        verb = "read"
    elif addressed and method in ("PUT", "PATCH"):
        verb = "write"
    elif addressed and method == "DELETE":
        verb = "delete"
    elif not addressed and method == "GET":
        verb = "read"  # a list, or a sub-resource such as instanceView
    elif not addressed and method == "POST":
        return "/".join([namespace, *types, "action"])  # the last "type" is the verb
    else:
        raise UnmappedRequest(f"{method} {path}: no action follows from this method and path")
    return "/".join([namespace, *types, verb])


def _grant(path: str, action: str) -> Grant:
    for prefix, grant in GRANT_BY_ACTION_PREFIX.items():
        if action.lower().startswith(prefix):
            return grant
    segments = path.strip("/").split("/")
    for index, segment in enumerate(segments[:-2]):
        if segment.lower() == "providers":
            top = f"{segments[index + 1]}/{segments[index + 2]}".lower()
            return GRANT_BY_RESOURCE_TYPE.get(top, Grant.TARGET)
    return Grant.TARGET
