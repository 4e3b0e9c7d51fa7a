"""Delivering events the way Event Grid does to a local Functions host."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse

import requests

from shared.names import INTAKE_FUNCTION

DEFAULT_FUNC_URL = "http://localhost:7071/runtime/webhooks/EventGrid"


@dataclass(frozen=True)
class DeliveryResult:
    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def webhook_url(base: str, function_name: str = INTAKE_FUNCTION) -> str:
    """``http://host:port`` or a full webhook path, completed with ``?functionName=``."""
    parsed = urlparse(base)
    path = parsed.path if parsed.path and parsed.path != "/" else "/runtime/webhooks/EventGrid"
    query = parse_qsl(parsed.query, keep_blank_values=True)
    if not any(key.lower() == "functionname" for key, _ in query):
        # A deployed app's URL often carries only ?code=<system key>.
        query.append(("functionName", function_name))
    return f"{parsed.scheme}://{parsed.netloc}{path}?{urlencode(query)}"


def deliver(
    url: str, events: Sequence[dict[str, Any]], *, timeout: float = 30.0, key: str | None = None
) -> DeliveryResult:
    """POST a JSON array of events with ``aeg-event-type: Notification``, as Event Grid does.

    ``key`` (the webhook's system key; by default ``PREPOST_EVENTGRID_KEY``) goes in a header,
    never in the URL. Raises :class:`prepost.webhook_auth.TargetRefused` for a URL with a key in
    it, plain HTTP to another machine, or another machine and no key, before anything is sent.
    """
    from prepost.webhook_auth import KEY_HEADER, check_target, webhook_key

    check_target(url)
    if key is None:
        key = webhook_key(url, prompt=_no_prompt)
    headers = {"Content-Type": "application/json", "aeg-event-type": "Notification"}
    if key:
        headers[KEY_HEADER] = key
    response = requests.post(webhook_url(url), data=json.dumps(list(events)), headers=headers, timeout=timeout)
    return DeliveryResult(response.status_code, response.text)


def _no_prompt(text: str) -> str:
    # Delivery never asks: a command that may prompt asks once, before it delivers anything.
    return ""
