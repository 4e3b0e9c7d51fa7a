"""Maintenance events: Event Grid or CloudEvents envelopes turned into typed objects.

Facts this module respects (see docs/events.md):
- Either envelope schema can be configured on a subscription, so both are accepted, each
  checked against its own schema.
- ``data`` key casing differs between documentation versions (``correlationId`` vs
  ``CorrelationId``), so keys are read ignoring ASCII case; two spellings of one key with
  different values are refused.
- Resource ids are case-insensitive in Azure; they are checked as ASCII, compared with
  :func:`~shared.models.ids.ascii_fold` and kept as given.
- Every field is bounded in type, size and range here, before anything is stored
  (:mod:`shared.models.event_fields`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from shared.errors import InvalidEvent, MalformedPayload, UnsupportedEventType
from shared.models import json_text
from shared.models.event_fields import (
    STATUS_LIMIT,
    Fields,
    displayable,
    non_ascii,
    parse_time_field,
    shown,
    text_problem,
)
from shared.models.ids import ascii_fold, configuration_of, is_configuration_id, is_guid

# The docs' timeline table gives T-10 minutes as the cancellation cut-off.
DEFAULT_CUTOFF_BEFORE_START = timedelta(minutes=10)

START_AHEAD = timedelta(days=366)
"""A run may start at most this long after now. Update Manager sends the pre-event at least 30
minutes before the start, not months; a year leaves room for any replay or test."""
START_BEHIND = timedelta(days=30)
"""A run may have started at most this long before now: a post-event after a long window, or a
dead-lettered event an operator replays days later."""
MAX_WINDOW = timedelta(hours=24)
"""The longest window accepted (``endDateTime - startDateTime``). Update Manager's windows are
at most 3 hours 55 minutes."""
MAX_CUTOFF_LEAD = timedelta(hours=24)
"""How long before the start the cancellation cut-off may be (Azure gives T-10 or T-1 minutes)."""
EVENT_TIME_SPAN = timedelta(days=366)
"""How far an event time may be from now, either way."""
MAX_SUBSCRIPTIONS = 800
"""Entries of ``resourceSubscriptionIds``. The run record keeps them as JSON in one table
property of 32,768 UTF-16 units: 800 GUIDs take 800 x 40 + 2 = 32,002."""
ERRORS_LISTED = 5
"""Bad entries of one list named in reasons; the rest are counted."""


class EventType(str, Enum):
    PRE = "Microsoft.Maintenance.PreMaintenanceEvent"
    POST = "Microsoft.Maintenance.PostMaintenanceEvent"


class EnvelopeSchema(str, Enum):
    EVENT_GRID = "EventGrid"
    CLOUD_EVENTS = "CloudEvents"


# Field names per schema: type, time, source, and the other schema's name for the type.
_SCHEMA_FIELDS = {
    EnvelopeSchema.EVENT_GRID: ("eventType", "eventTime", "topic", "type"),
    EnvelopeSchema.CLOUD_EVENTS: ("type", "time", "source", "eventType"),
}
_ENVELOPE_TEXT = {
    EnvelopeSchema.EVENT_GRID: ("id", "subject", "topic", "dataVersion", "metadataVersion"),
    EnvelopeSchema.CLOUD_EVENTS: ("id", "subject", "source", "datacontenttype", "dataschema"),
}


@dataclass(frozen=True)
class Envelope:
    """What every event carries, whichever schema delivered it, read leniently (never refused).

    For display and for the local runner; :func:`parse_event` is what checks an event.
    """

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
        fields = Fields(raw)
        schema = schema_of(fields)
        type_key, time_key, source_key, _ = _SCHEMA_FIELDS[schema]
        time = fields.get(time_key)
        return cls(
            id=_lenient_text(fields.get("id")),
            event_type=_lenient_text(fields.get(type_key)),
            subject=_lenient_text(fields.get("subject")),
            source=_lenient_text(fields.get(source_key)),
            time=None if time is None else str(time),
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
    """Event Grid posts a JSON array; a single object is accepted too. Text is parsed strictly."""
    if isinstance(body, bytes | str):
        body = json_text.loads(body)
    if isinstance(body, Mapping):
        return [body]
    if isinstance(body, list):
        return body
    raise MalformedPayload(f"body must be a JSON object or array, got {type(body).__name__}")


def schema_of(fields: Fields) -> EnvelopeSchema:
    """CloudEvents when ``specversion`` is present (whatever its value), as the Functions worker decides."""
    return EnvelopeSchema.CLOUD_EVENTS if fields.has("specversion") else EnvelopeSchema.EVENT_GRID


def describe(raw: Any) -> tuple[str, str]:
    """The event id and type of anything delivered, safe to log and store; never raises."""
    if not isinstance(raw, Mapping):
        return "", ""
    fields = Fields(raw)
    type_key = _SCHEMA_FIELDS[schema_of(fields)][0]
    return _display(fields.get("id")), _display(fields.get(type_key))


def parse_event(raw: Any) -> PreMaintenance | PostMaintenance:
    """Turn one delivered event into a typed maintenance event, or say precisely why not.

    Checked in this order, each step only if the one before passed: the event is an object
    whose structure is unambiguous (not too deep, no repeated keys, no conflicting envelope);
    its type is one of the two maintenance events; every field of the envelope and of ``data``
    is of the right type, size and form. Times are checked to be real, not to be near now:
    :func:`out_of_range` does that against the clock.

    Raises:
        MalformedPayload: not a JSON object.
        InvalidEvent: an ambiguous or malformed envelope (whatever its type), or a maintenance
            event whose content is wrong; ``reasons`` lists every problem.
        UnsupportedEventType: any type other than the two maintenance events.
    """
    if not isinstance(raw, Mapping):
        raise MalformedPayload(f"an event must be a JSON object, got {type(raw).__name__}")
    structure = _structure_problems(raw)
    if structure:
        raise InvalidEvent(structure)
    fields = Fields(raw)
    schema = schema_of(fields)
    envelope_reasons = [*fields.conflicts, *_schema_problems(fields, schema)]
    if envelope_reasons:
        raise InvalidEvent(envelope_reasons)
    type_key, time_key, _, _ = _SCHEMA_FIELDS[schema]
    event_type = _event_type(fields.get(type_key))

    reasons = [problem for key in _ENVELOPE_TEXT[schema] if (problem := text_problem(fields.get(key), key))]
    event_time = None
    if fields.get(time_key) is not None:
        event_time = parse_time_field(fields.get(time_key), f"event time ({time_key})", reasons)
    if not isinstance(fields.get("data"), Mapping):
        raise InvalidEvent([*reasons, "data must be a JSON object"])
    data = Fields(fields.get("data"), where="data: ")
    reasons.extend(data.conflicts)

    correlation_id = _run_id(data, reasons)
    configuration_id = _configuration_id(data, correlation_id, reasons)
    subscription_ids = _subscription_ids(data, reasons)
    start = parse_time_field(data.get("startDateTime"), "data.startDateTime", reasons)
    end = parse_time_field(data.get("endDateTime"), "data.endDateTime", reasons)
    if start and end and end <= start:
        reasons.append(f"endDateTime {end.isoformat()} is not after startDateTime {start.isoformat()}")
    elif start and end and end - start > MAX_WINDOW:
        reasons.append(
            f"endDateTime {end.isoformat()} is more than {_span(MAX_WINDOW)} after startDateTime "
            f"{start.isoformat()} (Update Manager's windows are at most 3 hours 55 minutes)"
        )

    cutoff = None
    cutoff_given = True
    if event_type is EventType.PRE:
        if data.get("cancellationCutOffDateTime") is None:
            cutoff_given = False
            cutoff = start - DEFAULT_CUTOFF_BEFORE_START if start else None
        else:
            cutoff = parse_time_field(
                data.get("cancellationCutOffDateTime"), "data.cancellationCutOffDateTime", reasons
            )
            if cutoff and start and cutoff > start:
                reasons.append(
                    f"cancellationCutOffDateTime {cutoff.isoformat()} is after startDateTime {start.isoformat()}"
                )
            elif cutoff and start and start - cutoff > MAX_CUTOFF_LEAD:
                reasons.append(
                    f"cancellationCutOffDateTime {cutoff.isoformat()} is more than {_span(MAX_CUTOFF_LEAD)} before "
                    f"startDateTime {start.isoformat()}"
                )
    status = _status(data, reasons) if event_type is EventType.POST else ""

    if reasons:
        raise InvalidEvent(reasons)
    event_id = fields.get("id")
    common = dict(
        event_id=event_id if isinstance(event_id, str) and event_id.strip() else correlation_id,
        correlation_id=correlation_id,
        configuration_id=configuration_id,
        start=start,
        end=end,
        subscription_ids=tuple(subscription_ids),
        event_time=event_time,
        schema=schema,
    )
    if event_type is EventType.PRE:
        return PreMaintenance(**common, cancellation_cutoff=cutoff, cutoff_was_given=cutoff_given)
    return PostMaintenance(**common, status=status or "Unknown")


def out_of_range(event: MaintenanceEvent, now: datetime) -> list[str]:
    """Why ``event``'s times are too far from ``now`` to be a run prepost should act on; [] if none.

    A run more than :data:`START_AHEAD` away or more than :data:`START_BEHIND` ago is not one
    Update Manager is telling about now: planning it would act on machines at the wrong time.
    """
    reasons = []
    if event.start > now + START_AHEAD:
        reasons.append(
            f"startDateTime {event.start.isoformat()} is more than {START_AHEAD.days} days from now "
            "(Update Manager sends events about a run 30 minutes before its start, not months)"
        )
    elif event.start < now - START_BEHIND:
        reasons.append(f"startDateTime {event.start.isoformat()} is more than {START_BEHIND.days} days ago")
    if event.event_time is not None and abs(event.event_time - now) > EVENT_TIME_SPAN:
        reasons.append(
            f"the event time {event.event_time.isoformat()} is more than {EVENT_TIME_SPAN.days} days from now"
        )
    return reasons


def _structure_problems(raw: Mapping[str, Any]) -> list[str]:
    depth = json_text.value_depth(raw)
    if depth > json_text.MAX_DEPTH:
        return [f"the event nests more than {json_text.MAX_DEPTH} levels deep"]
    return [
        f"key {shown(path)} appears more than once with different values (parsers disagree on which counts)"
        for path in json_text.repeated_keys(raw)
    ]


def _schema_problems(fields: Fields, schema: EnvelopeSchema) -> list[str]:
    reasons = []
    type_key, _, _, other_type_key = _SCHEMA_FIELDS[schema]
    if schema is EnvelopeSchema.CLOUD_EVENTS and fields.get("specversion") != "1.0":
        reasons.append(f"specversion {shown(fields.get('specversion'))} is not supported: only CloudEvents 1.0 is")
    if fields.has(other_type_key) and not json_text.same_json(fields.get(other_type_key), fields.get(type_key)):
        reasons.append(
            f"the event has both {type_key} {shown(fields.get(type_key))} and {other_type_key} "
            f"{shown(fields.get(other_type_key))}: which one is its type is ambiguous"
        )
    return reasons


def _event_type(value: Any) -> EventType:
    if value is None or value == "":
        raise UnsupportedEventType("(missing)")
    if isinstance(value, str):
        # Event Grid filters compare types exactly, but be lenient on (ASCII) case.
        for event_type in EventType:
            if ascii_fold(event_type.value) == ascii_fold(value):
                return event_type
    raise UnsupportedEventType(_display(value))


def _run_id(data: Fields, reasons: list[str]) -> str:
    value = data.get("correlationId")
    problem = text_problem(value, "data.correlationId", required=True)
    if problem:
        reasons.append(problem)
        return ""
    value = value.strip(" \t\r\n")
    if configuration_of(value) is None:
        reasons.append(
            "correlationId is not a run id (…/maintenanceConfigurations/NAME/providers/"
            f"microsoft.maintenance/applyupdates/yyyyMMddHHmmss): {shown(value)}{non_ascii(value)}"
        )
        return ""
    return value


def _configuration_id(data: Fields, correlation_id: str, reasons: list[str]) -> str:
    value = data.get("maintenanceConfigurationId")
    problem = text_problem(value, "data.maintenanceConfigurationId", required=True)
    if problem:
        reasons.append(problem)
        return ""
    value = value.strip(" \t\r\n")
    if not is_configuration_id(value):
        reasons.append(
            "maintenanceConfigurationId is not a maintenance configuration id (/subscriptions/GUID/resourceGroups/"
            f"RG/providers/Microsoft.Maintenance/maintenanceConfigurations/NAME): {shown(value)}{non_ascii(value)}"
        )
        return ""
    parent = configuration_of(correlation_id) if correlation_id else None
    if parent is not None and ascii_fold(parent) != ascii_fold(value):
        reasons.append(f"correlationId {shown(correlation_id)} is not under maintenanceConfigurationId {shown(value)}")
    return value


def _subscription_ids(data: Fields, reasons: list[str]) -> list[str]:
    value = data.get("resourceSubscriptionIds")
    if not isinstance(value, list) or not value:
        reasons.append("resourceSubscriptionIds must be a non-empty array of subscription ids")
        return []
    if len(value) > MAX_SUBSCRIPTIONS:
        reasons.append(
            f"resourceSubscriptionIds lists {len(value):,} entries; at most {MAX_SUBSCRIPTIONS} are accepted "
            "(a run record keeps them in one 64 KiB table property)"
        )
        return []
    found: list[str] = []
    bad: list[Any] = []
    for item in value:
        text = item.strip(" \t\r\n") if isinstance(item, str) else None
        if text is not None and is_guid(text):
            found.append(ascii_fold(text))
        else:
            bad.append(item)
    for item in bad[:ERRORS_LISTED]:
        hint = non_ascii(item) if isinstance(item, str) else ""
        reasons.append(f"resourceSubscriptionIds contains {shown(item)}, which is not a subscription id (GUID){hint}")
    if len(bad) > ERRORS_LISTED:
        reasons.append(
            f"resourceSubscriptionIds has {len(bad) - ERRORS_LISTED} more entries that are not subscription ids"
        )
    return list(dict.fromkeys(found))


def _status(data: Fields, reasons: list[str]) -> str:
    value = data.get("status")
    problem = text_problem(value, "data.status", limit=STATUS_LIMIT)
    if problem:
        reasons.append(problem)
        return ""
    return (value or "").strip()


def _span(value: timedelta) -> str:
    hours = int(value.total_seconds() // 3600)
    return f"{hours} hours"


def _lenient_text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return displayable(value)
    # repr recurses: a deeply nested value is named by its type (its depth is rejected anyway).
    return displayable(repr(value) if json_text.value_depth(value) <= 4 else f"({type(value).__name__})")


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: str) -> datetime:
    """ISO 8601 with Azure's 7-digit fractions and ``Z``; naive times are taken as UTC.

    For times prepost wrote itself (messages, records). Times an event brings are read with
    :func:`shared.models.event_fields.parse_time_field`, which is strict and bounded.

    Raises:
        ValueError: not such a time, or one whose offset moves it outside years 1-9999.
    """
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError as error:
        raise ValueError(f"{value!r} is outside the years 1-9999 in UTC") from error


def format_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
