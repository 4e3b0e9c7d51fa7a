"""The names of the operations the simulator answers.

One name per call the pipeline makes. Fault rules, latency settings, the request log and the
operation counters all use these names; ``"*"`` in a fault or latency setting means all of them.
"""

from __future__ import annotations

from enum import Enum


class Operation(str, Enum):
    """An ARM or Resource Graph call, as named in fault rules, latency settings and the request log."""

    RESOURCE_GRAPH_QUERY = "resourcegraph.query"
    MAINTENANCE_CONFIGURATION_GET = "maintenanceconfigurations.get"
    APPLY_UPDATES_GET = "applyupdates.get"
    APPLY_UPDATES_PUT = "applyupdates.put"
    VM_GET = "vm.get"
    VM_START = "vm.start"
    VM_DEALLOCATE = "vm.deallocate"
    DISK_GET = "disks.get"
    SNAPSHOT_CREATE = "snapshots.create"
    SNAPSHOT_GET = "snapshots.get"
    SNAPSHOT_DELETE = "snapshots.delete"
    SNAPSHOT_LIST = "snapshots.list"
    ALERT_RULE_PUT = "alertrules.put"
    ALERT_RULE_GET = "alertrules.get"
    ALERT_RULE_DELETE = "alertrules.delete"
    ARC_GET = "arc.get"
    RUN_COMMAND_PUT = "runcommands.put"
    """Create or update a run command on a VM or an Arc server: runs its script."""
    RUN_COMMAND_GET = "runcommands.get"
    RUN_COMMAND_DELETE = "runcommands.delete"
    AUTOMATION_JOB_PUT = "automationjobs.put"
    """Create a runbook job (on a hybrid worker group): runs the runbook."""
    AUTOMATION_JOB_GET = "automationjobs.get"
    AUTOMATION_JOB_OUTPUT = "automationjobs.output"
    AUTOMATION_JOB_STOP = "automationjobs.stop"
    ARC_EXTENSIONS_LIST = "arc.extensions.list"
    OPERATION_STATUS = "operations.get"
    """A poll of a long-running operation's status (``Azure-AsyncOperation`` or ``Location`` URL)."""


WILDCARD = "*"


def known(name: str) -> bool:
    """Whether ``name`` is an operation name or the wildcard."""
    return name == WILDCARD or name in {operation.value for operation in Operation}
