"""Resource Graph: ``POST /providers/Microsoft.ResourceGraph/resources`` over ``maintenanceresources``
(runs and configuration assignments) and ``resources`` (VMs and Arc servers).

Each registered run contributes one ``microsoft.maintenance/applyupdates`` row per machine, the
way Update Manager lists a schedule's machines. Resource Graph returns ids in lower case, so the
rows do too (``properties.resourceId``); callers must compare ids case-insensitively. Rows are
scoped to the request's ``subscriptions`` by the machine's subscription. Pages hold at most
``min($top, 1000)`` rows; ``$skipToken`` continues.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

from werkzeug.wrappers import Response

from .. import ids, kql
from ..clock import iso
from ..errors import ArmError
from ..estate import TENANT_ID, Run
from ..http import RequestContext, json_response
from . import graph_tables
from .assignments import assignment_rows

PAGE_LIMIT = 1000
TABLE = "maintenanceresources"
RESOURCES = "resources"


def query(ctx: RequestContext) -> Response:
    body = ctx.json_body()
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise _invalid_query("The query is empty.")
    try:
        parsed = kql.parse(text)
    except kql.QueryError as error:
        raise _invalid_query(str(error)) from error
    table = parsed.table.lower()
    if table not in (TABLE, graph_tables.RESOURCES_TABLE):
        raise _invalid_query(
            f"The simulator only knows the tables '{TABLE}' and '{graph_tables.RESOURCES_TABLE}', not '{parsed.table}'."
        )
    subscriptions = body.get("subscriptions")
    scope = {str(s).lower() for s in subscriptions} if isinstance(subscriptions, list) and subscriptions else None
    source = (
        _rows(ctx, scope) + assignment_rows(ctx, scope)
        if table == TABLE
        else graph_tables.resource_rows(ctx, scope)
    )
    try:
        rows = parsed.run(source)
    except kql.QueryError as error:
        raise _invalid_query(str(error)) from error
    options = body.get("options") or {}
    top = min(int(options.get("$top") or PAGE_LIMIT), PAGE_LIMIT)
    offset = int(options.get("$skip") or 0)
    fingerprint = _fingerprint(text, scope)
    token = options.get("$skipToken")
    if token:
        offset = _decode_token(token, fingerprint)
    page = rows[offset : offset + top]
    more = offset + len(page) < len(rows)
    result: dict[str, Any] = {
        "totalRecords": len(rows),
        "count": len(page),
        "data": _format(page, str(options.get("resultFormat") or "objectArray")),
        "facets": [],
        # With a `limit`, Resource Graph cannot page: it says "truncated" and gives no $skipToken.
        "resultTruncated": "true" if parsed.limit is not None else "false",
    }
    if more and parsed.limit is None:
        result["$skipToken"] = _encode_token(offset + len(page), fingerprint)
    return json_response(200, result)


def _rows(ctx: RequestContext, scope: set[str] | None) -> list[dict[str, Any]]:
    rows = []
    now = iso(ctx.clock.now())
    for run in ctx.state.runs.values():
        common = _run_properties(ctx, run, now)
        for resource_id in run.resource_ids:
            subscription_id = ids.subscription_of(resource_id) or ""
            if scope is not None and subscription_id.lower() not in scope:
                continue
            rows.append(_row(ctx, run, common, resource_id, subscription_id))
    return rows


def _run_properties(ctx: RequestContext, run: Run, now: str) -> dict[str, Any]:
    """The properties every row of one run shares."""
    config = ctx.state.configurations.get(ids.key(run.configuration_id))
    start = run.start
    end = start + _duration(config.duration if config else "03:55") if start else None
    return {
        "correlationId": run.correlation_id,
        "maintenanceConfigurationId": ids.key(run.configuration_id),
        "status": run.status,
        "startDateTime": iso(start) if start else None,
        "endDateTime": iso(end) if end else None,
        "lastUpdateTime": now,
    }


def _row(
    ctx: RequestContext, run: Run, common: dict[str, Any], resource_id: str, subscription_id: str
) -> dict[str, Any]:
    lowered = ids.key(resource_id)
    machine = ctx.state.vm_records.get(lowered)
    arc = ctx.state.arc_servers.get(lowered)
    location = machine.vm.location if machine else arc.location if arc else "westeurope"
    return {
        "id": f"{lowered}/providers/microsoft.maintenance/applyupdates/{run.name}",
        "name": run.name,
        "type": "microsoft.maintenance/applyupdates",
        "tenantId": TENANT_ID,
        "kind": "",
        "location": location,
        "resourceGroup": (ids.resource_group_of(resource_id) or "").lower(),
        "subscriptionId": subscription_id,
        "managedBy": "",
        "sku": None,
        "plan": None,
        "tags": None,
        "identity": None,
        "zones": None,
        "extendedLocation": None,
        "properties": {"resourceId": lowered, **common},
    }


def _duration(text: str) -> timedelta:
    hours, _, minutes = text.partition(":")
    try:
        return timedelta(hours=int(hours), minutes=int(minutes or 0))
    except ValueError:
        return timedelta(hours=2)


def _format(rows: list[dict[str, Any]], result_format: str) -> Any:
    if result_format.lower() != "table":
        return rows
    columns = list(rows[0]) if rows else []
    return {
        "columns": [{"name": name, "type": _column_type(rows, name)} for name in columns],
        "rows": [[row.get(name) for name in columns] for row in rows],
    }


def _column_type(rows: list[dict[str, Any]], name: str) -> str:
    sample = next((row[name] for row in rows if row.get(name) is not None), None)
    if isinstance(sample, bool):
        return "boolean"
    if isinstance(sample, int | float):
        return "integer" if isinstance(sample, int) else "number"
    if isinstance(sample, dict | list):
        return "object"
    return "string"


def _fingerprint(text: str, scope: set[str] | None) -> str:
    material = json.dumps([text, sorted(scope) if scope else None])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _encode_token(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "f": fingerprint}).encode()).decode()


def _decode_token(token: str, fingerprint: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(data["o"])
    except (ValueError, KeyError, TypeError) as error:
        raise ArmError(
            400,
            "BadRequest",
            "The $skipToken is invalid.",
            details=[{"code": "InvalidSkipToken", "message": str(error)}],
        ) from error
    if data.get("f") != fingerprint:
        raise ArmError(
            400,
            "BadRequest",
            "The $skipToken belongs to a different query or scope.",
            details=[
                {
                    "code": "InvalidSkipToken",
                    "message": "Reuse a $skipToken only with the query that returned it.",
                }
            ],
        )
    return offset


def _invalid_query(reason: str) -> ArmError:
    return ArmError(
        400,
        "BadRequest",
        "Please provide below info when asking for support: query parsing failed in the simulator.",
        details=[
            {
                "code": "InvalidQuery",
                "message": "Query is invalid. Please refer to the documentation for the Azure Resource Graph "
                "service and fix the error before retrying.",
            },
            {"code": "ParserFailure", "message": reason},
        ],
    )
