"""Tag validation, as ARM applies it to every resource.

At most 50 tags; names up to 512 characters without ``< > % & \\ ? /``; values up to 256
characters (https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources).
"""

from __future__ import annotations

from typing import Any

from ..errors import ArmError

_FORBIDDEN = set("<>%&\\?/")


def validate_tags(raw: Any) -> dict[str, str]:
    """The tags of a request body as a dict, or 400 with ARM's error code."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ArmError(400, "InvalidRequestContent", "The 'tags' property must be an object of strings.")
    if len(raw) > 50:
        raise ArmError(400, "InvalidTemplate", f"A resource can have at most 50 tags; the request has {len(raw)}.")
    tags: dict[str, str] = {}
    for name, value in raw.items():
        if not name or len(name) > 512:
            raise ArmError(400, "InvalidTagNameLength", f"The tag name '{name[:40]}' must be 1-512 characters long.")
        if _FORBIDDEN & set(name):
            raise ArmError(
                400,
                "InvalidTagNameCharacters",
                f"The tag names '{name}' have reserved characters '<,>,%,&,\\,?,/' or control characters.",
            )
        if not isinstance(value, str):
            raise ArmError(400, "InvalidRequestContent", f"The value of tag '{name}' must be a string.")
        if len(value) > 256:
            raise ArmError(400, "InvalidTagValueLength", f"The value of tag '{name}' exceeds 256 characters.")
        tags[name] = value
    return tags
