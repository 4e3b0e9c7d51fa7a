"""ARM names checked against Azure's character rules, and resource ids turned into safe URL paths.

Every id prepost puts in a request path comes from an event, a message or a record, any of which
can be forged or damaged. A segment with ``?``, ``#``, a quote or ``..`` would change which
resource a request reaches (``#`` cuts the path, ``..`` climbs it), so ids are checked here and
every segment is URL-quoted before it is sent.

The rules are Azure's, ASCII only (see :mod:`shared.models.ids` for why):
https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
- resource groups: 1-90 letters, digits, ``_ - . ( )``, not ending in ``.``;
- virtual machines: 1-64 letters, digits, ``_ . -``, starting with a letter or digit, not ending in
  ``.`` or ``-`` (Windows computer names are shorter, but the resource name is what ids carry);
- disks and snapshots: 1-80 letters, digits, ``_ . -``, starting with a letter or digit and
  ending with a letter, digit or ``_``;
- maintenance configurations and other resources: ``#`` "interferes with URL parsing on Azure
  Resource Manager requests", so prepost takes letters, digits, ``_ - . ( )`` and at most 260
  characters, not ending in ``.``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

from shared.errors import InvalidIdentifier
from shared.models.ids import is_guid

_FLAGS = re.ASCII
_RESOURCE_GROUP = re.compile(r"[-\w.()]{0,89}[-\w()]", _FLAGS)
_VM = re.compile(r"[A-Za-z0-9](?:[-\w.]{0,62}[A-Za-z0-9_])?", _FLAGS)
_DISK_OR_SNAPSHOT = re.compile(r"[A-Za-z0-9](?:[-\w.]{0,78}[A-Za-z0-9_])?", _FLAGS)
_GENERIC = re.compile(r"[-\w.()]{0,259}[-\w()]", _FLAGS)
# Provider namespaces and types, and the fixed words of a path (subscriptions, providers, ...).
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,99}", _FLAGS)

_NAME_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "microsoft.compute/virtualmachines": (_VM, "virtual machine"),
    "microsoft.compute/disks": (_DISK_OR_SNAPSHOT, "disk"),
    "microsoft.compute/snapshots": (_DISK_OR_SNAPSHOT, "snapshot"),
}
TAG_VALUE_LIMIT = 256
"""ARM refuses a tag value longer than this (``InvalidTagValueLength``):
https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations"""
MAX_RESOURCE_ID = 2_000
"""Far above any real id (a run id is under 400 characters): a longer one is not an id."""


def check_subscription_id(value: str) -> str:
    """``value`` if it is a subscription id (a GUID); raises :class:`InvalidIdentifier`."""
    if not isinstance(value, str) or not is_guid(value):
        raise InvalidIdentifier(f"{_shown(value)} is not a subscription id (a GUID)")
    return value


def check_resource_group(value: str) -> str:
    if not _RESOURCE_GROUP.fullmatch(value or ""):
        raise InvalidIdentifier(
            f"{_shown(value)} is not a resource group name (1-90 letters, digits, _ - . ( ), not ending in .)"
        )
    return value


def check_name(resource_type: str, value: str) -> str:
    """``value`` if it is a valid name for ``resource_type`` (``namespace/type``, any case)."""
    pattern, what = _NAME_RULES.get(resource_type.lower(), (_GENERIC, resource_type))
    if not pattern.fullmatch(value or ""):
        raise InvalidIdentifier(f"{_shown(value)} is not a valid {what} name")
    return value


def check_resource_id(value: str) -> str:
    """``value`` if every segment of it follows Azure's rules for its place; else raises.

    Shape: ``/subscriptions/GUID[/resourceGroups/RG][/providers/NS/TYPE/NAME[/TYPE/NAME]...]``,
    with further ``/providers/NS/TYPE/NAME`` extension parts (a run id is one).
    """
    if not isinstance(value, str) or not value.startswith("/") or len(value) > MAX_RESOURCE_ID:
        raise InvalidIdentifier(f"{_shown(value)} is not an Azure resource id")
    parts = value[1:].split("/")
    if len(parts) < 2 or parts[0].lower() != "subscriptions":
        raise InvalidIdentifier(f"{_shown(value)} is not an Azure resource id")
    check_subscription_id(parts[1])
    index = 2
    if len(parts) > index and parts[index].lower() == "resourcegroups":
        if len(parts) < index + 2:
            raise InvalidIdentifier(f"{_shown(value)} names no resource group")
        check_resource_group(parts[index + 1])
        index += 2
    while index < len(parts):
        if parts[index].lower() != "providers" or len(parts) < index + 4:
            raise InvalidIdentifier(f"{_shown(value)} is not an Azure resource id: unexpected {_shown(parts[index])}")
        namespace = parts[index + 1]
        _check_word(namespace, value)
        index += 2
        # TYPE/NAME pairs until the next extension (``providers``) or the end.
        while index + 1 < len(parts) and parts[index].lower() != "providers":
            resource_type, name = parts[index], parts[index + 1]
            _check_word(resource_type, value)
            check_name(f"{namespace}/{resource_type}", name)
            index += 2
        if index < len(parts) and parts[index].lower() != "providers":
            raise InvalidIdentifier(f"{_shown(value)} is not an Azure resource id: a type without a name")
    return value


def arm_path(resource_id: str) -> str:
    """The request path of ``resource_id``: checked, then every segment URL-quoted.

    Quoting is what the management SDKs do with each path parameter (``quote(value, safe="")``);
    the generic requests prepost sends itself (the cancel PUT, alert rules, Arc machines) do the
    same here, so no id can add a query, a fragment or a step up the path.
    """
    check_resource_id(resource_id)
    return "/" + "/".join(quote(part, safe="") for part in resource_id[1:].split("/"))


def bounded_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` with every value cut to what ARM accepts.

    The values prepost writes come from names it does not choose (a configuration name may be
    longer than a tag value may be); a value cut short still tells a reader what it was, while
    a refused PUT would fail the snapshot and cancel the run.
    """
    return {name: value[:TAG_VALUE_LIMIT] for name, value in tags.items()}


def _check_word(text: str, resource_id: str) -> None:
    if not _WORD.fullmatch(text):
        raise InvalidIdentifier(f"{_shown(resource_id)} is not an Azure resource id: bad segment {_shown(text)}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
