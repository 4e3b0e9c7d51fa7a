"""Parking unusable messages in ``<queue>-poison`` at once, with a reason an operator can read.

The Functions host moves a message there only after ``maxDequeueCount`` failed deliveries; a
message that can never succeed (not JSON, unknown kind, wrong queue) should not burn those
attempts. The parked form keeps the original body so ``prepost replay`` can send it back.
"""

from __future__ import annotations

import json
from typing import Any

from shared.clock import utcnow
from shared.models.events import format_time
from shared.names import QueueName

PARKED_KEY = "prepostParked"


def parked_body(queue: QueueName, body: str | bytes, reason: str) -> str:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return json.dumps({PARKED_KEY: {"queue": queue.value, "reason": reason, "at": format_time(utcnow())}, "body": text})


def unpark(content: str) -> tuple[str, dict[str, Any] | None]:
    """The original body and the parking note (None for messages the host poisoned itself)."""
    try:
        value = json.loads(content)
    except ValueError:
        return content, None
    if isinstance(value, dict) and PARKED_KEY in value and "body" in value:
        return value["body"], value[PARKED_KEY]
    return content, None


def park_in_poison_queue(storage, queue: QueueName, body: str | bytes, reason: str) -> None:
    storage.queue(queue.poison).send_message(parked_body(queue, body, reason), time_to_live=-1)
