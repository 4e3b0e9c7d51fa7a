"""Event Grid trigger: maintenance events in, recorded runs and plan messages out."""

from __future__ import annotations

import azure.functions as func

from shared.names import INTAKE_FUNCTION


def event_to_json(event: func.EventGridEvent) -> dict:
    """The Event Grid schema object the host parsed, back as JSON for the intake use case."""
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "data": event.get_json(),
        "dataVersion": event.data_version,
    }


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
