"""Maintenance events: Event Grid or CloudEvents envelopes turned into typed objects.

Facts this module respects (see docs/events.md):
- Either envelope schema can be configured on a subscription, so both are accepted.
- ``data`` key casing differs between documentation versions (``correlationId`` vs
  ``CorrelationId``), so data keys are read case-insensitively.
- Resource ids are case-insensitive in Azure; they are compared that way and kept as given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from shared.errors import InvalidEvent, MalformedPayload, UnsupportedEventType
from shared.models.ids import configuration_of, is_guid

# The docs' timeline table gives T-10 minutes as the cancellation cut-off.
DEFAULT_CUTOFF_BEFORE_START = timedelta(minutes=10)


class EventType(str, Enum):
    PRE = "Microsoft.Maintenance.PreMaintenanceEvent"
    POST = "Microsoft.Maintenance.PostMaintenanceEvent"


class EnvelopeSchema(str, Enum):
    EVENT_GRID = "EventGrid"
    CLOUD_EVENTS = "CloudEvents"


@dataclass(frozen=True)
class Envelope:
    """What every event carries, whichever schema delivered it."""

    id: str
    event_type: str
    subject: str
    source: str
    time: str | None
    data: Any
    schema: EnvelopeSchema

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Envelope:
        if not isinstance(raw, Mapping):
            raise MalformedPayload(f"an event must be a JSON object, got {type(raw).__name__}")
        fields = _CaseInsensitive(raw)
        if fields.get("specversion") is not None:
            schema = EnvelopeSchema.CLOUD_EVENTS
            event_type, source, time = fields.get("type"), fields.get("source"), fields.get("time")
        else:
            schema = EnvelopeSchema.EVENT_GRID
            event_type, source, time = fields.get("eventType"), fields.get("topic"), fields.get("eventTime")
        return cls(
            id=str(fields.get("id") or ""),
            event_type=str(event_type or ""),
            subject=str(fields.get("subject") or ""),
            source=str(source or ""),
            time=str(time) if time else None,
            data=fields.get("data"),
            schema=schema,
        )


@dataclass(frozen=True)
class MaintenanceEvent:
    """Fields common to both maintenance events. Times are timezone-aware UTC."""

    event_id: str
    correlation_id: str
    configuration_id: str
    start: datetime
    end: datetime
    subscription_ids: tuple[str, ...]
    event_time: datetime | None
    schema: EnvelopeSchema

    @property
    def configuration_name(self) -> str:
        return self.configuration_id.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PreMaintenance(MaintenanceEvent):
    cancellation_cutoff: datetime
    cutoff_was_given: bool = True

    @property
    def event_type(self) -> EventType:
        return EventType.PRE

    def cancel_deadline(self, margin: timedelta) -> datetime:
        """The last moment a cancellation is safe: the earlier of the given cut-off and T-10, less a margin.

        The docs' timeline says T-10 minutes while sample payloads carry T-1; the earlier wins.
        """
        return min(self.cancellation_cutoff, self.start - DEFAULT_CUTOFF_BEFORE_START) - margin


@dataclass(frozen=True)
class PostMaintenance(MaintenanceEvent):
    status: str

    @property
    def event_type(self) -> EventType:
        return EventType.POST


def split_payload(body: bytes | str | Any) -> list[Any]:
    """Event Grid posts a JSON array; a single object is accepted too."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise MalformedPayload(f"body is not JSON: {error}") from error
    if isinstance(body, Mapping):
        return [body]
    if isinstance(body, list):
        return body
    raise MalformedPayload(f"body must be a JSON object or array, got {type(body).__name__}")


