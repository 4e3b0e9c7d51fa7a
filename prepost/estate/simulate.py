"""An estate file as the simulator's seed (:class:`prepost.simulator.estate.Estate`).

Everything the file declares is mapped, so a rehearsal and ``prepost preflight`` see that
estate and no other: subscriptions and resource groups; VMs with their disks (and the
snapshots they already have), power state, patch settings, guest agent state and extensions;
Arc servers with status, agent version, automatic upgrade and extensions; configurations with
their window and tags; their assignments and dynamic scopes as the simulator's
``ConfigurationAssignment`` rows (a configuration with neither is assigned to every machine of
the file, as the file reads); and runs with their machines (declared, or the configuration's).
"""

from __future__ import annotations

import random
import uuid

from prepost.simulator import ids
from prepost.simulator.estate import (
    ArcServer,
    ArcStatus,
    ConfigurationAssignment,
    Disk,
    Estate,
    Extension,
    MaintenanceConfiguration,
    OsType,
    PatchMode,
    PowerState,
    VirtualMachine,
)

from .model import ArcSpec, DiskSpec, EstateFile, ExtensionSpec, VmSpec


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
        assignments=assignments(estate),
    )
    for run in estate.runs:
        seeded.add_run(run.correlation_id, estate.run_machines(run), run.status)
    return seeded


def assignments(estate: EstateFile) -> list[ConfigurationAssignment]:
    """The file's assignments as ARM holds them: one per machine assigned by name, one per
    subscription of a dynamic scope (at subscription scope, with the filter), and, for a
    configuration with neither, one per machine of the file."""
    found: list[ConfigurationAssignment] = []
    for config in estate.configurations:
        own = [a for a in estate.assignments if ids.same(a.configuration_id, config.id)]
        scopes = [s for s in estate.dynamic_scopes if ids.same(s.configuration_id, config.id)]
        machines = [a.resource_id for a in own] if own or scopes else estate.machine_ids
        for machine_id in machines:
            name = f"{config.name}-{machine_id.rstrip('/').rsplit('/', 1)[-1]}"
            found.append(ConfigurationAssignment(config.id, name, machine_id))
        for scope in scopes:
            for subscription_id in scope.subscriptions:
                scope_id = f"/subscriptions/{subscription_id}"
                found.append(ConfigurationAssignment(config.id, scope.name, scope_id, scope.arm_filter()))
    return found


def _extension(spec: ExtensionSpec) -> Extension:
    return Extension(
        name=spec.name,
        type=spec.type,
        publisher=spec.publisher,
        version=spec.version,
        provisioning_state=spec.provisioning_state,
        message=spec.message,
    )


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
        existing_snapshots=spec.existing_snapshots,
    )


def _vm(spec: VmSpec) -> VirtualMachine:
    parsed = ids.parse(spec.id)
    assert parsed is not None and parsed.resource_group is not None  # checked by the loader
    os_type = OsType(spec.os_type)
    agent = spec.agent
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
        agent_ready=agent is None or agent.status.strip().lower() == "ready",
        agent_status=agent.status if agent else None,
        agent_version=(agent.version if agent else "") or "2.12.0.2",
        agent_message=agent.message if agent else "",
        extensions=[_extension(ext) for ext in spec.extensions],
    )


def _arc(spec: ArcSpec) -> ArcServer:
    arc = ArcServer.create(
        spec.id,
        location=spec.location,
        os_type=OsType(spec.os_type),
        status=ArcStatus(spec.status),
        agent_version=spec.agent_version,
        last_status_change=spec.last_status_change,
        tags=spec.tags,
    )
    arc.automatic_upgrade = spec.automatic_upgrade
    arc.extensions = [_extension(ext) for ext in spec.extensions]
    return arc


def _guid(resource_id: str) -> str:
    """A GUID that is the same for the same id on every run (ids are case-insensitive)."""
    return str(uuid.UUID(int=random.Random(ids.key(resource_id)).getrandbits(128), version=4))
