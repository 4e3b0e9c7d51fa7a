"""Realistic maintenance events built now, for testing without a 40-minute wait."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.models.events import EventType, format_time
from shared.models.ids import configuration_of

DEFAULT_CONFIGURATION = (
    "/subscriptions/6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40/resourceGroups/rg-patching/providers/"
    "Microsoft.Maintenance/maintenanceConfigurations/mc-weekly"
)
# The pre-event comes at least 30 minutes before the start (docs/reference.md section 2).
PRE_LEAD = timedelta(minutes=30)
WINDOW = timedelta(hours=2)
CUTOFF_BEFORE_START = timedelta(minutes=10)


def correlation_id_for(configuration_id: str, start: datetime) -> str:
    stamp = start.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S")
    return f"{configuration_id}/providers/microsoft.maintenance/applyupdates/{stamp}"


def build_event(
    kind: str,
    *,
    configuration_id: str = DEFAULT_CONFIGURATION,
    subscription_ids: Sequence[str] | None = None,
    start: datetime | None = None,
    correlation_id: str | None = None,
    now: datetime | None = None,
    schema: str = "eventgrid",
    status: str = "Succeeded",
    end: datetime | None = None,
) -> dict[str, Any]:
    """One pre or post event (Event Grid or CloudEvents schema), for a run starting at ``start``.

    With ``correlation_id`` the event belongs to that run (its start is read from the id).
    ``end`` is the window's end (default: ``start`` plus two hours).
    """
    now = now or datetime.now(timezone.utc)
    if correlation_id:
        configuration_id = configuration_of(correlation_id) or configuration_id
        stamp = correlation_id.rsplit("/", 1)[-1]
        start = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    start = (start or (now + PRE_LEAD).replace(second=0, microsecond=0)).astimezone(timezone.utc)
    correlation_id = correlation_id or correlation_id_for(configuration_id, start)
    subscriptions = list(subscription_ids or [configuration_id.split("/")[2]])
    data: dict[str, Any] = {
        "correlationId": correlation_id,
        "maintenanceConfigurationId": configuration_id,
        "startDateTime": format_time(start),
        "endDateTime": format_time(end.astimezone(timezone.utc) if end else start + WINDOW),
        "resourceSubscriptionIds": subscriptions,
    }
    if kind == "pre":
        event_type = EventType.PRE.value
        data["cancellationCutOffDateTime"] = format_time(start - CUTOFF_BEFORE_START)
    elif kind == "post":
        event_type = EventType.POST.value
        data["status"] = status
    else:
        raise ValueError(f"event kind must be 'pre' or 'post', got {kind!r}")
    name = configuration_id.rsplit("/", 1)[-1]
    if schema == "cloudevents":
        return {
            "id": correlation_id,
            "source": configuration_id,
            "subject": name,
            "type": event_type,
            "time": format_time(now),
            "specversion": "1.0",
            "data": data,
        }
    return {
        "id": correlation_id,
        "topic": configuration_id,
        "subject": name,
        "eventType": event_type,
        "eventTime": format_time(now),
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


def delivery_id() -> str:
    return str(uuid.uuid4())
