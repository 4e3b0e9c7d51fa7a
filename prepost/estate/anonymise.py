"""Anonymising an estate consistently: the same name or id always becomes the same stand-in.

Subscription GUIDs become other GUIDs, resource groups ``rg-NNN``, VMs ``vm-NNN``, Arc servers
``arc-NNN``, disks ``disk-NNN``, configurations ``mc-NNN``, tag values ``value-NNN``. Because
every reference goes through the same map, assignments, dynamic scopes (their tag filters too)
and runs still select the same machines. Kept as they are: locations, OS types, sizes, power
states, patch settings, agent versions and states, extension types and states, snapshot
counts, times, and the tags prepost reads on a configuration (``prepost-*``), so a rehearsal and
``prepost preflight`` behave as on the real estate. Free-text messages (a failed extension's or
a not-ready agent's) can name hosts, paths or addresses no map knows: they are dropped, and the
simulator answers its own generic message for the same state. Stand-in GUIDs are derived with a
salt (random unless given), so two exports with the same salt anonymise alike and nobody can
recompute the real GUIDs without it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import replace

from prepost.simulator import ids
from prepost.simulator.estate import APPLY_UPDATES_SEGMENT

from .model import (
    AgentSpec,
    AssignmentSpec,
    ConfigurationSpec,
    DiskSpec,
    EstateFile,
    ExtensionSpec,
    RunSpec,
    SubscriptionSpec,
)

KEPT_TAG_PREFIX = "prepost"


class Anonymiser:
    def __init__(self, salt: str | None = None):
        self.salt = (salt or secrets.token_hex(16)).encode()
        self._names: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def subscription(self, value: str) -> str:
        digest = hmac.new(self.salt, value.lower().encode(), hashlib.sha256).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def name(self, kind: str, value: str) -> str:
        key = (kind, value.lower())
        if key not in self._names:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            self._names[key] = f"{kind}-{self._counts[kind]:03d}"
        return self._names[key]

    def resource_id(self, value: str, kind: str) -> str:
        """``value`` with its subscription, resource group and name replaced (its type kept)."""
        parsed = ids.parse(value)
        if parsed is None:
            subscription = ids.subscription_of(value)
            return f"/subscriptions/{self.subscription(subscription)}" if subscription else value
        group = self.name("rg", parsed.resource_group) if parsed.resource_group else None
        prefix = f"/subscriptions/{self.subscription(parsed.subscription_id)}"
        if group:
            prefix += f"/resourceGroups/{group}"
        return f"{prefix}/providers/{parsed.full_type}/{self.name(kind, parsed.name)}"

    def tag_value(self, key: str, value: str) -> str:
        return value if key.lower().startswith(KEPT_TAG_PREFIX) else self.name("value", value)

    def tags(self, tags: dict[str, str]) -> dict[str, str]:
        return {key: self.tag_value(key, value) for key, value in tags.items()}

    def machine_id(self, value: str) -> str:
        parsed = ids.parse(value)
        kind = "arc" if parsed and "hybridcompute" in parsed.full_type.lower() else "vm"
        return self.resource_id(value, kind)


def anonymise(estate: EstateFile, *, salt: str | None = None) -> EstateFile:
    """A copy of ``estate`` with names and ids replaced consistently (see the module docstring)."""
    a = Anonymiser(salt)

    def disk(spec: DiskSpec) -> DiskSpec:
        return replace(spec, id=a.resource_id(spec.id, "disk"))

    def extensions(specs: tuple[ExtensionSpec, ...]) -> tuple[ExtensionSpec, ...]:
        return tuple(replace(ext, message="") for ext in specs)

    def agent(spec: AgentSpec | None) -> AgentSpec | None:
        return None if spec is None else replace(spec, message="")

    def configuration(spec: ConfigurationSpec) -> ConfigurationSpec:
        return replace(spec, id=a.resource_id(spec.id, "mc"), tags=a.tags(spec.tags))

    def run(spec: RunSpec) -> RunSpec:
        configuration_id = a.resource_id(spec.configuration_id, "mc")
        stamp = spec.correlation_id.rstrip("/").rsplit("/", 1)[-1]
        correlation = f"{configuration_id}{APPLY_UPDATES_SEGMENT}{stamp}"
        machines = tuple(a.machine_id(m) for m in spec.machines) if spec.machines is not None else None
        return RunSpec(correlation_id=correlation, status=spec.status, machines=machines)

    return EstateFile(
        subscriptions=[
            SubscriptionSpec(
                id=a.subscription(sub.id),
                name=a.name("subscription", sub.name) if sub.name else "",
                resource_groups=tuple(a.name("rg", group) for group in sub.resource_groups),
            )
            for sub in estate.subscriptions
        ],
        vms=[
            replace(
                vm,
                id=a.machine_id(vm.id),
                os_disk=disk(vm.os_disk),
                data_disks=tuple(disk(d) for d in vm.data_disks),
                tags=a.tags(vm.tags),
                agent=agent(vm.agent),
                extensions=extensions(vm.extensions),
            )
            for vm in estate.vms
        ],
        arc_servers=[
            replace(arc, id=a.machine_id(arc.id), tags=a.tags(arc.tags), extensions=extensions(arc.extensions))
            for arc in estate.arc_servers
        ],
        configurations=[configuration(config) for config in estate.configurations],
        assignments=[
            AssignmentSpec(a.resource_id(x.configuration_id, "mc"), a.machine_id(x.resource_id))
            for x in estate.assignments
        ],
        dynamic_scopes=[
            replace(
                scope,
                configuration_id=a.resource_id(scope.configuration_id, "mc"),
                name=a.name("scope", scope.name),
                subscriptions=tuple(a.subscription(s) for s in scope.subscriptions),
                resource_groups=tuple(a.name("rg", g) for g in scope.resource_groups),
                tags={key: tuple(a.tag_value(key, v) for v in values) for key, values in scope.tags.items()},
            )
            for scope in estate.dynamic_scopes
        ],
        runs=[run(r) for r in estate.runs],
        # The description may name real things: replaced, not kept.
        description="an anonymised estate (prepost estate export --anonymise)",
    )
