"""ARM resource ids: building, parsing and comparing them.

ARM ids are case-insensitive (``applyupdates`` and ``applyUpdates`` name the same thing), so
the simulator keys everything by :func:`key` and keeps the caller's spelling for display.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)
_RESOURCE_GROUP = re.compile(r"^/subscriptions/[^/]+/resourcegroups/([^/]+)", re.IGNORECASE)


def key(resource_id: str) -> str:
    """The comparison key of an id: lower case, single slashes, no trailing slash."""
    return normalise_path(resource_id).lower()


def normalise_path(path: str) -> str:
    """Collapse repeated slashes and drop a trailing one (``//subscriptions/x/`` -> ``/subscriptions/x``)."""
    collapsed = re.sub(r"/{2,}", "/", path) if "//" in path else path
    return collapsed.rstrip("/") or "/"


def resource_id(subscription_id: str, resource_group: str, resource_type: str, name: str) -> str:
    """``/subscriptions/S/resourceGroups/RG/providers/{resource_type}/{name}``."""
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{resource_type}/{name}"


def subscription_of(resource_id_: str) -> str | None:
    """The subscription GUID an id lives in, or None for ids outside a subscription."""
    match = _SUBSCRIPTION.match(normalise_path(resource_id_))
    return match.group(1) if match else None


def resource_group_of(resource_id_: str) -> str | None:
    """The resource group an id lives in, or None."""
    match = _RESOURCE_GROUP.match(normalise_path(resource_id_))
    return match.group(1) if match else None


@dataclass(frozen=True)
class ParsedId:
    """The parts of a ``.../providers/{namespace}/{type}/{name}`` id (the last provider segment)."""

    subscription_id: str
    resource_group: str | None
    namespace: str
    type: str
    name: str

    @property
    def full_type(self) -> str:
        return f"{self.namespace}/{self.type}"


def parse(resource_id_: str) -> ParsedId | None:
    """Split an id; None when it is not a resource id inside a subscription."""
    path = normalise_path(resource_id_)
    subscription_id = subscription_of(path)
    parts = path.split("/")
    lowered = [part.lower() for part in parts]
    if subscription_id is None or "providers" not in lowered:
        return None
    at = len(lowered) - 1 - lowered[::-1].index("providers")
    tail = parts[at + 1 :]
    if len(tail) < 3 or len(tail) % 2 == 0:
        return None
    return ParsedId(
        subscription_id=subscription_id,
        resource_group=resource_group_of(path),
        namespace=tail[0],
        type="/".join(tail[1:-1:2]),
        name=tail[-1],
    )


def same(left: str, right: str) -> bool:
    """Whether two ids name the same resource."""
    return key(left) == key(right)
