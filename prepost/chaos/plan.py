"""The drill's estate and its plan: which windows, on which machines, with which disorder, and
when instances crash, all drawn from one seed so that a drill can be repeated.

Machines are grouped in *slots*; windows that are alive at the same time use different slots
(window ``n`` uses slot ``(n - 1) % slots``), so their machines are disjoint. A slot holds a
handful of VMs in two subscriptions (1-2 data disks each) and one Arc-enabled server. Before each
window the drill sets the slot's VMs to the power states the plan drew for it: a mix of
deallocated, running and stopped.

Disorder (each window draws one or more):

== ============================================================================================
a  normal: the pre-event at T-40 min, the post-event at the window's end
b  the post-event before the pre phase is planned: both delivered back to back (post first or not)
c  duplicates: the pre-event again 15 min after the first, the post-event again 5 min after it
d  the pre-event replayed after the post phase finished
e  no post-event at all: the app's fallback must run the post phase
f  the pre-event first delivered after the cut-off (T-5 min, or 2 min after the start)
g  after the window, every poison-queue message of the run sent back to its queue
== ============================================================================================
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from prepost.local.hook_scripts import SAMPLE_HOOK_TAGS
from prepost.simulator import ArcServer, Estate, MaintenanceConfiguration, OsType, PowerState, VirtualMachine
from prepost.simulator.estate import ArcStatus

DISORDERS = {
    "a": "normal",
    "b": "post-event before the pre phase is planned",
    "c": "duplicate events minutes later",
    "d": "pre-event replayed after the post phase finished",
    "e": "no post-event (the fallback must act)",
    "f": "pre-event first delivered after the cut-off",
    "g": "poison-queue messages of the run replayed after the window",
}
NORMAL_SHARE = 0.25
"""The share of windows without disorder."""

# The timeline of a window, relative to its scheduled start T (docs/reference.md section 2).
PRE_LEAD = timedelta(minutes=40)
WINDOW_LENGTH = timedelta(minutes=20)
CUTOFF_BEFORE_START = timedelta(minutes=10)
GRACE = timedelta(minutes=10)
PREPARE_LEAD = timedelta(minutes=45)
"""When the drill sets the slot's power states and registers the run: before the pre-event."""
DUPLICATE_PRE_AFTER = timedelta(minutes=15)
DUPLICATE_POST_AFTER = timedelta(minutes=5)
LATE_PRE_OFFSETS = (timedelta(minutes=-5), timedelta(minutes=2))
CHECK_DEADLINE = timedelta(minutes=60)
"""After T + this, a window is checked whether it settled or not."""
REPLAY_DEADLINE = timedelta(minutes=75)
"""After a poison replay (disorder g), the window gets until T + this to settle again."""
WINDOW_SPACING = timedelta(minutes=20)