def parse_event(raw: Mapping[str, Any]) -> PreMaintenance | PostMaintenance:
    """Turn one raw event into a typed maintenance event.

    Raises:
        MalformedPayload: not a JSON object.
        UnsupportedEventType: any type other than the two maintenance events.
        InvalidEvent: a maintenance event whose content is wrong; ``reasons`` lists every problem.
    """
    envelope = Envelope.from_json(raw)
    try:
        event_type = EventType(envelope.event_type)
    except ValueError:
        # Event types are compared exactly by Event Grid filters, but be lenient on case.
        matches = [t for t in EventType if t.value.lower() == envelope.event_type.lower()]
        if not matches:
            raise UnsupportedEventType(envelope.event_type or "(missing)") from None
        event_type = matches[0]

    reasons: list[str] = []
    if not isinstance(envelope.data, Mapping):
        raise InvalidEvent(["data must be a JSON object"])
    data = _CaseInsensitive(envelope.data)

    correlation_id = _required_text(data, "correlationId", reasons)
    configuration_id = _required_text(data, "maintenanceConfigurationId", reasons)
    if correlation_id:
        parent = configuration_of(correlation_id)
        if parent is None:
            reasons.append(
                "correlationId is not a run id (…/maintenanceConfigurations/NAME/providers/"
                f"microsoft.maintenance/applyupdates/yyyyMMddHHmmss): {correlation_id!r}"
            )
        elif configuration_id and parent.lower() != configuration_id.lower():
            reasons.append(
                f"correlationId {correlation_id!r} is not under maintenanceConfigurationId {configuration_id!r}"
            )

    subscriptions = data.get("resourceSubscriptionIds")
    subscription_ids: list[str] = []
    if not isinstance(subscriptions, list) or not subscriptions:
        reasons.append("resourceSubscriptionIds must be a non-empty array of subscription ids")
    else:
        for value in subscriptions:
            if isinstance(value, str) and is_guid(value.strip().lower()):
                subscription_ids.append(value.strip().lower())
            else:
                reasons.append(f"resourceSubscriptionIds contains {value!r}, which is not a subscription id (GUID)")

    start = _required_time(data, "startDateTime", reasons)
    end = _required_time(data, "endDateTime", reasons)
    if start and end and end <= start:
        reasons.append(f"endDateTime {end.isoformat()} is not after startDateTime {start.isoformat()}")
    event_time = None
    if envelope.time:
        try:
            event_time = parse_time(envelope.time)
        except ValueError:
            reasons.append(f"event time {envelope.time!r} is not an ISO 8601 time")

    cutoff = None
    cutoff_given = True
    if event_type is EventType.PRE:
        raw_cutoff = data.get("cancellationCutOffDateTime")
        if raw_cutoff is None:
            cutoff_given = False
            cutoff = start - DEFAULT_CUTOFF_BEFORE_START if start else None
        else:
            cutoff = _required_time(data, "cancellationCutOffDateTime", reasons)
            if cutoff and start and cutoff > start:
                reasons.append(
                    f"cancellationCutOffDateTime {cutoff.isoformat()} is after startDateTime {start.isoformat()}"
                )
    status = str(data.get("status") or "") if event_type is EventType.POST else ""

    if reasons:
        raise InvalidEvent(reasons)
    common = dict(
        event_id=envelope.id or correlation_id,
        correlation_id=correlation_id,
        configuration_id=configuration_id,
        start=start,
        end=end,
        subscription_ids=tuple(dict.fromkeys(subscription_ids)),
        event_time=event_time,
        schema=envelope.schema,
    )
    if event_type is EventType.PRE:
        return PreMaintenance(**common, cancellation_cutoff=cutoff, cutoff_was_given=cutoff_given)
    return PostMaintenance(**common, status=status or "Unknown")


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: str) -> datetime:
    """ISO 8601 with Azure's 7-digit fractions and ``Z``; naive times are taken as UTC."""
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class _CaseInsensitive:
    """Read-only, case-insensitive view of a JSON object's keys."""

    def __init__(self, mapping: Mapping[str, Any]):
        self._items = {str(key).lower(): value for key, value in mapping.items()}

    def get(self, key: str) -> Any:
        return self._items.get(key.lower())


def _required_text(data: _CaseInsensitive, key: str, reasons: list[str]) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        reasons.append(f"data.{key} is missing or empty")
        return ""
    return value.strip()


def _required_time(data: _CaseInsensitive, key: str, reasons: list[str]) -> datetime | None:
    value = data.get(key)
    if not isinstance(value, str):
        reasons.append(f"data.{key} is missing")
        return None
    try:
        return parse_time(value)
    except ValueError:
        reasons.append(f"data.{key} {value!r} is not an ISO 8601 time")
        return None
