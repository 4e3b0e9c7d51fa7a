"""Building estates: the deterministic generator and the explicit, fixture-like builder behind
:meth:`Estate.generate <prepost.simulator.estate.Estate.generate>` and
:meth:`Estate.from_machines <prepost.simulator.estate.Estate.from_machines>`."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from . import ids
from .estate import (
    COMPUTE_VM,
    DEFAULT_RUN_START,
    HYBRID_MACHINE,
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


def generate(
    machines: int = 50,
    subscriptions: int = 2,
    arc_servers: int = 3,
    data_disks_every: int = 3,
    deallocated_every: int = 4,
    unsafe_patch_every: int = 10,
    seed: int = 1,
    *,
    run_start: datetime | None = None,
    configuration_tags: Mapping[str, str] | None = None,
    configuration_name: str = "mc-weekly",
    configuration_resource_group: str = "rg-patching",
    subscription_ids: Sequence[str] | None = None,
    vms_per_resource_group: int = 8,
    disconnected_arc_servers: int = 1,
    extra_resource_groups: Sequence[str] = (),
) -> Estate:
    """A deterministic estate.

    ``machines`` VMs spread round-robin over ``subscriptions`` subscriptions (GUIDs derived
    from ``seed`` unless ``subscription_ids`` is given) in resource groups ``rg-app-NN`` of
    ``vms_per_resource_group``; every ``data_disks_every``-th VM has one or two data disks,
    every ``deallocated_every``-th is deallocated, every ``unsafe_patch_every``-th has patch
    settings unsafe for scheduled patching (0 disables each). ``arc_servers`` Arc servers go
    to ``rg-arc-onprem``; the last ``disconnected_arc_servers`` of them are Disconnected. The
    maintenance configuration lives in the first subscription, and one run scheduled at
    ``run_start`` (default :data:`DEFAULT_RUN_START`) lists every machine.
    ``extra_resource_groups`` are created empty in every subscription.
    """
    rng = random.Random(seed)
    subs = list(subscription_ids) if subscription_ids else [_guid(rng) for _ in range(max(1, subscriptions))]
    start = (run_start or DEFAULT_RUN_START).astimezone(UTC)
    locations = ("westeurope", "northeurope", "swedencentral")
    vms: list[VirtualMachine] = []
    for index in range(machines):
        number = index + 1
        sub = subs[index % len(subs)]
        group = (index // len(subs)) // max(1, vms_per_resource_group)
        rg = f"rg-app-{group + 1:02d}"
        location = locations[group % len(locations)]
        windows = rng.random() < 0.4
        os_type = OsType.WINDOWS if windows else OsType.LINUX
        name = f"vm-{'win' if windows else 'lnx'}-{number:03d}"
        os_disk = Disk(sub, rg, f"{name}-osdisk", location, 127 if windows else 30, os_type, unique_id=_guid(rng))
        data_disks = []
        if _every(number, data_disks_every):
            for lun in range(1 + rng.randrange(2)):
                data_disks.append(
                    Disk(
                        sub,
                        rg,
                        f"{name}-data-{lun}",
                        location,
                        rng.choice((64, 128, 256, 512, 1024)),
                        sku=rng.choice(("Premium_LRS", "StandardSSD_LRS")),
                        unique_id=_guid(rng),
                    )
                )
        patch_mode, bypass = PatchMode.AUTOMATIC_BY_PLATFORM, True
        if _every(number, unsafe_patch_every):
            choices = (
                [(PatchMode.AUTOMATIC_BY_OS, False), (PatchMode.MANUAL, False)]
                if windows
                else [(PatchMode.IMAGE_DEFAULT, False)]
            )
            patch_mode, bypass = rng.choice([*choices, (PatchMode.AUTOMATIC_BY_PLATFORM, False)])
        vms.append(
            VirtualMachine(
                subscription_id=sub,
                resource_group=rg,
                name=name,
                location=location,
                os_type=os_type,
                os_disk=os_disk,
                data_disks=data_disks,
                power_state=PowerState.DEALLOCATED if _every(number, deallocated_every) else PowerState.RUNNING,
                patch_mode=patch_mode,
                bypass_platform_safety_checks=bypass,
                vm_size=rng.choice(("Standard_D2s_v5", "Standard_B2ms", "Standard_E4s_v5")),
                tags={"workload": f"app-{group + 1:02d}", "environment": rng.choice(("prod", "test"))},
                vm_id=_guid(rng),
            )
        )
    arcs: list[ArcServer] = []
    for index in range(arc_servers):
        windows = index % 2 == 1
        disconnected = index >= arc_servers - disconnected_arc_servers
        arcs.append(
            ArcServer(
                subscription_id=subs[index % len(subs)],
                resource_group="rg-arc-onprem",
                name=f"arc-{'win' if windows else 'lnx'}-{index + 1:03d}",
                location="westeurope",
                os_type=OsType.WINDOWS if windows else OsType.LINUX,
                status=ArcStatus.DISCONNECTED if disconnected else ArcStatus.CONNECTED,
                agent_version=rng.choice(("1.46.02790.1995", "1.47.02825.2025", "1.48.02861.2034")),
                last_status_change=start - timedelta(days=9 if disconnected else 2, minutes=rng.randrange(600)),
                os_name="windows" if windows else "linux",
                vm_id=_guid(rng),
            )
        )
    configuration = MaintenanceConfiguration(
        subscription_id=subs[0],
        resource_group=configuration_resource_group,
        name=configuration_name,
        tags=dict(configuration_tags or {}),
        window_start=start,
        recur_every=f"1Week {start.strftime('%A')}",
    )
    estate = Estate(
        vms=vms,
        arc_servers=arcs,
        configurations=[configuration],
        extra_resource_groups=[(sub, rg) for sub in subs for rg in extra_resource_groups],
        extra_subscriptions=list(subs),
    )
    estate.add_run(estate.run_correlation_id(start), estate.machine_ids)
    return estate


def from_machines(
    machines: Iterable[str | Mapping[str, Any]],
    *,
    configuration: MaintenanceConfiguration | str | None = None,
    configuration_tags: Mapping[str, str] | None = None,
    run_start: datetime | None = None,
    extra_resource_groups: Sequence[tuple[str, str]] = (),
) -> Estate:
    """An estate from an explicit list, e.g. read from a test fixture.

    Each item is a VM or Arc server resource id, or a dict with ``id`` and optional ARM-style
    overrides: VMs take ``location``, ``osType``, ``powerState``, ``patchMode``,
    ``bypassPlatformSafetyChecksOnUserSchedule``, ``dataDisks`` (a count), ``tags``,
    ``vmAgentReady``, ``failedExtensions`` (names) and ``existingSnapshots`` (of the OS disk);
    Arc servers take ``location``, ``osType``, ``status``, ``agentVersion``, ``lastStatusChange``
    (ISO 8601), ``tags``, ``agentUpgrade`` (automatic upgrade on) and ``failedExtensions``.
    ``configuration`` is a configuration or its id (default: ``rg-patching/mc-weekly`` in the
    first machine's subscription). One run at ``run_start``
    lists every machine.
    """
    vms: list[VirtualMachine] = []
    arcs: list[ArcServer] = []
    for item in machines:
        spec: Mapping[str, Any] = {"id": item} if isinstance(item, str) else item
        machine_id = str(spec["id"])
        parsed = ids.parse(machine_id)
        kind = parsed.full_type.lower() if parsed else ""
        location = str(spec.get("location", "westeurope"))
        os_type = OsType(spec.get("osType", OsType.LINUX.value))
        if kind == COMPUTE_VM.lower():
            vm = VirtualMachine.create(
                machine_id,
                location=location,
                os_type=os_type,
                data_disks=int(spec.get("dataDisks", 0)),
                power_state=PowerState(spec.get("powerState", PowerState.RUNNING.value)),
                patch_mode=PatchMode(spec.get("patchMode", PatchMode.AUTOMATIC_BY_PLATFORM.value)),
                bypass_platform_safety_checks=bool(spec.get("bypassPlatformSafetyChecksOnUserSchedule", True)),
                tags=spec.get("tags"),
            )
            vm.agent_ready = bool(spec.get("vmAgentReady", True))
            vm.failed_extensions = [str(name) for name in spec.get("failedExtensions", ())]
            vm.os_disk.existing_snapshots = int(spec.get("existingSnapshots", 0))
            vms.append(vm)
        elif kind == HYBRID_MACHINE.lower():
            changed = spec.get("lastStatusChange")
            arc = ArcServer.create(
                machine_id,
                location=location,
                os_type=os_type,
                status=ArcStatus(spec.get("status", ArcStatus.CONNECTED.value)),
                agent_version=str(spec.get("agentVersion", "1.47.02825.2025")),
                last_status_change=datetime.fromisoformat(changed) if changed else None,
                tags=spec.get("tags"),
            )
            arc.automatic_upgrade = bool(spec.get("agentUpgrade", False))
            arc.failed_extensions = [str(name) for name in spec.get("failedExtensions", ())]
            arcs.append(arc)
        else:
            raise ValueError(f"neither a VM nor an Arc server id: {machine_id}")
    start = (run_start or DEFAULT_RUN_START).astimezone(UTC)
    if isinstance(configuration, MaintenanceConfiguration):
        config = configuration
    else:
        first = (vms or arcs or [None])[0]
        if configuration is None and first is None:
            raise ValueError("give at least one machine or a configuration")
        parsed_config = ids.parse(configuration) if configuration else None
        if configuration and (parsed_config is None or parsed_config.resource_group is None):
            raise ValueError(f"not a maintenance configuration id: {configuration}")
        config = MaintenanceConfiguration(
            subscription_id=parsed_config.subscription_id if parsed_config else first.subscription_id,  # type: ignore[union-attr]
            resource_group=parsed_config.resource_group if parsed_config else "rg-patching",  # type: ignore[arg-type]
            name=parsed_config.name if parsed_config else "mc-weekly",
            window_start=start,
            recur_every=f"1Week {start.strftime('%A')}",
        )
    if configuration_tags is not None:
        config.tags = dict(configuration_tags)
    estate = Estate(
        vms=vms,
        arc_servers=arcs,
        configurations=[config],
        extra_resource_groups=list(extra_resource_groups),
    )
    estate.add_run(estate.run_correlation_id(start), estate.machine_ids)
    return estate


def _every(number: int, every: int) -> bool:
    return every > 0 and number % every == 0


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