VMS_PER_SLOT = (
    # (subscription index, data disks, OS)
    (0, 2, OsType.LINUX),
    (0, 1, OsType.WINDOWS),
    (0, 1, OsType.LINUX),
    (1, 1, OsType.WINDOWS),
    (1, 2, OsType.LINUX),
)
POWER_MIX = ("deallocated", "deallocated", "running", "running", "stopped")
CONFIGURATION_TAGS = {
    "prepost-snapshot-disks": "all",
    "prepost-start-deallocated": "true",
    "prepost-suppress-alerts": "true",
    "prepost-cancel-on-failure": "true",
    "prepost-suppression-grace-minutes": str(int(GRACE.total_seconds() // 60)),
    # Pre and post scripts on every machine (prepost.local.hook_scripts): I9 checks them.
    **SAMPLE_HOOK_TAGS,
}


@dataclass(frozen=True)
class Slot:
    index: int
    vm_ids: tuple[str, ...]
    arc_id: str

    @property
    def machine_ids(self) -> list[str]:
        return [*self.vm_ids, self.arc_id]


@dataclass
class DrillEstate:
    estate: Estate
    slots: list[Slot]
    configuration_id: str
    subscription_ids: list[str]


def build_estate(slots: int, seed: int) -> DrillEstate:
    """``slots`` groups of machines in two subscriptions, and the configuration with the drill's policy tags."""
    rng = random.Random(f"estate-{seed}")
    subscriptions = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(2)]
    vms: list[VirtualMachine] = []
    arcs: list[ArcServer] = []
    built: list[Slot] = []
    for slot in range(1, slots + 1):
        vm_ids = []
        for number, (sub, disks, os_type) in enumerate(VMS_PER_SLOT, start=1):
            resource_id = (
                f"/subscriptions/{subscriptions[sub]}/resourceGroups/rg-chaos-{slot:02d}"
                f"/providers/Microsoft.Compute/virtualMachines/vm-c{slot:02d}-{number}"
            )
            vms.append(VirtualMachine.create(resource_id, os_type=os_type, data_disks=disks))
            vm_ids.append(resource_id)
        arc_id = (
            f"/subscriptions/{subscriptions[0]}/resourceGroups/rg-arc-chaos"
            f"/providers/Microsoft.HybridCompute/machines/arc-c{slot:02d}"
        )
        arcs.append(ArcServer.create(arc_id, status=ArcStatus.CONNECTED))
        built.append(Slot(slot, tuple(vm_ids), arc_id))
    configuration = MaintenanceConfiguration(
        subscription_id=subscriptions[0], name="mc-chaos", tags=dict(CONFIGURATION_TAGS)
    )
    estate = Estate(vms=vms, arc_servers=arcs, configurations=[configuration], extra_subscriptions=subscriptions)
    return DrillEstate(estate, built, configuration.id, subscriptions)


@dataclass(frozen=True)
class WindowPlan:
    number: int
    slot: int
    offset: timedelta
    """The scheduled start, relative to the first window's."""
    disorder: tuple[str, ...]
    power: dict[str, str] = field(default_factory=dict)
    """VM id -> the power state the drill sets before the window."""
    post_first: bool = False
    """Disorder b: the post-event is delivered just before the pre-event."""
    late_by: timedelta | None = None
    """Disorder f: the pre-event is first delivered at T plus this."""

    def describe_disorder(self) -> str:
        parts = []
        for code in self.disorder:
            if code == "b":
                parts.append("b(post first)" if self.post_first else "b(pre first)")
            elif code == "f" and self.late_by is not None:
                minutes = int(self.late_by.total_seconds() // 60)
                parts.append(f"f(T{minutes:+d}m)")
            else:
                parts.append(code)
        return "+".join(parts)


@dataclass(frozen=True)
class CrashPlan:
    after: float
    """Real seconds after the instances are ready."""
    restart_after: float
    """Real seconds the killed instance stays down."""


@dataclass(frozen=True)
class DrillPlan:
    seed: int
    windows: list[WindowPlan]
    crashes: list[CrashPlan]
    slots: int

    def describe(self, estate: DrillEstate | None = None) -> str:
        lines = [f"plan (seed {self.seed}): {len(self.windows)} windows on {self.slots} machine slots"]
        for window in self.windows:
            states: dict[str, int] = {}
            for state in window.power.values():
                states[state] = states.get(state, 0) + 1
            mix = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            minutes = int(window.offset.total_seconds() // 60)
            lines.append(
                f"  window {window.number:>2}: T1+{minutes:>3}m slot {window.slot} "
                f"disorder {window.describe_disorder():<14} VMs {mix}"
            )
        if self.crashes:
            shown = ", ".join(f"{crash.after:.0f}s (down {crash.restart_after:.0f}s)" for crash in self.crashes)
            lines.append(f"  crashes at (real, after start): {shown}")
        else:
            lines.append("  crashes: none")
        return "\n".join(lines)


def slots_needed() -> int:
    """Enough slots that a slot is reused only after its previous window was checked."""
    alive = PREPARE_LEAD + REPLAY_DEADLINE
    return math.ceil(alive / WINDOW_SPACING) + 1


def draw_disorder(rng: random.Random) -> tuple[str, ...]:
    if rng.random() < NORMAL_SHARE:
        return ("a",)
    choices = ["b", "c", "d", "e", "f", "g"]
    count = 1 if rng.random() < 0.6 else 2
    while True:
        drawn = sorted(rng.sample(choices, count))
        if not ("b" in drawn and "e" in drawn):  # b needs a post-event
            return tuple(drawn)


def make_plan(
    *,
    seed: int,
    windows: int,
    estate: DrillEstate,
    crash_every: float,
    expected_seconds: float,
) -> DrillPlan:
    rng = random.Random(seed)
    slots = len(estate.slots)
    planned = []
    for number in range(1, windows + 1):
        slot = estate.slots[(number - 1) % slots]
        disorder = draw_disorder(rng)
        mix = list(POWER_MIX)
        rng.shuffle(mix)
        planned.append(
            WindowPlan(
                number=number,
                slot=slot.index,
                offset=WINDOW_SPACING * (number - 1),
                disorder=disorder,
                power=dict(zip(slot.vm_ids, mix, strict=True)),
                post_first=rng.random() < 0.5,
                late_by=rng.choice(LATE_PRE_OFFSETS) if "f" in disorder else None,
            )
        )
    crashes = []
    if crash_every > 0:
        moment = 0.0
        while True:
            moment += rng.uniform(0.5, 1.5) * crash_every
            if moment >= expected_seconds:
                break
            crashes.append(CrashPlan(after=moment, restart_after=rng.uniform(2.0, 6.0)))
    return DrillPlan(seed=seed, windows=planned, crashes=crashes, slots=slots)


def power_state(value: str) -> PowerState:
    return PowerState(value)
