"""Which machines a maintenance configuration covers: its static and dynamic-scope assignments.

A configuration assignment (``Microsoft.Maintenance/configurationAssignments``) either names
one machine (``properties.resourceId``), or, at subscription scope, holds a ``filter`` (a
dynamic scope): ``resourceTypes``, ``resourceGroups``, ``osTypes``, ``locations`` and
``tagSettings`` (``tags``: name -> allowed values; ``filterOperator``: ``Any`` or ``All``).
Criteria that are given must all hold; within one criterion any listed value does.
Shape: https://learn.microsoft.com/azure/templates/microsoft.maintenance/2023-04-01/configurationassignments
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.models.ids import ResourceId

MACHINE_TYPES = ("microsoft.compute/virtualmachines", "microsoft.hybridcompute/machines")


@dataclass(frozen=True)
class CandidateMachine:
    """A machine as Resource Graph's ``resources`` table lists it, with what filters look at."""

    resource_id: str
    type: str
    location: str
    os_type: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def subscription_id(self) -> str:
        return ResourceId(self.resource_id).subscription_id

    @property
    def resource_group(self) -> str:
        return (ResourceId(self.resource_id).resource_group or "").lower()


@dataclass(frozen=True)
class DynamicScope:
    """One dynamic-scope assignment: the subscriptions it covers and its filter."""

    subscription_ids: tuple[str, ...]
    resource_types: tuple[str, ...] = ()
    resource_groups: tuple[str, ...] = ()
    os_types: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tag_operator: str = "Any"

    @classmethod
    def from_filter(cls, subscription_ids: Sequence[str], raw: Mapping[str, Any] | None) -> DynamicScope:
        raw = raw or {}
        settings = raw.get("tagSettings") or {}
        tags = {
            str(name): tuple(str(v) for v in (values or ())) for name, values in (settings.get("tags") or {}).items()
        }
        return cls(
            subscription_ids=tuple(subscription_ids),
            resource_types=tuple(str(v) for v in raw.get("resourceTypes") or ()),
            resource_groups=tuple(str(v) for v in raw.get("resourceGroups") or ()),
            os_types=tuple(str(v) for v in raw.get("osTypes") or ()),
            locations=tuple(str(v) for v in raw.get("locations") or ()),
            tags=tags,
            tag_operator=str(settings.get("filterOperator") or "Any"),
        )

    def matches(self, machine: CandidateMachine) -> bool:
        if machine.subscription_id not in {s.lower() for s in self.subscription_ids}:
            return False
        if self.resource_types and machine.type.lower() not in _lowered(self.resource_types):
            return False
        if self.resource_groups and machine.resource_group not in _lowered(self.resource_groups):
            return False
        if self.os_types and machine.os_type.lower() not in _lowered(self.os_types):
            return False
        if self.locations and _location(machine.location) not in {_location(v) for v in self.locations}:
            return False
        return self._tags_match(machine.tags)

    def _tags_match(self, tags: Mapping[str, str]) -> bool:
        if not self.tags:
            return True
        lowered = {name.lower(): value for name, value in tags.items()}

        def one(name: str, values: tuple[str, ...]) -> bool:
            value = lowered.get(name.lower())
            return value is not None and (not values or value in values)

        results = [one(name, values) for name, values in self.tags.items()]
        return all(results) if self.tag_operator.lower() == "all" else any(results)


def resolve(static: Iterable[str], scopes: Iterable[DynamicScope], candidates: Iterable[CandidateMachine]) -> list[str]:
    """Every machine the assignments cover, once (ids compared case-insensitively), sorted."""
    machines: dict[str, str] = {}
    for resource_id in static:
        if ResourceId(resource_id).provider_type.lower() in MACHINE_TYPES:
            machines.setdefault(resource_id.lower(), resource_id)
    scopes = list(scopes)
    for candidate in candidates:
        if any(scope.matches(candidate) for scope in scopes):
            machines.setdefault(candidate.resource_id.lower(), candidate.resource_id)
    return sorted(machines.values(), key=str.lower)


def _lowered(values: Iterable[str]) -> set[str]:
    return {value.lower() for value in values}


def _location(value: str) -> str:
    """``West Europe`` and ``westeurope`` are the same location."""
    return value.replace(" ", "").lower()
