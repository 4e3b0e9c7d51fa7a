"""A local simulator of the Azure management APIs the pipeline calls.

A stateful HTTP server on loopback that answers Azure Resource Manager and Resource Graph the
way Azure does (paths, status codes, ARM error bodies, long-running operations, throttling), so
the real Azure SDK clients work against it with only ``base_url`` and the authentication policy
changed. See ``docs/simulator.md``.
"""

from __future__ import annotations

from .clock import Clock, ManualClock, SystemClock
from .config import LatencyConfig, LroConfig, LroTiming, ResourceLimits, SimulatorConfig
from .estate import (
    ArcServer,
    ArcStatus,
    Disk,
    Estate,
    MaintenanceConfiguration,
    OsType,
    PatchMode,
    PowerState,
    Run,
    VirtualMachine,
    run_correlation_id,
)
from .faults import FaultConfig, FaultKind, FaultRule, FaultSpec
from .ops import Operation
from .server import SimulatorServer
from .state import SimulatorState
from .throttling import DEFAULT_COMPUTE_POLICIES, BucketConfig, ComputePolicy, GraphQuota, ThrottleConfig

__all__ = [
    "DEFAULT_COMPUTE_POLICIES",
    "ArcServer",
    "ArcStatus",
    "BucketConfig",
    "Clock",
    "ComputePolicy",
    "Disk",
    "Estate",
    "FaultConfig",
    "FaultKind",
    "FaultRule",
    "FaultSpec",
    "GraphQuota",
    "LatencyConfig",
    "LroConfig",
    "LroTiming",
    "MaintenanceConfiguration",
    "ManualClock",
    "Operation",
    "OsType",
    "PatchMode",
    "PowerState",
    "ResourceLimits",
    "Run",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorState",
    "SystemClock",
    "ThrottleConfig",
    "VirtualMachine",
    "run_correlation_id",
]
