"""The Event Grid local webhook, on the same path ``func start`` serves.

``POST /runtime/webhooks/EventGrid?functionName=NAME`` with header ``aeg-event-type:
Notification`` and a JSON array of events. Answers 200 when every event was handled, 400 for
a body that is not JSON (Event Grid does not retry 400), 404 for an unknown function, and 500
when a function raised (Event Grid retries).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from prepost.local.runner import FunctionAppRunner

WEBHOOK_PATH = "/runtime/webhooks/EventGrid"


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
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if request.path.rstrip("/") != WEBHOOK_PATH:
            return _json({"error": f"no route {request.path}"}, 404)
        if request.method != "POST":
            return _json({"error": "use POST"}, 405)
        name = request.args.get("functionName", "")
        if name not in self.runner.event_functions:
            return _json({"error": f"no Event Grid function named {name!r}"}, 404)
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError as error:
            return _json({"error": f"body is not JSON: {error}"}, 400)
        events = body if isinstance(body, list) else [body]
        kind = request.headers.get("aeg-event-type", "Notification")
        if kind == "SubscriptionValidation":
            code = (
                (events[0].get("data") or {}).get("validationCode") if events and isinstance(events[0], dict) else None
            )
            return _json({"validationResponse": code}, 200)
        if not all(isinstance(event, dict) for event in events):
            return _json({"error": "every event must be a JSON object"}, 400)
        errors = self.runner.deliver(name, events)
        failed = [error for error in errors if error]
        if failed:
            return _json({"delivered": len(events), "failed": failed}, 500)
        return _json({"delivered": len(events)}, 200)


def _json(value: object, status: int) -> Response:
    return Response(json.dumps(value), status=status, mimetype="application/json")
