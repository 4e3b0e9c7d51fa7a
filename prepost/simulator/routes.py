"""The ARM paths the simulator answers, matched case-insensitively as ARM matches them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from werkzeug.wrappers import Response

from .errors import ArmError
from .handlers import alerts, compute, graph, hybrid, maintenance, operations, run_commands, snapshots
from .http import RequestContext
from .ops import Operation

Handler = Callable[[RequestContext], Response]

_SUB = r"/subscriptions/(?P<subscription>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<resource_group>[^/]+)"
_NAME = r"(?P<name>[^/]+)"
_VM = _RG + r"/providers/microsoft\.compute/virtualmachines/" + _NAME
_SNAPSHOTS = _RG + r"/providers/microsoft\.compute/snapshots"
_CONFIG = _RG + r"/providers/microsoft\.maintenance/maintenanceconfigurations/" + _NAME
_JOB = _RG + r"/providers/microsoft\.automation/automationaccounts/(?P<account>[^/]+)/jobs/(?P<job>[^/]+)"
_RUN_COMMAND = (
    _RG
    + r"/providers/(?:microsoft\.compute/virtualmachines|microsoft\.hybridcompute/machines)/"
    + _NAME
    + r"/runcommands/(?P<command>[^/]+)"
)


@dataclass(frozen=True)
class Route:
    """One method and path pattern, the operation name it counts as, and its handler."""

    method: str
    pattern: re.Pattern[str]
    operation: Operation
    handler: Handler
    long_running: bool = False
    subscription_scoped: bool = True


def _route(method: str, pattern: str, operation: Operation, handler: Handler, **kwargs: bool) -> Route:
    return Route(method, re.compile("^" + pattern + "$", re.IGNORECASE), operation, handler, **kwargs)


ROUTES: tuple[Route, ...] = (
    _route(
        "POST",
        r"/providers/microsoft\.resourcegraph/resources",
        Operation.RESOURCE_GRAPH_QUERY,
        graph.query,
        subscription_scoped=False,
    ),
    _route("GET", _CONFIG, Operation.MAINTENANCE_CONFIGURATION_GET, maintenance.get_configuration),
    _route(
        "GET",
        _CONFIG + r"/providers/microsoft\.maintenance/applyupdates/(?P<run>[^/]+)",
        Operation.APPLY_UPDATES_GET,
        maintenance.get_run,
    ),
    _route(
        "PUT",
        _CONFIG + r"/providers/microsoft\.maintenance/applyupdates/(?P<run>[^/]+)",
        Operation.APPLY_UPDATES_PUT,
        maintenance.put_run,
    ),
    _route("GET", _VM, Operation.VM_GET, compute.get_vm),
    _route("POST", _VM + "/start", Operation.VM_START, compute.start_vm, long_running=True),
    _route("POST", _VM + "/deallocate", Operation.VM_DEALLOCATE, compute.deallocate_vm, long_running=True),
    _route("GET", _RG + r"/providers/microsoft\.compute/disks/" + _NAME, Operation.DISK_GET, compute.get_disk),
    _route("GET", _SNAPSHOTS, Operation.SNAPSHOT_LIST, snapshots.list_snapshots),
    _route("GET", _SNAPSHOTS + "/" + _NAME, Operation.SNAPSHOT_GET, snapshots.get_snapshot),
    _route("PUT", _SNAPSHOTS + "/" + _NAME, Operation.SNAPSHOT_CREATE, snapshots.put_snapshot, long_running=True),
    _route(
        "DELETE",
        _SNAPSHOTS + "/" + _NAME,
        Operation.SNAPSHOT_DELETE,
        snapshots.delete_snapshot,
        long_running=True,
    ),
    _route(
        "GET",
        _SUB + r"/providers/microsoft\.compute/locations/(?P<location>[^/]+)/(?:operations|diskoperations)/"
        r"(?P<operation_id>[^/]+)",
        Operation.OPERATION_STATUS,
        operations.get_status,
    ),
    _route(
        "GET",
        _RG + r"/providers/microsoft\.alertsmanagement/actionrules/" + _NAME,
        Operation.ALERT_RULE_GET,
        alerts.get_rule,
    ),
    _route(
        "PUT",
        _RG + r"/providers/microsoft\.alertsmanagement/actionrules/" + _NAME,
        Operation.ALERT_RULE_PUT,
        alerts.put_rule,
    ),
    _route(
        "DELETE",
        _RG + r"/providers/microsoft\.alertsmanagement/actionrules/" + _NAME,
        Operation.ALERT_RULE_DELETE,
        alerts.delete_rule,
    ),
    _route(
        "GET",
        _RG + r"/providers/microsoft\.hybridcompute/machines/" + _NAME,
        Operation.ARC_GET,
        hybrid.get_machine,
    ),
    _route("PUT", _RUN_COMMAND, Operation.RUN_COMMAND_PUT, run_commands.put_run_command),
    _route("GET", _RUN_COMMAND, Operation.RUN_COMMAND_GET, run_commands.get_run_command),
    _route("DELETE", _RUN_COMMAND, Operation.RUN_COMMAND_DELETE, run_commands.delete_run_command),
    _route("PUT", _JOB, Operation.AUTOMATION_JOB_PUT, run_commands.put_job),
    _route("GET", _JOB, Operation.AUTOMATION_JOB_GET, run_commands.get_job),
    _route("GET", _JOB + "/output", Operation.AUTOMATION_JOB_OUTPUT, run_commands.get_job_output),
    _route("POST", _JOB + "/stop", Operation.AUTOMATION_JOB_STOP, run_commands.stop_job),
    _route(
        "GET",
        _RG + r"/providers/microsoft\.hybridcompute/machines/" + _NAME + "/extensions",
        Operation.ARC_EXTENSIONS_LIST,
        hybrid.list_extensions,
    ),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for a request, or an ARM error: 405 for a known path with another method,
    404 ``InvalidResourceType`` for a path the simulator does not serve."""
    allowed = []
    for route in ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, {name: value for name, value in found.groupdict().items() if value is not None}
        allowed.append(route.method)
    if allowed:
        raise ArmError(
            405,
            "MethodNotAllowed",
            f"The requested resource does not support http method '{method}'.",
            headers={"Allow": ", ".join(sorted(set(allowed)))},
        )
    raise ArmError(
        404,
        "InvalidResourceType",
        f"The resource type of '{path}' could not be found: the simulator does not serve it.",
    )
