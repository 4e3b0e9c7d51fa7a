"""Event Grid trigger: maintenance events in, recorded runs and plan messages out."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from shared.names import INTAKE_FUNCTION


def event_to_json(event: func.EventGridEvent | func.CloudEvent) -> Any:
    """The event as JSON for the intake use case, whichever schema the subscription delivers.

    In Azure the Python worker parses each event before this function runs
    (``azure.functions.eventgrid``): keys repeated in its text are already merged, and an event
    time it cannot parse fails the invocation there. So the object is rebuilt from that parse,
    and those two checks cannot be made here (docs/events.md, "What Azure lets through"). The
    worker hands over a ``CloudEvent`` when the event has ``specversion``, whatever the
    annotation says. The local runner's trigger input also carries the event as delivered
    (``delivered_json``), so there the intake checks it as sent.
    """
    delivered = getattr(event, "delivered_json", _ABSENT)
    if delivered is not _ABSENT:
        return delivered
    if isinstance(event, func.CloudEvent):
        return {
            # Extension attributes first: a stray "eventType" beside "type" must reach the intake.
            **event.extension_attrs,
            "id": event.id,
            "source": event.source,
            "subject": event.subject,
            "type": event.type,
            "time": event.time.isoformat() if event.time else None,
            "data": event.get_json(),
            "specversion": event.specversion,
        }
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "data": event.get_json(),
        "dataVersion": event.data_version,
    }


_ABSENT = object()


def blueprint() -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name(INTAKE_FUNCTION)
    @bp.event_grid_trigger(arg_name="event")
    def maintenance_event_intake(event: func.EventGridEvent) -> None:
        from shared.bootstrap import get_container
        from shared.handlers import handle_event

        # Ignored and rejected events return normally (recorded, not retried); storage or
        # queue failures raise so Event Grid delivers again.
        handle_event(event_to_json(event), get_container())

    return bp
