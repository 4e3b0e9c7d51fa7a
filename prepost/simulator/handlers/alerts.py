"""Alert processing rules (``Microsoft.AlertsManagement/actionRules``, api-version 2021-08-08).

Validated as the service does: location ``Global``, non-empty ``scopes`` all inside the rule's
own subscription, known action types, and schedule times in ISO 8601 *without* a timezone
suffix (the 2021-08-08 spec's pattern; the zone goes in ``timeZone``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Response

from .. import errors, ids
from ..errors import ArmError
from ..http import RequestContext, empty_response, json_response
from ..records import AlertRuleRecord
from .tags import validate_tags

RULE_TYPE = "Microsoft.AlertsManagement/actionRules"
_SCHEDULE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?$")
_ACTION_TYPES = {"removeallactiongroups": "RemoveAllActionGroups", "addactiongroups": "AddActionGroups"}


def _rule_key(ctx: RequestContext) -> tuple[str, str, str]:
    subscription_id, resource_group = ctx.require_resource_group()
    rule_id = ids.resource_id(subscription_id, resource_group, RULE_TYPE, ctx.params["name"])
    return subscription_id, resource_group, ids.key(rule_id)


def get_rule(ctx: RequestContext) -> Response:
    _, resource_group, key = _rule_key(ctx)
    record = ctx.state.alert_rule_records.get(key)
    if record is None:
        raise errors.resource_not_found(RULE_TYPE, ctx.params["name"], resource_group)
    return json_response(200, record.to_arm())


def delete_rule(ctx: RequestContext) -> Response:
    _, _, key = _rule_key(ctx)
    record = ctx.state.alert_rule_records.pop(key, None)
    if record is None:
        return empty_response(204)
    ctx.state.increment(ctx.operation, record.id)
    return empty_response(200)


def put_rule(ctx: RequestContext) -> Response:
    subscription_id, resource_group, key = _rule_key(ctx)
    body = ctx.json_body()
    location = str(body.get("location") or "")
    if location.lower() != "global":
        raise ArmError(
            400,
            "LocationNotAvailableForResourceType",
            f"The provided location '{location}' is not available for resource type '{RULE_TYPE}'. "
            "List of available regions for the resource type is 'global'.",
        )
    tags = validate_tags(body.get("tags"))
    properties = _validate_properties(body.get("properties"), subscription_id)
    now = ctx.clock.now()
    record = ctx.state.alert_rule_records.get(key)
    created = record is None
    if record is None:
        record = AlertRuleRecord(
            subscription_id=subscription_id,
            resource_group=resource_group,
            name=ctx.params["name"],
            location="Global",
            properties=properties,
            tags=tags,
            created=now,
            modified=now,
        )
        ctx.state.alert_rule_records[key] = record
    else:
        record.properties, record.tags, record.modified = properties, tags, now
        record.put_count += 1
    ctx.state.increment(ctx.operation, record.id)
    return json_response(201 if created else 200, record.to_arm())


def _validate_properties(raw: Any, subscription_id: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise errors.invalid_request_content("The 'properties' object is required.")
    scopes = raw.get("scopes")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise errors.bad_request("At least one scope is required.", code="InvalidScopes", target="properties.scopes")
    for scope in scopes:
        scope_subscription = ids.subscription_of(scope)
        if scope_subscription is None:
            raise errors.bad_request(f"Scope '{scope}' is not a valid ARM id.", code="InvalidScopes", target="scopes")
        if scope_subscription.lower() != subscription_id.lower():
            raise errors.bad_request(
                f"Scope '{scope}' is outside the subscription '{subscription_id}' of the alert "
                "processing rule. "
                "All scopes must be in the rule's own subscription.",
                code="InvalidScopes",
                target="properties.scopes",
            )
    actions = raw.get("actions")
    if not isinstance(actions, list) or not actions:
        raise errors.bad_request("At least one action is required.", code="InvalidActions", target="properties.actions")
    normalised_actions = []
    for action in actions:
        action_type = _ACTION_TYPES.get(str((action or {}).get("actionType", "")).lower())
        if action_type is None:
            raise errors.bad_request(
                f"Unknown actionType {action!r}; expected RemoveAllActionGroups or AddActionGroups.",
                code="InvalidActions",
                target="properties.actions",
            )
        if action_type == "AddActionGroups" and not action.get("actionGroupIds"):
            raise errors.bad_request("AddActionGroups needs actionGroupIds.", code="InvalidActions")
        normalised_actions.append({**action, "actionType": action_type})
    properties: dict[str, Any] = {**raw, "scopes": list(scopes), "actions": normalised_actions}
    properties.setdefault("enabled", True)
    schedule = raw.get("schedule")
    if schedule is not None:
        properties["schedule"] = _validate_schedule(schedule)
    return properties


def _validate_schedule(schedule: Any) -> dict[str, Any]:
    if not isinstance(schedule, dict):
        raise errors.invalid_request_content("The 'schedule' property must be an object.")
    parsed: dict[str, datetime] = {}
    for field in ("effectiveFrom", "effectiveUntil"):
        value = schedule.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not _SCHEDULE_TIME.match(value):
            raise errors.bad_request(
                f"The value '{value}' of '{field}' is invalid: use ISO 8601 without a timezone suffix "
                "(yyyy-MM-ddTHH:mm:ss) and give the zone in 'timeZone'.",
                code="InvalidRequestContent",
                target=f"properties.schedule.{field}",
            )
        parsed[field] = datetime.fromisoformat(value)
    if "effectiveFrom" in parsed and "effectiveUntil" in parsed and parsed["effectiveUntil"] <= parsed["effectiveFrom"]:
        raise errors.bad_request(
            "'effectiveUntil' must be later than 'effectiveFrom'.",
            code="InvalidRequestContent",
            target="properties.schedule.effectiveUntil",
        )
    return dict(schedule)
