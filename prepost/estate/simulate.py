"""An estate file as the simulator's seed (:class:`prepost.simulator.estate.Estate`).

Everything the simulator models is mapped: subscriptions and resource groups, VMs with their
disks, power state and patch settings, Arc servers with status and agent version,
configurations with their window and tags, and runs with their machines (declared, or derived
from the configuration's assignments and dynamic scopes). What the file declares but the
simulator does not answer yet (VM agent and extension states) is listed by
:func:`not_simulated`, so nobody mistakes a rehearsal for a check of it.
"""

from __future__ import annotations

import random
import uuid

from prepost.simulator import ids
from prepost.simulator.estate import (
    ArcServer,
    ArcStatus,
    Disk,
    Estate,
    MaintenanceConfiguration,
    OsType,
    PatchMode,
    PowerState,
    VirtualMachine,
)

from .model import ArcSpec, DiskSpec, EstateFile, VmSpec


def to_simulator(estate: EstateFile) -> Estate:
    """The simulator's seed for ``estate``; deterministic (same file, same GUIDs)."""
    seeded = Estate(
        vms=[_vm(vm) for vm in estate.vms],
        arc_servers=[_arc(arc) for arc in estate.arc_servers],
        configurations=[
            MaintenanceConfiguration(
                subscription_id=config.subscription_id,
                resource_group=ids.resource_group_of(config.id) or "",
                name=config.name,
                location=config.location,
                tags=dict(config.tags),
                window_start=config.window.start,
                duration=config.window.duration,
                time_zone=config.window.time_zone,
                recur_every=config.window.recur_every,
            )
            for config in estate.configurations
        ],
        extra_resource_groups=[(sub.id, group) for sub in estate.subscriptions for group in sub.resource_groups],
        extra_subscriptions=[sub.id for sub in estate.subscriptions],
    )
    for run in estate.runs:
        seeded.add_run(run.correlation_id, estate.run_machines(run), run.status)
    return seeded


def not_simulated(estate: EstateFile) -> list[str]:
    """What the file declares that the simulator does not answer with yet (empty when nothing)."""
    missing = []
    agents = sum(1 for vm in estate.vms if vm.agent is not None)
    extensions = sum(len(m.extensions) for m in estate.machines)
    if agents:
        missing.append(f"VM agent states ({agents} VMs)")
    if extensions:
        missing.append(f"extension states ({extensions} extensions)")
    return missing


def _disk(spec: DiskSpec, location: str, os_type: OsType | None) -> Disk:
    parsed = ids.parse(spec.id)
    assert parsed is not None and parsed.resource_group is not None  # checked by the loader
    return Disk(
        subscription_id=parsed.subscription_id,
        resource_group=parsed.resource_group,
        name=parsed.name,
        location=location,
        size_gb=spec.size_gb,
        os_type=os_type,
        sku=spec.sku,
        unique_id=_guid(spec.id),
    )


def _vm(spec: VmSpec) -> VirtualMachine:
    parsed = ids.parse(spec.id)
    assert parsed is not None and parsed.resource_group is not None  # checked by the loader
    os_type = OsType(spec.os_type)
    return VirtualMachine(
        subscription_id=parsed.subscription_id,
        resource_group=parsed.resource_group,
        name=parsed.name,
        location=spec.location,
        os_type=os_type,
        os_disk=_disk(spec.os_disk, spec.location, os_type),
        data_disks=[_disk(disk, spec.location, None) for disk in spec.data_disks],
        power_state=PowerState(spec.power_state),
        patch_mode=PatchMode(spec.patch_mode),
        bypass_platform_safety_checks=spec.bypass_platform_safety_checks,
        vm_size=spec.vm_size,
        tags=dict(spec.tags),
        vm_id=_guid(spec.id),
    )


def _arc(spec: ArcSpec) -> ArcServer:
    return ArcServer.create(
        spec.id,
        location=spec.location,
        os_type=OsType(spec.os_type),
        status=ArcStatus(spec.status),
        agent_version=spec.agent_version,
        last_status_change=spec.last_status_change,
        tags=spec.tags,
    )


def _guid(resource_id: str) -> str:
    """A GUID that is the same for the same id on every run (ids are case-insensitive)."""
    return str(uuid.UUID(int=random.Random(ids.key(resource_id)).getrandbits(128), version=4))
