"""The Event Grid local webhook, on the same path ``func start`` serves.

``POST /runtime/webhooks/EventGrid?functionName=NAME`` with header ``aeg-event-type:
Notification`` and a JSON array of events. Every element of the array is handed to the
function, which records each one (accepted, duplicate, ignored or rejected), so the answer is
200 unless a function raised: then 500, and Event Grid delivers again. A body that is not events
at all gets 400 (Event Grid does not retry 400 or 413): not JSON, not an array or object, nested
too deeply; a body over :data:`MAX_BODY_BYTES` or an array over :data:`MAX_EVENTS` gets 413.
Refused deliveries are recorded too (outcome ``rejected``, the reason and the start of the body),
so ``prepost events list`` shows every delivery, whatever it held.

Every answer is JSON, errors included, and none carries a stack trace: whatever reaches this
endpoint, werkzeug's HTML error page never goes back.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.errors import MalformedPayload
from shared.models import json_text

if TYPE_CHECKING:
    from prepost.local.runner import FunctionAppRunner

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/runtime/webhooks/EventGrid"
MAX_BODY_BYTES = 1024 * 1024
"""Event Grid delivers events of at most 1 MB."""
MAX_EVENTS = 100
"""Elements of one delivered array. The deployed subscription delivers one event per request
(``maxEventsPerBatch: 1`` in infra/); each element costs table writes, so a bigger array is
refused whole rather than recorded one by one."""


class EventGridWebhook:
    def __init__(self, runner: FunctionAppRunner, *, host: str = "127.0.0.1", port: int = 0):
        self.runner = runner
        self._server = make_server(host, port, self._wsgi, threaded=True)
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="eventgrid-webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{WEBHOOK_PATH}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        try:
            response = self._handle(request)
        except HTTPException as error:  # werkzeug's own refusals (body too large, ...), as JSON
            response = _json({"error": error.description or error.name}, error.code or 400)
        except Exception as error:  # a bug here must not become an HTML page with a traceback
            log.exception("the Event Grid webhook failed on %s %s", request.method, request.path)
            response = _json({"error": f"internal error in the local webhook: {type(error).__name__}"}, 500)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if request.path.rstrip("/") != WEBHOOK_PATH:
            return _json({"error": f"no route {request.path}"}, 404)
        if request.method != "POST":
            return _json({"error": "use POST"}, 405)
        name = request.args.get("functionName", "")
        if name not in self.runner.event_functions:
            return _json({"error": f"no Event Grid function named {name[:200]!r}"}, 404)
        handshake = request.headers.get("aeg-event-type", "Notification") == "SubscriptionValidation"
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return self._refuse(f"body is over {MAX_BODY_BYTES:,} bytes", 413, b"", record=not handshake)
        data = request.get_data()
        try:
            body = json_text.loads(data or b"null")
        except MalformedPayload as error:
            return self._refuse(str(error), 400, data, record=not handshake)
        if handshake:
            return _validation_response(body)
        if isinstance(body, dict):
            events: list[Any] = [body]
        elif isinstance(body, list):
            events = body
        else:
            return self._refuse(f"body must be a JSON array of events, got {_json_type(body)}", 400, data)
        if len(events) > MAX_EVENTS:
            return self._refuse(f"{len(events):,} events in one delivery; at most {MAX_EVENTS} are accepted", 413, data)
        errors = self.runner.deliver(name, events)
        failed = [error for error in errors if error]
        if failed:
            return _json({"delivered": len(events), "failed": failed}, 500)
        return _json({"delivered": len(events)}, 200)

    def _refuse(self, reason: str, status: int, body: bytes, *, record: bool = True) -> Response:
        """Answer a delivery that holds no events to hand on, after recording it as rejected
        (``record``: not for a subscription handshake, which delivers no event).

        Event Grid does not retry 400 or 413. If the record cannot be written, the answer is 500
        instead, so the delivery comes again rather than vanishing unrecorded.
        """
        if not record:
            return _json({"error": reason}, status)
        try:
            self.runner.record_refused_delivery(f"{reason} (answered HTTP {status})", body)
        except Exception as error:
            log.exception("recording a refused delivery failed")
            return _json({"error": reason, "notRecorded": f"{type(error).__name__}: {error}"}, 500)
        return _json({"error": reason}, status)


def _validation_response(body: Any) -> Response:
    """Answer Event Grid's handshake: ``{"validationResponse": data.validationCode}``."""
    first = body[0] if isinstance(body, list) and body else body
    data = first.get("data") if isinstance(first, dict) else None
    code = data.get("validationCode") if isinstance(data, dict) else None
    if not isinstance(code, str) or not code:
        return _json({"error": "a SubscriptionValidation event must carry data.validationCode, a string"}, 400)
    return _json({"validationResponse": code}, 200)


def _json_type(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(value), "null")


def _json(value: object, status: int) -> Response:
    return Response(json.dumps(value), status=status, mimetype="application/json")
